"""My training through the API on a running Arena: every route with its numbers, 401 without a
token, 422 for malformed and hostile parameters, a warning in the inbox, peers from the lake."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from actors.subscription import Subscription
from engine.training import load
from tests.test_api import assert_problem, signup

pytestmark = pytest.mark.ray

DAY = 86_400
ROUTES = [
    ("GET", "/me/training"),
    ("GET", "/me/training/days"),
    ("PUT", "/me/training/thresholds"),
    ("GET", "/me/training/forecast"),
    ("GET", "/me/training/predictions"),
    ("GET", "/me/reports/year-over-year"),
    ("GET", "/me/reports/professionals"),
    ("GET", "/me/reports/peers"),
    ("GET", "/me/training/wellness"),
    ("PUT", "/me/training/wellness/2026-01-01"),
]


def _day(days_ago: int, hour: int = 7, zone: str = "UTC") -> str:
    """``hour`` o'clock ``days_ago`` days before today, both in the athlete's ``zone``: the day a
    training figure counts a workout on (between 23:00 and 24:00 UTC, Paris is already tomorrow)."""
    today = datetime.now(ZoneInfo(zone)).date() - timedelta(days=days_ago)
    return datetime.combine(today, datetime.min.time(), ZoneInfo(zone)).replace(hour=hour).isoformat()


async def _run(client, headers, days_ago: int, minutes: float, km: float, zone: str = "UTC", **more) -> None:
    body = {
        "sport": "run", "start": _day(days_ago, zone=zone), "duration_s": minutes * 60, "distance_m": km * 1000, **more,
    }  # fmt: skip
    answer = await client.post("/workouts", json=body, headers=headers)
    assert answer.status_code == 201, answer.text


async def _subscribe(client, user_id: str) -> None:
    """The reports are premium (serve/entitlements.py): as a billing webhook would, the plan is paid."""
    await client.arena.ref(Subscription, user_id).ask(
        Subscription.apply, event_id=f"evt-{user_id}", type="subscription.renewed", created=int(time.time()),
        sequence=0, plan="premium", period_end=time.time() + 30 * DAY, grace_s=7 * DAY,
    )  # fmt: skip


async def test_every_training_route_answers_401_without_a_token(client):
    for method, path in ROUTES:
        assert_problem(await client.request(method, path, json={}), 401)


async def test_my_training_its_chart_thresholds_forecast_predictions_and_reports(client):
    ana, headers = await signup(client, "Ana")
    await _subscribe(client, ana)
    await client.patch("/me", json={"profile": {"time_zone": "Europe/Paris", "region": "Bretagne"}}, headers=headers)
    for days_ago in range(20, 0, -2):
        await _run(client, headers, days_ago, 50, 10, zone="Europe/Paris")
    await _run(client, headers, 365 + 3, 60, 12, zone="Europe/Paris")  # a year ago
    assert await client.arena.drain()

    mine = (await client.get("/me/training", headers=headers)).json()
    assert mine["time_zone"] == "Europe/Paris" and mine["workouts"] == 11
    assert mine["fitness"] > 0 and mine["fatigue"] > 0
    assert mine["acwr"] == pytest.approx(1.2)  # 3 workouts in the last 7 days / (10 in 28 days / 4)
    assert set(mine["thresholds"]) == {"ftp_w", "threshold_hr", "max_hr", "rest_hr", "threshold_pace_s_per_km"}
    assert mine["warnings"] == [] and mine["monotony"] is not None

    chart = (await client.get("/me/training/days", params={"from": (date.today() - timedelta(29)).isoformat(),
                                                           "to": date.today().isoformat()}, headers=headers)).json()  # fmt: skip
    assert len(chart["items"]) == 30 and sum(d["load"] > 0 for d in chart["items"]) == 10
    assert sum(d["load"] for d in chart["items"]) == pytest.approx(10 * load.srpe_load(3000, 6))
    assert len((await client.get("/me/training/days", headers=headers)).json()["items"]) == 90

    # A threshold pace of 4:30 /km: each 10 km in 50 min is 67.5 (rTSS), measured again at once.
    put = await client.put("/me/training/thresholds", json={"threshold_pace_s_per_km": 270}, headers=headers)
    assert put.status_code == 200 and put.json()["threshold_pace_s_per_km"] == {"value": 270.0, "source": "set"}
    chart = (await client.get("/me/training/days", headers=headers)).json()
    assert sum(d["load"] for d in chart["items"]) == pytest.approx(10 * 67.5)
    assert (await client.put("/me/training/thresholds", json={"threshold_pace_s_per_km": None},
                             headers=headers)).json()["threshold_pace_s_per_km"]["source"] == "estimated"  # fmt: skip

    ahead = (await client.get("/me/training/forecast", params={"weeks": 2, "weekly_load": 0}, headers=headers)).json()
    assert len(ahead["days"]) == 14 and ahead["planned_by"] == "request"
    assert ahead["days"][-1]["fitness"] < mine["fitness"] and ahead["days"][-1]["form"] > mine["form"]
    default = (await client.get("/me/training/forecast", headers=headers)).json()
    assert len(default["days"]) == 42 and default["weekly_load"] == pytest.approx(10 * load.srpe_load(3000, 6) / 4)

    predicted = (await client.get("/me/training/predictions", headers=headers)).json()
    assert predicted["races"] == [] and predicted["model"] is None  # typed in: no best efforts

    yoy = (await client.get("/me/reports/year-over-year", params={"days": 7}, headers=headers)).json()
    assert yoy["this"]["workouts"] == 3 and yoy["before"]["workouts"] == 1
    assert yoy["change"]["workouts"] == pytest.approx(2.0)
    pros = (await client.get("/me/reports/professionals", headers=headers)).json()
    assert [r["race"] for r in pros["running"]] == ["5k", "10k", "half", "marathon"] and pros["riding"] is None

    # Peers: the lake's daily aggregates of the athletes of Bretagne.
    bo, bo_h = await signup(client, "Bo")
    await _subscribe(client, bo)
    await client.patch("/me", json={"profile": {"region": "Bretagne"}}, headers=bo_h)
    await _run(client, bo_h, 2, 100, 20)
    assert await client.arena.drain()
    from connectors.lake.daily import daily_aggregates

    for days_ago in range(1, 29):
        daily_aggregates(client.arena.settings.lake_root, date.today() - timedelta(days_ago))
    peers = (await client.get("/me/reports/peers", headers=headers)).json()
    assert peers["region"] == "Bretagne" and peers["cohort"] == 2 and peers["missing"] == ["sex", "age_group"]
    assert peers["percentiles"] == {"moving_s": 50.0, "distance_m": 50.0, "workouts": 50.0}
    assert peers["mine"]["workouts"] == 10 and ana != bo
    top = (await client.get("/me/reports/peers", headers=bo_h)).json()
    assert top["percentiles"]["workouts"] == 0.0 and top["percentiles"]["moving_s"] == 0.0


@pytest.mark.parametrize(
    "path, params",
    [
        ("/me/training/days", {"from": "2026-13-01"}),
        ("/me/training/days", {"from": "2020-01-01", "to": "2026-01-01"}),  # over 730 days
        ("/me/training/days", {"from": "2026-02-01", "to": "2026-01-01"}),  # backwards
        ("/me/training/days", {"from": "' OR 1=1 --"}),
        ("/me/training/forecast", {"weeks": 0}),
        ("/me/training/forecast", {"weeks": 10_000}),
        ("/me/training/forecast", {"weekly_load": "nan"}),
        ("/me/training/forecast", {"weekly_load": "-5"}),
        ("/me/training/forecast", {"weekly_load": "1e308"}),
        ("/me/reports/year-over-year", {"days": 0}),
        ("/me/reports/year-over-year", {"days": "x" * 10_000}),
        ("/me/reports/peers", {"days": 400}),
    ],
)
async def test_malformed_and_hostile_parameters_get_422(client, path, params):
    eve, headers = await signup(client, "Eve")
    await _subscribe(client, eve)
    assert_problem(await client.get(path, params=params, headers=headers), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"ftp_w": -5},
        {"ftp_w": 10_000},
        {"ftp_w": "fast"},
        {"max_hr": 500},
        {"vo2max": 60},  # unknown
        {"rest_hr": True},
        [1, 2],
        "x" * 100,
        {"ftp_w": {"$gt": 0}},
    ],
)
async def test_malformed_thresholds_get_422_and_change_nothing(client, body):
    _, headers = await signup(client, "Mal")
    before = (await client.get("/me/training", headers=headers)).json()["thresholds"]
    assert_problem(await client.put("/me/training/thresholds", json=body, headers=headers), 422)
    assert (await client.get("/me/training", headers=headers)).json()["thresholds"] == before


async def test_a_hard_week_puts_a_training_warning_in_the_inbox_once(client):
    _, headers = await signup(client, "Hard")
    for days_ago in range(35, 7, -1):
        await _run(client, headers, days_ago, 30, 5)
    for days_ago in range(7, 0, -1):
        await _run(client, headers, days_ago, 180, 30)
    assert await client.arena.drain()
    warned = [n for n in (await client.get("/notifications", headers=headers)).json()["items"]
              if n["type"] == "training_warning"]  # fmt: skip
    codes = [n["data"]["warning"] for n in warned]
    assert "acwr_high" in codes and len(codes) == len(set(codes))
    assert all(n["data"]["reason"] and n["data"]["url"] == "/me/training" for n in warned)
    mine = (await client.get("/me/training", headers=headers)).json()
    assert {w["warning"] for w in mine["warnings"]} <= set(load.WARNINGS) and mine["acwr"] > 1.5


async def test_resting_hr_and_hrv_need_consent_show_their_trend_and_go_with_the_consent(client):
    ana, headers = await signup(client, "Ana")
    today = date.today()
    refused = await client.put(f"/me/training/wellness/{today}", json={"hrv_ms": 60}, headers=headers)
    assert_problem(refused, 409, "consent")
    assert (await client.get("/me/training/wellness", headers=headers)).json()["days"] == []
    version = (await client.get("/consents")).json()["health"]["version"]
    await client.put("/me/consents/health", json={"given": True, "version": version}, headers=headers)
    for n in range(66, 6, -1):  # a 60-day baseline of 50 bpm and 50/70 ms, then a week of 56 bpm and 45 ms
        body = {"resting_hr": 50, "hrv_ms": 50 if n % 2 else 70}
        answer = await client.put(f"/me/training/wellness/{today - timedelta(days=n)}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    for n in range(6, -1, -1):
        body = {"resting_hr": 56, "hrv_ms": 45}
        last = await client.put(f"/me/training/wellness/{today - timedelta(days=n)}", json=body, headers=headers)
    seen = last.json()
    assert seen["hrv"]["status"] == "below" and seen["hrv"]["concern"] and seen["resting_hr"]["status"] == "above"
    assert len(seen["notes"]) == 2
    read = (await client.get("/me/training/wellness", params={"from": str(today - timedelta(days=2))},
                             headers=headers)).json()  # fmt: skip
    assert [d["hrv_ms"] for d in read["days"]] == [45, 45, 45]
    only_hr = await client.put(f"/me/training/wellness/{today}", json={"resting_hr": 57}, headers=headers)
    assert only_hr.json()["days"][-1] == {"day": str(today), "resting_hr": 57, "hrv_ms": 45}, "a null keeps the other"

    for day, body in ((today, {}), (today, {"hrv_ms": 0}), (today, {"hrv_ms": 1e9}), (today, {"resting_hr": "x"}),
                      (today, {"hrv_ms": 50, "spo2": 97}), (today - timedelta(days=900), {"hrv_ms": 50}),
                      ("yesterday", {"hrv_ms": 50}), (today + timedelta(days=30), {"hrv_ms": 50})):  # fmt: skip
        assert_problem(await client.put(f"/me/training/wellness/{day}", json=body, headers=headers), 422)
    assert_problem(await client.get("/me/training/wellness", params={"from": "2026-13-01"}, headers=headers), 422)
    assert_problem(await client.get("/me/training/wellness", params={"from": str(today), "to": str(today -
                   timedelta(days=3))}, headers=headers), 422)  # fmt: skip

    await client.put("/me/consents/health", json={"given": False, "version": version}, headers=headers)
    for _ in range(40):  # the withdrawal reaches the training entity through the relay
        if not (await client.get("/me/training/wellness", headers=headers)).json()["days"]:
            break
        await client.arena.drain()
    gone = (await client.get("/me/training/wellness", headers=headers)).json()
    assert gone["days"] == [] and gone["hrv"]["status"] == "unknown" and ana
