"""Telemetry batches: the packed sample records a gateway sends to a live race.

A batch is the raw bytes of an array of ``SAMPLE_DTYPE`` records (46 bytes
each, little-endian, no padding), so a race decodes it with one
``np.frombuffer`` and no copy; Ray carries ``bytes`` without pickling. Absent
readings are NaN for the float fields and 0 for ``hr``, ``power`` and
``cadence``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLE_DTYPE", "MAX_BATCH", "empty", "encode", "decode"]

SAMPLE_DTYPE = np.dtype(
    [
        ("participant", "<u4"),  # the participant's index in the race
        ("seq", "<u4"),  # per device, increasing
        ("t", "<f8"),  # unix seconds of the sample
        ("distance", "<f4"),  # cumulative metres since the athlete's start
        ("lat", "<f8"),
        ("lon", "<f8"),
        ("speed", "<f4"),  # m/s as the device measured it
        ("hr", "<u2"),  # bpm
        ("power", "<u2"),  # W
        ("cadence", "<u2"),  # rpm or steps/min
    ]
)

MAX_BATCH = 1_000_000  # samples; a larger batch is refused before it is looked at


def empty(count: int) -> np.ndarray:
    """A writable batch of ``count`` samples with every reading absent."""
    if count < 0 or count > MAX_BATCH:
        raise ValueError(f"a batch holds 0 to {MAX_BATCH:,} samples, not {count:,}")
    samples = np.zeros(count, SAMPLE_DTYPE)
    for name in ("distance", "lat", "lon", "speed"):
        samples[name] = np.nan
    return samples


def encode(samples: np.ndarray) -> bytes:
    if not isinstance(samples, np.ndarray) or samples.dtype.names != SAMPLE_DTYPE.names:
        raise TypeError(f"encode takes a numpy array of SAMPLE_DTYPE records, not {type(samples).__name__}")
    if samples.ndim != 1:
        raise ValueError(f"a batch is a flat array of samples, not one of {samples.ndim} dimensions")
    if len(samples) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH:,} samples, not {len(samples):,}")
    return np.ascontiguousarray(samples, dtype=SAMPLE_DTYPE).tobytes()


def decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """A read-only view of the samples in ``data``, after checking they make sense."""
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
    # Random bytes of the right length decode into records; these bounds are what
    # turns garbage into an error instead of a runner at 10^38 metres.
    problems = {
        "a time that is not a finite number": ~np.isfinite(samples["t"]),
        "a negative or infinite distance": ~((samples["distance"] >= 0) & np.isfinite(samples["distance"]))
        & ~np.isnan(samples["distance"]),
        "a latitude outside ±90°": np.abs(samples["lat"]) > 90,
        "a longitude outside ±180°": np.abs(samples["lon"]) > 180,
        "a negative or infinite speed": ~((samples["speed"] >= 0) & np.isfinite(samples["speed"]))
        & ~np.isnan(samples["speed"]),
    }
    for what, bad in problems.items():
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(f"telemetry sample {first} of {len(samples)} has {what}: the batch is not telemetry")
