"""Telemetry samples as the HTTP API takes them: the request model, with the contract's bounds.

The fields and their bounds are ``engine.telemetry.FIELDS``; this model states them in the
API's OpenAPI document (``tests/test_telemetry_contract.py`` holds the two to each other).
The MQTT hub decodes its uplinks without a model per sample (``connectors.mqtt.uplink``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engine.telemetry import FIELDS, columns, encode

__all__ = ["Sample", "MAX_SAMPLES_PER_POST", "pack_samples"]

MAX_SAMPLES_PER_POST = 10_000

_BOUNDS = {field.name: field.bounds for field in FIELDS}


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: Annotated[int, Field(**_BOUNDS["seq"])]
    t: Annotated[float, Field(**_BOUNDS["t"])]
    distance: Annotated[float | None, Field(**_BOUNDS["distance"])] = None
    lat: Annotated[float | None, Field(**_BOUNDS["lat"])] = None
    lon: Annotated[float | None, Field(**_BOUNDS["lon"])] = None
    speed: Annotated[float | None, Field(**_BOUNDS["speed"])] = None
    hr: Annotated[int | None, Field(**_BOUNDS["hr"])] = None
    power: Annotated[int | None, Field(**_BOUNDS["power"])] = None
    cadence: Annotated[int | None, Field(**_BOUNDS["cadence"])] = None


def pack_samples(samples: Sequence[Sample], entries: Sequence[int] | int = 0) -> bytes:
    """Samples as one packed telemetry batch; ``entries`` is each sample's position in the
    athletes list sent with it (one int: all the same athlete)."""
    return encode(columns(samples, entries))
