"""JSON request bodies as the rest of Arena can carry them: no NaN, no Infinity, no lone surrogates.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``"\\ud800"``, and pydantic passes them on
to fail later where they cannot be encoded (msgpack to an entity, a JSON answer): a 500 from
client input. A body without ``N``, ``I`` or a backslash (a telemetry batch) costs three memchr.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.problems import send_problem

__all__ = ["StrictJson"]

_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MARKERS = (b"NaN", b"Infinity", b"\\ud", b"\\uD")


class _NotStrict(ValueError):
    pass


class StrictJson:
    """Answer 422 to a JSON body that only Python's lenient reading accepts; pass the rest on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left (or a body limit cut it off): nobody to answer here
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        reason = _lenient_only(body)
        if reason is not None:
            await send_problem(send, scope["path"], 422, f"the request body is not valid JSON: {reason}")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    # FastAPI reads a body without a content type as JSON too.
    value = dict(scope["headers"]).get(b"content-type")
    if value is None:
        return True
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _lenient_only(body: bytes) -> str | None:
    """Why this body is not strict JSON although Python reads it, or None."""
    if b"N" not in body and b"I" not in body and b"\\" not in body:  # one memchr each: most bodies stop here
        return None
    if not any(marker in body for marker in _MARKERS):
        return None
    try:
        value = json.loads(body, parse_constant=_constant)
        json.dumps(value, ensure_ascii=False).encode()
    except _NotStrict as error:
        return str(error)
    except UnicodeEncodeError:
        return "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
    except (ValueError, RecursionError):
        return None  # not JSON at all: the route's own validation answers it
    return None


def _constant(name: str) -> None:
    raise _NotStrict(f"{name} is not a JSON number; send a finite number or null")
