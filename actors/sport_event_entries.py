"""One athlete's registrations to organizers' events (``<user id>``), kept from the events'
``sport_event.registration`` and ``sport_event.cancelled``: what ``GET /me/registrations`` and the
athlete's iCalendar feed list. It also keeps the version of the athlete's calendar token: rotating
it makes every link handed out before fail (``serve/event_tokens.py``).

Bounded: ``ENTRIES_MOST`` active registrations (the API refuses one more); an entry leaves
``KEPT_AFTER_S`` after its event ended, a cancelled one as soon as more than ``ENTRIES_MOST`` are kept.
"""

from __future__ import annotations

from actors.events import SPORT_EVENT_CANCELLED, SPORT_EVENT_REGISTRATION
from actors.group_event import ascending_page
from actors.sport_event import SportEvent
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["SportEventEntries", "ENTRIES_MOST", "KEPT_AFTER_S"]

ENTRIES_MOST = 200
KEPT_AFTER_S = 30 * 86_400.0


class SportEventEntries(Entity):
    kind = "sport_event_entries"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: dict[str, dict] = {}  # event id -> {"card", "registration"}
        self.token_version = 1

    def _prune(self) -> None:
        self.entries = {e: entry for e, entry in self.entries.items()
                        if entry["card"]["end"] + KEPT_AFTER_S >= self.now}  # fmt: skip
        cancelled = [e for e, entry in self.entries.items() if entry["registration"]["status"] == "cancelled"]
        for event_id in cancelled[: max(0, len(self.entries) - ENTRIES_MOST)]:
            del self.entries[event_id]

    @react(SPORT_EVENT_REGISTRATION, to=To.field("user_id"))
    def on_registration(self, event: Event) -> None:
        fields = event.fields
        known = self.entries.get(fields["event_id"])
        registration = fields["registration"]
        if known is not None and known["registration"]["id"] == registration["id"] \
                and known["registration"]["status"] == "cancelled":  # fmt: skip
            return  # an ended registration does not come back
        self.entries[fields["event_id"]] = {"card": fields["card"], "registration": registration}
        self._prune()

    @react(SPORT_EVENT_CANCELLED, to=To.ask(SportEvent, "event_id", SportEvent.audience, which="cancelled_with_event"))
    def on_cancelled(self, event: Event) -> None:
        entry = self.entries.get(event.fields["event_id"])
        if entry is not None:
            entry["card"] = event.fields["card"]
            entry["registration"] = {**entry["registration"], "status": "cancelled", "cancelled_by": "event"}

    @query
    def active_count(self) -> int:
        return sum(1 for entry in self.entries.values() if entry["registration"]["status"] != "cancelled")

    @query
    def listed(self, after: list | None = None, limit: int = 20) -> dict:
        """The registrations kept, soonest event first, paged by ``[start, id]``."""
        items = [{**entry["card"], "registration": entry["registration"]} for entry in self.entries.values()]
        items.sort(key=lambda c: (c["start"], c["id"]))
        return ascending_page(items, after, limit, key=("start", "id"))

    @query
    def calendar(self) -> list[dict]:
        """Every entry kept, for the iCalendar feed (at most ``ENTRIES_MOST`` and the cancelled)."""
        return [{**entry["card"], "registration": entry["registration"]} for entry in self.entries.values()]

    @query
    def token(self) -> int:
        return self.token_version

    @update
    def rotate_token(self) -> int:
        self.token_version += 1
        return self.token_version
