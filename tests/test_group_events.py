"""Group events as entities (actors/group_event*.py): capacity, the waitlist and promotion, reminders
on the engine's durable timers (once, across a host killed mid-way), cancellation and change notices,
and "did it together": an attendee's workout matched by time and place, ``group_event.attended``
emitted once whatever the relay sends again, the badge, and the roster on the feeds' cards.
On a real host and relay over SQLite, without Ray; the host's clock is moved by hand."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from actors.account import Account
from actors.achievements import Achievements
from actors.feed import Feed
from actors.group import Group
from actors.group_event import NEAR_KM, WINDOW_S, GroupEvent, check_details, matches
from actors.group_event_calendar import EventCalendar
from actors.group_event_index import GroupEventIndex
from actors.group_feed import GroupFeed
from actors.group_members import GroupMembers
from actors.group_shards import member_shard
from actors.inbox import Inbox
from actors.user_groups import UserGroups
from actors.workout import start_point, track_start
from engine.config import HostConfig
from engine.errors import NotFound, Rejected
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence import open_store
from tests.conftest import Clock

KINDS = [Account, Group, GroupMembers, UserGroups, GroupFeed, Feed, Inbox, Achievements, GroupEvent,
         GroupEventIndex, EventCalendar]  # fmt: skip
MEETING = {"lat": 48.8462, "lon": 2.3371, "label": "Luxembourg gardens, Medicis fountain"}
DAY = 86_400.0


class World:
    """One host and one relay over a SQLite file, on a clock the test moves."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.url, self.clock = url, clock
        config = HostConfig(snapshot_interval=3600, passivate_after=3600)
        self.host = Host(KINDS, open_store(url), config, clock=clock)
        self.store = open_store(url)
        self.relay = Relay(self.store, self.host.deliver, self.ask, subscriptions(KINDS), backoff=0.001, retries=2)

    async def start(self) -> World:
        await self.host.start()
        await self.store.open()
        await self.relay.load_cursors()
        return self

    async def ask(self, kind: str, entity_id: str, message_type: str, body: dict | None = None):
        return await self.host.ask(kind, entity_id, message_type, body)

    async def settle(self) -> None:
        await self.relay.drain(timeout=30)

    async def crash(self) -> None:
        """What kill -9 leaves behind: the journal, no final snapshot."""
        host = self.host
        for task in host._tasks:
            task.cancel()
        await asyncio.gather(*host._tasks, return_exceptions=True)
        await host._committer.stop()
        host._closing = True
        await host.store.close()
        await self.store.close()

    async def stop(self) -> None:
        await self.host.stop()
        await self.store.close()

    async def users(self, *names: str) -> list[str]:
        for name in names:
            await self.ask("account", name, "register", {"email": f"{name}@x", "password_hash": "-",
                                                         "display_name": name.title()})  # fmt: skip
        return list(names)

    async def group(self, group_id: str, owner: str, *members: str) -> None:
        await self.ask("group", group_id, "create", {"owner": owner, "profile": {"name": "Paris Runners"}})
        await self.ask("group_members", member_shard(group_id, owner), "found", {"user_id": owner})
        for user in members:
            shard = member_shard(group_id, user)
            await self.ask("group_members", shard, "join", {"user_id": user, "policy": "open"})

    async def event(self, event_id: str, group_id: str = "g", by: str = "olga", **details) -> dict:
        details = {"title": "Saturday long run", "sport": "run", "start": self.clock.now + 2 * DAY,
                   "time_zone": "Europe/Paris", "meeting_point": MEETING, **details}  # fmt: skip
        return await self.ask("group_event", event_id, "create", {"group_id": group_id, "by": by, "details": details})

    async def rsvp(self, event_id: str, user: str, going: bool = True, group_id: str = "g") -> dict:
        body = {"group_id": group_id, "user_id": user, "going": going}
        return await self.ask("group_event", event_id, "answer", body)

    async def workout(self, owner: str, workout_id: str, start: float, point: list[float] | None,
                      visibility: str = "public") -> None:  # fmt: skip
        summary = {"id": workout_id, "sport": "run", "start": start, "distance_m": 12_000.0, "moving_s": 3_600.0,
                   "elapsed_s": 3_700.0, "title": "Long run", "visibility": visibility, "source": "gpx",
                   "start_point": point}  # fmt: skip
        await self.ask("account", owner, "add_workout", {"summary": summary})

    async def inbox(self, user: str) -> list[dict]:
        return (await self.ask("inbox", user, "browse", {"limit": 100}))["items"]

    async def told(self, user: str, type: str) -> list[dict]:
        return [item["data"] for item in await self.inbox(user) if item["type"] == type]

    async def events_of(self, type: str) -> list:
        return [r for r in await self.store.read_events(0, 10_000, [type])]


