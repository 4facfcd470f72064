"""A challenge's rank index: its boards, kept from the participant shards' ``challenge.progressed``.

Each event moves one participant from their old standing to their new one
(``engine.challenges.ranking.RankIndex``: a Fenwick tree of counts per score bucket and the exact
top of the board), and, in a team challenge, their team's sum. The engine applies each event once
and in each shard's order, so the index agrees with the shards. It is snapshotted like any entity
(512 KiB of counts, the top list, the teams) and replays its journal after it. Its reads are
peeks (``engine.entity.peek``): a big challenge's index has an event's turn in flight nearly always,
and a board shown need not wait for that turn's commit.
"""

from __future__ import annotations

from typing import Any

from actors.events import CHALLENGE_PROGRESSED
from engine.challenges import goals
from engine.challenges.ranking import BUCKETS, RankIndex
from engine.entity import Entity, peek, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["ChallengeBoard", "RANGE_GOALS"]

RANGE_GOALS = 16  # an additive board tells scores apart up to 16 goals (beyond: the last bucket)


class ChallengeBoard(Entity):
    kind = "challenge_board"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.index: RankIndex | None = None
        self.teams: dict[str, list[float]] = {}  # team (a group) -> [sum of its members' scores, members]

    def snapshot(self) -> Any:
        return {"index": None if self.index is None else self.index.state(), "teams": self.teams}

    def restore(self, state: Any) -> None:
        self.index = None if state["index"] is None else RankIndex.from_state(state["index"])
        self.teams = state["teams"]

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their row leaves the top list; the counts (participants, buckets, a team's sum) drop them when
        their shard's erasure arrives as a leave of the stand-in (``ChallengeParticipants.erase_user``),
        whichever comes first."""
        index = self.index
        if index is not None:
            key = index.where.pop(user_id, None)
            if key is not None:
                index.top.remove(key)
        return False

    def _index(self) -> RankIndex:
        if self.index is None:
            raise NotFound("no such challenge")
        return self.index

    @update
    def open(self, goal_type: str, goal: float) -> None:
        """Ready the index for a challenge's goal: buckets of the goal type's unit, wider for a goal so
        large that 131,072 of them would not reach 16 goals; a time (lower is better) is a negative score."""
        if self.index is not None:
            return
        if goal_type not in goals.GOAL_TYPES:
            raise Rejected(f"a goal type is one of {', '.join(goals.GOAL_TYPES)}")
        unit = goals.UNITS[goal_type]
        if goal_type == "single_effort":
            self.index = RankIndex(low=-BUCKETS * unit, width=unit)
        else:
            self.index = RankIndex(low=0.0, width=max(unit, float(goal) * RANGE_GOALS / BUCKETS))

    @react(CHALLENGE_PROGRESSED, to=To.field("challenge_id"))
    def on_progressed(self, event: Event) -> None:
        fields = event.fields
        before, after, team = fields["before"], fields["after"], fields["team"]
        self._index().move(fields["user_id"], before, after)
        if team is not None:
            kept = self.teams.setdefault(team, [0.0, 0])
            kept[0] += _score(after) - _score(before)
            kept[1] += (after is not None) - (before is not None)
            if kept[1] <= 0:
                del self.teams[team]

    # -- reading -----------------------------------------------------------------------

    @peek
    def top(self, limit: int = 20, start: int = 0) -> dict:
        """The board's ranks ``start + 1``..; ``complete`` false when the index cannot say them all (the
        shards can: ``actors.challenge_participants``)."""
        index = self._index()
        limit, start = max(1, min(int(limit), 100)), max(0, int(start))
        return {
            "rows": index.rows(start, limit),
            "complete": index.complete(start + limit),
            "participants": index.participants,
            "scored": index.scored,
        }

    @peek
    def around(self, user_id: str, score: float | None, at: float, count: int = 5) -> dict:
        """``user_id``'s rank, and the ``count`` ahead and behind when the index holds them exactly."""
        index = self._index()
        count = max(1, min(int(count), 25))
        position = index.position(user_id)
        if position is None:
            return {"rank": index.rank(score, at, user_id), "rows": None, "participants": index.participants}
        start = max(0, position - count)
        return {"rank": position + 1, "rows": index.rows(start, position - start + count + 1),
                "participants": index.participants}  # fmt: skip

    @peek
    def ranks(self, entries: list) -> list[int]:
        """The rank of each ``[user, score, at]``."""
        index = self._index()
        return [index.rank(score, at, user) for user, score, at in entries[:5_000]]

    @peek
    def team_board(self, limit: int = 20) -> list[dict]:
        ranked = sorted(self.teams.items(), key=lambda kv: (-kv[1][0], kv[0]))[: max(1, min(int(limit), 100))]
        return [{"rank": n, "team": team, "score": total, "members": int(members)}
                for n, (team, (total, members)) in enumerate(ranked, 1)]  # fmt: skip


def _score(standing: list | None) -> float:
    return 0.0 if standing is None or standing[0] is None else float(standing[0])
