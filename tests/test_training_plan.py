"""The weekly plan toward a goal race: its rules on worked examples (no Ray), then the routes."""

from __future__ import annotations

import itertools
import math
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.training.load import RAMP_HIGH
from engine.training.plan import Goal, Situation, plan, predicted_seconds, taper_weeks
from engine.training.predictions import predict
from tests.test_api import assert_problem, signup

SUNDAY = date(2026, 3, 1).toordinal()  # "today" in the worked examples: the plan starts on Monday


def _now(**changes) -> Situation:
    base = {"today": SUNDAY, "fitness": 50.0, "fatigue": 50.0, "form": 0.0, "acwr": 1.0, "chronic_week": 350.0,
            "recent_form": [0.0] * 7, "recent_loads": [40.0, 0.0], "threshold_pace_s_per_km": 270.0}  # fmt: skip
    return Situation(**{**base, **changes})


def _goal(weeks: int = 10, **changes) -> Goal:
    base = {"race_day": SUNDAY + 7 * weeks, "distance_m": 42_195.0, "sport": "run", "days_per_week": 5, "long_day": 6}
    return Goal(**{**base, **changes})


def test_the_taper_lasts_one_to_three_weeks_by_distance():
    assert [taper_weeks("run", d) for d in (5_000, 10_000, 21_097.5, 42_195)] == [1, 1, 2, 3]
    assert [taper_weeks("ride", d) for d in (40_000, 120_000, 200_000)] == [1, 2, 3]


def test_a_ten_week_marathon_plan_base_build_peak_taper_with_a_recovery_week_every_fourth():
    weeks = plan(_goal(), _now())["weeks"]
    assert [w["phase"] for w in weeks] == ["base"] * 2 + ["build"] * 3 + ["peak"] * 2 + ["taper"] * 3
    assert [w["kind"] for w in weeks][:5] == ["base", "base", "build", "recovery", "build"]
    loads = [w["load"] for w in weeks]
    # 350 (the last 4 weeks' average week), +8 % a normal week, the recovery week 65 % of the last one.
    assert loads[:4] == pytest.approx([350, 378, 408.2, 265.4], abs=0.1)
    assert loads[4] == pytest.approx(408.24 * 1.08, abs=0.1)
    peak = loads[6]
    assert loads[7:] == pytest.approx([0.8 * peak, 0.65 * peak, 0.5 * peak], abs=0.1)  # Mujika & Padilla
    assert weeks[3]["why"] == "a recovery week after 3 weeks of building"
    assert "taper week 2 of 3" in weeks[8]["why"]
    assert weeks[0]["from"] == "2026-03-02" and weeks[-1]["from"] == "2026-05-04"


def test_the_week_holds_its_load_long_day_quality_and_rest_days():
    days = plan(_goal(), _now())["days"]
    assert [d["weekday"] for d in days][0] == "Monday" and len(days) == 7
    assert [d["type"] for d in days] == ["easy", "rest", "tempo", "easy", "rest", "easy", "long"]
    assert sum(d["load"] for d in days) == pytest.approx(350, abs=1.5)
    assert days[-1]["why"] == "the long run on Sundays: 30% of the week's load"
    assert days[1]["why"] == "a rest day: you train 5 days a week"


def test_paces_come_from_the_threshold_pace_and_power_from_the_ftp():
    days = plan(_goal(), _now())["days"]
    easy, tempo = days[0], days[2]
    assert easy["target"]["pace_s_per_km"] == [324, 356]  # Daniels' easy: 120-132 % of 4:30/km
    assert easy["target"]["text"] == "5:24/km to 5:56/km"
    assert tempo["target"]["pace_s_per_km"] == [267, 278]
    ride = plan(_goal(sport="ride", distance_m=100_000), _now(ftp_w=250.0, threshold_pace_s_per_km=None))["days"]
    (tempo,) = [d for d in ride if d["type"] == "tempo"]
    assert tempo["target"]["power_w"] == [220, 235]  # 88-94 % of 250 W
    words = plan(_goal(), _now(threshold_pace_s_per_km=None))["days"]
    assert words[0]["target"] == {"text": "easy, you can talk"}


def test_weekly_load_never_rises_faster_than_the_ramp_limit():
    weeks = plan(_goal(weeks=20), _now(fitness=20.0, fatigue=20.0, chronic_week=900.0))["weeks"]
    ceiling = 7 * (20.0 + RAMP_HIGH / (1 - math.exp(-7 / 42)))
    assert weeks[0]["load"] == pytest.approx(ceiling, abs=0.1)
    assert f"no more than {RAMP_HIGH:.0f} a week" in weeks[0]["why"]


