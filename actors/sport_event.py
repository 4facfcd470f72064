"""One organizer's event (``<event id>``), offline at a venue or online: its details, price tiers,
registration questions, the races and group rides it holds, and its registrations: places, the
waitlist and its promotion, bib numbers, check-in, cancellations and the refunds they leave due
(docs/sport-events.md).

The event is the authority on its registrations: each change is one turn of this entity, told to the
athlete's list (``actors/sport_event_entries.py``) by ``sport_event.registration``, to the event
calendar (``actors/sport_event_directory.py``) by ``sport_event.listed``, to inboxes by reminders,
promotions and cancellation. The 24 h reminder is the engine's durable timer. There is no checkout:
a paid tier's registration is ``payment: pending`` until the organizer records it paid; a cancelled
paid registration records a refund ``due`` (state only).

Bounded: ``CAPACITY_MOST`` places, ``WAITLIST_MOST`` waiting, ``REGISTRATIONS_MOST`` registrations in
all (cancelled ones included, so refunds stay on record); each with at most ``QUESTIONS_MOST``
answers of ``ANSWER_LENGTH`` characters: a snapshot stays under about 5 MB.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from actors.erasing import pseudonymise
from actors.events import (
    SPORT_EVENT_CANCELLED,
    SPORT_EVENT_LISTED,
    SPORT_EVENT_REGISTRATION,
    SPORT_EVENT_REMINDER,
)
from actors.group_event import ascending_page, check_time_zone
from actors.places import index_cell
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected

__all__ = [
    "SportEvent",
    "CAPACITY_MOST",
    "WAITLIST_MOST",
    "REGISTRATIONS_MOST",
    "TIERS_MOST",
    "QUESTIONS_MOST",
    "CHOICES_MOST",
    "ANSWER_LENGTH",
    "RACES_MOST",
    "DIRECTORY_SHARDS",
    "REMINDER_LEAD_S",
    "AUDIENCES",
    "check_answers",
    "directory_shard",
]

CAPACITY_MOST = 5_000  # a 40,000-runner marathon is not held in one entity: docs/sport-events.md, "What is left"
WAITLIST_MOST = 1_000
REGISTRATIONS_MOST = 10_000
TIERS_MOST = 8
QUESTIONS_MOST = 10
CHOICES_MOST = 10
ANSWER_LENGTH = 300
RACES_MOST = 10
DIRECTORY_SHARDS = 8
REMINDER_LEAD_S = 86_400.0
AUDIENCES = ("registered", "active", "cancelled_with_event")
_ACTIVE = ("registered", "waitlisted")


def directory_shard(event_id: str) -> str:
    """The event calendar's shard that lists this event (``se0``..``se7``)."""
    return f"se{zlib.crc32(event_id.encode()) % DIRECTORY_SHARDS}"


def check_answers(questions: list[dict], answers: Any) -> dict[str, str]:
    """The answers to the registration questions, or ``Rejected`` saying which one is wrong."""
    if not isinstance(answers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in answers.items()):
        raise Rejected("answers map a question's id to a text")
    asked = {q["id"]: q for q in questions}
    unknown = sorted(set(answers) - set(asked))
    if unknown:
        raise Rejected(f"no question {unknown[0][:40]!r}")
    kept: dict[str, str] = {}
    for question_id, question in asked.items():
        answer = answers.get(question_id, "").strip()
        if not answer:
            if question["required"]:
                raise Rejected(f"the question {question['label']!r} needs an answer")
            continue
        if len(answer) > ANSWER_LENGTH:
            raise Rejected(f"an answer has at most {ANSWER_LENGTH} characters")
        if question["kind"] == "choice" and answer not in question["choices"]:
            raise Rejected(f"the answer to {question['label']!r} is one of its choices")
        kept[question_id] = answer
    return kept


