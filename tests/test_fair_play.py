"""Live fair play: each cheat caught on the sample that makes it conclusive, honest athletes spared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.codec import unpack
from engine.race import PROFILES, RaceBoard, tightened
from loadtest import fairplay
from tests.test_race_board import M_PER_DEG, T0, athlete, feed, in_time_order, race

RNG = np.random.default_rng(7)


def honest_hr(count: int, level: float = 150.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(level + np.linspace(0, 10, count) + rng.normal(0, 1.5, count))


def ride(count: int = 1, weights=(70.0,), sexes=None, **options) -> RaceBoard:
    board = RaceBoard(count, sport="ride", kind="distance", target_m=200_000, **options)
    board.add(count, weights_kg=np.array(weights[:count]), sexes=None if sexes is None else np.array(sexes))
    board.start("all", T0)
    return board


def rules(board: RaceBoard, participant: int = 0) -> dict[str, dict]:
    return {f["rule"]: f for f in board.flags(participant)}


def test_a_car_at_29_ms_under_the_ride_cap_producing_3_watts_is_a_vehicle():
    board = ride()
    speeds = np.concatenate((10 + RNG.normal(0, 0.3, 120), np.linspace(10, 29, 8), np.full(60, 29.0)))
    power = np.concatenate((np.full(128, 230.0), np.full(60, 3.0)))
    feed(board, athlete(0, speeds, power=power, hr=honest_hr(188), jitter_m=3))
    vehicle = rules(board)["vehicle"]
    assert vehicle["severity"] == "high" and vehicle["evidence"]["source"] == "power"
    assert (
        vehicle["evidence"]["needed_w"] > 1000
        and vehicle["evidence"]["power_w"] < 0.2 * vehicle["evidence"]["needed_w"]
    )
    assert T0 + 128 < vehicle["t"] <= T0 + 145 and vehicle["evidence"]["seqs"][1] == vehicle["t"] - T0 + 1


def test_a_car_pulling_away_is_sustained_acceleration():
    board = ride()
    speeds = np.concatenate((np.full(60, 12.0), 12 + 2.5 * np.arange(1, 4), np.full(5, 19.5)))
    feed(board, athlete(0, speeds, power=250, hr=honest_hr(68)))
    flag = rules(board)["acceleration"]  # 14.5, 17 and 19.5 m/s, each 2.5 m/s faster: 36-49 W/kg
    assert flag["t"] == T0 + 62 and flag["evidence"]["w_per_kg"] >= 30 and flag["evidence"]["steps"] == 3


def test_a_runner_with_a_resting_heart_at_race_pace_is_flagged_within_seconds():
    board = race(1, target_m=42195)
    hr = np.concatenate((honest_hr(300), np.round(62 + RNG.normal(0, 1.5, 60))))
    feed(board, athlete(0, 3.2 + RNG.normal(0, 0.2, 360), hr=hr))
    flag = rules(board)["hr_decoupled"]
    assert T0 + 300 <= flag["t"] <= T0 + 307 and flag["evidence"]["hr"] < 95


def test_a_heart_that_falls_to_rest_within_seconds_is_decoupled_below_the_effort_line_too():
    board = ride()  # 120 W and 7.5 m/s: under the ride's effort line (130 W, 8 m/s)
    hr = np.concatenate((honest_hr(300, 145), np.round(62 + RNG.normal(0, 1.5, 60))))
    feed(board, athlete(0, 7.5 + RNG.normal(0, 0.2, 360), power=120, hr=hr, jitter_m=3))
    flag = rules(board)["hr_decoupled"]
    assert flag["evidence"]["source"] == "fall" and T0 + 300 <= flag["t"] <= T0 + 305
    assert flag["evidence"]["hr"] < 90 and flag["evidence"]["earlier_bpm"] >= 130 and flag["evidence"]["readings"] >= 20


def test_a_heart_that_falls_as_fast_as_a_heart_can_is_not_decoupled():
    board = ride()  # under the effort line, the heart falls toward 60 with a 30 s time constant (recovery
    # after effort is slower: its fastest phase drops ~1-2 bpm/s)
    hr = np.concatenate((honest_hr(300, 145), np.round(60 + 95 * np.exp(-np.arange(1, 121) / 30.0))))
    feed(board, athlete(0, 7.5 + RNG.normal(0, 0.2, 420), power=120, hr=hr, jitter_m=3))
    assert board.flags() == []


def test_a_heart_rate_at_the_start_is_not_decoupled_before_it_could_follow():
    board = race(1, target_m=42195)
    hr = np.round(75 + 85 * (1 - np.exp(-np.arange(200) / 40.0)) + RNG.normal(0, 1.5, 200))
    feed(board, athlete(0, 3.5 + RNG.normal(0, 0.2, 200), hr=hr))
    assert board.flags() == []


@pytest.mark.parametrize("loop", [30, 47, 90])
def test_a_heart_rate_looped_exactly_is_a_replay(loop):
    board = race(1, target_m=42195)
    hr = honest_hr(400, seed=loop)
    for i in range(200, 400):
        hr[i] = hr[i - loop]
    feed(board, athlete(0, 3.5 + RNG.normal(0, 0.2, 400), hr=hr))
    flag = rules(board)["hr_replay"]
    assert flag["evidence"]["source"] == "loop" and flag["evidence"]["loop_s"] == loop
    assert T0 + 212 <= flag["t"] <= T0 + 230


def test_a_frozen_heart_rate_while_the_runner_goes_on_is_a_replay():
    board = race(1, target_m=42195)
    hr = honest_hr(300)
    hr[150:] = hr[149]
    feed(board, athlete(0, 3.5 + RNG.normal(0, 0.2, 300), hr=hr))
    flag = rules(board)["hr_replay"]
    assert flag["evidence"]["source"] == "frozen" and T0 + 165 <= flag["t"] <= T0 + 185


def test_a_six_minute_effort_over_the_five_minute_cap_is_flagged_on_the_exact_rolling_mean():
    board = ride(weights=(60.0,))  # declares 60 kg, is heavier: 8 W/kg for six minutes
    power = np.concatenate((np.full(600, 240.0), np.full(360, 480.0), np.full(300, 240.0)))
    feed(board, athlete(0, np.full(1260, 11.0), power=power, hr=honest_hr(1260, 160)), seconds=5)
    flag = rules(board)["wkg_5min"]
    # 300 s holding (240·(300-k) + 480·k)/300/60 > 7.5 W/kg first at k = 263 s into the effort
    assert flag["t"] == T0 + 600 + 263 - 1 and flag["evidence"]["window"] == [T0 + 563, T0 + 863]
    assert flag["evidence"]["wkg"] == pytest.approx(7.504, abs=0.01)


def test_seconds_lost_on_the_way_are_left_out_of_the_w_kg_means_not_counted_as_0_w():
    board = ride(weights=(60.0,))  # the six minutes at 8 W/kg above, with 20 s of samples that never arrive
    power = np.concatenate((np.full(600, 240.0), np.full(360, 480.0), np.full(300, 240.0)))
    stream = athlete(0, np.full(1260, 11.0), power=power, hr=honest_hr(1260, 160))
    feed(board, np.delete(stream, np.s_[700:720]), seconds=5)
    flag = rules(board)["wkg_5min"]
    # over the 280 s that arrived, (240·(300-k) + 480·(k-20))/280/60 > 7.5 first at k = 266 s into the
    # effort (k = 303 with the lost seconds at 0 W)
    assert flag["t"] == T0 + 600 + 266 - 1 and flag["evidence"]["seconds_lost"] == 20


def test_a_rider_just_under_the_cap_whose_samples_are_lost_is_not_flagged():
    board = ride(2, weights=(60.0, 60.0))
    power = np.concatenate((np.full(300, 200.0), np.full(330, 7.3 * 60), np.full(600, 5.9 * 60)))
    streams = [athlete(i, np.full(1230, 11.0), power=power, hr=honest_hr(1230, 160, i)) for i in (0, 1)]
    streams[0] = np.delete(streams[0], np.s_[400:425])  # within a tenth of the window: left out
    streams[1] = np.delete(streams[1], np.s_[400:520])  # beyond it: the rest counts 0 W
    feed(board, in_time_order(*streams), seconds=5)
    assert board.flags() == []


def test_women_are_held_to_their_own_caps_and_riders_above_6_wkg_for_five_minutes_are_not():
    board = ride(2, weights=(60.0, 60.0), sexes=[1, 2])
    power = np.concatenate((np.full(300, 200.0), np.full(300, 6.9 * 60), np.full(100, 200.0)))
    stream = in_time_order(*(athlete(i, np.full(700, 11.0), power=power, hr=honest_hr(700, 155, i)) for i in (0, 1)))
    feed(board, stream, seconds=10)
    assert rules(board, 0) == {} and set(rules(board, 1)) == {"wkg_5min"}


def test_distance_that_grows_faster_than_the_gps_track_is_flagged():
    board = race(1, target_m=42195)
    stream = athlete(0, 3.5 + RNG.normal(0, 0.2, 600), jitter_m=4)
    stream["distance"][300:] += np.cumsum(np.full(300, 3.5 * 0.25))  # 25 % more from 300 s on
    feed(board, stream, seconds=5)
    flag = rules(board)["distance"]
    assert flag["evidence"]["source"] == "gps" and T0 + 400 <= flag["t"] <= T0 + 480


def test_gps_that_wanders_and_jumps_for_a_few_seconds_and_a_tunnel_are_not_flagged():
    rng = np.random.default_rng(3)
    board = race(1, target_m=42195)
    stream = athlete(0, 5.8 + rng.normal(0, 0.3, 1200), hr=honest_hr(1200, 170))
    wander = np.cumsum(rng.normal(0, 0.8, (2, 1200)), axis=1).clip(-8, 8)
    stream["lat"] += wander[0] / M_PER_DEG
    stream["lon"] += wander[1] / M_PER_DEG
    for start in (200, 500, 800):  # multipath: 60 m off for 4 s, then back
        stream["lat"][start : start + 4] += 60 / M_PER_DEG
    stream["lat"][900:960] = np.nan  # a tunnel
    stream["lon"][900:960] = np.nan
    feed(board, stream, seconds=3)
    assert board.flags() == []


def test_a_slow_device_clock_is_flagged_and_a_late_batch_is_not():
    board = race(2, target_m=42195)
    honest = athlete(0, np.full(300, 3.5))
    slow = athlete(1, np.full(300, 3.5))
    received = {0: T0 + np.arange(300) + 0.3, 1: T0 + np.arange(300) + 0.3}
    received[1][100:] = T0 + 100 + np.arange(200) * 1.5 + 0.3  # stamped 1 s apart, sent 1.5 s apart
    slow["t"][100:] = T0 + 100 + np.arange(200)
    received[0][150:180] = T0 + 180.3  # a late batch after a 30 s dropout
    samples = np.concatenate((honest, slow))
    arrival = np.concatenate((received[0], received[1]))
    for at in np.unique(np.ceil(arrival)):
        board.ingest(samples[np.ceil(arrival) == at], now=float(at))
    assert rules(board, 0) == {}
    flag = rules(board, 1)["clock_drift"]
    assert flag["evidence"]["behind_s"] > 4 and flag["at"] <= T0 + 100 + 1.5 * 20


def deliver(board: RaceBoard, stream: np.ndarray, received: np.ndarray) -> None:
    """Each second's arrivals as one batch, received at the end of that second."""
    arrival = np.ceil(received)
    for at in np.unique(arrival):
        board.ingest(stream[arrival == at], now=float(at))


