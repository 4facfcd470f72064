"""The entity: state plus message handlers, addressed by ``(kind, id)``.

An entity never sees Ray, sockets or the store. Handlers marked ``@update``
change state and are journaled; they must be deterministic in the state and the
message, with time read from ``self.now`` (the instant stamped on the message),
so replaying the journal rebuilds exactly the same state. Handlers marked
``@query`` only read and are not journaled.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from engine.erasure import scrub
from engine.errors import MalformedMessage, UnknownMessage
from engine.events import EventType, Reaction

__all__ = ["Entity", "Handler", "update", "query", "peek"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    function: Callable[..., Any]
    journaled: bool
    required: frozenset[str]
    accepted: frozenset[str] | None  # None: takes **kwargs
    settled: bool = True  # a query waits for the journal of an update still in flight (``peek`` does not)

    def bind(self, kind: str, body: Any) -> dict:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise MalformedMessage(f"{kind}.{self.name}: the body must be a map of fields, not {type(body).__name__}")
        keys = body.keys()
        if not self.required <= keys:
            missing = ", ".join(sorted(self.required - keys))
            raise MalformedMessage(f"{kind}.{self.name}: missing field(s) {missing}")
        if self.accepted is not None and not keys <= self.accepted:
            extra = ", ".join(sorted(map(str, keys - self.accepted)))
            raise MalformedMessage(f"{kind}.{self.name}: unknown field(s) {extra}")
        return body


def _handler(function: F, journaled: bool, settled: bool = True) -> F:
    if inspect.iscoroutinefunction(function):
        raise TypeError(f"handler {function.__qualname__} must be a plain function: entities do no I/O")
    params = list(inspect.signature(function).parameters.values())[1:]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    function.__arena_handler__ = Handler(  # type: ignore[attr-defined]  # a function's own attribute
        name=function.__name__,
        function=function,
        journaled=journaled,
        required=frozenset(p.name for p in named if p.default is p.empty),
        accepted=None if takes_kwargs else frozenset(p.name for p in named),
        settled=settled,
    )
    return function


def update(function: F) -> F:
    """Mark a state-changing handler: journaled before its caller hears back."""
    return _handler(function, journaled=True)


def query(function: F) -> F:
    """Mark a read-only handler: not journaled. It answers once every update it may have seen is
    durable, so nobody reads state that could still be lost."""
    return _handler(function, journaled=False)


def peek(function: F) -> F:
    """Mark a read-only handler that answers at once, from the state as it is, even while the journal
    write of an update it sees is in flight. For what is only shown and moves on anyway (a rank, a
    progress bar on a busy board); never for a decision or an answer someone acts on: should that
    write fail, the entity is rebuilt from its journal and the value shown goes back."""
    return _handler(function, journaled=False, settled=False)


class Entity:
    """Subclass with a ``kind``, state set in ``__init__`` and handlers.

    ``snapshot()``/``restore()`` default to the public attributes; override them
    for state msgpack cannot carry (numpy arrays, sets). Bump ``schema_version``
    when the snapshot's shape changes and teach ``upgrade`` the old shapes.
    """

    kind: ClassVar[str]
    schema_version: ClassVar[int] = 1
    dedicated: ClassVar[bool] = False  # entities of this kind may get a host of their own (``hosted_alone``)
    handlers: ClassVar[dict[str, Handler]]
    reactions: ClassVar[dict[str, Reaction]]  # event type -> this kind's reaction to it (engine.events)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Handler] = {}
        reactions: dict[str, Reaction] = {}
        for base in reversed(cls.__mro__):
            for name, value in vars(base).items():
                handler = getattr(value, "__arena_handler__", None)
                if handler is not None:
                    found[name] = handler
                reaction = getattr(value, "__arena_reaction__", None)
                if reaction is not None:
                    known = reactions.get(reaction.event.name)
                    if known is not None and known.name != name:
                        raise TypeError(
                            f"{cls.__qualname__} reacts to {reaction.event.name} twice ({known.name}, {name})"
                        )
                    reactions[reaction.event.name] = reaction
        cls.handlers = found
        cls.reactions = reactions

    @classmethod
    def hosted_alone(cls, entity_id: str) -> bool:
        """For a dedicated kind: whether this entity gets its own host (a Ray process) rather than a
        place on the shared hosts. Decided from the id alone, so every process routes it alike."""
        return cls.dedicated

    @classmethod
    def warm(cls) -> None:
        """Ready what this kind's first message would otherwise wait for (compiled code, say);
        a dedicated host calls it once as it starts."""

    def __init__(self, entity_id: str) -> None:
        self._id = entity_id
        self._now = 0.0
        self._timers: dict[str, list] = {}
        self._timers_changed = False
        self._notices: list[dict] = []
        self._events: list[tuple[EventType, dict]] = []
        self._applied: dict[str, list[int]] = {}  # "type source" -> [seq, index] of the last one applied
        self._replayed: list[str] = []  # ids of dead-lettered events replayed by hand, the latest last

    @property
    def id(self) -> str:
        return self._id

    @property
    def now(self) -> float:
        """Unix time stamped on the message being handled."""
        return self._now

    def set_timer(self, name: str, due: float, message_type: str, body: dict | None = None) -> None:
        """Deliver ``message_type`` to this entity at ``due`` (unix seconds), once.

        Timers are state: they survive passivation and host restarts, and setting
        one again by name replaces it.
        """
        if message_type not in self.handlers or not self.handlers[message_type].journaled:
            raise ValueError(f"{self.kind}: a timer must target an @update handler, not {message_type!r}")
        self._timers[name] = [float(due), message_type, body or {}]
        self._timers_changed = True

    def notice(self, body: dict) -> None:
        """Tell whoever listens to this entity (``engine.notices``), once this message is journaled;
        only an ``@update`` handler's notices go out, and none while the journal replays."""
        self._notices.append(body)

    def emit(self, event: EventType, /, **fields: Any) -> None:
        """State a fact (``engine.events``): it is committed with this message's journal entry and
        reaches the entities that react to it; only an ``@update`` handler's (or a reaction's)
        events are kept, and none while the journal replays."""
        if fields.keys() != set(event.fields):
            missing = ", ".join(sorted(set(event.fields) - fields.keys()))
            extra = ", ".join(sorted(fields.keys() - set(event.fields)))
            raise TypeError(f"{event.name} v{event.version}: missing field(s) [{missing}], undeclared [{extra}]")
        self._events.append((event, fields))

    def cancel_timer(self, name: str) -> None:
        if self._timers.pop(name, None) is not None:
            self._timers_changed = True

    def retirable(self) -> bool:
        """For a dedicated kind: whether the entity's own host may stop once it has been idle a while
        (its work is done, and what is read of it afterwards is kept elsewhere)."""
        return False

    def journal_kept(self) -> bool:
        """For a kind the host config names in ``archived_kinds``: whether the host must keep the
        entity's journal after snapshots (an archiver has yet to read it; it compacts it after)."""
        return False

    def redact(self, message_type: str, body: dict) -> dict:
        """The message as it may be kept: called before an ``@update`` runs and is journaled, it may drop
        what the entity must not store (a reading someone did not consent to). The handler and the journal
        both get what it answers. Deterministic in the state and the message, and cheap: it is on the path
        of every update of the kind that overrides it."""
        return body

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Forget ``user_id`` (``engine.erasure``): True when this entity was theirs alone (its id
        names them) and is to be deleted whole; otherwise drop whatever of its state mentions them
        (``scrub``) and keep the rest. Override where others' records must stay whole (write
        ``stand_in`` for the person) or where a count derives from what is dropped. Deterministic,
        like any handler: the journal replays it."""
        if user_id in self.id:
            return True
        self.restore(scrub(self.snapshot(), user_id, stand_in))
        return False

    def snapshot(self) -> Any:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def restore(self, state: Any) -> None:
        vars(self).update(state)

    @classmethod
    def upgrade(cls, state: Any, from_version: int) -> Any:
        """Turn a snapshot written at ``from_version`` into the current shape."""
        raise ValueError(f"{cls.kind}: no upgrade from snapshot schema {from_version} to {cls.schema_version}")

    @classmethod
    def upgrade_message(cls, message_type: str, body: Any, from_version: int) -> Any:
        """Turn a journaled message body written at ``from_version`` into the current shape."""
        return body

    def handler(self, message_type: str) -> Handler:
        try:
            return self.handlers[message_type]
        except KeyError:
            raise UnknownMessage(f"{self.kind} has no handler {message_type!r}") from None