def _check(details: dict) -> None:
    """The rules the API's models cannot say alone: one place (a venue or online), times, tiers that fit."""
    if (details.get("venue") is None) == (details.get("online_url") is None):
        raise Rejected("an event is at a venue or online (one of venue, online_url)")
    start, end = details["start"], details["end"]
    if not (isinstance(start, float) and isinstance(end, float) and math.isfinite(start) and math.isfinite(end)):
        raise Rejected("start and end are instants")
    if not start < end <= start + 31 * 86_400:
        raise Rejected("an event ends after its start, within 31 days")
    check_time_zone(details["time_zone"])
    tiers = details["tiers"]
    if not 1 <= len(tiers) <= TIERS_MOST or len({t["id"] for t in tiers}) != len(tiers):
        raise Rejected(f"an event has 1 to {TIERS_MOST} tiers with distinct ids")
    if not 1 <= details["capacity"] <= CAPACITY_MOST:
        raise Rejected(f"a capacity is 1 to {CAPACITY_MOST}")
    questions = details["questions"]
    if len(questions) > QUESTIONS_MOST or len({q["id"] for q in questions}) != len(questions):
        raise Rejected(f"at most {QUESTIONS_MOST} questions with distinct ids")
    for question in questions:
        if question["kind"] == "choice" and not 2 <= len(question["choices"]) <= CHOICES_MOST:
            raise Rejected(f"a choice question has 2 to {CHOICES_MOST} choices")
    if len(details["races"]) > RACES_MOST:
        raise Rejected(f"at most {RACES_MOST} races")


