"""A swarm of virtual watches and bike computers streaming race telemetry over MQTT (docs/mqtt.md).

Each device is one MQTT connection whose username is its id, as the broker's ACL
demands, so connections cannot be shared. One process drives tens of thousands of
them from one asyncio loop (uvloop when installed) with the few MQTT 3.1.1 packets a
device sends framed by ``loadtest.mqtt_wire`` (paho's client cost 190 µs of CPU per
device-second: the swarm, not the system under test, was the limit); ``--processes``
shards the devices over several such processes, and ``--brokers`` spreads them over
broker shards as Arena does (``connectors.mosquitto.broker_of``).

A device samples at ``--rate`` Hz and publishes every ``--samples-per-message``
samples, msgpack ``{"race": id, "samples": [...]}`` at QoS 1 to its race's lane,
``arena/v1/devices/{id}/telemetry/{lane}`` (what binding tells a device; ``--device-keyed``:
``.../telemetry``, as devices did before race lanes); its last will is ``{"state": "offline"}``,
retained on ``.../status``. Athletes follow a loop route with their own pace
(slowly changing), heart rate drifting up with noise and ±5 m GPS noise; some
devices drop out for a few seconds and come back on a new connection, resuming
their ``seq`` and sending what they buffered; ``--cheaters`` of them teleport or
ride in a car. Standalone::

    .venv/bin/python -m loadtest.device_swarm --devices 1000 --race RACE --password secret --seconds 30

As locust users (one connection each, paced at 1 Hz; PUBACK time is the response time)::

    ARENA_RACE=RACE ARENA_MQTT_PASSWORD=secret .venv/bin/locust -f loadtest/device_swarm.py \\
        --headless -u 200 -r 50 -t 60s --host mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import itertools
import json
import math
import multiprocessing
import os
import random
import sys
import time
from dataclasses import dataclass

import msgpack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mosquitto import broker_of, device_topics
from loadtest.mqtt_wire import Link, connect_packet, topic

TOPIC = "arena/v1/devices/{}/{}"
OFFLINE = json.dumps({"state": "offline"}).encode()
ONLINE = json.dumps({"state": "online"}).encode()
MAX_SAMPLES = 1_000  # per message when a device sends what it buffered while offline
_EARTH_M_PER_DEG = 111_195.0


class Route:
    """A closed loop of lat/lon points; a position is a distance along it."""

    def __init__(self, centre: tuple[float, float] = (45.07, 7.69), radius_m: float = 1_600, points: int = 48) -> None:
        lat0, lon0 = centre
        scale = math.cos(math.radians(lat0))
        self.points = [
            (
                lat0 + radius_m * (1 + 0.2 * math.sin(3 * a)) * math.sin(a) / _EARTH_M_PER_DEG,
                lon0 + radius_m * (1 + 0.2 * math.sin(3 * a)) * math.cos(a) / (_EARTH_M_PER_DEG * scale),
            )
            for a in (2 * math.pi * k / points for k in range(points))
        ]
        self._scale = scale
        self.legs = [self._metres(p, q) for p, q in zip(self.points, self.points[1:] + self.points[:1])]
        self.length = sum(self.legs)
        self._starts = list(itertools.accumulate(self.legs, initial=0.0))[:-1]  # where each leg begins

    def _metres(self, p: tuple[float, float], q: tuple[float, float]) -> float:
        return math.hypot((q[0] - p[0]) * _EARTH_M_PER_DEG, (q[1] - p[1]) * _EARTH_M_PER_DEG * self._scale)

    def at(self, distance: float) -> tuple[float, float]:
        left = distance % self.length
        k = bisect.bisect_right(self._starts, left) - 1
        (a, b), (c, d) = self.points[k], self.points[(k + 1) % len(self.points)]
        f = (left - self._starts[k]) / self.legs[k]
        return a + (c - a) * f, b + (d - b) * f


@dataclass
class Athlete:
    """The body behind a device: what it would measure at each sample."""

    pace: float  # m/s, changes slowly
    hr: float
    cheat: str | None  # None, "teleport" or "car"
    distance: float = 0.0
    seq: int = 0
    _base: float = 0.0

    def __post_init__(self) -> None:
        self._base = self.pace

    def sample(self, route: Route, t: float, dt: float, rng: random.Random) -> dict:
        self.pace += (self._base - self.pace) * 0.01 + rng.gauss(0, 0.05)  # slow drift around the base
        speed = 25.0 if self.cheat == "car" else max(0.5, self.pace)
        self.distance += speed * dt
        if self.cheat == "teleport" and rng.random() < 0.02:
            self.distance += rng.uniform(500, 3_000)
        self.hr = min(200.0, self.hr + 0.01 * dt + rng.gauss(0, 0.3))
        lat, lon = route.at(self.distance)
        noise = 5.0 / _EARTH_M_PER_DEG
        self.seq += 1
        return {
            "seq": self.seq,
            "t": round(t, 3),
            "distance": round(self.distance, 2),
            "lat": lat + rng.uniform(-noise, noise),
            "lon": lon + rng.uniform(-noise, noise),
            "speed": round(speed + rng.gauss(0, 0.2), 2),
            "hr": int(self.hr + rng.gauss(0, 2)),
        }


def athlete(rng: random.Random, cheaters: float) -> Athlete:
    cheat = rng.choice(("teleport", "car")) if rng.random() < cheaters else None
    return Athlete(
        pace=rng.uniform(2.5, 4.5) if rng.random() < 0.5 else rng.uniform(6.5, 10), hr=rng.uniform(95, 120), cheat=cheat
    )


def new_client(device_id: str, password: str | None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    if password is not None:
        client.username_pw_set(device_id, password)
    client.will_set(TOPIC.format(device_id, "status"), OFFLINE, qos=1, retain=True)
    client.max_queued_messages_set(0)
    return client


class _Device:
    __slots__ = (
        "id", "athlete", "topic", "status", "hello", "broker", "buffer", "offline_until", "link", "connected", "due"
    )  # fmt: skip

    def __init__(self, device_id: str, athlete: Athlete, broker: tuple[str, int], hello: bytes, telemetry: str) -> None:
        self.id, self.athlete, self.broker, self.hello = device_id, athlete, broker, hello
        self.topic = topic(telemetry)
        self.status = topic(TOPIC.format(device_id, "status"))
        self.buffer: list[dict] = []
        self.offline_until = 0.0
        self.link: Link | None = None
        self.connected = False
        self.due = 1  # samples buffered before the next message


def _free_fds(needed: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed + 64), hard))


def brokers(args: argparse.Namespace) -> list[tuple[str, int]]:
    """``--brokers host:port,...`` (the shards, in Arena's order), else ``--host``/``--port``."""
    if not args.brokers:
        return [(args.host, args.port)]
    out = []
    for item in args.brokers.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host or "127.0.0.1", int(port)))
    return out


