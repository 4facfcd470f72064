"""Points, levels and badges: the pure rules, and the achievements entity on a real host and relay
(SQLite, no Ray) reacting to workouts and race results, each badge once; the lake back-fill."""

from __future__ import annotations

import time

import pytest

from actors.account import Account
from actors.achievements import Achievements
from actors.inbox import Inbox
from connectors.lake import LakeWriter
from engine.codec import unpack
from engine.config import HostConfig
from engine.events import EVENT_MESSAGE
from engine.gamification import badges, levels, points
from engine.gamification.intensity import Heart
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence.sqlite import SQLiteStore

KINDS = [Account, Achievements, Inbox]
DAY = 86_400.0
NOON = (int(time.time() // DAY) - 10) * DAY + 12 * 3600  # noon (UTC) ten days ago: every start is in the past
HEART = Heart(max_hr=190, rest_hr=50)


def _summary(workout_id: str, sport: str, minutes: float, km: float, start: float = NOON, **extra) -> dict:
    return {"id": workout_id, "sport": sport, "title": workout_id, "start": start, "elapsed_s": minutes * 60,
            "moving_s": minutes * 60, "distance_m": km * 1000, "elevation_gain_m": 0.0, "avg_hr": None,
            "max_hr": None, "avg_power": None, "visibility": "public", "source": "fit", "best_efforts": {},
            **extra}  # fmt: skip


# -- points ------------------------------------------------------------------------------


def test_the_same_heart_rate_for_the_same_time_earns_the_same_in_every_sport_whatever_the_distance():
    run = _summary("r", "run", 60, 10, avg_hr=155)
    ride = _summary("b", "ride", 60, 32, avg_hr=155)
    swim = _summary("s", "swim", 60, 3, avg_hr=155)
    earned = {w["sport"]: points.workout_points(w, HEART) for w in (run, ride, swim)}
    assert earned["run"] == earned["ride"] == earned["swim"] > 50
    assert points.workout_points(_summary("b2", "ride", 60, 20, avg_hr=155), HEART) == earned["ride"]


def test_a_moderate_hour_from_the_pace_tables_earns_about_the_same_run_ride_or_swim():
    hour = {
        "run": _summary("r", "run", 60, 10),  # 6:00 per km
        "ride": _summary("b", "ride", 60, 25),  # 25 km/h
        "swim": _summary("s", "swim", 60, 3.4),  # 1:46 per 100 m
    }
    earned = {sport: points.workout_points(w) for sport, w in hour.items()}
    assert max(earned.values()) / min(earned.values()) < 1.15, earned
    # Twice the distance at a dawdle is not twice the effort: time and intensity count, distance alone does not.
    assert points.workout_points(_summary("long", "ride", 120, 30)) < 2 * earned["ride"]
    assert points.workout_points(_summary("easy", "ride", 60, 15)) < earned["ride"] / 2


def test_manual_workouts_earn_half_and_a_day_is_capped():
    recorded = _summary("f", "run", 60, 10)
    typed = {**recorded, "source": "manual"}
    assert points.workout_points(typed) == pytest.approx(points.workout_points(recorded) * 0.5)
    assert points.capped(57.4, 0) == 57 and points.capped(57.5, 0) == 58
    assert points.capped(100, points.DAILY_CAP - 30) == 30 and points.capped(100, points.DAILY_CAP) == 0


@pytest.mark.parametrize(
    "change, why",
    [
        ({"distance_m": 100_000.0}, "not a run"),  # 100 km/h on foot
        ({"moving_s": 7200.0, "elapsed_s": 3600.0}, "longer than it lasted"),
        ({"avg_hr": 300}, "heart rate"),
        ({"avg_hr": 150, "max_hr": 140}, "maximum heart rate"),
        ({"best_efforts": {"5k": 100.0}}, "best effort"),
        ({"distance_m": float("nan")}, "distance"),
        ({"moving_s": "long"}, "moving time"),
        ({"avg_power": 5000}, "power"),
    ],
)
def test_impossible_values_are_named(change, why):
    assert points.implausible(_summary("w", "run", 60, 10)) is None
    assert why in (points.implausible({**_summary("w", "run", 60, 10), **change}) or "")


def test_the_level_curve():
    assert [levels.points_for(level) for level in (1, 2, 3, 5, 10, 20)] == [0, 100, 300, 1_000, 4_500, 19_000]
    assert [levels.level_for(p) for p in (0, 99, 100, 299, 300, 4_499, 4_500, 10**9)] == [1, 1, 2, 2, 3, 9, 10, 100]


# -- rules -------------------------------------------------------------------------------


UTC_ZONE = badges.time_zone(None)


def _facts(*summaries: dict, zone=UTC_ZONE) -> list[dict]:
    return [badges.workout_fact(s, zone) for s in summaries]


def _earned(rule_id: str, facts: list[dict]) -> list[str]:
    """The facts at which the rule's goal is reached."""
    rule, state = badges.rule(rule_id), {}
    return [fact["id"] for fact in facts if badges.advance(rule, state, fact)]


def test_first_5k_needs_a_recorded_run_of_5_km():
    facts = _facts(
        _summary("short", "run", 20, 4.9),
        _summary("ride", "ride", 30, 15),
        {**_summary("typed", "run", 30, 6), "source": "manual"},
        _summary("five", "run", 30, 5),
    )
    assert _earned("first_5k", facts)[:1] == ["five"]


def test_100_km_in_one_calendar_month_on_foot():
    month = [_summary(f"r{i}", "run", 60, 10, start=NOON - 3 * DAY * i) for i in range(9)]  # 90 km within a month
    assert _earned("100k_month", _facts(*month)) == []
    assert _earned("100k_month", _facts(*month, _summary("bike", "ride", 200, 100))) == []
    facts = _facts(*month, _summary("r9", "run", 60, 10))
    months = {f["month"] for f in facts}
    assert (_earned("100k_month", facts) != []) == (len(months) == 1)  # the ten runs may straddle two months


def test_a_7_day_streak_counts_days_in_the_athletes_time_zone():
    # In New York (UTC-5): 21:00 on day 0 (02:00 UTC, day 1), then 15:00 on days 1-6 (20:00 UTC).
    evening = _summary("d0", "walk", 30, 3, start=NOON + 14 * 3600)  # day 1, 02:00 UTC
    days = [_summary(f"d{i}", "walk", 30, 3, start=NOON + i * DAY + 8 * 3600) for i in range(1, 7)]
    new_york = badges.time_zone("America/New_York")
    assert _earned("streak_7", _facts(evening, *days, zone=new_york)) != []
    assert _earned("streak_7", _facts(evening, *days)) == []  # in UTC two fall on one day: 6 days
    week = [_summary(f"u{i}", "swim", 30, 1.5, start=NOON - i * DAY) for i in (6, 4, 5, 3, 0, 2, 1)]  # out of order
    assert _earned("streak_7", _facts(*week)) == ["u1"]
    with pytest.raises(ValueError, match="not a time zone"):
        badges.time_zone("Mars/Olympus_Mons")


def test_a_personal_record_is_beating_an_earlier_best():
    first = _summary("a", "run", 30, 5, best_efforts={"5k": 1500.0})
    slower = _summary("b", "run", 30, 5, best_efforts={"5k": 1600.0})
    ride = _summary("c", "ride", 30, 5, best_efforts={"5k": 500.0})  # another sport: its own marks
    faster = _summary("d", "run", 30, 5, best_efforts={"5k": 1450.0})
    assert _earned("personal_record", _facts(first, slower, ride, faster)) == ["d"]


def test_a_podium_and_the_badges_of_events_to_come():
    zone = UTC_ZONE
    results = [badges.race_fact(f"race{p}", {"status": s, "place": p}, NOON, zone)
               for s, p in (("finished", 4), ("dnf", None), ("dsq", None), ("finished", 3))]  # fmt: skip
    assert _earned("podium", results) == ["race3"]
    completed = badges.event_fact("challenge.completed", "c/1/1/0", {"user_id": "u"}, NOON, zone)
    attended = badges.event_fact("group_event.attended", "g/1/1/0", {"user_id": "u"}, NOON, zone)
    assert _earned("challenge_completed", [attended, completed]) == ["c/1/1/0"]
    assert _earned("group_event_attended", [completed, attended]) == ["g/1/1/0"]


# -- the entity on a host and a relay -----------------------------------------------------


class World:
    def __init__(self, path) -> None:
        self.path = path
        self.host = self.new_host()
        self.store = SQLiteStore(path / "arena.db")
        self.relay = Relay(self.store, self.host_deliver, self.ask, subscriptions(KINDS), backoff=0.001, retries=2)

    def new_host(self) -> Host:
        config = HostConfig(snapshot_interval=3600, passivate_after=3600)
        return Host(KINDS, SQLiteStore(self.path / "arena.db"), config)

    async def host_deliver(self, envelopes):
        return await self.host.deliver(envelopes)

    async def ask(self, kind, entity_id, message_type, body=None):
        return await self.host.ask(kind, entity_id, message_type, body)

    async def athlete(self, user: str, followers: tuple[str, ...] = ()) -> None:
        await self.ask("account", user, "register", {"email": f"{user}@x.org", "password_hash": "-",
                                                     "display_name": user.title()})  # fmt: skip
        for fan in followers:
            await self.ask("account", user, "follow_requested", {"follower": fan})

    async def workout(self, user: str, summary: dict) -> None:
        await self.ask("account", user, "add_workout", {"summary": summary})
        await self.relay.drain()

    async def events(self, type_: str) -> list[dict]:
        return [unpack(r.body) for r in await self.store.read_events(0, 10_000) if r.type == type_]

    async def summary(self, user: str) -> dict:
        return await self.ask("achievements", user, "summary")

    async def notifications(self, user: str) -> list[dict]:
        return (await self.ask("inbox", user, "browse", {"limit": 100}))["items"]


@pytest.fixture
async def world(tmp_path):
    world = World(tmp_path)
    await world.host.start()
    await world.store.open()
    await world.relay.load_cursors()
    yield world
    await world.host.stop()
    await world.store.close()


def _result_event(race: str, user: str, seq: int, status: str, place: int | None, flags=(), minutes=40.0) -> list:
    summary = {**_summary(f"{race}-{user}", "run", minutes, 10), "source": "race", "race_id": race}
    result = {"participant": 0, "place": place, "status": status, "distance_m": 10_000.0, "finish_s": minutes * 60,
              "flags": list(flags), "provisional": False, "user_id": user, "name": user.title()}  # fmt: skip
    fields = {"race_id": race, "user_id": user, "workout_id": summary["id"], "summary": summary, "result": result}
    return ["race.result", 1, "race", race, seq, 0, NOON + 3600, user, fields, seq]


async def _deliver(world: World, user: str, *events: list) -> dict:
    (outcome,) = await world.host.deliver([("achievements", user, EVENT_MESSAGE, {"events": list(events)}, None)])
    await world.relay.drain()
    return outcome


async def test_workouts_earn_points_levels_and_badges_once_and_followers_hear_of_the_badge(world):
    await world.athlete("ana", followers=("fan", "quiet"))
    await world.ask("inbox", "quiet", "set_mutes", {"types": ["friend_badge"]})
    await world.workout("ana", _summary("w1", "run", 60, 10, best_efforts={"5k": 1500.0}))
    mine = await world.summary("ana")
    assert mine["points"] == int(points.workout_points(_summary("w1", "run", 60, 10)) + 0.5) > 0
    assert [b["id"] for b in mine["badges"]] == ["first_5k"] and mine["badges"][0]["cause"] == "w1"
    await world.workout("ana", _summary("w2", "run", 60, 10, start=NOON + 3600, best_efforts={"5k": 1400.0}))
    mine = await world.summary("ana")
    assert [b["id"] for b in mine["badges"]] == ["first_5k", "personal_record"]
    assert mine["level"] == levels.level_for(mine["points"]) == 2

    awarded = await world.events("badge.awarded")
    assert [(e["user_id"], e["badge"], e["backfill"]) for e in awarded] == [
        ("ana", "first_5k", False),
        ("ana", "personal_record", False),
    ]
    assert [e["level"] for e in await world.events("level.reached")] == [2]
    fan = [(n["type"], n["data"]["badge"]) for n in await world.notifications("fan")]
    assert fan == [("friend_badge", "personal_record"), ("friend_badge", "first_5k")]
    assert await world.notifications("quiet") == []  # muted friends' badges
    told = [n["type"] for n in await world.notifications("ana")]
    assert sorted(told) == ["badge", "badge", "level"]  # her badges and her level 2 (not told to her followers)


async def test_the_daily_cap_manual_weight_and_impossible_workouts(world):
    await world.athlete("bo")
    for i in range(6):  # six hard hours on one day
        await world.workout("bo", _summary(f"h{i}", "run", 60, 12, start=NOON - 6 * 3600 + i * 3600))
    assert (await world.summary("bo"))["points"] == points.DAILY_CAP
    typed = {**_summary("m", "run", 60, 12, start=NOON + DAY), "source": "manual"}
    await world.workout("bo", typed)
    half = points.capped(points.workout_points(typed), 0)
    assert half == points.capped(points.workout_points(_summary("x", "run", 60, 12)) / 2, 0)
    assert (await world.summary("bo"))["points"] == points.DAILY_CAP + half
    before = await world.summary("bo")
    await world.workout("bo", _summary("fake", "run", 30, 60, start=NOON + 2 * DAY))  # 120 km/h on foot
    after = await world.summary("bo")
    assert after["points"] == before["points"] and after["badges"] == before["badges"]
    assert after["refused"][0]["workout_id"] == "fake" and "km/h" in after["refused"][0]["why"]


async def test_a_race_podium_counts_and_a_disqualified_or_flagged_athlete_earns_nothing(world):
    outcome = await _deliver(
        world,
        "cy",
        _result_event("dsq-race", "cy", 7, "dsq", None),
        _result_event("flag-race", "cy", 8, "finished", 1, flags=["speed"]),
    )
    assert outcome["applied"] == 2
    assert (await world.summary("cy"))["points"] == 0 and (await world.summary("cy"))["badges"] == []
    await _deliver(world, "cy", _result_event("real-race", "cy", 9, "finished", 2))
    mine = await world.summary("cy")
    assert {b["id"] for b in mine["badges"]} == {"podium", "first_5k"} and mine["points"] > 0
    assert {b["cause"] for b in mine["badges"]} == {"real-race", "real-race-cy"}


async def test_a_redelivered_or_replayed_event_awards_nothing_twice(world):
    podium = _result_event("r1", "di", 3, "finished", 1)
    await _deliver(world, "di", podium)
    again = await _deliver(world, "di", podium)  # a relay that sends a batch again
    assert again == {"applied": 0, "repeated": 1, "declined": 0, "ignored": 0}
    before = await world.summary("di")

    await world.host.stop()  # snapshots; a new host rebuilds from the store
    world.host = world.new_host()
    await world.host.start()
    assert await _deliver(world, "di", podium) == {"applied": 0, "repeated": 1, "declined": 0, "ignored": 0}
    assert await world.summary("di") == before
    assert [e["badge"] for e in await world.events("badge.awarded")] == ["first_5k", "podium"]


async def test_a_time_zone_and_heart_rates_are_the_athletes_own(world):
    await world.ask("achievements", "ed", "set_time_zone", {"time_zone": "America/New_York"})
    await world.ask("achievements", "ed", "set_heart", {"max_hr": 190, "rest_hr": 50})
    assert await world.ask("achievements", "ed", "settings") == {
        "time_zone": "America/New_York",
        "heart": {"max_hr": 190, "rest_hr": 50},
    }
    from engine.errors import Rejected

    with pytest.raises(Rejected, match="time zone"):
        await world.ask("achievements", "ed", "set_time_zone", {"time_zone": "../../etc/passwd"})
    with pytest.raises(Rejected):
        await world.ask("achievements", "ed", "set_heart", {"max_hr": 90})
    await world.athlete("ed")
    evening = _summary("d0", "walk", 30, 3, start=NOON + 14 * 3600)
    for summary in [evening] + [_summary(f"d{i}", "walk", 30, 3, start=NOON + i * DAY + 8 * 3600) for i in range(1, 7)]:
        await world.workout("ed", summary)
    assert "streak_7" in {b["id"] for b in (await world.summary("ed"))["badges"]}


# -- back-fill from the lake ---------------------------------------------------------------


@pytest.mark.ray
async def test_a_rule_added_later_is_back_filled_from_the_lake_once(ray_cluster, world, tmp_path, monkeypatch):
    from connectors.lake.backfill import backfill

    later = ("streak_7", "podium")
    monkeypatch.setattr(badges, "RULES", tuple(r for r in badges.RULES if r.id not in later))
    await world.athlete("fay", followers=("fan",))
    for i in range(7):
        await world.workout("fay", _summary(f"f{i}", "swim", 30, 1.5, start=NOON - i * DAY))
    await _deliver(world, "fay", _result_event("race-f", "fay", 5, "finished", 3))
    await world.athlete("gus")
    await world.workout("gus", _summary("g0", "swim", 30, 1.5))
    assert {b["id"] for b in (await world.summary("fay"))["badges"]} == {"first_5k"}  # from the race's 10 km

    # The race's result reached the lake too (the outbox has only what entities emitted here).
    root = tmp_path / "lake"
    writer = LakeWriter(root)
    records = await world.store.read_events(0, 10_000)
    await writer.publish(records)
    from engine.codec import pack
    from engine.events import EventRecord

    podium = _result_event("race-f", "fay", 5, "finished", 3)
    await writer.publish(
        [EventRecord("race", "race-f", 5, 0, "race.result", 1, podium[6], "fay", pack(podium[8]),
                     records[-1].position + 1)]
    )  # fmt: skip
    monkeypatch.undo()

    first = await backfill(root, world.ask, rules=list(later))
    assert first == {"users": 2, "awarded": {"streak_7": 1, "podium": 1}}
    mine = {b["id"]: b for b in (await world.summary("fay"))["badges"]}
    assert set(mine) == {"first_5k", "streak_7", "podium"} and mine["streak_7"]["backfill"] is True
    assert "streak_7" not in {b["id"] for b in (await world.summary("gus"))["badges"]}

    assert await backfill(root, world.ask, rules=list(later)) == {"users": 2, "awarded": {}}
    assert await backfill(root, world.ask) == {"users": 2, "awarded": {}}  # every rule: nothing is missing
    await world.relay.drain()
    awarded = [(e["badge"], e["backfill"]) for e in await world.events("badge.awarded") if e["user_id"] == "fay"]
    assert sorted(awarded) == [("first_5k", False), ("podium", True), ("streak_7", True)]
    fan = [n["data"]["badge"] for n in await world.notifications("fan")]
    assert fan == ["first_5k"]  # a badge found in old history is no news to friends
