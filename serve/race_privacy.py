"""Private athletes in public races: who sees their name, and what everyone else sees.

An athlete whose profile is private races under "Private athlete", with a stand-in id
(``private-<participant>``), for every viewer who may not see their profile: only the
athlete, the followers they approved, the race's organizer and admins see who they are.
The id is hidden with the name because a profile card shows its display name. Name
search never matches a hidden name. The decision is written down in docs/race-access.md.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from actors.account import Account
from engine.errors import EngineError
from serve.auth import Caller

__all__ = ["PRIVATE_NAME", "Audience", "PUBLIC", "audience", "conceal", "hidden_id", "named_as_seen", "shown"]

PRIVATE_NAME = "Private athlete"


@dataclass(frozen=True, slots=True)
class Audience:
    everyone: bool = False  # the organizer and admins see every athlete
    known: frozenset[str] = frozenset()  # the viewer and the athletes whose profiles they may see

    def sees(self, user_id: str) -> bool:
        return self.everyone or user_id in self.known


PUBLIC = Audience()


def hidden_id(participant: int) -> str:
    return f"private-{participant}"


async def audience(arena, caller: Caller | None, organizer: str | None) -> Audience:
    """Whose private profiles ``caller`` may see: their own, and those who approved them as a follower."""
    if caller is None:
        return PUBLIC
    if caller.id == organizer or caller.has("admin"):
        return Audience(everyone=True)
    # A private athlete is in my "following" only once they approved my request.
    following = await arena.ref(Account, caller.id).ask(Account.ids, which="following")
    return Audience(known=frozenset((caller.id, *following)))


def conceal(rows: list[dict], private: Collection[int], viewer: Audience) -> list[dict]:
    """``rows`` (each with ``participant`` and ``user_id``) as ``viewer`` may see them: copies where hidden."""
    shown = []
    for row in rows:
        if row["participant"] in private and not viewer.sees(row["user_id"]):
            row = {**row, "user_id": hidden_id(row["participant"])}
            if "name" in row:
                row["name"] = PRIVATE_NAME
        shown.append(row)
    return shown


async def shown(
    arena, caller: Caller | None, organizer: str | None, rows: list[dict], private: Collection[int]
) -> list[dict]:
    """``conceal`` for one request: the viewer's follows are read only when a row would be hidden."""
    if caller is None or not any(row["participant"] in private for row in rows):
        return conceal(rows, private, PUBLIC)
    return conceal(rows, private, await audience(arena, caller, organizer))


async def named_as_seen(arena, rows: list[dict], viewer: str, key: str = "user_id") -> list[dict]:
    """Board rows outside races (challenges, segments), each with its athlete as ``viewer`` may see
    them: the display name; an athlete with a private profile whom the viewer neither is nor follows
    shows as races show them, a stand-in name and id (``private-<row>``); one who blocked the viewer
    keeps their row without a name. One batched read of the accounts."""
    views = await arena.cluster.deliver([(Account.kind, row[key], "view", {"viewer": viewer}, None) for row in rows])
    named = []
    for n, (row, view) in enumerate(zip(rows, views)):
        if isinstance(view, EngineError):
            named.append({**row, "name": None})
        elif view["private"] and not (view["relation"]["self"] or view["relation"]["following"]):
            named.append({**row, key: hidden_id(n), "name": PRIVATE_NAME})
        else:
            named.append({**row, "name": view["display_name"]})
    return named
