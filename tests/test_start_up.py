"""`arena run` says what failed at start-up and what to do, without a traceback."""

from __future__ import annotations

import socket

from serve import cli


def test_a_taken_port_is_named_with_what_to_do_before_anything_starts(capsys, monkeypatch):
    monkeypatch.delenv("ARENA_RAY_ADDRESS", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["run", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is taken" in err and "--port" in err and "Traceback" not in err


def test_the_line_that_says_what_failed_is_found_under_rays_wrapping():
    class Wrapped(Exception):
        def __init__(self, cause: Exception) -> None:
            super().__init__("\x1b[36mray::HAProxyManager.ready()\x1b[39m (pid=1, ip=10.0.0.1)")
            self.cause = cause

    cause = RuntimeError(
        "HAProxy crashed during startup: [NOTICE] (7) : haproxy version is 2.8.25\n"
        "[ALERT] (7) : Starting frontend http_frontend: cannot bind socket (Address already in use) [127.0.0.1:8000]\n"
        "[ALERT] (7) : [haproxy.main()] Some protocols failed to start their listeners! Exiting."
    )
    line = cli._first_line(Wrapped(cause))
    assert line.startswith("RuntimeError: [ALERT]") and "cannot bind socket" in line
    assert cli._first_line(ValueError("plain\nsecond")) == "ValueError: plain"
