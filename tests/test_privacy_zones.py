"""Privacy zones' geometry (engine/privacy_zones.py): what of a track others may see."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.privacy_zones import MAX_RADIUS_M, MIN_RADIUS_M, Zone, _distance_m, inside, place_zone, visible_range

HOME = (48.8566, 2.3522)


def _walk(start: tuple[float, float], metres: float, points: int, bearing: float = 0.0) -> list[list[float]]:
    """A straight track of ``points`` fixes over ``metres``, heading ``bearing`` (radians)."""
    from engine.privacy_zones import _moved

    return [list(_moved(*start, bearing, metres * i / (points - 1))) for i in range(points)]


def test_a_track_from_home_is_hidden_until_it_leaves_the_zone_and_after_it_comes_back():
    zone = Zone(*HOME, 300.0)
    out = _walk(HOME, 2_000, 41)  # 50 m a fix, northwards
    track = out + out[::-1]  # out and back home
    first, end = visible_range(track, [zone])
    assert all(not inside(p[0], p[1], [zone]) for p in track[first:end])
    assert inside(*track[first - 1][:2], [zone]) and inside(*track[end][:2], [zone])
    assert 250 <= _distance_m(*HOME, *track[first][:2]) <= 350
    assert visible_range(track, []) == (0, len(track))
    assert visible_range(out[:3], [zone]) == (0, 0)  # a walk around the block: nothing shown
    assert visible_range([], [zone]) == (0, 0)


def test_a_track_elsewhere_is_shown_whole():
    zone = Zone(*HOME, 300.0)
    far = _walk((48.90, 2.25), 5_000, 51)
    assert visible_range(far, [zone]) == (0, 51)


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-80, 80), lon=st.floats(-179, 179), radius=st.floats(MIN_RADIUS_M, MAX_RADIUS_M),
    seed=st.integers(0, 2**32),
)  # fmt: skip
def test_a_placed_zone_hides_the_whole_radius_around_the_address_but_is_not_centred_on_it(lat, lon, radius, seed):
    zone = place_zone(lat, lon, radius, random.Random(seed))
    offset = _distance_m(lat, lon, zone.lat, zone.lon)
    assert offset <= radius / 2 + 1.0
    for bearing in (0.0, 1.0, 2.5, 4.0, 5.5):  # every point within the radius of the address is inside
        from engine.privacy_zones import _moved

        assert inside(*_moved(lat, lon, bearing, radius * 0.999), [zone])


def test_zones_are_placed_at_random_around_the_address():
    centres = {(z.lat, z.lon) for z in (place_zone(*HOME, 500.0) for _ in range(20))}
    assert len(centres) == 20


@pytest.mark.parametrize(
    "lat, lon, radius", [(91, 0, 300), (0, 181, 300), (0, 0, 50), (0, 0, 50_000), (math.nan, 0, 300), (0, 0, math.inf)]
)
def test_nonsense_zones_are_refused(lat, lon, radius):
    with pytest.raises(ValueError):
        place_zone(lat, lon, radius)
