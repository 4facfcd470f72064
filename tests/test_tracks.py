from __future__ import annotations

import math
import random

import pytest

from engine.training.tracks import TrackPoint, summarize

START = 1_714_545_000.0
LAT0, LON0 = 52.5, 13.4
METRES_PER_DEGREE_LAT = 111_195.0  # on a sphere of the Earth's mean radius


def _run(distance_m: float, pace_s_per_km: float = 300.0, step_s: float = 1.0, **extra) -> list[TrackPoint]:
    """A straight run due north at an even pace, one point per ``step_s``."""
    speed = 1000.0 / pace_s_per_km
    steps = math.ceil(distance_m / speed / step_s)
    return [
        TrackPoint(
            t=START + i * step_s,
            lat=LAT0 + min(i * step_s * speed, distance_m) / METRES_PER_DEGREE_LAT,
            lon=LON0,
            **extra,
        )
        for i in range(steps + 1)
    ]


def test_straight_run_has_distance_splits_and_best_efforts():
    summary = summarize(_run(10_500.0))

    assert summary.distance_m == pytest.approx(10_500.0, rel=0.005)
    assert summary.elapsed_s == pytest.approx(3150.0, abs=1.0)
    assert summary.moving_s == pytest.approx(summary.elapsed_s)
    assert summary.pace_s_per_km == pytest.approx(300.0, rel=0.005)
    assert len(summary.splits) == 11
    assert [split.index for split in summary.splits] == list(range(1, 12))
    assert all(split.distance_m == pytest.approx(1000.0) for split in summary.splits[:10])
    assert summary.splits[-1].distance_m == pytest.approx(500.0, rel=0.02)
    assert all(split.pace_s_per_km == pytest.approx(300.0, rel=0.005) for split in summary.splits)
    assert summary.best_efforts["1k"] == pytest.approx(300.0, rel=0.005)
    assert summary.best_efforts["5k"] == pytest.approx(1500.0, rel=0.005)
    assert summary.best_efforts["10k"] == pytest.approx(3000.0, rel=0.005)
    assert "half" not in summary.best_efforts and "marathon" not in summary.best_efforts
    assert summary.points == 3151


def test_best_effort_finds_the_fast_stretch_in_the_middle():
    slow, fast = 360.0, 240.0
    points = _run(2_000.0, pace_s_per_km=slow)
    last = points[-1]
    for i in range(1, 241):  # one fast kilometre straight after, then slow again
        points.append(TrackPoint(t=last.t + i, lat=last.lat + i * (1000 / fast) / METRES_PER_DEGREE_LAT, lon=LON0))
    last = points[-1]
    for i in range(1, 721):
        points.append(TrackPoint(t=last.t + i, lat=last.lat + i * (1000 / slow) / METRES_PER_DEGREE_LAT, lon=LON0))

    summary = summarize(points)

    assert summary.best_efforts["1k"] == pytest.approx(240.0, rel=0.005)
    assert summary.splits[2].time_s == pytest.approx(240.0, rel=0.005)


@pytest.mark.parametrize("recorded_while_stopped", [True, False], ids=["stop-recorded", "recording-paused"])
def test_ten_minute_stop_is_not_moving_time(recorded_while_stopped):
    first = _run(3_000.0)
    stopped_at = first[-1]
    stop = [TrackPoint(t=stopped_at.t + i, lat=stopped_at.lat, lon=LON0) for i in range(1, 601)]
    second = [
        TrackPoint(t=stopped_at.t + 600 + p.t - START, lat=stopped_at.lat + (p.lat - LAT0), lon=LON0)
        for p in _run(2_000.0)[1:]
    ]
    points = first + (stop if recorded_while_stopped else []) + second

    summary = summarize(points)

    assert summary.elapsed_s == pytest.approx(1500.0 + 600.0, abs=2.0)
    assert summary.moving_s == pytest.approx(summary.elapsed_s - 600.0, abs=2.0)
    assert summary.distance_m == pytest.approx(5_000.0, rel=0.005)
    assert summary.pace_s_per_km == pytest.approx(300.0, rel=0.005)
    assert summary.best_efforts["5k"] == pytest.approx(2100.0, rel=0.005)


