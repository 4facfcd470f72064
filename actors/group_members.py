"""One shard of a group's members: ``<group id>-<nn>`` holds the standing of every user whose id
hashes to it (``actors/group_shards.py``): member, join request, invitation or ban, and this
shard's part of the group's weekly leaderboard.

Every change to one user's standing is one turn of one shard, so joining, approving, removing
and banning can never half-happen; each is written to the shard's own bounded history, and a
join or a leave is told to the group (its count) and to the user (their list) through
``group.joined`` / ``group.left``. The shard holds no roles: those above member are the group's.
The group's rules (its join policy) arrive with the message: the API reads them from the group.
"""

from __future__ import annotations

from typing import Any

from actors import group_board
from actors.erasing import pseudonymise
from actors.events import (
    GROUP_HEIR,
    GROUP_INVITED,
    GROUP_JOINED,
    GROUP_LEFT,
    GROUP_MEMBER_ERASED,
    GROUP_SUCCESSION,
    GROUP_WORKOUT_SHARED,
    WORKOUT_DELETED,
    WORKOUT_EDITED,
)
from actors.group_shards import shard_number
from actors.paging import page
from actors.user_groups import UserGroups
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["GroupMembers", "STANDINGS", "MAX_WAITING", "MAX_BANNED", "INVITATION_TTL_S", "SHARD_HISTORY"]

STANDINGS = ("member", "requested", "invited", "banned")
MAX_WAITING = 2_000  # requests, and invitations, per shard: 128,000 per group
MAX_BANNED = 10_000  # per shard
INVITATION_TTL_S = 30 * 86_400
SHARD_HISTORY = 100
_BOARDS_KEPT = 64
_LISTS = ("members", "requests", "invited", "banned")


