"""Spectators: each user holds one live leaderboard stream (SSE) open and reads it.

Every leaderboard event is reported to locust as a request named "leaderboard
event" whose response time is its freshness: now minus the moment the race
produced that view. Connecting is reported as "connect". Users open ``n=10``
(a phone's top ten). Run with ``python -m loadtest.scenarios spectators``.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from gevent import socket
from locust import User, between, task

from loadtest.live_events import produced_at
from loadtest.scenarios.crowd_file import crowd

TOP = 10


class Spectator(User):
    wait_time = between(1, 3)  # before reconnecting, after the race ended or the stream broke

    @task
    def watch(self) -> None:
        url = urlsplit(self.host)
        fire = self.environment.events.request.fire
        started = time.perf_counter()
        try:
            conn = socket.create_connection((url.hostname, url.port or 80), timeout=30)
        except OSError as error:
            fire(request_type="SSE", name="connect", response_time=0, response_length=0, exception=error)
            return
        conn.settimeout(30)
        with conn:
            path = f"/api/v1/races/{crowd()['race']}/live?n={TOP}"
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {url.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
            stream = conn.makefile("rb")
            status = stream.readline().split(b" ", 2)
            ok = len(status) > 1 and status[1] == b"200"
            fire(
                request_type="SSE",
                name="connect",
                response_time=(time.perf_counter() - started) * 1000,
                response_length=0,
                exception=None if ok else RuntimeError(f"status {status[1:] or 'none'}"),
            )
            if not ok:
                return
            event = None
            try:
                for line in stream:
                    if line.startswith(b"event: "):
                        event = line[7:].strip()
                    elif line.startswith(b"data: ") and event == b"leaderboard":
                        fire(
                            request_type="SSE",
                            name="leaderboard event",
                            response_time=max(0.0, time.time() - produced_at(line)) * 1000,
                            response_length=len(line),
                            exception=None,
                        )
                    if not self.environment.runner or self.environment.runner.state in ("stopping", "stopped"):
                        return
            except OSError as error:  # a stream that stalls for 30 s or breaks is a failure
                fire(request_type="SSE", name="leaderboard event", response_time=0, response_length=0, exception=error)
