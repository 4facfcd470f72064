"""Training analytics over workout summaries: totals, personal records, streaks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.training.analytics import WorkoutFacts, personal_records, streaks, totals


def at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


def workout(id: str, day: date, *, sport: str = "run", hour: int = 12, km: float = 10, efforts=None) -> WorkoutFacts:
    return WorkoutFacts(
        id=id,
        sport=sport,
        start=at(day, hour),
        distance_m=km * 1000,
        moving_s=km * 300,
        elevation_gain_m=km * 5,
        best_efforts=efforts or {},
    )


def test_iso_weeks_cross_the_year_boundary_as_the_calendar_says():
    # 2026 starts on a Thursday, so it has 53 ISO weeks: 1–3 January 2027 still
    # belong to 2026-W53, and 29 December 2025 already belongs to 2026-W01.
    rows = totals(
        [
            workout("a", date(2025, 12, 29)),
            workout("b", date(2026, 12, 31)),
            workout("c", date(2027, 1, 1)),
            workout("d", date(2027, 1, 4)),
        ],
        "week",
    )
    assert [(r["period"], r["count"]) for r in rows] == [("2027-W01", 1), ("2026-W53", 2), ("2026-W01", 1)]
    assert rows[1] == {
        "period": "2026-W53",
        "sport": "run",
        "count": 2,
        "distance_m": 20_000.0,
        "moving_s": 6_000.0,
        "elevation_gain_m": 100.0,
    }


def test_month_totals_are_per_sport_newest_first():
    rows = totals(
        [
            workout("a", date(2026, 11, 3), km=5),
            workout("b", date(2026, 11, 20), sport="ride", km=40),
            workout("c", date(2026, 11, 28), km=12),
            workout("d", date(2026, 12, 1), km=8),
        ],
        "month",
    )
    assert [(r["period"], r["sport"], r["count"], r["distance_m"]) for r in rows] == [
        ("2026-12", "run", 1, 8_000.0),
        ("2026-11", "ride", 1, 40_000.0),
        ("2026-11", "run", 2, 17_000.0),
    ]


def test_a_timezone_offset_moves_a_late_workout_to_the_previous_local_day():
    # 03:00 UTC on Tuesday 1 December is 22:00 on Monday 30 November in UTC-5.
    late = [workout("a", date(2026, 12, 1), hour=3)]
    assert totals(late, "month")[0]["period"] == "2026-12"
    assert totals(late, "month", tz_offset_minutes=-300)[0]["period"] == "2026-11"
    # 22:00 UTC on Sunday 1 November is already Monday in UTC+3: the next ISO week.
    sunday = [workout("b", date(2026, 11, 1), hour=22)]
    assert totals(sunday, "week")[0]["period"] == "2026-W44"
    assert totals(sunday, "week", tz_offset_minutes=180)[0]["period"] == "2026-W45"
    assert personal_records(late, tz_offset_minutes=-300)["run"]["longest"]["date"] == "2026-11-30"


def test_personal_records_pick_the_fastest_effort_and_the_longest_workout_per_sport():
    records = personal_records(
        [
            workout("a", date(2026, 3, 1), km=10, efforts={"5k": 1500.0, "10k": 3100.0}),
            workout("b", date(2026, 3, 8), km=21.1, efforts={"5k": 1420.0, "10k": 3050.0}),
            workout("c", date(2026, 3, 15), km=5, efforts={"5k": 1460.0, "1k": 250.0}),
            workout("d", date(2026, 3, 22), km=5, efforts={"5k": 1420.0}),  # a tie: b was first
            workout("e", date(2026, 3, 2), sport="ride", km=80, efforts={"20k": 1900.0}),
        ]
    )
    assert records["run"]["efforts"] == {
        "5k": {"seconds": 1420.0, "workout_id": "b", "date": "2026-03-08"},
        "10k": {"seconds": 3050.0, "workout_id": "b", "date": "2026-03-08"},
        "1k": {"seconds": 250.0, "workout_id": "c", "date": "2026-03-15"},
    }
    assert records["run"]["longest"] == {"distance_m": 21_100.0, "workout_id": "b", "date": "2026-03-08"}
    assert records["ride"]["efforts"]["20k"]["workout_id"] == "e"
    assert records["ride"]["longest"]["distance_m"] == 80_000.0


def test_a_gap_breaks_the_daily_streak_and_the_longest_one_is_remembered():
    today = date(2026, 11, 25)  # a Wednesday
    days = [today - timedelta(days=n) for n in (0, 1, 2, 5, 6, 7, 8, 9)]
    days.append(today - timedelta(days=1))  # two workouts on one day count once
    result = streaks([workout(str(i), d) for i, d in enumerate(days)], today)
    assert result == {"current_days": 3, "longest_days": 5, "current_weeks": 2, "longest_weeks": 2}


def test_the_current_streak_survives_until_a_whole_day_is_missed():
    today = date(2026, 11, 25)
    up_to_yesterday = [workout(str(n), today - timedelta(days=n)) for n in (1, 2, 3)]
    assert streaks(up_to_yesterday, today)["current_days"] == 3
    assert streaks(up_to_yesterday, today + timedelta(days=1))["current_days"] == 0
    assert streaks(up_to_yesterday, today + timedelta(days=1))["longest_days"] == 3


def test_weekly_streaks_count_consecutive_iso_weeks_across_the_new_year():
    today = date(2027, 1, 13)  # 2027-W02, with no workout yet this week
    weeks = [date(2026, 12, 14), date(2026, 12, 23), date(2026, 12, 31), date(2027, 1, 5)]  # W51, W52, W53, 2027-W01
    weeks.append(date(2026, 11, 30))  # W49, then W50 is missed
    result = streaks([workout(str(i), d) for i, d in enumerate(weeks)], today)
    assert (result["current_weeks"], result["longest_weeks"]) == (4, 4)
    assert streaks([workout("x", date(2026, 12, 31))], today)["current_weeks"] == 0


def test_the_timezone_offset_decides_which_day_extends_a_streak():
    today = date(2026, 11, 25)
    # 02:00 UTC on the 24th is the evening of the 23rd in UTC-4: a day is missed.
    runs = [workout("a", today), workout("b", date(2026, 11, 24), hour=2)]
    assert streaks(runs, today)["current_days"] == 2
    assert streaks(runs, today, tz_offset_minutes=-240)["current_days"] == 1


def test_empty_input_gives_empty_answers():
    assert totals([], "week") == []
    assert totals(iter(()), "month") == []
    assert personal_records([]) == {}
    assert streaks([], date(2026, 11, 25)) == {
        "current_days": 0,
        "longest_days": 0,
        "current_weeks": 0,
        "longest_weeks": 0,
    }


def test_summaries_may_come_as_mappings_with_extra_fields():
    summary = {
        "id": "w1",
        "sport": "swim",
        "start": at(date(2026, 6, 1)),
        "distance_m": 1500,
        "moving_s": 1800,
        "user_id": "ana",
        "title": "Morning swim",
    }
    assert totals([summary], "month")[0]["elevation_gain_m"] == 0.0
    assert personal_records([summary])["swim"]["longest"]["workout_id"] == "w1"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"distance_m": -1}, "out of range"),
        ({"moving_s": float("nan")}, "finite number"),
        ({"start": 1e300}, "out of range"),
        ({"start": "yesterday"}, "finite number"),
        ({"sport": ""}, "non-empty string"),
        ({"best_efforts": {"5k": 0}}, "positive number of seconds"),
        ({"best_efforts": ["5k"]}, "must map"),
    ],
)
def test_malformed_summaries_are_refused_with_a_clear_error(change, message):
    summary = {"id": "w1", "sport": "run", "start": 0, "distance_m": 1, "moving_s": 1, **change}
    with pytest.raises(ValueError, match=message):
        totals([summary], "week")


def test_a_missing_field_or_a_bad_argument_is_refused():
    with pytest.raises(ValueError, match="w1"):
        totals([{"id": "w1", "sport": "run"}], "week")
    with pytest.raises(TypeError, match="mapping"):
        totals(["run"], "week")
    with pytest.raises(ValueError, match="period"):
        totals([], "year")
    with pytest.raises(ValueError, match="tz_offset_minutes"):
        totals([], "week", tz_offset_minutes=24 * 60)
    with pytest.raises(TypeError, match="date"):
        streaks([], datetime(2026, 1, 1))