def run_shard(args: argparse.Namespace, first: int, count: int, report: multiprocessing.Queue | None = None) -> dict:
    """Drive devices ``first .. first + count - 1`` from this process's one event loop; their counts at the end."""
    _free_fds(count)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_shard(args, first, count, report))
    return uvloop.run(_shard(args, first, count, report))


async def _shard(args: argparse.Namespace, first: int, count: int, report: multiprocessing.Queue | None) -> dict:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed + first)
    route = Route()
    shards = brokers(args)
    stats = dict.fromkeys(("connected", "refused", "connect_errors", "messages", "samples", "acked", "dropouts"), 0)
    keepalive = min(300, max(60, math.ceil(3 * args.samples_per_message / args.rate)))
    devices = []
    for k in range(count):
        device_id = f"{args.prefix}{first + k}"
        hello = connect_packet(
            device_id,
            username=device_id if args.password is not None else None,
            password=args.password,
            will_topic=TOPIC.format(device_id, "status"),
            will_payload=OFFLINE,
            keepalive=keepalive,
        )
        broker = shards[broker_of(device_id, len(shards))]
        telemetry = device_topics(device_id, None if args.device_keyed else args.race)["telemetry"]
        devices.append(_Device(device_id, athlete(rng, args.cheaters), broker, hello, telemetry))
    race, spm = args.race, args.samples_per_message
    for device in devices:
        # The first message after 1 … spm samples, then every spm: devices that all started
        # sampling within the same second would otherwise all publish in that same second
        # of every spm, a burst no real field of devices makes.
        device.due = rng.randint(1, spm)
    answered = 0
    connecting: set[asyncio.Task] = set()

    def send(device: _Device) -> None:
        assert device.link is not None
        while device.buffer:
            chunk, device.buffer = device.buffer[:MAX_SAMPLES], device.buffer[MAX_SAMPLES:]
            device.link.publish(device.topic, msgpack.packb({"race": race, "samples": chunk}))
            stats["messages"] += 1
            stats["samples"] += len(chunk)
        device.due = spm

    def on_connack(device: _Device, code: int) -> None:
        nonlocal answered
        answered += 1
        assert device.link is not None
        if code:
            stats["refused"] += 1
            device.link.close()
            return
        device.connected = True
        stats["connected"] += 1
        device.link.publish(device.status, ONLINE, retain=True)
        if len(device.buffer) >= device.due:
            send(device)  # what it buffered while offline

    def on_ack() -> None:
        stats["acked"] += 1

    def on_lost(device: _Device) -> None:
        device.connected = False

    async def connect(device: _Device) -> None:
        nonlocal answered
        link = Link(device.hello, functools.partial(on_connack, device), on_ack, functools.partial(on_lost, device))
        device.link = link
        try:
            await loop.create_connection(lambda: link, *device.broker)
        except OSError:
            stats["connect_errors"] += 1
            answered += 1

    def spawn(device: _Device) -> None:
        task = loop.create_task(connect(device))
        connecting.add(task)
        task.add_done_callback(connecting.discard)

    started = loop.time()
    for k, device in enumerate(devices):  # ramp, so the broker's accept backlog keeps up
        spawn(device)
        if k % 200 == 199:
            await asyncio.sleep(max(0.0, started + (k + 1) / args.connect_rate - loop.time()))
    deadline = loop.time() + 60
    while answered < count and loop.time() < deadline:
        await asyncio.sleep(0.05)
    ramp = loop.time() - started
    print(f"shard {first}: {stats['connected']}/{count} connected in {ramp:.1f} s", file=sys.stderr, flush=True)
    if report is not None:
        report.put(("ready", first))

    period = 1.0 / args.rate
    phase = [rng.random() * period for _ in devices]  # each device samples at its own instant
    nxt = [loop.time() + p for p in phase]
    begin = loop.time()
    end = begin + args.seconds
    wheel = sorted(range(count), key=lambda k: phase[k])
    cursor = 0
    while (now := loop.time()) < end:
        for _ in range(count):  # every device whose sample is due, in phase order
            k = wheel[cursor]
            if nxt[k] > now:
                break
            cursor = (cursor + 1) % count
            nxt[k] += period
            device = devices[k]
            device.buffer.append(device.athlete.sample(route, time.time(), period, rng))
            if device.offline_until:
                if now >= device.offline_until:
                    device.offline_until = 0.0
                    spawn(device)  # a new connection; it sends its buffer once accepted
                continue
            if device.connected and rng.random() < args.dropout * period:  # silent: the broker sends the will
                stats["dropouts"] += 1
                device.offline_until = now + rng.uniform(2, 8)
                device.connected = False
                assert device.link is not None
                device.link.close(graceful=False)
                continue
            if device.connected and len(device.buffer) >= device.due:
                send(device)
        # Several milliseconds of due devices per wake-up, not one wake-up per device.
        await asyncio.sleep(max(0.005, min(nxt[wheel[cursor]], end) - loop.time()))
    await asyncio.sleep(2.0)  # the last PUBACKs
    for device in devices:
        if device.link is not None:
            device.link.close()
    for task in connecting:
        task.cancel()
    await asyncio.sleep(0.1)
    stats["seconds"] = loop.time() - begin
    if report is not None:
        report.put(("done", stats))
    return stats


