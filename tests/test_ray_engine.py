"""The engine on a real Ray cluster, against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from engine.cluster import Cluster
from engine.config import HostConfig
from engine.errors import EngineError, HostUnavailable, MalformedMessage, UnknownKind
from engine.ray_host import HostSpec
from serve.kinds import OPEN_STORE

pytestmark = pytest.mark.ray

KINDS = ("tests.entities:Counter", "tests.entities:Room")


@pytest.fixture
def cluster(ray_cluster, store_url):
    spec = HostSpec(store_url, KINDS, HostConfig(snapshot_interval=0.5), hosts=2, shards=64, open_store=OPEN_STORE)
    made = Cluster(spec, namespace=f"test-{uuid.uuid4().hex[:8]}")
    yield made
    made.kill()


async def test_messages_reach_entities_spread_over_hosts(cluster):
    ids = [f"{cluster.namespace}-e{i}" for i in range(40)]
    results = await cluster.deliver([("counter", i, "add", {"amount": 2}, None) for i in ids])
    assert results == [2] * 40
    metrics = await cluster.metrics()
    assert all(m["alive"] for m in metrics)
    assert sum(m["active_entities"] for m in metrics) == 40
    assert all(m["active_entities"] > 0 for m in metrics[:2])  # both shared hosts got some
    # Each host's process collects young objects at its config's pace (engine.gc_tuning) and reports its CPU.
    assert all(m["gc_young"] == HostConfig().gc_young and m["cpu_seconds"] > 0 for m in metrics)


async def test_errors_travel_as_values_and_the_host_keeps_serving(cluster):
    a = f"{cluster.namespace}-a"
    results = await cluster.deliver(
        [
            ("counter", a, "add", {"amount": 1}, None),
            ("ghost", a, "add", {}, None),
            ("counter", a, "add", {"amount": 1, "extra": True}, None),
            ("counter", a, "add", {"amount": 1}, None),
        ]
    )
    assert results[0] == 1 and results[3] == 2
    assert isinstance(results[1], UnknownKind)
    assert isinstance(results[2], MalformedMessage)
    value = await cluster.ask("counter", a, "value")
    assert (value["total"], value["applied"]) == (2, [])


async def test_asks_made_together_travel_in_one_call_per_host_and_each_caller_gets_its_own_answer(cluster, monkeypatch):
    calls = []
    real = Cluster.call_host

    async def counted(handle, batch, size):
        calls.append(size)
        return await real(handle, batch, size)

    monkeypatch.setattr(Cluster, "call_host", staticmethod(counted))
    ids = [f"{cluster.namespace}-c{i}" for i in range(60)]
    answers = await asyncio.gather(
        *(cluster.ask("counter", i, "add", {"amount": n}) for n, i in enumerate(ids)),
        cluster.ask("ghost", ids[0], "add", {}),
        return_exceptions=True,
    )
    assert answers[:60] == list(range(60))
    assert isinstance(answers[60], UnknownKind)  # one bad envelope fails only its own caller
    assert sum(calls) == 61 and len(calls) <= 2  # two shared hosts: at most one call each

    calls.clear()
    assert await cluster.ask("counter", ids[1], "add", {"amount": 1}) == 2  # alone, it leaves at once
    assert calls == [1]


async def test_one_cluster_serves_callers_on_two_event_loops_at_once(cluster):
    ids = [f"{cluster.namespace}-l{i}" for i in range(20)]

    async def add_all(amount: int) -> list:
        return await asyncio.gather(*(cluster.ask("counter", i, "add", {"amount": amount}) for i in ids))

    other = asyncio.to_thread(asyncio.run, add_all(100))  # a second loop, in its own thread
    here, there = await asyncio.wait_for(asyncio.gather(add_all(1), other), 60)
    assert all(a in (1, 101) and b in (100, 101) and a + b in (102, 201) for a, b in zip(here, there))
    assert [(await cluster.ask("counter", i, "value"))["total"] for i in ids] == [101] * len(ids)


async def test_a_host_answers_garbage_bytes_with_a_clear_error(cluster):
    a = f"{cluster.namespace}-a"
    handle = cluster.host_for("counter", a)
    for garbage in (b"\xc1", b"\x93\x01", b"not msgpack at all \xff\xfe", b""):
        answers = await Cluster.call_host(handle, garbage, 1)
        assert isinstance(answers[0], MalformedMessage), garbage
    assert await cluster.ask("counter", a, "add", {"amount": 1}) == 1


async def test_a_dedicated_kind_gets_a_host_of_its_own(cluster):
    room = f"{cluster.namespace}-final"
    assert await cluster.ask("room", room, "enter", {"who": "ana"}) == 1
    assert await cluster.ask("room", room, "who") == ["ana"]
    metrics = await cluster.metrics()
    dedicated = [m for m in metrics if m.get("dedicated")]
    assert len(dedicated) == 1 and dedicated[0]["active_by_kind"] == {"room": 1}
    assert {m["pid"] for m in metrics if not m.get("dedicated")}.isdisjoint({dedicated[0]["pid"]})


async def test_sigkill_of_a_host_mid_stream_loses_no_acknowledged_message_and_applies_none_twice(cluster):
    """10,000 journaled messages stream to one host's entities; its process is killed halfway."""
    entities = [f"{cluster.namespace}-k{i}" for i in range(50)]
    host = cluster.host_for("counter", entities[0])
    entities = [e for e in entities if cluster.host_for("counter", e) is host] or entities[:1]
    pid = await host.pid.remote()
    acked: set[str] = set()
    failed: list[str] = []
    killed = False
    batch_size, total = 100, 10_000

    async def send(start: int) -> None:
        envelopes = [
            ("counter", entities[n % len(entities)], "add", {"amount": 1, "tag": f"m{n}"}, None)
            for n in range(start, start + batch_size)
        ]
        for envelope, result in zip(envelopes, await cluster.deliver(envelopes)):
            tag = envelope[3]["tag"]
            if isinstance(result, EngineError):
                assert isinstance(result, HostUnavailable), result
                failed.append(tag)
            else:
                acked.add(tag)

    starts = list(range(0, total, batch_size))
    for group in range(0, len(starts), 4):  # four batches in flight at a time
        await asyncio.gather(*(send(s) for s in starts[group : group + 4]))
        if not killed and len(acked) >= total // 3:
            os.kill(pid, signal.SIGKILL)
            killed = True
    assert killed and failed, "the kill should have cut some batches off"

    assert await host.pid.remote() != pid  # Ray restarted the host in a new process
    seen: list[str] = []
    total_applied = 0
    for entity in entities:
        value = await cluster.ask("counter", entity, "value")
        seen.extend(value["applied"])
        total_applied += value["total"]
    assert len(seen) == len(set(seen)) == total_applied, "a message was applied twice"
    assert acked <= set(seen), f"{len(acked - set(seen))} acknowledged messages were lost"
    assert set(seen) <= acked | set(failed)
