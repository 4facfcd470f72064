"""What devices send, parsed: topics, telemetry straight into the contract's fields, statuses.

The decoders are built from ``engine.telemetry.FIELDS`` (msgspec checks each field's type and
bounds as it decodes, in C, and names the field it refuses). A message's samples come out as
light records, and as rows: one tuple per sample in ``FIELDS`` order, an absent reading
already NaN or 0, taken from each record by one C call. ``pack`` turns a batch window's rows
into the packed records a race ingests in one numpy conversion, with no Python work per
field. A message is JSON or msgpack, ``{"race": id, "samples": [...]}`` or one sample's
fields with ``"race"``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta
from msgspec.structs import astuple

from connectors.mosquitto import LANES
from connectors.samples import MAX_SAMPLES_PER_POST
from engine.telemetry import FIELDS, SAMPLE_DTYPE

__all__ = ["MAX_ID", "MAX_PAYLOAD", "PREFIX", "Drop", "Row", "Uplink", "device_of", "pack", "status", "uplink"]

PREFIX = "arena/v1/devices/"
MAX_PAYLOAD = 256 * 1024
MAX_ID = 128


class Drop(Exception):
    """Bad input: acknowledged, counted under ``reason`` and explained on the downlink."""

    def __init__(self, reason: str, detail: str, device: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.device = device  # whom to explain it to, where the refused topic still names its device


Row = tuple[Any, ...]  # one sample's readings in FIELDS order
_ABSENT: Row = tuple(0 if f.integer else float("nan") for f in FIELDS)  # as in a packed record
_NONE: Row = (None,) * len(FIELDS)


def _reading(field: Any) -> tuple[str, Any, None]:
    return field.name, Annotated[field.python_type, Meta(**field.bounds)] | None, None


def _sample_reading(field: Any, absent: Any) -> tuple[str, Any] | tuple[str, Any, Any]:
    bounded = Annotated[field.python_type, Meta(**field.bounds)]
    return (field.name, bounded) if field.required else (field.name, bounded | None, absent)


# One sample's fields, each checked against its bounds; absent is as in a packed record (NaN or 0),
# so a sample's row is its tuple. A reading sent as null stays None (``pack`` sees to it).
Sample = msgspec.defstruct(
    "Sample", [_sample_reading(f, a) for f, a in zip(FIELDS, _ABSENT)], forbid_unknown_fields=True, gc=False
)

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
_JSON = msgspec.json.Decoder(_Message, strict=False)
_MSGPACK = msgspec.msgpack.Decoder(_Message, strict=False)


class _Status(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["online", "offline"]


_STATUS_JSON = msgspec.json.Decoder(_Status)
_STATUS_MSGPACK = msgspec.msgpack.Decoder(_Status)


class Uplink:
    """A telemetry message: its race, its samples (records with the contract's fields as attributes)
    and the same samples as rows for ``pack``."""

    __slots__ = ("race", "samples", "rows")

    def __init__(self, race: str, samples: list[Any], rows: list[Row]) -> None:
        self.race, self.samples, self.rows = race, samples, rows


# The packed record without its entry: rows convert straight into a batch's memory, entry set after.
_ROW: np.dtype = np.dtype(
    {  # type: ignore[call-overload]  # numpy's stubs know no offsets form
        "names": [f.name for f in FIELDS],
        "formats": [f.dtype for f in FIELDS],
        "offsets": [SAMPLE_DTYPE.fields[f.name][1] for f in FIELDS],  # type: ignore[index]
        "itemsize": SAMPLE_DTYPE.itemsize,
    }
)


def pack(rows: list[Row], entries: np.ndarray | int) -> np.ndarray:
    """The packed batch (``SAMPLE_DTYPE``) of rows the uplink checked; ``entries``: each row's entry."""
    try:
        batch = np.array(rows, _ROW)
    except TypeError:  # an integer reading sent as null (a float one is NaN already): absent
        batch = np.array([tuple(a if v is None else v for v, a in zip(row, _ABSENT)) for row in rows], _ROW)
    batch = batch.view(SAMPLE_DTYPE)
    batch["entry"] = entries
    return batch


def device_of(topic: str, leaf: str) -> str:
    """The device of ``arena/v1/devices/{id}/{leaf}``; telemetry also comes on a race lane,
    ``.../telemetry/{lane}`` (``connectors.mosquitto.device_topics``), written as the number it is."""
    if not topic.startswith(PREFIX):
        raise Drop("topic", f"not an arena/v1 {leaf} topic: {topic[:200]}")
    device_id, _, tail = topic[len(PREFIX) :].partition("/")
    if not device_id or len(device_id) > MAX_ID:
        raise Drop("topic", f"not a device id: {device_id[:200]!r}")
    if tail != leaf:
        lane = tail[len(leaf) + 1 :] if leaf == "telemetry" and tail.startswith("telemetry/") else None
        if lane is None:
            raise Drop("topic", f"not an arena/v1 {leaf} topic: {topic[:200]}")
        if not (lane.isascii() and lane.isdigit() and str(int(lane)) == lane and int(lane) < LANES):
            detail = f"a race lane is a number from 0 to {LANES - 1}, not {lane[:20]!r}"
            raise Drop("topic", detail, device_id)
    return device_id


def _is_json(payload: bytes | bytearray) -> bool:
    # JSON starts with "{" (after optional whitespace); a msgpack map never does.
    head = payload[:1]
    return head == b"{" or (head.isspace() and payload.lstrip()[:1] == b"{")


def uplink(payload: bytes | bytearray) -> Uplink:
    if len(payload) > MAX_PAYLOAD:
        raise Drop("oversized", f"a message holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    try:
        message: Any = (_JSON if _is_json(payload) else _MSGPACK).decode(payload)
    except msgspec.ValidationError as error:
        raise Drop("malformed", str(error)) from None
    except msgspec.DecodeError as error:
        raise Drop("malformed", f"neither msgpack nor JSON: {error}") from None
    readings = astuple(message)[2:]
    if message.samples is not None:
        if readings != _NONE:
            raise Drop("malformed", "a message holds `samples` or one sample's fields, not both")
        return Uplink(message.race, message.samples, list(map(astuple, message.samples)))
    missing = [name for name in _REQUIRED if getattr(message, name) is None]
    if missing:
        raise Drop("malformed", f"a sample needs {' and '.join(missing)} (or send `samples`)")
    row = tuple(a if v is None else v for v, a in zip(readings, _ABSENT))
    return Uplink(message.race, [message], [row])  # the message is the sample: it has its fields


def status(payload: bytes | bytearray) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise Drop("oversized", f"a message holds at most {MAX_PAYLOAD} bytes")
    try:
        return (_STATUS_JSON if _is_json(payload) else _STATUS_MSGPACK).decode(payload).state
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise Drop("malformed", 'a status is {"state": "online" | "offline"}') from None
