"""Challenges as entities: the goal rules in each athlete's own calendar, the rank index against a
brute-force sort, and on a real host and relay over SQLite (no Ray): progress from every counted
workout, corrected when one is edited or deleted whatever order the events arrive in, team sums,
completion once (a badge, followers told, mutes respected) however often events are redelivered;
and the workout events' other reactions: the group's weekly board and the athlete's points."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.account import Account
from actors.achievements import Achievements
from actors.challenge import Challenge, ChallengeDirectory, participant_shard
from actors.challenge_board import ChallengeBoard
from actors.challenge_entries import ChallengeEntries
from actors.challenge_participants import ChallengeParticipants
from actors.group import Group
from actors.group_board import week_of
from actors.group_members import GroupMembers
from actors.group_shards import member_shard
from actors.inbox import Inbox
from actors.user_groups import UserGroups
from engine.challenges import goals
from engine.challenges.ranking import RankIndex
from engine.codec import unpack
from engine.config import HostConfig
from engine.events import EVENT_MESSAGE
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence.sqlite import SQLiteStore

KINDS = [Account, Achievements, Inbox, Group, GroupMembers, UserGroups, Challenge, ChallengeDirectory,
         ChallengeParticipants, ChallengeBoard, ChallengeEntries]  # fmt: skip
DAY = 86_400.0
TODAY = date.today()
NOON = datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC).timestamp() - 2 * DAY  # two days ago


def _summary(workout_id: str, km: float = 10, minutes: float = 50, start: float = NOON, **extra) -> dict:
    return {"id": workout_id, "sport": "run", "title": workout_id, "start": start, "elapsed_s": minutes * 60,
            "moving_s": minutes * 60, "distance_m": km * 1000, "elevation_gain_m": 20.0, "visibility": "public",
            "source": "fit", "best_efforts": {}, **extra}  # fmt: skip


def _terms(
    goal_type: str = "distance_m", goal: float = 50_000, days: tuple[int, int] = (-10, 10), **more
) -> goals.Terms:
    first, last = (TODAY + timedelta(days=d) for d in days)
    return goals.Terms(goal_type, goal, first.toordinal(), last.toordinal(), **more)


# -- the rules ---------------------------------------------------------------------------------


def test_the_period_is_each_athletes_own_calendar_at_both_edges():
    terms = goals.Terms("distance_m", 1, date(2027, 1, 1).toordinal(), date(2027, 1, 31).toordinal())
    tokyo, honolulu, utc = ZoneInfo("Asia/Tokyo"), ZoneInfo("Pacific/Honolulu"), goals.time_zone(None)
    late_in_tokyo = datetime(2027, 1, 31, 23, 30, tzinfo=tokyo).timestamp()  # 14:30 UTC
    past_in_tokyo = datetime(2027, 2, 1, 0, 30, tzinfo=tokyo).timestamp()  # still the 31st in UTC
    assert goals.contribution(terms, _summary("a", start=late_in_tokyo), tokyo) is not None
    assert goals.contribution(terms, _summary("b", start=past_in_tokyo), tokyo) is None
    assert goals.contribution(terms, _summary("b", start=past_in_tokyo), utc) is not None
    new_year_honolulu = datetime(2027, 1, 1, 0, 10, tzinfo=honolulu).timestamp()  # 10:10 UTC on the 1st
    eve_honolulu = datetime(2026, 12, 31, 23, 50, tzinfo=honolulu).timestamp()  # 09:50 UTC on the 1st
    assert goals.contribution(terms, _summary("c", start=new_year_honolulu), honolulu) is not None
    assert goals.contribution(terms, _summary("d", start=eve_honolulu), honolulu) is None
    assert goals.contribution(terms, _summary("d", start=eve_honolulu), utc) is not None
    assert terms.opens() <= eve_honolulu and past_in_tokyo <= terms.closes()


def test_what_counts_sport_plausible_figures_and_no_fair_play_doubt():
    terms = _terms(sports=("run",))
    utc = goals.time_zone(None)
    assert goals.contribution(terms, _summary("ok"), utc) == [date.fromtimestamp(NOON).toordinal(), 10_000.0]
    assert goals.contribution(terms, _summary("ride", sport="ride"), utc) is None
    assert goals.contribution(terms, _summary("car", km=100, minutes=30), utc) is None  # 200 km/h on foot
    assert goals.contribution(terms, _summary("dsq", flagged=True), utc) is None
    assert goals.contribution(terms, _summary("old", start=NOON - 40 * DAY), utc) is None


def test_streaks_count_the_longest_run_of_days_and_single_efforts_the_fastest():
    streak = _terms("streak_days", 3)
    assert goals.progress(streak, [[1, 1.0], [2, 1.0], [4, 1.0], [5, 1.0], [6, 1.0], [6, 1.0]]) == 3
    assert goals.reached(streak, 3) and not goals.reached(streak, 2)
    effort = _terms("single_effort", 1_500, effort="5k")
    utc = goals.time_zone(None)
    fast = goals.contribution(effort, _summary("f", best_efforts={"5k": 1_400.0}), utc)
    race = goals.contribution(effort, _summary("r", km=5.05, minutes=24, source="race"), utc)
    typed = goals.contribution(effort, _summary("t", km=5, minutes=20, source="manual"), utc)
    assert fast[1] == 1_400.0 and race[1] == 1_440.0 and typed is None
    assert goals.progress(effort, [fast, race]) == 1_400.0 and goals.progress(effort, []) is None
    assert goals.reached(effort, 1_400.0) and goals.score(effort, 1_400.0) == -1_400.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(0, 400))), min_size=1, max_size=300),
    st.integers(1, 8),
)
def test_the_rank_index_agrees_with_a_brute_force_sort(moves, keep):
    """Random joins, moves (up and down: corrections) and leaves; ranks and the top against a full sort."""
    index = RankIndex(low=0.0, width=10.0, buckets=32, keep=keep)
    truth: dict[str, list] = {}
    for step, (who, score) in enumerate(moves):
        user = f"u{who}"
        after = None if score is None else [float(score), float(step)]
        index.move(user, truth.get(user), after)
        if after is None:
            truth.pop(user, None)
        else:
            truth[user] = after
    order = sorted(truth, key=lambda u: (-truth[u][0], truth[u][1], u))
    assert index.participants == len(truth) and len(index.top) <= max(2 * keep, 1) + 0
    if index.complete(len(order)):
        assert [r["user_id"] for r in index.rows(0, len(order))] == order
    for n, user in enumerate(order, 1):
        score, at = truth[user]
        rank = index.rank(score, at, user)
        if user in index.where:
            assert rank == n
        else:  # below the exact list: the best rank of its bucket
            best = 1 + sum(1 for other in truth.values() if index.bucket(other[0]) > index.bucket(score))
            assert rank == best <= n
    state = RankIndex.from_state(index.state())
    assert state.rows(0, 50) == index.rows(0, 50) and state.above(0) == index.above(0)


# -- through the engine ------------------------------------------------------------------------


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

    async def athlete(self, user: str, zone: str | None = None, followers: tuple[str, ...] = ()) -> str:
        await self.ask("account", user, "register", {"email": f"{user}@x.org", "password_hash": "-",
                                                     "display_name": user.title()})  # fmt: skip
        if zone:
            await self.ask("account", user, "update_profile", {"profile": {"time_zone": zone}})
        for fan in followers:
            await self.ask("account", user, "follow_requested", {"follower": fan})
        return user

    async def challenge(self, challenge_id: str, terms: goals.Terms, team: bool = False) -> None:
        card = {"title": challenge_id.title(), "goal_type": terms.goal_type, "goal": terms.goal,
                "effort": terms.effort, "sports": list(terms.sports), "scope": "everyone", "team": team,
                "first_day": date.fromordinal(terms.first_day).isoformat(),
                "last_day": date.fromordinal(terms.last_day).isoformat()}  # fmt: skip
        await self.ask("challenge", challenge_id, "create", {"by": "org", "card": card})
        await self.ask("challenge_board", challenge_id, "open", {"goal_type": terms.goal_type, "goal": terms.goal})

    async def join(self, challenge_id: str, user: str, team: str | None = None, workouts=()) -> dict:
        terms = await self.ask("challenge", challenge_id, "terms")
        me = await self.ask("account", user, "me")
        body = {"user_id": user, "terms": terms, "title": challenge_id.title(), "team": team,
                "zone": me["profile"].get("time_zone"), "name": me["profile"]["display_name"],
                "workouts": list(workouts)}  # fmt: skip
        standing = await self.ask("challenge_participants", participant_shard(challenge_id, user), "join", body)
        await self.relay.drain()
        return standing

    async def workout(self, user: str, summary: dict) -> None:
        await self.ask("account", user, "add_workout", {"summary": summary})
        await self.relay.drain()

    async def standing(self, challenge_id: str, user: str) -> dict | None:
        return await self.ask("challenge_participants", participant_shard(challenge_id, user), "standing",
                              {"user_id": user})  # fmt: skip

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


async def test_progress_from_earlier_and_new_workouts_corrected_by_edits_and_deletions(world):
    await world.challenge("c1", _terms(sports=("run",)))
    ana = await world.athlete("ana")
    await world.workout(ana, _summary("before", km=5))
    standing = await world.join(
        "c1", ana, workouts=[_summary("before", km=5), _summary("stale", km=3, start=NOON - 60 * DAY)]
    )
    assert standing["progress"] == 5_000.0 and standing["workouts"] == 1  # the period's earlier workout counts
    await world.workout(ana, _summary("w2", km=10))
    await world.workout(ana, _summary("ride", km=30, minutes=60, sport="ride"))  # not a run
    assert (await world.standing("c1", ana))["progress"] == 15_000.0
    await world.ask("account", ana, "edit_workout", {"workout_id": "w2", "changes": {"title": "renamed"}})
    await world.ask("account", ana, "edit_workout", {"workout_id": "w2", "changes": {"sport": "ride"}})
    await world.relay.drain()
    assert (await world.standing("c1", ana))["progress"] == 5_000.0
    await world.ask("account", ana, "edit_workout", {"workout_id": "w2", "changes": {"sport": "run"}})
    await world.ask("account", ana, "remove_workout", {"workout_id": "before"})
    await world.relay.drain()
    assert (await world.standing("c1", ana))["progress"] == 10_000.0
    assert len(await world.events("workout.edited")) == 2  # a new title alone is no event
    board = await world.ask("challenge_board", "c1", "top", {"limit": 5})
    assert [(r["user_id"], r["score"]) for r in board["rows"]] == [(ana, 10_000.0)] and board["participants"] == 1
    await world.ask("challenge_participants", participant_shard("c1", ana), "leave", {"user_id": ana})
    await world.relay.drain()
    assert (await world.ask("challenge_board", "c1", "top", {"limit": 5}))["participants"] == 0
    assert await world.ask("challenge_entries", ana, "count") == 0


async def test_a_deletion_that_overtakes_its_recording_leaves_nothing_counted(world):
    await world.challenge("c2", _terms())
    bo = await world.athlete("bo")
    await world.join("c2", bo)
    shard = participant_shard("c2", bo)
    fields = {"challenge_id": "c2", "shard": shard, "owner": bo, "workout_id": "w", "seq": 9, "summary": None}
    recorded = {**fields, "seq": 5, "summary": _summary("w")}
    edited = {**fields, "seq": 7, "summary": _summary("w", km=20)}
    source = ["challenge.workout", 1, "challenge_entries", bo]
    deliveries = [[*source, 3, 0, NOON, bo, fields, 3], [*source, 4, 0, NOON, bo, edited, 4],
                  [*source, 5, 0, NOON, bo, recorded, 5]]  # fmt: skip
    (outcome,) = await world.deliver([("challenge_participants", shard, EVENT_MESSAGE, {"events": deliveries}, None)])
    assert outcome["applied"] == 3
    assert (await world.standing("c2", bo))["progress"] == 0.0


async def test_completion_once_a_badge_and_followers_told_unless_muted(world):
    await world.challenge("c3", _terms(goal=15_000))
    cy = await world.athlete("cy", followers=("fan", "quiet"))
    await world.ask("inbox", "quiet", "set_mutes", {"types": ["friend_challenge"]})
    await world.join("c3", cy)
    await world.workout(cy, _summary("a", km=10))
    assert await world.events("challenge.completed") == []
    await world.workout(cy, _summary("b", km=10))
    await world.workout(cy, _summary("c", km=10))
    shard = participant_shard("c3", cy)
    again = ["challenge.workout", 1, "challenge_entries", cy, 1, 0, NOON, cy,
             {"challenge_id": "c3", "shard": shard, "owner": cy, "workout_id": "b", "seq": 99,
              "summary": _summary("b", km=10)}, 1]  # fmt: skip
    for _ in range(2):  # a relay that sends a batch again, and the same state again
        await world.deliver([("challenge_participants", shard, EVENT_MESSAGE, {"events": [again]}, None)])
    await world.host.stop()  # a restart rebuilds everything from the store
    world.host = world.new_host()
    await world.host.start()
    await world.ask("account", cy, "remove_workout", {"workout_id": "a"})  # below the goal again
    await world.workout(cy, _summary("d", km=10))  # and past it again
    completed = await world.events("challenge.completed")
    assert [(e["user_id"], e["challenge_id"]) for e in completed] == [(cy, "c3")]
    assert "challenge_completed" in [b["id"] for b in (await world.ask("achievements", cy, "summary"))["badges"]]
    fan = (await world.ask("inbox", "fan", "browse", {"limit": 50}))["items"]
    assert [(n["type"], n["data"]["challenge_id"]) for n in fan if "challenge" in n["type"]] == [
        ("friend_challenge", "c3")
    ]
    quiet = (await world.ask("inbox", "quiet", "browse", {"limit": 50}))["items"]
    assert quiet and {n["type"] for n in quiet} == {"friend_badge"}  # badges are news; the challenge is muted
    mine = (await world.ask("inbox", cy, "browse", {"limit": 50}))["items"]
    assert sum(n["type"] == "challenge_completed" for n in mine) == 1


async def test_a_streak_and_a_single_effort_in_the_athletes_time_zone(world):
    await world.challenge("streak", _terms("streak_days", 3))
    await world.challenge("fast5k", _terms("single_effort", 1_500, effort="5k"))
    di = await world.athlete("di", zone="Asia/Tokyo")
    await world.join("streak", di)
    await world.join("fast5k", di)
    tokyo = ZoneInfo("Asia/Tokyo")
    base = datetime.fromtimestamp(NOON, tokyo).replace(hour=23, minute=50) - timedelta(days=3)
    for n in range(3):  # three late evenings in Tokyo: three days there (each is the afternoon before in UTC)
        await world.workout(di, _summary(f"s{n}", km=5, minutes=30, start=(base + timedelta(days=n)).timestamp(),
                                         best_efforts={"5k": 1_600.0 - 100 * n}))  # fmt: skip
    streak, fast = await world.standing("streak", di), await world.standing("fast5k", di)
    assert streak["progress"] == 3 and streak["completed_at"] is not None
    assert fast["progress"] == 1_400.0 and fast["score"] == -1_400.0
    board = await world.ask("challenge_board", "fast5k", "top", {"limit": 3})
    assert board["rows"][0]["score"] == -1_400.0


async def test_team_boards_sum_their_members(world):
    await world.challenge("teams", _terms(), team=True)
    for user, team, km in (("ed", "red", 10), ("flo", "red", 5), ("gus", "blue", 12)):
        await world.athlete(user)
        await world.join("teams", user, team=team)
        await world.workout(user, _summary(f"{user}-1", km=km))
    board = await world.ask("challenge_board", "teams", "team_board", {"limit": 5})
    assert [(t["team"], t["score"], t["members"]) for t in board] == [("red", 15_000.0, 2), ("blue", 12_000.0, 1)]
    red = []
    for shard in {participant_shard("teams", user) for user in ("ed", "flo", "gus")}:
        red += await world.ask("challenge_participants", shard, "top", {"team": "red"})
    assert sorted((r["user_id"], r["progress"]) for r in red) == [("ed", 10_000.0), ("flo", 5_000.0)]
    await world.ask("challenge_participants", participant_shard("teams", "ed"), "leave", {"user_id": "ed"})
    await world.relay.drain()
    board = await world.ask("challenge_board", "teams", "team_board", {"limit": 5})
    assert [(t["team"], t["score"]) for t in board] == [("blue", 12_000.0), ("red", 5_000.0)]


async def test_the_group_board_and_points_take_an_edited_or_deleted_workout_back(world):
    hal = await world.athlete("hal")
    await world.ask("group", "g1", "create", {"owner": hal, "profile": {"name": "Club", "sports": ["run"]}})
    await world.ask("group_members", member_shard("g1", hal), "found", {"user_id": hal})
    await world.relay.drain()
    now = time.time()
    await world.workout(hal, _summary("w1", km=10, start=now - 3600))
    await world.workout(hal, _summary("w2", km=4, start=now - 1800))
    body = {"week": week_of(now), "metric": "distance_m", "limit": 5}
    shard = member_shard("g1", hal)
    assert (await world.ask("group_members", shard, "board", body))["rows"][0]["distance_m"] == 14_000.0
    points = (await world.ask("achievements", hal, "summary"))["points"]
    await world.ask("account", hal, "edit_workout", {"workout_id": "w2", "changes": {"visibility": "private"}})
    await world.relay.drain()
    row = (await world.ask("group_members", shard, "board", body))["rows"][0]
    assert (row["distance_m"], row["workouts"]) == (10_000.0, 1)
    await world.ask("account", hal, "edit_workout", {"workout_id": "w2", "changes": {"visibility": "public"}})
    await world.ask("account", hal, "remove_workout", {"workout_id": "w1"})
    await world.relay.drain()
    row = (await world.ask("group_members", shard, "board", body))["rows"][0]
    assert (row["distance_m"], row["workouts"]) == (4_000.0, 1)
    after = await world.ask("achievements", hal, "summary")
    assert 0 < after["points"] < points and "w1" not in [r["workout_id"] for r in after["recent"]]


async def test_a_run_that_reaches_the_router_before_the_join_still_counts(world):
    """Joining and running at once: the run's event can reach the athlete's routers (their challenges,
    their groups) through its consumer before the join's event does through another."""
    now = time.time()
    await world.challenge("c9", _terms())
    liv = await world.athlete("liv")
    await world.ask("group", "g9", "create", {"owner": liv, "profile": {"name": "Club", "sports": ["run"]}})
    await world.ask("group_members", member_shard("g9", liv), "found", {"user_id": liv})
    terms = await world.ask("challenge", "c9", "terms")
    body = {"user_id": liv, "terms": terms, "title": "C9", "workouts": []}
    await world.ask("challenge_participants", participant_shard("c9", liv), "join", body)
    await world.ask("account", liv, "add_workout", {"summary": _summary("w", km=7, start=now - 600)})
    for name in ("challenge_entries.on_workout", "user_groups.on_workout"):
        assert await world.relay.step(name) == 1  # the run first: neither router knows of a membership yet
    await world.relay.drain()
    assert (await world.standing("c9", liv))["progress"] == 7_000.0
    board = await world.ask("group_members", member_shard("g9", liv), "board",
                            {"week": week_of(now), "metric": "distance_m", "limit": 5})  # fmt: skip
    assert board["rows"][0]["distance_m"] == 7_000.0
    await world.relay.drain()  # nothing more: the join sent the run on once
    assert len(await world.events("challenge.workout")) == 1 and len(await world.events("group.workout_shared")) == 1