def test_a_slow_clock_that_fell_behind_during_a_dropout_is_flagged_once_its_backlog_is_in():
    """The onset hides in a 40 s dropout; the backlog arrives at once as the device comes back. An
    honest device's earlier dropout, whose backlog came over two batches, leaves no jitter behind."""
    board = race(1, target_m=42195)
    slow = athlete(0, np.full(300, 3.5))
    received = T0 + np.arange(300) + 0.3
    received[50:80] = T0 + 80.3  # an honest dropout: its backlog in two batches, the live stream after
    received[50:70] = T0 + 79.3
    real = 100 + np.arange(200) * 1.6  # from seq 100 stamped 1 s apart, sent 1.6 s apart
    received[100:] = T0 + real + 0.3
    received[100:125] = T0 + 140.3  # silent from 100 to 140 s
    deliver(board, slow, received)
    flag = rules(board)["clock_drift"]
    assert T0 + 140 < flag["at"] <= T0 + 140 + 5 + 3


def test_the_last_samples_of_a_device_that_stopped_arriving_late_are_not_a_slow_clock():
    board = race(1, target_m=42195)
    stream = athlete(0, np.full(300, 3.5))
    received = T0 + np.arange(300) + 0.3
    rng = np.random.default_rng(5)
    received[260:] = T0 + 300 + rng.uniform(3, 20, 40)  # its last 40 s trickle in, in any order
    deliver(board, stream, received)
    assert board.flags() == []


