"""Training load: the maths against worked examples computed by hand, and the training entity on a
real host and relay (SQLite, no Ray) reacting to workouts once, in any order, with its warnings."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from actors.account import Account
from actors.inbox import Inbox
from actors.training import Training
from engine.codec import unpack
from engine.config import HostConfig
from engine.events import EVENT_MESSAGE
from engine.host import Host
from engine.relay import Relay, subscriptions
from engine.training import load
from engine.training.load import Thresholds
from engine.training.predictions import predict
from engine.training.reports import against_professionals
from engine.training.wellness import trend, trends
from persistence.sqlite import SQLiteStore

DAY = 86_400.0


# -- load per workout ------------------------------------------------------------------------------


def test_coggan_tss_an_hour_at_ftp_is_100_and_two_hours_at_0_8_is_128():
    # Allen & Coggan (2010): TSS = s × NP × IF / (FTP × 3600) × 100.
    assert load.power_tss(3600, 250, 250) == pytest.approx(100.0)
    # 7200 × 200 × 0.8 / (250 × 3600) × 100 = 128
    assert load.power_tss(7200, 200, 250) == pytest.approx(128.0)


def test_banister_trimp_worked_example():
    # Banister (1991): 30 min at 150 bpm, rest 60, max 190: HRr = 90/130 = 0.6923;
    # 30 × 0.6923 × 0.64 × e^(1.92 × 0.6923) = 30 × 0.6923 × 0.64 × 3.7780 = 50.22
    assert load.trimp(1800, 150, 60, 190) == pytest.approx(50.22, abs=0.01)
    heart = Thresholds(threshold_hr=170, max_hr=190, rest_hr=60)
    assert load.hr_tss(3600, 170, heart) == pytest.approx(100.0)  # an hour at threshold
    assert load.hr_tss(1800, 150, heart) == pytest.approx(50.22 / load.trimp(3600, 170, 60, 190) * 100, rel=1e-3)


def test_rtss_and_session_rpe_worked_examples():
    # 10 km in 50 min against a 4:30 /km threshold: IF = 3.333 / 3.704 = 0.9; 0.8333 h × 0.81 × 100 = 67.5
    assert load.run_tss(3000, 10_000, 270) == pytest.approx(67.5)
    # Foster et al. (2001): 45 min at RPE 6 = 270 AU; on the TSS scale (an hour at RPE 7 = 100): 64.29
    assert load.srpe_load(2700, 6) == pytest.approx(270 * 100 / 420)


def test_each_workout_is_measured_by_the_best_data_it_has():
    full = Thresholds(ftp_w=250, threshold_hr=170, max_hr=190, rest_hr=60, threshold_pace_s_per_km=270)
    ride = {"sport": "ride", "moving_s": 3600, "avg_power": 250, "avg_hr": 150}
    assert load.workout_load(ride, full) == (pytest.approx(100.0), "power")
    assert load.workout_load({**ride, "avg_power": None}, full)[1] == "hr"
    run = {"sport": "run", "moving_s": 3000, "distance_m": 10_000}
    assert load.workout_load(run, full) == (pytest.approx(67.5), "pace")
    assert load.workout_load(run, Thresholds()) == (pytest.approx(load.srpe_load(3000, 6)), "rpe")
    assert load.workout_load({"sport": "swim", "moving_s": 2700, "rpe": 6}, full) == (
        pytest.approx(64.2857, abs=1e-3),
        "rpe",
    )
    assert load.workout_load({"sport": "yoga", "elapsed_s": 3600}, full)[0] == pytest.approx(load.srpe_load(3600, 5))
    for hostile in ({}, {"moving_s": -5}, {"moving_s": math.nan}, {"moving_s": "3600"}, {"moving_s": True}):
        assert load.workout_load(hostile, full) == (0.0, "none")
    assert load.workout_load({"sport": "ride", "moving_s": 1e9, "avg_power": 2000}, full)[0] == load.MAX_WORKOUT_LOAD


def test_thresholds_come_from_the_athletes_own_best_efforts_and_the_athletes_values_win():
    workouts = [
        {"sport": "ride", "moving_s": 1800, "avg_power": 260, "max_hr": 185, "avg_hr": 168},  # eFTP 0.95 × 260 = 247
        {"sport": "ride", "moving_s": 600, "avg_power": 400},  # too short to say anything about threshold
        {"sport": "run", "moving_s": 1200, "distance_m": 5000, "best_efforts": {"1k": 180.0, "5k": 1200.0}},
    ]
    found = load.estimate_thresholds(workouts)
    assert found.ftp_w == pytest.approx(247.0) and found.max_hr == 185 and found.threshold_hr == 168
    # Critical speed from 1 km in 3:00 and 5 km in 20:00: (5000 − 1000) / (1200 − 180) = 3.922 m/s = 4:15 /km
    assert found.threshold_pace_s_per_km == pytest.approx(255.0)
    assert load.estimate_thresholds(workouts, {"ftp_w": 300, "rest_hr": 45}).ftp_w == 300
    only_max = load.estimate_thresholds([{"sport": "run", "moving_s": 600, "max_hr": 200}])
    assert only_max.threshold_hr == pytest.approx(178.0)  # 89 % of the max
    assert load.estimate_thresholds([]) == Thresholds()


# -- fitness, fatigue, form --------------------------------------------------------------------------


def test_fitness_after_42_days_of_100_is_63_2_and_fatigue_after_7_days_too():
    # x_n = 100 (1 − e^(−n/τ)): after τ days, 100 (1 − 1/e) = 63.21
    fitness, fatigue, form = load.performance(np.full(42, 100.0))
    assert fitness[41] == pytest.approx(63.212, abs=1e-3)
    assert fatigue[6] == pytest.approx(63.212, abs=1e-3)
    assert form[0] == 0.0 and form[41] == pytest.approx(fitness[40] - fatigue[40])  # yesterday's


def test_acwr_monotony_strain_and_ramp_worked_examples():
    # Gabbett (2016): 21 days of 50 then 7 of 100: acute 100 / chronic (1750 / 28 = 62.5) = 1.6
    loads = np.array([50.0] * 21 + [100.0] * 7)
    assert load.acwr(loads) == pytest.approx(1.6)
    assert load.acwr(loads[1:]) is None  # no 28 days yet
    # Foster (1998): 100, 0, 100, 0, 100, 0, 100: mean 57.14, SD 49.49, monotony 1.155, strain 400 × 1.155
    monotony, strain = load.monotony_strain(np.array([100.0, 0, 100, 0, 100, 0, 100]))
    assert monotony == pytest.approx(1.1547, abs=1e-4) and strain == pytest.approx(461.88, abs=0.01)
    assert load.monotony_strain(np.full(7, 80.0)) == (load.MAX_MONOTONY, 560.0 * load.MAX_MONOTONY)
    assert load.monotony_strain(np.zeros(3)) == (None, 0.0)
    figures = load.today(loads, 0)
    fitness, *_ = load.performance(loads)
    assert figures["ramp"] == pytest.approx(fitness[-1] - fitness[-8])


def test_warnings_say_why_in_words():
    calm = {"recent_form": [-5.0] * 7, "form": -5.0, "acwr": 1.1, "ramp": 3.0, "monotony": 1.2}
    assert load.warnings(calm) == {}
    hot = {"recent_form": [-31.0] * 7, "form": -34.2, "acwr": 1.62, "ramp": 9.5, "monotony": 2.4}
    found = load.warnings(hot)
    assert set(found) == set(load.WARNINGS)
    assert "below -30 for 7 days (today -34.2)" in found["form_low"]
    assert "1.62 times" in found["acwr_high"] and "9.5 points" in found["ramp_high"] and "2.4" in found["monotony_high"]
    assert "form_low" not in load.warnings({**hot, "recent_form": [-31.0] * 6 + [-29.0]})


def test_the_forecast_runs_the_model_forward_and_settles_at_the_planned_load():
    ahead = load.forecast(50.0, 80.0, 700.0, 7 * 52)
    assert len(ahead) == 364 and ahead[0]["offset"] == 1 and ahead[0]["form"] == pytest.approx(-30.0)
    assert ahead[-1]["fitness"] == pytest.approx(100.0, abs=0.5) and ahead[-1]["fatigue"] == pytest.approx(100.0)
    rest = load.forecast(50.0, 80.0, 0.0, 14)
    assert rest[-1]["form"] > 0 > rest[0]["form"]  # rest turns fatigue into form
    for bad in ((-1.0, 7), (math.inf, 7), (10.0, -1)):
        with pytest.raises(ValueError):
            load.forecast(0, 0, *bad)


# -- predictions and professionals ----------------------------------------------------------------------


def test_hrv_and_resting_hr_trends_against_a_60_day_baseline_worked_example():
    today = 800_000
    base_days = range(today - 66, today - 6)  # the 60 days before the last 7
    hrv = {d: (50.0 if d % 2 else 70.0) for d in base_days} | {d: 45.0 for d in range(today - 6, today + 1)}
    # ln values alternate ln 50 / ln 70: mean ln(sqrt(3500)) = ln 59.16, SD (n-1) 0.16824 * sqrt(60/59) = 0.16966,
    # smallest worthwhile change 0.08483: normal range 59.16 * exp(-/+0.08483) = 54.35 .. 64.40
    judged = trend(hrv, today, log=True, higher_is_better=True)
    assert (judged["baseline"], judged["low"], judged["high"], judged["recent"]) == (59.2, 54.3, 64.4, 45.0)
    assert judged["status"] == "below" and judged["concern"] is True
    # A steady resting heart rate of 50: SD 0, so the change is the 2 bpm floor; 55 this week is above.
    resting = {d: 50.0 for d in base_days} | {d: 55.0 for d in range(today - 6, today + 1)}
    judged = trend(resting, today, log=False, higher_is_better=False)
    assert (judged["low"], judged["high"], judged["status"], judged["concern"]) == (48.0, 52.0, "above", True)
    both = trends([(d, resting.get(d), hrv.get(d)) for d in range(today - 66, today + 1)], today)
    assert len(both["notes"]) == 2 and "45.0 ms" in both["notes"][0] and "55.0 bpm" in both["notes"][1]
    few = trend({d: 60.0 for d in range(today - 19, today + 1)}, today, log=True, higher_is_better=True)
    assert few["status"] == "unknown" and few["recent"] == 60.0, "14 baseline readings before any judgement"
    assert trend({}, today, log=True, higher_is_better=True)["recent"] is None


def test_riegel_from_one_effort_and_a_personal_exponent_from_two():
    # Riegel (1981): 10 km in 40:00 → marathon 2400 × 4.2195^1.06 = 11,040 s (3:04:00)
    one = predict({"10k": 2400.0})
    marathon = next(r for r in one["races"] if r["race"] == "marathon")
    assert one["model"] == "riegel" and marathon["seconds"] == pytest.approx(11_040.5, abs=0.5)
    assert marathon["low_s"] < marathon["seconds"] < marathon["high_s"]
    # 5k 20:00 and 10k 41:40: k = ln(2500/1200) / ln 2 = 1.0589; half = 2500 × 2.10975^1.0589 = 5511 s
    two = predict({"5k": 1200.0, "10k": 2500.0})
    half = next(r for r in two["races"] if r["race"] == "half")
    assert two["model"] == "fitted" and two["exponent"] == pytest.approx(1.0589, abs=1e-4)
    assert half["seconds"] == pytest.approx(5511.5, abs=0.5)
    five = next(r for r in two["races"] if r["race"] == "5k")
    assert five["seconds"] == pytest.approx(1200.0) and (half["high_s"] / half["seconds"]) > (five["high_s"] / 1200.0)
    riegel_band = marathon["high_s"] / marathon["seconds"]
    fitted_marathon = next(r for r in two["races"] if r["race"] == "marathon")
    assert riegel_band > fitted_marathon["high_s"] / fitted_marathon["seconds"] > 1.02
    # A fitted exponent out of reason (a faster 10k pace than 5k) falls back to Riegel.
    assert predict({"5k": 1200.0, "10k": 2300.0})["model"] == "riegel"
    assert predict({})["races"] == [] and predict({"50k": 100.0})["model"] is None


def test_against_professionals_reads_the_world_records():
    report = against_professionals(predict({"10k": 2400.0})["races"], {"10k": 2400.0}, 300.0)
    ten = next(r for r in report["running"] if r["race"] == "10k")
    assert ten["share_of_record_speed"]["men"] == pytest.approx(1571.0 / 2400.0)
    assert report["riding"]["share_of_elite"]["men"] == pytest.approx(4.0 / 6.40)
    assert against_professionals([], {}, None) == {"running": [dict(r, best_s=None, predicted_s=None,
        share_of_record_speed=None) for r in report["running"]], "riding": None}  # fmt: skip


# -- the entity on a host and a relay ----------------------------------------------------------------

KINDS = [Account, Training, Inbox]


def _summary(workout_id: str, start: float, minutes: float = 60, **extra) -> dict:
    return {"id": workout_id, "sport": "run", "title": workout_id, "start": start, "elapsed_s": minutes * 60,
            "moving_s": minutes * 60, "distance_m": minutes * 200, "avg_hr": None, "max_hr": None, "avg_power": None,
            "visibility": "public", "source": "manual", "best_efforts": {}, **extra}  # fmt: skip


class World:
    def __init__(self, path) -> None:
        self.path = path
        self.host = self.new_host()
        self.store = SQLiteStore(path / "arena.db")
        self.relay = Relay(self.store, self.deliver, self.ask, subscriptions(KINDS), backoff=0.001, retries=2)

    def new_host(self) -> Host:
        return Host(
            KINDS, SQLiteStore(self.path / "arena.db"), HostConfig(snapshot_interval=3600, passivate_after=3600)
        )

    async def deliver(self, envelopes):
        return await self.host.deliver(envelopes)

    async def ask(self, kind, entity_id, message_type, body=None):
        return await self.host.ask(kind, entity_id, message_type, body)

    async def workout(self, user: str, summary: dict) -> None:
        await self.ask("account", user, "add_workout", {"summary": summary})
        await self.relay.drain()

    async def events(self, type_: str) -> list[dict]:
        return [unpack(r.body) for r in await self.store.read_events(0, 100_000) if r.type == type_]


@pytest.fixture
async def world(tmp_path):
    world = World(tmp_path)
    await world.host.start()
    await world.store.open()
    await world.relay.load_cursors()
    yield world
    await world.host.stop()
    await world.store.close()


def _midday(days_ago: int) -> float:
    return (int(time.time() // DAY) - days_ago) * DAY + 12 * 3600


async def test_workouts_count_once_edits_and_deletions_in_any_order_and_a_replay_changes_nothing(world):
    await world.ask("account", "ana", "register", {"email": "a@x.org", "password_hash": "-", "display_name": "Ana"})
    await world.workout("ana", _summary("w1", _midday(3)))
    await world.workout("ana", _summary("w2", _midday(2), rpe=8))
    status = await world.ask("training", "ana", "status")
    expected = load.srpe_load(3600, 6) + load.srpe_load(3600, 8)
    days = (await world.ask("training", "ana", "series", {"first": "2000-01-01", "last": "2001-12-30"}))["items"]
    assert sum(d["load"] for d in days) == 0.0
    assert status["workouts"] == 2 and status["fitness"] > 0 and status["thresholds"]["ftp_w"]["value"] is None

    def event(type_, seq, **fields):
        return [type_, 1, "account", "ana", seq, 0, time.time(), "ana", {"owner": "ana", **fields}, seq]

    w3 = _summary("w3", _midday(1), minutes=30)
    edited = {**w3, "moving_s": 5400.0}
    # The deletion of w3 (seq 52) arrives before its edit (seq 51) and its recording (seq 50): nothing counts.
    for batch in ([event("workout.deleted", 52, workout_id="w3", summary=edited)],
                  [event("workout.edited", 51, workout_id="w3", before=w3, after=edited)],
                  [event("workout.recorded", 50, owner_name="Ana", region=None, workout_id="w3", visibility="public",
                         summary=w3)]):  # fmt: skip
        await world.host.deliver([("training", "ana", EVENT_MESSAGE, {"events": batch}, None)])
    assert (await world.ask("training", "ana", "status"))["workouts"] == 2
    # An edit that comes before its recording wins over it.
    w4 = _summary("w4", _midday(1), minutes=30)
    for batch in ([event("workout.edited", 61, workout_id="w4", before=w4, after={**w4, "moving_s": 5400.0})],
                  [event("workout.recorded", 60, owner_name="Ana", region=None, workout_id="w4", visibility="public",
                         summary=w4)]):  # fmt: skip
        await world.host.deliver([("training", "ana", EVENT_MESSAGE, {"events": batch}, None)])
    total = sum(d["load"] for d in (await world.ask("training", "ana", "series", {
        "first": time.strftime("%Y-%m-%d", time.gmtime(_midday(10))),
        "last": time.strftime("%Y-%m-%d", time.gmtime(_midday(0)))}))["items"])  # fmt: skip
    assert total == pytest.approx(expected + load.srpe_load(5400, 6))

    before = await world.ask("training", "ana", "status")
    await world.host.stop()  # a new host rebuilds it from its snapshot and journal
    world.host = world.new_host()
    await world.host.start()
    assert await world.ask("training", "ana", "status") == before


async def test_a_hard_block_warns_once_per_episode_through_the_inbox_and_can_be_muted(world):
    await world.ask("account", "bo", "register", {"email": "b@x.org", "password_hash": "-", "display_name": "Bo"})
    for days_ago in range(35, 7, -1):  # four easy weeks
        await world.workout("bo", _summary(f"e{days_ago}", _midday(days_ago), minutes=30))
    assert await world.events("training.warning") == []
    for days_ago in range(7, 0, -1):  # then a week of three hours a day at RPE 9, up to yesterday
        await world.workout("bo", _summary(f"h{days_ago}", _midday(days_ago), minutes=180, rpe=9))
    told = await world.events("training.warning")
    codes = [e["warning"] for e in told]
    assert "acwr_high" in codes and "ramp_high" in codes and len(codes) == len(set(codes))  # once each
    assert all(e["user_id"] == "bo" and e["reason"] for e in told)
    for n in range(2):  # more of it: the same episode, told nothing again
        await world.workout("bo", _summary(f"m{n}", _midday(n + 1) + 3600, minutes=60, rpe=9))
    assert [e["warning"] for e in await world.events("training.warning")] == codes
    notes = (await world.ask("inbox", "bo", "browse", {"limit": 100}))["items"]
    assert sorted(n["data"]["warning"] for n in notes if n["type"] == "training_warning") == sorted(codes)
    status = await world.ask("training", "bo", "status")
    assert {w["warning"] for w in status["warnings"]} >= {"acwr_high"}
    await world.ask("inbox", "cy", "set_mutes", {"types": ["training_warning"]})
    assert await world.ask("inbox", "cy", "notify", {"notification_id": "x", "type": "training_warning",
                                                     "data": {}}) is None  # fmt: skip


async def test_thresholds_are_overridable_and_remeasure_every_workout(world):
    await world.ask("account", "cy", "register", {"email": "c@x.org", "password_hash": "-", "display_name": "Cy"})
    ride = _summary("r1", _midday(2), sport="ride", avg_power=200.0, distance_m=30_000)
    await world.workout("cy", ride)
    status = await world.ask("training", "cy", "status")
    assert status["thresholds"]["ftp_w"] == {"value": 200.0, "source": "estimated"}  # an hour: its average
    assert status["load"] == 0.0 and status["week_load"] == pytest.approx(100.0)
    set_ = await world.ask("training", "cy", "set_thresholds", {"thresholds": {"ftp_w": 250.0}})
    assert set_["ftp_w"] == {"value": 250.0, "source": "set"}
    assert (await world.ask("training", "cy", "status"))["week_load"] == pytest.approx(load.power_tss(3600, 200, 250))
    for bad in ({"ftp_w": -1}, {"ftp_w": "x"}, {"ftp_w": math.inf}, {"vo2max": 60}, {"ftp_w": True}):
        with pytest.raises(Exception, match="threshold|positive"):
            await world.ask("training", "cy", "set_thresholds", {"thresholds": bad})
    await world.ask("training", "cy", "set_thresholds", {"thresholds": {"ftp_w": None}})
    assert (await world.ask("training", "cy", "status"))["week_load"] == pytest.approx(100.0)
    await world.ask("training", "cy", "set_time_zone", {"time_zone": "Pacific/Kiritimati"})
    assert (await world.ask("training", "cy", "status"))["time_zone"] == "Pacific/Kiritimati"
    with pytest.raises(Exception, match="time zone"):
        await world.ask("training", "cy", "set_time_zone", {"time_zone": "../../etc/passwd"})


# -- recompute from the lake -----------------------------------------------------------------------


@pytest.mark.ray
async def test_a_recompute_from_the_lake_gives_an_empty_entity_what_the_live_one_has_and_again_nothing(
    ray_cluster, world, tmp_path
):
    from connectors.lake.training import recompute
    from connectors.lake.writer import LakeWriter

    await world.ask("account", "ana", "register", {"email": "a@x.org", "password_hash": "-", "display_name": "Ana"})
    await world.ask("account", "bo", "register", {"email": "b@x.org", "password_hash": "-", "display_name": "Bo"})
    for n in range(12):
        await world.workout("ana", _summary(f"a{n}", _midday(3 * n + 1), minutes=30 + 5 * n, rpe=4 + n % 5))
    await world.workout("ana", _summary("old", _midday(800)))  # before the two-year window
    await world.workout("bo", _summary("b0", _midday(2), avg_hr=150.0, max_hr=180.0))
    await world.ask("account", "ana", "edit_workout", {"workout_id": "a1", "changes": {"moving_s": 7200.0}})
    await world.ask("account", "ana", "remove_workout", {"workout_id": "a2"})
    await world.relay.drain()
    live = {user: await world.ask("training", user, "status") for user in ("ana", "bo")}
    assert live["ana"]["workouts"] == 11

    root = tmp_path / "lake"
    await LakeWriter(root).publish(await world.store.read_events(0, 10_000))
    fresh_path = tmp_path / "fresh"  # a store whose training entities never saw an event
    fresh_path.mkdir()
    fresh = Host([Training], SQLiteStore(fresh_path / "arena.db"), HostConfig(snapshot_interval=3600))
    await fresh.start()
    try:

        async def ask(kind, entity_id, message_type, body=None):
            return await fresh.ask(kind, entity_id, message_type, body)

        done = await recompute(root, ask)
        assert (done["users"], done["workouts"], done["skipped"]) == (2, 13, 0), done  # 11 + a2's deletion + b0
        assert {user: await ask("training", user, "status") for user in ("ana", "bo")} == live
        again = await recompute(root, ask, users=["ana"])
        assert again["users"] == 1 and await ask("training", "ana", "status") == live["ana"]
        hostile = [["x" * 65, 1, {}], ["w", "1", {}], ["w", 1, "summary"], "w", ["w", 2, {"start": "noon"}]]
        answer = await ask("training", "ana", "backfill", {"workouts": hostile})
        assert answer == {"applied": 0, "skipped": 5, "workouts": 11}
        assert await ask("training", "ana", "status") == live["ana"]
    finally:
        await fresh.stop()
