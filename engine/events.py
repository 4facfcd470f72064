"""Domain events: facts an entity states while it handles a message, and the entities that react.

An ``@update`` handler calls ``Entity.emit(WORKOUT_RECORDED, owner=..., ...)``. The host puts
the event in the same group commit as the journal entry of the message that caused it (a
transactional outbox), so an event exists if and only if its cause is durable; replaying the
journal emits nothing again. Each event has an id made of its cause (``kind/entity/seq/n``),
the same however often anything is retried, and a *position* the store gives it at commit:
positions grow in commit order, so a consumer reads the outbox from a position onwards and
sees every source's events in the order the source made them.

A kind reacts to an event type with a handler marked ``@react(TYPE, to=...)``; ``to`` says
which entities of the kind receive an event (``To.field``: the id in one of its fields;
``To.ask``: the ids a query of another entity answers, such as an athlete's followers).
``engine.relay`` delivers them at least once, in order per source, many events per target in
one envelope (``EVENT_MESSAGE``), and the host applies each exactly once: the entity keeps, per
source, the last event it applied, in its snapshot.

Event types are declared once (``declare``) with their fields, version and the field that
names the user the event is about, so a catalogue can be printed (``docs/events.md``), an
emitter cannot send a field nobody declared, an old version is upgraded before a reaction sees
it, and erasure can find every event about a user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from engine.codec import unpack
from engine.errors import MalformedMessage

if TYPE_CHECKING:
    from engine.entity import Entity

__all__ = [
    "EVENT_MESSAGE",
    "CATALOGUE",
    "Event",
    "EventRecord",
    "EventType",
    "Reaction",
    "To",
    "Target",
    "declare",
    "react",
    "event_id",
]

EVENT_MESSAGE = "$events"  # the message that carries events to a reacting entity
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")  # "workout.recorded"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class EventType:
    """A declared fact: its name, the current version of its fields, and who it is about."""

    name: str
    version: int
    fields: tuple[str, ...]  # every field the current version has (an emitter gives them all)
    user_field: str | None  # the field holding the id of the user the event is about (erasure)
    doc: str
    upgrade: Callable[[dict, int], dict] | None = None  # (fields at an old version, that version) -> current

    def fields_at_current(self, fields: dict, version: int) -> dict:
        if version == self.version:
            return fields
        if version > self.version or self.upgrade is None:
            raise MalformedMessage(f"{self.name}: no upgrade from version {version} to {self.version}")
        return self.upgrade(fields, version)


CATALOGUE: dict[str, EventType] = {}


def declare(
    name: str,
    *,
    fields: Sequence[str],
    user_field: str | None,
    doc: str,
    version: int = 1,
    upgrade: Callable[[dict, int], dict] | None = None,
) -> EventType:
    """Declare an event type (once per process; declaring the same one again answers it)."""
    if not _NAME.match(name) or len(name) > 64:
        raise ValueError(f"an event type is 'noun.verb' in lower case, up to 64 characters, not {name!r}")
    if user_field is not None and user_field not in fields:
        raise ValueError(f"{name}: the user field {user_field!r} is not one of its fields")
    declared = EventType(name, version, tuple(fields), user_field, doc, upgrade)
    known = CATALOGUE.get(name)
    if known is not None and (known.version, known.fields, known.user_field) != (version, tuple(fields), user_field):
        raise ValueError(f"event type {name!r} is declared twice, differently")
    return CATALOGUE.setdefault(name, declared)


def event_id(kind: str, entity_id: str, seq: int, index: int) -> str:
    return f"{kind}/{entity_id}/{seq}/{index}"


class EventRecord(NamedTuple):
    """One outbox row. A tuple: hosts build one per emitted event inside a turn."""

    source_kind: str
    source_id: str
    seq: int  # the journal seq of the message that emitted it
    idx: int  # its place among that message's events (not `index`: a tuple has that)
    type: str
    version: int
    at: float  # the causing message's instant
    user_id: str | None
    body: bytes  # msgpack of its fields
    position: int = 0  # given by the store at commit, in commit order

    @property
    def id(self) -> str:
        return event_id(self.source_kind, self.source_id, self.seq, self.idx)

    def wire(self) -> list:
        """The event as a delivery carries it (``Event.from_wire``): its fields as stored, not decoded."""
        return [self.type, self.version, self.source_kind, self.source_id, self.seq, self.idx, self.at,
                self.user_id, self.body, self.position]  # fmt: skip


class Event(NamedTuple):
    """An event as a reaction sees it: fields decoded and upgraded to the declared version. A tuple,
    as it travels: a delivery carries thousands, and a host checks and builds each one."""

    type: str
    version: int
    source_kind: str
    source_id: str
    seq: int
    idx: int
    at: float
    user_id: str | None
    fields: dict
    position: int

    @property
    def id(self) -> str:
        return event_id(self.source_kind, self.source_id, self.seq, self.idx)

    @property
    def source(self) -> str:
        return f"{self.source_kind}/{self.source_id}"

    @classmethod
    def from_wire(cls, item: Any) -> Event:
        if type(item) is not list or len(item) != 10:
            raise MalformedMessage("an event is [type, version, kind, id, seq, idx, at, user, fields, position]")
        type_, version, source_kind, source_id, seq, idx, at, user_id, fields, position = item
        if type(fields) is bytes:  # as the outbox stores them: a relay sends them on without decoding
            try:
                fields = unpack(fields)
            except Exception:
                raise MalformedMessage("an event's fields are not valid msgpack") from None
        if not (
            type(type_) is str
            and type(version) is int
            and type(source_kind) is str
            and type(source_id) is str
            and type(seq) is int
            and type(idx) is int
            and (type(at) is float or type(at) is int)
            and (user_id is None or type(user_id) is str)
            and type(fields) is dict
            and type(position) is int
        ):
            raise MalformedMessage("an event's parts have the wrong types")
        return cls(type_, version, source_kind, source_id, seq, idx, at, user_id, fields, position)


# -- who receives an event ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where an event goes among a kind's entities: ids read from the event, or asked of an entity."""

    field: str  # the event field holding an id (of the target, or of the entity to ask)
    ask: tuple[str, str, dict] | None = None  # (kind, @query handler name, its fields): answers ids
    alone: bool = False  # a list of ids: each target sees the field as the list of its own id only

    def describe(self) -> str:
        if self.ask is None:
            return f"the id in `{self.field}`"
        kind, handler, fields = self.ask
        args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{kind}({self.field}).{handler}({args})"


