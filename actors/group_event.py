"""One group event (a joint workout): what, when and where, who is going, the waitlist, the
reminders before the start, and the athletes who did it together (docs/groups.md, "Group events").

The event is the authority on its answers: an RSVP, a cancellation, a promotion from the waitlist is
one turn of this entity, told to the rest through domain events committed with it: the athlete's
calendar (``actors/group_event_calendar.py``) keeps its copy from ``group_event.answered``, the
group's list of events (``actors/group_event_index.py``) from ``group_event.listed``, inboxes hear
of changes, cancellations, promotions and reminders. Reminders are the engine's durable timers, so a
restart neither loses nor repeats one. The group's rules (who may create, edit, answer) are checked
by the API from the group and the member shards before it asks the event.

Bounded: at most ``CAPACITY_MOST`` going and ``WAITLIST_MOST`` waiting; the newest
``DECLINED_KEPT`` "not going" answers (so a cancellation reaches them); attendees are a subset of
those who were going. A snapshot is thus at most 15,000 user ids: 630 KiB measured
(``loadtest/bench_group_event.py``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from actors.erasing import pseudonymise
from actors.events import (
    GROUP_EVENT_ANSWERED,
    GROUP_EVENT_ATTENDED,
    GROUP_EVENT_CANCELLED,
    GROUP_EVENT_CHANGED,
    GROUP_EVENT_LISTED,
    GROUP_EVENT_REMINDER,
    GROUP_EVENT_TOGETHER,
    GROUP_EVENT_WITHDRAWN,
)
from actors.places import distance_km
from actors.route import check_link
from actors.workout import SPORTS
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = [
    "GroupEvent",
    "CAPACITY_MOST",
    "WAITLIST_MOST",
    "DECLINED_KEPT",
    "TITLE_LENGTH",
    "DESCRIPTION_LENGTH",
    "LABEL_LENGTH",
    "ROUTE_LENGTH",
    "PACE_GROUPS_MOST",
    "PACE_LABEL_LENGTH",
    "AHEAD_MOST_S",
    "REMINDERS",
    "WINDOW_S",
    "NEAR_KM",
    "TOGETHER_AFTER_S",
    "TOGETHER_SHOWN",
    "AUDIENCES",
    "ascending_page",
    "check_details",
    "check_time_zone",
    "matches",
    "together_card",
]

CAPACITY_MOST = 5_000
WAITLIST_MOST = 5_000
DECLINED_KEPT = 5_000
TITLE_LENGTH = 120
DESCRIPTION_LENGTH = 2_000
LABEL_LENGTH = 120
ROUTE_LENGTH = 500
PACE_GROUPS_MOST = 10
PACE_LABEL_LENGTH = 40
AHEAD_MOST_S = 366 * 86_400  # an event starts within a year
REMINDERS = (("24h", 86_400.0), ("1h", 3_600.0))  # (name, how long before the start)
WINDOW_S = (-30 * 60.0, 2 * 3_600.0)  # a workout that started this long before/after the event's start
NEAR_KM = 1.0  # ...within this distance of the meeting point, by an athlete who was going: did it together
TOGETHER_AFTER_S = 3 * 3_600.0  # the roster goes to the feeds this long after the start (the window is over)
TOGETHER_SHOWN = 20  # names on a card; the count says how many more
AUDIENCES = ("going", "yes", "answered")  # going; going or waiting; everyone who answered
_DETAILS = ("title", "description", "sport", "start", "time_zone", "meeting_point", "route", "linked_route",
            "pace_groups", "capacity")  # fmt: skip
_MOVES = ("start", "time_zone", "meeting_point")  # a change of these is news to those going


def check_time_zone(name: Any) -> str:
    """An IANA time zone name, or ``Rejected``."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or name.startswith("/") or ".." in name:
        raise Rejected("a time zone is an IANA name such as Europe/Paris")
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise Rejected(f"{name!r} is not a time zone (an IANA name such as Europe/Paris)") from None
    return name