def test_elevation_jitter_is_not_climbing():
    noise = random.Random(7)
    points = [TrackPoint(t=p.t, lat=p.lat, lon=p.lon, ele=50.0 + noise.uniform(-1.0, 1.0)) for p in _run(3_000.0)]

    assert summarize(points).elevation_gain_m == pytest.approx(0.0, abs=1.0)


def test_steady_climb_counts_in_full_even_with_jitter():
    noise = random.Random(11)
    run = _run(2_000.0)
    points = [
        TrackPoint(t=p.t, lat=p.lat, lon=p.lon, ele=10.0 + 100.0 * i / (len(run) - 1) + noise.uniform(-1.0, 1.0))
        for i, p in enumerate(run)
    ]

    summary = summarize(points)

    assert summary.elevation_gain_m == pytest.approx(100.0, abs=4.0)
    assert sum(split.elevation_gain_m for split in summary.splits) == pytest.approx(summary.elevation_gain_m)


def test_device_distance_is_preferred_over_gps():
    # GPS says 2 km; the footpod, calibrated on a track, says 2.1 km.
    points = [TrackPoint(t=p.t, lat=p.lat, lon=p.lon, distance=(p.t - START) * 2_100.0 / 600.0) for p in _run(2_000.0)]

    assert summarize(points).distance_m == pytest.approx(2_100.0, rel=0.001)


def test_gaps_in_device_distance_are_filled_from_neighbours():
    points = [TrackPoint(t=START + i, distance=None if i % 3 else i * 3.0) for i in range(601)]

    summary = summarize(points)

    assert summary.distance_m == pytest.approx(1_800.0)
    assert summary.moving_s == pytest.approx(600.0)


def test_indoor_track_has_time_and_heart_rate_but_no_distance():
    points = [TrackPoint(t=START + i, hr=120 + i % 40, power=200 + i % 2) for i in range(1800)]

    summary = summarize(points)

    assert summary.distance_m == 0.0
    assert summary.elapsed_s == 1799.0
    assert summary.moving_s == 1799.0
    assert summary.pace_s_per_km is None
    assert summary.splits == () and summary.best_efforts == {}
    assert summary.avg_hr == pytest.approx(139.5)
    assert summary.max_hr == 159
    assert summary.avg_power == pytest.approx(200.5)


def test_indoor_recording_gap_is_a_pause():
    points = [TrackPoint(t=START + i, hr=130) for i in range(600)]
    points += [TrackPoint(t=START + 1200 + i, hr=130) for i in range(600)]

    summary = summarize(points)

    assert summary.elapsed_s == 1799.0
    assert summary.moving_s == 1198.0


def test_unsorted_and_duplicate_points_give_the_same_summary():
    points = _run(1_500.0, hr=150)
    shuffled = points + points[::7]
    random.Random(3).shuffle(shuffled)

    assert summarize(shuffled) == summarize(points)
    assert summarize(shuffled).points == len(points)


def test_missing_heart_rate_and_power_are_none():
    summary = summarize(_run(500.0))

    assert summary.avg_hr is None and summary.max_hr is None and summary.avg_power is None


def test_single_point_track_is_empty_but_valid():
    summary = summarize([TrackPoint(t=START, lat=LAT0, lon=LON0, hr=90)])

    assert (summary.distance_m, summary.elapsed_s, summary.moving_s, summary.splits) == (0.0, 0.0, 0.0, ())
    assert summary.max_hr == 90


def test_summary_to_dict_is_plain_data():
    data = summarize(_run(2_300.0, hr=140)).to_dict()

    assert type(data["distance_m"]) is float and type(data["points"]) is int and type(data["max_hr"]) is int
    assert isinstance(data["splits"], list) and data["splits"][0]["index"] == 1
    assert set(data["best_efforts"]) == {"1k"}


def test_empty_track_is_refused():
    with pytest.raises(ValueError, match="at least one point"):
        summarize([])


def test_point_without_a_finite_time_is_refused():
    with pytest.raises(ValueError, match="finite time"):
        summarize([TrackPoint(t=START), TrackPoint(t=math.nan)])