class To:
    @staticmethod
    def field(name: str) -> Target:
        """The entity whose id is the event's ``name`` field."""
        return Target(name)

    @staticmethod
    def each(name: str, *, alone: bool = False) -> Target:
        """The entities whose ids the event's ``name`` field lists. ``alone``: each of them gets the event
        with that field narrowed to ``[its id]``, for a batch that names thousands (a campaign's recipients),
        each needing only its own: the relay sends every target a few bytes, not the whole list."""
        return Target(name, alone=alone)

    @staticmethod
    def ask(cls: type[Entity], field: str, handler: Callable[..., list[str]], **fields: Any) -> Target:
        """The ids that ``handler`` (a ``@query`` of ``cls``) answers, asked of the ``cls`` entity
        whose id is the event's ``field``: ``To.ask(Account, "owner", Account.ids, which="followers")``."""
        spec = getattr(handler, "__arena_handler__", None)
        if spec is None or spec.journaled:
            raise TypeError(f"{getattr(handler, '__qualname__', handler)!r} is not a @query handler")
        return Target(field, (cls.kind, spec.name, dict(fields)))


@dataclass(frozen=True)
class Reaction:
    event: EventType
    name: str  # the handler's name: with the kind, the subscription's durable name
    function: Callable[..., Any]
    to: tuple[Target, ...]
    when: Callable[[dict], bool] | None = field(default=None)

    def wanted(self, fields: dict) -> bool:
        return self.when is None or bool(self.when(fields))


def react(
    event: EventType, *, to: Target | Sequence[Target], when: Callable[[dict], bool] | None = None
) -> Callable[[F], F]:
    """Mark a handler ``(self, event: Event) -> None`` that applies ``event`` to this entity.

    ``to``: which entities of this kind receive it; ``when``: a test of the event's fields that
    must hold for any to receive it (a private workout reaches no follower's feed). The handler
    runs inside a journaled turn: it may change state, set timers, emit events and notices, and
    raise ``Rejected`` to decline an event (which then counts as applied).
    """
    targets = (to,) if isinstance(to, Target) else tuple(to)
    if not targets:
        raise ValueError("a reaction needs at least one target")

    def mark(function: F) -> F:
        function.__arena_reaction__ = Reaction(event, function.__name__, function, targets, when)  # type: ignore[attr-defined]
        return function

    return mark