def run(args: argparse.Namespace, on_ready=None) -> dict:
    """The whole swarm, sharded over ``args.processes``; the summed counts."""
    if args.processes == 1:
        return run_shard(args, args.first, args.devices)
    report: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    shards = [
        args.devices // args.processes + (1 if k < args.devices % args.processes else 0) for k in range(args.processes)
    ]
    procs, first = [], args.first
    for count in shards:
        proc = multiprocessing.get_context("spawn").Process(target=run_shard, args=(args, first, count, report))
        proc.start()
        procs.append(proc)
        first += count
    ready, total = 0, {}
    while ready < len(procs):
        kind, _ = report.get(timeout=120)
        ready += kind == "ready"
    if on_ready is not None:
        on_ready()
    done = 0
    while done < len(procs):
        kind, stats = report.get(timeout=args.seconds + 120)
        if kind == "done":
            done += 1
            for key, value in stats.items():
                total[key] = max(total.get(key, 0), value) if key == "seconds" else total.get(key, 0) + value
    for proc in procs:
        proc.join(10)
    return total


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--samples-per-message", type=int, default=1, help="samples a device buffers before publishing")
    p.add_argument("--rate", type=float, default=1.0, help="samples per second per device")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to publish")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--brokers", default=None, help="host:port,... broker shards; a device goes to broker_of(its id)")
    p.add_argument("--race", default="race", help="race id in every message")
    p.add_argument(
        "--device-keyed",
        action="store_true",
        help="publish to .../telemetry, not the race's lane (devices before lanes)",
    )
    p.add_argument("--prefix", default="dev-", help="device ids are PREFIX + index (also their MQTT username)")
    p.add_argument("--first", type=int, default=0, help="index of the first device")
    p.add_argument("--password", default=None, help="one password for every device (none: anonymous)")
    p.add_argument("--cheaters", type=float, default=0.01, help="fraction of devices that teleport or drive")
    p.add_argument("--dropout", type=float, default=0.002, help="chance per device-second of going silent 2–8 s")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--connect-rate", type=float, default=1_000, help="new connections per second per process")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.devices < 1 or args.processes < 1 or args.rate <= 0 or args.samples_per_message < 1:
        raise SystemExit("--devices, --processes and --samples-per-message are at least 1, --rate is positive")
    if not 0 <= args.cheaters <= 1:
        raise SystemExit("--cheaters is a fraction between 0 and 1")
    stats = run(args)
    print(json.dumps(stats), flush=True)


