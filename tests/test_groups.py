"""Groups as entities (actors/group*.py, actors/user_groups.py): membership sharded over member
shards, joins and leaves told to the group and the user through domain events, the feed and the
weekly board fed by ``workout.recorded`` exactly once, discovery by name, sport and place.
On a real host and relay over SQLite, without Ray."""

from __future__ import annotations

import time

import pytest

from actors.account import Account
from actors.group import Group
from actors.group_board import WEEK_S, add, merge, top, week_of
from actors.group_directory import MIN_SIMILARITY, GroupDirectory, similarity, trigrams
from actors.group_feed import GroupFeed
from actors.group_members import INVITATION_TTL_S, GroupMembers
from actors.group_post import GroupPost
from actors.group_shards import MEMBER_SHARDS, directory_shard, member_shard
from actors.places import cells_near, distance_km, index_cell, shown_point
from actors.user_groups import UserGroups
from engine.config import HostConfig
from engine.errors import Forbidden, NotFound, Rejected
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence import open_store

KINDS = [Account, Group, GroupMembers, UserGroups, GroupFeed, GroupPost, GroupDirectory]
PARIS = {"lat": 48.8566, "lon": 2.3522}


class World:
    """One host and one relay over a fresh SQLite file: the engine's real turns, journal and events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.host = Host(KINDS, open_store(url), HostConfig(snapshot_interval=3600, passivate_after=3600))
        self.store = open_store(url)
        self.relay = Relay(self.store, self.host.deliver, self.ask, subscriptions(KINDS), backoff=0.001, retries=2)

    async def ask(self, kind: str, entity_id: str, message_type: str, body: dict | None = None):
        return await self.host.ask(kind, entity_id, message_type, body)

    async def settle(self) -> None:
        await self.relay.drain(timeout=30)

    async def user(self, user_id: str, private: bool = False) -> str:
        await self.ask("account", user_id, "register", {"email": f"{user_id}@x", "password_hash": "-",
                                                        "display_name": user_id.title()})  # fmt: skip
        if private:
            await self.ask("account", user_id, "update_profile", {"private": True})
        return user_id

    async def group(self, group_id: str, owner: str, **rules) -> dict:
        profile = {"name": rules.pop("name", "Paris Runners"), "sports": rules.pop("sports", ["run"])}
        view = await self.ask("group", group_id, "create", {"owner": owner, "profile": profile, **rules})
        await self.ask("group_members", member_shard(group_id, owner), "found", {"user_id": owner})
        return view

    async def join(self, group_id: str, user_id: str, policy: str = "open") -> str:
        shard = member_shard(group_id, user_id)
        return await self.ask("group_members", shard, "join", {"user_id": user_id, "policy": policy})

    async def standing(self, group_id: str, user_id: str) -> str | None:
        return await self.ask("group_members", member_shard(group_id, user_id), "standing", {"user_id": user_id})

    async def workout(self, owner: str, workout_id: str, visibility: str = "public", **summary) -> None:
        summary = {"id": workout_id, "sport": "run", "start": time.time() - 3600, "distance_m": 10_000.0,
                   "moving_s": 3_000.0, "elevation_gain_m": 50.0, "title": "Run", "visibility": visibility,
                   **summary}  # fmt: skip
        await self.ask("account", owner, "add_workout", {"summary": summary})

    async def board(self, group_id: str, metric: str = "distance_m", sport: str | None = None) -> list[dict]:
        body = {"week": week_of(time.time()), "metric": metric, "sport": sport, "limit": 10}
        parts = [await self.ask("group_members", f"{group_id}-{n:02d}", "board", body) for n in range(MEMBER_SHARDS)]
        return merge([p["rows"] for p in parts], metric, 10)

    async def search(self, **query) -> list[dict]:
        found = []
        for n in range(16):
            found += await self.ask("group_directory", f"d{n:02d}", "search", query)
        return found


@pytest.fixture
async def world(tmp_path):
    world = World(f"sqlite:///{tmp_path}/groups.db")
    await world.host.start()
    await world.store.open()
    await world.relay.load_cursors()
    yield world
    await world.host.stop()
    await world.store.close()


# -- pure parts ------------------------------------------------------------------------------


def test_a_misspelt_or_unaccented_name_still_finds_the_group():
    name = trigrams("Paris Runners Club")
    assert similarity(trigrams("runers"), name)[0] >= 0.8
    assert similarity(trigrams("paris runners club"), name)[0] == 1.0
    assert similarity(trigrams("zurich"), trigrams("Zürich Trail"))[0] == 1.0
    assert similarity(trigrams("cyclists"), name)[0] < MIN_SIMILARITY


def test_a_location_is_shown_only_as_coarse_as_its_owner_chose():
    exact = (PARIS["lat"], PARIS["lon"])
    assert shown_point(*exact, "hidden") is None
    area, city, region = (shown_point(*exact, shown) for shown in ("area", "city", "region"))
    assert distance_km(exact, area) < distance_km(exact, region) and distance_km(exact, region) < 40
    assert area != exact and city != exact
    assert index_cell(city) in cells_near(*exact, 5)


def test_weeks_start_on_monday_and_old_weeks_count_no_more():
    now = 1_800_000_000.0  # a Friday
    monday = week_of(now)
    assert (
        time.gmtime(monday).tm_wday == 0 and time.gmtime(monday)[3:6] == (0, 0, 0) and monday <= now < monday + WEEK_S
    )
    weeks: dict = {}
    assert add(weeks, now, "ana", now - 3600, "run", (5_000.0, 1_500.0, 10.0))
    assert add(weeks, now, "ana", now - 7200, "ride", (20_000.0, 2_500.0, 100.0))
    assert add(weeks, now, "bo", now - 60, "run", (8_000.0, 2_400.0, 0.0))
    assert not add(weeks, now, "bo", now - 6 * WEEK_S, "run", (1.0, 1.0, 1.0))  # long gone
    assert not add(weeks, now, "bo", now + 3 * 86_400, "run", (1.0, 1.0, 1.0))  # not yet
    assert [r["user_id"] for r in top(weeks, monday, None, "distance_m", 10)] == ["ana", "bo"]
    assert [r["user_id"] for r in top(weeks, monday, "run", "distance_m", 10)] == ["bo", "ana"]
    ranked = merge([top(weeks, monday, None, "moving_s", 10), []], "moving_s", 1)
    assert ranked == [{"rank": 1, "user_id": "ana", "distance_m": 25_000.0, "moving_s": 4_000.0,
                       "elevation_m": 110.0, "workouts": 2}]  # fmt: skip


def test_members_spread_over_the_shards_by_a_stable_hash():
    shards = {member_shard("g1", f"user-{n}") for n in range(2_000)}
    assert len(shards) == MEMBER_SHARDS
    assert member_shard("g1", "user-7") == member_shard("g1", "user-7")
    assert directory_shard("g1").startswith("d")


# -- through the engine -----------------------------------------------------------------------


async def test_creating_a_group_makes_its_owner_the_first_member_and_lists_it(world):
    owner = await world.user("olga")
    view = await world.group("g1", owner, location=PARIS, location_shown="city")
    assert view["members"] == 1 and view["owner"] == owner and view["location"]["exact"] == PARIS
    await world.settle()
    assert (await world.ask("group", "g1", "view", {}))["members"] == 1, "the owner's join is counted once"
    assert "exact" not in (await world.ask("group", "g1", "view", {"viewer": "stranger"}))["location"]
    assert await world.ask("user_groups", owner, "group_ids") == ["g1"]
    (found,) = await world.search(text="paris runers")
    assert found["id"] == "g1" and found["members"] == 1 and found["point"] == shown_point(*PARIS.values(), "city")
    assert "lat" not in str(found.get("location"))  # the directory never holds the exact point


async def test_join_policies_requests_and_invitations(world):
    owner, ana, bo, cy = [await world.user(u) for u in ("olga", "ana", "bo", "cy")]
    await world.group("open", owner)
    await world.group("asked", owner, join_policy="request")
    await world.group("closed", owner, join_policy="invite")
    assert await world.join("open", ana) == "member"
    assert await world.join("open", ana) == "member"  # again: nothing changes
    assert await world.join("asked", ana, "request") == "requested"
    with pytest.raises(Forbidden, match="invitation only"):
        await world.join("closed", ana, "invite")
    shard = member_shard("asked", ana)
    assert await world.ask("group_members", shard, "answer", {"user_id": ana, "accept": True, "by": owner}) == "member"
    await world.join("asked", bo, "request")
    shard = member_shard("asked", bo)
    assert (
        await world.ask("group_members", shard, "answer", {"user_id": bo, "accept": False, "by": owner}) == "declined"
    )
    with pytest.raises(NotFound):
        await world.ask("group_members", shard, "answer", {"user_id": bo, "accept": True, "by": owner})
    shard = member_shard("closed", cy)
    assert await world.ask("group_members", shard, "invite", {"user_id": cy, "by": owner}) == "invited"
    assert await world.standing("closed", cy) == "invited"
    await world.settle()
    assert [i["group_id"] for i in await world.ask("user_groups", cy, "invitation_list")] == ["closed"]
    assert await world.join("closed", cy, "invite") == "member"
    await world.settle()
    assert await world.ask("user_groups", cy, "invitation_list") == []
    counts = {g: (await world.ask("group", g, "view", {}))["members"] for g in ("open", "asked", "closed")}
    assert counts == {"open": 2, "asked": 2, "closed": 2}
    assert sorted(await world.ask("user_groups", ana, "group_ids")) == ["asked", "open"]


async def test_a_banned_athlete_is_out_and_cannot_rejoin_until_the_ban_is_lifted(world):
    owner, ana = await world.user("olga"), await world.user("ana")
    await world.group("g", owner)
    await world.join("g", ana)
    shard = member_shard("g", ana)
    await world.ask("group_members", shard, "ban", {"user_id": ana, "by": owner, "reason": "spam"})
    assert await world.standing("g", ana) == "banned"
    with pytest.raises(Forbidden, match="banned"):
        await world.join("g", ana)
    with pytest.raises(Rejected, match="lift the ban"):
        await world.ask("group_members", shard, "invite", {"user_id": ana, "by": owner})
    await world.settle()
    assert (await world.ask("group", "g", "view", {}))["members"] == 1
    assert await world.ask("user_groups", ana, "group_ids") == []
    await world.ask("group_members", shard, "unban", {"user_id": ana, "by": owner})
    assert await world.join("g", ana) == "member"
    history = (await world.ask("group_members", shard, "history_page", {}))["items"]
    assert [(h["what"], h["by"]) for h in history] == [("joined", ana), ("unbanned", owner), ("banned", owner),
                                                      ("joined", ana)]  # fmt: skip


async def test_roles_transfer_and_who_may_act_on_whom(world):
    owner, ana, bo = await world.user("olga"), await world.user("ana"), await world.user("bo")
    await world.group("g", owner)
    for user in (ana, bo):
        await world.join("g", user)
    await world.ask("group", "g", "set_role", {"by": owner, "user_id": ana, "role": "admin"})
    with pytest.raises(Forbidden):
        await world.ask("group", "g", "set_role", {"by": ana, "user_id": bo, "role": "admin"})
    assert await world.ask("group", "g", "may_manage", {"by": ana, "target": bo}) == "admin"
    with pytest.raises(Forbidden, match="owner"):
        await world.ask("group", "g", "may_manage", {"by": ana, "target": owner})
    with pytest.raises(Forbidden):
        await world.ask("group", "g", "may_manage", {"by": bo, "target": ana})
    assert await world.ask("group", "g", "transfer", {"by": owner, "to": bo}) == {"owner": bo}
    assert await world.ask("group", "g", "roles", {}) == {"owner": bo, "admins": [ana, owner]}
    with pytest.raises(Forbidden):
        await world.ask("group", "g", "transfer", {"by": owner, "to": ana})
    await world.ask("group_members", member_shard("g", ana), "leave", {"user_id": ana})
    await world.settle()
    assert (await world.ask("group", "g", "roles", {}))["admins"] == [owner], "an admin who leaves is no admin"
    history = [(h["what"], h["user"]) for h in (await world.ask("group", "g", "history_page", {}))["items"]]
    assert history[:3] == [("role_changed", ana), ("ownership_transferred", bo), ("role_changed", ana)]


async def test_a_members_workout_reaches_the_feed_and_the_board_once_and_a_private_one_never(world):
    owner, ana, stranger = await world.user("olga"), await world.user("ana"), await world.user("zed")
    await world.group("g", owner)
    await world.join("g", ana)
    await world.settle()  # ana's list knows the group before her workouts are fanned out
    await world.workout(ana, "w1", distance_m=12_000.0)
    await world.workout(ana, "w2", visibility="private", distance_m=99_000.0)
    await world.workout(ana, "w3", visibility="followers", distance_m=3_000.0, sport="ride")
    await world.workout(stranger, "w4")
    await world.settle()
    items = (await world.ask("group_feed", "g", "read", {}))["items"]
    assert sorted(i["id"] for i in items) == ["w1", "w3"]
    assert await world.board("g") == [{"rank": 1, "user_id": ana, "distance_m": 15_000.0, "moving_s": 6_000.0,
                                       "elevation_m": 100.0, "workouts": 2, "name": "Ana"}]  # fmt: skip
    assert [r["distance_m"] for r in await world.board("g", sport="run")] == [12_000.0]

    # A relay that lost its cursors delivers everything again: nothing counts twice.
    for progress in world.relay.progress.values():
        progress.position = 0
    await world.settle()
    assert len((await world.ask("group_feed", "g", "read", {}))["items"]) == 2
    assert [r["workouts"] for r in await world.board("g")] == [2]

    await world.ask("group_members", member_shard("g", ana), "leave", {"user_id": ana})
    await world.settle()
    assert (await world.ask("group_feed", "g", "read", {}))["items"] == []
    assert await world.board("g") == []
    await world.workout(ana, "w5")
    await world.settle()
    assert (await world.ask("group_feed", "g", "read", {}))["items"] == [], "no longer a member"


async def test_posts_reach_the_feed_once_with_bounded_comments(world):
    owner = await world.user("olga")
    await world.group("g", owner)
    card = await world.ask("group_post", "p1", "create", {"group_id": "g", "author": owner, "author_name": "Olga",
                                                          "text": " Sunday long run, 9:00 "})  # fmt: skip
    assert card["text"] == "Sunday long run, 9:00"
    item = {"id": "p1", "type": "post", "at": card["at"], "owner": owner, "owner_name": "Olga", "text": card["text"]}
    await world.ask("group_feed", "g", "push", {"item": item})  # the API's own push, then the event's
    await world.settle()
    assert [i["id"] for i in (await world.ask("group_feed", "g", "read", {}))["items"]] == ["p1"]
    with pytest.raises(NotFound):
        await world.ask("group_post", "p1", "card", {"group_id": "another"})
    assert await world.ask("group_post", "p1", "give_kudos", {"group_id": "g", "athlete": "ana"}) == 1
    assert await world.ask("group_post", "p1", "give_kudos", {"group_id": "g", "athlete": "ana"}) == 1
    with pytest.raises(Rejected):
        await world.ask("group_post", "p1", "give_kudos", {"group_id": "g", "athlete": owner})
    for n in range(3):
        await world.ask("group_post", "p1", "comment", {"group_id": "g", "comment_id": f"c{n}", "author": "ana",
                                                        "text": f"see you {n}"})  # fmt: skip
    page = await world.ask("group_post", "p1", "comment_list", {"group_id": "g", "limit": 2})
    assert [c["id"] for c in page["items"]] == ["c2", "c1"] and page["next"]
    with pytest.raises(Forbidden):
        await world.ask("group_post", "p1", "delete", {"group_id": "g", "by": "bo"})
    await world.ask("group_post", "p1", "delete", {"group_id": "g", "by": "bo", "moderator": True})
    with pytest.raises(NotFound):
        await world.ask("group_post", "p1", "card", {"group_id": "g"})


async def test_discovery_by_name_sport_and_place_never_shows_a_hidden_group(world):
    owner = await world.user("olga")
    lyon = {"lat": 45.764, "lon": 4.8357}
    await world.group("paris", owner, name="Paris Runners", location=PARIS, location_shown="area")
    await world.group("velo", owner, name="Paris Vélo Club", sports=["ride"], location=PARIS, location_shown="city")
    await world.group("lyon", owner, name="Lyon Runners", location=lyon, location_shown="city")
    await world.group("secret", owner, name="Paris Runners Elite", visibility="hidden", join_policy="invite",
                      location=PARIS)  # fmt: skip
    await world.group("closed", owner, name="Paris Runners Masters", visibility="private", location=PARIS)
    await world.settle()
    names = [g["id"] for g in sorted(await world.search(text="paris runers"), key=lambda g: -g["score"])]
    assert "secret" not in names and names[0] == "paris" and "closed" in names
    assert {g["id"] for g in await world.search(sport="ride")} == {"velo"}
    near = await world.search(near=[48.86, 2.35], radius_km=20)
    assert {g["id"] for g in near} == {"paris", "velo", "closed"}
    assert all(g["distance_km"] <= 20 for g in near)
    assert {g["id"] for g in await world.search(near=[45.75, 4.85], radius_km=10)} == {"lyon"}  # 390 km south
    assert [g["id"] for g in await world.search(text="runners", near=[45.75, 4.85], radius_km=200)] == ["lyon"]
    await world.ask(
        "group", "paris", "edit", {"by": owner, "changes": {"visibility": "hidden", "join_policy": "invite"}}
    )
    await world.settle()
    assert "paris" not in {g["id"] for g in await world.search(text="paris")}

    # The directory's indexes are rebuilt from its snapshot, never stored.
    shard = directory_shard("velo")
    restored = GroupDirectory(shard)
    original = GroupDirectory(shard)
    original._put("velo", {"name": "Paris Vélo Club", "sports": ["ride"], "point": [48.85, 2.35], "members": 1})
    restored.restore(original.snapshot())
    assert [g["id"] for g in restored.search(text="velo")] == ["velo"]


async def test_a_hidden_group_needs_invitations_and_the_rules_are_checked(world):
    owner = await world.user("olga")
    with pytest.raises(Rejected, match="invitation only"):
        await world.group("g", owner, visibility="hidden", join_policy="open")
    with pytest.raises(Rejected, match="cover colour"):
        await world.ask("group", "g", "create", {"owner": owner, "profile": {"name": "x", "cover_colour": "red"}})
    await world.group("g", owner)
    with pytest.raises(Forbidden, match="owner"):
        await world.ask("group", "g", "edit", {"by": "ana", "changes": {"name": "Mine now"}})
    with pytest.raises(Rejected):  # refused before anything changed
        await world.ask("group", "g", "edit", {"by": owner, "changes": {"name": "New", "visibility": "nope"}})
    assert (await world.ask("group", "g", "view", {}))["name"] == "Paris Runners"


async def test_a_group_of_many_members_keeps_each_shard_small(world):
    owner = await world.user("olga")
    await world.group("big", owner)
    users = [f"u{n}" for n in range(1_000)]
    answers = await world.host.deliver(
        [("group_members", member_shard("big", u), "join", {"user_id": u, "policy": "open"}, None) for u in users]
    )
    assert answers == ["member"] * len(users)
    await world.settle()
    assert (await world.ask("group", "big", "view", {}))["members"] == 1_001
    sizes = [(await world.ask("group_members", f"big-{n:02d}", "counts", {}))["members"] for n in range(MEMBER_SHARDS)]
    assert sum(sizes) == 1_001 and max(sizes) < 40


async def test_an_invitation_expires_after_thirty_days(world):
    owner, ana = await world.user("olga"), await world.user("ana")
    await world.group("g", owner, join_policy="invite")
    shard = member_shard("g", ana)
    sent = time.time()
    await world.host.ask("group_members", shard, "invite", {"user_id": ana, "by": owner}, at=sent)
    later = sent + INVITATION_TTL_S + 1
    assert await world.host.ask("group_members", shard, "standing", {"user_id": ana}, at=later) is None
    assert await world.host.ask("group_members", shard, "people", {"which": "invited"}, at=later) == []
    with pytest.raises(Forbidden, match="invitation only"):
        await world.host.ask("group_members", shard, "join", {"user_id": ana, "policy": "invite"}, at=later)
