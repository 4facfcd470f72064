"""The relay: reads the outbox and delivers each event to the entities that react to it.

Each subscription (a kind's ``@react`` handler) is a consumer of the outbox with a durable
cursor of its own, so a slow or failing one holds back nobody else. A step reads the
subscription's next batch of events after its cursor, maps each to its targets (``To``),
and sends each target one ``EVENT_MESSAGE`` with its events in position order; the cursor
moves only once every target has answered. Delivery is therefore at least once (a relay
killed mid-batch sends the batch again), in order per source, and the host applies each
event exactly once (``engine.host``).

A target that fails with a retryable error (a host restarting, overload) is tried again
with exponential backoff; one that keeps failing, or fails for good, has its events tried
one by one, and those that still fail become dead letters (``Store.dead_letters``) that an
operator reads and replays (``Relay.replay``). The race's hot path never waits for any of
this: its host only writes its events into the journal's group commit.

``streams``: publishers outside the engine (NATS JetStream) are consumers of the outbox too,
each with a cursor; they get every event, in position order, in batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.codec import pack, unpack
from engine.entity import Entity
from engine.errors import EngineError, NotFound
from engine.events import CATALOGUE, EVENT_MESSAGE, EventRecord, Reaction, Target
from engine.store import DeadLetter, Store

__all__ = ["RELAY_NAME", "Relay", "Subscription", "Stream", "subscriptions"]

log = logging.getLogger(__name__)

RELAY_NAME = "arena-relay"  # the relay's Ray actor, one per cluster namespace (engine.ray_relay)
LOOKUPS_AT_ONCE = 64  # a batch's target lookups (To.ask) in flight at once

Deliver = Callable[[Sequence[Sequence[Any]]], Awaitable[list[Any]]]  # envelopes -> results (Cluster.deliver)
Ask = Callable[..., Awaitable[Any]]  # (kind, id, message_type, body) -> answer (Cluster.ask)


@dataclass(frozen=True)
class Subscription:
    kind: str  # the reacting kind
    reaction: Reaction

    @property
    def name(self) -> str:
        """The durable name of its cursor and dead letters."""
        return f"{self.kind}.{self.reaction.name}"

    @property
    def event_type(self) -> str:
        return self.reaction.event.name


def subscriptions(kinds: Iterable[type[Entity]]) -> list[Subscription]:
    return [Subscription(cls.kind, reaction) for cls in kinds for reaction in cls.reactions.values()]


class Stream(Protocol):
    """An outside consumer of every event (``connectors.nats_stream``, ``connectors.lake``).

    One that also reads the store or asks entities (the lake's race archive reads a race's
    journal, then tells the race) defines ``bind(store, ask)``; the relay calls it first."""

    name: str

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Publish ``records`` durably, in order; raise if any was not taken (they are sent again)."""

    async def close(self) -> None: ...


@dataclass
class _Progress:
    position: int = 0
    events: int = 0  # read and handled
    deliveries: int = 0  # envelopes answered
    applied: int = 0
    repeated: int = 0
    dead_letters: int = 0
    retries: int = 0
    last_error: str | None = None
    last_step: float = field(default_factory=time.time)


# Events a consumer reads a step. A step waits for its deliveries before the next, so the batch sets
# the rate: 5,000 held the relay to ~28,000 events/s into 10,000 counters, 50,000 reach ~53,000
# (docs/benchmarks.md); a quiet outbox answers fewer at once anyway.
BATCH = 50_000