def _text(details: dict, name: str, most: int, required: bool) -> None:
    value = details.get(name)
    if value is None and not required:
        return
    if not isinstance(value, str) or not (0 < len(value.strip()) if required else True) or len(value) > most:
        raise Rejected(f"{name} has {'1' if required else '0'} to {most} characters")


def check_details(details: dict, *, partial: bool) -> None:
    """Refuse (``Rejected``) a detail outside its bounds: the API's models check the same."""
    unknown = set(details) - set(_DETAILS)
    if unknown:
        raise Rejected(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    if not partial:
        missing = {"title", "sport", "start", "time_zone", "meeting_point"} - set(details)
        if missing:
            raise Rejected(f"an event needs {', '.join(sorted(missing))}")
    if "title" in details:
        _text(details, "title", TITLE_LENGTH, required=True)
    if "description" in details:
        _text(details, "description", DESCRIPTION_LENGTH, required=False)
    if "route" in details:
        _text(details, "route", ROUTE_LENGTH, required=False)
    if "sport" in details and details["sport"] not in SPORTS:
        raise Rejected(f"a sport is one of {', '.join(SPORTS)}")
    if details.get("linked_route") is not None:
        check_link(details["linked_route"], (details["sport"],) if "sport" in details else ())
    if "start" in details:
        start = details["start"]
        if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
            raise Rejected("a start is an instant (unix seconds)")
    if "time_zone" in details:
        check_time_zone(details["time_zone"])
    if "meeting_point" in details:
        point = details["meeting_point"]
        if not isinstance(point, dict) or set(point) != {"lat", "lon", "label"}:
            raise Rejected("a meeting point is a lat, a lon and a label")
        lat, lon = point["lat"], point["lon"]
        if not (
            isinstance(lat, int | float) and isinstance(lon, int | float) and -90 <= lat <= 90 and -180 <= lon <= 180
        ):
            raise Rejected("a meeting point is a latitude in [-90, 90] and a longitude in [-180, 180]")
        _text(point, "label", LABEL_LENGTH, required=True)
    if "pace_groups" in details:
        groups = details["pace_groups"]
        if not isinstance(groups, list) or len(groups) > PACE_GROUPS_MOST:
            raise Rejected(f"at most {PACE_GROUPS_MOST} pace groups")
        for group in groups:
            if not isinstance(group, dict) or set(group) != {"label", "pace_s_per_km"}:
                raise Rejected("a pace group is a label and a pace (seconds per km, or null)")
            _text(group, "label", PACE_LABEL_LENGTH, required=True)
            pace = group["pace_s_per_km"]
            if pace is not None and not (isinstance(pace, int | float) and 60 <= pace <= 3_600):
                raise Rejected("a pace is 60 to 3,600 seconds per km")
    if "capacity" in details:
        capacity = details["capacity"]
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= CAPACITY_MOST:
            raise Rejected(f"a capacity is 1 to {CAPACITY_MOST}")


def matches(card: dict, summary: dict, start_point: list[float] | None) -> bool:
    """Whether a workout (its summary and start point) was done at this event: it started within
    ``WINDOW_S`` of the event's start and within ``NEAR_KM`` of its meeting point."""
    start = summary.get("start")
    if start_point is None or isinstance(start, bool) or not isinstance(start, int | float):
        return False
    if not card["start"] + WINDOW_S[0] <= start <= card["start"] + WINDOW_S[1]:
        return False
    point = card["meeting_point"]
    return distance_km(start_point, (point["lat"], point["lon"])) <= NEAR_KM


def together_card(fields: dict) -> dict:
    """What a workout's card in a feed says of a group event done together (``group_event.together``)."""
    return {name: fields[name] for name in ("group_id", "event_id", "title", "athletes", "count")}


def ascending_page(items: list[dict], after: list | None, limit: int, key: tuple[str, str] = ("at", "id")) -> dict:
    """Items (oldest first, by ``key``) after the cursor ``after``; ``next`` is the last one's key."""
    limit = max(1, min(int(limit), 100))
    at_key, id_key = key
    if after is not None:
        cursor = (after[0], after[1])
        items = [item for item in items if (item[at_key], item[id_key]) > cursor]
    chosen = items[:limit]
    more = len(items) > limit
    return {"items": chosen, "next": [chosen[-1][at_key], chosen[-1][id_key]] if more else None}


class GroupEvent(Entity):
    kind = "group_event"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.group_id = ""
        self.created_by = ""
        self.created_at = 0.0
        self.details: dict[str, Any] = {}
        self.status = "scheduled"  # or cancelled
        self.going: dict[str, float] = {}  # user -> since when, in that order
        self.waitlist: dict[str, float] = {}  # user -> since when: the queue, first come first promoted
        self.declined: dict[str, float] = {}  # user -> when they said no (the newest DECLINED_KEPT)
        self.attended: dict[str, dict] = {}  # user -> {"workout_id", "name", "visibility", "at"}
        self.reminded: dict[str, float] = {}  # reminder name -> the start it was sent for
        self.told_together = False
        self.revision = 0

    # -- reading -----------------------------------------------------------------

    def _require(self, group_id: str | None) -> None:
        if not self.group_id or (group_id is not None and group_id != self.group_id):
            raise NotFound("no such event")

    def _answer(self, user: str | None) -> str | None:
        if user is None:
            return None
        if user in self.going:
            return "going"
        if user in self.waitlist:
            return "waitlisted"
        return "not_going" if user in self.declined else None

    def _position(self, user: str) -> int | None:
        if user not in self.waitlist:
            return None
        return list(self.waitlist).index(user) + 1

    def _card(self) -> dict:
        """What the group's list and the athletes' calendars keep of the event."""
        return {
            "id": self.id,
            "group_id": self.group_id,
            **{name: self.details[name] for name in ("title", "sport", "start", "time_zone", "meeting_point")},
            "status": self.status,
            "revision": self.revision,
        }

    @query
    def card(self, group_id: str | None = None) -> dict:
        self._require(group_id)
        return self._card()

    @query
    def view(self, group_id: str, viewer: str | None = None) -> dict:
        self._require(group_id)
        zone = ZoneInfo(self.details["time_zone"])
        return {
            "id": self.id,
            "group_id": self.group_id,
            "linked_route": None,
            **self.details,
            "start_local": datetime.fromtimestamp(self.details["start"], zone).isoformat(),
            "status": self.status,
            "started": self.now >= self.details["start"],
            "going": len(self.going),
            "waitlist": len(self.waitlist),
            "attended": len(self.attended),
            "created_by": self.created_by,
            "created_at": self.created_at,
            "revision": self.revision,
            "me": None if viewer is None else {"rsvp": self._answer(viewer), "position": self._position(viewer)},
        }

    @query
    def audience(self, which: str = "going") -> list[str]:
        """Who hears of the event: ``going``; ``yes`` (going or waiting); ``answered`` (everyone who did)."""
        if which not in AUDIENCES:
            raise Rejected(f"an audience is one of {', '.join(AUDIENCES)}")
        if not self.group_id:
            return []
        people = list(self.going)
        if which in ("yes", "answered"):
            people += list(self.waitlist)
        if which == "answered":
            people += list(self.declined)
        return people

    @query
    def people(self, group_id: str, which: str = "going", after: list | None = None, limit: int = 50) -> dict:
        """Those going (in the order they said so) or waiting (in the waitlist's order), paged."""
        self._require(group_id)
        if which not in ("going", "waitlist"):
            raise Rejected("which is going or waitlist")
        kept = self.going if which == "going" else self.waitlist
        items = [{"id": user, "at": at} for user, at in kept.items()]
        items.sort(key=lambda i: (i["at"], i["id"]))
        found = ascending_page(items, after, limit)
        for item in found["items"]:
            if attended := self.attended.get(item["id"]):
                item["workout_id"] = attended["workout_id"]
        return found

    # -- changing ----------------------------------------------------------------

    def _changed(self) -> None:
        self.revision += 1
        self.emit(GROUP_EVENT_LISTED, group_id=self.group_id, event_id=self.id, card=self._card())

    def _schedule_timers(self) -> None:
        start = self.details["start"]
        for name, lead in REMINDERS:
            due = start - lead
            if self.status == "scheduled" and due > self.now and self.reminded.get(name) != start:
                self.set_timer(f"remind-{name}", due, "remind", {"name": name})
            else:
                self.cancel_timer(f"remind-{name}")
        if self.status == "scheduled":
            self.set_timer("together", start + TOGETHER_AFTER_S, "tell_together")
        else:
            self.cancel_timer("together")

    def _open(self) -> None:
        if self.status != "scheduled":
            raise Rejected("this event was cancelled")
        if self.now >= self.details["start"]:
            raise Rejected("this event has started")

    @update
    def create(self, group_id: str, by: str, details: dict) -> dict:
        if self.group_id:
            raise Rejected("this event already exists")
        check_details(details, partial=False)
        start = float(details["start"])
        if not self.now < start <= self.now + AHEAD_MOST_S:
            raise Rejected("an event starts in the future, within a year")
        self.group_id, self.created_by, self.created_at = group_id, by, self.now
        self.details = {"description": "", "route": None, "linked_route": None, "pace_groups": [],
                        "capacity": CAPACITY_MOST, **details, "start": start}  # fmt: skip
        self.details["title"] = self.details["title"].strip()
        self._schedule_timers()
        self._changed()
        return self.view(group_id, by)

    @update
    def edit(self, group_id: str, by: str, changes: dict) -> dict:
        """Change the details (the group's admins; the API checks); a change of time or place is news to
        those going. A larger capacity lets the first waiting in."""
        self._require(group_id)
        self._open()
        if not changes:
            raise Rejected("nothing to change")
        check_details(changes, partial=True)
        details = {**self.details, **changes}
        if details.get("linked_route") is not None:  # the event's sport, changed or not, is the route's
            check_link(details["linked_route"], (details["sport"],))
        start = float(details["start"])
        if "start" in changes and not self.now < start <= self.now + AHEAD_MOST_S:
            raise Rejected("an event starts in the future, within a year")
        if details["capacity"] < len(self.going):
            raise Rejected(f"{len(self.going)} athletes are going: the capacity cannot be less")
        moved = [name for name in _MOVES if name in changes and changes[name] != self.details[name]]
        self.details = {**details, "start": start, "title": details["title"].strip()}
        self._promote()
        self._schedule_timers()
        self._changed()
        self.emit(GROUP_EVENT_CHANGED, group_id=self.group_id, event_id=self.id, card=self._card(), moved=moved, by=by)
        return self.view(group_id, by)

    @update
    def cancel(self, group_id: str, by: str) -> dict:
        """Cancelled for good: everyone who answered hears of it."""
        self._require(group_id)
        self._open()
        self.status = "cancelled"
        self._schedule_timers()
        self._changed()
        self.emit(GROUP_EVENT_CANCELLED, group_id=self.group_id, event_id=self.id, card=self._card(), by=by)
        return self.view(group_id, by)

    @update
    def answer(self, group_id: str, user_id: str, going: bool) -> dict:
        """An RSVP (a member's; the API checks): going, or on the waitlist past the capacity; not going
        frees a place for the first waiting."""
        self._require(group_id)
        self._open()
        if not isinstance(going, bool):
            raise Rejected("going is true or false")
        before = self._answer(user_id)
        if going and before not in ("going", "waitlisted"):
            if len(self.going) < self.details["capacity"]:
                self.going[user_id] = self.now
            elif len(self.waitlist) < WAITLIST_MOST:
                self.waitlist[user_id] = self.now
            else:
                raise Rejected("this event is full and so is its waitlist")
            self.declined.pop(user_id, None)
        elif not going and before != "not_going":
            self.going.pop(user_id, None)
            self.waitlist.pop(user_id, None)
            self.declined[user_id] = self.now
            while len(self.declined) > DECLINED_KEPT:
                del self.declined[next(iter(self.declined))]
        after = self._answer(user_id)
        if after != before:
            self._tell(user_id, after or "not_going", promoted=False)
            self._promote()
        return {"rsvp": after, "position": self._position(user_id), "going": len(self.going),
                "waitlist": len(self.waitlist)}  # fmt: skip

    def _promote(self) -> None:
        while self.waitlist and len(self.going) < self.details["capacity"]:
            user = next(iter(self.waitlist))
            del self.waitlist[user]
            self.going[user] = self.now
            self._tell(user, "going", promoted=True)

    def _tell(self, user_id: str, answer: str, promoted: bool) -> None:
        self.emit(GROUP_EVENT_ANSWERED, group_id=self.group_id, event_id=self.id, user_id=user_id, answer=answer,
                  promoted=promoted, card=self._card())  # fmt: skip

    # -- timers ------------------------------------------------------------------

    @update
    def remind(self, name: str) -> None:
        """A reminder's timer: those going hear of the event ``name`` (24h, 1h) before it."""
        if not self.group_id or self.status != "scheduled" or self.now >= self.details["start"]:
            return
        start = self.details["start"]
        if self.reminded.get(name) == start or name not in dict(REMINDERS):
            return
        self.reminded[name] = start
        self.emit(GROUP_EVENT_REMINDER, group_id=self.group_id, event_id=self.id, card=self._card(), lead=name)

    @update
    def tell_together(self) -> None:
        """After the window: each athlete matched so far learns who else did it (their feeds' cards)."""
        if not self.group_id or self.told_together:
            return
        self.told_together = True
        for user in self.attended:
            self._together(user)

    def _together(self, user: str) -> None:
        attended = self.attended[user]
        others = [{"user_id": other, "name": seen["name"]} for other, seen in self.attended.items()
                  if other != user and seen["visibility"] == "public"]  # fmt: skip
        self.emit(GROUP_EVENT_TOGETHER, group_id=self.group_id, event_id=self.id, user_id=user,
                  workout_id=attended["workout_id"], title=self.details["title"], athletes=others[:TOGETHER_SHOWN],
                  count=len(others))  # fmt: skip

    @react(GROUP_EVENT_WITHDRAWN, to=To.field("event_id"))
    def on_withdrawn(self, event: Event) -> None:
        """An athlete out of the group: off the answers (not among those who said no: they said nothing), and
        their place to the first waiting. Only before the start: the roster of a past event stays."""
        user = event.fields["user_id"]
        if self.group_id != event.fields["group_id"] or self.status != "scheduled" or self.now >= self.details["start"]:
            return
        if self.going.pop(user, None) is not None or self.waitlist.pop(user, None) is not None:
            self._promote()

    # -- erasure -------------------------------------------------------------------

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their answer and attendance go; before the start their place goes to the first waiting, as a
        withdrawal's does. An event they created stays, created by the stand-in."""
        self.declined.pop(user_id, None)
        self.attended.pop(user_id, None)
        gone = self.going.pop(user_id, None) is not None or self.waitlist.pop(user_id, None) is not None
        if gone and self.group_id and self.status == "scheduled" and self.now < self.details["start"]:
            self._promote()
        return pseudonymise(self, user_id, stand_in)

    # -- did it together -----------------------------------------------------------

    @react(GROUP_EVENT_ATTENDED, to=To.field("event_id"))
    def on_attended(self, event: Event) -> None:
        """An athlete's calendar matched their workout to this event (once per athlete)."""
        fields = event.fields
        user = fields["user_id"]
        if not self.group_id or user in self.attended:
            return
        self.attended[user] = {"workout_id": fields["workout_id"], "name": fields["user_name"],
                               "visibility": fields["visibility"], "at": event.at}  # fmt: skip
        if self.told_together:  # a late upload: it learns of the others now; theirs are already told
            self._together(user)
