"""The segment matcher on generated tracks with GPS noise: loops, partial and reversed passes, the index; the boards
by sex and age group, and the profile fields they come from."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from actors.account import Account
from actors.athlete import AGE_GROUPS, SEXES, age_group, birth_year_problem
from actors.events import SEGMENT_EFFORT
from actors.segment import Segment
from engine.errors import Rejected
from engine.events import Event
from engine.race import SEXES as RACE_SEXES
from engine.segments import SegmentIndex, SegmentShape, Track, match
from engine.segments.index import track_cells

M_PER_DEG = 6_371_008.8 * math.pi / 180.0
LAT0, LON0 = 45.76, 4.84
T0 = 1_800_000_000.0


def _road(rng: np.random.Generator, length_m: float, step_m: float = 5.0) -> np.ndarray:
    """A winding road as x, y metres: headings that drift, a point every ``step_m``."""
    n = int(length_m / step_m) + 1
    heading = np.cumsum(rng.normal(0.0, 0.03, n))
    xy = np.zeros((n, 2))
    xy[1:, 0] = np.cumsum(np.cos(heading[1:]) * step_m)
    xy[1:, 1] = np.cumsum(np.sin(heading[1:]) * step_m)
    return xy


def _degrees(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return LAT0 + xy[:, 1] / M_PER_DEG, LON0 + xy[:, 0] / (M_PER_DEG * math.cos(math.radians(LAT0)))


def _ride(
    rng: np.random.Generator, path: np.ndarray, speed: float = 8.0, every_s: float = 1.0, noise_m: float = 4.0
) -> tuple[Track, np.ndarray]:
    """A recording of someone moving along ``path`` at ``speed``: a fix every ``every_s`` with noise that
    drifts (GPS errors are correlated over tens of seconds); answers the track and the true arc of each fix."""
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))))
    t = np.arange(0.0, arc[-1] / speed, every_s)
    at = t * speed
    x, y = np.interp(at, arc, path[:, 0]), np.interp(at, arc, path[:, 1])
    drift = np.zeros((len(t), 2))
    for i in range(1, len(t)):
        drift[i] = 0.95 * drift[i - 1] + rng.normal(0.0, noise_m * math.sqrt(1 - 0.95**2), 2)
    lat, lon = _degrees(np.column_stack((x, y)) + drift)
    return Track(lat, lon, T0 + t), at


def _segment(path: np.ndarray, start_m: float, end_m: float) -> SegmentShape:
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))))
    keep = (arc >= start_m) & (arc <= end_m)
    lat, lon = _degrees(path[keep])
    return SegmentShape.of(lat, lon)


@pytest.fixture(scope="module")
def road() -> np.ndarray:
    return _road(np.random.default_rng(7), 6_000.0)


def test_a_noisy_ride_along_the_segment_is_one_effort_timed_from_its_own_points(road):
    track, _ = _ride(np.random.default_rng(1), road, speed=8.0)
    segment = _segment(road, 1_000.0, 3_000.0)

    efforts = match(track, segment)

    assert len(efforts) == 1
    assert efforts[0].elapsed_s == pytest.approx(segment.length_m / 8.0, abs=4.0)
    assert efforts[0].start_t == pytest.approx(T0 + 1_000.0 / 8.0, abs=4.0)


def test_sparse_fixes_are_interpolated_at_the_start_and_the_end(road):
    track, _ = _ride(np.random.default_rng(2), road, speed=5.0, every_s=10.0, noise_m=2.0)
    segment = _segment(road, 1_003.0, 2_507.0)  # ends between two fixes 50 m apart

    (effort,) = match(track, segment)

    assert effort.start_t == pytest.approx(T0 + 1_003.0 / 5.0, abs=2.0)
    assert effort.elapsed_s == pytest.approx(segment.length_m / 5.0, abs=3.0)


def test_a_loop_ridden_twice_makes_two_efforts(road):
    loop = np.concatenate((road[:800], road[799::-1][1:]))  # out 4 km and back: a lap
    lap_back_to_start = np.concatenate((loop, loop[1:]))
    track, _ = _ride(np.random.default_rng(3), lap_back_to_start, speed=6.0)
    segment = _segment(road, 500.0, 2_500.0)

    efforts = match(track, segment)

    assert len(efforts) == 2
    assert efforts[1].start_t - efforts[0].start_t == pytest.approx(8_000.0 / 6.0, abs=10.0)
    assert all(e.elapsed_s == pytest.approx(segment.length_m / 6.0, abs=4.0) for e in efforts)


def test_partial_coverage_makes_no_effort(road):
    track, _ = _ride(np.random.default_rng(4), road[:500], speed=8.0)  # stops 2.5 km in
    assert match(track, _segment(road, 1_000.0, 3_000.0)) == []


def test_a_turn_back_before_the_end_then_a_shortcut_to_it_is_no_effort(road):
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(road, axis=0).T))))
    end = road[np.searchsorted(arc, 3_000.0)]
    half = road[: np.searchsorted(arc, 2_000.0)]
    shortcut = np.linspace(half[-1] + (0.0, 300.0), end, 200)  # a parallel street 300 m away, then the end
    track, _ = _ride(np.random.default_rng(5), np.concatenate((half, shortcut)), speed=8.0)

    assert match(track, _segment(road, 1_000.0, 3_000.0)) == []


def test_riding_it_the_wrong_way_makes_no_effort(road):
    track, _ = _ride(np.random.default_rng(6), road[::-1].copy(), speed=8.0)
    assert match(track, _segment(road, 1_000.0, 3_000.0)) == []
    assert len(match(track, _segment(road[::-1].copy(), 1_000.0, 3_000.0))) == 1


def test_a_parallel_road_sixty_metres_away_makes_no_effort(road):
    track, _ = _ride(np.random.default_rng(8), road + (0.0, 60.0), speed=8.0, noise_m=3.0)
    assert match(track, _segment(road, 1_000.0, 3_000.0)) == []


def test_bad_fixes_and_gaps_are_ignored_not_fatal(road):
    track, _ = _ride(np.random.default_rng(9), road, speed=8.0)
    lat, lon, t = track.lat.copy(), track.lon.copy(), track.t.copy()
    lat[::50], lon[7::60] = np.nan, np.inf
    broken = Track(np.append(lat, 1e9), np.append(lon, 13.0), np.append(t, T0 + 10**6))
    assert len(match(broken, _segment(road, 1_000.0, 3_000.0))) == 1
    assert match(Track([], [], []), _segment(road, 1_000.0, 3_000.0)) == []
    with pytest.raises(ValueError):
        Track([1.0, 2.0], [1.0], [0.0, 1.0])


def test_a_lost_fix_across_the_segment_is_no_effort(road):
    track, at = _ride(np.random.default_rng(10), road, speed=8.0)
    keep = (at < 1_500.0) | (at > 2_500.0)  # a kilometre without a fix: nobody knows where they went
    gapped = Track(track.lat[keep], track.lon[keep], track.t[keep])
    assert match(gapped, _segment(road, 1_000.0, 3_000.0)) == []


def _index_of(
    road: np.ndarray, rng: np.random.Generator, count: int
) -> tuple[SegmentIndex, list[SegmentShape], list[int]]:
    shapes: list[SegmentShape] = []
    strays: list[int] = []
    for _ in range(count):  # pieces of the road, of a parallel road, reversed pieces, and strays
        start = rng.uniform(0.0, 5_000.0)
        piece = _segment(road, start, start + rng.uniform(200.0, 1_000.0))
        kind = rng.integers(4)
        if kind == 1:
            piece = SegmentShape.of(piece.lat + 80.0 / M_PER_DEG, piece.lon)
        elif kind == 2:
            piece = SegmentShape.of(piece.lat[::-1], piece.lon[::-1])
        elif kind == 3:
            piece = SegmentShape.of(piece.lat + rng.choice((-1, 1)) * rng.uniform(0.1, 0.3), piece.lon)
            strays.append(len(shapes))
        shapes.append(piece)
    return SegmentIndex.of([(s.lat, s.lon) for s in shapes]), shapes, strays


def test_the_index_finds_exactly_what_checking_every_segment_finds(road):
    index, shapes, strays = _index_of(road, np.random.default_rng(11), 300)
    track, _ = _ride(np.random.default_rng(12), road, speed=7.0)

    everything = [(i, e) for i, shape in enumerate(shapes) for e in match(track, shape)]
    found = index.match(track)

    assert found == everything
    assert len(found) > 40  # about a quarter of them are pieces of the road itself
    assert len(strays) > 50 and not set(strays) & set(index.candidates(track).tolist())


def test_candidates_need_both_the_start_cell_and_the_end_cell_among_the_tracks(road):
    index, _, _ = _index_of(road, np.random.default_rng(13), 100)
    track, _ = _ride(np.random.default_rng(14), road, speed=7.0)
    cells = set(track_cells(track).tolist())
    expected = [
        i
        for i in range(len(index))
        if int(index._sorted_starts[np.flatnonzero(index._by_start == i)[0]]) in cells
        and int(index.end_cells[i]) in cells
    ]
    assert index.candidates(track).tolist() == expected


def _effort(owner: str, elapsed_s: float, start: float, version: int = 2, **athlete: str | None) -> Event:
    fields = {"segment_id": "s1", "owner": owner, "workout_id": f"w-{owner}-{start}", "visibility": "public",
              "flagged": False, "start": start, "elapsed_s": elapsed_s, **athlete}  # fmt: skip
    if version < SEGMENT_EFFORT.version:  # as the relay hands a reaction an old event: upgraded
        assert SEGMENT_EFFORT.upgrade is not None
        fields = SEGMENT_EFFORT.upgrade(fields, version)
    return Event(SEGMENT_EFFORT.name, SEGMENT_EFFORT.version, "segment_shard", "x", 1, 0, start, owner, fields, 1)


def test_boards_by_sex_and_age_group_filter_the_same_efforts_and_old_efforts_count_overall_only():
    segment = Segment("s1")
    segment.definition = {"id": "s1", "creator": "ann", "name": "Climb", "sport": "ride", "lat": [45.0, 45.01],
                          "lon": [7.0, 7.01], "length_m": 1000.0, "shard": "x", "created": T0}  # fmt: skip
    segment._now = T0
    segment.on_effort(_effort("wen", 100.0, T0 - 60, sex="women", age_group="25_34"))
    segment.on_effort(_effort("max", 90.0, T0 - 50, sex="men", age_group="55_64"))
    segment.on_effort(_effort("ned", 80.0, T0 - 40, sex=None, age_group=None))  # gave neither
    segment.on_effort(_effort("old", 85.0, T0 - 30, version=1))  # recorded before efforts carried them

    def athletes(**filters: Any) -> list[str]:
        return [row["athlete"] for row in segment.leaderboard(viewer="someone", **filters)["rows"]]

    assert athletes() == ["ned", "old", "max", "wen"]
    assert athletes(sex="women") == ["wen"]
    assert athletes(sex="men") == ["max"]
    assert athletes(age_group="25_34") == ["wen"] and athletes(sex="men", age_group="25_34") == []
    assert athletes(board="year", since=T0 - 3600, sex="women") == ["wen"]
    assert athletes(board="legend", since=T0 - 3600, sex="men") == ["max"]
    for bad in ({"sex": "female"}, {"sex": "unknown"}, {"age_group": "75+"}):
        with pytest.raises(Rejected):
            athletes(**bad)


def test_age_groups_turn_with_the_year_of_the_birth_year():
    new_year = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    assert age_group(1990, new_year - 1) == "25_34"  # 34 in 2024
    assert age_group(1990, new_year) == "35_44"  # 35 from 1 January 2025, whatever the birthday
    assert [age_group(2025 - age, new_year) for age in (5, 19, 20, 24, 25, 64, 65, 69, 70, 74, 75, 120)] == [
        "0_19", "0_19", "20_24", "20_24", "25_34", "55_64", "65_69", "65_69", "70_74", "70_74", "75_plus", "75_plus"
    ]  # fmt: skip
    assert age_group(None, new_year) is None and age_group(2030, new_year) is None
    assert set(AGE_GROUPS) == {age_group(2025 - age, new_year) for age in range(0, 100)}
    assert birth_year_problem(1990, new_year) is None and birth_year_problem(2020, new_year) is None
    for bad in (1899, 2021, 3000, -1, True, "1990", 1990.0, None):
        assert birth_year_problem(bad, new_year) is not None


def test_the_sexes_are_the_races_own():
    assert SEXES == RACE_SEXES[1:]


def test_sex_and_birth_year_are_the_athletes_own_and_exported():
    account = Account("wen")
    account._now = T0
    account.register("wen@example.com", "hash", "Wen")
    me = account.update_profile(profile={"sex": "women", "birth_year": 1990, "city": "Lyon"})
    assert me["profile"]["sex"] == "women" and me["profile"]["birth_year"] == 1990
    assert account.export()["profile"]["birth_year"] == 1990
    assert account.view(viewer="wen")["profile"]["sex"] == "women"
    for viewer in ("bob", None):
        profile = account.view(viewer=viewer)["profile"]
        assert profile["city"] == "Lyon" and "sex" not in profile and "birth_year" not in profile
    for bad in ({"sex": "female"}, {"sex": ""}, {"birth_year": 1800}, {"birth_year": 2100}, {"birth_year": "1990"},
                {"birth_year": True}):  # fmt: skip
        with pytest.raises(Rejected):
            account.update_profile(profile=bad)
    assert account.update_profile(profile={"sex": None})["profile"]["sex"] is None  # taken back
