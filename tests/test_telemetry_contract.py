"""One telemetry contract: every edge refuses a sample past a field's bounds, naming the field, by one table."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from pydantic import ValidationError

from connectors.mqtt.uplink import Drop, uplink
from connectors.samples import Sample
from engine.telemetry import FIELDS, SAMPLE_DTYPE, Field, decode, empty, encode

T0 = 1_700_000_000.0


def _beyond(field: Field) -> list[float]:
    """A value just past each of the field's bounds."""
    values = []
    for name, bound in field.bounds.items():
        step = 1 if field.integer else max(1.0, abs(bound) * 1e-3)  # still past it in float32
        if name in ("ge", "gt"):
            values.append(bound - step if name == "ge" else bound)
        else:
            values.append(bound + step if name == "le" else bound)
    return values


CASES = [(field, value) for field in FIELDS for value in _beyond(field)]
IDS = [f"{field.name}={value:g}" for field, value in CASES]


def test_the_packed_record_is_the_entry_then_the_table_s_fields():
    assert SAMPLE_DTYPE.names == ("entry", *(field.name for field in FIELDS))
    assert all(SAMPLE_DTYPE[field.name] == np.dtype(field.dtype) for field in FIELDS)


def test_the_api_model_states_the_table_s_fields_and_bounds():
    assert list(Sample.model_fields) == [field.name for field in FIELDS]
    for field in FIELDS:
        info = Sample.model_fields[field.name]
        stated = {
            name: getattr(m, name) for m in info.metadata for name in ("ge", "gt", "le", "lt") if hasattr(m, name)
        }
        assert stated == field.bounds, field.name
        assert info.is_required() == field.required, field.name


@pytest.mark.parametrize(("field", "value"), CASES, ids=IDS)
def test_the_api_model_refuses_each_field_past_its_bounds(field, value):
    body = {"seq": 1, "t": T0, field.name: int(value) if field.integer else value}
    with pytest.raises(ValidationError) as refused:
        Sample.model_validate(body)
    assert refused.value.errors()[0]["loc"] == (field.name,)


@pytest.mark.parametrize(("field", "value"), CASES, ids=IDS)
def test_the_mqtt_uplink_refuses_each_field_past_its_bounds(field, value):
    sample = {"seq": 1, "t": T0, field.name: int(value) if field.integer else value}
    with pytest.raises(Drop) as refused:
        uplink(msgpack.packb({"race": "r", "samples": [sample]}))
    assert refused.value.reason == "malformed" and f"$.samples[0].{field.name}" in refused.value.detail


PACKED = [(f, v) for f, v in CASES if not f.integer or 0 <= v <= np.iinfo(f.dtype).max] + [
    (f, math.nan) for f in FIELDS if f.required and not f.integer
]  # what a packed record can hold at all


@pytest.mark.parametrize(("field", "value"), PACKED, ids=[f"{f.name}={v:g}" for f, v in PACKED])
def test_decode_refuses_each_field_past_its_bounds_naming_it(field, value):
    samples = empty(3)
    samples["seq"], samples["t"] = 1, T0
    samples[field.name][1] = value
    with pytest.raises(ValueError, match=f"sample 1 of 3 has {field.name} "):
        decode(encode(samples))


def test_one_sample_s_fields_with_race_are_a_message_of_one_sample():
    message = uplink(msgpack.packb({"race": "r", "seq": 3, "t": T0, "hr": 150}))
    assert message.race == "r" and [(s.seq, s.hr, s.distance) for s in message.samples] == [(3, 150, None)]
    with pytest.raises(Drop, match="needs seq"):
        uplink(msgpack.packb({"race": "r", "t": T0}))
    with pytest.raises(Drop, match="not both"):
        uplink(msgpack.packb({"race": "r", "seq": 1, "samples": [{"seq": 1, "t": T0}]}))
