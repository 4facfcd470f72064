"""The host: many entities in one event loop, turn-based, journaled, snapshotted.

A host knows nothing of Ray; ``engine/ray_host.py`` wraps it in a Ray actor.
Messages to one entity run one at a time in arrival order. Handlers are plain
functions, so a turn never yields: an active entity with an empty mailbox runs
its message inline, and a batch of messages costs one pass over a list. An
entity that is still activating (loading its snapshot and journal) queues its
messages in its mailbox and drains them in order once it is ready.

An ``@update`` is journaled; its caller hears back only after the group commit
that carries it is durable. A ``@query`` that reads state changed by an update
still in flight waits for that commit too, so nobody sees state that could be
lost; a ``@peek`` (a display read on a busy entity) answers at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.codec import pack, unpack
from engine.config import HostConfig
from engine.entity import Entity, Handler
from engine.erasure import ERASE_MESSAGE, mentions, scrub_marks
from engine.errors import (
    ActivationFailed,
    EngineError,
    HandlerFailed,
    HostUnavailable,
    JournalFailed,
    MalformedMessage,
    Overloaded,
    Rejected,
    UnknownKind,
)
from engine.events import CATALOGUE, EVENT_MESSAGE, Event, EventRecord
from engine.journal import Flush, GroupCommitter
from engine.notices import Publish
from engine.store import JournalEntry, Reminder, Snapshot, Store
from engine.timers import TimerQueue

__all__ = ["Host", "Envelope", "TIMER_MESSAGE", "EVENT_MESSAGE", "ERASE_MESSAGE", "MAX_ID_LENGTH", "rebuild"]

log = logging.getLogger(__name__)

Envelope = Sequence[Any]  # (kind, entity_id, message_type, body, at | None)
TIMER_MESSAGE = "$timer"
MAX_ID_LENGTH = 256
MAX_EVENTS_PER_MESSAGE = 100_000  # one race's results, one event per athlete
MAX_EVENTS_PER_DELIVERY = 10_000  # one EVENT_MESSAGE: what a relay sends one entity at once
_REPLAYED_KEPT = 1_000  # ids of hand-replayed dead letters an entity remembers, against a second replay


class _Reply:
    """Collects the answers to one call (a single message or a batch)."""

    __slots__ = ("results", "waiting", "ready", "watched")

    def __init__(self, size: int) -> None:
        self.results: list[Any] = [None] * size
        self.waiting = 0  # messages still in some mailbox
        self.ready: asyncio.Future[None] | None = None
        self.watched: list[tuple[Flush, int]] = []

    def answered(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and self.ready is not None and not self.ready.done():
            self.ready.set_result(None)


class _Activation:
    __slots__ = (
        "kind",
        "entity_id",
        "entity",
        "seq",
        "snapshot_seq",
        "snapshot_due",
        "compacted_seq",
        "mailbox",
        "ready",
        "broken",
        "last_flush",
        "last_used",
        "dirty_since",
        "after",
    )

    def __init__(self, kind: str, entity_id: str, now: float, after: Flush | None = None) -> None:
        self.kind = kind
        self.entity_id = entity_id
        self.entity: Entity = None  # type: ignore[assignment]  # loaded before `ready`; read only once ready
        self.seq = 0
        self.snapshot_seq = 0
        self.snapshot_due = 0.0  # monotonic time before which no periodic snapshot is taken (snapshot_budget)
        self.compacted_seq = 0
        self.mailbox: deque = deque()
        self.ready = False
        self.broken = False
        self.last_flush: Flush | None = None
        self.last_used = now
        self.dirty_since = 0.0
        self.after = after  # a predecessor's last commit, to wait for before loading

    @property
    def dirty(self) -> bool:
        return self.seq > self.snapshot_seq


class Host:
    def __init__(
        self,
        kinds: Iterable[type[Entity]],
        store: Store,
        config: HostConfig | None = None,
        *,
        owns: Callable[[str, str], bool] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        publish: Publish | None = None,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        """``clock`` stamps messages and decides when timers are due; ``monotonic`` measures
        idleness and snapshot intervals. Tests pass clocks they move by hand and then turn the
        crank themselves (``fire_timers``, ``maintain``)."""
        self.kinds: dict[str, type[Entity]] = {}
        for cls in kinds:
            if not isinstance(getattr(cls, "kind", None), str) or not cls.kind:
                raise TypeError(f"{cls.__qualname__} needs a non-empty string `kind`")
            self.kinds[cls.kind] = cls
        self.store = store
        self.config = config or HostConfig()
        self._owns = owns or (lambda kind, entity_id: True)
        self._clock = clock
        self._monotonic = monotonic
        self._publish = publish  # where entities' notices go (engine.notices); None: nowhere
        self._on_events = on_events  # told when events were committed (wakes the relay)
        self._active: dict[tuple[str, str], _Activation] = {}
        self._announcing: dict[Flush, list[tuple[str, str, list[dict]]]] = {}  # a commit's notices, to publish
        self._to_activate: dict[str, list[_Activation]] = {}
        self._committer: GroupCommitter | None = None
        self._timers = TimerQueue()
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._queued = 0
        self._last_touch = monotonic()
        self._last_snapshot = monotonic()
        self._closing = False
        self.started = False
        self.counters = {
            "messages": 0,
            "rejected": 0,
            "handler_failures": 0,
            "overloaded": 0,
            "activations": 0,
            "activation_failures": 0,
            "passivations": 0,
            "snapshots": 0,
            "timers_fired": 0,
        }

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        self._committer = GroupCommitter(self.store, self._journal_failed, self._on_events)
        self._committer.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._maintain(), name="arena-host-maintain"),
            loop.create_task(self._tick_timers(), name="arena-host-timers"),
        ]
        self.started = True
        for reminder in await self.store.reminders():
            if reminder.kind in self.kinds and self._owns(reminder.kind, reminder.entity_id):
                self._timers.push(reminder.due or 0.0, reminder.kind, reminder.entity_id, "")

    async def stop(self) -> None:
        """Refuse new messages, finish the journal, snapshot everything dirty."""
        if self._closing:
            return
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._background:
            await asyncio.wait(self._background, timeout=10.0)
        if self._committer is not None:
            await self._committer.stop()
        await self._snapshot([a for a in self._active.values() if a.ready and a.dirty])
        await self.store.close()

    # -- messages --------------------------------------------------------

    async def ask(self, kind: str, entity_id: str, message_type: str, body: Any = None, at: float | None = None) -> Any:
        (result,) = await self.deliver([(kind, entity_id, message_type, body, at)])
        if isinstance(result, EngineError):
            raise result
        return result

    async def deliver(self, envelopes: Sequence[Envelope]) -> list[Any]:
        """Answer each envelope in order with its result or an ``EngineError``."""
        reply = _Reply(len(envelopes))
        if self._closing or not self.started:
            reply.results = [HostUnavailable("the host is not running")] * len(envelopes)
            return reply.results
        # One receipt instant for the batch: the default `now` of its messages.
        received, self._last_touch = self._clock(), self._monotonic()
        for index, envelope in enumerate(envelopes):
            self._accept(envelope, received, reply, index)
        self.counters["messages"] += len(envelopes)
        if reply.waiting:
            reply.ready = asyncio.get_running_loop().create_future()
            await reply.ready
        if reply.watched:
            await self._await_commits(reply)
        return reply.results

    def _accept(self, envelope: Envelope, received: float, reply: _Reply, index: int) -> None:
        try:
            kind, entity_id, message_type, body, at = envelope
        except (TypeError, ValueError):
            reply.results[index] = MalformedMessage("an envelope is [kind, entity_id, message_type, body, at]")
            return
        if at is None:
            at = received
        elif not isinstance(at, (int, float)):
            reply.results[index] = MalformedMessage("`at` is unix seconds or null")
            return
        activation = self._active.get((kind, entity_id))
        if activation is None:
            error = self._check_address(kind, entity_id)
            if error is not None:
                reply.results[index] = error
                return
            activation = self._activate_later(kind, entity_id)
        if activation.ready and not activation.mailbox:
            self._turn(activation, message_type, body, at, reply, index)
            return
        if len(activation.mailbox) >= self.config.mailbox_capacity or self._queued >= self.config.max_queued:
            self.counters["overloaded"] += 1
            reply.results[index] = Overloaded(f"{kind}/{entity_id} has too many messages waiting; retry later")
            return
        activation.mailbox.append((message_type, body, at, reply, index))
        self._queued += 1
        reply.waiting += 1

    def _check_address(self, kind: Any, entity_id: Any) -> EngineError | None:
        if not isinstance(kind, str) or kind not in self.kinds:
            return UnknownKind(f"no entity kind {kind!r} on this host (known: {', '.join(sorted(self.kinds))})")
        if not isinstance(entity_id, str) or not entity_id or len(entity_id) > MAX_ID_LENGTH:
            return MalformedMessage(f"an entity id is a string of 1 to {MAX_ID_LENGTH} characters")
        return None

    def _turn(
        self, activation: _Activation, message_type: Any, body: Any, at: float, reply: _Reply, index: int
    ) -> None:
        """Run one message against a ready entity; never yields."""
        entity = activation.entity
        try:
            handler, kwargs, journal_body = _resolve(entity, message_type, body)
        except EngineError as error:
            reply.results[index] = error
            return
        if handler is None:  # a timer that was cancelled or already fired
            return
        committer = self._committer
        assert committer is not None  # a host delivers nothing before it starts
        if handler.journaled and committer.pending >= self.config.max_uncommitted:
            self.counters["overloaded"] += 1
            reply.results[index] = Overloaded("the journal is behind; retry later")
            return
        activation.last_used = self._last_touch
        entity._now = at
        try:
            if handler.journaled and type(entity).redact is not Entity.redact and handler.name == message_type:
                kwargs = journal_body = entity.redact(message_type, kwargs)
            result = handler.function(entity, **kwargs)
            notices, entity._notices = entity._notices, []
            emitted, entity._events = entity._events, []
        except Rejected as error:
            entity._notices = notices = []
            entity._events = emitted = []
            self.counters["rejected"] += 1
            reply.results[index] = error
            if message_type != TIMER_MESSAGE:
                return
            result = error  # the timer was consumed: journal it so a replay consumes it too
        except Exception as error:
            entity._notices = []
            entity._events = []
            self.counters["handler_failures"] += 1
            log.exception("%s/%s %s failed", activation.kind, activation.entity_id, message_type)
            reply.results[index] = HandlerFailed(
                f"{activation.kind}.{message_type} failed: {type(error).__name__}: {error}"
            )
            self._invalidate(activation)
            return
        if not handler.journaled:
            if emitted:
                log.error("%s.%s is a query: the %d event(s) it emitted are dropped", activation.kind, message_type,
                          len(emitted))  # fmt: skip
            reply.results[index] = result
            last = activation.last_flush
            if last is not None and not last.done and handler.settled:
                reply.watched.append((last, index))
            return
        records = None
        if emitted:
            try:
                records = _records(activation, activation.seq + 1, at, emitted)
            except (TypeError, ValueError, OverflowError) as error:  # the state changed: reload it
                self.counters["handler_failures"] += 1
                log.error("%s/%s %s emitted events that cannot be stored: %s", activation.kind,
                          activation.entity_id, message_type, error)  # fmt: skip
                reply.results[index] = HandlerFailed(f"{activation.kind}.{message_type} emitted a bad event: {error}")
                self._invalidate(activation)
                return
        reply.results[index] = result
        if activation.seq == activation.snapshot_seq:
            activation.dirty_since = self._last_touch
        activation.seq += 1
        reminder = None
        if entity._timers_changed:
            entity._timers_changed = False
            reminder = self._schedule(activation)
        flush = committer.add(
            JournalEntry(
                activation.kind,
                activation.entity_id,
                activation.seq,
                message_type,
                pack(journal_body),
                at,
                entity.schema_version,
            ),
            reminder,
            records,
        )
        activation.last_flush = flush
        reply.watched.append((flush, index))
        if notices and self._publish is not None:
            told = self._announcing.get(flush)
            if told is None:  # the first notices of this group commit: published together once it lands
                told = self._announcing[flush] = []
                self._spawn(self._announce(flush))
            told.append((activation.kind, activation.entity_id, notices))
        if message_type == ERASE_MESSAGE:
            self._spawn(self._after_erasure(activation, flush, activation.seq, bool(result["forgotten"])))

    async def _after_erasure(self, activation: _Activation, flush: Flush, seq: int, forgotten: bool) -> None:
        """Once an erasure is durable, nothing older may keep the person: an entity that was theirs
        alone leaves memory and the store; any other is snapshotted at once and its whole journal
        compacted through that snapshot (``engine.erasure``)."""
        if await flush.wait() is not None:
            return  # not journaled: the activation was invalidated, the eraser asks again
        kind, entity_id = activation.kind, activation.entity_id
        try:
            if forgotten:
                if self._active.get((kind, entity_id)) is activation:
                    self._invalidate(activation)  # what waits in its mailbox goes to a fresh activation
                activation.broken = True  # never snapshotted again
                await self.store.delete_entity(kind, entity_id)
                return
            if not activation.broken:
                await self._snapshot([activation])
                if activation.snapshot_seq >= seq:
                    await self.store.compact(kind, entity_id, activation.snapshot_seq)
                    activation.compacted_seq = activation.snapshot_seq
        except Exception:
            log.exception("%s/%s: the store did not finish an erasure; the eraser asks again", kind, entity_id)

    async def _announce(self, flush: Flush) -> None:
        """The notices of one group commit's entities, published together once it is durable."""
        failed = await flush.wait()
        batch = self._announcing.pop(flush, [])
        if failed is not None or not batch:
            return
        assert self._publish is not None
        try:
            await self._publish(batch)
        except Exception:
            log.exception("%d entities' notices were not published", len(batch))

    async def _await_commits(self, reply: _Reply) -> None:
        flushes = {id(flush): flush for flush, _ in reply.watched}
        for flush in flushes.values():
            await flush.wait()
        for flush, index in reply.watched:
            if flush.error is not None:
                reply.results[index] = JournalFailed(f"the journal did not take the message: {flush.error}")

    # -- activation ------------------------------------------------------

    def _activate_later(self, kind: str, entity_id: str, after: Flush | None = None) -> _Activation:
        activation = _Activation(kind, entity_id, self._monotonic(), after)
        self._active[(kind, entity_id)] = activation
        # Activations wanted in one pass of the loop load together: one store round trip
        # for a fan-out that wakes thousands of feeds.
        waiting = self._to_activate.setdefault(kind, [])
        waiting.append(activation)
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._activate_waiting, kind)
        return activation

    def _activate_waiting(self, kind: str) -> None:
        batch = self._to_activate.pop(kind, [])
        if batch:
            self._spawn(self._activate(kind, batch))

    async def _activate(self, kind: str, batch: list[_Activation]) -> None:
        cls = self.kinds[kind]
        try:
            for activation in batch:
                if activation.after is not None:  # a predecessor's commit must land before we read
                    await activation.after.wait()
                    activation.after = None
            loaded = await self.store.load(kind, [a.entity_id for a in batch])
        except Exception as error:
            for activation in batch:
                self._activation_failed(activation, error)
            return
        for activation in batch:
            try:
                entity, seq, snapshot_seq = rebuild(cls, activation.entity_id, *loaded[activation.entity_id])
            except Exception as error:
                self._activation_failed(activation, error)
                continue
            activation.entity = entity
            activation.seq = seq
            activation.snapshot_seq = activation.compacted_seq = snapshot_seq
            activation.ready = True
            self.counters["activations"] += 1
            if entity._timers:
                self._schedule(activation)
            self._drain(activation)

    def _activation_failed(self, activation: _Activation, error: Exception) -> None:
        kind, entity_id = activation.kind, activation.entity_id
        self.counters["activation_failures"] += 1
        log.error("activation of %s/%s failed: %s", kind, entity_id, error, exc_info=error)
        failure = (
            error
            if isinstance(error, EngineError)
            else ActivationFailed(f"{kind}/{entity_id} could not be loaded: {type(error).__name__}: {error}")
        )
        if self._active.get((kind, entity_id)) is activation:
            del self._active[(kind, entity_id)]
        self._fail_mailbox(activation, failure)

    def _drain(self, activation: _Activation) -> None:
        mailbox = activation.mailbox
        while mailbox and not activation.broken:
            message_type, body, at, reply, index = mailbox.popleft()
            self._queued -= 1
            self._turn(activation, message_type, body, at, reply, index)
            reply.answered()

    def _fail_mailbox(self, activation: _Activation, error: EngineError) -> None:
        mailbox = activation.mailbox
        while mailbox:
            _, _, _, reply, index = mailbox.popleft()
            self._queued -= 1
            reply.results[index] = error
            reply.answered()

    def _invalidate(self, activation: _Activation) -> None:
        """Drop an activation whose state can no longer be trusted; reload it from the store."""
        activation.broken = True
        key = (activation.kind, activation.entity_id)
        if self._active.get(key) is activation:
            del self._active[key]
        if activation.mailbox:
            successor = self._activate_later(activation.kind, activation.entity_id, after=activation.last_flush)
            successor.mailbox, activation.mailbox = activation.mailbox, deque()

    def _journal_failed(self, flush: Flush) -> None:
        for entry in flush.entries:
            activation = self._active.get((entry.kind, entry.entity_id))
            if activation is not None and not activation.broken:
                self._invalidate(activation)

    # -- timers ----------------------------------------------------------

    def _schedule(self, activation: _Activation) -> Reminder:
        timers = activation.entity._timers
        for name, (due, _, _) in timers.items():
            self._timers.push(due, activation.kind, activation.entity_id, name)
        due = min((timer[0] for timer in timers.values()), default=None)
        return Reminder(activation.kind, activation.entity_id, due)

    async def _tick_timers(self) -> None:
        while True:
            await asyncio.sleep(self.config.timer_resolution)
            self._fire_due()

    async def fire_timers(self) -> int:
        """Fire the timers due by the clock now and wait until their messages are answered;
        the number of entities they went to. The host's own loop does this every
        ``timer_resolution`` seconds."""
        deliveries = self._fire_due()
        await asyncio.gather(*deliveries)
        return len(deliveries)

    def _fire_due(self) -> list[asyncio.Task]:
        fired: dict[tuple[str, str], list] = {}
        for due, kind, entity_id, name in self._timers.pop_due(self._clock()):
            fired.setdefault((kind, entity_id), []).append((due, name))
        deliveries = []
        for (kind, entity_id), timers in fired.items():
            activation = self._active.get((kind, entity_id))
            if activation is not None and activation.ready:
                pending = activation.entity._timers
                timers = [(d, n) for d, n in timers if n in pending and pending[n][0] <= d]
                if not timers:
                    continue
            # A restarted host knows only that an entity has timers: activating it
            # registers them, and any already due fire on the next tick.
            envelopes = [(kind, entity_id, TIMER_MESSAGE, {"name": name}, due) for due, name in timers if name]
            if not envelopes:
                envelopes = [(kind, entity_id, TIMER_MESSAGE, {"name": ""}, None)]
            self.counters["timers_fired"] += len(envelopes)
            deliveries.append(self._spawn(self.deliver(envelopes)))
        return deliveries

    # -- snapshots and passivation --------------------------------------

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.config.snapshot_interval))
            try:
                await self.maintain()
            except Exception:
                log.exception("write-behind snapshot failed; will retry")

    async def maintain(self) -> None:
        """Snapshot what is dirty (all of it once per ``snapshot_interval``) and passivate
        entities idle for ``passivate_after``. The host's own loop does this every second."""
        now = self._monotonic()
        idle = [
            a
            for a in self._active.values()
            if a.ready and not a.mailbox and not a.entity._timers and now - a.last_used >= self.config.passivate_after
        ]
        if now - self._last_snapshot >= self.config.snapshot_interval:
            self._last_snapshot = now
            dirty = [a for a in self._active.values() if a.ready and a.dirty and a.snapshot_due <= now]
        else:
            dirty = [a for a in idle if a.dirty]
        await self._snapshot(dirty)
        for activation in idle:
            key = (activation.kind, activation.entity_id)
            if (
                self._active.get(key) is activation
                and not activation.dirty
                and not activation.mailbox
                and activation.last_used <= now
            ):
                del self._active[key]
                self.counters["passivations"] += 1

    async def _snapshot(self, activations: list[_Activation]) -> None:
        taken: list[tuple[_Activation, Snapshot, Flush | None]] = []
        taken_at = self._monotonic()
        for activation in activations:
            if activation.broken:
                continue
            entity = activation.entity
            kept = {"state": entity.snapshot(), "timers": entity._timers}
            if entity._applied:
                kept["applied"] = entity._applied
            if entity._replayed:
                kept["replayed"] = entity._replayed
            state = pack(kept)
            snapshot = Snapshot(
                activation.kind, activation.entity_id, activation.seq, state, self._clock(), entity.schema_version
            )
            taken.append((activation, snapshot, activation.last_flush))
        if not taken:
            return
        # A snapshot may include updates still being committed: save it only once they are durable.
        durable = []
        for activation, snapshot, flush in taken:
            if flush is not None and (await flush.wait()) is not None:
                continue
            durable.append((activation, snapshot))
        if not durable:
            return
        await self.store.save_snapshots([snapshot for _, snapshot in durable])
        self.counters["snapshots"] += len(durable)
        for activation, snapshot in durable:
            activation.snapshot_seq = max(activation.snapshot_seq, snapshot.seq)
            wait = min(len(snapshot.state) / self.config.snapshot_budget, self.config.snapshot_max_wait)
            activation.snapshot_due = taken_at + wait
            if activation.dirty:  # changed again while the snapshot was being written
                activation.dirty_since = taken_at
            if snapshot.seq - activation.compacted_seq >= self.config.compact_every and not (
                activation.kind in self.config.archived_kinds and activation.entity.journal_kept()
            ):
                await self.store.compact(activation.kind, activation.entity_id, snapshot.seq)
                activation.compacted_seq = snapshot.seq

    # -- introspection ---------------------------------------------------

    def retirable(self, idle_for: float) -> bool:
        """Nothing in flight, no message for ``idle_for`` seconds, and every entity in memory is
        retirable with no timer pending: the host may stop (a dedicated host then exits)."""
        if self._closing or not self.started or self._queued or self._background or self._to_activate:
            return False
        if self._committer is not None and self._committer.pending:
            return False
        if self._monotonic() - self._last_touch < idle_for:
            return False
        return all(
            a.ready and not a.mailbox and not a.entity._timers and a.entity.retirable() for a in self._active.values()
        )

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def active_entities(self) -> int:
        return len(self._active)

    def metrics(self) -> dict[str, Any]:
        committer = self._committer
        now = self._monotonic()
        active_by_kind: dict[str, int] = {}
        dirty, oldest_dirty = 0, now
        for (kind, _), activation in self._active.items():
            active_by_kind[kind] = active_by_kind.get(kind, 0) + 1
            if activation.ready and activation.dirty:
                dirty += 1
                oldest_dirty = min(oldest_dirty, activation.dirty_since)
        return {
            "active_entities": len(self._active),
            "active_by_kind": active_by_kind,
            "mailbox_depth": self._queued,
            "journal_pending": committer.pending if committer else 0,
            "journal_lag_seconds": (time.monotonic() - committer.oldest_pending_since)  # the committer's own clock
            if committer and committer.oldest_pending_since is not None
            else 0.0,
            "journal_commits": committer.commits if committer else 0,
            "journal_entries": committer.committed_entries if committer else 0,
            "journal_last_commit_seconds": committer.last_commit_seconds if committer else 0.0,
            "snapshot_lag_entities": dirty,
            "snapshot_lag_seconds": now - oldest_dirty,
            "timers": len(self._timers),
            **self.counters,
        }

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _resolve(entity: Entity, message_type: Any, body: Any) -> tuple[Handler | None, dict, Any]:
    """The handler and its arguments; a timer message becomes its target."""
    if not isinstance(message_type, str):
        raise MalformedMessage("a message type is a string")
    if message_type == EVENT_MESSAGE:
        kwargs = _EVENTS.bind(entity.kind, body)
        return _EVENTS, {"events": _events_of(kwargs["events"]), "replay": kwargs.get("replay") is True}, body
    if message_type == ERASE_MESSAGE:
        kwargs = _ERASE.bind(entity.kind, body)
        if not all(isinstance(kwargs[name], str) and kwargs[name] for name in ("user_id", "stand_in")):
            raise MalformedMessage(f"{entity.kind}.{ERASE_MESSAGE}: user_id and stand_in are non-empty strings")
        return _ERASE, kwargs, body
    if message_type == TIMER_MESSAGE:
        name = body.get("name") if isinstance(body, dict) else None
        timer = entity._timers.pop(name, None) if isinstance(name, str) else None
        if timer is None:
            return None, {}, None
        entity._timers_changed = True
        _, target, target_body = timer
        handler = entity.handler(target)
        return handler, handler.bind(entity.kind, target_body), {"name": name}
    handler = entity.handler(message_type)
    kwargs = handler.bind(entity.kind, body)
    return handler, kwargs, kwargs


