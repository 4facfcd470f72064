"""Live per-user events between replicas: Redis pub/sub and the Ray actor fallback."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.bus.event_log import RayBus, _EventLog
from engine.codec import pack
from persistence.redis_bus import RedisBus
from serve.bus import bus

WAIT = 20.0  # generous: a first Ray actor start on a busy 2-core machine takes seconds


@pytest.fixture(params=["redis", "ray"])
async def make(request):
    """Builds buses of one kind that share a backend, as the replicas of one deployment do."""
    if request.param == "redis":
        url, namespace = request.getfixturevalue("redis_url"), None
    else:
        ray = request.getfixturevalue("ray_cluster")
        url, namespace = None, f"test-bus-{uuid.uuid4().hex[:8]}"
    made = []

    def build(**options):
        made.append(RedisBus(url, **options) if url else RayBus(namespace=namespace, **options))
        return made[-1]

    yield build
    for one in made:
        await one.aclose()
    if namespace is not None:
        try:
            ray.kill(ray.get_actor("arena-bus", namespace=namespace))
        except ValueError:  # the test never reached the actor
            pass


async def next_event(subscription) -> dict:
    return await asyncio.wait_for(anext(subscription), WAIT)


async def test_every_subscriber_of_a_user_gets_the_event_and_no_one_else_does(make):
    one = make()
    async with asyncio.timeout(WAIT * 3):
        async with one.subscribe("ana") as first, one.subscribe("ana") as second, one.subscribe("bob") as other:
            await one.publish("ana", {"type": "kudos", "n": 1})
            await one.publish("bob", {"type": "marker"})
            assert await next_event(first) == {"type": "kudos", "n": 1}
            assert await next_event(second) == {"type": "kudos", "n": 1}
            assert await next_event(other) == {"type": "marker"}  # ana's event came first and was not bob's


async def test_events_published_before_subscribing_are_not_delivered(make):
    one = make()
    async with asyncio.timeout(WAIT * 3):
        async with one.subscribe("bob"):  # the transport is already running for someone else
            await one.publish("ana", {"n": 0})
            async with one.subscribe("ana") as late:
                await one.publish("ana", {"n": 1})
                assert await next_event(late) == {"n": 1}
                await one.publish("ana", {"n": 2})  # may still be on its way to this replica
                async with one.subscribe("ana") as later:
                    await one.publish("ana", {"n": 3})
                    assert await next_event(later) == {"n": 3}
                    assert [await next_event(late) for _ in range(2)] == [{"n": 2}, {"n": 3}]


async def test_leaving_stops_delivery_and_ends_the_iteration(make):
    one = make()
    async with asyncio.timeout(WAIT * 3):
        async with one.subscribe("ana") as staying:
            async with one.subscribe("ana") as leaving:
                await one.publish("ana", {"n": 1})
                assert await next_event(leaving) == {"n": 1}
            await one.publish("ana", {"n": 2})
            assert await next_event(staying) == {"n": 1}
            assert await next_event(staying) == {"n": 2}
            with pytest.raises(StopAsyncIteration):
                await next_event(leaving)
        await one.publish("ana", {"n": 3})  # nobody listens: dropped
        async with one.subscribe("ana") as again:
            await one.publish("ana", {"n": 4})
            assert await next_event(again) == {"n": 4}


async def test_one_replica_publishes_and_another_replicas_subscriber_receives(make):
    api_1, api_2 = make(), make()
    async with asyncio.timeout(WAIT * 3):
        async with api_2.subscribe("ana") as stream:
            await api_1.publish("ana", {"type": "follow", "from": "bob"})
            assert await next_event(stream) == {"type": "follow", "from": "bob"}
            await api_2.publish("ana", {"type": "follow", "from": "eve"})
            assert await next_event(stream) == {"type": "follow", "from": "eve"}


async def test_a_slow_subscriber_loses_its_oldest_events_and_is_told_while_others_get_all(make):
    one = make(queue_size=4)
    async with asyncio.timeout(WAIT * 3):
        async with one.subscribe("ana") as fast, one.subscribe("ana") as slow:
            for n in range(10):
                await one.publish("ana", {"n": n})
                assert await next_event(fast) == {"n": n}
            assert await next_event(slow) == {"type": "lagged"}
            assert [await next_event(slow) for _ in range(4)] == [{"n": n} for n in range(6, 10)]
            await one.publish("ana", {"n": 10})
            assert await next_event(slow) == {"n": 10}
            assert await next_event(fast) == {"n": 10}


async def test_events_round_trip_unicode_and_nested_data(make):
    api_1, api_2 = make(), make()
    event = {
        "type": "comment",
        "text": "Zürich → 東京 🏃‍♀️ \u0000 end",
        "by": {"id": "ünïcödé", "tags": ["a", {"deep": [1, 2.5, None, True, -(2**63)]}]},
        "raw": b"\x00\xff",
        7: "integer key",
    }
    async with asyncio.timeout(WAIT * 3):
        async with api_2.subscribe("üser-✓") as stream:
            await api_1.publish("üser-✓", event)
            assert await next_event(stream) == event


async def test_malformed_events_and_user_ids_are_refused_with_a_clear_error(make):
    one = make(max_event_bytes=1024)
    with pytest.raises(TypeError, match="dict"):
        await one.publish("ana", ["not", "a", "map"])
    with pytest.raises(TypeError):
        await one.publish("ana", {"a set": {1, 2}})
    with pytest.raises(ValueError, match="1024-byte limit"):
        await one.publish("ana", {"blob": "x" * 2000})
    for user_id, error in ((None, TypeError), ("", ValueError), ("x" * 1_000_000, ValueError), ("\ud800", ValueError)):
        with pytest.raises(error):
            await one.publish(user_id, {})
        with pytest.raises(error):
            async with one.subscribe(user_id):
                pass


async def test_redis_bus_skips_foreign_garbage_on_the_channel(redis_url):
    one = RedisBus(redis_url)
    try:
        async with asyncio.timeout(WAIT * 3), one.subscribe("ana") as stream:
            await one._redis.publish("arena:user:ana", b"\xc1 not msgpack")
            await one._redis.publish("arena:user:ana", pack([1, 2, 3]))
            await one.publish("ana", {"n": 1})
            assert await next_event(stream) == {"n": 1}
    finally:
        await one.aclose()


async def test_redis_bus_unsubscribes_when_the_last_local_subscriber_leaves(redis_url):
    one = RedisBus(redis_url)
    try:
        async with asyncio.timeout(WAIT * 3):
            async with one.subscribe("ana"), one.subscribe("ana"):
                assert await one._redis.pubsub_numsub("arena:user:ana") == [(b"arena:user:ana", 1)]
            while await one._redis.pubsub_numsub("arena:user:ana") != [(b"arena:user:ana", 0)]:
                await asyncio.sleep(0.01)
    finally:
        await one.aclose()


async def test_redis_bus_tells_subscribers_they_lagged_when_its_connection_drops_and_recovers(redis_url):
    one = RedisBus(redis_url)
    try:
        async with asyncio.timeout(WAIT * 3), one.subscribe("ana") as stream:
            await one.publish("ana", {"n": 1})
            assert await next_event(stream) == {"n": 1}
            await one._redis.client_kill_filter(_type="pubsub")
            assert await next_event(stream) == {"type": "lagged"}  # told once subscribed again
            await one.publish("ana", {"n": 2})
            assert await next_event(stream) == {"n": 2}
    finally:
        await one.aclose()


async def test_the_event_log_reports_events_that_fell_out_of_its_ring():
    log = _EventLog(capacity=4)
    epoch, head, events, lost = await log.poll("p", None, 0, ["ana"], 0.0)
    assert (head, events, lost) == (0, [], False)
    for n in range(10):
        await log.publish("ana" if n % 2 else "bob", pack({"n": n}))
    _, head, events, lost = await log.poll("p", epoch, 0, ["ana"], 0.0)
    assert head == 10 and lost and [seq for seq, _, _ in events] == [8, 10]
    _, _, events, lost = await log.poll("p", epoch, 8, ["ana", "bob"], 0.0)
    assert not lost and [seq for seq, _, _ in events] == [9, 10]
    _, _, events, lost = await log.poll("p", "an older epoch", 9, ["ana"], 0.0)
    assert lost and [seq for seq, _, _ in events] == [8, 10]  # a restarted log: everything in it is new


async def test_a_long_poll_returns_when_an_event_for_its_users_arrives():
    log = _EventLog(capacity=16)
    epoch, head, _, _ = await log.poll("p", None, 0, [], 0.0)
    waiting = asyncio.create_task(log.poll("p", epoch, head, ["ana"], WAIT))
    await log.publish("bob", pack({"n": 1}))
    await asyncio.sleep(0)
    assert not waiting.done()
    await log.publish("ana", pack({"n": 2}))
    _, head, events, lost = await asyncio.wait_for(waiting, WAIT)
    assert (head, [seq for seq, _, _ in events], lost) == (2, [2], False)


async def test_the_factory_picks_redis_when_configured():
    with_redis, without = bus("redis://127.0.0.1:6379/15", "arena"), bus(None, "arena")
    assert isinstance(with_redis, RedisBus) and isinstance(without, RayBus)
    await with_redis.aclose()
    await without.aclose()


async def test_a_new_poll_from_the_same_process_ends_its_waiting_one():
    log = _EventLog(capacity=16)
    epoch, head, _, _ = await log.poll("p", None, 0, [], 0.0)
    first = asyncio.create_task(log.poll("p", epoch, head, ["ana"], WAIT))
    other = asyncio.create_task(log.poll("q", epoch, head, ["ana"], WAIT))
    await asyncio.sleep(0)
    second = asyncio.create_task(log.poll("p", epoch, head, ["ana", "bob"], WAIT))
    assert await asyncio.wait_for(first, WAIT) == (epoch, 0, [], False)
    await log.publish("bob", pack({"n": 1}))
    assert [seq for seq, _, _ in (await asyncio.wait_for(second, WAIT))[2]] == [1]
    assert not other.done()  # another process's poll waits on
    await log.publish("ana", pack({"n": 2}))
    assert [seq for seq, _, _ in (await asyncio.wait_for(other, WAIT))[2]] == [2]
    assert log._waiting == {}


async def test_ray_bus_tells_subscribers_they_lagged_when_its_actor_restarts(ray_cluster):
    one = RayBus(namespace=f"test-bus-{uuid.uuid4().hex[:8]}")
    try:
        async with asyncio.timeout(WAIT * 3), one.subscribe("ana") as stream:
            await one.publish("ana", {"n": 1})
            assert await next_event(stream) == {"n": 1}
            ray_cluster.kill(ray_cluster.get_actor(one.name, namespace=one.namespace), no_restart=False)
            assert await next_event(stream) == {"type": "lagged"}
            await one.publish("ana", {"n": 2})  # reaches the restarted actor
            assert await next_event(stream) == {"n": 2}
    finally:
        await one.aclose()
        ray_cluster.kill(ray_cluster.get_actor(one.name, namespace=one.namespace))
