"""Typed references to entities: ``ref.ask(Race.ingest, samples=..., athletes=...)``.

A ``Ref`` is an entity's address (its class and id) and the function that carries a
message there. Asking it names the handler itself, not a string, so a type checker
follows the message to its handler: the fields are the handler's keyword arguments
and the answer is its return type. It sends the envelope a string ask sends: the kind
from the class, the message type the handler registered, the fields as the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from engine.entity import Entity, Handler

__all__ = ["Ref", "Send", "message_type"]

E = TypeVar("E", bound=Entity)
P = ParamSpec("P")
R = TypeVar("R")

# (kind, entity_id, message_type, body) -> the answer: ``Cluster.ask`` or anything that routes like it
Send = Callable[[str, str, str, Any], Awaitable[Any]]


def message_type(cls: type[Entity], handler: Callable[..., Any]) -> str:
    """The name ``handler`` is registered under in ``cls``; TypeError if it is not one of its handlers."""
    found: Handler | None = getattr(handler, "__arena_handler__", None)
    if found is None:
        raise TypeError(f"{getattr(handler, '__qualname__', handler)!r} is not a handler: mark it @update or @query")
    if cls.handlers.get(found.name) is not found:
        raise TypeError(f"{cls.kind} has no handler {found.function.__qualname__}")
    return found.name


@dataclass(frozen=True, slots=True)
class Ref(Generic[E]):
    send: Send
    cls: type[E]
    entity_id: str

    @property
    def kind(self) -> str:
        return self.cls.kind

    async def ask(self, handler: Callable[Concatenate[E, P], R], /, *args: P.args, **fields: P.kwargs) -> R:
        """Send ``handler``'s message with ``fields`` as its body and answer what the handler returned."""
        if args:
            raise TypeError(f"{self.kind}.{message_type(self.cls, handler)}: pass the message's fields by name")
        return await self.send(self.kind, self.entity_id, message_type(self.cls, handler), fields or None)