def rebuild(
    cls: type[Entity], entity_id: str, snapshot: Snapshot | None, entries: list[JournalEntry]
) -> tuple[Entity, int, int]:
    """The entity from its snapshot and the journal after it: (entity, seq, snapshot seq)."""
    entity = cls(entity_id)
    seq = 0
    if snapshot is not None:
        state = unpack(snapshot.state)
        body = state["state"]
        if snapshot.schema_version != cls.schema_version:
            body = cls.upgrade(body, snapshot.schema_version)
        entity.restore(body)
        entity._timers = state["timers"]
        entity._applied = state.get("applied", {})
        entity._replayed = state.get("replayed", [])
        seq = snapshot.seq
    snapshot_seq = seq
    for entry in entries:
        if entry.seq != seq + 1:
            raise ActivationFailed(f"{cls.kind}/{entity_id}: journal jumps from seq {seq} to {entry.seq}")
        _replay(entity, entry)
        seq = entry.seq
    entity._timers_changed = False
    entity._notices = []  # told when they were made: replaying tells nobody again
    entity._events = []  # in the outbox since they were made
    return entity, seq, snapshot_seq


def _replay(entity: Entity, entry: JournalEntry) -> None:
    body = unpack(entry.body)
    if entry.schema_version != entity.schema_version and entry.message_type not in (TIMER_MESSAGE, EVENT_MESSAGE, ERASE_MESSAGE):
        body = entity.upgrade_message(entry.message_type, body, entry.schema_version)
    handler, kwargs, _ = _resolve(entity, entry.message_type, body)
    if handler is None:
        return
    entity._now = entry.at
    try:
        handler.function(entity, **kwargs)
    except Rejected:
        pass  # it was refused live too (a timer whose target said no)