def test_form_below_minus_twenty_for_five_days_makes_a_recovery_week():
    now = _now(form=-26.0, fatigue=76.0, recent_form=[-5.0, -10.0, -21.0, -22.0, -24.0, -25.0, -26.0])
    first = plan(_goal(), now)["weeks"][0]
    assert first["kind"] == "recovery" and first["load"] == pytest.approx(350 * 0.65)
    assert first["why"] == "a recovery week: your form has been below -20 for 5 days"
    four = _now(recent_form=[-5.0, -10.0, -10.0, -22.0, -24.0, -25.0, -26.0])
    assert plan(_goal(), four)["weeks"][0]["kind"] == "base"


def test_while_form_is_below_minus_twenty_the_hard_days_are_easy():
    now = _now(fitness=40.0, fatigue=75.0, form=-35.0, recent_form=[-30.0] * 3)
    days = plan(_goal(), now)["days"]
    tempo_day = days[2]  # Wednesday's tempo: form still below -20 after two days
    assert tempo_day["type"] == "easy" and tempo_day["why"].startswith("easy instead of tempo: your form would be -")
    assert all(d["type"] not in ("tempo", "intervals", "long") or d["form"] > -25 for d in days)


def test_an_acwr_above_one_point_three_caps_the_week():
    capped = plan(_goal(), _now(acwr=1.45, chronic_week=300.0))["weeks"][0]
    assert capped["load"] == 300.0
    assert "capped at your 4-week average week: your load ratio (ACWR) is 1.45, above 1.3" in capped["why"]
    weeks = plan(_goal(weeks=12), _now(acwr=1.45))["weeks"]
    assert [w["kind"] for w in weeks[:3]] == ["base", "base", "recovery"]  # every 3rd week while stressed


@pytest.mark.parametrize("days_per_week, long_day", list(itertools.product(range(3, 8), range(7))))
def test_never_three_hard_days_in_a_row_counting_the_last_two(days_per_week, long_day):
    for weeks in (1, 6, 12):
        for recent in ([0.0, 0.0], [150.0, 150.0]):
            days = plan(_goal(weeks=weeks, days_per_week=days_per_week, long_day=long_day),
                        _now(recent_loads=recent))["days"]  # fmt: skip
            hard = [load > 75 for load in recent] + [d["type"] in ("long", "tempo", "intervals", "race") for d in days]
            assert not any(all(hard[i : i + 3]) for i in range(len(hard) - 2)), (days_per_week, long_day, days)
    assert sum(d["type"] != "rest" for d in days) <= days_per_week


def test_a_race_this_week_is_raced_at_the_target_pace_with_fresh_legs_before_it():
    goal = _goal(race_day=SUNDAY + 6, distance_m=10_000.0, target_s=2_700.0, days_per_week=7)
    answer = plan(goal, _now(predicted_s=2_820.0))
    days = {d["weekday"]: d for d in answer["days"]}
    race = days["Saturday"]
    assert race["type"] == "race" and race["target"]["pace_s_per_km"] == 270
    assert race["why"] == "race day: 10 km; your target 0:45:00; 4% faster than your predicted 0:47:00"
    assert days["Friday"]["type"] == "easy" and days["Friday"]["load"] <= 25
    assert days["Thursday"]["type"] == "rest" and days["Sunday"]["type"] == "rest"
    assert answer["race"]["taper_weeks"] == 1 and [w["phase"] for w in answer["weeks"]] == ["taper"]


def test_the_predicted_time_carries_the_nearest_race_with_the_fitted_exponent():
    predicted = predict({"5k": 1_200.0, "10k": 2_500.0})
    k = predicted["exponent"]
    assert predicted_seconds(predicted, 15_000) == pytest.approx(2_500 * 1.5**k)
    assert predicted_seconds({"races": []}, 15_000) is None


@pytest.mark.parametrize(
    "changes, words",
    [({"sport": "swim"}, "sport"), ({"days_per_week": 2}, "3 to 7"), ({"long_day": 7}, "long day"),
     ({"distance_m": math.nan}, "distance"), ({"target_s": -1.0}, "target")],
)  # fmt: skip
def test_a_goal_out_of_its_rules_is_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        _goal(**changes)