@pytest.fixture
async def world(tmp_path, clock):
    world = await World(f"sqlite:///{tmp_path}/events.db", clock).start()
    yield world
    await world.stop()


def _north_of(point: dict, km: float) -> list[float]:
    return [point["lat"] + km / 111.195, point["lon"]]


# -- pure parts ------------------------------------------------------------------------------


def test_a_workout_matches_an_event_by_time_window_and_distance_to_the_meeting_point():
    card = {"start": 1_800_000_000.0, "meeting_point": MEETING}
    here = [MEETING["lat"], MEETING["lon"]]
    early, late = card["start"] + WINDOW_S[0], card["start"] + WINDOW_S[1]
    assert matches(card, {"start": early}, here) and matches(card, {"start": late}, here)
    assert not matches(card, {"start": early - 1}, here) and not matches(card, {"start": late + 1}, here)
    assert matches(card, {"start": card["start"]}, _north_of(MEETING, NEAR_KM * 0.95))
    assert not matches(card, {"start": card["start"]}, _north_of(MEETING, NEAR_KM * 1.05))
    assert not matches(card, {"start": card["start"]}, None), "no start point: never matched"
    assert not matches(card, {"start": "soon"}, here) and not matches(card, {}, here)


def test_times_are_instants_whatever_the_zone_the_event_was_given_in():
    """09:00 in Paris and 03:00 in New York on a summer Saturday are one instant; the matching sees
    instants, so an athlete's watch in UTC matches an event given in local time."""
    paris = datetime(2027, 7, 3, 9, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    new_york = datetime(2027, 7, 3, 3, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert paris == new_york
    card = {"start": paris, "meeting_point": MEETING}
    utc_watch = datetime(2027, 7, 3, 7, 5, tzinfo=ZoneInfo("UTC")).timestamp()  # 09:05 in Paris
    assert matches(card, {"start": utc_watch}, [MEETING["lat"], MEETING["lon"]])
    winter = datetime(2027, 1, 9, 9, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert not matches({**card, "start": winter}, {"start": winter - 3_600 - 31 * 60}, [MEETING["lat"], MEETING["lon"]])


def test_details_out_of_bounds_are_refused():
    good = {"title": "Run", "sport": "run", "start": 1.0, "time_zone": "Europe/Paris", "meeting_point": MEETING}
    check_details(good, partial=False)
    for bad in (
        {"title": " "},
        {"title": "x" * 121},
        {"sport": "chess"},
        {"start": float("nan")},
        {"start": True},
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "../../etc/passwd"},
        {"time_zone": "/etc/localtime"},
        {"meeting_point": {"lat": 91, "lon": 0, "label": "x"}},
        {"meeting_point": {"lat": 1, "lon": 2}},
        {"meeting_point": {**MEETING, "label": ""}},
        {"capacity": 0},
        {"capacity": 5_001},
        {"capacity": True},
        {"pace_groups": [{"label": "5:00", "pace_s_per_km": 10}]},
        {"pace_groups": [{"label": "x", "pace_s_per_km": None}] * 11},
        {"route": "r" * 501},
        {"colour": "red"},
    ):
        with pytest.raises(Rejected):
            check_details({**good, **bad}, partial=False)
    with pytest.raises(Rejected, match="needs"):
        check_details({"title": "Run"}, partial=False)


def test_a_summary_says_where_the_workout_started_or_nothing():
    assert track_start([[None, None, 3.0], [48.123456789, 2.5, 10.0]]) == [48.12346, 2.5]
    assert track_start([]) is None
    assert start_point({"start_point": [48.1, 2.3]}) == [48.1, 2.3]
    for unknown in ({}, {"start_point": None}, {"start_point": [91, 0]}, {"start_point": ["a", 1]},
                    {"start_point": [1, 2, 3]}):  # fmt: skip
        assert start_point(unknown) is None


# -- answers, capacity and the waitlist -------------------------------------------------------------


async def test_past_capacity_answers_wait_in_order_and_a_freed_place_promotes_the_first(world):
    people = await world.users("olga", "ana", "bo", "cy", "dee")
    await world.group("g", *people)
    view = await world.event("e1", capacity=2, pace_groups=[{"label": "5:30/km", "pace_s_per_km": 330}])
    assert view["going"] == 0 and view["capacity"] == 2 and view["start_local"].endswith("+01:00")
    assert (await world.rsvp("e1", "ana"))["rsvp"] == "going"
    assert (await world.rsvp("e1", "bo"))["rsvp"] == "going"
    assert await world.rsvp("e1", "cy") == {"rsvp": "waitlisted", "position": 1, "going": 2, "waitlist": 1}
    assert (await world.rsvp("e1", "dee"))["position"] == 2
    assert (await world.rsvp("e1", "cy"))["position"] == 1, "saying yes again keeps one's place"

    assert (await world.rsvp("e1", "ana", going=False))["rsvp"] == "not_going"
    view = await world.ask("group_event", "e1", "view", {"group_id": "g", "viewer": "cy"})
    assert view["me"] == {"rsvp": "going", "position": None} and (view["going"], view["waitlist"]) == (2, 1)
    assert (await world.ask("group_event", "e1", "view", {"group_id": "g", "viewer": "dee"}))["me"]["position"] == 1
    await world.settle()
    promoted = await world.told("cy", "group_event_promoted")
    assert [p["event_id"] for p in promoted] == ["e1"] and promoted[0]["url"] == "/groups/g#event-e1"
    assert await world.told("dee", "group_event_promoted") == []
    mine = await world.ask("event_calendar", "cy", "upcoming", {})
    assert [(e["id"], e["rsvp"]) for e in mine["items"]] == [("e1", "going")]
    assert (await world.ask("event_calendar", "ana", "upcoming", {}))["items"] == []

    with pytest.raises(Rejected, match="capacity cannot be less"):
        await world.ask("group_event", "e1", "edit", {"group_id": "g", "by": "olga", "changes": {"capacity": 1}})
    await world.ask("group_event", "e1", "edit", {"group_id": "g", "by": "olga", "changes": {"capacity": 3}})
    going = await world.ask("group_event", "e1", "people", {"group_id": "g", "which": "going"})
    assert [p["id"] for p in going["items"]] == ["bo", "cy", "dee"], "a larger capacity lets the first waiting in"
    await world.settle()
    assert len(await world.told("dee", "group_event_promoted")) == 1
    with pytest.raises(NotFound):
        await world.ask("group_event", "e1", "view", {"group_id": "another", "viewer": "cy"})


async def test_answers_close_at_the_start_and_the_start_is_in_the_future(world, clock):
    await world.users("olga", "ana")
    await world.group("g", "olga", "ana")
    with pytest.raises(Rejected, match="future"):
        await world.event("old", start=clock.now - 60)
    with pytest.raises(Rejected, match="future"):
        await world.event("far", start=clock.now + 400 * DAY)
    await world.event("e1", start=clock.now + 3_600)
    clock.now += 3_600
    with pytest.raises(Rejected, match="started"):
        await world.rsvp("e1", "ana")
    with pytest.raises(Rejected, match="started"):
        await world.ask("group_event", "e1", "cancel", {"group_id": "g", "by": "olga"})


# -- notices: reminders, changes, cancellation ------------------------------------------------------


async def test_reminders_fire_once_each_even_when_the_host_is_killed_around_them(store_url, clock):
    """On both stores: the reminders index and the journal are each store's own."""
    tag = uuid.uuid4().hex[:8]  # PostgreSQL's database is the session's: ids of this test alone
    olga, ana, bo, group, event = (f"{name}{tag}" for name in ("olga", "ana", "bo", "g", "e"))
    world = await World(store_url, clock).start()
    await world.users(olga, ana, bo)
    await world.group(group, olga, ana, bo)
    start = clock.now + 3 * DAY
    await world.event(event, group_id=group, by=olga, start=start)
    await world.rsvp(event, ana, group_id=group)
    await world.rsvp(event, bo, going=False, group_id=group)
    await world.crash()  # the timers were set: only the journal and the reminders index know them

    world = await World(store_url, clock).start()  # nobody sends the event a message: the index wakes it
    clock.now = start - DAY
    assert await world.host.fire_timers() >= 1  # wakes it (and any other test's sleeper); it registers its timers
    assert await world.host.fire_timers() == 1  # the 24 h reminder rings
    await world.crash()  # before any snapshot: the journal says it rang

    world = await World(store_url, clock).start()
    await world.host.fire_timers()
    assert await world.host.fire_timers() == 0, "rung once, not again after the restart"
    await world.settle()
    assert [d["lead"] for d in await world.told(ana, "group_event_reminder")] == ["24h"]
    assert await world.told(bo, "group_event_reminder") == [], "only those going are reminded"

    clock.now = start - 3_600
    assert await world.host.fire_timers() == 1
    await world.settle()
    reminders = [r for r in await world.events_of("group_event.reminder") if r.source_id == event]
    assert len(reminders) == 2
    # A relay that lost its cursor sends them again (from just before them: PostgreSQL's outbox is shared).
    world.relay.progress["inbox.on_group_event_reminder"].position = reminders[0].position - 1
    await world.settle()
    assert [d["lead"] for d in await world.told(ana, "group_event_reminder")] == ["1h", "24h"]
    await world.stop()


async def test_a_moved_event_reminds_for_its_new_time_and_tells_those_going(world, clock):
    await world.users("olga", "ana", "bo", "cy")
    await world.group("g", "olga", "ana", "bo", "cy")
    start = clock.now + 3 * DAY
    await world.event("e1", start=start, capacity=1)
    await world.rsvp("e1", "ana")
    await world.rsvp("e1", "bo")  # waiting
    clock.now = start - DAY
    assert await world.host.fire_timers() == 1  # 24 h before the first start
    edit = {"group_id": "g", "by": "olga", "changes": {"title": "Sunday long run"}}
    await world.ask("group_event", "e1", "edit", edit)
    moved = {**edit, "changes": {"start": start + DAY, "meeting_point": {**MEETING, "label": "Medicis, north gate"}}}
    await world.ask("group_event", "e1", "edit", moved)
    await world.settle()
    changed = await world.told("ana", "group_event_changed")
    assert len(changed) == 1 and changed[0]["moved"] == ["start", "meeting_point"], "a new title alone is no news"
    assert changed[0]["meeting_point"] == "Medicis, north gate"
    assert await world.told("bo", "group_event_changed") == [], "those waiting are not told"
    calendar = (await world.ask("event_calendar", "bo", "upcoming", {}))["items"]
    assert calendar[0]["start"] == start + DAY and calendar[0]["title"] == "Sunday long run"

    clock.now = start + DAY - DAY
    assert await world.host.fire_timers() == 1, "the 24 h reminder again, for the new start"
    await world.settle()
    assert [d["start"] for d in await world.told("ana", "group_event_reminder")] == [start + DAY, start]


async def test_a_cancelled_event_tells_everyone_who_answered_and_leaves_their_calendars(world, clock):
    await world.users("olga", "ana", "bo", "cy", "dee")
    await world.group("g", "olga", "ana", "bo", "cy", "dee")
    start = clock.now + 2 * DAY
    await world.event("e1", start=start, capacity=1)
    await world.rsvp("e1", "ana")
    await world.rsvp("e1", "bo")  # waiting
    await world.rsvp("e1", "cy", going=False)
    view = await world.ask("group_event", "e1", "cancel", {"group_id": "g", "by": "olga"})
    assert view["status"] == "cancelled"
    with pytest.raises(Rejected, match="cancelled"):
        await world.rsvp("e1", "dee")
    await world.settle()
    for user in ("ana", "bo", "cy"):
        assert [d["event_id"] for d in await world.told(user, "group_event_cancelled")] == ["e1"], user
        assert (await world.ask("event_calendar", user, "upcoming", {}))["items"] == []
    assert await world.told("dee", "group_event_cancelled") == []
    listed = await world.ask("group_event_index", "g", "browse", {"when": "upcoming"})
    assert [(c["id"], c["status"]) for c in listed["items"]] == [("e1", "cancelled")]
    clock.now = start - 3_600
    assert await world.host.fire_timers() == 0, "a cancelled event reminds nobody"


async def test_a_member_who_leaves_or_is_banned_is_taken_off_the_events_to_come(world, clock):
    await world.users("olga", "ana", "bo", "cy")
    await world.group("g", "olga", "ana", "bo", "cy")
    start = clock.now + 2 * DAY
    await world.event("e1", start=start, capacity=1)
    await world.rsvp("e1", "ana")
    await world.rsvp("e1", "bo")  # waiting
    await world.settle()
    await world.ask("group_members", member_shard("g", "ana"), "leave", {"user_id": "ana"})
    await world.ask("group_members", member_shard("g", "cy"), "ban", {"user_id": "cy", "by": "olga"})
    await world.settle()
    going = await world.ask("group_event", "e1", "people", {"group_id": "g", "which": "going"})
    assert [p["id"] for p in going["items"]] == ["bo"], "ana's place went to the first waiting"
    assert (await world.ask("event_calendar", "ana", "upcoming", {}))["items"] == []
    assert [d["event_id"] for d in await world.told("bo", "group_event_promoted")] == ["e1"]
    clock.now = start - 3_600
    await world.host.fire_timers()
    await world.settle()
    assert await world.told("ana", "group_event_reminder") == [], "no reminder from a group she left"
    assert sorted(d["lead"] for d in await world.told("bo", "group_event_reminder")) == ["1h", "24h"]


async def test_an_invitation_is_told_to_the_invitee_unless_muted(world):
    await world.users("olga", "ana", "bo")
    await world.group("g", "olga")
    await world.ask("inbox", "bo", "set_muted", {"type": "group_invitation", "muted": True})
    for user in ("ana", "bo"):
        await world.ask("group_members", member_shard("g", user), "invite", {"user_id": user, "by": "olga"})
    await world.settle()
    assert await world.told("ana", "group_invitation") == [{"group_id": "g", "by": "olga", "url": "/groups/g"}]
    assert await world.told("bo", "group_invitation") == []


# -- did it together -----------------------------------------------------------------------------------


async def test_attendees_workouts_are_linked_once_and_their_cards_say_who_else(world, clock):
    people = await world.users("olga", "ana", "bo", "cy", "dee", "fan")
    await world.group("g", *people[:5])
    await world.ask("account", "ana", "follow_requested", {"follower": "fan"})
    start = clock.now + DAY
    await world.event("e1", start=start)
    for user in ("ana", "bo", "cy"):
        await world.rsvp("e1", user)
    await world.settle()  # their calendars know the event before the workouts come
    here = [MEETING["lat"], MEETING["lon"]]
    clock.now = start + 2 * 3_600 + 600  # uploaded after the run
    await world.workout("ana", "wa", start + 120, here)
    await world.workout("bo", "wb", start - 25 * 60, _north_of(MEETING, 0.5), visibility="followers")
    await world.workout("cy", "wc", start + 5 * 3_600, here)  # later that day: not the event
    await world.workout("dee", "wd", start, here)  # was there, never said yes
    await world.settle()
    attended = await world.events_of("group_event.attended")
    assert sorted((r.user_id, r.source_id) for r in attended) == [("ana", "ana"), ("bo", "bo")]
    await world.workout("ana", "wa2", start + 600, here)  # a second watch of the same run
    for progress in world.relay.progress.values():  # and a relay that sends everything again
        progress.position = 0
    await world.settle()
    assert len(await world.events_of("group_event.attended")) == 2, "once per athlete and event"
    badges = (await world.ask("achievements", "ana", "summary", {}))["badges"]
    assert [b["id"] for b in badges if b["id"] == "group_event_attended"] == ["group_event_attended"]
    assert (await world.ask("group_event", "e1", "view", {"group_id": "g"}))["attended"] == 2

    assert await world.events_of("group_event.together") == [], "told once the window is over"
    clock.now = start + 3 * 3_600
    assert await world.host.fire_timers() == 1
    await world.settle()
    cards = {i["id"]: i for i in (await world.ask("group_feed", "g", "read", {"limit": 50}))["items"]}
    assert cards["wa"]["together"]["athletes"] == [], "bo's workout is followers-only: not named to others"
    assert cards["wb"]["together"] == {"group_id": "g", "event_id": "e1", "title": "Saturday long run",
                                       "athletes": [{"user_id": "ana", "name": "Ana"}], "count": 1}  # fmt: skip
    assert "together" not in cards["wc"] and "together" not in cards["wd"]
    own = {i["id"]: i for i in (await world.ask("feed", "bo", "read", {"limit": 50}))["items"]}
    assert own["wb"]["together"]["athletes"] == [{"user_id": "ana", "name": "Ana"}]
    followers = {i["id"]: i for i in (await world.ask("feed", "fan", "read", {"limit": 50}))["items"]}
    assert followers["wa"]["together"]["event_id"] == "e1", "a follower's feed shows it on the card too"

    # A late upload is linked and learns of the others at once; it tells no one a second time.
    told = len(await world.events_of("group_event.together"))
    clock.now = start + 2 * DAY
    await world.workout("cy", "wc2", start + 60, here)
    await world.settle()
    together = await world.events_of("group_event.together")
    assert len(together) == told + 1
    cards = {i["id"]: i for i in (await world.ask("group_feed", "g", "read", {"limit": 50}))["items"]}
    assert [a["user_id"] for a in cards["wc2"]["together"]["athletes"]] == ["ana"]


async def test_private_and_far_workouts_and_old_calendars_are_never_linked(world, clock):
    await world.users("olga", "ana")
    await world.group("g", "olga", "ana")
    start = clock.now + DAY
    await world.event("e1", start=start)
    await world.rsvp("e1", "ana")
    await world.settle()
    here = [MEETING["lat"], MEETING["lon"]]
    clock.now = start + 3_600
    await world.workout("ana", "private", start, here, visibility="private")
    await world.workout("ana", "far", start, _north_of(MEETING, 1.5))
    await world.workout("ana", "indoor", start, None)
    await world.settle()
    assert await world.events_of("group_event.attended") == []
    clock.now = start + 8 * DAY  # the calendar has let the event go
    await world.workout("ana", "late", start, here)
    await world.settle()
    assert await world.events_of("group_event.attended") == []