def _locust_users() -> None:
    import threading

    import gevent
    from gevent.socket import wait_read
    from locust import User, constant_pacing, task

    seeded: dict = {}

    def next_device(default_host: str | None) -> tuple[str, str | None, str, str, int] | None:
        """(id, password, race, broker host, port) of the next device this process drives, or None."""
        path = os.environ.get("ARENA_DEVICES")
        if path:  # devices seeded in Arena (``loadtest.crowd --devices``): each one once
            if not seeded:
                with open(path) as file:
                    crowd = json.load(file)
                seeded.update(crowd["broker"], race=crowd["race"], devices=iter(crowd["devices"]))
            device = next(seeded["devices"], None)
            if device is None:
                return None
            return device["id"], device["password"], seeded["race"], seeded["host"], int(seeded["port"])
        MqttDevice._count += 1
        host, _, port = (default_host or "mqtt://127.0.0.1:1883").removeprefix("mqtt://").partition(":")
        device_id = f"{os.environ.get('ARENA_DEVICE_PREFIX', 'dev-')}{os.getpid()}-{MqttDevice._count}"
        return (
            device_id,
            os.environ.get("ARENA_MQTT_PASSWORD"),
            os.environ.get("ARENA_RACE", "race"),
            host,
            int(port or 1883),
        )

    class MqttDevice(User):
        """One device per locust user: its own paho client, whose network loop is a greenlet that waits
        on gevent's hub (paho's ``loop_start`` uses ``select()``, blind past descriptor 1024: about
        330 clients per process).

        It publishes one sample a second (``constant_pacing``, whatever the PUBACK takes) at QoS 1
        and reports each message as a request ``MQTT telemetry`` whose time is the PUBACK's; no
        PUBACK within ``PUBACK_S`` is a failure. Connecting is reported as ``MQTT connect``.
        With ``ARENA_DEVICES`` (a file of seeded devices: broker, race, ids and passwords) each
        user is one of them, and users beyond them stay idle; otherwise ids are made up, every
        device signs in with ``ARENA_MQTT_PASSWORD`` and the broker is ``--host mqtt://host:port``.
        """

        wait_time = constant_pacing(1.0)
        PUBACK_S = 10.0
        _count = 0

        def on_start(self) -> None:
            self.client, self.network = None, None
            device = next_device(self.host)
            if device is None:
                return
            self.id, password, self.race, host, port = device
            self.athlete, self.route, self.rng = athlete(random.Random(), 0.01), Route(), random.Random()
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.id, protocol=mqtt.MQTTv5)
            if password is not None:
                self.client.username_pw_set(self.id, password)
            self.client.will_set(TOPIC.format(self.id, "status"), OFFLINE, qos=1, retain=True)
            self.client.max_queued_messages_set(0)
            answered, refused = threading.Event(), []

            def on_connect(client, userdata, flags, reason, properties) -> None:
                if reason.is_failure:
                    refused.append(str(reason))
                else:
                    client.publish(TOPIC.format(self.id, "status"), ONLINE, qos=1, retain=True)
                answered.set()

            self.client.on_connect = on_connect
            started = time.perf_counter()
            error: Exception | None = None
            try:
                self.client.connect(host, port, keepalive=60)
                self.network = gevent.spawn(self._network, self.client)
                if not answered.wait(30):
                    error = TimeoutError("no CONNACK in 30 s")
                elif refused:
                    error = ConnectionRefusedError(refused[0])
            except OSError as failure:
                error = failure
            self._report("connect", started, error)

        def _network(self, client: mqtt.Client) -> None:
            """Read when the socket is readable, write what is queued, keep alive; reconnect when lost."""
            while True:
                sock = client.socket()
                if sock is None:  # the connection was lost: paho queues QoS 1 messages until it is back
                    gevent.sleep(1.0)
                    try:
                        client.reconnect()
                    except OSError:
                        pass
                    continue
                try:
                    wait_read(sock.fileno(), timeout=5.0)
                    client.loop_read()
                except TimeoutError:
                    pass
                except OSError:
                    client.loop_misc()  # notices the broken connection
                if client.want_write():
                    client.loop_write()
                client.loop_misc()

        def _report(self, name: str, started: float, error: Exception | None) -> None:
            self.environment.events.request.fire(
                request_type="MQTT",
                name=name,
                response_time=(time.perf_counter() - started) * 1000,
                response_length=0,
                exception=error,
                context={},
            )

        @task
        def telemetry(self) -> None:
            if self.client is None:  # more users than seeded devices
                gevent.sleep(1.0)
                return
            body = {"race": self.race, "samples": [self.athlete.sample(self.route, time.time(), 1.0, self.rng)]}
            started = time.perf_counter()
            info = self.client.publish(device_topics(self.id, self.race)["telemetry"], msgpack.packb(body), qos=1)
            error = None
            try:
                info.wait_for_publish(self.PUBACK_S)
                if not info.is_published():
                    error = TimeoutError(f"no PUBACK in {self.PUBACK_S:.0f} s")
            except (RuntimeError, ValueError) as failure:
                error = failure
            self._report("telemetry", started, error)

        def on_stop(self) -> None:
            if self.client is not None:
                self.client.disconnect()
            if self.network is not None:
                self.network.kill(block=False)

    globals()["MqttDevice"] = MqttDevice


if "locust" in sys.modules:
    _locust_users()

if __name__ == "__main__":
    main()