def test_a_loop_is_followed_across_a_dropout_whose_backlog_arrives_after_the_live_samples():
    """A 30 s loop from 200 s; a 39 s dropout from 212 s whose backlog comes after 24 live samples,
    each of which has its seq a loop back still missing: the 12 readings matched before the dropout
    still count, and the loop is caught within seconds of the backlog."""
    board = race(1, target_m=42195)
    hr = honest_hr(400, seed=3)
    for i in range(200, 400):
        hr[i] = hr[i - 30]
    stream = athlete(0, 3.5 + RNG.normal(0, 0.2, 400), hr=hr)
    received = T0 + np.arange(400) + 0.3
    received[211:250] = T0 + 275.3
    deliver(board, stream, received)
    flag = rules(board)["hr_replay"]
    assert flag["evidence"]["source"] == "loop" and flag["evidence"]["loop_s"] == 30
    assert flag["at"] <= T0 + 282  # the count did not start again at the dropout (it would at ~290 s)


def test_late_readings_of_a_frozen_heart_count_toward_the_frozen_run():
    board = race(1, target_m=42195)
    hr = honest_hr(300)
    hr[150:] = hr[149]
    stream = athlete(0, 3.5 + RNG.normal(0, 0.2, 300), hr=hr)
    received = T0 + np.arange(300) + 0.3
    received[152:180] = T0 + 195.3  # the frozen stretch's first 28 s arrive after the live samples
    deliver(board, stream, received)
    flag = rules(board)["hr_replay"]
    assert flag["evidence"]["source"] == "frozen" and flag["at"] <= T0 + 196


