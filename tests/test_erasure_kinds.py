"""Each kind forgets an erased person as its records demand (``erase_user`` overrides, docs/privacy.md):
driven through the real handlers on a host over SQLite, erased with ``ERASE_MESSAGE``, and then
nothing in the store names the person while the others' records and the counts stay right."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

import numpy as np
import pytest

from actors.challenge import Challenge, participant_shard
from actors.challenge_board import ChallengeBoard
from actors.challenge_participants import ChallengeParticipants
from actors.device import Device
from actors.erasing import ERASED_NAME
from actors.feed import Feed
from actors.group import Group
from actors.group_directory import GroupDirectory
from actors.group_event import GroupEvent
from actors.group_feed import GroupFeed
from actors.group_members import GroupMembers
from actors.group_post import ERASED_POST, GroupPost
from actors.group_shards import member_shard
from actors.inbox import Inbox
from actors.orders import ShopOrder
from actors.promo import Promotion
from actors.race import Race
from actors.route import Route, directory_shard
from actors.route_directory import RouteDirectory
from actors.route_track import measure
from actors.segment import Segment
from actors.sport_event import SportEvent
from actors.webhook import WebhookEndpoint
from actors.workout import Workout
from connectors.samples import Sample, pack_samples
from engine.codec import unpack
from engine.config import HostConfig
from engine.erasure import ERASE_MESSAGE
from engine.events import EVENT_MESSAGE
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence.sqlite import SQLiteStore

KINDS = [Race, Group, GroupMembers, GroupPost, GroupFeed, GroupEvent, GroupDirectory, Challenge, ChallengeBoard,
         ChallengeParticipants, Workout, Device, ShopOrder, Promotion, Inbox, Feed, Segment, Route, RouteDirectory,
         SportEvent, WebhookEndpoint]  # fmt: skip
STAND_IN = "erased-5a5a5a5a"
# a plain id, and hostile ones: quotes, SQL, JSON and regex characters, non-ASCII
PEOPLE = ["u-7c0ffee1", "u-'\"; DROP TABLE journal; --", 'u-{"$erase": [.*]}', "u-Zoë-日本"]


class World:
    def __init__(self, path) -> None:
        self.store = SQLiteStore(path / "arena.db")
        self.host = Host(KINDS, SQLiteStore(path / "arena.db"), HostConfig(snapshot_interval=3600))
        self.relay = Relay(self.store, self.host.deliver, self.ask, subscriptions(KINDS), backoff=0.001, retries=2)

    async def ask(self, kind, entity_id, message_type, body=None):
        return await self.host.ask(kind, entity_id, message_type, body)

    async def erase(self, kind: str, entity_id: str, person: str) -> dict:
        return await self.ask(kind, entity_id, ERASE_MESSAGE, {"user_id": person, "stand_in": STAND_IN})

    async def clean(self, person: str) -> list:
        """What the entities' snapshots and journals still hold of the person once the host has compacted
        (polled briefly). The event stream is the eraser's to clean, not the entities'."""
        for _ in range(300):
            found = [m for m in await self.host.store.mentions(person) if m.place != "event"]
            if not found:
                return []
            await asyncio.sleep(0.01)
        return found


@pytest.fixture
async def world(tmp_path):
    world = World(tmp_path)
    await world.host.start()
    await world.store.open()
    await world.relay.load_cursors()
    yield world
    await world.host.stop()
    await world.store.close()


@pytest.fixture(params=PEOPLE, ids=["plain", "sql", "json", "unicode"])
def person(request) -> str:
    return request.param


# -- a race's standings stay whole --------------------------------------------------------------


async def test_a_race_keeps_its_standings_with_a_deleted_athlete_and_forgets_their_readings(world, person):
    config = {"name": "Hour", "sport": "ride", "kind": "distance", "target_m": 100.0}
    await world.ask("race", "s-r", "create", {"organizer": "org", "config": config})
    await world.ask("race", "s-r", "open", {"by": "org"})
    for user in ("ann", person, "zed"):
        await world.ask("race", "s-r", "join", {"user_id": user, "name": f"name of {user}", "weight_kg": 70.0})
    await world.ask("race", "s-r", "bind_device", {"user_id": person, "device_id": "dev-1"})
    await world.ask("race", "s-r", "start", {"by": "org"})
    now = time.time()
    samples = [Sample(seq=i, t=now + i, distance=i * d, lat=45.0, lon=7.0, hr=150)
               for d in (12.0, 11.0, 10.0) for i in range(1, 11)]  # fmt: skip
    entries = [i for i in range(3) for _ in range(10)]
    await world.ask("race", "s-r", "ingest", {"samples": pack_samples(samples, entries),
                                              "athletes": ["ann", person, "zed"]})  # fmt: skip
    await world.ask("race", "s-r", "end", {"by": "org"})
    before = await world.ask("race", "s-r", "results")

    assert await world.erase("race", "s-r", person) == {"forgotten": False}

    after = await world.ask("race", "s-r", "results")
    assert [(r["participant"], r["place"], r["status"], r["finish_s"]) for r in after] == [
        (r["participant"], r["place"], r["status"], r["finish_s"]) for r in before
    ]
    erased = next(r for r in after if r["participant"] == 1)
    assert erased["user_id"] == STAND_IN and erased["name"] == ERASED_NAME
    assert {r["user_id"] for r in after} == {"ann", STAND_IN, "zed"}
    assert await world.ask("race", "s-r", "device_map") == {}
    view = await world.ask("race", "s-r", "view")
    assert [row[0] for row in view["roster"]] == ["ann", STAND_IN, "zed"]
    columns = world.host._active[("race", "s-r")].entity.board.to_state()["columns"]
    lat = np.frombuffer(columns["lat"]["data"], np.float64)
    weight = np.frombuffer(columns["weight"]["data"], np.float32)
    assert np.isnan(lat[1]) and lat[0] == 45.0 and np.isnan(weight[1]) and weight[2] == 70.0
    assert await world.clean(person) == []


async def test_an_athlete_of_an_open_race_is_withdrawn_and_an_organizer_becomes_the_stand_in(world, person):
    await world.ask("race", "s-o", "create", {"organizer": person, "config": {"name": "Ride", "sport": "ride",
                                                                              "kind": "distance", "target_m": 1e3}})  # fmt: skip
    await world.ask("race", "s-o", "open", {"by": person})
    for user in (person, "ann"):
        await world.ask("race", "s-o", "join", {"user_id": user, "name": user})
    await world.erase("race", "s-o", person)
    info = await world.ask("race", "s-o", "info")
    assert info["organizer"] == STAND_IN and info["athletes"] == 2
    assert {t["by"] for t in info["transitions"]} == {STAND_IN}
    statuses = {r["user_id"]: r["status"] for r in await world.ask("race", "s-o", "results")}
    assert statuses[STAND_IN] == "withdrawn" and statuses["ann"] != "withdrawn"
    assert await world.clean(person) == []


# -- groups ---------------------------------------------------------------------------------


async def _group(world, owner: str, members: list[str]) -> None:
    await world.ask("group", "g", "create", {"owner": owner, "profile": {"name": "Club"}})
    await world.ask("group_members", member_shard("g", owner), "found", {"user_id": owner})
    for user in members:
        await world.ask("group_members", member_shard("g", user), "join", {"user_id": user, "policy": "open"})
    await world.relay.drain()


async def test_an_owners_group_goes_to_the_longest_standing_admin(world, person):
    await _group(world, person, ["ann", "bob", "cat"])
    await world.ask("group", "g", "set_role", {"by": person, "user_id": "bob", "role": "admin"})
    await world.ask("group", "g", "set_role", {"by": person, "user_id": "cat", "role": "admin"})
    assert (await world.ask("group", "g", "view"))["members"] == 4

    await world.erase("group", "g", person)
    await world.erase("group_members", member_shard("g", person), person)
    await world.relay.drain()  # the member shard tells the group its count lost one

    assert await world.ask("group", "g", "roles") == {"owner": "bob", "admins": ["cat"]}
    assert (await world.ask("group", "g", "view"))["members"] == 3
    shard = member_shard("g", person)
    assert await world.ask("group_members", shard, "standing", {"user_id": person}) is None
    history = (await world.ask("group", "g", "history_page"))["items"]
    assert history[0]["what"] == "ownership_transferred" and history[0]["user"] == "bob"
    assert await world.clean(person) == []


async def test_an_owners_group_with_no_admin_goes_to_the_longest_standing_member(world, person):
    await _group(world, person, ["ann", "bob", "cat"])  # ann joined first
    await world.erase("group", "g", person)
    await world.erase("group_members", member_shard("g", person), person)
    await world.relay.drain()  # every member shard names its longest-standing member; the group picks

    assert (await world.ask("group", "g", "roles"))["owner"] == "ann"
    assert (await world.ask("group", "g", "view"))["members"] == 3
    assert await world.clean(person) == []


async def test_an_owners_group_with_nobody_left_closes(world, person):
    await _group(world, person, [])
    await world.erase("group", "g", person)
    await world.erase("group_members", member_shard("g", person), person)
    await world.relay.drain()
    with pytest.raises(Exception, match="no such group"):
        await world.ask("group", "g", "view")
    assert await world.clean(person) == []


async def test_a_post_others_answered_keeps_its_thread_and_their_comments_and_kudos_go(world, person):
    await world.ask("group_post", "p1", "create", {"group_id": "g", "author": person, "author_name": "P",
                                                   "text": "Who runs Sunday?"})  # fmt: skip
    await world.ask("group_post", "p1", "comment", {"group_id": "g", "comment_id": "c1", "author": "ann",
                                                    "text": f"me, @{person}"})  # fmt: skip
    await world.ask("group_post", "p1", "comment", {"group_id": "g", "comment_id": "c2", "author": person,
                                                    "text": "great"})  # fmt: skip
    await world.ask("group_post", "p1", "give_kudos", {"group_id": "g", "athlete": "ann"})
    await world.ask("group_post", "p2", "create", {"group_id": "g", "author": "ann", "author_name": "A", "text": "x"})
    await world.ask("group_post", "p2", "give_kudos", {"group_id": "g", "athlete": person})
    await world.ask("group_post", "p3", "create", {"group_id": "g", "author": person, "author_name": "P",
                                                   "text": "alone"})  # fmt: skip
    await world.ask("group_feed", "g", "push", {"item": {"id": "w1", "type": "workout", "at": 1.0, "owner": person}})
    await world.ask("group_feed", "g", "push", {"item": {"id": "p1", "type": "post", "at": 2.0, "owner": person,
                                                         "owner_name": "P", "text": "Who runs Sunday?"}})  # fmt: skip
    for kind, entity_id in (("group_post", "p1"), ("group_post", "p2"), ("group_post", "p3"), ("group_feed", "g")):
        await world.erase(kind, entity_id, person)

    card = await world.ask("group_post", "p1", "card", {"group_id": "g"})
    assert card["author"] == "" and card["text"] == ERASED_POST and card["comments"] == 1 and card["kudos"] == 1
    comments = (await world.ask("group_post", "p1", "comment_list", {"group_id": "g"}))["items"]
    assert [(c["author"], c["text"]) for c in comments] == [("ann", f"me, @{STAND_IN}")]
    assert (await world.ask("group_post", "p2", "card", {"group_id": "g"}))["kudos"] == 0
    with pytest.raises(Exception, match="no such post"):
        await world.ask("group_post", "p3", "card", {"group_id": "g"})
    feed = (await world.ask("group_feed", "g", "read"))["items"]
    assert [(i["id"], i["owner"], i["text"]) for i in feed] == [("p1", "", ERASED_POST)]
    assert await world.clean(person) == []


async def test_a_group_event_promotes_the_first_waiting_when_an_attendee_is_erased(world, person):
    details = {"title": "Long run", "sport": "run", "start": time.time() + 86_400, "time_zone": "UTC",
               "capacity": 2, "meeting_point": {"lat": 48.85, "lon": 2.35, "label": "Pont Neuf"}}  # fmt: skip
    await world.ask("group_event", "e", "create", {"group_id": "g", "by": person, "details": details})
    for user in ("ann", person, "bob", "cat"):
        await world.ask("group_event", "e", "answer", {"group_id": "g", "user_id": user, "going": True})
    await world.erase("group_event", "e", person)
    going = await world.ask("group_event", "e", "people", {"group_id": "g", "which": "going"})
    waiting = await world.ask("group_event", "e", "people", {"group_id": "g", "which": "waitlist"})
    assert [p["id"] for p in going["items"]] == ["ann", "bob"] and [p["id"] for p in waiting["items"]] == ["cat"]
    view = await world.ask("group_event", "e", "view", {"group_id": "g"})
    assert view["going"] == 2 and view["waitlist"] == 1 and view["created_by"] == STAND_IN
    assert await world.clean(person) == []


# -- challenges ----------------------------------------------------------------------------


async def test_a_challenge_board_drops_the_person_and_keeps_the_others_ranks_and_counts(world, person):
    today = date.today()
    card = {"title": "Run 100", "goal_type": "distance_m", "goal": 100_000, "sports": ["run"], "scope": "everyone",
            "team": True, "first_day": (today - timedelta(days=3)).isoformat(),
            "last_day": (today + timedelta(days=3)).isoformat()}  # fmt: skip
    await world.ask("challenge", "c", "create", {"by": person, "card": card})
    await world.ask("challenge_board", "c", "open", {"goal_type": "distance_m", "goal": 100_000})
    terms = await world.ask("challenge", "c", "terms")
    start = time.time() - 3_600
    for user, km in (("ann", 12), (person, 9), ("bob", 6)):
        workout = {"id": f"w-{km}", "sport": "run", "start": start, "distance_m": km * 1000.0, "moving_s": 3600.0,
                   "elapsed_s": 3600.0}  # fmt: skip
        await world.ask(
            "challenge_participants",
            participant_shard("c", user),
            "join",
            {"user_id": user, "terms": terms, "title": "Run 100", "team": "club", "workouts": [workout]},
        )
    await world.relay.drain()
    top = await world.ask("challenge_board", "c", "top")
    assert [r["user_id"] for r in top["rows"]] == ["ann", person, "bob"] and top["participants"] == 3

    await world.erase("challenge_board", "c", person)
    await world.erase("challenge_participants", participant_shard("c", person), person)
    await world.erase("challenge", "c", person)
    await world.relay.drain()

    top = await world.ask("challenge_board", "c", "top")
    assert [(r["rank"], r["user_id"]) for r in top["rows"]] == [(1, "ann"), (2, "bob")]
    assert top["participants"] == 2 and top["scored"] == 2
    assert await world.ask("challenge_board", "c", "team_board") == [
        {"rank": 1, "team": "club", "score": 18_000.0, "members": 2}
    ]
    shard = participant_shard("c", person)
    assert await world.ask("challenge_participants", shard, "standing", {"user_id": person}) is None
    assert (await world.ask("challenge", "c", "view"))["creator"] == STAND_IN
    progressed = [unpack(r.body) for r in await world.store.read_events(0, 10_000) if r.type == "challenge.progressed"]
    assert progressed[-1]["user_id"] == STAND_IN and progressed[-1]["after"] is None  # the erasure's names nobody
    assert await world.clean(person) == []


# -- workouts, comments and kudos -------------------------------------------------------------


async def test_their_workout_goes_whole_and_their_comments_and_kudos_on_others_go(world, person):
    summary = {"id": "w1", "sport": "run", "start": 1.0, "title": "Easy"}
    await world.ask("workout", "w-theirs", "record", {"owner": person, "summary": summary,
                                                      "detail": {"track": [[45.0, 7.0]]}})  # fmt: skip
    await world.ask("workout", "w-ann", "record", {"owner": "ann", "summary": summary, "detail": {}})
    await world.ask("workout", "w-ann", "give_kudos", {"athlete": person})
    await world.ask("workout", "w-ann", "give_kudos", {"athlete": "bob"})
    await world.ask("workout", "w-ann", "comment", {"comment_id": "c1", "author": person, "text": "nice"})
    await world.ask("workout", "w-ann", "comment", {"comment_id": "c2", "author": "bob", "text": f"agree {person}"})

    assert await world.erase("workout", "w-theirs", person) == {"forgotten": True}
    await world.erase("workout", "w-ann", person)

    with pytest.raises(Exception, match="no such workout"):
        await world.ask("workout", "w-theirs", "card")
    card = await world.ask("workout", "w-ann", "card")
    assert card["kudos"] == 1 and card["comments"] == 1
    comments = (await world.ask("workout", "w-ann", "comment_list"))["items"]
    assert [(c["author"], c["text"]) for c in comments] == [("bob", f"agree {STAND_IN}")]
    assert await world.clean(person) == []


async def test_a_followers_feed_keeps_their_own_cards_and_loses_the_persons(world, person):
    await world.ask("feed", "ann", "push", {"item": {"id": "w1", "at": 1.0, "owner": person}})
    await world.ask("feed", "ann", "push", {"item": {"id": "w2", "at": 2.0, "owner": "ann", "together": {
        "group_id": "g", "event_id": "e", "title": "Run", "count": 2,
        "athletes": [{"user_id": person, "name": "P"}, {"user_id": "bob", "name": "B"}]}}})  # fmt: skip
    await world.ask("feed", person, "push", {"item": {"id": "w1", "at": 1.0, "owner": person}})
    await world.erase("feed", "ann", person)
    assert await world.erase("feed", person, person) == {"forgotten": True}
    items = (await world.ask("feed", "ann", "read"))["items"]
    assert [i["id"] for i in items] == ["w2"]
    assert items[0]["together"]["athletes"] == [{"user_id": "bob", "name": "B"}]
    assert items[0]["together"]["count"] == 1
    assert await world.clean(person) == []


async def test_an_inbox_drops_notifications_about_the_person_and_counts_the_unread_left(world, person):
    await world.ask("inbox", "ann", "notify", {"notification_id": "n1", "type": "kudos", "data": {"by": person}})
    await world.ask("inbox", "ann", "notify", {"notification_id": "n2", "type": "kudos", "data": {"by": "bob"}})
    await world.ask("inbox", "ann", "notify", {"notification_id": "n3", "type": "kudos", "data": {"by": "cat"}})
    await world.ask("inbox", "ann", "mark_read", {"ids": ["n3"]})
    await world.erase("inbox", "ann", person)
    inbox = await world.ask("inbox", "ann", "browse")
    assert [i["id"] for i in inbox["items"]] == ["n3", "n2"] and inbox["unread"] == 1
    assert await world.clean(person) == []


# -- devices, commerce, segments ----------------------------------------------------------------


async def test_a_device_goes_whole_with_its_credential(world, person):
    await world.ask("device", "d-1", "register", {"owner": person, "name": "Watch", "model": "X",
                                                  "secret_hash": "h"})  # fmt: skip
    assert await world.erase("device", "d-1", person) == {"forgotten": True}
    with pytest.raises(Exception, match="no such device"):
        await world.ask("device", "d-1", "info")
    assert await world.clean(person) == []


async def test_an_order_is_kept_for_the_books_under_the_stand_in_and_a_used_code_stays_used(world, person):
    order = {"id": "o-1", "lines": [{"product_id": "p", "quantity": 1, "price": 900}], "total": 900,
             "currency": "EUR"}  # fmt: skip
    await world.ask("shop_order", "o1", "record", {"order": order, "user_id": person})
    terms = {"title": "Spring", "description": "", "discount": "10%", "starts": 0.0, "expires": time.time() + 3600,
             "mode": "codes", "per_user": 1, "total": 0}  # fmt: skip
    await world.ask("promotion", "SPRING", "create", {"terms": terms, "codes": ["a", "b"]})
    await world.ask("promotion", "SPRING", "redeem", {"suffix": "a", "user_id": person})
    await world.erase("shop_order", "o1", person)
    await world.erase("promotion", "SPRING", person)

    status = await world.ask("shop_order", "o1", "status")
    assert status["user_id"] == STAND_IN and status["total"] == 900 and status["lines"] == order["lines"]
    again = await world.ask("shop_order", "o1", "record", {"order": order, "user_id": None})
    assert again == {"order_id": "o-1", "duplicate": True, "attributed": True}
    card = await world.ask("promotion", "SPRING", "card")
    assert card["left"] == 1 and card["total"] == 2
    with pytest.raises(Exception, match="already used"):
        await world.ask("promotion", "SPRING", "redeem", {"suffix": "a", "user_id": "ann"})
    assert await world.clean(person) == []


async def test_a_segment_loses_the_persons_efforts_and_keeps_its_road(world, person):
    await world.ask("segment", "s1", "define", {"creator": person, "name": "Climb", "sport": "ride",
                                                "lat": [45.0, 45.01], "lon": [7.0, 7.01], "length_m": 1000.0,
                                                "shard": "x"})  # fmt: skip
    now = time.time()
    efforts = [_wire("segment.effort", n, owner, {"segment_id": "s1", "owner": owner, "workout_id": f"w{n}",
                                                  "start": now - 60, "elapsed_s": elapsed, "visibility": "public",
                                                  "flagged": False})
               for n, (owner, elapsed) in enumerate(((person, 100.0), ("ann", 120.0), ("bob", 130.0)), 1)]  # fmt: skip
    await world.ask("segment", "s1", EVENT_MESSAGE, {"events": efforts})
    await world.erase("segment", "s1", person)
    board = await world.ask("segment", "s1", "leaderboard")
    assert [(r["rank"], r["athlete"]) for r in board["rows"]] == [(1, "ann"), (2, "bob")]
    info = await world.ask("segment", "s1", "info")
    assert info["creator"] == "" and info["athletes"] == 2
    assert await world.clean(person) == []


def _wire(type_: str, seq: int, user: str | None, fields: dict) -> list:
    """An event as a relay delivers it: [type, version, kind, id, seq, idx, at, user, fields, position]."""
    return [type_, 1, "source", "s", seq, 0, time.time(), user, fields, seq]


async def test_a_directory_restores_its_indexes_after_an_erasure(world, person):
    listing: dict = {"name": f"Club of {person}", "sports": [], "city": None, "region": None, "cover_colour": None,
               "visibility": "public", "join_policy": "open", "point": None, "members": 1, "created_at": 0.0}  # fmt: skip
    listed = [
        _wire("group.listed", n, None, {"group_id": group_id, "directory": "d00", "listing": card})
        for n, (group_id, card) in enumerate((("g1", listing), ("g2", {**listing, "name": "Runners"})), 1)
    ]
    await world.ask("group_directory", "d00", EVENT_MESSAGE, {"events": listed})
    await world.erase("group_directory", "d00", person)
    found = await world.ask("group_directory", "d00", "search", {"text": "Club of"})
    assert [(g["id"], g["name"]) for g in found] == [("g1", f"Club of {STAND_IN}")]


# -- routes and organizers' events -------------------------------------------------------------


async def _route(world: World, route_id: str, owner: str, lat: float) -> None:
    points = [[lat + i * 0.0005, 7.0, 200.0 + i, 5.0 * i] for i in range(60)]
    measured = measure(points)
    await world.ask("route", route_id, "create", {"owner": owner, "name": f"Loop of {owner}", "description": "",
                                                  "sport": "run", "surface": "road", "visibility": "public",
                                                  "measured": measured, "source": {"kind": "file"},
                                                  "recorded": time.time()})  # fmt: skip


async def test_their_routes_go_whole_and_the_directory_keeps_only_the_others(world, person):
    await _route(world, "r-theirs", person, 45.0)
    await _route(world, "r-anns", "ann", 45.0)
    assert directory_shard("r-theirs") and directory_shard("r-anns")
    for _ in range(50):  # the directory learns of both from the routes' events
        await world.relay.drain(timeout=10)
        listed = {r["id"] for shard in {directory_shard("r-theirs"), directory_shard("r-anns")}
                  for r in await world.ask("route_directory", shard, "search", {"near": [45.0, 7.0]})}  # fmt: skip
        if listed == {"r-theirs", "r-anns"}:
            break
        await asyncio.sleep(0.02)
    assert listed == {"r-theirs", "r-anns"}

    assert await world.erase("route", "r-theirs", person) == {"forgotten": True}
    assert await world.erase("route", "r-anns", person) == {"forgotten": False}
    for shard in {directory_shard("r-theirs"), directory_shard("r-anns")}:
        await world.erase("route_directory", shard, person)
    with pytest.raises(Exception, match="no such route"):
        await world.ask("route", "r-theirs", "info")
    assert (await world.ask("route", "r-anns", "info"))["owner"] == "ann"
    left = {r["id"] for shard in {directory_shard("r-theirs"), directory_shard("r-anns")}
            for r in await world.ask("route_directory", shard, "search", {"near": [45.0, 7.0]})}  # fmt: skip
    assert left == {"r-anns"}
    assert await world.clean(person) == []


def _event(organizer_start: float, **more) -> dict:
    return {"title": "Lyon 10k", "description": "", "sport": "run", "start": organizer_start,
            "end": organizer_start + 4 * 3600, "time_zone": "Europe/Paris",
            "venue": {"lat": 45.76, "lon": 4.83, "address": "Place Bellecour"}, "online_url": None, "capacity": 1,
            "tiers": [{"id": "std", "name": "Standard", "price": 25.0, "currency": "EUR", "capacity": None}],
            "questions": [{"id": "phone", "label": "Emergency phone", "kind": "text", "choices": [],
                           "required": True}],
            "races": [], "group_rides": "", "route_id": None, **more}  # fmt: skip


async def test_a_registration_stays_for_the_books_without_answers_and_the_first_waiting_moves_up(world, person):
    await world.ask("sport_event", "e1", "create", {"organizer": "org", "details": _event(time.time() + 86_400)})
    theirs = await world.ask("sport_event", "e1", "register", {"user_id": person, "tier": "std",
                                                               "answers": {"phone": f"+33 6 {person}"}})  # fmt: skip
    anns = await world.ask("sport_event", "e1", "register", {"user_id": "ann", "tier": "std",
                                                             "answers": {"phone": "+33 7 00"}})  # fmt: skip
    assert (theirs["status"], anns["status"]) == ("registered", "waitlisted")
    await world.ask("sport_event", "e1", "mark_paid", {"by": "org", "registration_id": theirs["id"]})

    await world.erase("sport_event", "e1", person)
    kept = await world.ask("sport_event", "e1", "registration", {"registration_id": theirs["id"]})
    assert kept["user"] == STAND_IN and kept["payment"] == "paid" and kept["bib"] == theirs["bib"]
    roster = (await world.ask("sport_event", "e1", "roster", {"by": "org"}))["items"]
    assert [(r["user"], r["status"], r["answers"]) for r in roster] == [
        (STAND_IN, "cancelled", {}), ("ann", "registered", {"phone": "+33 7 00"})]  # fmt: skip
    assert await world.clean(person) == []


async def test_an_event_they_organize_stays_under_the_stand_in(world, person):
    await world.ask("sport_event", "e2", "create", {"organizer": person, "details": _event(time.time() + 86_400)})
    await world.ask("sport_event", "e2", "register", {"user_id": "ann", "tier": "std", "answers": {"phone": "1"}})
    await world.erase("sport_event", "e2", person)
    assert (await world.ask("sport_event", "e2", "card"))["organizer"] == STAND_IN
    roster = (await world.ask("sport_event", "e2", "roster", {"by": STAND_IN}))["items"]
    assert [(r["user"], r["status"]) for r in roster] == [("ann", "registered")]
    assert await world.clean(person) == []


async def test_a_webhook_endpoint_forgets_deliveries_about_the_person_and_keeps_the_others(world, person):
    await world.ask("webhook_endpoint", "e1", "create", {"url": "https://p.example/h", "types": ["promo.redeemed"],
                                                         "secret": "s", "description": "", "created_by": person})  # fmt: skip
    events = [{"id": f"promotion/P/{n}/0", "type": "promo.redeemed", "version": 1, "at": time.time() + 60,
               "data": {"user_id": who}, "user": who, "position": n}
              for n, who in enumerate([person, "ann", person, "bob"], start=1)]  # fmt: skip
    await world.ask("webhook_endpoint", "e1", "enqueue", {"events": events})
    dead = {"ok": False, "status": 500, "latency_ms": 1.0, "error": "HTTP 500", "retry_at": None}
    await world.ask("webhook_endpoint", "e1", "report", {"results": [{"id": "promotion/P/1/0", **dead}]})
    await world.ask("webhook_endpoint", "e1", "report", {"results": [{"id": "promotion/P/2/0", **dead}]})
    await world.erase("webhook_endpoint", "e1", person)

    due = await world.ask("webhook_endpoint", "e1", "due", {"now": time.time(), "limit": 10})
    assert [item["data"]["user_id"] for item in due["items"]] == ["bob"]
    letters = await world.ask("webhook_endpoint", "e1", "dead_letters", {})
    assert [letter["event"] for letter in letters] == ["promotion/P/2/0"]
    log = await world.ask("webhook_endpoint", "e1", "deliveries", {})
    assert [line["event"] for line in log] == ["promotion/P/2/0"]
    assert await world.clean(person) == []
