"""Domain events (engine.events, engine.relay): the outbox commits with its cause, the relay
delivers at least once and in order, the host applies each event exactly once, failures end as
dead letters an operator replays. On a real host over SQLite and PostgreSQL, without Ray."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.codec import pack, unpack
from engine.config import HostConfig
from engine.entity import Entity, query, update
from engine.errors import HandlerFailed, HostUnavailable, MalformedMessage, Rejected
from engine.events import EVENT_MESSAGE, Event, EventRecord, To, declare, react
from engine.host import Host
from engine.relay import Relay, Subscription, subscriptions
from engine.store import StoreError
from persistence import open_store

TICKED = declare(
    "test.ticked", fields=("source", "n", "to", "poison"), user_field="source", doc="a test counter ticked"
)


def _upgrade_rated(fields: dict, version: int) -> dict:
    assert version == 1
    return {**fields, "stars": fields["score"] // 20}  # v1 scored 0-100, v2 rates 0-5 stars


RATED = declare(
    "test.rated", version=2, fields=("who", "score", "stars"), user_field="who", doc="rated", upgrade=_upgrade_rated
)


CALLED = declare("test.called", fields=("source", "who"), user_field=None, doc="a roll call of many sinks")


class Source(Entity):
    kind = "test_source"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.n = 0
        self.fans: list[str] = []

    @update
    def tick(self, to: list[str], poison: bool = False, refuse: bool = False) -> int:
        if refuse:
            self.emit(TICKED, source=self.id, n=self.n, to=to, poison=poison)
            raise Rejected("refused after emitting: nothing of it stays")
        self.n += 1
        self.emit(TICKED, source=self.id, n=self.n, to=to, poison=poison)
        return self.n

    @update
    def ticks(self, count: int, to: list[str]) -> int:
        for _ in range(count):
            self.n += 1
            self.emit(TICKED, source=self.id, n=self.n, to=to, poison=False)
        return self.n

    @update
    def call(self, who: list[str]) -> None:
        self.emit(CALLED, source=self.id, who=who)

    @update
    def fan(self, who: str) -> None:
        self.fans.append(who)

    @query
    def fan_list(self) -> list[str]:
        return self.fans

    @query
    def sneaky(self) -> None:
        self.emit(TICKED, source=self.id, n=-1, to=[], poison=False)

    @update
    def bad(self) -> None:
        self.emit(TICKED, source=self.id, n=object(), to=[], poison=False)


CURED: set[bool] = set()  # holds True once the sink's fix for poison is "deployed"


class Sink(Entity):
    kind = "test_sink"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.seen: list[list] = []  # [source, n]
        self.stars: list[int] = []

    @react(TICKED, to=(To.field("to_one"), To.ask(Source, "source", Source.fan_list)), when=lambda f: f["n"] > 0)
    def on_tick(self, event: Event) -> None:
        if event.fields["poison"] and not CURED:
            raise RuntimeError("this sink cannot digest poison")
        self.seen.append([event.fields["source"], event.fields["n"]])

    @react(CALLED, to=To.each("who", alone=True))
    def on_called(self, event: Event) -> None:
        self.seen.append(["called", *event.fields["who"]])

    @react(RATED, to=To.field("who"))
    def on_rated(self, event: Event) -> None:
        self.stars.append(event.fields["stars"])

    @query
    def seen_list(self) -> list[list]:
        return self.seen

    @query
    def star_list(self) -> list[int]:
        return self.stars


# `to_one` is not a field of TICKED: the relay finds no id there and only the fans receive it.
KINDS = [Source, Sink]


class World:
    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.prefix = uuid.uuid4().hex[:8]
        self.fail = 0  # deliveries to answer HostUnavailable, as a restarting host would
        self.blocked: set[str] = set()  # targets whose deliveries wait for `gate`
        self.gate = asyncio.Event()
        self.host = self.new_host()
        self.store = open_store(store_url)
        self.relay = Relay(self.store, self.deliver, self.ask, subscriptions(KINDS), batch=50, backoff=0.001, retries=3)

    def new_host(self) -> Host:
        return Host(KINDS, open_store(self.store_url), HostConfig(snapshot_interval=3600, passivate_after=3600))

    async def deliver(self, envelopes):
        if self.fail:
            self.fail -= 1
            return [HostUnavailable("restarting")] * len(envelopes)
        if any(e[1] in self.blocked for e in envelopes):
            await self.gate.wait()
        return await self.host.deliver(envelopes)

    async def ask(self, kind, entity_id, message_type, body=None):
        return await self.host.ask(kind, entity_id, message_type, body)

    def cursor(self, handler: str) -> str:
        (name,) = [n for n in self.relay.subscriptions if n.endswith(handler)]
        return name


@pytest.fixture
async def world(store_url):
    world = World(store_url)
    await world.host.start()
    await world.store.open()
    last = await world.store.last_event_position()
    for name in world.relay.subscriptions:  # this test's relay starts at the shared database's end
        await world.store.save_cursor(name, last)
    await world.relay.load_cursors()
    yield world
    await world.host.stop()
    await world.store.close()


async def _fans(w: World, source: str, fans: list[str]) -> None:
    for fan in fans:
        await w.host.ask("test_source", source, "fan", {"who": fan})


async def _seen(w: World, sink: str) -> list[list]:
    return await w.host.ask("test_sink", sink, "seen_list")


async def _tick(w: World, source: str, **body) -> int:
    return await w.host.ask("test_source", source, "tick", {"to": [], **body})


async def _mine(w: World, before: int, source: str) -> list:
    return [r for r in await w.store.read_events(before, 1_000) if r.source_id == source]


async def test_an_event_is_in_the_outbox_with_its_cause_and_an_id_from_it(world):
    p, before = world.prefix, await world.store.last_event_position()
    assert await _tick(world, f"{p}-s") == 1
    (record,) = await _mine(world, before, f"{p}-s")
    assert (record.source_kind, record.source_id, record.seq, record.idx) == ("test_source", f"{p}-s", 1, 0)
    assert record.id == f"test_source/{p}-s/1/0" and record.position > before
    assert record.user_id == f"{p}-s" and record.version == 1 and record.type == "test.ticked"
    assert unpack(record.body) == {"source": f"{p}-s", "n": 1, "to": [], "poison": False}


async def test_a_refused_message_a_query_and_a_bad_event_leave_nothing_in_the_outbox(world):
    p, before = world.prefix, await world.store.last_event_position()
    with pytest.raises(Rejected):
        await _tick(world, f"{p}-s", refuse=True)
    await world.host.ask("test_source", f"{p}-s", "sneaky")
    with pytest.raises(HandlerFailed, match="bad event"):
        await world.host.ask("test_source", f"{p}-s", "bad")
    assert await _mine(world, before, f"{p}-s") == []
    assert await _tick(world, f"{p}-s") == 1  # and the source's state is as if none of them happened


async def test_an_event_exists_only_if_its_cause_committed(world):
    p, before = world.prefix, await world.store.last_event_position()
    store = world.host.store
    real_append = store.append

    async def broken(*args, **kwargs):
        raise StoreError("the disk is gone")

    store.append = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception, match="journal"):
            await _tick(world, f"{p}-s")
    finally:
        store.append = real_append  # type: ignore[method-assign]
    assert await _mine(world, before, f"{p}-s") == []
    assert await _tick(world, f"{p}-s") == 1  # the failed tick never happened
    assert len(await _mine(world, before, f"{p}-s")) == 1


async def test_events_reach_every_target_in_order_once(world):
    p = world.prefix
    fans = [f"{p}-f{i}" for i in range(30)]
    await _fans(world, f"{p}-s", fans)
    for _ in range(5):
        await world.host.ask("test_source", f"{p}-s", "ticks", {"count": 7, "to": []})
    await world.relay.drain()
    for fan in fans:
        assert await _seen(world, fan) == [[f"{p}-s", n] for n in range(1, 36)]


async def test_a_relay_that_sends_a_batch_again_changes_nothing(world):
    """A relay killed after delivering but before saving its cursor sends the batch again."""
    p, name = world.prefix, world.cursor("on_tick")
    await _fans(world, f"{p}-s", [f"{p}-a", f"{p}-b"])
    await world.host.ask("test_source", f"{p}-s", "ticks", {"count": 10, "to": []})
    start = world.relay.progress[name].position
    await world.relay.drain()
    world.relay.progress[name].position = start  # as if the cursor had not been saved
    await world.relay.drain()
    assert world.relay.progress[name].repeated == 20
    for fan in (f"{p}-a", f"{p}-b"):
        assert await _seen(world, fan) == [[f"{p}-s", n] for n in range(1, 11)]


async def test_exactly_once_holds_after_the_target_leaves_memory(world):
    """What a target applied is state: snapshotted, and rebuilt by a new host from the store."""
    p, name = world.prefix, world.cursor("on_tick")
    await _fans(world, f"{p}-s", [f"{p}-a"])
    await world.host.ask("test_source", f"{p}-s", "ticks", {"count": 3, "to": []})
    start = world.relay.progress[name].position
    await world.relay.drain()
    await world.host.stop()  # snapshots everything
    world.host = world.new_host()
    await world.host.start()
    world.relay.progress[name].position = start
    await world.relay.drain()
    assert world.relay.progress[name].repeated == 3
    assert await _seen(world, f"{p}-a") == [[f"{p}-s", n] for n in (1, 2, 3)]


async def test_retryable_failures_are_retried_and_poison_becomes_a_dead_letter_to_replay(world):
    p, name = world.prefix, world.cursor("on_tick")
    await _fans(world, f"{p}-s", [f"{p}-a", f"{p}-b"])
    await _tick(world, f"{p}-s")
    await _tick(world, f"{p}-s", poison=True)
    await _tick(world, f"{p}-s")
    world.fail = 2  # the targets' host restarts twice
    await world.relay.drain()
    assert world.relay.progress[name].retries >= 2
    for fan in (f"{p}-a", f"{p}-b"):  # the poison is skipped; what follows it applies
        assert await _seen(world, fan) == [[f"{p}-s", 1], [f"{p}-s", 3]]
    letters = [d for d in await world.store.dead_letters(name) if d.event.source_id == f"{p}-s"]
    assert sorted(d.target for d in letters) == [f"{p}-a", f"{p}-b"]
    assert all("cannot digest poison" in d.error and d.event.seq == 4 for d in letters)  # seqs 1-2 were fans

    assert (await world.relay.replay(name))["kept"] >= 2  # still poison to this sink: kept
    CURED.add(True)  # the sink's fix is deployed
    try:
        assert (await world.relay.replay(name))["replayed"] >= 2
        assert (await world.relay.replay(name))["replayed"] == 0  # nothing left, nothing applied twice
    finally:
        CURED.clear()
    for fan in (f"{p}-a", f"{p}-b"):  # the poison applied last, once
        assert await _seen(world, fan) == [[f"{p}-s", 1], [f"{p}-s", 3], [f"{p}-s", 2]]
    assert [d for d in await world.store.dead_letters(name) if d.event.source_id == f"{p}-s"] == []


async def test_an_old_version_is_upgraded_before_the_reaction_sees_it(world):
    p = world.prefix
    old = EventRecord(
        "test_source", f"{p}-o", 1, 0, "test.rated", 1, 0.0, f"{p}-r", pack({"who": f"{p}-r", "score": 80})
    )
    await world.store.append([], [], [old])
    await world.relay.drain()
    assert await world.host.ask("test_sink", f"{p}-r", "star_list") == [4]


async def test_a_reaction_to_each_alone_sees_only_its_own_id_of_the_list(world):
    p = world.prefix
    sinks = [f"{p}-s{n}" for n in range(5)]
    await world.host.ask("test_source", f"{p}-c", "call", {"who": sinks})
    await world.relay.drain()
    for sink in sinks:
        assert await _seen(world, sink) == [["called", sink]], "each sink gets the event once, with its id alone"
    (record,) = await _mine(world, 0, f"{p}-c")
    assert unpack(record.body)["who"] == sinks, "the outbox keeps the whole list"


async def test_two_types_from_one_source_apply_whichever_reaction_runs_first(world):
    """Each reaction is a consumer of its own: a later event of one type may arrive before an earlier
    event of another type from the same source, and neither is taken for a repeat of the other."""
    p = world.prefix
    sink, source = f"{p}-both", f"{p}-s"
    ticked = EventRecord("test_source", source, 1, 0, "test.ticked", 1, 0.0, source,
                         pack({"source": source, "n": 1, "to": [], "poison": False}), 1)  # fmt: skip
    rated = EventRecord("test_source", source, 2, 0, "test.rated", 2, 0.0, sink,
                        pack({"who": sink, "score": 100, "stars": 5}), 2)  # fmt: skip
    for record in (rated, ticked, rated, ticked):  # the later type first, then each again (a retry)
        await world.host.deliver([("test_sink", sink, EVENT_MESSAGE, {"events": [record.wire()]}, None)])

    assert await world.host.ask("test_sink", sink, "star_list") == [5]
    assert await _seen(world, sink) == [[source, 1]]


async def test_a_reaction_that_read_everything_of_its_type_lags_nothing_behind_other_types(world):
    p = world.prefix
    rated = [
        EventRecord("test_source", f"{p}-x", n, 0, "test.rated", 2, 0.0, f"{p}-r",
                    pack({"who": f"{p}-r", "score": 60, "stars": 3}))  # fmt: skip
        for n in range(1, 4)
    ]
    await world.store.append([], [], rated)
    await world.relay.drain()
    status = await world.relay.status()
    tick, rate = status["consumers"][world.cursor("on_tick")], status["consumers"][world.cursor("on_rated")]
    assert tick["lag"] == 0 and rate["lag"] == 0, "a reaction lagged behind events it never receives"
    assert (await world.store.cursors())[world.cursor("on_tick")] == status["last_position"]


async def test_a_slow_subscription_holds_back_nobody_else(world):
    """Each subscription has its own cursor: one waiting on a stuck target leaves the others moving."""
    p = world.prefix
    await _fans(world, f"{p}-s", [f"{p}-a"])
    await _tick(world, f"{p}-s")
    rated = EventRecord(
        "test_source", f"{p}-x", 1, 0, "test.rated", 2, 0.0, f"{p}-r", pack({"who": f"{p}-r", "score": 1, "stars": 5})
    )
    await world.store.append([], [], [rated])
    world.blocked.add(f"{p}-a")
    stuck = asyncio.ensure_future(world.relay.step(world.cursor("on_tick")))
    assert await world.relay.step(world.cursor("on_rated")) == 1
    assert await world.host.ask("test_sink", f"{p}-r", "star_list") == [5]
    assert not stuck.done() and await _seen(world, f"{p}-a") == []
    world.gate.set()
    assert await stuck == 1
    assert await _seen(world, f"{p}-a") == [[f"{p}-s", 1]]


@pytest.mark.parametrize(
    "body",
    [
        {"events": "lots"},
        {"events": [["test.ticked"]]},
        {"events": [["test.ticked", 1, "k", "i", "one", 0, 0.0, None, {}, 0]]},
        {"events": [[None] * 10]},
        {"events": [], "extra": 1},
        {"events": [["test.ticked", 1, "k", "i", 1, 0, 0.0, None, b"\xc1 not msgpack", 0]]},
        {"events": [["test.ticked", 1, "k", "i", 1, 0, 0.0, None, b"\x93\x01\x02\x03", 0]]},  # a list, not a map
        {"events": [["test.ticked", 1, "k", "i", 1, 0, 0.0, None, {}, 0]] * 10_001},
        [],
    ],
)
async def test_a_hostile_event_message_is_refused_and_changes_nothing(world, body):
    p = world.prefix
    with pytest.raises(MalformedMessage):
        await world.host.ask("test_sink", f"{p}-h", EVENT_MESSAGE, body)
    assert await _seen(world, f"{p}-h") == []


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="noun.verb"):
        declare("Ticked", fields=(), user_field=None, doc="")
    with pytest.raises(ValueError, match="user field"):
        declare("test.other", fields=("a",), user_field="b", doc="")
    with pytest.raises(ValueError, match="twice"):
        declare("test.ticked", fields=("source",), user_field=None, doc="")
    with pytest.raises(TypeError, match="not a @query"):
        To.ask(Source, "source", Source.tick)
    with pytest.raises(TypeError, match="twice"):

        class Twice(Entity):  # noqa: F841
            kind = "twice"

            @react(TICKED, to=To.field("source"))
            def one(self, event): ...

            @react(TICKED, to=To.field("source"))
            def two(self, event): ...


def test_subscriptions_are_named_by_kind_and_handler():
    names = sorted(s.name for s in subscriptions(KINDS))
    assert names == ["test_sink.on_called", "test_sink.on_rated", "test_sink.on_tick"]
    assert all(isinstance(s, Subscription) for s in subscriptions(KINDS))


# -- the outbox in the store ----------------------------------------------------


def _record(source: str, seq: int, idx: int = 0, type: str = "test.ticked", user: str | None = None) -> EventRecord:
    return EventRecord("test_source", source, seq, idx, type, 1, float(seq), user, pack({"n": seq}))


async def test_a_reader_that_follows_concurrent_writers_misses_no_event(store_url):
    """Two hosts commit events at once while a consumer reads after its position: positions become
    visible in the order they were given, so it never steps past one that commits later."""
    writers = [open_store(store_url) for _ in range(2)]
    reader = open_store(store_url)
    for store in (*writers, reader):
        await store.open()
    source = uuid.uuid4().hex
    position = await reader.last_event_position()
    seen: list[EventRecord] = []
    done = asyncio.Event()

    async def write(n: int, store) -> None:
        for seq in range(1, 101):
            await store.append([], [], [_record(f"{source}-{n}", seq, idx) for idx in range(3)])
        await asyncio.sleep(0)

    async def read() -> None:
        nonlocal position
        while True:
            finished = done.is_set()
            batch = await reader.read_events(position, 50)
            seen.extend(r for r in batch if r.source_id.startswith(source))
            if batch:
                assert [r.position for r in batch] == sorted(r.position for r in batch)
                position = batch[-1].position
            elif finished:
                return

    following = asyncio.ensure_future(read())
    await asyncio.gather(*(write(n, store) for n, store in enumerate(writers)))
    done.set()
    await following
    assert len(seen) == 600 and len({r.id for r in seen}) == 600
    for n in range(2):  # and each source's events in its own order
        mine = [(r.seq, r.idx) for r in seen if r.source_id == f"{source}-{n}"]
        assert mine == sorted(mine)
    for store in (*writers, reader):
        await store.close()


async def test_types_cursors_dead_letters_and_pruning(store_url):
    from engine.store import DeadLetter

    store = open_store(store_url)
    await store.open()
    try:
        source, before = uuid.uuid4().hex, await store.last_event_position()
        await store.append(
            [], [], [_record(source, 1), _record(source, 2, type="test.rated", user="u'; DROP TABLE events; --")]
        )
        ticked = [r for r in await store.read_events(before, 10, ["test.ticked"]) if r.source_id == source]
        rated = [r for r in await store.read_events(before, 10, ["test.rated", "test.none"]) if r.source_id == source]
        assert [r.seq for r in ticked] == [1] and [r.seq for r in rated] == [2]
        assert rated[0].user_id == "u'; DROP TABLE events; --"
        with pytest.raises(Exception, match="already"):  # an event is stored once
            await store.append([], [], [_record(source, 1)])

        name = f"sub-{source}"
        await store.save_cursor(name, 5)
        await store.save_cursor(name, 3)  # a replay moves it back
        assert (await store.cursors())[name] == 3

        letter = DeadLetter(name, "target 'x'", rated[0], "handler_failed: boom", 11, 1.5)
        await store.add_dead_letters([letter])
        (kept,) = await store.dead_letters(name)
        assert (kept.target, kept.event, kept.error, kept.attempts) == (
            "target 'x'",
            rated[0],
            "handler_failed: boom",
            11,
        )
        assert await store.remove_dead_letters([kept.id, kept.id + 10_000]) == 1
        assert await store.dead_letters(name) == []

        last = await store.last_event_position()
        assert await store.prune_events(last) >= 2
        assert await store.read_events(before, 10) == []
        await store.append([], [], [_record(source, 3)])
        assert await store.last_event_position() > last  # positions never go back, even after pruning
    finally:
        await store.close()