def test_a_chord_across_a_corner_after_a_dropout_is_not_inflation():
    """An honest rider at 12 m/s turns 110 degrees inside a 28 s dropout: the straight chord across
    the corner reads 200 m of the 348 m ridden, which alone would be 140 m of excess; it is not
    counted."""
    board = ride()
    speeds = np.full(400, 12.0)
    stream = athlete(0, speeds, power=300, hr=honest_hr(400, 160))
    travelled = np.concatenate(([0.0], np.cumsum(speeds[:-1])))
    corner = travelled[214]
    after = np.clip(travelled - corner, 0, None)
    north = np.minimum(travelled, corner) + after * np.cos(np.radians(110))
    east = after * np.sin(np.radians(110))
    lat0 = stream["lat"][0]
    stream["lat"] = lat0 + north / M_PER_DEG
    stream["lon"] = stream["lon"][0] + east / (M_PER_DEG * np.cos(np.radians(lat0)))
    received = T0 + np.arange(400) + 0.3
    received[200:228] = T0 + 240.3  # the backlog after the live samples
    deliver(board, stream, received)
    assert "distance" not in rules(board)


def test_a_delay_the_whole_race_shares_is_not_a_slow_clock():
    """A gateway that delivers at half speed for 30 s delays every device alike: the race's median
    says it is the platform; the one device whose own clock runs slow is still caught."""
    field = 40
    board = race(field + 1, target_m=42195)
    streams, received = [], []
    for i in range(field + 1):
        stream = athlete(i, np.full(300, 3.5))
        at = T0 + np.arange(300) + 0.3
        if i == field:  # stamped 1 s apart, sent 1.5 s apart, from t = 200
            at[200:] = T0 + 200 + np.arange(100) * 1.5 + 0.3
        stall = (stream["t"] >= T0 + 150) & (stream["t"] < T0 + 180)
        at[stall] = T0 + 150 + 2 * (stream["t"][stall] - T0 - 150) + 0.3  # delivered at half speed...
        late = (stream["t"] >= T0 + 180) & (at < T0 + 210.3)
        at[late] = T0 + 210.3  # ...and the backlog caught up at once
        streams.append(stream)
        received.append(at)
    samples, arrival = np.concatenate(streams), np.ceil(np.concatenate(received))
    for at in np.unique(arrival):
        board.ingest(samples[arrival == at], now=float(at))
    flagged = {f["participant"]: f for f in board.flags()}
    assert set(flagged) == {field} and flagged[field]["rule"] == "clock_drift"
    assert flagged[field]["evidence"]["platform_s"] < 1


def test_late_samples_are_checked_in_device_order():
    board = race(1, target_m=42195)
    stream = athlete(0, np.full(200, 3.5))
    stream["lat"][120:126] += 2000 / M_PER_DEG  # 2 km away and back, inside the stretch that arrives late
    feed(board, np.concatenate((stream[:100], stream[140:150])))
    assert board.flags() == []
    outcome = board.ingest(stream[100:140], now=T0 + 151)
    assert outcome["late"] == 40
    flag = rules(board)["gps_jump"]
    assert flag["t"] == T0 + 120 and flag["evidence"]["seqs"] == [121, 121] and "late" in flag["evidence"]["source"]


