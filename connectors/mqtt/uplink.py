"""What devices send, parsed: topics, telemetry straight into the contract's fields, statuses.

The decoders are built from ``engine.telemetry.FIELDS`` (msgspec checks each field's type and
bounds as it decodes, in C): a message's samples come out as light records that
``engine.telemetry.columns`` turns into a batch, with no model object per sample. A message
is JSON or msgpack, ``{"race": id, "samples": [...]}`` or one sample's fields with ``"race"``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from connectors.samples import MAX_SAMPLES_PER_POST
from engine.telemetry import FIELDS

__all__ = ["MAX_ID", "MAX_PAYLOAD", "PREFIX", "Drop", "Uplink", "device_of", "status", "uplink"]

PREFIX = "arena/v1/devices/"
MAX_PAYLOAD = 256 * 1024
MAX_ID = 128


class Drop(Exception):
    """Bad input: acknowledged, counted under ``reason`` and explained on the downlink."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _reading(field: Any) -> tuple[str, Any, None]:
    return field.name, Annotated[field.python_type, Meta(**field.bounds)] | None, None


# One sample's fields, each checked against its bounds; absent is None.
Sample = msgspec.defstruct("Sample", [_reading(f) for f in FIELDS], forbid_unknown_fields=True, gc=False)

RaceId = Annotated[str, Meta(min_length=1, max_length=MAX_ID)]
Samples = Annotated[list[Sample], Meta(min_length=1, max_length=MAX_SAMPLES_PER_POST)]  # type: ignore[valid-type]

# Either shape of a message in one decode: with ``samples``, or as one sample's own fields.
_Message = msgspec.defstruct(
    "Uplink",
    [("race", RaceId), ("samples", Samples | None, None), *(_reading(f) for f in FIELDS)],
    forbid_unknown_fields=True,
    gc=False,
)
_REQUIRED = [f.name for f in FIELDS if f.required]
_READINGS = [f.name for f in FIELDS]
_JSON = msgspec.json.Decoder(_Message, strict=False)
_MSGPACK = msgspec.msgpack.Decoder(_Message, strict=False)


class _Status(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["online", "offline"]


_STATUS_JSON = msgspec.json.Decoder(_Status)
_STATUS_MSGPACK = msgspec.msgpack.Decoder(_Status)


class Uplink:
    """A telemetry message: its race and its samples (records with the contract's fields as attributes)."""

    __slots__ = ("race", "samples")

    def __init__(self, race: str, samples: list[Any]) -> None:
        self.race, self.samples = race, samples


def device_of(topic: str, leaf: str) -> str:
    if not topic.startswith(PREFIX) or not topic.endswith("/" + leaf):
        raise Drop("topic", f"not an arena/v1 {leaf} topic: {topic[:200]}")
    device_id = topic[len(PREFIX) : -len(leaf) - 1]
    if not device_id or len(device_id) > MAX_ID or "/" in device_id:
        raise Drop("topic", f"not a device id: {device_id[:200]!r}")
    return device_id


def _is_json(payload: bytes | bytearray) -> bool:
    # JSON starts with "{" (after optional whitespace); a msgpack map never does.
    return payload.lstrip()[:1] == b"{"


def uplink(payload: bytes | bytearray) -> Uplink:
    if len(payload) > MAX_PAYLOAD:
        raise Drop("oversized", f"a message holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    try:
        message: Any = (_JSON if _is_json(payload) else _MSGPACK).decode(payload)
    except msgspec.ValidationError as error:
        raise Drop("malformed", str(error)) from None
    except msgspec.DecodeError as error:
        raise Drop("malformed", f"neither msgpack nor JSON: {error}") from None
    if message.samples is not None:
        if any(getattr(message, name) is not None for name in _READINGS):
            raise Drop("malformed", "a message holds `samples` or one sample's fields, not both")
        return Uplink(message.race, message.samples)
    missing = [name for name in _REQUIRED if getattr(message, name) is None]
    if missing:
        raise Drop("malformed", f"a sample needs {' and '.join(missing)} (or send `samples`)")
    return Uplink(message.race, [message])  # the message is the sample: it has its fields


def status(payload: bytes | bytearray) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise Drop("oversized", f"a message holds at most {MAX_PAYLOAD} bytes")
    try:
        return (_STATUS_JSON if _is_json(payload) else _STATUS_MSGPACK).decode(payload).state
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise Drop("malformed", 'a status is {"state": "online" | "offline"}') from None
