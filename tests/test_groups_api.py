"""Groups through the HTTP API, against a real Arena (the FastAPI app in-process over real hosts, relay
and store on the shared Ray cluster): every route, who may use it (401, 403, a hidden group's 404),
hostile bodies (422, 413), bans and rejoining, ownership transfer, and a member's workout in the
group's feed exactly once while a private one never shows."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from serve.app import API_PREFIX, api

pytestmark = pytest.mark.ray

PASSWORD = "correct horse battery"
PARIS = {"lat": 48.8566, "lon": 2.3522}


async def settled(client: httpx.AsyncClient) -> None:
    """Until the relay has delivered every domain event so far (memberships reach accounts through
    it). ``drain`` answers False while the relay restarts: ask again, as an operator would."""
    deadline = time.monotonic() + 120
    while not await client.arena.drain():
        assert time.monotonic() < deadline, "the relay never delivered the events"
        await asyncio.sleep(1)


async def signup(client: httpx.AsyncClient, name: str) -> dict:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": name})
    assert created.status_code == 201, created.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    return {"id": created.json()["id"], "headers": {"Authorization": f"Bearer {login.json()['access_token']}"}}


def problem(answer: httpx.Response, status: int, words: str = "") -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert words.lower() in body["detail"].lower(), body
    return body


async def create(client, owner: dict, **fields) -> dict:
    body = {"name": f"Runners {uuid.uuid4().hex[:6]}", "sports": ["run"], **fields}
    answer = await client.post("/groups", json=body, headers=owner["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()


async def join(client, group_id: str, who: dict) -> str:
    answer = await client.post(f"/groups/{group_id}/join", headers=who["headers"])
    assert answer.status_code == 200, answer.text
    return answer.json()["status"]


def _group_routes() -> list[tuple[str, str]]:
    paths = api.openapi()["paths"]
    return sorted(
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, methods in paths.items()
        if path.startswith((f"{API_PREFIX}/groups", f"{API_PREFIX}/me/group"))
        for method in methods
    )


async def test_every_group_route_needs_a_token(client):
    routes = _group_routes()
    assert len(routes) >= 28
    for method, path in routes:
        url = path.format(group_id="g1", user_id="u1", post_id="p1", comment_id="c1", answer="accept", event_id="e1")
        answer = await client.request(method, url, json={"text": "x", "user_id": "u1", "role": "admin", "name": "x"})
        problem(answer, 401)


async def test_create_read_edit_and_delete_a_group(client):
    owner, ana = await signup(client, "Olga"), await signup(client, "Ana")
    group = await create(client, owner, description="Easy runs", city="Paris", region="IDF", location=PARIS,
                         location_shown="area", cover_colour="#FF6600")  # fmt: skip
    assert group["members"] == 1 and group["me"] == {"role": "owner", "standing": "member"}
    assert group["location"]["exact"] == PARIS and group["location"]["point"] != [PARIS["lat"], PARIS["lon"]]
    seen = (await client.get(f"/groups/{group['id']}", headers=ana["headers"])).json()
    assert "exact" not in seen["location"] and seen["me"] == {"role": None, "standing": None}
    assert seen["cover_colour"] == "#FF6600" and seen["join_policy"] == "open"

    problem(await client.patch(f"/groups/{group['id']}", json={"name": "Mine"}, headers=ana["headers"]), 403)
    edited = await client.patch(f"/groups/{group['id']}", json={"name": "  Olga's Runners ", "location_shown": "region"},
                                headers=owner["headers"])  # fmt: skip
    assert edited.status_code == 200 and edited.json()["name"] == "Olga's Runners"
    await join(client, group["id"], ana)
    await settled(client)
    promoted = await client.put(f"/groups/{group['id']}/members/{ana['id']}/role", json={"role": "admin"},
                                headers=owner["headers"])  # fmt: skip
    assert promoted.json() == {"user_id": ana["id"], "role": "admin"}
    assert (await client.patch(f"/groups/{group['id']}", json={"description": "Fast runs"},
                               headers=ana["headers"])).status_code == 200  # fmt: skip
    problem(await client.patch(f"/groups/{group['id']}", json={"visibility": "private"}, headers=ana["headers"]),
            403, "only the owner")  # fmt: skip
    problem(await client.delete(f"/groups/{group['id']}", headers=ana["headers"]), 403)
    assert (await client.delete(f"/groups/{group['id']}", headers=owner["headers"])).status_code == 204
    problem(await client.get(f"/groups/{group['id']}", headers=owner["headers"]), 404)
    problem(await client.get(f"/groups/{uuid.uuid4().hex}", headers=owner["headers"]), 404)


MALFORMED_GROUPS = [
    {"name": ""},
    {"name": "   "},
    {"name": "x" * 81},
    {"name": "x", "colour": "#fff"},
    {"name": "x", "cover_colour": "orange"},
    {"name": "x", "sports": ["chess"]},
    {"name": "x", "location": {"lat": 91, "lon": 0}},
    {"name": "x", "location": {"lat": 1}},
    {"name": "x", "location_shown": "street"},
    {"name": "x", "visibility": "hidden", "join_policy": "open"},
    {"name": "x", "description": "d" * 2_001},
    {"name": "x", "sports": ["run"] * 50},
    ["not", "an", "object"],
]


async def test_a_malformed_group_is_refused_with_a_problem_that_says_why(client):
    owner = await signup(client, "Olga")
    for body in MALFORMED_GROUPS:
        answer = await client.post("/groups", json=body, headers=owner["headers"])
        assert problem(answer, 422, "not valid")["errors"], body
    assert (await client.get("/me/groups", headers=owner["headers"])).json()["items"] == []


async def test_malformed_and_oversized_edits_posts_and_invitations_are_refused(client):
    owner = await signup(client, "Olga")
    group = await create(client, owner)
    url = f"/groups/{group['id']}"
    problem(await client.patch(url, json={}, headers=owner["headers"]), 422, "not valid")
    problem(await client.patch(url, json={"name": None}, headers=owner["headers"]), 422)
    problem(await client.post(f"{url}/posts", json={"text": "x" * 4_001}, headers=owner["headers"]), 422)
    problem(await client.post(f"{url}/posts", json={"text": " \n "}, headers=owner["headers"]), 422)
    problem(await client.post(f"{url}/posts", json={"text": "hi", "pinned": True}, headers=owner["headers"]), 422)
    problem(await client.post(f"{url}/invitations", json={"user_id": "../etc"}, headers=owner["headers"]), 422)
    problem(await client.put(f"{url}/members/x/role", json={"role": "owner"}, headers=owner["headers"]), 422)
    problem(await client.put(f"{url}/bans/x", json={"reason": "r" * 281}, headers=owner["headers"]), 422)
    huge = b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    headers = {**owner["headers"], "content-type": "application/json"}
    problem(await client.post(f"{url}/posts", content=huge, headers=headers), 413)
    problem(await client.get("/groups", params={"lat": 48.0}, headers=owner["headers"]), 422, "lat and lon")
    problem(await client.get("/groups", params={"radius_km": 5_000, "lat": 1, "lon": 1}, headers=owner["headers"]), 422)
    problem(await client.get("/groups", params={"q": "x" * 101}, headers=owner["headers"]), 422)
    problem(await client.get("/groups", params={"cursor": "nonsense!"}, headers=owner["headers"]), 400)


async def test_a_hidden_group_is_a_404_to_all_but_its_members_and_invitees(client):
    owner, ana, zed = await signup(client, "Olga"), await signup(client, "Ana"), await signup(client, "Zed")
    secret = await create(client, owner, name="Secret Sunrise Squad", visibility="hidden")
    assert secret["join_policy"] == "invite"
    gid = secret["id"]
    for method, path in [("GET", ""), ("POST", "/join"), ("GET", "/feed"), ("GET", "/members"), ("GET", "/leaderboard"),
                         ("POST", "/leave"), ("GET", "/history")]:  # fmt: skip
        problem(await client.request(method, f"/groups/{gid}{path}", headers=zed["headers"]), 404, "no such group")
    await settled(client)
    found = (await client.get("/groups", params={"q": "secret sunrise"}, headers=zed["headers"])).json()["items"]
    assert gid not in [g["id"] for g in found]

    invited = await client.post(f"/groups/{gid}/invitations", json={"user_id": ana["id"]}, headers=owner["headers"])
    assert invited.status_code == 201 and invited.json() == {"status": "invited"}
    problem(await client.post(f"/groups/{gid}/invitations", json={"user_id": uuid.uuid4().hex}, headers=owner["headers"]),
            404, "no such athlete")  # fmt: skip
    assert (await client.get(f"/groups/{gid}", headers=ana["headers"])).json()["me"]["standing"] == "invited"
    problem(await client.get(f"/groups/{gid}/feed", headers=ana["headers"]), 403)
    await settled(client)
    waiting = (await client.get("/me/group-invitations", headers=ana["headers"])).json()["items"]
    assert [(i["group_id"], i["name"], i["by"]) for i in waiting] == [(gid, "Secret Sunrise Squad", owner["id"])]
    assert await join(client, gid, ana) == "member"
    assert (await client.get(f"/groups/{gid}/feed", headers=ana["headers"])).status_code == 200
    problem(await client.get(f"/groups/{gid}", headers=zed["headers"]), 404)


async def test_a_private_group_is_listed_but_its_content_is_for_members(client):
    owner, ana, zed = await signup(client, "Olga"), await signup(client, "Ana"), await signup(client, "Zed")
    group = await create(client, owner, name="Quiet Trail Club", visibility="private", join_policy="request")
    gid = group["id"]
    await settled(client)
    found = (await client.get("/groups", params={"q": "quiet trail"}, headers=zed["headers"])).json()["items"]
    assert [(g["id"], g["visibility"], g["members"]) for g in found] == [(gid, "private", 1)]
    assert (await client.get(f"/groups/{gid}", headers=zed["headers"])).status_code == 200
    for path in ("/feed", "/members", "/leaderboard"):
        problem(await client.get(f"/groups/{gid}{path}", headers=zed["headers"]), 403, "members")
    problem(await client.get(f"/groups/{gid}/requests", headers=zed["headers"]), 403)

    assert await join(client, gid, ana) == "requested"
    assert await join(client, gid, zed) == "requested"
    problem(await client.post(f"/groups/{gid}/posts", json={"text": "hi"}, headers=ana["headers"]), 403)
    requests = (await client.get(f"/groups/{gid}/requests", headers=owner["headers"])).json()["items"]
    assert sorted(r["id"] for r in requests) == sorted([ana["id"], zed["id"]])
    assert {r["name"] for r in requests} == {"Ana", "Zed"}
    problem(await client.post(f"/groups/{gid}/requests/{ana['id']}/accept", headers=zed["headers"]), 403)
    accepted = await client.post(f"/groups/{gid}/requests/{ana['id']}/accept", headers=owner["headers"])
    assert accepted.json() == {"status": "member"}
    declined = await client.post(f"/groups/{gid}/requests/{zed['id']}/decline", headers=owner["headers"])
    assert declined.json() == {"status": "declined"}
    problem(await client.post(f"/groups/{gid}/requests/{zed['id']}/accept", headers=owner["headers"]), 404)
    assert (await client.get(f"/groups/{gid}/feed", headers=ana["headers"])).status_code == 200
    await settled(client)
    mine = (await client.get("/me/groups", headers=ana["headers"])).json()["items"]
    assert [(g["id"], g["role"], g["via"]) for g in mine] == [(gid, "member", "request")]


async def test_invitations_can_be_declined_and_withdrawn(client):
    owner, ana, bo = await signup(client, "Olga"), await signup(client, "Ana"), await signup(client, "Bo")
    gid = (await create(client, owner, join_policy="invite"))["id"]
    problem(await client.post(f"/groups/{gid}/join", headers=ana["headers"]), 403, "invitation only")
    for who in (ana, bo):
        await client.post(f"/groups/{gid}/invitations", json={"user_id": who["id"]}, headers=owner["headers"])
    problem(await client.post(f"/groups/{gid}/invitations", json={"user_id": bo["id"]}, headers=ana["headers"]), 403)
    pending = (await client.get(f"/groups/{gid}/invitations", headers=owner["headers"])).json()["items"]
    assert sorted(i["id"] for i in pending) == sorted([ana["id"], bo["id"]]) and pending[0]["by"] == owner["id"]
    assert (await client.delete(f"/groups/{gid}/invitations/{ana['id']}", headers=ana["headers"])).status_code == 204
    problem(await client.delete(f"/groups/{gid}/invitations/{bo['id']}", headers=ana["headers"]), 403)
    assert (await client.delete(f"/groups/{gid}/invitations/{bo['id']}", headers=owner["headers"])).status_code == 204
    problem(await client.delete(f"/groups/{gid}/invitations/{bo['id']}", headers=owner["headers"]), 404)
    problem(await client.post(f"/groups/{gid}/join", headers=ana["headers"]), 403)
    await settled(client)
    assert (await client.get("/me/group-invitations", headers=ana["headers"])).json()["items"] == []
    history = (await client.get(f"/groups/{gid}/history", headers=owner["headers"])).json()["items"]
    assert [h["what"] for h in history][:4] == ["invitation_withdrawn", "invitation_declined", "invited", "invited"]


async def test_a_banned_athlete_cannot_rejoin_until_the_ban_is_lifted(client):
    owner, ana, bo = await signup(client, "Olga"), await signup(client, "Ana"), await signup(client, "Bo")
    gid = (await create(client, owner))["id"]
    await join(client, gid, ana)
    await join(client, gid, bo)
    problem(await client.put(f"/groups/{gid}/bans/{ana['id']}", headers=bo["headers"]), 403)
    problem(await client.put(f"/groups/{gid}/bans/{owner['id']}", headers=owner["headers"]), 422, "yourself")
    banned = await client.put(f"/groups/{gid}/bans/{ana['id']}", json={"reason": "spam"}, headers=owner["headers"])
    assert banned.status_code == 204
    problem(await client.post(f"/groups/{gid}/join", headers=ana["headers"]), 403, "banned")
    problem(await client.get(f"/groups/{gid}/feed", headers=ana["headers"]), 403, "banned")
    bans = (await client.get(f"/groups/{gid}/bans", headers=owner["headers"])).json()["items"]
    assert [(b["id"], b["reason"], b["by"]) for b in bans] == [(ana["id"], "spam", owner["id"])]
    await settled(client)
    assert (await client.get(f"/groups/{gid}", headers=owner["headers"])).json()["members"] == 2
    assert (await client.get("/me/groups", headers=ana["headers"])).json()["items"] == []
    assert (await client.delete(f"/groups/{gid}/bans/{ana['id']}", headers=owner["headers"])).status_code == 204
    problem(await client.delete(f"/groups/{gid}/bans/{ana['id']}", headers=owner["headers"]), 404)
    assert await join(client, gid, ana) == "member"
    await settled(client)
    assert (await client.get(f"/groups/{gid}", headers=owner["headers"])).json()["members"] == 3
    assert (await client.post(f"/groups/{gid}/leave", headers=ana["headers"])).json() == {"status": "left"}
    problem(await client.post(f"/groups/{gid}/leave", headers=ana["headers"]), 404, "not a member")


async def test_roles_removal_and_ownership_transfer(client):
    owner, ana, bo, cy = [await signup(client, n) for n in ("Olga", "Ana", "Bo", "Cy")]
    gid = (await create(client, owner))["id"]
    for who in (ana, bo, cy):
        await join(client, gid, who)
    problem(await client.put(f"/groups/{gid}/members/{bo['id']}/role", json={"role": "admin"}, headers=ana["headers"]),
            403)  # fmt: skip
    await client.put(f"/groups/{gid}/members/{ana['id']}/role", json={"role": "admin"}, headers=owner["headers"])
    await client.put(f"/groups/{gid}/members/{bo['id']}/role", json={"role": "admin"}, headers=owner["headers"])
    problem(await client.delete(f"/groups/{gid}/members/{bo['id']}", headers=ana["headers"]), 403, "owner")
    assert (await client.delete(f"/groups/{gid}/members/{cy['id']}", headers=ana["headers"])).status_code == 204
    problem(await client.delete(f"/groups/{gid}/members/{cy['id']}", headers=ana["headers"]), 404)
    problem(await client.get(f"/groups/{gid}/history", headers=cy["headers"]), 403)
    problem(await client.post(f"/groups/{gid}/transfer", json={"user_id": cy["id"]}, headers=owner["headers"]), 404)
    problem(await client.post(f"/groups/{gid}/transfer", json={"user_id": bo["id"]}, headers=ana["headers"]), 403)
    problem(await client.post(f"/groups/{gid}/leave", headers=owner["headers"]), 409, "transfer")

    moved = await client.post(f"/groups/{gid}/transfer", json={"user_id": bo["id"]}, headers=owner["headers"])
    assert moved.json() == {"owner": bo["id"]}
    page = (await client.get(f"/groups/{gid}", headers=owner["headers"])).json()
    assert page["owner"] == bo["id"] and page["me"]["role"] == "admin"
    assert (await client.get(f"/groups/{gid}", headers=bo["headers"])).json()["me"]["role"] == "owner"
    problem(await client.delete(f"/groups/{gid}/members/{bo['id']}", headers=owner["headers"]), 403)
    assert (await client.post(f"/groups/{gid}/leave", headers=owner["headers"])).json() == {"status": "left"}
    await settled(client)
    members = (await client.get(f"/groups/{gid}/members", headers=bo["headers"])).json()["items"]
    assert sorted((m["name"], m["role"]) for m in members) == [("Ana", "admin"), ("Bo", "owner")]
    history = (await client.get(f"/groups/{gid}/history", headers=bo["headers"])).json()["items"]
    whats = [h["what"] for h in history]
    assert {"created", "joined", "removed", "left", "ownership_transferred", "role_changed"} <= set(whats)
    assert all(h["by"] and h["at"] for h in history)


async def test_a_members_workout_shows_in_the_group_feed_once_and_a_private_one_never(client):
    owner, ana, fan, zed = [await signup(client, n) for n in ("Olga", "Ana", "Fan", "Zed")]
    gid = (await create(client, owner))["id"]
    for who in (ana, fan):
        await join(client, gid, who)
    await client.post(f"/users/{ana['id']}/follow", headers=fan["headers"])
    await settled(client)
    run = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1800, "distance_m": 6000}
    public = (await client.post("/workouts", json=run, headers=ana["headers"])).json()
    private = {**run, "start": "2026-11-20T09:00:00Z", "visibility": "private", "distance_m": 42_000}
    assert (await client.post("/workouts", json=private, headers=ana["headers"])).status_code == 201
    friends = {**run, "start": "2026-11-20T08:00:00Z", "visibility": "followers", "distance_m": 3_000}
    for_followers = (await client.post("/workouts", json=friends, headers=ana["headers"])).json()
    await client.post("/workouts", json=run, headers=zed["headers"])  # not a member
    await settled(client)

    owners_view = (await client.get(f"/groups/{gid}/feed", headers=owner["headers"])).json()["items"]
    assert [(i["type"], i["id"]) for i in owners_view] == [("workout", public["id"])], "once, and never the private"
    fans_view = (await client.get(f"/groups/{gid}/feed", headers=fan["headers"])).json()["items"]
    assert [i["id"] for i in fans_view] == [for_followers["id"], public["id"]], "followers-only: for her followers"
    assert fans_view[1]["kudos"] == 0 and fans_view[1]["owner_name"] == "Ana"
    assert [i["id"] for i in (await client.get(f"/groups/{gid}/feed", headers=zed["headers"])).json()["items"]] == [
        public["id"]
    ]  # a public group's feed, for anyone signed in

    await client.patch(f"/workouts/{public['id']}", json={"visibility": "private"}, headers=ana["headers"])
    await settled(client)  # workout.edited takes it off the board
    assert (await client.get(f"/groups/{gid}/feed", headers=owner["headers"])).json()["items"] == []

    board = await client.get(f"/groups/{gid}/leaderboard", params={"week": "2026-11-18"}, headers=ana["headers"])
    body = board.json()
    assert body["week"] == "2026-11-16" and body["by"] == "distance_m"
    # The board counts public and followers-only workouts (as numbers), never private ones: the public
    # run made private since has left it, the followers-only one stays.
    assert [(r["rank"], r["user_id"], r["distance_m"], r["workouts"]) for r in body["rows"]] == [
        (1, ana["id"], 3_000.0, 1)
    ]
    assert body["me"]["distance_m"] == 3_000.0
    other = await client.get(f"/groups/{gid}/leaderboard", params={"by": "moving_s", "sport": "ride"},
                             headers=ana["headers"])  # fmt: skip
    assert other.json()["rows"] == [] and other.json()["me"] is None
    problem(await client.get(f"/groups/{gid}/leaderboard", params={"by": "speed"}, headers=ana["headers"]), 422)


async def test_posts_kudos_and_comments(client):
    owner, ana, zed = await signup(client, "Olga"), await signup(client, "Ana"), await signup(client, "Zed")
    gid = (await create(client, owner))["id"]
    await join(client, gid, ana)
    problem(await client.post(f"/groups/{gid}/posts", json={"text": "let me in"}, headers=zed["headers"]), 403)
    created = await client.post(
        f"/groups/{gid}/posts", json={"text": "Long run on Sunday, 9:00?"}, headers=ana["headers"]
    )
    assert created.status_code == 201
    post = created.json()
    feed = (await client.get(f"/groups/{gid}/feed", headers=zed["headers"])).json()["items"]
    assert [(i["type"], i["id"], i["owner_name"]) for i in feed] == [("post", post["id"], "Ana")]
    url = f"/groups/{gid}/posts/{post['id']}"
    problem(await client.put(f"{url}/kudos", headers=ana["headers"]), 409, "own post")
    problem(await client.put(f"{url}/kudos", headers=zed["headers"]), 403)
    assert (await client.put(f"{url}/kudos", headers=owner["headers"])).json() == {"kudos": 1}
    assert (await client.put(f"{url}/kudos", headers=owner["headers"])).json() == {"kudos": 1}
    assert [k["id"] for k in (await client.get(f"{url}/kudos", headers=zed["headers"])).json()["items"]] == [
        owner["id"]
    ]
    for n in range(3):
        answer = await client.post(f"{url}/comments", json={"text": f"in {n}"}, headers=owner["headers"])
        assert answer.status_code == 201
    first = (await client.get(f"{url}/comments", params={"limit": 2}, headers=zed["headers"])).json()
    second = (
        await client.get(f"{url}/comments", params={"cursor": first["next_cursor"]}, headers=zed["headers"])
    ).json()
    assert [c["text"] for c in first["items"] + second["items"]] == ["in 2", "in 1", "in 0"]
    problem(await client.delete(f"{url}/comments/{first['items'][0]['id']}", headers=zed["headers"]), 403)
    assert (await client.delete(f"{url}/comments/{first['items'][0]['id']}", headers=ana["headers"])).status_code == 204
    assert (await client.get(url, headers=zed["headers"])).json()["comments"] == 2
    assert (await client.delete(f"{url}/kudos", headers=owner["headers"])).json() == {"kudos": 0}
    problem(await client.delete(url, headers=zed["headers"]), 403)
    assert (await client.delete(url, headers=owner["headers"])).status_code == 204  # an admin moderates
    problem(await client.get(url, headers=ana["headers"]), 404)
    problem(await client.get(f"/groups/{uuid.uuid4().hex}/posts/{post['id']}", headers=ana["headers"]), 404)
    await settled(client)
    assert (await client.get(f"/groups/{gid}/feed", headers=ana["headers"])).json()["items"] == []


async def test_discovery_by_name_sport_and_place_with_counts_and_pages(client):
    me = await signup(client, "Finder")
    tag = uuid.uuid4().hex[:12]  # long enough that no other group of the module shares its trigrams by chance
    near = {"lat": 48.85, "lon": 2.34}
    made = {}
    for n, (name, sports, place) in enumerate(
        [(f"Canal Striders {tag}", ["run"], {"lat": 48.87, "lon": 2.36}),
         (f"Canal Cyclists {tag}", ["ride"], {"lat": 48.80, "lon": 2.30}),
         (f"Canal Rowers {tag}", ["row"], {"lat": 45.76, "lon": 4.84}),
         (f"Canal Walkers {tag}", ["walk"], None)]
    ):  # fmt: skip
        owner = await signup(client, f"Owner{n}")
        made[name.split()[1]] = (await create(client, owner, name=name, sports=sports, location=place))["id"]
    fan = await signup(client, "Fan")
    await join(client, made["Cyclists"], fan)
    await join(client, made["Walkers"], fan)
    await client.post(f"/groups/{made['Walkers']}/posts", json={"text": "walk at 6"}, headers=fan["headers"])
    await settled(client)

    typo = (await client.get("/groups", params={"q": f"canal strdiers {tag}"}, headers=me["headers"])).json()["items"]
    assert typo[0]["id"] == made["Striders"] and typo[0]["score"] > 0.5
    by_sport = (await client.get("/groups", params={"q": tag, "sport": "ride"}, headers=me["headers"])).json()["items"]
    assert [(g["id"], g["members"]) for g in by_sport] == [(made["Cyclists"], 2)]
    around = await client.get("/groups", params={"q": tag, **near, "radius_km": 30, "sort": "distance"},
                              headers=me["headers"])  # fmt: skip
    items = around.json()["items"]
    assert [g["id"] for g in items] == [made["Striders"], made["Cyclists"]]
    assert items[0]["distance_km"] < items[1]["distance_km"] < 30
    assert "exact" not in items[0]["location"]
    active = (await client.get("/groups", params={"q": tag, "sort": "activity"}, headers=me["headers"])).json()["items"]
    assert active[0]["id"] == made["Walkers"] and active[0]["activity"] == 1
    first = (await client.get("/groups", params={"q": tag, "limit": 3}, headers=me["headers"])).json()
    rest = await client.get(
        "/groups", params={"q": tag, "limit": 3, "cursor": first["next_cursor"]}, headers=me["headers"]
    )
    assert len(first["items"]) == 3 and len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
    assert {g["id"] for g in first["items"] + rest.json()["items"]} == set(made.values())
    problem(await client.get("/groups", params={"sort": "distance"}, headers=me["headers"]), 422, "lat and lon")


async def test_the_member_list_pages_across_shards(client):
    owner = await signup(client, "Olga")
    gid = (await create(client, owner))["id"]
    people = [await signup(client, f"M{n}") for n in range(6)]
    for who in people:
        await join(client, gid, who)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/groups/{gid}/members", params=params, headers=people[0]["headers"])).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([owner["id"], *(p["id"] for p in people)]) and len(seen) == 7