class GroupMembers(Entity):
    kind = "group_members"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.members: dict[str, float] = {}  # user id -> member since
        self.requests: dict[str, float] = {}  # user id -> asked when
        self.invited: dict[str, dict] = {}  # user id -> {"by", "at"}
        self.banned: dict[str, dict] = {}  # user id -> {"by", "at", "reason"}
        self.weeks: group_board.Weeks = {}
        self.names: dict[str, str] = {}  # member -> their name as their last workout carried it
        # workout id -> what the board holds of it, to take it back when it is edited or deleted: {"owner",
        # "week", "sport", "totals", "counted", "seq", "deleted"}; only workouts of the kept weeks
        self.workouts: dict[str, dict] = {}
        self.pruned_before = 0  # the oldest week ``workouts`` was last trimmed to
        self.history: list[dict] = []  # newest first
        self.changes = 0
        self._boards: dict[tuple, list[dict]] = {}  # (week, sport, metric, limit) -> top rows, until the next change

    @property
    def group_id(self) -> str:
        return self.id.rsplit("-", 1)[0]

    # -- reading -----------------------------------------------------------------

    def _standing(self, user_id: str) -> str | None:
        if user_id in self.banned:
            return "banned"
        if user_id in self.members:
            return "member"
        if user_id in self.requests:
            return "requested"
        invitation = self.invited.get(user_id)
        if invitation is not None and invitation["at"] + INVITATION_TTL_S > self.now:
            return "invited"
        return None

    def _invitations(self) -> dict[str, dict]:
        """The invitations not yet expired."""
        return {user: i for user, i in self.invited.items() if i["at"] + INVITATION_TTL_S > self.now}

    @query
    def standing(self, user_id: str) -> str | None:
        """``member``, ``requested``, ``invited``, ``banned``, or None."""
        return self._standing(user_id)

    @query
    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in _LISTS}

    @query
    def people(self, which: str, after: str | None = None, limit: int = 50) -> list[dict]:
        """One of ``members``, ``requests``, ``invited``, ``banned``, in id order after ``after``."""
        if which not in _LISTS:
            raise Rejected(f"which is one of {', '.join(_LISTS)}")
        kept: dict[str, Any] = self._invitations() if which == "invited" else getattr(self, which)
        chosen = sorted(user for user in kept if after is None or user > after)[: max(1, min(limit, 100))]
        items = []
        for user in chosen:
            value = kept[user]
            items.append({"id": user, **value} if isinstance(value, dict) else {"id": user, "at": value})
        return items

    @query
    def history_page(self, before: list | None = None, limit: int = 50) -> dict:
        return page(self.history, before, limit)

    @query
    def board(self, week: int, metric: str, sport: str | None = None, limit: int = 20, me: str | None = None) -> dict:
        """This shard's top ``limit`` of the week, and ``me``'s row when ``me`` is in this shard."""
        if metric not in group_board.METRICS:
            raise Rejected(f"a board ranks by one of {', '.join(group_board.METRICS)}")
        key = (week, sport, metric, limit)
        rows = self._boards.get(key)
        if rows is None:
            if len(self._boards) >= _BOARDS_KEPT:
                self._boards.clear()
            rows = self._boards[key] = self._named(group_board.top(self.weeks, week, sport, metric, limit))
        mine = None if me is None else group_board.row(self.weeks, week, sport, me)
        return {"rows": rows, "me": None if mine is None else self._named([mine])[0]}

    def _named(self, rows: list[dict]) -> list[dict]:
        for row in rows:
            row["name"] = self.names.get(row["user_id"])
        return rows

    # -- changing ----------------------------------------------------------------

    def _record(self, by: str, what: str, user: str, detail: dict | None = None) -> None:
        self.changes += 1
        entry = {"id": f"s{shard_number(self.id):02d}n{self.changes:09d}", "at": self.now, "by": by, "what": what}
        self.history.insert(0, {**entry, "user": user, "detail": detail or {}})
        del self.history[SHARD_HISTORY:]

    def _admit(self, user_id: str, role: str, via: str, by: str) -> str:
        self.members[user_id] = self.now
        self.requests.pop(user_id, None)
        self.invited.pop(user_id, None)
        self._record(by, "joined", user_id, {"via": via})
        self.emit(GROUP_JOINED, group_id=self.group_id, user_id=user_id, role=role, via=via, by=by)
        return "member"

    def _expel(self, user_id: str, reason: str, by: str) -> None:
        del self.members[user_id]
        group_board.forget(self.weeks, user_id)
        self.workouts = {w: kept for w, kept in self.workouts.items() if kept["owner"] != user_id}
        self._boards.clear()
        self.names.pop(user_id, None)
        self.emit(GROUP_LEFT, group_id=self.group_id, user_id=user_id, reason=reason, by=by)

    def _room(self, kept: dict, most: int, what: str) -> None:
        if len(kept) >= most:
            raise Rejected(f"this group has too many {what} waiting; try again later")

    @update
    def found(self, user_id: str) -> str:
        """The group's creator, its first member."""
        if user_id in self.members:
            return "member"
        return self._admit(user_id, "owner", "created", user_id)

    @update
    def join(self, user_id: str, policy: str) -> str:
        """``user_id`` asks to join under the group's join ``policy``: ``member`` or ``requested``."""
        standing = self._standing(user_id)
        if standing == "banned":
            raise Forbidden("you are banned from this group")
        if standing in ("member", "requested"):
            return standing
        if standing == "invited":
            return self._admit(user_id, "member", "invitation", self.invited[user_id]["by"])
        if policy == "open":
            return self._admit(user_id, "member", "open", user_id)
        if policy == "request":
            self._room(self.requests, MAX_WAITING, "requests")
            self.requests[user_id] = self.now
            self._record(user_id, "requested", user_id)
            return "requested"
        raise Forbidden("this group takes members by invitation only")

    @update
    def leave(self, user_id: str) -> str:
        """A member leaves (``left``), or a request is withdrawn (``withdrawn``)."""
        if user_id in self.members:
            self._expel(user_id, "left", user_id)
            self._record(user_id, "left", user_id)
            return "left"
        if self.requests.pop(user_id, None) is not None:
            self._record(user_id, "request_withdrawn", user_id)
            return "withdrawn"
        raise NotFound("you are not a member of this group")

    @update
    def answer(self, user_id: str, accept: bool, by: str) -> str:
        """An admin approves (``member``) or declines (``declined``) a join request."""
        if user_id not in self.requests:
            raise NotFound("no such join request")
        if accept:
            return self._admit(user_id, "member", "request", by)
        del self.requests[user_id]
        self._record(by, "request_declined", user_id)
        return "declined"

    @update
    def invite(self, user_id: str, by: str) -> str:
        standing = self._standing(user_id)
        if standing == "member":
            raise Rejected("this athlete is already a member")
        if standing == "banned":
            raise Rejected("this athlete is banned from the group: lift the ban first")
        if standing == "requested":  # they asked; the invitation answers them
            return self._admit(user_id, "member", "request", by)
        waiting = self._invitations()
        if user_id not in waiting:
            self._room(waiting, MAX_WAITING, "invitations")
        self.invited = waiting  # expired ones go once a change is sure to be kept
        self.invited[user_id] = {"by": by, "at": self.now}
        self._record(by, "invited", user_id)
        self.emit(GROUP_INVITED, group_id=self.group_id, user_id=user_id, by=by)
        return "invited"

    @update
    def uninvite(self, user_id: str, by: str) -> None:
        """The invitee declines, or an admin withdraws the invitation."""
        if self.invited.pop(user_id, None) is None:
            raise NotFound("no such invitation")
        self._record(by, "invitation_declined" if by == user_id else "invitation_withdrawn", user_id)

    @update
    def remove(self, user_id: str, by: str) -> None:
        if user_id not in self.members:
            raise NotFound("this athlete is not a member")
        self._expel(user_id, "removed", by)
        self._record(by, "removed", user_id)

    @update
    def ban(self, user_id: str, by: str, reason: str | None = None) -> None:
        """Out of the group, and never back in until the ban is lifted."""
        if user_id in self.banned:
            return
        self._room(self.banned, MAX_BANNED, "bans")
        if user_id in self.members:
            self._expel(user_id, "banned", by)
        self.requests.pop(user_id, None)
        self.invited.pop(user_id, None)
        self.banned[user_id] = {"by": by, "at": self.now, "reason": reason}
        self._record(by, "banned", user_id, {"reason": reason})

    @update
    def unban(self, user_id: str, by: str) -> None:
        if self.banned.pop(user_id, None) is None:
            raise NotFound("this athlete is not banned")
        self._record(by, "unbanned", user_id)

    # -- erasure -----------------------------------------------------------------

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their standing (member, request, invitation, ban), their week on the board and their workouts
        go, as a removal takes them; the history's entries about them go, those they made stay under the
        stand-in (as do invitations and bans they gave). The group's count hears ``group.member_erased``,
        which names nobody (a ``group.left`` would name the person to everyone who hears it)."""
        if user_id in self.members:
            self.emit(GROUP_MEMBER_ERASED, group_id=self.group_id)
        for standing in (self.members, self.requests, self.invited, self.banned):
            standing.pop(user_id, None)
        group_board.forget(self.weeks, user_id)
        self.workouts = {w: kept for w, kept in self.workouts.items() if kept["owner"] != user_id}
        self.names.pop(user_id, None)
        self.history = [entry for entry in self.history if entry["user"] != user_id]
        self._boards.clear()
        return pseudonymise(self, user_id, stand_in)

    @react(GROUP_SUCCESSION, to=To.each("shards"))
    def on_succession(self, event: Event) -> None:
        """An erased owner's group asks each shard for its longest-standing member."""
        if self.members:
            heir = min(self.members, key=lambda member: (self.members[member], member))
            self.emit(GROUP_HEIR, group_id=self.group_id, shard=self.id, user_id=heir, since=self.members[heir])
        else:
            self.emit(GROUP_HEIR, group_id=self.group_id, shard=self.id, user_id=None, since=None)

    # -- the weekly board --------------------------------------------------------

    @react(GROUP_WORKOUT_SHARED, to=To.field("shard"))
    def on_workout(self, event: Event) -> None:
        """A member's workout counts on the group's board for its week, once (the engine applies each event
        once); a user who is no longer a member here is declined. A workout this shard already heard of (an
        edit or a deletion can overtake it: each event type has its own consumer) is left as those made it."""
        owner, workout_id = event.fields["owner"], event.fields["workout_id"]
        if owner not in self.members:
            raise Rejected("not a member")
        if workout_id in self.workouts:
            return
        self._count(owner, workout_id, event.fields["summary"], seq=0)
        self.names[owner] = event.fields["owner_name"] or ""

    @react(WORKOUT_EDITED, to=To.ask(UserGroups, "owner", UserGroups.member_shards))
    def on_workout_edited(self, event: Event) -> None:
        """An edit takes the workout's old figures out of its week and counts the new ones (none if it is
        private now)."""
        owner, workout_id = event.fields["owner"], event.fields["workout_id"]
        if owner not in self.members:
            raise Rejected("not a member")
        kept = self.workouts.get(workout_id)
        if kept is not None and (kept["deleted"] or kept["seq"] >= event.seq):
            return
        self._uncount(workout_id)
        self._count(owner, workout_id, event.fields["after"], seq=event.seq)

    @react(WORKOUT_DELETED, to=To.ask(UserGroups, "owner", UserGroups.member_shards))
    def on_workout_deleted(self, event: Event) -> None:
        """A deleted workout leaves the board; remembered (while its week is kept) so that its late
        ``group.workout_shared`` counts nothing."""
        workout_id, summary = event.fields["workout_id"], event.fields["summary"]
        self._uncount(workout_id)
        start = _number(summary.get("start"))
        if self._kept(start):
            self.workouts[workout_id] = {"owner": event.fields["owner"], "week": group_board.week_of(start),
                                         "sport": None, "totals": None, "counted": False, "seq": event.seq,
                                         "deleted": True}  # fmt: skip

    def _count(self, owner: str, workout_id: str, summary: dict, seq: int) -> None:
        start, sport = _number(summary.get("start")), summary.get("sport") or "other"
        totals = (_number(summary.get("distance_m")), _number(summary.get("moving_s")),
                  _number(summary.get("elevation_gain_m")))  # fmt: skip
        counted = summary.get("visibility") != "private" and group_board.add(
            self.weeks, self.now, owner, start, sport, totals
        )
        if self._kept(start):
            self.workouts[workout_id] = {"owner": owner, "week": group_board.week_of(start), "sport": sport,
                                         "totals": list(totals), "counted": counted, "seq": seq, "deleted": False}  # fmt: skip
        self._boards.clear()

    def _uncount(self, workout_id: str) -> None:
        kept = self.workouts.get(workout_id)
        if kept is not None and kept["counted"]:
            group_board.take(self.weeks, kept["owner"], kept["week"], kept["sport"], tuple(kept["totals"]))
            kept["counted"] = False
            self._boards.clear()

    def _kept(self, start: float) -> bool:
        """Whether a workout of ``start`` is remembered: only the kept weeks' workouts need undoing. The
        weeks that fell off are forgotten once a week, at its first workout."""
        oldest = group_board.week_of(self.now) - group_board.KEEP_WEEKS * group_board.WEEK_S
        if self.pruned_before != oldest:
            self.workouts = {w: kept for w, kept in self.workouts.items() if kept["week"] >= oldest}
            self.pruned_before = oldest
        return group_board.week_of(start) >= oldest


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
