"""Which MQTT client should the hub receive with: paho-mqtt's own thread (``loop_start``) or aiomqtt?

Both subscribe at QoS 1 to one topic on a private Mosquitto (loopback, anonymous,
a free port) while a publisher process sends ``--messages`` small messages at QoS 1.
A receiver's rate is messages over the time from its first to its last message.
With ``--queued`` the publisher sends everything while the receiver is away (its
persistent session keeps the messages) and the receiver then drains the queue, so
the publisher's own speed does not bound the rate. Run:
``.venv/bin/python -m loadtest.bench_mqtt_clients``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.mosquitto import running_broker
from loadtest.server import free_port

TOPIC = "bench/clients"


@contextmanager
def _broker(directory: Path, messages: int):
    port = free_port()
    with running_broker(directory, port, None, None, persistence=False, max_inflight=1000, max_queued=messages + 1000):
        yield port


def _publish(port: int, messages: int, size: int, done: multiprocessing.Queue) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = threading.Event()
    count = [0]

    def on_publish(*_) -> None:
        count[0] += 1
        if count[0] == messages:
            acked.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    started = time.perf_counter()
    for _ in range(messages):
        client.publish(TOPIC, payload, qos=1)
    acked.wait(300)
    done.put(messages / (time.perf_counter() - started))
    client.disconnect()
    client.loop_stop()


def _session() -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 600
    return properties


class _Clock:
    def __init__(self, messages: int) -> None:
        self.messages, self.count, self.first, self.last = messages, 0, 0.0, 0.0

    def tick(self) -> bool:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        return self.count >= self.messages

    @property
    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 else 0.0


async def _paho(port: int, clock: _Clock, publisher: Callable[[], Awaitable[None]], queued: bool) -> None:
    done = threading.Event()
    subscribed = threading.Event()

    def client() -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=mqtt.MQTTv5)
        c.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = lambda *_: clock.tick() and done.set()
        c.connect("127.0.0.1", port, clean_start=False, properties=_session())
        c.loop_start()
        return c

    c = client()
    subscribed.wait(10)
    if queued:
        c.disconnect()
        c.loop_stop()
        await publisher()
        c = client()
        await asyncio.to_thread(done.wait, 300)
    else:
        await asyncio.gather(publisher(), asyncio.to_thread(done.wait, 300))
    c.disconnect()
    c.loop_stop()


async def _aiomqtt(port: int, clock: _Clock, publisher: Callable[[], Awaitable[None]], queued: bool) -> None:
    import aiomqtt

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier="bench-aiomqtt",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=_session(),
        )

    async def drain(c: aiomqtt.Client) -> None:
        async for _ in c.messages:
            if clock.tick():
                return

    async with client() as c:
        await c.subscribe(TOPIC, qos=1)
        if not queued:
            await asyncio.gather(publisher(), asyncio.wait_for(drain(c), 300))
            return
    await publisher()
    async with client() as c:
        await asyncio.wait_for(drain(c), 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64, help="payload bytes")
    parser.add_argument("--queued", action="store_true", help="publish while the receiver is away, then drain")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, _broker(Path(tmp), args.messages) as port:
        for name, receive in (("paho loop_start", _paho), ("aiomqtt", _aiomqtt)):
            clock = _Clock(args.messages)
            done: multiprocessing.Queue = context.Queue()

            async def publisher(done: multiprocessing.Queue = done) -> None:
                proc = context.Process(target=_publish, args=(port, args.messages, args.size, done))
                proc.start()
                await asyncio.to_thread(proc.join, 300)

            asyncio.run(receive(port, clock, publisher, args.queued))
            publisher_rate = done.get(timeout=10)
            rates[name] = clock.rate
            print(
                f"{name:16} received {clock.count:,}/{args.messages:,}: {clock.rate:,.0f} msg/s "
                f"(publisher {publisher_rate:,.0f} msg/s)",
                flush=True,
            )
    print(f"paho / aiomqtt = {rates['paho loop_start'] / rates['aiomqtt']:.2f}")


if __name__ == "__main__":
    main()
