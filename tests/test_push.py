"""The push tier (serve.push): live race streams from processes of their own, beside the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from tests.test_api import signup
from tests.test_races import live_race, organizer, run_samples

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(settings) -> dict[str, str]:
    """The API's settings, for a push process."""
    return {
        "ARENA_DATABASE_URL": settings.database_url,
        "ARENA_NAMESPACE": settings.namespace,
        "ARENA_HOSTS": str(settings.hosts),
        "ARENA_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "ARENA_DATA_DIR": str(settings.data_dir),
        "ARENA_SPECTATOR_TICK": str(settings.spectator_tick),
    }


def livez(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /livez HTTP/1.1\r\nHost: push\r\n\r\n")
            return conn.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Push:
    """One push process (``arena push``) joined to the tests' Ray, with the API's settings."""

    def __init__(self, settings) -> None:
        import ray

        self.port = free_port()
        env = {**os.environ, **environment(settings), "ARENA_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        command = [sys.executable, "-m", "serve.cli", "push", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, seconds: float = 60) -> Push:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read().decode()[-3000:]
            if livez(self.port):
                return self
            time.sleep(0.2)
        raise AssertionError("the push process did not answer")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stderr.close()


@pytest.fixture(scope="module")
def pushes(settings):
    started = [Push(settings), Push(settings)]
    running = list(started)  # a test may put a new process in place of one it killed
    try:
        running[:] = [push.wait_ready() for push in started]
        yield running
    finally:
        for push in {*started, *running}:
            push.kill()


class Stream:
    def __init__(self, status: int, head: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.status, self.head, self.reader, self.writer = status, head, reader, writer

    async def event(self, timeout: float = 10) -> dict[str, str] | None:
        """The next event's fields (``retry`` alone is skipped); None at the end of the stream."""
        while True:
            try:
                block = await asyncio.wait_for(self.reader.readuntil(b"\n\n"), timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            fields = dict(line.split(": ", 1) for line in block.decode().strip().split("\n"))
            if "retry" not in fields:
                return fields

    async def rest(self) -> list[dict[str, str]]:
        """Every event until the stream ends."""
        events = []
        while (event := await self.event()) is not None:
            events.append(event)
        return events

    async def events(self, count: int) -> list[dict[str, str]]:
        return [event for _ in range(count) if (event := await self.event()) is not None]

    def close(self) -> None:
        self.writer.close()


async def get(port: int, path: str, headers: dict[str, str] | None = None, raw: bytes | None = None) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", "Host: push", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    writer.write(raw if raw is not None else ("\r\n".join(lines) + "\r\n\r\n").encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode()
    return Stream(int(head.split(" ", 2)[1]), head, reader, writer)


async def refused(port: int, path: str, headers: dict[str, str] | None = None, raw: bytes | None = None) -> dict:
    stream = await get(port, path, headers, raw)
    assert "content-type: application/problem+json" in stream.head.lower(), stream.head
    body = json.loads(await asyncio.wait_for(stream.reader.read(), 10))
    stream.close()
    assert body["status"] == stream.status
    return body


def board(event: dict[str, str]) -> dict:
    """A leaderboard event's board without what differs between processes (the time of the view, its count)."""
    return {k: v for k, v in json.loads(event["data"]).items() if k not in ("at", "version", "moved")}


async def running_race(client) -> str:
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    athletes = []
    for name, pace in (("Fast", 240), ("Slow", 360)):
        _, headers = await signup(client, name)
        assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)).status_code == 201
        athletes.append((headers, pace))
    gun = time.time() - 120
    await client.patch(f"/races/{race_id}", json={"start_at": gun}, headers=org)
    while (await client.get(f"/races/{race_id}")).json()["status"] != "live":
        await asyncio.sleep(0.02)
    for headers, pace in athletes:
        samples = run_samples(gun, 60, pace)
        answer = await client.post(f"/races/{race_id}/telemetry", json={"samples": samples}, headers=headers)
        assert answer.status_code == 200, answer.text
    client.org = org
    return race_id


async def test_a_push_stream_carries_the_same_events_as_the_api_stream(client, pushes):
    race_id = await running_race(client)
    stream = await get(pushes[0].port, f"/api/v1/races/{race_id}/live?n=10")
    assert stream.status == 200 and "text/event-stream" in stream.head
    status, first, second = await stream.events(3)
    assert status["event"] == "status" and json.loads(status["data"])["status"] == "live"
    assert first["event"] == second["event"] == "leaderboard" and float(first["id"]) < float(second["id"])
    leaderboard = (await client.get(f"/races/{race_id}/leaderboard?n=10")).json()
    assert board(second)["entries"] == leaderboard["entries"]
    assert [e["name"] for e in board(second)["entries"]] == ["Fast", "Slow"]

    await client.post(f"/races/{race_id}/actions/cancel", headers=client.org)
    pushed = await stream.rest()  # the stream ends with the race, as the API's does
    api = (await client.get(f"/races/{race_id}/live?n=10")).text.strip().split("\n\n")[1:]
    api_events = [dict(line.split(": ", 1) for line in block.split("\n")) for block in api]
    assert [e["event"] for e in api_events[-2:]] == [e["event"] for e in pushed[-2:]] == ["status", "leaderboard"]
    assert json.loads(pushed[-2]["data"])["status"] == "cancelled"
    assert board(pushed[-1]) == board(api_events[-1])


async def test_a_killed_push_process_loses_its_streams_only_until_they_reconnect(client, pushes, settings):
    race_id = await running_race(client)
    path = f"/api/v1/races/{race_id}/live"
    doomed, other = pushes
    watcher = await get(other.port, path)  # the race is watched on the other process too
    seen: list[float] = []

    async def watch() -> None:
        while (event := await watcher.event()) is not None:
            if "id" in event:
                seen.append(float(event["id"]))

    watching = asyncio.create_task(watch())
    stream = await get(doomed.port, path)
    events = await stream.events(4)
    last = events[-1]["id"]
    doomed.kill()
    assert await stream.event() is None  # the stream broke with its process

    resumed = await get(other.port, path, {"Last-Event-ID": last})
    first = await resumed.event()
    await asyncio.sleep(0.3)  # the watcher reads the same tick
    assert first is not None and first["event"] == "leaderboard"  # no status again: a resumption, not a start
    # no gap: the resumed stream starts after ``last`` and no later than the first tick after it that the
    # watcher on the same process read (a watcher slow to join under load may have missed earlier ones)
    assert float(last) < float(first["id"]) <= min(at for at in seen if at > float(last)), (last, first, seen)
    resumed.close()

    pushes[0] = Push(settings).wait_ready()  # a new process in place of the killed one: its ring is empty
    again = await get(pushes[0].port, path, {"Last-Event-ID": last})
    snapshot = await again.events(2)
    assert [e["event"] for e in snapshot] == ["status", "leaderboard"] and float(snapshot[1]["id"]) > float(last)
    again.close()
    watching.cancel()
    watcher.close()


async def test_every_push_process_shows_the_same_ticks_from_one_watch_of_the_race(client, pushes):
    """The tick relay asks the race once a tick for all push processes: the processes' events carry the
    same ids (the race's clock at one view), where each asking on its own would stamp its own."""
    race_id = await running_race(client)
    path = f"/api/v1/races/{race_id}/live"
    streams = [await get(push.port, path) for push in pushes]
    ids = [[e["id"] for e in await stream.events(5) if "id" in e] for stream in streams]
    for stream in streams:
        stream.close()
    assert len(set(ids[0]) & set(ids[1])) >= 3, ids


def test_the_workers_arena_run_starts_serve_and_stop_with_it(settings, monkeypatch):
    """``arena run`` with ARENA_PUSH_WORKERS: ``start_workers`` and, at shutdown, ``stop_workers``."""
    import psutil
    import ray

    from serve.push import start_workers, stop_workers

    for name, value in environment(settings).items():
        monkeypatch.setenv(name, value)
    port = free_port()
    parent = start_workers("127.0.0.1", port, 2, ray.get_runtime_context().gcs_address)
    try:
        deadline = time.monotonic() + 60
        while not livez(port):
            assert parent.poll() is None and time.monotonic() < deadline, "the push workers did not answer"
            time.sleep(0.2)
        workers = [p for p in psutil.Process(parent.pid).children() if "push" in p.cmdline()]
        assert len(workers) == 2
    finally:
        code = stop_workers(parent)
    assert code == 0
    assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)


async def test_a_draft_race_stream_is_refused_as_the_api_refuses_it(client, pushes):
    _, org = await organizer(client)
    created = await client.post(
        "/races", json={"name": "Secret", "sport": "run", "kind": "distance", "target_m": 1000}, headers=org
    )
    draft = created.json()["id"]
    api = await client.get(f"/races/{draft}/live")
    pushed = await refused(pushes[1].port, f"/api/v1/races/{draft}/live")
    assert (pushed["status"], pushed["detail"]) == (api.status_code, api.json()["detail"]) == (404, "no such race")
    missing = await refused(pushes[1].port, "/api/v1/races/no-such-race/live")
    assert missing["status"] == (await client.get("/races/no-such-race/live")).status_code == 404
    token = {"Authorization": org["Authorization"]}
    own = await get(pushes[1].port, f"/api/v1/races/{draft}/live", token)  # its organizer sees it, as in the API
    assert own.status == 200 and json.loads((await own.event())["data"])["status"] == "draft"
    own.close()
    forged = await refused(pushes[1].port, f"/api/v1/races/{draft}/live", {"Authorization": "Bearer nope"})
    assert forged["status"] == 401

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    url = f"ws://127.0.0.1:{pushes[1].port}/api/v1/races/{draft}/live"
    for headers, status in (({}, 404), ({"Authorization": "Bearer nope"}, 401)):  # refused before the upgrade
        with pytest.raises(InvalidStatus) as refusal:
            await connect(url, additional_headers=headers)
        assert refusal.value.response.status_code == status
    async with connect(url, additional_headers=token) as ws:
        assert (await frames(ws, 1))[0]["data"]["status"] == "draft"


@pytest.mark.parametrize(
    ("path", "headers", "raw", "status"),
    [
        ("/api/v1/races/../live", None, None, 404),
        ("/api/v1/races/" + "a" * 65 + "/live", None, None, 404),
        ("/api/v1/races/r1/live?n=0", None, None, 422),
        ("/api/v1/races/r1/live?n=1e9", None, None, 422),
        ("/api/v1/races/r1/live?category=" + "x" * 41, None, None, 422),
        ("/api/v1/races/r1/live", {"Last-Event-ID": "nan"}, None, 400),
        ("/api/v1/races/r1/live", {"Last-Event-ID": "1e999"}, None, 400),
        ("/api/v1/races/r1/live", {"Last-Event-ID": "7" * 100}, None, 400),
        ("/api/v1/races/r1/live", {"X-Big": "x" * 20_000}, None, 431),
        ("", None, b"POST /api/v1/races/r1/live HTTP/1.1\r\n\r\n", 405),
        ("", None, b"\x16\x03\x01garbage\r\n\r\n", 400),
        ("", None, b"GET /api/v1/races/r1/live HTTP/1.1\r\nno colon\r\n\r\n", 400),
    ],
)
async def test_hostile_requests_get_a_clear_4xx_and_the_process_serves_on(pushes, path, headers, raw, status):
    body = await refused(pushes[1].port, path, headers, raw)
    assert body["status"] == status and body["detail"]
    assert (await get(pushes[1].port, "/livez")).status == 200


async def test_a_request_head_that_trickles_in_is_cut_off_with_408():
    """A slowloris client (a head never finished) holds its socket only for the head's time limit."""
    from serve.push import PushServer

    push = PushServer(None, head_timeout=0.3)  # type: ignore[arg-type]  # no stream is opened: no Arena needed
    server = await push.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v1/races/r1/live HTTP/1.1\r\nHost: push\r\n")  # and nothing more
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        body = json.loads(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        assert head.startswith("HTTP/1.1 408") and body["status"] == 408 and "0.3 s" in body["detail"]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def local_push(tick: float = 0.02, **options):
    """A push server in this process, fed by a race entity of its own (300 runners), a tick every ``tick``
    seconds: what happens on its sockets, without Ray."""
    from actors.race import Race
    from serve.push import PushServer
    from serve.spectators import Spectators

    race = Race("local")
    race.create("org", {"name": "Local", "sport": "run", "kind": "distance", "target_m": 10_000})
    race.open("org")
    race.join_many([{"user_id": f"u{i}", "name": f"Runner {i}"} for i in range(300)])
    race.start("org")

    async def follow(race_id: str, known: int) -> dict:
        await asyncio.sleep(tick)
        race._now += 1
        return race.view(n=100, known=known)

    def no_race(race_id: str):
        raise AssertionError("the local push follows its race, it never asks it")

    push = PushServer(SimpleNamespace(spectators=Spectators(no_race, follow=follow)), **options)  # type: ignore[arg-type]
    server = await push.serve("127.0.0.1", 0)
    try:
        yield push, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await push.close()


def handshake(target: str) -> bytes:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import Request

    return WSConnection(ConnectionType.CLIENT).send(Request(host="push", target=target))


async def frames(ws, count: int) -> list[dict]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(count)]


async def test_a_websocket_stream_carries_the_sse_events_as_json_frames_and_answers_pings():
    from websockets.asyncio.client import connect

    async with local_push() as (_, port):
        sse = await get(port, "/api/v1/races/local/live?n=5")
        async with connect(f"ws://127.0.0.1:{port}/api/v1/races/local/live?n=5") as ws:
            status, *boards = await frames(ws, 4)
            assert status == {"event": "status", "data": {"status": "live", "at": status["data"]["at"]}}
            assert [b["event"] for b in boards] == ["leaderboard"] * 3
            assert [float(b["id"]) for b in boards] == sorted({float(b["id"]) for b in boards})
            assert [len(b["data"]["entries"]) for b in boards] == [5, 5, 5]
            pushed = {e["id"]: json.loads(e["data"]) for e in await sse.events(8) if "id" in e}
            assert any(pushed.get(b["id"]) == b["data"] for b in boards), "the same tick, the same board"
            await asyncio.wait_for(await ws.ping(), 10)  # the pong comes back
        sse.close()


async def test_a_websocket_client_resumes_from_last_event_id_without_a_gap():
    from websockets.asyncio.client import connect

    async with local_push() as (_, port):
        path = f"ws://127.0.0.1:{port}/api/v1/races/local/live?n=3"
        async with connect(path) as ws:
            _, *boards = await frames(ws, 4)
        async with connect(f"{path}&last_event_id={boards[0]['id']}") as ws:
            resumed = await frames(ws, 2)
        assert ws.close_code == 1000  # the client's close was returned
        assert [b["id"] for b in resumed] == [b["id"] for b in boards[1:]]  # the ticks after it, no status first


async def test_a_websocket_message_over_the_inbound_limit_closes_the_stream_with_1009():
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from serve.push import INBOUND_LIMIT

    async with local_push() as (push, port):
        for message in ("x" * (INBOUND_LIMIT + 1), ["x" * (INBOUND_LIMIT // 2 + 1)] * 2):  # whole, or in two frames
            async with connect(f"ws://127.0.0.1:{port}/api/v1/races/local/live") as ws:
                await frames(ws, 1)
                await ws.send(message)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        # a frame that says it is a terabyte long is cut off once the limit has arrived
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import CloseConnection, Request

        client = WSConnection(ConnectionType.CLIENT)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(client.send(Request(host="push", target="/api/v1/races/local/live")))
        writer.write(bytes([0x81, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"\0\0\0\0" + b"x" * (INBOUND_LIMIT + 10))
        seen = []
        while not any(isinstance(e, CloseConnection) for e in seen) and (
            data := await asyncio.wait_for(reader.read(65536), 10)
        ):
            client.receive_data(data)
            seen += list(client.events())
        writer.close()
        assert [e.code for e in seen if isinstance(e, CloseConnection)] == [1009]
        assert (await get(port, "/livez")).status == 200


_LIVE = "/api/v1/races/local/live"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            f"GET {_LIVE} HTTP/1.1\r\nHost: push\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode(),
            id="no-key",
        ),
        pytest.param(handshake(_LIVE).replace(b"Version: 13", b"Version: 8"), id="version-8"),
        pytest.param(handshake(_LIVE).replace(b"Host: push\r\n", b""), id="no-host"),
        pytest.param(
            handshake(_LIVE).replace(b"Connection: Upgrade", b"Connection: close"), id="no-connection-upgrade"
        ),
    ],
)
async def test_a_bad_websocket_handshake_gets_400_and_the_process_serves_on(raw):
    async with local_push() as (_, port):
        body = await refused(port, "", raw=raw)
        assert body["status"] == 400 and "WebSocket" in body["detail"], body
        assert (await get(port, "/livez")).status == 200


@pytest.mark.parametrize("websocket", [False, True])
async def test_a_client_that_never_reads_is_dropped_and_the_others_go_on(websocket):
    async with local_push(tick=0.001) as (push, port):
        target = "/api/v1/races/local/live?n=100"
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        head = handshake(target) if websocket else f"GET {target} HTTP/1.1\r\nHost: push\r\n\r\n".encode()
        stuck.sendall(head)  # and never reads a byte
        reader = await get(port, target)

        async def served_until_dropped() -> None:
            while push.dropped == 0:
                assert await reader.event() is not None  # the reader is served meanwhile

        await asyncio.wait_for(served_until_dropped(), 60)
        stuck.close()
        reader.close()
