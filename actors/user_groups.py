"""The groups one user belongs to, and the invitations waiting for them: a small entity per user,
kept from the member shards' ``group.joined`` / ``group.left`` and the admins' ``group.invited``.

It is a read model, never the authority: the member shard decides membership, the group decides
roles. It answers "which groups do I see in my list" in one read, and it sends each of the
user's workouts on to their groups (``group.workout_shared``, one per group): the groups' feeds
and the member shards that keep the weekly boards react to that by its fields, so the relay
never has to look up an athlete's groups for each workout.

A ``group.joined`` can reach this entity after a workout the athlete recorded once a member (the
two come through different consumers): the athlete's latest shared workouts are kept
(``actors.recent_workouts``) and those recorded since the join go on to the group when it arrives.
"""

from __future__ import annotations

from actors.events import GROUP_INVITED, GROUP_JOINED, GROUP_LEFT, GROUP_WORKOUT_SHARED, WORKOUT_RECORDED
from actors.group_shards import member_shard
from actors.paging import page
from actors.recent_workouts import remember, since
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["UserGroups", "MAX_GROUPS", "MAX_INVITATIONS"]

MAX_GROUPS = 1_000  # the API refuses a join beyond it
MAX_INVITATIONS = 100  # the oldest waiting invitation makes room


class UserGroups(Entity):
    kind = "user_groups"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.groups: dict[str, dict] = {}  # group id -> {"since", "via"}
        self.invitations: dict[str, dict] = {}  # group id -> {"by", "at"}
        # group id -> when its invitation was declined or withdrawn: a group.invited the relay brings later
        # than that, about an invitation made before it, is old news
        self.dropped: dict[str, float] = {}
        self.recent: dict[str, list] = {}  # workout id -> [at, seq, what group.workout_shared carries]

    @react(GROUP_JOINED, to=To.field("user_id"))
    def on_joined(self, event: Event) -> None:
        group_id = event.fields["group_id"]
        fresh = group_id not in self.groups
        self.groups[group_id] = {"since": event.at, "via": event.fields["via"]}
        self.invitations.pop(group_id, None)
        if fresh:  # workouts recorded since the join that got here before it
            for _, _, shared in since(self.recent, event.at):
                self._share(group_id, shared)

    @react(GROUP_LEFT, to=To.field("user_id"))
    def on_left(self, event: Event) -> None:
        self.groups.pop(event.fields["group_id"], None)

    @react(GROUP_INVITED, to=To.field("user_id"))
    def on_invited(self, event: Event) -> None:
        group_id = event.fields["group_id"]
        if group_id in self.groups or self.dropped.get(group_id, float("-inf")) >= event.at:
            return
        self.invitations[group_id] = {"by": event.fields["by"], "at": event.at}
        while len(self.invitations) > MAX_INVITATIONS:
            del self.invitations[min(self.invitations, key=lambda g: (self.invitations[g]["at"], g))]

    @react(WORKOUT_RECORDED, to=To.field("owner"), when=lambda fields: fields["visibility"] != "private")
    def on_workout(self, event: Event) -> None:
        """The athlete's workout goes on to each of their groups: its feed and the athlete's member shard
        (the weekly board) react to ``group.workout_shared``, whose targets are plain fields."""
        shared = {name: event.fields[name] for name in ("owner", "owner_name", "workout_id", "visibility", "summary")}
        remember(self.recent, event, shared)
        for group_id in self.groups:
            self._share(group_id, shared)

    def _share(self, group_id: str, shared: dict) -> None:
        self.emit(GROUP_WORKOUT_SHARED, group_id=group_id, shard=member_shard(group_id, self.id), **shared)

    @update
    def drop_invitation(self, group_id: str) -> None:
        """The user declined it, or the group withdrew it (the member shard forgot it first)."""
        self.invitations.pop(group_id, None)
        self.dropped[group_id] = self.now
        while len(self.dropped) > MAX_INVITATIONS:
            del self.dropped[min(self.dropped, key=lambda g: (self.dropped[g], g))]

    @query
    def member_shards(self) -> list[str]:
        """The user's member shard in each of their groups (a workout edited or deleted corrects their boards)."""
        return [member_shard(group_id, self.id) for group_id in self.groups]

    @query
    def group_ids(self) -> list[str]:
        return list(self.groups)

    @query
    def count(self) -> int:
        return len(self.groups)

    @query
    def groups_page(self, before: list | None = None, limit: int = 50) -> dict:
        items = sorted(({"id": g, "at": m["since"], "via": m["via"]} for g, m in self.groups.items()),
                       key=lambda i: (i["at"], i["id"]), reverse=True)  # fmt: skip
        return page(items, before, limit)

    @query
    def invitation_list(self) -> list[dict]:
        items = [{"group_id": g, **i} for g, i in self.invitations.items()]
        return sorted(items, key=lambda i: (i["at"], i["group_id"]), reverse=True)
