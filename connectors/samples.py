"""Telemetry samples as devices and phones send them (JSON or msgpack maps), validated and packed.

The HTTP ingestion route and the MQTT hub share this edge: one model of a sample,
one way to turn a list of them into a packed batch for a race.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engine.telemetry import empty, encode

__all__ = ["Sample", "MAX_SAMPLES_PER_POST", "pack_samples"]

MAX_SAMPLES_PER_POST = 10_000


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: Annotated[int, Field(ge=0, lt=2**32)]
    t: Annotated[float, Field(gt=0, lt=1e10)]
    distance: Annotated[float | None, Field(ge=0, le=1e8)] = None
    lat: Annotated[float | None, Field(ge=-90, le=90)] = None
    lon: Annotated[float | None, Field(ge=-180, le=180)] = None
    speed: Annotated[float | None, Field(ge=0, le=1_000)] = None
    hr: Annotated[int | None, Field(ge=0, lt=65_536)] = None
    power: Annotated[int | None, Field(ge=0, lt=65_536)] = None
    cadence: Annotated[int | None, Field(ge=0, lt=65_536)] = None


def pack_samples(samples: list[Sample], participants: Sequence[int] | int = 0) -> bytes:
    """Samples as one packed telemetry batch; ``participants`` is each sample's position in the
    athletes list sent with it (one int: all the same athlete)."""
    batch = empty(len(samples))
    batch["participant"] = participants
    for name in ("seq", "t"):
        batch[name] = [getattr(s, name) for s in samples]
    for name in ("distance", "lat", "lon", "speed"):
        batch[name] = [math.nan if getattr(s, name) is None else getattr(s, name) for s in samples]
    for name in ("hr", "power", "cadence"):
        batch[name] = [getattr(s, name) or 0 for s in samples]
    return encode(batch)
