"""A challenge: its card (title, description, goal, period, scope), who made it, and the directory
that lists challenges for browsing (docs/challenges.md).

The challenge itself is small and never changes what it counts once created (its ``terms``: goal,
period, sports), so every participant shard holds a copy of them. Participants and progress live
in the participant shards (``actors/challenge_participants.py``), the boards in the rank index
(``actors/challenge_board.py``), each athlete's list of challenges in ``actors/challenge_entries.py``.
"""

from __future__ import annotations

import zlib
from datetime import date
from typing import Any

from actors.erasing import pseudonymise
from actors.paging import page
from actors.route import check_link
from engine.challenges.goals import ADDITIVE, Terms
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected

__all__ = [
    "Challenge",
    "ChallengeDirectory",
    "PARTICIPANT_SHARDS",
    "SCOPES",
    "TITLE_LENGTH",
    "DESCRIPTION_LENGTH",
    "DIRECTORY_KEPT",
    "participant_shard",
    "participant_shards",
]

PARTICIPANT_SHARDS = 64  # 1,000,000 participants: about 15,600 per shard
SCOPES = ("everyone", "group", "friends")
TITLE_LENGTH = 120
DESCRIPTION_LENGTH = 4_000
DIRECTORY_KEPT = 10_000  # the directory lists the newest 10,000 challenges


def participant_shard(challenge_id: str, user_id: str) -> str:
    """The participant shard that holds ``user_id``'s progress in ``challenge_id`` (crc32: stable across processes)."""
    return f"{challenge_id}-{zlib.crc32(user_id.encode()) % PARTICIPANT_SHARDS:02d}"


def participant_shards(challenge_id: str) -> list[str]:
    return [f"{challenge_id}-{n:02d}" for n in range(PARTICIPANT_SHARDS)]


class Challenge(Entity):
    kind = "challenge"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.card: dict[str, Any] | None = None

    def _require(self) -> dict:
        if self.card is None:
            raise NotFound("no such challenge")
        return self.card

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """A challenge they created stays, created by the stand-in."""
        return pseudonymise(self, user_id, stand_in)

    @update
    def create(self, by: str, card: dict) -> dict:
        """``card``: title, description, goal_type, goal, effort, sports, first_day and last_day (ISO
        dates), scope (everyone, group, friends), group_id (a group's challenge), team (group against group),
        linked_route (a route to show with it, ``actors.route.link``: one of its sports)."""
        if self.card is not None:
            raise Rejected("this challenge already exists")
        try:
            terms = Terms(
                goal_type=card["goal_type"],
                goal=float(card["goal"]),
                first_day=date.fromisoformat(card["first_day"]).toordinal(),
                last_day=date.fromisoformat(card["last_day"]).toordinal(),
                sports=tuple(card.get("sports") or ()),
                effort=card.get("effort"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise Rejected(f"this challenge cannot be made: {error}") from None
        scope, group_id, team = card.get("scope"), card.get("group_id"), bool(card.get("team"))
        if scope not in SCOPES:
            raise Rejected(f"a scope is one of {', '.join(SCOPES)}")
        if (scope == "group") != (group_id is not None):
            raise Rejected("a group's challenge, and only one, names its group")
        if team and (scope != "everyone" or terms.goal_type not in ADDITIVE):
            raise Rejected(f"a team challenge is open to everyone and sums one of {', '.join(ADDITIVE)}")
        linked = card.get("linked_route")
        if linked is not None:
            check_link(linked, terms.sports)
        self.card = {
            "id": self.id,
            "title": card["title"],
            "description": card.get("description") or "",
            **terms.to_dict(),
            "first_day": card["first_day"],
            "last_day": card["last_day"],
            "scope": scope,
            "group_id": group_id,
            "team": team,
            "linked_route": linked,
            "creator": by,
            "created_at": self.now,
            "opens": terms.opens(),
            "closes": terms.closes(),
        }
        return self.card

    @query
    def view(self) -> dict:
        return {"linked_route": None, **self._require()}

    @query
    def terms(self) -> dict:
        """What the participant shards count (goal, period as ordinals, sports, effort)."""
        card = self._require()
        return Terms(
            goal_type=card["goal_type"],
            goal=card["goal"],
            first_day=date.fromisoformat(card["first_day"]).toordinal(),
            last_day=date.fromisoformat(card["last_day"]).toordinal(),
            sports=tuple(card["sports"]),
            effort=card["effort"],
        ).to_dict()


class ChallengeDirectory(Entity):
    """The challenges there are, newest first, for browsing: one entity (``all``) of small cards."""

    kind = "challenge_directory"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.cards: list[dict] = []  # newest first

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their challenges stay listed, created by the stand-in."""
        return pseudonymise(self, user_id, stand_in)

    @update
    def add(self, card: dict) -> None:
        listed = {k: card[k] for k in ("id", "title", "goal_type", "goal", "effort", "sports", "first_day",
                                       "last_day", "scope", "group_id", "team", "creator", "created_at")}  # fmt: skip
        listed["at"] = listed["created_at"]
        self.cards = [c for c in self.cards if c["id"] != card["id"]]
        self.cards.insert(0, listed)
        del self.cards[DIRECTORY_KEPT:]

    @query
    def browse(
        self, before: list | None = None, limit: int = 20, sport: str | None = None, scope: str | None = None
    ) -> dict:
        cards = [
            c
            for c in self.cards
            if (sport is None or not c["sports"] or sport in c["sports"]) and (scope is None or c["scope"] == scope)
        ]
        return page(cards, before, limit)
