"""Errors a caller of an entity can get, each with a stable code.

``retryable`` tells a client whether sending the same message again later may
succeed (overload, a host restarting) or never will (unknown kind, bad message).
"""

from __future__ import annotations

__all__ = [
    "EngineError",
    "UnknownKind",
    "UnknownMessage",
    "MalformedMessage",
    "Rejected",
    "NotFound",
    "Forbidden",
    "HandlerFailed",
    "ActivationFailed",
    "Overloaded",
    "TooManyHosts",
    "HostUnavailable",
    "JournalFailed",
    "error_from_wire",
]


class EngineError(Exception):
    code = "engine_error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> list:
        return [self.code, self.message]


class UnknownKind(EngineError):
    code = "unknown_kind"


class UnknownMessage(EngineError):
    code = "unknown_message"


class MalformedMessage(EngineError):
    code = "malformed_message"


class Rejected(EngineError):
    """Raised by a handler to refuse a message before changing any state.

    The message is not journaled and the entity stays as it was; use it for
    business rules ("the race is full"). Any other exception from a handler is
    treated as a bug: the activation is dropped and rebuilt from the store.
    """

    code = "rejected"


class NotFound(Rejected):
    """The addressed thing does not exist (or is hidden from the caller)."""

    code = "not_found"


class Forbidden(Rejected):
    """The caller may not do this to this entity."""

    code = "forbidden"


class HandlerFailed(EngineError):
    code = "handler_failed"


class ActivationFailed(EngineError):
    code = "activation_failed"
    retryable = True


class Overloaded(EngineError):
    code = "overloaded"
    retryable = True


class TooManyHosts(Overloaded):
    """Starting one more dedicated host would pass the cluster's cap."""

    code = "too_many_hosts"


class HostUnavailable(EngineError):
    code = "host_unavailable"
    retryable = True


class JournalFailed(EngineError):
    code = "journal_failed"
    retryable = True


_BY_CODE = {
    cls.code: cls
    for cls in (
        EngineError,
        UnknownKind,
        UnknownMessage,
        MalformedMessage,
        Rejected,
        NotFound,
        Forbidden,
        HandlerFailed,
        ActivationFailed,
        Overloaded,
        TooManyHosts,
        HostUnavailable,
        JournalFailed,
    )
}


def error_from_wire(wire: list) -> EngineError:
    code, message = wire
    return _BY_CODE.get(code, EngineError)(message)
