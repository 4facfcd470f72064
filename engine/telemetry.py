"""The telemetry contract: the fields of a sample and their bounds, written once, and the packed batch.

``FIELDS`` is the one table of what a device may send: each reading's name, its type in
the packed record, its unit and its bounds. Every edge builds its checks from it (the
MQTT uplink's decoder, the HTTP route's request model) and ``decode`` holds a packed
batch to the same bounds, so a sample is refused by the same limits wherever it comes
in, with the name of the field it broke.

A batch is the raw bytes of an array of ``SAMPLE_DTYPE`` records (46 bytes each,
little-endian, no padding): ``entry`` (the athlete's index in the entry list the batch
is sent with, see ``actors.race.Race.ingest``) then the fields of ``FIELDS``. A race
decodes it with one ``np.frombuffer`` and no copy; Ray carries ``bytes`` without
pickling. Absent readings are NaN for the float fields and 0 for the integer ones.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FIELDS", "Field", "SAMPLE_DTYPE", "MAX_BATCH", "columns", "empty", "encode", "decode"]


@dataclass(frozen=True, slots=True)
class Field:
    """One reading of a sample: ``bounds`` as pydantic and msgspec spell them (``ge``, ``gt``, ``le``, ``lt``)."""

    name: str
    dtype: str  # in the packed record
    unit: str
    bounds: dict[str, float]
    required: bool = False  # else absent: NaN for a float, 0 for an integer

    @property
    def integer(self) -> bool:
        return np.dtype(self.dtype).kind == "u"

    @property
    def python_type(self) -> type:
        return int if self.integer else float

    def describe(self) -> str:
        low = f"{'>=' if 'ge' in self.bounds else '>'} {_number(self.bounds.get('ge', self.bounds.get('gt')))}"
        high = f"{'<=' if 'le' in self.bounds else '<'} {_number(self.bounds.get('le', self.bounds.get('lt')))}"
        return f"{self.name} ({self.unit}) is {low} and {high}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value:,}"


FIELDS: tuple[Field, ...] = (
    Field("seq", "<u4", "count, per device, increasing", {"ge": 0, "le": 2**32 - 1}, required=True),
    Field("t", "<f8", "unix seconds", {"gt": 0.0, "lt": 1e10}, required=True),
    Field("distance", "<f4", "metres since the athlete's start", {"ge": 0.0, "le": 1e8}),
    Field("lat", "<f8", "degrees", {"ge": -90.0, "le": 90.0}),
    Field("lon", "<f8", "degrees", {"ge": -180.0, "le": 180.0}),
    Field("speed", "<f4", "m/s as the device measured it", {"ge": 0.0, "le": 1_000.0}),
    Field("hr", "<u2", "bpm", {"ge": 0, "le": 65_535}),
    Field("power", "<u2", "W", {"ge": 0, "le": 65_535}),
    Field("cadence", "<u2", "rpm or steps/min", {"ge": 0, "le": 65_535}),
)

SAMPLE_DTYPE = np.dtype([("entry", "<u4"), *((f.name, f.dtype) for f in FIELDS)])

MAX_BATCH = 1_000_000  # samples; a larger batch is refused before it is looked at

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "ge": operator.ge,
    "gt": operator.gt,
    "le": operator.le,
    "lt": operator.lt,
}


def empty(count: int) -> np.ndarray:
    """A writable batch of ``count`` samples with every reading absent."""
    if count < 0 or count > MAX_BATCH:
        raise ValueError(f"a batch holds 0 to {MAX_BATCH:,} samples, not {count:,}")
    samples = np.zeros(count, SAMPLE_DTYPE)
    for field in FIELDS:
        if not field.integer:
            samples[field.name] = np.nan
    return samples


def columns(samples: Sequence[Any], entries: Sequence[int] | int = 0) -> np.ndarray:
    """A batch from samples an edge decoded and checked against ``FIELDS`` (anything with the fields
    as attributes, None when absent); ``entries``: each sample's entry (one int: all the same)."""
    batch = np.empty(len(samples), SAMPLE_DTYPE)
    batch["entry"] = entries
    for field in FIELDS:
        values = [getattr(s, field.name) for s in samples]
        if field.integer:
            batch[field.name] = [0 if v is None else v for v in values]
        else:  # None becomes NaN
            batch[field.name] = np.array(values, np.float64)
    return batch


def encode(samples: np.ndarray) -> bytes:
    if not isinstance(samples, np.ndarray) or samples.dtype.names != SAMPLE_DTYPE.names:
        raise TypeError(f"encode takes a numpy array of SAMPLE_DTYPE records, not {type(samples).__name__}")
    if samples.ndim != 1:
        raise ValueError(f"a batch is a flat array of samples, not one of {samples.ndim} dimensions")
    if len(samples) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH:,} samples, not {len(samples):,}")
    return np.ascontiguousarray(samples, dtype=SAMPLE_DTYPE).tobytes()


def decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """A read-only view of the samples in ``data``, after checking them against ``FIELDS``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a telemetry batch is bytes, not {type(data).__name__}")
    size = memoryview(data).nbytes
    if size % SAMPLE_DTYPE.itemsize:
        raise ValueError(
            f"a telemetry batch is a whole number of {SAMPLE_DTYPE.itemsize}-byte samples; {size} bytes is not"
        )
    if size // SAMPLE_DTYPE.itemsize > MAX_BATCH:
        raise ValueError(
            f"a telemetry batch holds at most {MAX_BATCH:,} samples, not {size // SAMPLE_DTYPE.itemsize:,}"
        )
    samples = np.frombuffer(data, SAMPLE_DTYPE)
    _check(samples)
    return samples


def _check(samples: np.ndarray) -> None:
    # Random bytes of the right length decode into records; the bounds are what turns
    # garbage into an error instead of a runner at 10^38 metres.
    for field in FIELDS:
        if field.integer and _covers_dtype(field):
            continue
        column = samples[field.name]
        inside = np.ones(len(samples), bool)
        for name, bound in field.bounds.items():
            inside &= _COMPARE[name](column, bound)
        if not field.required and not field.integer:
            inside |= np.isnan(column)  # absent
        if not inside.all():
            first = int(np.argmin(inside))
            raise ValueError(
                f"telemetry sample {first} of {len(samples)} has {field.name} {column[first].item()!r}, but "
                f"{field.describe()}: the batch is not telemetry"
            )


def _covers_dtype(field: Field) -> bool:
    """Whether the bounds are the integer type's own range, which the packed record enforces already."""
    limits = np.iinfo(np.dtype(field.dtype))
    return field.bounds == {"ge": limits.min, "le": limits.max}
