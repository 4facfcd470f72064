"""A group (a club): its profile, its rules of visibility and joining, its owner and admins, and
the record of every change made to it.

The group holds no list of its members: a member's standing lives in the member shard their id
hashes to (``actors/group_members.py``), which tells the group of each join and leave through
``group.joined`` and ``group.left`` so it keeps the count. Only roles above member are kept here
(an owner and at most ``MAX_ADMINS`` admins), so "what may this caller do" is one small read.
Discovery learns what to show of the group from ``group.listed``, emitted in the same turn as the
change that moved it.
"""

from __future__ import annotations

import re
from typing import Any

from actors.erasing import pseudonymise
from actors.events import (
    GROUP_HEIR,
    GROUP_JOINED,
    GROUP_LEFT,
    GROUP_LISTED,
    GROUP_MEMBER_ERASED,
    GROUP_ROLE_CHANGED,
    GROUP_SUCCESSION,
)
from actors.group_shards import MEMBER_SHARDS, directory_shard, member_shards
from actors.paging import page
from actors.places import SHOWN, shown_point
from actors.workout import SPORTS
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected
from engine.events import Event, To, react

__all__ = [
    "Group",
    "GROUP_VISIBILITIES",
    "JOIN_POLICIES",
    "ROLES",
    "MAX_ADMINS",
    "HISTORY_LENGTH",
    "NAME_LENGTH",
    "DESCRIPTION_LENGTH",
    "PLACE_LENGTH",
    "check_profile",
]

GROUP_VISIBILITIES = ("public", "private", "hidden")  # private: listed, content for members; hidden: invite only
JOIN_POLICIES = ("open", "request", "invite")
ROLES = ("owner", "admin", "member")
MAX_ADMINS = 50
HISTORY_LENGTH = 500  # the newest changes; the journal keeps every one
NAME_LENGTH = 80
DESCRIPTION_LENGTH = 2_000
PLACE_LENGTH = 80
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_PROFILE = ("name", "description", "sports", "city", "region", "cover_colour")
_OWNER_ONLY = ("visibility", "join_policy")


def check_profile(profile: dict[str, Any]) -> None:
    """Refuse (``Rejected``) a profile field outside its bounds: the API's models check the same."""
    unknown = set(profile) - set(_PROFILE)
    if unknown:
        raise Rejected(f"unknown profile field(s) {', '.join(sorted(map(str, unknown)))}")
    name = profile.get("name")
    if "name" in profile and not (isinstance(name, str) and 0 < len(name.strip()) <= NAME_LENGTH):
        raise Rejected(f"a group's name has 1 to {NAME_LENGTH} characters")
    if len(profile.get("description") or "") > DESCRIPTION_LENGTH:
        raise Rejected(f"a description has at most {DESCRIPTION_LENGTH} characters")
    for place in ("city", "region"):
        if len(profile.get(place) or "") > PLACE_LENGTH:
            raise Rejected(f"a {place} has at most {PLACE_LENGTH} characters")
    sports = profile.get("sports", [])
    if not isinstance(sports, list) or len(sports) > len(SPORTS) or not set(sports) <= set(SPORTS):
        raise Rejected(f"sports are some of {', '.join(SPORTS)}")
    colour = profile.get("cover_colour")
    if colour is not None and not (isinstance(colour, str) and _COLOUR.match(colour)):
        raise Rejected("a cover colour is #RRGGBB")


def _check_rules(visibility: str, join_policy: str) -> None:
    if visibility not in GROUP_VISIBILITIES:
        raise Rejected(f"visibility is one of {', '.join(GROUP_VISIBILITIES)}")
    if join_policy not in JOIN_POLICIES:
        raise Rejected(f"the join policy is one of {', '.join(JOIN_POLICIES)}")
    if visibility == "hidden" and join_policy != "invite":
        raise Rejected("a hidden group takes members by invitation only")


