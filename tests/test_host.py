"""The host runtime without Ray, on a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config import HostConfig
from engine.entity import Entity, query, update
from engine.errors import (
    HandlerFailed,
    HostUnavailable,
    JournalFailed,
    MalformedMessage,
    Overloaded,
    Rejected,
    UnknownKind,
    UnknownMessage,
)
from engine.host import Host
from persistence.sqlite import SQLiteStore
from tests.conftest import Clock
from tests.entities import Counter


def make_host(path: Path, clock: Clock | None = None, **config) -> Host:
    """A host on a real store; with ``clock``, time stands still until the test moves it."""
    if clock is None:
        return Host([Counter], SQLiteStore(path / "arena.db"), HostConfig(**config))
    return Host([Counter], SQLiteStore(path / "arena.db"), HostConfig(**config), clock=clock, monotonic=clock)


async def crash(host: Host) -> None:
    """What kill -9 leaves behind: the journal, no final snapshot."""
    for task in host._tasks:
        task.cancel()
    await asyncio.gather(*host._tasks, return_exceptions=True)
    await host._committer.stop()
    host._closing = True
    await host.store.close()


async def journal_length(path: Path, kind: str, entity_id: str) -> int:
    store = SQLiteStore(path / "arena.db")
    await store.open()
    try:
        return len(await store.read_journal(kind, entity_id))
    finally:
        await store.close()


async def test_an_update_answers_after_it_is_journaled_and_survives_a_restart(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    assert await host.ask("counter", "a", "add", {"amount": 3}) == 3
    assert await host.ask("counter", "a", "add", {"amount": 4}) == 7
    await crash(host)

    again = make_host(tmp_path)
    await again.start()
    assert (await again.ask("counter", "a", "value"))["total"] == 7
    await again.stop()


async def test_replay_after_a_snapshot_applies_each_journaled_message_once(tmp_path, clock):
    host = make_host(tmp_path, clock, snapshot_interval=5, compact_every=5)
    await host.start()
    for i in range(20):
        await host.ask("counter", "a", "add", {"amount": 1, "tag": f"m{i}"})
    clock.now += 5
    await host.maintain()  # the write-behind snapshot, and the compaction after it
    assert host.metrics()["snapshots"] == 1
    for i in range(20, 30):
        await host.ask("counter", "a", "add", {"amount": 1, "tag": f"m{i}"})
    await crash(host)

    again = make_host(tmp_path)
    await again.start()
    value = await again.ask("counter", "a", "value")
    assert value["total"] == 30
    assert value["applied"] == [f"m{i}" for i in range(30)]
    await again.stop()
    assert await journal_length(tmp_path, "counter", "a") < 30  # compaction dropped what the snapshot holds


async def test_messages_to_one_entity_run_one_at_a_time_in_arrival_order(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    calls = [host.ask("counter", "ordered", "add", {"amount": 1, "tag": str(i)}) for i in range(200)]
    totals = await asyncio.gather(*calls)
    assert totals == list(range(1, 201))
    assert (await host.ask("counter", "ordered", "value"))["applied"] == [str(i) for i in range(200)]
    await host.stop()


async def test_a_batch_answers_each_envelope_and_bad_ones_do_not_spoil_the_rest(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    results = await host.deliver(
        [
            ("counter", "a", "add", {"amount": 1}, None),
            ("nope", "a", "add", {"amount": 1}, None),
            ("counter", "a", "fly", {}, None),
            ("counter", "a", "add", {"amount": "x", "colour": 1}, None),
            ("counter", "a", "add", {}, None),
            ("counter", "a", "add", [1, 2], None),
            ("counter", "", "add", {"amount": 1}, None),
            ("counter", "x" * 1000, "add", {"amount": 1}, None),
            ("counter", 7, "add", {"amount": 1}, None),
            ("counter", "a", "add", {"amount": 1}, "yesterday"),
            ("counter", "a"),
            "garbage",
            ("counter", "a", "add", {"amount": 2}, None),
        ]
    )
    assert results[0] == 1 and results[-1] == 3
    assert isinstance(results[1], UnknownKind) and "nope" in results[1].message
    assert isinstance(results[2], UnknownMessage) and "fly" in results[2].message
    assert isinstance(results[3], MalformedMessage) and "colour" in results[3].message
    assert isinstance(results[4], MalformedMessage) and "amount" in results[4].message
    for index in range(5, 12):
        assert isinstance(results[index], MalformedMessage), (index, results[index])
    assert not any(r.retryable for r in results[1:12])
    await host.stop()


async def test_a_rejected_message_changes_nothing_and_is_not_journaled(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 5})
    with pytest.raises(Rejected, match="positive"):
        await host.ask("counter", "a", "add", {"amount": -1})
    assert (await host.ask("counter", "a", "value"))["total"] == 5
    await host.stop()
    assert await journal_length(tmp_path, "counter", "a") == 1


async def test_a_handler_that_raises_fails_its_caller_and_the_entity_is_rebuilt(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 5})
    results = await host.deliver(
        [
            ("counter", "a", "explode", {}, None),
            ("counter", "a", "add", {"amount": 1}, None),
            ("counter", "b", "add", {"amount": 9}, None),
        ]
    )
    assert isinstance(results[0], HandlerFailed) and "boom" in results[0].message
    assert results[1] == 6  # the half-done +1000 was thrown away with the activation
    assert results[2] == 9
    assert (await host.ask("counter", "a", "value"))["total"] == 6
    assert host.metrics()["handler_failures"] == 1
    await host.stop()


async def test_queries_are_not_journaled(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 1})
    for _ in range(5):
        await host.ask("counter", "a", "value")
    await host.stop()
    assert await journal_length(tmp_path, "counter", "a") == 1


async def test_time_arrives_in_the_message_and_replays_identically(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.deliver([("counter", "a", "add", {"amount": 1}, 1_700_000_000.5)])
    await crash(host)
    again = make_host(tmp_path)
    await again.start()
    # the query runs at its own time; the replayed update ran at the stamped one
    store = again.store
    (entry,) = await store.read_journal("counter", "a")
    assert entry.at == 1_700_000_000.5
    await again.stop()


async def test_a_full_mailbox_answers_overloaded_and_says_it_is_retryable(tmp_path):
    host = make_host(tmp_path, mailbox_capacity=3)
    await host.start()
    results = await host.deliver([("counter", "cold", "add", {"amount": 1}, None)] * 10)
    assert results[:3] == [1, 2, 3]
    assert all(isinstance(r, Overloaded) and r.retryable for r in results[3:])
    assert host.metrics()["overloaded"] == 7
    await host.stop()


async def test_a_journal_that_fails_fails_its_callers_and_loses_nothing_acknowledged(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 1})
    real_append = host.store.append

    async def failing_append(entries, reminders=()):
        host.store.append = real_append
        raise OSError("disk full")

    host.store.append = failing_append
    with pytest.raises(JournalFailed) as failed:
        await host.ask("counter", "a", "add", {"amount": 10})
    assert failed.value.retryable
    assert await host.ask("counter", "a", "add", {"amount": 100}) == 101
    await crash(host)
    again = make_host(tmp_path)
    await again.start()
    assert (await again.ask("counter", "a", "value"))["total"] == 101
    await again.stop()


async def test_a_query_waits_for_the_commit_of_what_it_reads_and_a_peek_does_not(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 1})
    held, real_append = asyncio.Event(), host.store.append

    async def slow_append(entries, reminders=()):
        await held.wait()  # the disk is slow: the commit stays in flight
        return await real_append(entries, reminders)

    host.store.append = slow_append
    adding = asyncio.ensure_future(host.ask("counter", "a", "add", {"amount": 10}))
    await asyncio.sleep(0.05)
    reading = asyncio.ensure_future(host.ask("counter", "a", "value"))
    assert await asyncio.wait_for(host.ask("counter", "a", "glance"), 5) == 11  # at once, from memory
    await asyncio.sleep(0.05)
    assert not adding.done() and not reading.done()  # the query waits with the update's caller
    held.set()
    assert await adding == 11 and (await reading)["total"] == 11
    host.store.append = real_append
    await host.stop()


async def test_timers_fire_once_through_the_journal(tmp_path, clock):
    host = make_host(tmp_path, clock)
    await host.start()
    await host.ask("counter", "a", "remind", {"delay": 5})
    await host.ask("counter", "a", "remind", {"delay": 5, "name": "cancelled"})
    await host.ask("counter", "a", "forget", {"name": "cancelled"})
    clock.now += 4.9
    assert await host.fire_timers() == 0
    clock.now += 0.1
    assert await host.fire_timers() == 1
    assert (await host.ask("counter", "a", "value"))["rings"] == 1
    clock.now += 60
    assert await host.fire_timers() == 0
    assert (await host.ask("counter", "a", "value"))["rings"] == 1
    await crash(host)
    again = make_host(tmp_path, clock)
    await again.start()
    assert await again.fire_timers() == 0  # the journal says it rang: the restart does not ring it again
    assert (await again.ask("counter", "a", "value"))["rings"] == 1
    await again.stop()


async def test_a_timer_set_before_a_crash_fires_after_the_restart(tmp_path, clock):
    host = make_host(tmp_path, clock)
    await host.start()
    await host.ask("counter", "sleeper", "remind", {"delay": 30})
    await crash(host)
    again = make_host(tmp_path, clock)
    await again.start()  # nobody sends "sleeper" a message: the reminder index wakes it
    clock.now += 29.9
    assert await again.fire_timers() == 0 and again.active_entities == 0
    clock.now += 0.1
    assert await again.fire_timers() == 1 and again.active_entities == 1  # woken, it registers its timer
    assert await again.fire_timers() == 1  # which is due
    assert (await again.ask("counter", "sleeper", "value"))["rings"] == 1
    await again.stop()


async def test_idle_entities_are_passivated_and_come_back_intact(tmp_path, clock):
    host = make_host(tmp_path, clock, passivate_after=60)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 2})
    clock.now += 59.9
    await host.maintain()
    assert host.active_entities == 1
    clock.now += 0.1
    await host.maintain()
    assert host.active_entities == 0
    assert host.metrics()["passivations"] == 1
    assert (await host.ask("counter", "a", "value"))["total"] == 2
    await host.stop()


async def test_a_stopped_host_refuses_messages_with_a_retryable_error(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.stop()
    with pytest.raises(HostUnavailable) as refused:
        await host.ask("counter", "a", "value")
    assert refused.value.retryable


class CounterV2(Entity):
    kind = "counter"
    schema_version = 2

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.count = {"total": 0}

    @classmethod
    def upgrade(cls, state, from_version):
        assert from_version == 1
        return {"count": {"total": state["total"]}}

    @classmethod
    def upgrade_message(cls, message_type, body, from_version):
        return {"amount": body["amount"]}

    @update
    def add(self, amount: int) -> int:
        self.count["total"] += amount
        return self.count["total"]

    @query
    def value(self) -> dict:
        return self.count


async def test_old_snapshots_and_journal_entries_are_upgraded_on_activation(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 2, "tag": "x"})
    await host.stop()  # snapshot at schema 1
    host = make_host(tmp_path)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 3, "tag": "y"})
    await crash(host)  # journal entry at schema 1 after the snapshot

    upgraded = Host([CounterV2], SQLiteStore(tmp_path / "arena.db"))
    await upgraded.start()
    assert await upgraded.ask("counter", "a", "value") == {"total": 5}
    await upgraded.stop()


def test_handlers_must_be_plain_functions():
    with pytest.raises(TypeError, match="plain function"):

        class Bad(Entity):
            kind = "bad"

            @update
            async def go(self) -> None: ...


def test_a_host_config_refuses_nonsense():
    with pytest.raises(ValueError, match="snapshot_interval"):
        HostConfig(snapshot_interval=0)
    with pytest.raises(ValueError, match="mailbox_capacity"):
        HostConfig(mailbox_capacity=0)


async def test_a_big_snapshot_holds_back_the_next_periodic_one_by_the_snapshot_budget(tmp_path, clock):
    host = make_host(tmp_path, clock, snapshot_interval=1, snapshot_budget=4, compact_every=1)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 1})
    clock.now += 1
    await host.maintain()
    assert host.counters["snapshots"] == 1
    size = len((await host.store.load_snapshot("counter", "a")).state)
    await host.ask("counter", "a", "add", {"amount": 2})
    for _ in range(int(size / 4) - 1):  # the entity's share of the budget is not spent yet
        clock.now += 1
        await host.maintain()
    assert host.counters["snapshots"] == 1 and host.metrics()["snapshot_lag_entities"] == 1
    clock.now += 2
    await host.maintain()
    assert host.counters["snapshots"] == 2
    await host.ask("counter", "a", "add", {"amount": 4})
    await crash(host)  # what the snapshot left out, the journal has

    again = make_host(tmp_path, clock)
    await again.start()
    assert (await again.ask("counter", "a", "value"))["total"] == 7
    await again.ask("counter", "a", "add", {"amount": 8})
    await again.stop()  # stopping (as passivating) snapshots whatever the budget says
    store = SQLiteStore(tmp_path / "arena.db")
    await store.open()
    try:
        assert (await store.load_snapshot("counter", "a")).seq == 4
    finally:
        await store.close()


async def test_the_snapshot_budget_holds_a_snapshot_back_no_longer_than_snapshot_max_wait(tmp_path, clock):
    host = make_host(tmp_path, clock, snapshot_interval=1, snapshot_budget=1e-3, snapshot_max_wait=3)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 1})
    clock.now += 1
    await host.maintain()
    await host.ask("counter", "a", "add", {"amount": 2})
    for _ in range(2):  # the budget alone would hold it back for days
        clock.now += 1
        await host.maintain()
    assert host.counters["snapshots"] == 1
    clock.now += 1
    await host.maintain()
    assert host.counters["snapshots"] == 2
    await host.stop()


async def test_metrics_show_snapshot_lag_until_the_write_behind_snapshot(tmp_path, clock):
    host = make_host(tmp_path, clock, snapshot_interval=5)
    await host.start()
    await host.ask("counter", "a", "add", {"amount": 1})
    await host.ask("counter", "b", "add", {"amount": 1})
    clock.now += 3
    metrics = host.metrics()
    assert metrics["active_entities"] == 2
    assert metrics["snapshot_lag_entities"] == 2 and metrics["snapshot_lag_seconds"] == 3
    assert metrics["journal_entries"] == 2 and metrics["journal_pending"] == 0
    await host.maintain()  # not yet time for the write-behind snapshot
    assert host.metrics()["snapshot_lag_entities"] == 2
    clock.now += 2
    await host.maintain()
    metrics = host.metrics()
    assert (metrics["snapshot_lag_entities"], metrics["snapshot_lag_seconds"], metrics["snapshots"]) == (0, 0.0, 2)
    await host.stop()
