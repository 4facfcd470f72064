"""The live race board: delivery, scoring of every race kind, fair play, ranking, snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from engine.codec import pack, unpack
from engine.race import RaceBoard
from engine.telemetry import decode, empty, encode

T0 = 1_700_000_000.0
LAT0, LON0 = 45.0, 7.0
M_PER_DEG = 111_195.0


def samples(**columns) -> np.ndarray:
    count = max(np.size(v) for v in columns.values())
    out = empty(count)
    for name, values in columns.items():
        out[name] = values
    return out


def athlete(
    participant: int,
    speeds,
    *,
    t0: float = T0,
    seq0: int = 1,
    power=0,
    hr=0,
    reported: bool = True,
    jitter_m: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """1 Hz samples of one athlete who holds ``speeds[i]`` (m/s) during second i, heading north."""
    speeds = np.asarray(speeds, np.float64)
    count = len(speeds)
    travelled = np.concatenate(([0.0], np.cumsum(speeds[:-1])))
    noise = np.random.default_rng(seed).uniform(-jitter_m, jitter_m, (2, count))
    return samples(
        entry=participant,
        seq=seq0 + np.arange(count),
        t=t0 + np.arange(count),
        distance=travelled,
        lat=LAT0 + (travelled + noise[0]) / M_PER_DEG,
        lon=LON0 + participant * 0.01 + noise[1] / M_PER_DEG,
        speed=speeds if reported else np.nan,
        hr=hr,
        power=power,
    )


def in_time_order(*parts: np.ndarray) -> np.ndarray:
    joined = np.concatenate(parts)
    return joined[np.argsort(joined["t"], kind="stable")]


def feed(board: RaceBoard, stream: np.ndarray, seconds: float = 1.0) -> dict:
    """Deliver a time-ordered stream in batches of ``seconds``, through the wire format."""
    totals: dict[str, int] = {}
    cuts = np.flatnonzero(np.diff(np.floor((stream["t"] - T0) / seconds))) + 1
    for part in np.split(stream, cuts):
        if len(part):
            for key, value in board.ingest(decode(encode(part)), now=float(part["t"].max())).items():
                totals[key] = totals.get(key, 0) + value
    return totals


def race(count: int, *, kind: str = "distance", sport: str = "run", **options) -> RaceBoard:
    board = RaceBoard(count, sport=sport, kind=kind, **options)
    board.add(count)
    board.start("all", T0)
    return board


def result(board: RaceBoard, participant: int) -> dict:
    return next(r for r in board.results() if r["participant"] == participant)


# Race kinds


def test_a_distance_race_is_won_by_the_first_across_the_line_with_interpolated_times():
    board = race(3, target_m=1002)
    feed(board, in_time_order(*(athlete(i, [v] * 400) for i, v in enumerate([4.0, 5.0, 3.0]))), seconds=10)
    assert board.rank().tolist() == [1, 0, 2]
    assert [r["finish_s"] for r in board.results()] == pytest.approx([200.4, 250.5, 334.0])
    assert [r["place"] for r in board.results()] == [1, 2, 3]
    second = board.leaderboard()["entries"][1]
    assert second["participant"] == 0 and second["gap_s"] == pytest.approx(50.1)
    assert second["gap_ahead_s"] == pytest.approx(50.1)


def test_a_time_race_counts_distance_up_to_each_athletes_window_end():
    board = RaceBoard(2, sport="run", kind="time", duration_s=60.5, start_mode="rolling")
    board.add(2)
    board.start("all", T0)
    late_starter = athlete(1, [4.0] * 80, t0=T0 + 30)
    feed(board, in_time_order(athlete(0, [3.0] * 80), late_starter))
    assert board.rank().tolist() == [1, 0]
    assert [r["distance_m"] for r in board.results()] == pytest.approx([242.0, 181.5])
    assert all(r["status"] == "finished" for r in board.results())


def test_a_time_race_in_progress_projects_the_distance_at_the_end():
    board = race(1, kind="time", duration_s=600)
    feed(board, athlete(0, [3.0] * 101))
    entry = board.leaderboard()["entries"][0]
    assert entry["status"] == "racing" and entry["distance_m"] == 300.0
    assert entry["projected_distance_m"] == pytest.approx(1800.0)


def test_a_course_race_records_interpolated_splits_and_finishes_at_the_last_checkpoint():
    board = race(2, kind="course", checkpoints_m=[302, 602, 1002])
    feed(board, in_time_order(athlete(0, [4.0] * 300), athlete(1, [5.0] * 300)), seconds=10)
    winner, second = board.results()
    assert (winner["participant"], second["participant"]) == (1, 0)
    assert winner["splits_s"] == pytest.approx([60.4, 120.4, 200.4])
    assert second["splits_s"] == pytest.approx([75.5, 150.5, 250.5])
    assert second["finish_s"] == pytest.approx(250.5)


def test_a_course_race_ranks_by_the_last_checkpoint_before_the_distance_run():
    board = race(2, kind="course", checkpoints_m=[300, 600, 1000])
    fast_then_slow = [6.0] * 50 + [1.0] * 51
    feed(board, in_time_order(athlete(0, fast_then_slow), athlete(1, [4.0] * 101)))
    # Athlete 1 has run further (400 m to 350 m) but passed 300 m later (75 s to 50 s).
    assert board.rank().tolist() == [0, 1]
    by_distance = race(2, target_m=1000)
    feed(by_distance, in_time_order(athlete(0, fast_then_slow), athlete(1, [4.0] * 101)))
    assert by_distance.rank().tolist() == [1, 0]


def test_a_collective_race_reaches_its_goal_and_ranks_by_contribution():
    board = race(3, kind="collective", target_m=1000)
    feed(board, in_time_order(*(athlete(i, [v] * 150) for i, v in enumerate([2.0, 3.0, 5.0]))))
    totals = board.leaderboard()["totals"]
    assert totals["reached_t"] == T0 + 100
    assert totals["progress"] == 1.0 and totals["distance_m"] == pytest.approx(1490.0)
    assert board.rank().tolist() == [2, 1, 0]


def test_a_rolling_start_times_each_athlete_from_their_own_first_sample():
    board = RaceBoard(3, sport="run", kind="distance", target_m=1002, start_mode="rolling", start_window_s=600)
    board.add(3)
    board.start("all", T0)
    stream = in_time_order(
        athlete(0, [4.0] * 300, t0=T0 + 10),
        athlete(1, [4.0] * 300, t0=T0 + 100),
        athlete(2, [4.0] * 300, t0=T0 + 700),  # after the start closed: never started
    )
    feed(board, stream, seconds=10)
    rows = {r["participant"]: r for r in board.results()}
    assert rows[0]["finish_s"] == pytest.approx(250.5) and rows[1]["finish_s"] == pytest.approx(250.5)
    assert rows[2]["status"] == "dns"
    assert board.rank().tolist()[:2] == [0, 1]  # equal times: the lower index first


# Delivery


def test_duplicates_are_dropped_and_counted():
    board = race(2, target_m=5000)
    stream = in_time_order(athlete(0, [3.0] * 30), athlete(1, [3.5] * 30))
    first = feed(board, stream, seconds=5)
    before = board.to_state()["columns"]["distance"]
    again = feed(board, stream, seconds=7)
    assert first["accepted"] == 60 and again["accepted"] == 0 and again["duplicates"] == 60
    assert board.to_state()["columns"]["distance"] == before


def test_samples_of_one_athlete_in_one_batch_are_taken_in_seq_order():
    in_order, reversed_ = race(1, target_m=100), race(1, target_m=100)
    stream = athlete(0, [4.0] * 40)
    feed(in_order, stream)
    outcome = reversed_.ingest(stream[::-1].copy(), now=T0 + 40)
    assert outcome["accepted"] == 40 and outcome["late"] == 0 and outcome["finished"] == 1
    assert reversed_.results() == in_order.results()


def _shuffled_delivery(stream: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Reorder within 20-second spans, redeliver a tenth of the samples, cut into random batches."""
    spans = np.floor((stream["t"] - T0) / 20)
    mixed = []
    for span in np.unique(spans):
        part = stream[spans == span]
        part = np.concatenate((part, part[rng.random(len(part)) < 0.1]))
        mixed.append(part[rng.permutation(len(part))])
    mixed = np.concatenate(mixed)
    cuts = np.sort(rng.choice(np.arange(1, len(mixed)), size=len(mixed) // 25, replace=False))
    return np.split(mixed, cuts)


@pytest.mark.parametrize("kind", ["distance", "time", "course"])
def test_any_delivery_order_inside_the_window_gives_the_same_board(kind):
    options = {"distance": {"target_m": 1000}, "time": {"duration_s": 180.5}, "course": {}}[kind]
    if kind == "course":
        options["checkpoints_m"] = [250, 500, 1000]
    rng = np.random.default_rng(11)
    speeds = [rng.uniform(3.0, 5.0) + rng.normal(0, 0.3, 320).clip(-1, 1) for _ in range(30)]
    stream = in_time_order(*(athlete(i, v) for i, v in enumerate(speeds)))
    expected = race(30, kind=kind, **options)
    feed(expected, stream)
    for seed in range(5):
        board = race(30, kind=kind, **options)
        late = 0
        for part in _shuffled_delivery(stream, np.random.default_rng(seed)):
            late += board.ingest(part, now=float(part["t"].max()))["late"]
        assert late > 0
        assert board.rank().tolist() == expected.rank().tolist()
        assert board.results() == expected.results()
        assert board.flags() == []


def test_late_samples_are_accepted_but_distance_never_moves_back():
    board = race(1, target_m=5000)
    stream = athlete(0, [3.0] * 20)
    board.ingest(stream[10:], now=T0 + 20)
    outcome = board.ingest(stream[:10], now=T0 + 21)
    assert outcome["late"] == 10 and outcome["accepted"] == 10
    assert result(board, 0)["distance_m"] == 57.0


def test_samples_older_than_the_window_are_dropped_as_too_old():
    board = race(1, target_m=5000)
    stream = athlete(0, [3.0] * 100)
    board.ingest(stream[80:], now=T0 + 100)
    outcome = board.ingest(stream[:80], now=T0 + 100)
    # The window holds the newest seq (100) and the 63 below it.
    assert outcome["too_old"] == 36 and outcome["late"] == 44


def test_samples_from_the_future_are_clamped_to_now_and_counted():
    board = race(1, target_m=5000)
    outcome = board.ingest(samples(entry=0, seq=[1, 2], t=[T0 + 4, T0 + 3600], distance=[1, 2]), now=T0)
    assert outcome["skewed"] == 1 and outcome["accepted"] == 2
    assert board.distances([0]).tolist() == [2.0]


def test_samples_for_unknown_or_withdrawn_athletes_are_counted_and_ignored():
    board = race(2, target_m=5000)
    board.withdraw(1)
    outcome = board.ingest(samples(entry=[0, 1, 7], seq=1, t=T0 + 1, distance=5), now=T0 + 1)
    assert outcome["unknown_participant"] == 2 and outcome["accepted"] == 1
    assert result(board, 1)["status"] == "withdrawn"


def test_samples_before_the_start_neither_score_nor_start_the_athlete():
    board = RaceBoard(1, sport="run", kind="distance", target_m=100)
    board.add(1)
    board.ingest(samples(entry=0, seq=1, t=T0 - 60, distance=50.0), now=T0 - 60)
    assert result(board, 0)["status"] == "dns" and result(board, 0)["distance_m"] == 0.0


def test_the_field_grows_and_late_joiners_inherit_the_mass_start():
    board = RaceBoard(0, sport="run", kind="distance", target_m=1000)
    board.add(3)
    board.start("all", T0)
    joined = board.add(40, categories=np.full(40, 2))
    assert joined == range(3, 43) and board.capacity >= 43
    board.ingest(samples(entry=42, seq=1, t=T0 + 10, distance=30.0), now=T0 + 10)
    assert board.rank()[0] == 42 and board.leaderboard(category=2)["entries"][0]["participant"] == 42


# Fair play


def test_a_runner_at_car_speed_is_flagged_and_provisional():
    board = race(1, target_m=42195)
    feed(board, athlete(0, [3.5] * 60 + [22.0] * 120))
    assert {f["rule"] for f in board.flags()} >= {"speed"}
    speed = next(f for f in board.flags() if f["rule"] == "speed")
    assert speed["evidence"]["speed"] > 12.5 and speed["t"] >= T0 + 60
    assert board.leaderboard()["entries"][0]["status"] == "provisional"


def test_a_teleporting_gps_is_flagged():
    board = race(1, target_m=42195)
    stream = athlete(0, [3.5] * 120)
    stream["lat"][60:] += 0.05
    feed(board, stream)
    assert [(f["rule"], f["t"]) for f in board.flags()] == [("gps_jump", T0 + 60)]
    assert board.flags()[0]["evidence"]["metres"] > 5000


def test_seven_watts_per_kilo_for_twenty_minutes_is_flagged():
    rng = np.random.default_rng(3)
    board = RaceBoard(1, sport="ride", kind="distance", target_m=100_000)
    board.add(1, weights_kg=np.array([70.0]))
    board.start("all", T0)
    power = 490 + rng.normal(0, 20, 1500)
    hr = 160 + np.linspace(0, 10, 1500) + rng.normal(0, 2, 1500)
    feed(board, athlete(0, 11.0 + rng.normal(0, 0.3, 1500), power=power, hr=hr), seconds=30)
    flags = board.flags()
    assert [f["rule"] for f in flags] == ["wkg_20min"]
    # The exact 20-minute mean (seconds before the gun count 0 W) crosses 6.4 W/kg after ~1,097 s
    evidence = flags[0]["evidence"]
    assert T0 + 1090 <= flags[0]["t"] <= T0 + 1105 and evidence["wkg"] > evidence["limit"] == 6.4
    assert evidence["window"] == [flags[0]["t"] + 1 - 1200, flags[0]["t"] + 1] and flags[0]["severity"] == "medium"


def test_a_frozen_heart_rate_at_high_power_is_flagged():
    board = RaceBoard(1, sport="ride", kind="distance", target_m=100_000)
    board.add(1, weights_kg=np.array([75.0]))
    board.start("all", T0)
    feed(board, athlete(0, [11.0] * 120, power=400, hr=80))
    flags = {f["rule"]: f for f in board.flags()}
    assert set(flags) == {"hr_replay", "hr_decoupled"}
    assert flags["hr_replay"]["evidence"]["source"] == "frozen" and flags["hr_replay"]["evidence"]["hr"] == 80
    assert flags["hr_decoupled"]["evidence"]["power_w"] == pytest.approx(400)


def test_a_seq_that_runs_backwards_in_time_is_flagged():
    board = race(1, target_m=42195)
    stream = athlete(0, [3.0] * 100)
    feed(board, np.concatenate((stream[:49], stream[59:])))  # seqs 50-59 never came
    injected = athlete(0, [3.0] * 10, t0=T0 + 100, seq0=50)  # ...until now, timed after seq 100
    outcome = board.ingest(injected, now=T0 + 110)
    assert outcome["late"] == 10 and outcome["flagged"] == 1
    assert board.flags()[0]["rule"] == "seq_regression" and board.flags()[0]["evidence"]["last_seq"] == 100


def test_a_seq_reset_beyond_the_window_is_dropped_and_flagged():
    board = race(1, target_m=42195)
    feed(board, athlete(0, [3.0] * 100))
    outcome = board.ingest(athlete(0, [3.0] * 5, t0=T0 + 100, seq0=1), now=T0 + 105)
    assert outcome["too_old"] == 5 and outcome["accepted"] == 0
    assert [f["rule"] for f in board.flags()] == ["seq_regression"]
    assert result(board, 0)["distance_m"] == 297.0


def test_time_running_backwards_with_increasing_seq_is_flagged():
    board = race(1, target_m=42195)
    feed(board, athlete(0, [3.0] * 100))
    board.ingest(athlete(0, [3.0] * 5, t0=T0 + 30, seq0=101), now=T0 + 101)
    assert [f["rule"] for f in board.flags()] == ["time_regression"]


def test_honest_athletes_with_realistic_noise_are_not_flagged():
    rng = np.random.default_rng(5)
    board = race(1, target_m=42195)
    run = np.concatenate((3.3 + rng.normal(0, 0.3, 1140), np.linspace(3.3, 6.5, 10), [6.5] * 50))
    stream = athlete(0, run, hr=150 + np.linspace(0, 25, 1200) + rng.normal(0, 2, 1200), jitter_m=5)
    stream["speed"] += rng.normal(0, 0.2, 1200).clip(-0.5, 0.5)
    feed(board, stream, seconds=20)
    assert board.flags() == []

    rides = RaceBoard(2, sport="ride", kind="distance", target_m=200_000)
    rides.add(2, weights_kg=np.array([70.0, 72.0]))
    rides.start("all", T0)
    steady = np.concatenate((250 + rng.normal(0, 30, 2400), [900] * 30, 250 + rng.normal(0, 30, 300)))
    hard = 330 + rng.normal(0, 15, 2730)
    drift = 140 + np.linspace(0, 25, 2730)
    feed(
        rides,
        in_time_order(
            athlete(0, 10 + rng.normal(0, 0.5, 2730), power=steady, hr=drift + rng.normal(0, 2, 2730), jitter_m=5),
            athlete(1, 10 + rng.normal(0, 0.5, 2730), power=hard, hr=np.round(drift + 10 + rng.normal(0, 2, 2730))),
        ),
        seconds=60,
    )
    assert rides.flags() == []


def test_a_reviewer_can_clear_a_flag_or_disqualify():
    board = race(3, target_m=42195)
    driver = athlete(0, [3.5] * 60 + [22.0] * 120)
    feed(board, in_time_order(driver[:120], athlete(1, [4.0] * 120), athlete(2, [3.0] * 120)))
    assert board.leaderboard()["entries"][0]["status"] == "provisional"
    board.review(0, accept=True)
    assert board.leaderboard()["entries"][0]["status"] == "racing"
    assert {f["decision"] for f in board.flags(0)} == {"accepted"}
    feed(board, driver[120:])  # an accepted rule does not raise again for this athlete
    assert board.flags(0) and all(f["decision"] == "accepted" for f in board.flags(0))

    board.review(2, accept=False)
    assert [e["participant"] for e in board.leaderboard()["entries"]] == [0, 1]
    assert board.rank()[-1] == 2 and result(board, 2)["status"] == "dsq"


# Ranking and results


def test_the_tie_rule_orders_every_case():
    board = race(8, target_m=1000)
    board.ingest(
        samples(
            entry=[0, 0, 1, 1, 2, 3, 4, 5, 5, 6],
            seq=[1, 2, 1, 2, 1, 1, 1, 1, 2, 1],
            t=T0 + np.array([100, 101, 100, 101, 50, 40, 60, 80, 81, 20]),
            distance=[990, 1010, 990, 1010, 800, 800, 900, 990, 1010, 300],
        ),
        now=T0 + 101,
    )
    board.review(5, accept=False)
    board.withdraw(6)
    # Equal finish: lower index; unfinished: more distance, then earlier at it; DNS; DSQ and withdrawn last.
    assert board.rank().tolist() == [0, 1, 4, 3, 2, 7, 5, 6]
    board.refresh_ranking()
    assert [board.place(i) for i in (0, 1, 7, 6)] == [1, 2, 6, 8]
    assert [e["participant"] for e in board.leaderboard()["entries"]] == [0, 1, 4, 3, 2, 7]


def test_results_report_dns_dnf_and_places_for_finishers_only():
    board = race(3, target_m=500)
    feed(board, in_time_order(athlete(0, [5.0] * 120), athlete(1, [2.0] * 120)))
    board.end(T0 + 120)
    rows = board.results()
    assert [(r["participant"], r["status"], r["place"]) for r in rows] == [
        (0, "finished", 1),
        (1, "dnf", None),
        (2, "dns", None),
    ]
    assert rows[1]["distance_m"] == 238.0 and rows[1]["finish_s"] is None


def test_rank_of_inverts_the_ranking_and_the_leaderboard_shows_the_gap_to_the_athlete_ahead():
    board = race(50, target_m=100_000)
    feed(board, in_time_order(*(athlete(i, [2.0 + i * 0.05] * 30) for i in range(50))))
    order = board.refresh_ranking()
    assert (board.rank_of[order] == np.arange(50)).all()
    near = board.leaderboard()["entries"][22:27]
    assert [e["participant"] for e in near] == [27, 26, 25, 24, 23]
    assert [e["rank"] for e in near] == [23, 24, 25, 26, 27]
    assert near[2]["gap_ahead_m"] == pytest.approx(29 * 0.05, abs=1e-3)


def test_views_hold_only_plain_values():
    board = race(3, kind="course", checkpoints_m=[100, 200])
    feed(board, in_time_order(athlete(0, [4.0] * 60), athlete(1, [3.0] * 60)))

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (str, int, float, bool)

    assert plain(board.leaderboard()) and plain(board.results())


# Snapshots


def test_a_snapshot_mid_race_restores_the_exact_board():
    board = RaceBoard(5, sport="ride", kind="course", checkpoints_m=[1000, 3000], start_mode="rolling")
    board.add(4, categories=np.array([1, 1, 2, 2]), weights_kg=np.array([60.0, 70.0, 80.0, 50.0]))
    board.start("all", T0)
    stream = in_time_order(*(athlete(i, [9.0 + i] * 400, power=250 + 10 * i, hr=140 + i) for i in range(4)))
    feed(board, stream[: len(stream) // 2], seconds=10)
    feed(board, athlete(3, [12.0] * 5 + [40.0] * 5, t0=T0 + 200, seq0=201))
    state = board.to_state()
    restored = RaceBoard.from_state(unpack(pack(state)))
    assert restored.to_state() == state
    feed(board, stream[len(stream) // 2 :], seconds=10)
    feed(restored, stream[len(stream) // 2 :], seconds=10)
    assert restored.to_state() == board.to_state()
    assert restored.leaderboard() == board.leaderboard() and restored.results() == board.results()


def test_a_snapshot_of_another_shape_is_refused():
    state = race(2, target_m=1000).to_state()
    state["columns"]["distance"]["shape"] = [3]
    with pytest.raises(ValueError, match="column distance"):
        RaceBoard.from_state(state)
    with pytest.raises(ValueError, match="schema 1"):
        RaceBoard.from_state({"schema": 9})


# Arguments


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "distance"}, "positive target_m"),
        ({"kind": "time"}, "positive duration_s"),
        ({"kind": "course", "checkpoints_m": [500, 400]}, "strictly increasing"),
        ({"kind": "relay", "target_m": 1}, "unknown race kind"),
        ({"kind": "distance", "target_m": 1, "sport": "chess"}, "unknown sport"),
        ({"kind": "distance", "target_m": 1, "start_mode": "staggered"}, "start_mode"),
    ],
)
def test_a_race_that_makes_no_sense_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        RaceBoard(10, **({"sport": "run"} | options))


def test_ingest_takes_telemetry_records_only():
    board = race(1, target_m=1000)
    with pytest.raises(TypeError, match="SAMPLE_DTYPE"):
        board.ingest(np.zeros(3), now=T0)
