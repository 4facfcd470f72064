"""One athlete's calendar of group events (``<user id>``): the events they said yes to (going or on
the waitlist), kept from the events' ``group_event.answered``, ``.changed`` and ``.cancelled``;
and where "did it together" is decided.

Each workout the athlete records (``workout.recorded``, not private, with a start point) is matched
against the events they were going to: a workout that started within ``WINDOW_S`` of an event's
start and within ``NEAR_KM`` of its meeting point was done there. The calendar marks the event
attended and emits ``group_event.attended`` in the same turn, so it is emitted once per athlete and
event whatever is redelivered; the event keeps the roster, the athlete's achievements award the badge.

Bounded: ``CALENDAR_MOST`` events (the API refuses a yes beyond it); an event leaves the calendar
``KEPT_AFTER_S`` after its start (a workout uploaded later is not matched).
"""

from __future__ import annotations

from actors.events import (
    GROUP_EVENT_ANSWERED,
    GROUP_EVENT_ATTENDED,
    GROUP_EVENT_CANCELLED,
    GROUP_EVENT_CHANGED,
    GROUP_EVENT_WITHDRAWN,
    GROUP_LEFT,
    WORKOUT_RECORDED,
)
from actors.group_event import WINDOW_S, GroupEvent, ascending_page, matches
from actors.workout import start_point
from engine.entity import Entity, query
from engine.events import Event, To, react

__all__ = ["EventCalendar", "CALENDAR_MOST", "KEPT_AFTER_S"]

CALENDAR_MOST = 200
KEPT_AFTER_S = 7 * 86_400.0


def _linkable(fields: dict) -> bool:
    return fields["visibility"] != "private" and start_point(fields["summary"]) is not None


class EventCalendar(Entity):
    kind = "event_calendar"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.events: dict[str, dict] = {}  # event id -> {"card", "answer", "attended": workout id | None}

    def _prune(self) -> None:
        self.events = {e: entry for e, entry in self.events.items()
                       if entry["card"]["start"] + KEPT_AFTER_S >= self.now}  # fmt: skip

    @react(GROUP_EVENT_ANSWERED, to=To.field("user_id"))
    def on_answered(self, event: Event) -> None:
        fields = event.fields
        self._prune()
        entry = self.events.get(fields["event_id"])
        if fields["answer"] == "not_going":
            if entry is not None and entry["attended"] is None:
                del self.events[fields["event_id"]]
            return
        if entry is None and len(self.events) >= CALENDAR_MOST:
            return  # the API refuses a yes past the bound; one that slipped by stays off the calendar
        self.events[fields["event_id"]] = {"card": fields["card"], "answer": fields["answer"],
                                           "attended": None if entry is None else entry["attended"]}  # fmt: skip

    @react(GROUP_EVENT_CHANGED, to=To.ask(GroupEvent, "event_id", GroupEvent.audience, which="yes"))
    def on_changed(self, event: Event) -> None:
        entry = self.events.get(event.fields["event_id"])
        if entry is not None and entry["card"]["revision"] < event.fields["card"]["revision"]:
            entry["card"] = event.fields["card"]

    @react(GROUP_EVENT_CANCELLED, to=To.ask(GroupEvent, "event_id", GroupEvent.audience, which="yes"))
    def on_cancelled(self, event: Event) -> None:
        self.events.pop(event.fields["event_id"], None)

    @react(GROUP_LEFT, to=To.field("user_id"))
    def on_left_group(self, event: Event) -> None:
        """No longer a member (left, removed, banned): off the group's events that have not started, so no
        reminder or change of a group they are out of reaches them, and their place goes to the waitlist."""
        group_id = event.fields["group_id"]
        for event_id, entry in list(self.events.items()):
            card = entry["card"]
            if card["group_id"] == group_id and card["start"] > self.now:
                del self.events[event_id]
                self.emit(GROUP_EVENT_WITHDRAWN, group_id=group_id, event_id=event_id, user_id=self.id,
                          reason=event.fields["reason"])  # fmt: skip

    @react(WORKOUT_RECORDED, to=To.field("owner"), when=_linkable)
    def on_workout(self, event: Event) -> None:
        """Did the athlete do one of their events with this workout? Each event is attended once."""
        self._prune()
        fields = event.fields
        summary, point = fields["summary"], start_point(fields["summary"])
        for event_id, entry in self.events.items():
            card = entry["card"]
            if entry["answer"] != "going" or entry["attended"] is not None or card["status"] != "scheduled":
                continue
            if matches(card, summary, point):
                entry["attended"] = fields["workout_id"]
                self.emit(GROUP_EVENT_ATTENDED, user_id=self.id, user_name=fields["owner_name"],
                          group_id=card["group_id"], event_id=event_id, workout_id=fields["workout_id"],
                          visibility=fields["visibility"])  # fmt: skip

    @query
    def everything(self) -> list[dict]:
        """Every event kept, with the answer and attendance (the athlete's export)."""
        return [{"event_id": event_id, **entry} for event_id, entry in sorted(self.events.items())]

    @query
    def count(self) -> int:
        return sum(1 for entry in self.events.values() if entry["card"]["start"] + KEPT_AFTER_S >= self.now)

    @query
    def upcoming(self, after: list | None = None, limit: int = 20) -> dict:
        """The events said yes to that are not over yet, soonest first, paged by ``[start, id]``."""
        items = [
            {**entry["card"], "rsvp": entry["answer"]}
            for entry in self.events.values()
            if entry["card"]["start"] + WINDOW_S[1] >= self.now and entry["card"]["status"] == "scheduled"
        ]
        items.sort(key=lambda c: (c["start"], c["id"]))
        return ascending_page(items, after, limit, key=("start", "id"))
