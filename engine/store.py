"""The store protocol: what a host needs from durable storage.

A host journals facts write-through (``append``) and snapshots derived state
write-behind (``save_snapshots``). Activation reads the latest snapshot and the
journal after it. ``persistence/`` implements this protocol for SQLite and
PostgreSQL; both pass ``tests/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from engine.events import EventRecord

__all__ = [
    "JournalEntry",
    "Snapshot",
    "Reminder",
    "DeadLetter",
    "Mention",
    "Store",
    "StoreError",
    "JournalConflict",
    "LOAD_CHUNK",
]

LOAD_CHUNK = 500  # ids per query of Store.load


class StoreError(Exception):
    """The store could not do what was asked; the operation had no effect."""


class JournalConflict(StoreError):
    """An entry's ``(kind, entity_id, seq)`` is already journaled.

    Two activations of one entity wrote the same sequence number: the whole
    batch is rejected so neither overwrites the other.
    """


class JournalEntry(NamedTuple):
    """A tuple, not a dataclass: hosts build one per update on the hot path."""

    kind: str
    entity_id: str
    seq: int  # 1, 2, 3… per entity, no gaps
    message_type: str
    body: bytes  # msgpack
    at: float  # unix seconds, stamped by the host; handlers see it as ``now``
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    kind: str
    entity_id: str
    seq: int  # the last journal seq folded into ``state``
    state: bytes  # msgpack
    taken_at: float
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class Reminder:
    """The durable index of entities with pending timers; ``due=None`` removes it."""

    kind: str
    entity_id: str
    due: float | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a subscription could not apply to one target, after its retries."""

    subscription: str  # "kind.handler" of the reaction
    target: str  # the target entity's id
    event: EventRecord
    error: str
    attempts: int
    failed_at: float
    id: int = 0  # given by the store


class Mention(NamedTuple):
    """A stored row that mentions a person (``Store.mentions``): where erasure must reach."""

    place: str  # snapshot, journal, reminder, event, dead_letter or cursor
    kind: str  # the entity's kind; an event's type; a dead letter's subscription; a cursor's name
    key: str  # the entity's id; an event's position; a dead letter's id; "" for a cursor


@runtime_checkable
class Store(Protocol):
    name: str  # "sqlite" or "postgresql"

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def append(
        self, entries: Sequence[JournalEntry], reminders: Sequence[Reminder] = (), events: Sequence[EventRecord] = ()
    ) -> None:
        """Journal ``entries``, apply ``reminders`` and add ``events`` to the outbox in one transaction.

        Raises ``JournalConflict`` (and writes nothing) if any entry's seq is already
        journaled or the batch holds it twice. Events get positions in their order here, and
        later than any position already visible to a reader.
        """

    async def read_journal(
        self, kind: str, entity_id: str, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[JournalEntry]:
        """Entries with ``after_seq < seq <= up_to_seq`` (no upper bound by default), in seq order;
        the bound lets an archiver read a long journal a part at a time."""

    async def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        """Upsert each entity's latest snapshot; an older seq never replaces a newer one."""

    async def load_snapshot(self, kind: str, entity_id: str) -> Snapshot | None: ...

    async def load(self, kind: str, entity_ids: Sequence[str]) -> dict[str, tuple[Snapshot | None, list[JournalEntry]]]:
        """For each id: its latest snapshot and the journal entries after it, in seq order.

        One round trip for many activations (a fan-out wakes thousands of feeds at once);
        ids with neither come back as ``(None, [])``.
        """

    async def compact(self, kind: str, entity_id: str, up_to_seq: int) -> int:
        """Delete journal entries with ``seq <= up_to_seq`` (already in a snapshot); returns how many it deleted.

        Never deletes an entry with ``seq > up_to_seq``, and may keep entries at or below
        ``up_to_seq`` that share a segment with later ones.
        """

    async def reminders(self) -> list[Reminder]:
        """Every entity with a pending timer, for hosts to reactivate after a restart."""

    async def delete_entity(self, kind: str, entity_id: str) -> None:
        """Erase an entity's snapshot, journal and reminder (right to erasure)."""

    async def entity_ids(self, kind: str) -> list[str]:
        """Ids of every entity of ``kind`` with a snapshot or journal entry."""

    async def health(self) -> dict:
        """``{"store": name, "ok": bool, ...}`` without raising."""

    # -- the outbox (engine.events) ---------------------------------------

    async def read_events(self, after: int, limit: int, types: Sequence[str] | None = None) -> list[EventRecord]:
        """Up to ``limit`` events with a position after ``after`` (of ``types`` only, when given),
        in position order."""

    async def last_event_position(self) -> int:
        """The highest position given so far (0 with no events)."""

    async def cursors(self) -> dict[str, int]:
        """Every consumer's saved position."""

    async def save_cursor(self, name: str, position: int) -> None:
        """Set consumer ``name``'s position (it may go back: a replay)."""

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...

    async def dead_letters(self, subscription: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters first, of one subscription or all."""

    async def remove_dead_letters(self, ids: Sequence[int]) -> int:
        """Delete these dead letters (replayed, or given up on); how many there were."""

    async def prune_events(self, up_to: int) -> int:
        """Delete outbox events at or before position ``up_to``; how many it deleted."""

    # -- erasure (engine.erasure) --------------------------------------------

    async def mentions(self, needle: str) -> list[Mention]:
        """Every row whose id or bytes hold ``needle`` (a person's id): entities by snapshot, journal
        or reminder, events by their user, source or body, dead letters, cursors. A full scan, on
        purpose: erasure is rare, and a scan cannot miss a holder that an index was never told of."""

    async def erase_events(self, user_id: str, stand_in: str, keep: Sequence[str] = ()) -> int:
        """The outbox without the person: events about them (their ``user_id``) are deleted, except
        those of the types in ``keep`` (the erasure's own notice); any other event that mentions them
        gets ``stand_in`` in their place (in its source and body). Dead letters that mention them are
        deleted. Returns how many rows it changed."""