def _records(activation: _Activation, seq: int, at: float, emitted: list) -> list[EventRecord]:
    """The outbox rows of the events one message emitted."""
    if len(emitted) > MAX_EVENTS_PER_MESSAGE:
        raise ValueError(f"{len(emitted)} events from one message, more than {MAX_EVENTS_PER_MESSAGE:,}")
    records = []
    for index, (event, fields) in enumerate(emitted):
        user_id = fields[event.user_field] if event.user_field is not None else None
        if user_id is not None and not isinstance(user_id, str):
            raise TypeError(f"{event.name}: the user field {event.user_field!r} holds a {type(user_id).__name__}")
        records.append(
            EventRecord(
                activation.kind, activation.entity_id, seq, index, event.name, event.version, at, user_id, pack(fields)
            )  # fmt: skip
        )
    return records


def _events_of(events: Any) -> list[Event]:
    """The delivered events, every one checked before any is applied."""
    if not isinstance(events, list) or len(events) > MAX_EVENTS_PER_DELIVERY:
        raise MalformedMessage(f"events are a list of at most {MAX_EVENTS_PER_DELIVERY:,}")
    return [Event.from_wire(item) for item in events]


def _apply_events(entity: Entity, events: list[Event], replay: bool = False) -> dict:
    """Apply delivered events to ``entity`` in order, each exactly once: an event at or before the
    last one of its type applied from its source is a repeat (a relay retried) and is skipped. ``replay``: an
    operator replays dead letters, which may be older than what followed them; each id applies once."""
    outcome = {"applied": 0, "repeated": 0, "declined": 0, "ignored": 0}
    applied, reactions = entity._applied, type(entity).reactions
    for event in events:
        reaction = reactions.get(event.type)
        if reaction is None:
            outcome["ignored"] += 1
            continue
        mark = [event.seq, event.idx]
        if replay:
            if event.id in entity._replayed:
                outcome["repeated"] += 1
                continue
            entity._replayed.append(event.id)
            del entity._replayed[:-_REPLAYED_KEPT]
        else:
            # Per event type and source: each reaction is a consumer of its own, so a kind reacting
            # to two types of one source gets them in two orders that do not interleave by seq.
            key = f"{event.type} {event.source}"
            last = applied.get(key)
            if last is None:
                last = applied.get(event.source)  # a mark kept before marks were per type (shared)
            if last is not None and last >= mark:
                outcome["repeated"] += 1
                continue
            applied[key] = mark
        declared = CATALOGUE.get(event.type, reaction.event)
        if event.version != declared.version:
            event = event._replace(
                version=declared.version, fields=declared.fields_at_current(event.fields, event.version)
            )
        try:
            reaction.function(entity, event)
        except Rejected:
            outcome["declined"] += 1
        else:
            outcome["applied"] += 1
    return outcome


_EVENTS = Handler(
    name=EVENT_MESSAGE,
    function=_apply_events,
    journaled=True,
    required=frozenset({"events"}),
    accepted=frozenset({"events", "replay"}),
)


def _erase(entity: Entity, user_id: str, stand_in: str) -> dict:
    """``ERASE_MESSAGE``: the entity's own hook, then the engine's marks of the person."""
    forgotten = entity.erase_user(user_id, stand_in)
    entity._applied = scrub_marks(entity._applied, user_id)
    timers = {name: timer for name, timer in entity._timers.items() if not mentions(timer, user_id)}
    if forgotten:
        fresh = type(entity)(entity.id)
        entity.restore(fresh.snapshot())
        timers, entity._applied, entity._replayed = {}, {}, []
    if timers != entity._timers:
        entity._timers = timers
        entity._timers_changed = True
    return {"forgotten": forgotten}


_ERASE = Handler(
    name=ERASE_MESSAGE,
    function=_erase,
    journaled=True,
    required=frozenset({"user_id", "stand_in"}),
    accepted=frozenset({"user_id", "stand_in"}),
)