def _check_location(location: dict | None, shown: str) -> None:
    if shown not in SHOWN:
        raise Rejected(f"a location is shown as one of {', '.join(SHOWN)}")
    if location is None:
        return
    lat, lon = location.get("lat"), location.get("lon")
    if not (isinstance(lat, int | float) and isinstance(lon, int | float) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise Rejected("a location is a latitude in [-90, 90] and a longitude in [-180, 180]")


def _rounded(count: int) -> int:
    """A member count to two significant digits: how often discovery hears of it (about 370 times on
    the way to 100,000 members, not 100,000 times)."""
    if count < 100:
        return count
    scale = 10 ** (len(str(count)) - 2)
    return count // scale * scale


class Group(Entity):
    kind = "group"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.created = False
        self.deleted = False
        self.created_at = 0.0
        self.profile: dict[str, Any] = {}
        self.location: dict[str, float] | None = None  # exact: the group's admins alone see it
        self.location_shown = "hidden"
        self.visibility = "public"
        self.join_policy = "open"
        self.owner = ""
        self.admins: dict[str, float] = {}  # user id -> since when
        self.members = 0  # counted from group.joined / group.left
        self.succession: dict | None = None  # {"by", "answers", "best": [user, since]}: an erased owner's heir sought
        self.listed_members = 0  # the count discovery last heard
        self.history: list[dict] = []  # newest first, at most HISTORY_LENGTH
        self.changes = 0

    # -- reading -----------------------------------------------------------------

    def _require(self) -> None:
        if not self.created or self.deleted:
            raise NotFound("no such group")

    def _role(self, user: str | None) -> str | None:
        if user is None:
            return None
        if user == self.owner:
            return "owner"
        return "admin" if user in self.admins else None

    @query
    def terms(self, viewer: str | None = None) -> dict:
        """What deciding a request needs: the rules, and the viewer's role if above member."""
        self._require()
        return {
            "visibility": self.visibility,
            "join_policy": self.join_policy,
            "role": self._role(viewer),
            "name": self.profile["name"],
        }

    @query
    def view(self, viewer: str | None = None) -> dict:
        """The group's page; the exact location for its admins only."""
        self._require()
        role = self._role(viewer)
        shown = shown_point(self.location["lat"], self.location["lon"], self.location_shown) if self.location else None
        card = {
            "id": self.id,
            **self.profile,
            "location": {"shown": self.location_shown, "point": shown},
            "visibility": self.visibility,
            "join_policy": self.join_policy,
            "members": self.members,
            "owner": self.owner,
            "admins": len(self.admins),
            "created_at": self.created_at,
        }
        if role is not None:
            card["location"]["exact"] = self.location
        return card

    @query
    def roles(self) -> dict:
        self._require()
        return {"owner": self.owner, "admins": list(self.admins)}

    @query
    def may_manage(self, by: str, target: str | None = None) -> str:
        """``by``'s role if they may act on members (on ``target``, when given), else ``Forbidden``.
        Admins act on members; only the owner acts on admins; nobody acts on the owner."""
        self._require()
        role = self._role(by)
        if role is None:
            raise Forbidden("only the group's owner or admins may do this")
        if target is not None:
            if target == self.owner:
                raise Forbidden("nobody may do this to the group's owner")
            if target in self.admins and role != "owner":
                raise Forbidden("only the owner may do this to an admin")
        return role

    @query
    def history_page(self, before: list | None = None, limit: int = 50) -> dict:
        self._require()
        return page(self.history, before, limit)

    # -- changing ----------------------------------------------------------------

    def _record(self, by: str, what: str, user: str | None = None, detail: dict | None = None) -> None:
        self.changes += 1
        entry = {"id": f"g{self.changes:09d}", "at": self.now, "by": by, "what": what, "user": user}
        self.history.insert(0, {**entry, "detail": detail or {}})
        del self.history[HISTORY_LENGTH:]

    def _listing(self) -> dict | None:
        if self.deleted or self.visibility == "hidden":
            return None
        point = shown_point(self.location["lat"], self.location["lon"], self.location_shown) if self.location else None
        return {
            **{name: self.profile.get(name) for name in ("name", "sports", "city", "region", "cover_colour")},
            "visibility": self.visibility,
            "join_policy": self.join_policy,
            "point": point,
            "members": self.members,
            "created_at": self.created_at,
        }

    def _list(self) -> None:
        self.listed_members = self.members
        self.emit(GROUP_LISTED, group_id=self.id, directory=directory_shard(self.id), listing=self._listing())

    @update
    def create(
        self,
        owner: str,
        profile: dict,
        visibility: str = "public",
        join_policy: str = "open",
        location: dict | None = None,
        location_shown: str = "city",
    ) -> dict:
        if self.created:
            raise Rejected("this group already exists")
        if "name" not in profile:
            raise Rejected("a group needs a name")
        check_profile(profile)
        _check_rules(visibility, join_policy)
        _check_location(location, location_shown)
        self.created = True
        self.created_at = self.now
        self.profile = {"description": "", "sports": [], "city": None, "region": None, "cover_colour": None, **profile}
        self.profile["name"] = self.profile["name"].strip()
        self.visibility, self.join_policy = visibility, join_policy
        self.location = None if location is None else {"lat": float(location["lat"]), "lon": float(location["lon"])}
        self.location_shown = location_shown
        self.owner = owner
        self.members = 1  # the owner, whose member shard says so in a moment (group.joined, via created)
        self._record(owner, "created", detail={"visibility": visibility, "join_policy": join_policy})
        self._list()
        return self.view(owner)

    @update
    def edit(self, by: str, changes: dict) -> dict:
        """Admins change the profile and the location; the owner alone changes who may see and join."""
        self._require()
        role = self._role(by)
        if role is None:
            raise Forbidden("only the group's owner or admins may edit it")
        if role != "owner" and any(name in changes for name in _OWNER_ONLY):
            raise Forbidden("only the owner may change who may see or join the group")
        profile = {k: v for k, v in changes.items() if k in _PROFILE}
        unknown = set(changes) - set(_PROFILE) - set(_OWNER_ONLY) - {"location", "location_shown"}
        if unknown:
            raise Rejected(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        check_profile(profile)
        _check_rules(changes.get("visibility", self.visibility), changes.get("join_policy", self.join_policy))
        location = changes.get("location", self.location)
        _check_location(location, changes.get("location_shown", self.location_shown))
        self.profile.update(profile)
        self.profile["name"] = self.profile["name"].strip()
        self.visibility = changes.get("visibility", self.visibility)
        self.join_policy = changes.get("join_policy", self.join_policy)
        self.location = None if location is None else {"lat": float(location["lat"]), "lon": float(location["lon"])}
        self.location_shown = changes.get("location_shown", self.location_shown)
        self._record(by, "edited", detail={"fields": sorted(changes)})
        self._list()
        return self.view(by)

    @update
    def delete(self, by: str) -> None:
        self._require()
        if by != self.owner:
            raise Forbidden("only the owner may delete the group")
        self.deleted = True
        self._record(by, "deleted")
        self._list()

    @update
    def set_role(self, by: str, user_id: str, role: str) -> dict:
        """The owner appoints an admin among the members (the API checks membership) or makes one a member again."""
        self._require()
        if by != self.owner:
            raise Forbidden("only the owner may appoint or demote admins")
        if role not in ("admin", "member"):
            raise Rejected("a role given is admin or member (ownership is transferred)")
        if user_id == self.owner:
            raise Rejected("the owner's role changes only by a transfer")
        if role == "admin" and user_id not in self.admins and len(self.admins) >= MAX_ADMINS:
            raise Rejected(f"a group has at most {MAX_ADMINS} admins")
        if (role == "admin") == (user_id in self.admins):
            return {"user_id": user_id, "role": role}
        if role == "admin":
            self.admins[user_id] = self.now
        else:
            del self.admins[user_id]
        self._record(by, "role_changed", user_id, {"role": role})
        self.emit(GROUP_ROLE_CHANGED, group_id=self.id, user_id=user_id, role=role, by=by)
        return {"user_id": user_id, "role": role}

    @update
    def transfer(self, by: str, to: str) -> dict:
        """The owner hands the group to a member (the API checks membership) and stays on as an admin."""
        self._require()
        if by != self.owner:
            raise Forbidden("only the owner may transfer the group")
        if to == by:
            raise Rejected("you already own this group")
        self.admins.pop(to, None)
        self.admins[by] = self.now
        self.owner = to
        self._record(by, "ownership_transferred", to)
        self.emit(GROUP_ROLE_CHANGED, group_id=self.id, user_id=to, role="owner", by=by)
        self.emit(GROUP_ROLE_CHANGED, group_id=self.id, user_id=by, role="admin", by=by)
        return {"owner": to}

    # -- erasure -----------------------------------------------------------------------

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """An owner's group goes to the longest-standing admin, as a transfer would; with no admin, to the
        longest-standing member, whom the member shards name (``group.succession``, ``group.heir``); with
        no member left, it closes. The count loses the person when their member shard says so
        (``group.member_erased``). Their changes stay in the history under the stand-in; entries about them go."""
        if not self.created:
            return False
        self.admins.pop(user_id, None)
        self.history = [entry for entry in self.history if entry["user"] != user_id]
        if user_id == self.owner and not self.deleted:
            if self.admins:
                heir = min(self.admins, key=lambda admin: (self.admins[admin], admin))
                self._hand_over(heir, stand_in)
            else:
                self.owner = stand_in  # until the member shards name an heir
                self.succession = {"by": stand_in, "answers": 0, "best": None}
                self.emit(GROUP_SUCCESSION, group_id=self.id, shards=member_shards(self.id))
        return pseudonymise(self, user_id, stand_in)

    def _hand_over(self, heir: str, by: str) -> None:
        self.admins.pop(heir, None)
        self.owner = heir
        self._record(by, "ownership_transferred", heir, {"reason": "erased"})
        self.emit(GROUP_ROLE_CHANGED, group_id=self.id, user_id=heir, role="owner", by=by)

    @react(GROUP_MEMBER_ERASED, to=To.field("group_id"))
    def on_member_erased(self, event: Event) -> None:
        self._require()
        self.members = max(0, self.members - 1)
        self._relist()

    @react(GROUP_HEIR, to=To.field("group_id"))
    def on_heir(self, event: Event) -> None:
        """One member shard's longest-standing member; once every shard has answered, the longest-standing
        of them all owns the group (none: nobody is left, and the group closes)."""
        if self.succession is None or self.deleted:
            return
        user, since = event.fields["user_id"], event.fields["since"]
        best = self.succession["best"]
        if user is not None and (best is None or (since, user) < (best[1], best[0])):
            self.succession["best"] = [user, since]
        self.succession["answers"] += 1
        if self.succession["answers"] < MEMBER_SHARDS:
            return
        by, best = self.succession["by"], self.succession["best"]
        self.succession = None
        if best is None:
            self.deleted = True
            self._record(by, "deleted", detail={"reason": "erased, no member left"})
            self._list()
        else:
            self._hand_over(best[0], by)

    # -- what the member shards say --------------------------------------------------

    @react(GROUP_JOINED, to=To.field("group_id"))
    def on_joined(self, event: Event) -> None:
        self._require()
        if event.fields["via"] == "created":
            return  # counted when the group was created, so its first page says 1
        self.members += 1
        self._relist()

    @react(GROUP_LEFT, to=To.field("group_id"))
    def on_left(self, event: Event) -> None:
        self._require()
        self.members = max(0, self.members - 1)
        user = event.fields["user_id"]
        if self.admins.pop(user, None) is not None:
            self._record(event.fields["by"], "role_changed", user, {"role": "member", "reason": event.fields["reason"]})
        self._relist()

    def _relist(self) -> None:
        if _rounded(self.members) != _rounded(self.listed_members):
            self._list()
