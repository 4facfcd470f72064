"""Live race streams: the push tier (``arena push``) against today's Serve-hosted stream, in one run.

Starts a throwaway Arena (``loadtest.server``) with a live race and push processes joined to its
Ray, then holds SSE streams of the race (``/live?n=10``, one event a second) on each in turn,
from load-generator processes of their own (asyncio): ``--serve-streams`` on Serve (what it can
hold), then ``--streams`` on the push tier. For each it prints the CPU per delivered event of the
serving processes alone (``/proc/<pid>/stat``: the push processes and their tick relay; for
Serve, the API replicas and the ingress, HAProxy or Serve's proxy), and the delivery lag (arrival
minus the race's clock at the view) p50 and p99. The race's host is the same for both and not
counted. Every process raises its open-file limit to the hard limit (a stream is a file).

    python -m loadtest.bench_push --streams 2000
    python -m loadtest.bench_push --streams 20000 --serve-streams 2000 --clients 8 --push-workers 2 --ingress proxy
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from loadtest import server
from loadtest.bench_ingress import ORGANIZER, _seed
from loadtest.live_events import produced_at
from serve.push import raise_open_files

TOP = 10
_SERVE_PROCESSES = ("ServeReplica:arena:gateway", "ProxyActor", "haproxy")
_RELAY_PROCESS = "_Relay"  # serve.push_ticks: the push tier's one watch of each race


def _socket(source: str) -> socket.socket:
    """A socket bound to ``source``. Loopback connections to one port from one address share the
    ephemeral ports (28,000 here, and connect takes even ones first: past 14,000 each connect searched
    for minutes), so each load-generator process has an address of its own, and its port is chosen
    per destination at connect (``IP_BIND_ADDRESS_NO_PORT``)."""
    sock = socket.socket()
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
    try:
        sock.bind((source, 0))
    except OSError:
        sock.close()
        raise
    return sock


class _Window:
    """The measured window, shared with the load generators: set once every stream is open."""

    def __init__(self) -> None:
        self._start = multiprocessing.RawValue("d", math.inf)
        self._stop = multiprocessing.RawValue("d", math.inf)

    @property
    def start(self) -> float:
        return self._start.value

    @property
    def stop(self) -> float:
        return self._stop.value

    def open(self, start: float, stop: float) -> None:
        self._stop.value = stop
        self._start.value = start


class _Field:
    """What the streams of one load-generator process saw."""

    def __init__(self, streams: int, window: _Window) -> None:
        self.streams, self.window = streams, window
        self.lags: list[float] = []
        self.broken = self.held = self.opened = 0
        self.all_open = asyncio.Event()

    def settled(self) -> None:
        if self.opened + self.broken == self.streams:
            self.all_open.set()


class _Stream(asyncio.Protocol):
    """One SSE stream, read by callback: no task, no reader and no wake-up per event, so that the load
    generator spends little of the cores it shares with what it measures (it was ~56 µs an event
    through ``StreamReader.readuntil`` and a task per stream)."""

    __slots__ = ("field", "request", "buffer", "first", "counted", "transport")

    def __init__(self, field: _Field, request: bytes) -> None:
        self.field, self.request = field, request
        self.buffer = b""
        self.first = self.counted = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self.buffer = buffer
            return
        self.buffer, complete = buffer[end + 2 :], buffer[:end]
        if b"event: leaderboard\n" not in complete:
            return
        field = self.field
        if not self.first:
            self.first = True
            field.opened += 1
            field.settled()
        now = time.time()
        if field.window.start <= now < field.window.stop:
            for block in complete.split(b"\n\n"):
                if b"event: leaderboard\n" in block:
                    field.lags.append(now - produced_at(block[block.index(b"data: ") :]))
            field.held += not self.counted
            self.counted = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.field.broken += 1
        if not self.first:
            self.field.settled()


async def _hold(port: int, path: str, streams: int, window: _Window, ready: Any, source: str) -> dict:
    """``streams`` streams, then ``ready`` told once each has its first event (or failed); the leaderboard
    events of the window."""
    loop = asyncio.get_running_loop()
    field = _Field(streams, window)
    request = f"GET {path} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    opened: list[_Stream] = []

    async def one() -> None:
        try:
            sock = _socket(source)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", port))
            except OSError:
                sock.close()
                raise
            _, stream = await loop.create_connection(lambda: _Stream(field, request), sock=sock)
            opened.append(stream)
        except OSError:
            field.broken += 1
            field.settled()

    connects = []
    for _ in range(streams):  # opened at ~1,000 a second at most, so that the accept queues keep up
        connects.append(asyncio.create_task(one()))
        await asyncio.sleep(0.001)
    await asyncio.gather(*connects)
    await field.all_open.wait()
    ready.put(source)
    while time.time() < window.start:
        await asyncio.sleep(0.05)
    cpu = time.process_time()  # the load generator's own CPU in the window: is it the one behind the lag?
    while time.time() < window.stop:
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu
    broken_in_window = field.broken
    for stream in opened:
        if stream.transport is not None:
            stream.transport.close()
    await asyncio.sleep(0)
    return {"lags": field.lags, "broken": broken_in_window, "held": field.held, "cpu_s": cpu}


def _client(port: int, path: str, streams: int, window: _Window, ready: Any, out: Path, source: str) -> None:
    raise_open_files()
    try:
        import uvloop  # the loop the device swarm uses too: less CPU per read
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    out.write_text(json.dumps(run(_hold(port, path, streams, window, ready, source))))


def _cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _pids(arena: subprocess.Popen, names: tuple[str, ...]) -> list[int]:
    """The processes of ``arena`` (its local Ray) whose command line names one of ``names``."""
    return [
        p.pid
        for p in psutil.Process(arena.pid).children(recursive=True)
        if any(name in " ".join(p.cmdline()) for name in names)
    ]


def measure(
    name: str, port: int, path: str, pids: list[int], streams: int, args: argparse.Namespace, tmp: Path
) -> dict:
    window, ready = _Window(), multiprocessing.Queue()
    outs = [tmp / f"{name}-{i}.json" for i in range(args.clients)]
    share = [streams // args.clients + (i < streams % args.clients) for i in range(args.clients)]
    clients = [
        multiprocessing.Process(target=_client, args=(port, path, share[i], window, ready, outs[i], f"127.0.0.{2 + i}"))
        for i in range(args.clients)
    ]
    began = time.time()
    for client in clients:
        client.start()
    try:
        for _ in clients:
            ready.get(timeout=max(1.0, began + args.connect_timeout - time.time()))
    except queue.Empty:
        print(
            f"  {name}: not every stream had its first event in {args.connect_timeout:.0f} s; measuring those that had"
        )
    connect_s = time.time() - began
    start = time.time() + 3  # a few ticks with every stream open before counting
    window.open(start, start + args.seconds)
    time.sleep(max(0.0, start - time.time()))
    cpu = _cpu(pids)
    time.sleep(max(0.0, window.stop - time.time()))
    cpu = _cpu(pids) - cpu
    for client in clients:
        client.join()
    results = [json.loads(out.read_text()) for out in outs]
    lags = np.array([lag for r in results for lag in r["lags"]])
    events = len(lags)
    row = {
        "streams": streams,
        "events": events,
        "events_per_s": events / args.seconds,
        "cpu_s": cpu,
        "us_per_event": cpu / events * 1e6 if events else float("nan"),
        "lag_p50_ms": float(np.percentile(lags, 50) * 1000) if events else float("nan"),
        "lag_p99_ms": float(np.percentile(lags, 99) * 1000) if events else float("nan"),
        "held": sum(r["held"] for r in results),
        "broken": sum(r["broken"] for r in results),
        "processes": len(pids),
        "load_generator_cpu_s": sum(r["cpu_s"] for r in results),
        "connect_s": connect_s,
    }
    print(f"  {name:6} {json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()})}")
    return row


def _wait_push(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the push process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("the push processes did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description="Live race streams: the push tier against Serve, in one run.")
    parser.add_argument("--streams", type=int, default=2000, help="concurrent streams on the push tier (default 2000)")
    parser.add_argument(
        "--serve-streams",
        type=int,
        help="concurrent streams on Serve, what it can hold (default: --streams, at most 2000)",
    )
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds on each (default 20)")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument(
        "--connect-timeout", type=float, default=600, help="seconds for every stream's first event (default 600)"
    )
    parser.add_argument("--push-workers", type=int, default=1, help="push processes on one port (default 1)")
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy", help="Serve's ingress")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    serve_streams = args.serve_streams or min(args.streams, 2000)
    if not 1 <= args.clients <= 250:
        parser.error("--clients is 1 to 250 (each connects from an address of its own, 127.0.0.2 on)")
    files = raise_open_files()
    if files < args.streams // args.clients + 100:
        parser.error(
            f"{args.streams} streams over {args.clients} clients need more open files than {files}: more --clients"
        )

    with tempfile.TemporaryDirectory(prefix="arena-push-") as folder:
        tmp = Path(folder)
        port, push_port = server.free_port(), server.free_port()
        base = f"http://127.0.0.1:{port}"
        settings = {"admin_emails": json.dumps([ORGANIZER]), "replicas": "1"}
        arena = server.start_arena(tmp, port, ingress=args.ingress, **settings)
        push = None
        try:
            server.wait_healthy(base, arena)
            race = _seed(base)["race"]
            joined = server.ray_join(arena)
            env = server.environment(tmp, **settings) | joined | {"ARENA_RAY_ADDRESS": joined["RAY_ADDRESS"]}
            command = ["-m", "serve.cli", "push", "--port", str(push_port), "--workers", str(args.push_workers)]
            push = server.start(command, tmp, env, "push.log")
            _wait_push(push_port, push)
            path = f"/api/v1/races/{race}/live?n={TOP}"
            print(f"Race {race}, {args.seconds:.0f} s measured on each (open files: {files})", flush=True)
            results = {"serve": measure("serve", port, path, _pids(arena, _SERVE_PROCESSES), serve_streams, args, tmp)}
            pushers = [push.pid, *(c.pid for c in psutil.Process(push.pid).children(recursive=True))]
            relay = _pids(arena, (_RELAY_PROCESS,))  # started by the first stream of the push tier's warm-up
            results["push"] = measure("push", push_port, path, [*pushers, *relay], args.streams, args, tmp)
        except Exception:
            for log in ("server.log", "push.log"):
                if (tmp / log).exists():
                    print((tmp / log).read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if push is not None:
                server.stop(push)
            server.stop(arena)
    serve, pushed = results["serve"], results["push"]
    print(f"CPU per event: serve {serve['us_per_event']:.1f} µs at {serve['streams']} streams, push "
          f"{pushed['us_per_event']:.1f} µs at {pushed['streams']} (push / serve = "
          f"{pushed['us_per_event'] / serve['us_per_event']:.2f}×); lag p50/p99: serve {serve['lag_p50_ms']:.0f}/"
          f"{serve['lag_p99_ms']:.0f} ms, push {pushed['lag_p50_ms']:.0f}/{pushed['lag_p99_ms']:.0f} ms")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {**vars(args), "json": str(args.json)}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
