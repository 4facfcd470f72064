"""`arena events` against an Arena whose relay is restarting: it asks again as Retry-After says, a POST never twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve.cli import main


@contextmanager
def _arena(answers: list[tuple[int, dict, dict]]) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that gives ``answers`` in turn (then the last again) and records each request."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            asked.append(f"{self.command} {self.path}")
            code, headers, body = answers[min(len(asked), len(answers)) - 1]
            payload = json.dumps(body).encode()
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's names

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


RESTARTING = (503, {"Retry-After": "1"}, {"detail": "the relay does not answer (it is restarting); retry shortly"})
STATUS = (200, {}, {"last_position": 7, "consumers": {}})


def test_events_status_asks_again_while_the_relay_restarts(capsys):
    with _arena([RESTARTING, RESTARTING, STATUS]) as (url, asked):
        assert main(["events", "status", "--url", url]) == 0
    assert asked == ["GET /ops/events"] * 3
    assert json.loads(capsys.readouterr().out)["last_position"] == 7


def test_a_503_without_retry_after_and_a_replay_are_answered_at_once(capsys):
    degraded = (503, {}, {"detail": "degraded"})
    with _arena([degraded, STATUS]) as (url, asked):
        assert main(["events", "status", "--url", url]) == 1
    assert asked == ["GET /ops/events"] and "degraded" in capsys.readouterr().err
    with _arena([RESTARTING, STATUS]) as (url, asked):
        assert main(["events", "replay", "--url", url]) == 1  # a POST may have done its work: not sent twice
    assert asked == ["POST /ops/events/dead-letters/replay"]
    assert "restarting" in capsys.readouterr().err