class Relay:
    def __init__(
        self,
        store: Store,
        deliver: Deliver,
        ask: Ask,
        subs: Sequence[Subscription],
        *,
        streams: Sequence[Stream] = (),
        batch: int = BATCH,
        chunk: int = 2_000,
        parallel: int = 4,
        retries: int = 10,
        backoff: float = 0.05,
        poll: float = 2.0,
    ) -> None:
        """``chunk``: envelopes per ``deliver`` call, ``parallel`` of them at once; ``retries`` with a
        backoff doubling from ``backoff`` seconds (10 retries wait about 100 s in all) before an
        event becomes a dead letter; ``poll``: how often an idle consumer looks for new events when
        no host pokes it (``poke``: hosts do after each commit that carried events)."""
        names = [s.name for s in subs]
        if len(set(names)) != len(names):
            raise ValueError(f"two subscriptions share a name: {names}")
        self._store = store
        self._deliver = deliver
        self._ask = ask
        self.subscriptions = {s.name: s for s in subs}
        self.streams = {f"stream:{s.name}": s for s in streams}
        for stream in streams:
            bind = getattr(stream, "bind", None)
            if bind is not None:
                bind(store, ask)
        self.batch, self.chunk, self.parallel = batch, chunk, parallel
        self.retries, self.backoff, self.poll = retries, backoff, poll
        self.progress: dict[str, _Progress] = {name: _Progress() for name in (*self.subscriptions, *self.streams)}
        self._tasks: list[asyncio.Task] = []
        self._loaded = False
        self._wakes: dict[str, asyncio.Event] = {}

    def poke(self) -> None:
        """New events were committed: idle consumers look now rather than at their next poll."""
        for wake in self._wakes.values():
            wake.set()

    # -- running -----------------------------------------------------------

    async def start(self) -> None:
        await self.load_cursors()
        self._wakes = {name: asyncio.Event() for name in self.progress}
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(name), name=f"arena-relay-{name}") for name in self.progress]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def load_cursors(self) -> None:
        if self._loaded:
            return
        saved = await self._store.cursors()
        for name, progress in self.progress.items():
            progress.position = saved.get(name, 0)  # a new subscription starts at the outbox's beginning
        self._loaded = True

    async def _consume(self, name: str) -> None:
        wake = self._wakes[name]
        while True:
            wake.clear()  # a poke from here on wakes the wait below
            try:
                handled = await self.step(name)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store is away: try again, where we were
                self.progress[name].last_error = f"{type(error).__name__}: {error}"
                log.warning("relay %s: %s; again in 1 s", name, error)
                await asyncio.sleep(1.0)
                continue
            if not handled:  # until poked, or `poll` s: the events of a host that could not poke
                try:
                    await asyncio.wait_for(wake.wait(), self.poll)
                except TimeoutError:
                    pass

    async def step(self, name: str) -> int:
        """One batch of consumer ``name``: read, deliver or publish, move the cursor. How many
        events it read (0: none waiting)."""
        await self.load_cursors()
        progress = self.progress[name]
        sub = self.subscriptions.get(name)
        types = None if sub is None else [sub.event_type]
        # Positions are given in commit order: every event up to the newest one now is visible, so
        # a reaction that read all of its type up to there has nothing before it either (its lag
        # then counts only what it has yet to read, not the other types' events).
        horizon = await self._store.last_event_position() if sub is not None else 0
        records = await self._store.read_events(progress.position, self.batch, types)
        if not records:
            if horizon > progress.position:
                await self._store.save_cursor(name, horizon)
                progress.position = horizon
            progress.last_step = time.time()
            return 0
        if sub is None:
            await self.streams[name].publish(records)
        else:
            await self._deliver_batch(sub, records, progress)
        position = records[-1].position
        if len(records) < self.batch:
            position = max(position, horizon)
        await self._store.save_cursor(name, position)
        progress.position = position
        progress.events += len(records)
        progress.last_step = time.time()
        return len(records)

    async def caught_up(self) -> bool:
        """Whether no consumer has an event waiting after its position."""
        for name, progress in self.progress.items():
            sub = self.subscriptions.get(name)
            types = None if sub is None else [sub.event_type]
            if await self._store.read_events(progress.position, 1, types):
                return False
        return True

    async def settle(self, timeout: float = 60.0) -> bool:
        """Wait until the running consumers have caught up, reactions to reactions included (those
        emit events of their own); False if they had not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:  # twice in a row: a reaction may be committing an event right now
            quiet = quiet + 1 if await self.caught_up() else 0
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def drain(self, timeout: float = 60.0) -> None:
        """Run every consumer until none finds more events (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = await asyncio.gather(*(self.step(name) for name in self.progress))
            if not any(counts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the relay still had events after {timeout} s")

    # -- one subscription's batch -----------------------------------------

    async def _deliver_batch(self, sub: Subscription, records: list[EventRecord], progress: _Progress) -> None:
        per_target: dict[str, list[list]] = {}
        sources: dict[str, list[EventRecord]] = {}
        declared = CATALOGUE.get(sub.event_type, sub.reaction.event)
        to, wanted = sub.reaction.to, sub.reaction.wanted
        # One target read from a field, the common case, needs no lookups and no de-duplication.
        single = to[0].field if len(to) == 1 and to[0].ask is None else None
        chosen: list[tuple[EventRecord, dict]] = []
        for record in records:
            fields = unpack(record.body)
            current = (
                declared.fields_at_current(fields, record.version) if record.version != declared.version else fields
            )
            if sub.reaction.when is None or wanted(current):
                chosen.append((record, current))
        # The batch's lookups (a follower list per distinct owner...) are asked all at once, not one
        # event after another: a batch of workouts by 5,000 athletes is 5,000 lookups.
        lookups = await self._look_up(sub, [current for _, current in chosen]) if single is None else {}
        alone = single is not None and to[0].alone
        for record, current in chosen:
            wire = record.wire()
            if single is not None:
                target = current.get(single)
                if type(target) is str:
                    targets = [target] if 0 < len(target) <= 256 else []
                else:  # a list of ids (To.each)
                    targets = self._targets(sub, current, lookups)
            else:
                targets = self._targets(sub, current, lookups)
            for target in targets:
                sent = wire
                if alone:  # To.each(..., alone=True): the list narrowed to this target (the fields now current)
                    sent = [*wire[:1], declared.version, *wire[2:8], pack({**current, single: [target]}), wire[9]]
                known = per_target.get(target)
                if known is None:
                    per_target[target], sources[target] = [sent], [record]
                else:
                    known.append(sent)
                    sources[target].append(record)
        envelopes = [(sub.kind, target, EVENT_MESSAGE, {"events": wires}, None) for target, wires in per_target.items()]
        gate = asyncio.Semaphore(self.parallel)

        async def send(part: list) -> None:
            async with gate:
                await self._send(sub, part, sources, progress)

        await asyncio.gather(*(send(envelopes[i : i + self.chunk]) for i in range(0, len(envelopes), self.chunk)))

    @staticmethod
    def _key(target: Target, fields: dict) -> tuple | None:
        """What ``target`` asks for these fields (None: it reads a field, or there is nobody to ask)."""
        value = fields.get(target.field)
        if target.ask is None or not isinstance(value, str):
            return None
        kind, handler, body = target.ask
        return (kind, value, handler, tuple(sorted(body.items())))

    async def _look_up(self, sub: Subscription, events: list[dict]) -> dict[tuple, list[str]]:
        keys = {key for fields in events for target in sub.reaction.to if (key := self._key(target, fields))}
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def one(key: tuple) -> tuple[tuple, list[str]]:
            async with gate:
                return key, await self._ask_retrying(key)

        return dict(await asyncio.gather(*(one(key) for key in keys)))

    async def _ask_retrying(self, key: tuple) -> list[str]:
        kind, value, handler, body = key
        for attempt in range(self.retries + 1):
            try:
                answer = await self._ask(kind, value, handler, dict(body))
                break
            except NotFound:
                return []
            except EngineError as error:
                if not error.retryable or attempt == self.retries:
                    raise
                await asyncio.sleep(self.backoff * 2**attempt)
        return list(answer) if isinstance(answer, list) else []

    def _targets(self, sub: Subscription, fields: dict, lookups: dict[tuple, list[str]]) -> list[str]:
        found: dict[str, None] = {}
        for target in sub.reaction.to:
            key = self._key(target, fields)
            if key is not None:
                ids = lookups.get(key, [])
            else:
                value = fields.get(target.field) if target.ask is None else None
                ids = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            for entity_id in ids:
                if isinstance(entity_id, str) and 0 < len(entity_id) <= 256:
                    found[entity_id] = None
        return list(found)

    async def _send(
        self, sub: Subscription, envelopes: list, sources: dict[str, list[EventRecord]], progress: _Progress
    ) -> None:
        pending, attempt = envelopes, 0
        while pending:
            results = await self._deliver(pending)
            retry = []
            for envelope, result in zip(pending, results):
                if isinstance(result, EngineError):
                    if result.retryable and attempt < self.retries:
                        retry.append(envelope)
                    else:
                        await self._one_by_one(sub, envelope, sources[envelope[1]], result, progress)
                    continue
                progress.deliveries += 1
                if isinstance(result, dict):
                    progress.applied += result.get("applied", 0) + result.get("declined", 0)
                    progress.repeated += result.get("repeated", 0)
            if retry:
                attempt += 1
                progress.retries += len(retry)
                progress.last_error = f"{len(retry)} target(s) will be tried again (attempt {attempt})"
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            pending = retry

    async def _one_by_one(
        self, sub: Subscription, envelope: tuple, records: list[EventRecord], error: EngineError, progress: _Progress
    ) -> None:
        """A target's events failed together: try each alone, in order, and dead-letter those that fail."""
        kind, target, message, body, _ = envelope
        wires = body["events"]
        failures: list[DeadLetter] = []
        if len(wires) == 1:
            failures.append(self._letter(sub, target, records[0], error))
        else:
            for wire, record in zip(wires, records):
                outcome = await self._deliver_alone(kind, target, message, wire)
                if isinstance(outcome, EngineError):
                    failures.append(self._letter(sub, target, record, outcome))
                else:
                    progress.applied += 1
        if failures:
            await self._store.add_dead_letters(failures)
            progress.dead_letters += len(failures)
            progress.last_error = failures[-1].error
            log.error("relay %s: %d event(s) to %s/%s dead-lettered: %s", sub.name, len(failures), kind, target,
                      failures[-1].error)  # fmt: skip

    async def _deliver_alone(self, kind: str, target: str, message: str, wire: list) -> Any:
        attempt = 0
        while True:
            (result,) = await self._deliver([(kind, target, message, {"events": [wire]}, None)])
            if not (isinstance(result, EngineError) and result.retryable) or attempt == 2:
                return result
            await asyncio.sleep(self.backoff * 2**attempt)
            attempt += 1

    def _letter(self, sub: Subscription, target: str, record: EventRecord, error: EngineError) -> DeadLetter:
        return DeadLetter(sub.name, target, record, f"{error.code}: {error}", self.retries + 1, time.time())

    # -- operators ------------------------------------------------------------

    async def replay(self, subscription: str | None = None, limit: int = 1_000) -> dict[str, int]:
        """Deliver dead letters again (oldest first); those that now apply are removed, the others stay."""
        letters = await self._store.dead_letters(subscription, limit)
        done, kept = [], 0
        for letter in letters:
            sub = self.subscriptions.get(letter.subscription)
            if sub is None:
                kept += 1
                continue
            wire = letter.event.wire()
            (result,) = await self._deliver(
                [(sub.kind, letter.target, EVENT_MESSAGE, {"events": [wire], "replay": True}, None)]
            )
            if isinstance(result, EngineError):
                kept += 1
            else:
                done.append(letter.id)
        removed = await self._store.remove_dead_letters(done) if done else 0
        return {"replayed": removed, "kept": kept}

    async def status(self) -> dict[str, Any]:
        """Each consumer's position and lag: outbox positions between it and the newest event (a
        reaction's cursor moves past other types' events as it reads, so an idle one lags 0)."""
        last = await self._store.last_event_position()
        return {
            "last_position": last,
            "consumers": {
                name: {"lag": max(last - p.position, 0), **vars(p)} for name, p in sorted(self.progress.items())
            },
        }