class SportEvent(Entity):
    kind = "sport_event"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.organizer = ""
        self.created_at = 0.0
        self.details: dict[str, Any] = {}
        self.status = "scheduled"  # or cancelled
        self.registrations: dict[str, dict] = {}  # registration id -> registration, in registration order
        self.active: dict[str, str] = {}  # user -> their registered or waitlisted registration's id
        self.waitlist: dict[str, float] = {}  # registration id -> since when: first come, first promoted
        self.registered = 0
        self.taken: dict[str, int] = {}  # tier id -> registered in it
        self.next_bib = 1  # bibs go up, never reused (a cancelled runner's bib stays theirs)
        self.reminded = False

    # -- reading -----------------------------------------------------------------

    def _require(self) -> None:
        if not self.organizer:
            raise NotFound("no such event")

    def _organizer(self, by: str) -> None:
        self._require()
        if by != self.organizer:
            raise Forbidden("only the event's organizer may do this")

    def _card(self) -> dict:
        """What the calendar, the athletes' lists and notifications keep of the event."""
        details = self.details
        venue = details["venue"]
        return {
            "id": self.id,
            "title": details["title"],
            "sport": details["sport"],
            "start": details["start"],
            "end": details["end"],
            "time_zone": details["time_zone"],
            "venue": venue,
            "online": venue is None,
            "region": None if venue is None else index_cell([venue["lat"], venue["lon"]]),
            "status": self.status,
            "organizer": self.organizer,
        }

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their registration stays for the books (payment, refund, bib) under the stand-in, without their
        answers; before the start their place goes to the first waiting, as a withdrawal's does. An event
        they organize stays, organized by the stand-in."""
        registration_id = self.active.pop(user_id, None)
        if registration_id is not None and self.status == "scheduled" and self.now < self.details["start"]:
            self._release(self.registrations[registration_id])
            self._promote()
        for registration in self.registrations.values():
            if registration["user"] == user_id:
                registration["answers"] = {}
        return pseudonymise(self, user_id, stand_in)

    def _tier(self, tier_id: str) -> dict:
        for tier in self.details["tiers"]:
            if tier["id"] == tier_id:
                return tier
        raise Rejected(f"no tier {tier_id[:40]!r}")

    def _taken(self, tier_id: str) -> int:
        return self.taken.get(tier_id, 0)

    def _room(self, tier_id: str) -> bool:
        tier = self._tier(tier_id)
        if self.registered >= self.details["capacity"]:
            return False
        return tier["capacity"] is None or self._taken(tier_id) < tier["capacity"]

    def _shown(self, registration: dict) -> dict:
        """A registration as its athlete and the organizer see it (the waitlist position is live)."""
        shown = {key: value for key, value in registration.items() if key != "answers"}
        shown["event_id"] = self.id
        shown["position"] = list(self.waitlist).index(registration["id"]) + 1 if registration["id"] in self.waitlist \
            else None  # fmt: skip
        return shown

    @query
    def card(self) -> dict:
        self._require()
        return self._card()

    @query
    def view(self, viewer: str | None = None) -> dict:
        self._require()
        tiers = [{**tier, "taken": self._taken(tier["id"])} for tier in self.details["tiers"]]
        mine = self.active.get(viewer or "")
        return {
            **self._card(),
            **{k: v for k, v in self.details.items() if k != "tiers"},
            "tiers": tiers,
            "registered": self.registered,
            "waitlist": len(self.waitlist),
            "created_at": self.created_at,
            "started": self.now >= self.details["start"],
            "me": None if mine is None else self._shown(self.registrations[mine]),
        }

    @query
    def registration(self, registration_id: str, user_id: str | None = None) -> dict:
        """One registration (``user_id``: only if it is theirs, else 404)."""
        self._require()
        found = self.registrations.get(registration_id)
        if found is None or (user_id is not None and found["user"] != user_id):
            raise NotFound("no such registration")
        return self._shown(found)

    @query
    def mine(self, user_id: str) -> dict:
        """The athlete's active registration, with their answers."""
        self._require()
        registration_id = self.active.get(user_id)
        if registration_id is None:
            raise NotFound("you are not registered to this event")
        found = self.registrations[registration_id]
        return {**self._shown(found), "answers": found["answers"]}

    @query
    def roster(self, by: str, status: str | None = None, after: list | None = None, limit: int = 50) -> dict:
        """The registrations (the organizer's), in registration order, with answers; paged by ``[seq, id]``."""
        self._organizer(by)
        items = [{**self._shown(r), "answers": r["answers"]} for r in self.registrations.values()
                 if status is None or r["status"] == status]  # fmt: skip
        return ascending_page(items, after, limit, key=("seq", "id"))

    @query
    def audience(self, which: str = "registered") -> list[str]:
        """Who hears of the event: ``registered``; ``active`` (registered or waiting); those whose registration
        the event's cancellation ended (``cancelled_with_event``)."""
        if which not in AUDIENCES:
            raise Rejected(f"an audience is one of {', '.join(AUDIENCES)}")
        if which == "cancelled_with_event":
            return [r["user"] for r in self.registrations.values() if r["cancelled_by"] == "event"]
        wanted = ("registered",) if which == "registered" else _ACTIVE
        return [r["user"] for r in self.registrations.values() if r["status"] in wanted]

    # -- changing ----------------------------------------------------------------

    def _listed(self) -> None:
        card = self._card() if self.status == "scheduled" else None
        self.emit(SPORT_EVENT_LISTED, event_id=self.id, directory=directory_shard(self.id), card=card)

    def _tell(self, registration: dict, promoted: bool = False) -> None:
        self.emit(SPORT_EVENT_REGISTRATION, event_id=self.id, user_id=registration["user"],
                  registration=self._shown(registration), card=self._card(), promoted=promoted)  # fmt: skip

    def _open(self) -> None:
        self._require()
        if self.status != "scheduled":
            raise Rejected("this event was cancelled")
        if self.now >= self.details["start"]:
            raise Rejected("this event has started")

    @update
    def create(self, organizer: str, details: dict) -> dict:
        if self.organizer:
            raise Rejected("this event already exists")
        details = {**details, "start": float(details["start"]), "end": float(details["end"])}
        _check(details)
        if not self.now < details["start"]:
            raise Rejected("an event starts in the future")
        self.organizer, self.created_at, self.details = organizer, self.now, details
        if details["start"] - REMINDER_LEAD_S > self.now:
            self.set_timer("remind", details["start"] - REMINDER_LEAD_S, "remind", {})
        self._listed()
        return self.view(organizer)

    @update
    def cancel(self, by: str) -> dict:
        """The whole event, for good: every registration ends with it, each paid one leaving a refund due."""
        self._organizer(by)
        self._open()
        self.status = "cancelled"
        for registration in self.registrations.values():
            if registration["status"] in _ACTIVE:
                self._end(registration, "event")
        self.waitlist.clear()
        self.active.clear()
        self.registered = 0
        self.taken.clear()
        self.cancel_timer("remind")
        self._listed()
        self.emit(SPORT_EVENT_CANCELLED, event_id=self.id, card=self._card(), by=by)
        return self.view(by)

    def _end(self, registration: dict, by: str) -> None:
        registration["status"] = "cancelled"
        registration["cancelled_by"] = by
        registration["cancelled_at"] = self.now
        if registration["payment"] == "paid":
            tier = self._tier(registration["tier"])
            registration["refund"] = {"amount": tier["price"], "currency": tier["currency"], "status": "due",
                                      "at": self.now}  # fmt: skip
        elif registration["payment"] == "pending":
            registration["payment"] = "void"

    @update
    def register(self, user_id: str, tier: str, answers: dict) -> dict:
        """A place in ``tier`` (past the event's or the tier's capacity: the waitlist), with the answers to the
        questions; a race event gives a bib to each registered athlete, in the order they got their place."""
        self._open()
        if user_id in self.active:
            raise Rejected("you are registered to this event already")
        chosen = self._tier(tier)
        kept = check_answers(self.details["questions"], answers)
        if len(self.registrations) >= REGISTRATIONS_MOST:
            raise Rejected("this event takes no more registrations")
        room = self._room(tier)
        if not room and len(self.waitlist) >= WAITLIST_MOST:
            raise Rejected("this event is full and so is its waitlist")
        seq = len(self.registrations) + 1
        registration_id = f"r{seq}"
        registration: dict[str, Any] = {
            "id": registration_id, "seq": seq, "user": user_id, "tier": tier, "answers": kept, "status": "waitlisted",
            "bib": None, "at": self.now, "checked_in_at": None, "cancelled_by": None, "cancelled_at": None,
            "payment": "none" if chosen["price"] == 0 else "pending", "refund": None,
        }  # fmt: skip
        self.registrations[registration_id] = registration
        self.active[user_id] = registration_id
        if room:
            self._place(registration)
        else:
            self.waitlist[registration_id] = self.now
        self._tell(registration)
        return self._shown(registration)

    def _place(self, registration: dict) -> None:
        registration["status"] = "registered"
        self.registered += 1
        self.taken[registration["tier"]] = self._taken(registration["tier"]) + 1
        if self.details["races"] and registration["bib"] is None:
            registration["bib"] = self.next_bib
            self.next_bib += 1

    def _promote(self) -> None:
        for registration_id in list(self.waitlist):
            if self.registered >= self.details["capacity"]:
                break
            registration = self.registrations[registration_id]
            if self._room(registration["tier"]):
                del self.waitlist[registration_id]
                self._place(registration)
                self._tell(registration, promoted=True)

    @update
    def withdraw(self, user_id: str) -> dict:
        """The athlete cancels their registration; their place goes to the first waiting that fits."""
        self._open()
        registration_id = self.active.pop(user_id, None)
        if registration_id is None:
            raise NotFound("you are not registered to this event")
        registration = self.registrations[registration_id]
        self._release(registration)
        self._tell(registration)
        self._promote()
        return self._shown(registration)

    def _release(self, registration: dict) -> None:
        """The athlete's registration ends: its place (or its spot on the waitlist) is free."""
        if registration["status"] == "registered":
            self.registered -= 1
            self.taken[registration["tier"]] -= 1
        self.waitlist.pop(registration["id"], None)
        self._end(registration, "athlete")

    @update
    def mark_paid(self, by: str, registration_id: str) -> dict:
        """The organizer records a paid tier's payment as received (there is no checkout: docs/sport-events.md)."""
        self._organizer(by)
        registration = self.registrations.get(registration_id)
        if registration is None:
            raise NotFound("no such registration")
        if registration["payment"] != "pending":
            raise Rejected(f"this registration's payment is {registration['payment']}, not pending")
        registration["payment"] = "paid"
        self._tell(registration)
        return self._shown(registration)

    @update
    def check_in(self, by: str, registration_id: str) -> dict:
        """At the venue: the organizer scans the athlete's code. Once; a replay says when it was."""
        self._organizer(by)
        if self.status != "scheduled":
            raise Rejected("this event was cancelled")
        registration = self.registrations.get(registration_id)
        if registration is None:
            raise NotFound("no such registration")
        if registration["status"] != "registered":
            raise Rejected(f"this registration is {registration['status']}: it does not check in")
        if registration["checked_in_at"] is not None:
            return {**self._shown(registration), "already": True}
        registration["checked_in_at"] = self.now
        self._tell(registration)
        return {**self._shown(registration), "already": False}

    @update
    def remind(self) -> None:
        """The durable timer, 24 h before the start: those registered hear of it, once."""
        if not self.organizer or self.status != "scheduled" or self.reminded or self.now >= self.details["start"]:
            return
        self.reminded = True
        self.emit(SPORT_EVENT_REMINDER, event_id=self.id, card=self._card(), lead="24h")