def test_a_race_in_the_past_or_past_a_year_has_no_plan():
    for day in (SUNDAY, SUNDAY - 3, SUNDAY + 7 * 53):
        with pytest.raises(ValueError):
            plan(_goal(race_day=day), _now())


# -- the routes --------------------------------------------------------------------------------------------

DAY = 86_400
GOAL = {"race_date": (date.today() + timedelta(days=45)).isoformat(), "distance_m": 21_097.5, "sport": "run",
        "target_s": 5_400, "days_per_week": 4, "long_day": 6}  # fmt: skip


async def _run(client, headers, days_ago: int, minutes: float, km: float) -> None:
    start = datetime.fromtimestamp((int(time.time()) // DAY - days_ago) * DAY + 7 * 3600, UTC).isoformat()
    body = {"sport": "run", "start": start, "duration_s": minutes * 60, "distance_m": km * 1000}
    assert (await client.post("/workouts", json=body, headers=headers)).status_code == 201


@pytest.mark.ray
async def test_a_goal_gives_a_plan_and_tomorrows_workout_and_can_be_removed(client):
    _, headers = await signup(client, "Goal")
    for path in ("/me/training/plan", "/me/training/next"):
        assert_problem(await client.get(path, headers=headers), 404, "no goal race")
    for days_ago in range(28, 0, -2):
        await _run(client, headers, days_ago, 45, 9)
    assert await client.arena.drain()
    put = await client.put("/me/training/goal", json=GOAL, headers=headers)
    assert put.status_code == 200 and put.json()["race_day"] == GOAL["race_date"], put.text
    answer = (await client.get("/me/training/plan", headers=headers)).json()
    assert len(answer["days"]) == 7 and answer["days"][0]["day"] == (date.today() + timedelta(1)).isoformat()
    assert answer["race"]["taper_weeks"] == 2 and answer["race"]["pace_s_per_km"] == round(5_400 / 21.0975)
    assert [w["phase"] for w in answer["weeks"]][-2:] == ["taper", "taper"] and len(answer["weeks"]) == 7
    assert answer["weeks"][0]["load"] == pytest.approx(sum(d["load"] for d in answer["days"]), abs=2)
    assert all(d["why"] for d in answer["days"]) and all(w["why"] for w in answer["weeks"])
    assert answer["goal"]["distance_m"] == 21_097.5 and answer["today"]["fitness"] > 0
    tomorrow = (await client.get("/me/training/next", headers=headers)).json()
    assert tomorrow["workout"] == answer["days"][0] and tomorrow["week"] == answer["weeks"][0]
    assert (await client.delete("/me/training/goal", headers=headers)).status_code == 204
    assert_problem(await client.get("/me/training/next", headers=headers), 404)


@pytest.mark.ray
async def test_the_plan_routes_answer_401_without_a_token(client):
    for method, path in (("PUT", "/me/training/goal"), ("DELETE", "/me/training/goal"),
                         ("GET", "/me/training/plan"), ("GET", "/me/training/next")):  # fmt: skip
        assert_problem(await client.request(method, path, json=GOAL), 401)


@pytest.mark.ray
async def test_malformed_and_hostile_goals_get_422_and_keep_the_goal(client):
    _, headers = await signup(client, "Bad")
    assert (await client.put("/me/training/goal", json=GOAL, headers=headers)).status_code == 200
    today = date.today()
    bad = [
        {**GOAL, "race_date": (today - timedelta(days=3)).isoformat()},
        {**GOAL, "race_date": (today + timedelta(days=400)).isoformat()},
        {**GOAL, "race_date": "2026-02-30"},
        {**GOAL, "distance_m": 0}, {**GOAL, "distance_m": 300_000}, {**GOAL, "distance_m": "1e999"},
        {**GOAL, "sport": "swim"}, {**GOAL, "days_per_week": 9}, {**GOAL, "long_day": -1},
        {**GOAL, "target_s": 10**12}, {**GOAL, "admin": True}, {**GOAL, "sport": {"$ne": None}},
        {k: v for k, v in GOAL.items() if k != "race_date"}, [GOAL], "x" * 10_000,
    ]  # fmt: skip
    for body in bad:
        assert_problem(await client.put("/me/training/goal", json=body, headers=headers), 422)
    answer = (await client.get("/me/training/plan", headers=headers)).json()
    assert answer["goal"]["race_day"] == GOAL["race_date"] and answer["goal"]["target_s"] == 5_400