def test_an_organizer_may_tighten_thresholds_within_bounds_only():
    profile = tightened(PROFILES["ride"], {"wkg_5min": 7.0, "max_speed": 25.0})
    assert profile.wkg_5min == pytest.approx((7.0, 6.6 * 7.0 / 7.5)) and profile.max_speed == 25.0
    for bad in ({"wkg_5min": 8.0}, {"max_speed": 5.0}, {"crr": 0.01}, {"hr_floor": "high"}):
        with pytest.raises(ValueError, match="fair_play"):
            tightened(PROFILES["ride"], bad)
    board = ride(fair_play={"wkg_20min": 6.0})
    assert board.profile.wkg_20min[0] == 6.0 and RaceBoard.from_state(board.to_state()).profile.wkg_20min[0] == 6.0


def test_a_snapshot_written_before_fair_play_had_its_own_columns_restores():
    state = unpack((Path(__file__).parent / "data" / "race_board_schema1.msgpack").read_bytes())
    assert state["schema"] == 1
    board = RaceBoard.from_state(state)
    assert board.size == 3 and board.distances([0, 1, 2]).tolist() == [1190.0, 1309.0, 1071.0]
    stream = athlete(0, np.full(60, 10.0), t0=T0 + 120.5, seq0=121, power=250, hr=honest_hr(60))
    stream["distance"] += 1200.0  # where the old board left athlete 0, at 10 m/s
    stream["lat"] += 1200.0 / M_PER_DEG
    feed(board, stream)
    assert board.to_state()["schema"] == 4 and board.flags() == []


def test_a_schema_2_snapshot_taken_mid_replay_restores_its_heart_rate_ring():
    """Written by the board before the ring was kept by seq (tests/data: a runner 6 readings into
    replaying the previous 47 s of heart rate); the loop is caught on the same reading as without
    the restart."""
    hr = honest_hr(400, seed=47)
    for i in range(200, 400):  # element by element: the loop replays itself
        hr[i] = hr[i - 47]
    stream = athlete(0, np.full(400, 3.5), hr=hr)
    state = unpack((Path(__file__).parent / "data" / "race_board_schema2.msgpack").read_bytes())
    assert state["schema"] == 2
    restored = RaceBoard.from_state(state)
    feed(restored, stream[206:])
    straight = race(1, target_m=42195)
    feed(straight, stream)
    flag = rules(restored)["hr_replay"]
    assert flag["evidence"]["loop_s"] == 47 and flag["t"] == T0 + 214
    assert flag["t"] == rules(straight)["hr_replay"]["t"]


def test_hot_state_stays_under_a_kilobyte_per_rider():
    board = RaceBoard(1000, sport="ride", kind="distance", target_m=100_000)
    assert board.memory_bytes() / board.capacity < 1024


@pytest.mark.parametrize("sport", ["run", "ride"])
def test_a_small_field_through_the_race_entity(sport):
    outcome = fairplay.run(sport, athletes=150, minutes=7, cheaters=0.25, seed=11, progress=False)
    honest = outcome.fld.cheat < 0
    wrongly = {f["participant"] for f in outcome.flags if honest[f["participant"]]}
    assert wrongly == set()
    rows = {r["kind"]: r for r in fairplay.score(outcome)}
    caught = sum(r["caught"] for r in rows.values())
    assert caught >= 0.85 * sum(r["cheaters"] for r in rows.values())
    assert all(r["precision"] == 1.0 for r in rows.values())


def test_a_race_takes_tighter_fair_play_settings_and_each_athletes_caps():
    from actors.race import Race
    from engine.errors import Rejected

    race = Race("fair")
    race.create(
        "org", {"name": "Hill", "sport": "ride", "kind": "time", "duration_s": 3600, "fair_play": {"wkg_5min": 7.0}}
    )
    assert race.board.profile.wkg_5min[0] == 7.0
    with pytest.raises(Rejected, match="fair_play"):
        race.configure("org", {"fair_play": {"wkg_5min": 9.0}})
    race.open("org")
    race.join("a", "A", weight_kg=55.0, sex="women")
    with pytest.raises(Rejected, match="sex"):
        race.join("b", "B", sex="other")
    with pytest.raises(Rejected, match="fixed once athletes have joined"):
        race.configure("org", {"fair_play": {"wkg_5min": 7.2}})
    assert race.board._col["sex"][0] == 2
