"""Telemetry batches: packed records that decode without a copy, and garbage refused."""

from __future__ import annotations

import numpy as np
import pytest

from engine.telemetry import MAX_BATCH, SAMPLE_DTYPE, decode, empty, encode


def batch(count: int) -> np.ndarray:
    samples = empty(count)
    samples["entry"] = np.arange(count)
    samples["seq"] = np.arange(count) + 7
    samples["t"] = 1_700_000_000.25 + np.arange(count)
    samples["distance"] = np.arange(count) * 3.5
    samples["lat"] = 45.123456789
    samples["lon"] = -7.987654321
    samples["speed"] = 3.25
    samples["hr"] = 150
    samples["power"] = 250
    samples["cadence"] = 88
    return samples


def test_the_sample_record_is_packed_little_endian():
    assert SAMPLE_DTYPE.itemsize == 46
    assert not SAMPLE_DTYPE.isalignedstruct
    assert all(SAMPLE_DTYPE[name].str[0] in "<|" for name in SAMPLE_DTYPE.names)


def test_encode_and_decode_round_trip_every_field():
    samples = batch(100)
    samples["distance"][3] = np.nan
    samples["hr"][4] = 0
    decoded = decode(encode(samples))
    assert decoded.tobytes() == samples.tobytes()
    assert decoded["lat"][0] == 45.123456789
    assert np.isnan(decoded["distance"][3]) and decoded["hr"][4] == 0


def test_decode_is_a_read_only_view_of_the_bytes():
    data = encode(batch(10))
    samples = decode(data)
    assert not samples.flags.writeable
    assert not samples.flags.owndata


def test_an_empty_batch_has_every_reading_absent():
    samples = empty(2)
    assert np.isnan(samples["distance"]).all() and np.isnan(samples["lat"]).all()
    assert (samples["hr"] == 0).all() and (samples["power"] == 0).all()
    assert decode(encode(empty(0))).shape == (0,)


def test_decode_refuses_bytes_that_are_not_whole_samples():
    with pytest.raises(ValueError, match="whole number of 46-byte samples"):
        decode(encode(batch(3))[:-1])


def test_decode_refuses_random_bytes():
    garbage = np.random.default_rng(7).bytes(46 * 50)
    with pytest.raises(ValueError, match="is not telemetry"):
        decode(garbage)


@pytest.mark.parametrize(
    ("field", "value"),
    [("t", np.nan), ("t", np.inf), ("distance", -1.0), ("lat", 91.0), ("lon", -180.5), ("speed", np.inf)],
)
def test_decode_refuses_readings_no_device_sends(field, value):
    samples = batch(5)
    samples[field][2] = value
    with pytest.raises(ValueError, match="sample 2 of 5"):
        decode(encode(samples))


def test_decode_refuses_more_than_a_million_samples_before_reading_them():
    with pytest.raises(ValueError, match="at most 1,000,000 samples"):
        decode(bytes(46 * (MAX_BATCH + 1)))


def test_decode_takes_bytes_only():
    with pytest.raises(TypeError, match="bytes"):
        decode("not bytes")


def test_encode_takes_sample_records_only():
    with pytest.raises(TypeError, match="SAMPLE_DTYPE"):
        encode(np.zeros(3))
    with pytest.raises(ValueError, match="flat array"):
        encode(batch(4).reshape(2, 2))
