"""The push tier: live race streams served by plain asyncio processes beside Serve.

Every spectator of a race gets the same bytes each tick. A push process follows each race
once, from the cluster's tick relay (``serve.push_ticks``: one ``Race.view`` a tick for every push
process), encodes each tick once per board asked for (category, top N) and writes those bytes to
every client that asked for it. ``GET /api/v1/races/{race}/live`` answers as the API's route does,
after the same checks (``serve.api.races.live_view``: a draft is its organizer's alone), with
the same events; each leaderboard event also carries an ``id``, the race's clock at the tick.
A client that comes back with ``Last-Event-ID`` gets the ticks after it from a short ring of
recent ticks, or, where the ring no longer reaches back to it, the status and the current
board first, as a new client does. A client whose unsent bytes pass a bound is dropped.

A client that asks for a WebSocket (``Upgrade: websocket``, RFC 6455, handled by ``wsproto``) on
the same path gets the same events as JSON text frames, ``{"event", "id", "data"}``, after the same
checks, and resumes with the ``last_event_id`` query parameter. It has nothing to send but pings
and a close: a message over ``INBOUND_LIMIT`` bytes closes the stream (1009).

Several processes share a port (``SO_REUSEPORT``) or sit behind the ingress; each is a Ray
driver of the cluster, outside Serve's request path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request
from wsproto.frame_protocol import CloseReason, FrameProtocol
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from actors.race import SETTLED
from engine.errors import EngineError
from serve.api.races import live_event, live_view, status_event
from serve.context import Arena, authenticate
from serve.headers import api_headers
from serve.problems import Problem, engine_problem, problem_json
from serve.push_ticks import TickFeed
from serve.settings import Settings
from serve.spectators import RaceView, Spectators

__all__ = ["PushServer", "raise_open_files", "run", "start_workers", "stop_workers"]

log = logging.getLogger(__name__)

HEAD_LIMIT = 8192  # bytes of request line and headers
HEAD_TIMEOUT_S = 10.0  # for the whole request head to arrive: a client trickling it (slowloris) holds no socket longer
RING = 32  # ticks kept per race for Last-Event-ID (half a minute at one a second)
BUFFER_LIMIT = 256 * 1024  # unsent bytes after which a client is too slow and is dropped
LINGER_S = 30.0  # a race's watch outlives its last client so that reconnects resume from the ring
MAX_CATEGORY = 40
MAX_TOP = 100
_PATH = re.compile(r"/api/v1/races/([A-Za-z0-9_-]{1,64})/live")
_RETRY = b"retry: 2000\n\n"
_CLOSE_AFTER_S = 5.0
INBOUND_LIMIT = 4096  # bytes of one message a WebSocket client may send (it has nothing to say but pings)
_FRAMES = FrameProtocol(client=False, extensions=[])  # a server's frames are not masked: the same bytes for all

Key = tuple[str, int]  # (category, top N): what a stream shows


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class _Request:
    path: str
    race_id: str
    key: Key
    token: str | None
    last_id: float | None
    websocket: bool  # the client asked to upgrade


def _parse(head: bytes) -> _Request | None:
    """The stream asked for; None for ``/livez``."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Refused(400, "not an HTTP/1.x request line")
    method, target, _ = parts
    url = urlsplit(target)
    if method != "GET":
        raise _Refused(405, "the push tier answers GET alone")
    if url.path == "/livez":
        return None
    match = _PATH.fullmatch(url.path)
    if match is None:
        raise _Refused(404, "the push tier serves /api/v1/races/{race}/live alone")
    try:
        query = parse_qs(url.query, keep_blank_values=True, max_num_fields=8)
    except ValueError:
        raise _Refused(400, "too many query parameters") from None
    category = query.get("category", [""])[-1]
    top = query.get("n", [str(MAX_TOP)])[-1]
    if len(category) > MAX_CATEGORY or not top.isdigit() or not 1 <= int(top) <= MAX_TOP:
        raise _Refused(422, f"category is at most {MAX_CATEGORY} characters, n is 1 to {MAX_TOP}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _Refused(400, "a header line is malformed")
        headers[name.lower()] = value.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return _Request(
        url.path,
        match.group(1),
        (category, int(top)),
        token.strip() or None if scheme.lower() == "bearer" else None,  # as HTTPBearer: another scheme is no caller
        _event_id(headers.get("last-event-id") or query.get("last_event_id", [""])[-1]),
        "websocket" in headers.get("upgrade", "").lower(),
    )


def _event_id(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text) if len(text) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _Refused(400, "Last-Event-ID is not an id this stream sent")
    return value


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class _Tick:
    view: RaceView
    changed: bool  # the status differs from the tick before
    frames: dict[tuple[Key, bool, bool], bytes] = field(default_factory=dict)

    @property
    def id(self) -> float:
        return self.view.at

    def frame(self, key: Key, first: bool, websocket: bool) -> bytes:
        """The bytes of this tick for every stream of ``key``; ``first``: a stream's first, with the status;
        ``websocket``: as WebSocket text frames, else as Server-Sent Events."""
        frame = self.frames.get((key, first, websocket))
        if frame is None:
            status = status_event(self.view) if first or self.changed else ""
            board = live_event(self.view, *key)
            if websocket:
                frame = b"".join(
                    _FRAMES.send_data(text, fin=True)
                    for text in (
                        *([f'{{"event":"status","data":{_data(status)}}}'] if status else []),
                        f'{{"event":"leaderboard","id":"{self.id!r}","data":{_data(board)}}}',
                    )
                )
            else:
                frame = f"{status}id: {self.id!r}\n{board}".encode()
            self.frames[key, first, websocket] = frame
        return frame


def _data(event: str) -> str:
    """The JSON of a Server-Sent Event (``event: …\\ndata: {…}\\n\\n``: one line)."""
    return event[event.index("\ndata: ") + 7 : -2]


class _Stream(asyncio.Protocol):
    """One client: its request is read here, then it only receives (a WebSocket client: pings and a close)."""

    def __init__(self, server: PushServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.task: asyncio.Task | None = None
        self.race: _Race | None = None
        self.key: Key = ("", MAX_TOP)
        self.first = True  # nothing sent yet: the next tick comes with the status
        self.done = False
        self.deadline: asyncio.TimerHandle | None = None  # for the request's head (HEAD_TIMEOUT_S)
        self.ws: WSConnection | None = None  # a WebSocket client's connection, once its handshake is read
        self.early = bytearray()  # what a WebSocket client sent before its handshake was answered
        self.accepted = False
        self.inbound = 0  # bytes of the WebSocket message being received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.deadline = asyncio.get_running_loop().call_later(self.server.head_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        if self.task is None and not self.done:
            self.refuse(408, f"the request's head must arrive within {self.server.head_timeout:g} s", "")

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        if self.task is not None:  # the request was read: a stream takes nothing more, a WebSocket its frames
            if self.ws is not None:
                self._frames(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0 and len(self.head) <= HEAD_LIMIT:
            return
        if end < 0 or end > HEAD_LIMIT:
            self.refuse(431, f"the request line and headers are limited to {HEAD_LIMIT} bytes", "")
            return
        try:
            request = _parse(bytes(self.head[:end]))
            if request is not None and request.websocket:
                self.ws = _handshake(bytes(self.head[: end + 4]))
                self.early += self.head[end + 4 :]
        except _Refused as refused:
            self.refuse(refused.status, refused.detail, "")
            return
        if request is None:
            self.answer(_head(200, "OK", {"Content-Type": "text/plain", "Content-Length": "3"}) + b"ok\n")
            return
        if self.deadline is not None:
            self.deadline.cancel()
        self.task = asyncio.get_running_loop().create_task(self.server.open(self, request))

    def accept(self) -> None:
        """Answer the request: the event stream's head, or the WebSocket handshake."""
        assert self.transport is not None
        self.accepted = True
        if self.ws is None:
            head = {**api_headers(), "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store"}
            self.transport.write(_head(200, "OK", head) + _RETRY)
            return
        self.transport.write(self.ws.send(AcceptConnection()))
        early, self.early = bytes(self.early), bytearray()
        self._frames(early)

    def _frames(self, data: bytes) -> None:
        """A WebSocket client's frames: a ping is answered, a close is returned, anything big closes the stream."""
        assert self.ws is not None and self.transport is not None
        if not self.accepted:  # still being checked: kept for after the handshake
            self.early += data
            if len(self.early) > INBOUND_LIMIT:
                self.transport.abort()
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Ping):
                self.transport.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):  # the client's, or wsproto's for a broken frame
                self.answer(self._close(event.response()))
                return
            elif isinstance(event, Message):
                received = self.inbound + len(event.data)  # a message arrives in pieces, as its bytes do
                if received > INBOUND_LIMIT:
                    self.answer(
                        self._close(CloseConnection(CloseReason.MESSAGE_TOO_BIG, f"over {INBOUND_LIMIT} bytes"))
                    )
                    return
                self.inbound = 0 if event.message_finished else received

    def _close(self, close: CloseConnection) -> bytes:
        assert self.ws is not None
        try:
            return self.ws.send(close)
        except LocalProtocolError:  # already closing (a close answered, or one sent): nothing more to send
            return b""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        if self.race is not None:
            self.race.leave(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def send(self, tick: _Tick) -> None:
        """One tick, in this stream's encoding (shared by every stream of its board)."""
        if not self.done:  # a WebSocket client may have closed its end while still on the race's list
            self.write(tick.frame(self.key, self.first, self.ws is not None))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.first = False
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > BUFFER_LIMIT:
            self.server.dropped += 1
            self.transport.abort()  # connection_lost follows on the loop's next turn

    def end(self) -> None:
        """The stream is over (the race settled or went away): a WebSocket says so with a close frame."""
        if not self.done:
            self.answer(b"" if self.ws is None else self._close(CloseConnection(CloseReason.NORMAL_CLOSURE, "the end")))

    def answer(self, data: bytes) -> None:
        """The last bytes, then the end: a half-close, so that a client still sending reads them
        (a close with its bytes unread would reset the connection), and a close a little later."""
        assert self.transport is not None
        self.done = True
        self.transport.write(data)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(_CLOSE_AFTER_S, self.transport.close)

    def refuse(self, status: int, detail: str, path: str, headers: dict[str, str] | None = None, **extra) -> None:
        body = problem_json(path, status, detail, **extra)
        head = {
            **api_headers(),
            **(headers or {}),
            "Content-Type": "application/problem+json",
            "Content-Length": str(len(body)),
        }
        self.answer(_head(status, "Refused", head) + body)


def _handshake(head: bytes) -> WSConnection:
    """A server's end of the WebSocket whose opening handshake is ``head`` (refused as 400 if it is not one)."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(head)
        requested = [event for event in ws.events() if isinstance(event, Request)]
    except RemoteProtocolError as error:
        raise _Refused(400, f"not a WebSocket handshake: {error}") from None
    if not requested:
        raise _Refused(400, "not a WebSocket handshake")
    return ws


class _Race:
    """One watched race in this process: its ring of recent ticks and its streams by key."""

    def __init__(self, server: PushServer, race_id: str) -> None:
        self.server = server
        self.race_id = race_id
        self.ring: deque[_Tick] = deque(maxlen=server.ring)
        self.streams: dict[Key, set[_Stream]] = {}
        self.left_at = time.monotonic()
        self.task = asyncio.get_running_loop().create_task(self._follow())

    def join(self, stream: _Stream, key: Key, last_id: float | None) -> None:
        stream.race, stream.key = self, key
        self.streams.setdefault(key, set()).add(stream)
        if not self.ring:
            return  # the first tick is on its way: it goes to every stream
        if last_id is not None and self.ring[0].id <= last_id:  # the ring reaches back: no gap
            stream.first = False
            for tick in self.ring:
                if tick.id > last_id:
                    stream.send(tick)
        else:
            stream.send(self.ring[-1])
        if self.ring[-1].view.status in SETTLED:
            stream.end()

    def leave(self, stream: _Stream) -> None:
        streams = self.streams.get(stream.key)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self.streams[stream.key]
        if not self.streams:
            self.left_at = time.monotonic()

    async def _follow(self) -> None:
        try:
            async for view in self.server.arena.spectators.updates(self.race_id):
                tick = _Tick(view, changed=not self.ring or self.ring[-1].view.status != view.status)
                self.ring.append(tick)
                settled = view.status in SETTLED
                for streams in list(self.streams.values()):
                    for stream in list(streams):
                        stream.send(tick)
                        self.server.delivered += 1
                        if settled:  # as the API's stream: the last event, then the end
                            stream.end()
                if not self.streams and time.monotonic() - self.left_at > self.server.linger:
                    return
        except EngineError as error:  # the race went away (erased) or its host cannot be reached
            log.warning("push: race %s stopped: %s", self.race_id, error)
        finally:
            if self.server.races.get(self.race_id) is self:
                del self.server.races[self.race_id]
            for streams in self.streams.values():
                for stream in streams:
                    stream.end()


class PushServer:
    def __init__(
        self, arena: Arena, *, ring: int = RING, linger: float = LINGER_S, head_timeout: float = HEAD_TIMEOUT_S
    ) -> None:
        if ring < 1:
            raise ValueError("the ring must hold at least one tick")
        self.arena = arena
        self.ring = ring
        self.linger = linger
        self.head_timeout = head_timeout
        self.races: dict[str, _Race] = {}
        self.delivered = 0  # events written to streams
        self.dropped = 0  # streams dropped as too slow

    async def serve(self, host: str, port: int) -> asyncio.Server:
        """Listen on ``host:port`` beside the other push processes on the same port."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Stream(self), host, port, reuse_port=True, backlog=4096)

    async def open(self, stream: _Stream, request: _Request) -> None:
        try:
            caller = await authenticate(self.arena, request.token) if request.token else None
            await live_view(self.arena, request.race_id, caller, *request.key)
        except Problem as problem:
            stream.refuse(problem.status, problem.detail, request.path, problem.headers, **problem.extra)
            return
        except EngineError as error:
            told = engine_problem(error)
            if told is None:
                log.error("push: %s on %s: %s", error.code, request.path, error.message)
                told = Problem(500, "something went wrong on our side")
            stream.refuse(told.status, told.detail, request.path, told.headers, **told.extra)
            return
        if stream.transport is None or stream.transport.is_closing():
            return
        stream.accept()
        if stream.done:  # a WebSocket client closed or misbehaved in its first frames
            return
        race = self.races.get(request.race_id)
        if race is None:
            race = self.races[request.race_id] = _Race(self, request.race_id)
        race.join(stream, request.key, request.last_id)

    async def close(self) -> None:
        tasks = [race.task for race in self.races.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.arena.spectators.close()


async def run(settings: Settings, host: str, port: int) -> None:
    """One push process: join the cluster, serve until SIGINT or SIGTERM."""
    import ray

    files = raise_open_files()
    ray.init(address=settings.ray_address or "auto", namespace=settings.namespace, configure_logging=False)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    arena = Arena.build(settings)
    feed = TickFeed(settings)
    feed.start()
    arena.spectators = Spectators(arena.races.ref, tick=settings.spectator_tick, follow=feed)
    push = PushServer(arena)
    server = await push.serve(host, port)
    print(f"Push process {os.getpid()} on http://{host}:{port} (open files: {files}; Ctrl-C stops)", flush=True)
    await stopping.wait()
    server.close()
    await push.close()


def start_workers(host: str, port: int, workers: int, ray_address: str) -> subprocess.Popen:
    """``arena push --workers N`` as a child process, joined to the Ray at ``ray_address`` with this
    process's ``ARENA_*`` settings (``arena run`` with ``ARENA_PUSH_WORKERS``)."""
    if workers < 1:
        raise ValueError(f"workers is 1 or more, got {workers}")
    where = ["--host", host, "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(
        [sys.executable, "-m", "serve.cli", "push", *where], env={**os.environ, "ARENA_RAY_ADDRESS": ray_address}
    )


def stop_workers(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """Stop what ``start_workers`` started (SIGTERM: each worker closes its streams); killed after ``timeout``."""
    process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("push: the workers did not stop in %g s; killing them", timeout)
        for child in _children(process.pid):
            os.kill(child, signal.SIGKILL)
        process.kill()
        return process.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (a stream is a file); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft
