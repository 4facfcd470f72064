"""The hub's own CPU per MQTT message and per sample, against the floor: a subscriber that only acknowledges.

One private Mosquitto (no password file, no ACL), a publisher process that sends
``--messages`` QoS 1 telemetry messages of ``--samples`` samples each at ``--rate``
messages/s from ``--connections`` connections spread over ``--devices`` device topics,
and a subscriber process, measured alone:

- **floor**: a bare asyncio protocol that cuts the stream into packets and writes a
  PUBACK for each PUBLISH (one write per socket read), nothing else;
- **decode**: the floor, and each payload through the hub's uplink decoder (msgspec), to
  show what decoding alone costs;
- **hub**: the real ``connectors.mqtt.Hub`` (its transport, uplink decoding, routes and
  per-race batches), its routes in memory and a stand-in cluster whose race answers
  ``ingest`` at once, in process, with the number of samples in the packed batch: the
  race's CPU, Ray and the journal are left out, the hub's own path is all that counts.

Both subscribers get the same stream, one after the other, on the same broker. The CPU
is the subscriber process's own (user + system, ``time.process_time``) from its first
message to its last acknowledgement; the publisher and the broker are not counted.
Run: ``.venv/bin/python -m loadtest.bench_mqtt_floor --messages 60000 --rate 5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from connectors.mosquitto import running_broker
from loadtest.mqtt_wire import Link, connect_packet, topic
from loadtest.server import free_port

RACES = 10
KINDS = ("floor", "decode", "hub")  # the subscribers, measured in turn
WAIT = 300  # seconds a subscriber waits for the whole stream


def _payloads(devices: int, samples: int, races: list[str]) -> list[bytes]:
    """A message per device, cycled: the hub decodes each in full, whatever its seq."""
    t = time.time()
    out = []
    for k in range(devices):
        body = [
            {"seq": s, "t": t + s, "distance": 3.0 * s, "speed": 3.0, "hr": 150, "lat": 45.0, "lon": 6.0}
            for s in range(samples)
        ]
        out.append(msgpack.packb({"race": races[k % len(races)], "samples": body}))
    return out


# -- the publisher -------------------------------------------------------------------


async def _publish(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    races = json.loads(args.races)
    payloads = _payloads(args.devices, args.samples, races)
    topics = [topic(f"arena/v1/devices/d{k}/telemetry") for k in range(args.devices)]
    acked = 0
    connected = loop.create_future()
    ready = 0

    def on_connack(code: int) -> None:
        nonlocal ready
        if code:
            raise SystemExit(f"the broker refused the publisher: {code}")
        ready += 1
        if ready == args.connections and not connected.done():
            connected.set_result(None)

    def on_ack() -> None:
        nonlocal acked
        acked += 1

    def publisher(client_id: str) -> Callable[[], Link]:
        return lambda: Link(connect_packet(client_id, keepalive=60), on_connack, on_ack, lambda: None)

    links: list[Link] = []
    for c in range(args.connections):
        factory = publisher(f"pub-{c}-{uuid.uuid4().hex[:6]}")
        links.append((await loop.create_connection(factory, "127.0.0.1", args.port))[1])
    await connected
    tick = 0.01
    per_tick = args.rate * tick
    sent, due, started = 0, 0.0, time.monotonic()
    while sent < args.messages:
        due += per_tick
        while sent < min(int(due), args.messages):
            device = sent % args.devices
            links[sent % args.connections].publish(topics[device], payloads[device])
            sent += 1
        await asyncio.sleep(max(0.0, started + tick * (sent / per_tick) - time.monotonic()))
    deadline = time.monotonic() + 60
    while acked < args.messages and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for link in links:
        link.close()
    print(json.dumps({"sent": sent, "acked": acked, "seconds": time.monotonic() - started}), flush=True)


# -- the subscribers ---------------------------------------------------------------


class _Floor(asyncio.Protocol):
    """Reads packets and acknowledges each PUBLISH: the least any QoS 1 subscriber does."""

    def __init__(self, done: asyncio.Future, count: int, decode: Callable[[bytes], object] | None) -> None:
        self.done, self.count, self.decode = done, count, decode
        self.transport: Any = None
        self.buffer = b""
        self.messages = 0
        self.started = 0.0
        self.connack = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.started:
            self.started = time.process_time()
        buffer = self.buffer + data if self.buffer else data
        end, at = len(buffer), 0
        acks: list[bytes] = []
        while end - at >= 2:
            size, shift, header = 0, 0, at + 1
            while True:
                if header >= end:
                    self.buffer = buffer[at:]
                    return self._ack(acks)
                digit = buffer[header]
                size |= (digit & 0x7F) << shift
                header += 1
                if not digit & 0x80:
                    break
                shift += 7
            if header + size > end:
                break
            kind = buffer[at] & 0xF0
            if kind == 0x30:
                mid_at = header + 2 + (buffer[header] << 8 | buffer[header + 1])
                acks.append(buffer[mid_at : mid_at + 2])
                if self.decode is not None:
                    self.decode(buffer[mid_at + 2 : header + size])
            elif kind == 0x20 and not self.connack.done():
                self.connack.set_result(None)
            at = header + size
        self.buffer = buffer[at:]
        self._ack(acks)

    def _ack(self, acks: list[bytes]) -> None:
        if acks:
            self.transport.write(b"".join(b"\x40\x02" + mid for mid in acks))
            self.messages += len(acks)
            if self.messages >= self.count and not self.done.done():
                self.done.set_result(time.process_time() - self.started)


async def _floor(args: argparse.Namespace) -> dict:
    from connectors.mqtt.codec import connect_packet as hub_connect
    from connectors.mqtt.codec import subscribe_packet
    from connectors.mqtt.uplink import uplink

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    decode = uplink if args.subscribe == "decode" else None
    _, floor = await loop.create_connection(lambda: _Floor(done, args.messages, decode), "127.0.0.1", args.port)
    hello = hub_connect(f"floor-{uuid.uuid4().hex[:6]}", username=None, password=None, keepalive=60, clean=True)
    floor.transport.write(hello)
    await floor.connack
    floor.transport.write(subscribe_packet(1, ["arena/v1/devices/+/telemetry"]))
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    cpu = await asyncio.wait_for(done, WAIT)
    floor.transport.close()
    return {"cpu": cpu, "messages": floor.messages, "samples": floor.messages * args.samples}


class StandInCluster:
    """The cluster as the hub asks it, answered here at once: live races, and ``ingest`` counting the batch."""

    def __init__(self) -> None:
        self.ingests = 0

    async def ask(self, kind: str, entity_id: str, message: str, fields: dict | None = None) -> Any:
        if message == "state":
            return {"exists": True, "status": None}  # not settled
        if message == "ingest":
            assert fields is not None
            self.ingests += 1
            return {"accepted": len(fields["samples"]) // 46, "not_in_race": []}
        if message == "lifecycle":
            return "live"
        if message == "device_map":
            return {}
        raise AssertionError(f"the stand-in cluster does not answer {kind}.{message}")

    def ref(self, cls: type, entity_id: str) -> Any:
        from engine.refs import Ref

        return Ref(self.ask, cls, entity_id)

    @contextlib.asynccontextmanager
    async def notices(self, cls: type, entity_id: str) -> Any:
        yield _Never()


class _Never:
    def __aiter__(self) -> _Never:
        return self

    async def __anext__(self) -> dict:
        await asyncio.Event().wait()
        raise StopAsyncIteration


async def _hub(args: argparse.Namespace) -> dict:
    from connectors.mqtt import Hub

    races = json.loads(args.races)
    table = {
        f"d{k}": {"owner": f"u{k}", "race_id": races[k % len(races)], "revoked": False} for k in range(args.devices)
    }

    async def route(device_id: str) -> dict | None:
        return table.get(device_id)

    cluster = StandInCluster()
    client_id = f"bench-{uuid.uuid4().hex[:6]}"
    hub = Hub(cluster, port=args.port, client_id=client_id, route=route, group=None)  # type: ignore[arg-type]
    await hub.start()
    for device_id in table:  # routes in hand, as for devices that stream on
        await hub._routes.lookup(device_id)
    print("ready", flush=True)
    while not hub.received:
        await asyncio.sleep(0.001)
    started = time.process_time()
    deadline = time.monotonic() + WAIT
    while hub.acked < args.messages:
        if time.monotonic() > deadline:
            raise SystemExit(f"the hub acknowledged {hub.acked} of {args.messages} messages in {WAIT} s")
        await asyncio.sleep(0.005)
    cpu = time.process_time() - started
    result = {"cpu": cpu, "messages": hub.acked, "samples": hub.accepted, "ingests": cluster.ingests}
    await hub.stop()
    await _forget(args.port, client_id)
    return result


async def _forget(port: int, client_id: str) -> None:
    """The hub's persistent session ended (a clean connect under its id), so the broker queues nothing for it."""
    from connectors.mqtt.codec import DISCONNECT
    from connectors.mqtt.codec import connect_packet as hub_connect

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(hub_connect(client_id, username=None, password=None, keepalive=60, clean=True))
    await reader.readexactly(4)  # CONNACK
    writer.write(DISCONNECT)
    writer.close()
    await writer.wait_closed()


def _subscribe(args: argparse.Namespace) -> None:
    if args.uvloop:
        import uvloop

        uvloop.install()
    result = asyncio.run(_hub(args) if args.subscribe == "hub" else _floor(args))
    print(json.dumps(result), flush=True)


# -- the run -----------------------------------------------------------------------


def _child(args: argparse.Namespace, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "loadtest.bench_mqtt_floor", "--port", str(args.port), "--messages", str(args.messages),
        "--samples", str(args.samples), "--devices", str(args.devices), "--races", args.races, *extra,
    ]  # fmt: skip
    if args.uvloop:
        command.append("--uvloop")
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _one(args: argparse.Namespace, kind: str) -> dict:
    subscriber = _child(args, "--subscribe", kind)
    assert subscriber.stdout is not None
    if subscriber.stdout.readline().strip() != "ready":
        raise SystemExit(f"the {kind} subscriber did not start")
    publisher = _child(args, "--publish", "--rate", str(args.rate), "--connections", str(args.connections))
    out, _ = publisher.communicate(timeout=args.messages / args.rate + 120)
    result = json.loads(subscriber.communicate(timeout=60)[0].strip().splitlines()[-1])
    result["published"] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--samples", type=int, default=5, help="samples per message")
    parser.add_argument("--rate", type=float, default=5_000, help="messages/s offered")
    parser.add_argument("--devices", type=int, default=2_000, help="device topics the messages are spread over")
    parser.add_argument("--connections", type=int, default=8, help="publisher connections")
    parser.add_argument("--rounds", type=int, default=1, help="floor and hub, one after the other, this many times")
    parser.add_argument("--uvloop", action="store_true", help="both subscribers on uvloop")
    internal = parser.add_argument_group("internal: the child processes")
    internal.add_argument("--port", type=int)
    internal.add_argument("--races")
    internal.add_argument("--publish", action="store_true")
    internal.add_argument("--subscribe", choices=KINDS)
    args = parser.parse_args()
    if args.publish:
        return asyncio.run(_publish(args))
    if args.subscribe:
        return _subscribe(args)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)
    args.races = json.dumps([uuid.uuid4().hex for _ in range(RACES)])
    args.port = free_port()
    rows: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
        with running_broker(Path(folder), args.port, None, None, max_inflight=1_000, max_queued=1_000_000):
            for _ in range(args.rounds):
                for kind in KINDS:
                    rows[kind].append(_one(args, kind))
    load = os.getloadavg()
    print(
        f"{args.messages:,} messages × {args.samples} samples at {args.rate:,.0f}/s, {args.devices:,} devices, "
        f"{RACES} races, {'uvloop' if args.uvloop else 'asyncio'}; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    best = {}
    for kind, results in rows.items():
        per_message = [r["cpu"] / r["messages"] * 1e6 for r in results]
        best[kind] = min(per_message)
        extra = f", {results[0]['ingests']} ingests" if kind == "hub" else ""
        print(
            f"  {kind:6}: CPU per message {' '.join(f'{m:.1f}' for m in per_message)} µs "
            f"(best {best[kind]:.1f}), per sample {best[kind] / args.samples:.2f} µs{extra}"
        )
    ratio = best["hub"] / best["floor"]
    print(f"  hub / floor per message: {ratio:.2f} (target <= 2)")
    print(f"  hub CPU per sample: {best['hub'] / args.samples:.2f} µs (target <= 5 at 5 samples/message)")


if __name__ == "__main__":
    main()
