"""Domain events on a real NATS JetStream (127.0.0.1:4222, `nats-server -js`; .ci/run starts it):
the relay publishes the outbox with de-duplication, and a durable consumer replayed from the
start rebuilds the same aggregates as the outbox itself."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from connectors.nats_stream import JetStream, decode
from engine.codec import unpack
from engine.config import HostConfig
from engine.host import Host
from engine.relay import Relay
from persistence import open_store
from tests.conftest import require_service
from tests.test_events import KINDS

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def stream():
    require_service("NATS", "127.0.0.1", 4222)
    import nats

    name = f"T{uuid.uuid4().hex[:10].upper()}"
    publisher = JetStream(NATS_URL, stream=name, prefix=f"test.{name.lower()}")
    yield publisher
    await publisher.close()
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def _read_all(stream: JetStream) -> list:
    """Every message of the stream, from its first, through a durable pull consumer of our own."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        consumer = await js.pull_subscribe(
            f"{stream.prefix}.>", durable=f"rebuild-{uuid.uuid4().hex[:6]}", stream=stream.stream
        )
        messages = []
        kept = (await js.stream_info(stream.stream)).state.messages
        deadline = time.monotonic() + 60
        while True:
            try:
                batch = await consumer.fetch(500, timeout=1.0)
            except TimeoutError:  # nats' own and asyncio's: nothing came within the second
                if len(messages) >= kept or time.monotonic() > deadline:  # a busy machine may be slow to serve
                    return messages
                continue
            for message in batch:
                await message.ack()
            messages.extend(batch)
    finally:
        await nc.close()


async def test_the_relay_publishes_every_event_once_and_a_consumer_from_the_start_rebuilds_the_aggregates(
    tmp_path, stream
):
    host = Host(KINDS, open_store(f"sqlite:///{tmp_path}/arena.db"), HostConfig())
    await host.start()
    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    await store.open()

    async def ask(kind, entity_id, message_type, body=None):
        return await host.ask(kind, entity_id, message_type, body)

    relay = Relay(store, host.deliver, ask, [], streams=[stream], batch=200)
    try:
        for source in ("s1", "s2", "s3"):
            await host.ask("test_source", source, "ticks", {"count": 150, "to": []})
        await relay.drain()
        outbox = await store.read_events(0, 10_000)
        assert len(outbox) == 450 and stream.published == 450

        # The relay crashed before saving its cursor: it publishes everything again; JetStream keeps one.
        relay.progress["stream:nats"].position = 0
        await relay.drain()
        assert stream.published == 900

        messages = await _read_all(stream)
        assert len(messages) == 450
        events = [decode(m.data) for m in messages]
        assert [e["position"] for e in events] == [r.position for r in outbox]
        first = messages[0]
        assert first.subject == f"{stream.prefix}.test_source.test.ticked"
        assert first.headers["Nats-Msg-Id"] == outbox[0].id == events[0]["id"]
        assert (events[0]["type"], events[0]["version"], events[0]["user_id"]) == ("test.ticked", 1, "s1")

        def totals(items) -> Counter:
            counter: Counter = Counter()
            for fields in items:
                counter[fields["source"]] += fields["n"]
            return counter

        from_stream = totals(e["fields"] for e in events)
        assert (
            from_stream
            == totals(unpack(r.body) for r in outbox)
            == Counter({s: sum(range(1, 151)) for s in ("s1", "s2", "s3")})
        )
    finally:
        await host.stop()
        await store.close()


async def test_a_nats_server_that_is_down_holds_the_cursor_and_loses_nothing(tmp_path):
    """Publishing to a server that does not answer fails the batch: the cursor stays, nothing is skipped."""
    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    await store.open()
    from tests.test_events import _record

    await store.append([], [], [_record("s", n) for n in range(1, 4)])
    down = JetStream("nats://127.0.0.1:1", timeout=0.5)

    async def nothing(*args, **kwargs):
        raise AssertionError("no subscription should be asked")

    relay = Relay(store, nothing, nothing, [], streams=[down])
    try:
        with pytest.raises((TimeoutError, OSError)):
            await relay.step("stream:nats")
        assert relay.progress["stream:nats"].position == 0 and (await store.cursors()).get("stream:nats") is None
    finally:
        await store.close()
        await asyncio.sleep(0)
