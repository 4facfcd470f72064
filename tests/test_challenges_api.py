"""Challenges through the HTTP API against a real Arena (the FastAPI app in-process over real hosts, relay and
store on the shared Ray cluster): every route, who may create (organizers, a group's admins), who sees a
group's or friends' challenge (404 for others), joining with the period's earlier workouts, the boards (top,
around me, friends, a group, teams), workouts deleted through the API taken back, and hostile input."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from serve.app import API_PREFIX, api
from tests.test_api import PASSWORD, assert_problem, signup
from tests.test_routes import HOSTILE_ROUTE_IDS, new_route

pytestmark = pytest.mark.ray

TODAY = datetime.now(UTC).date()
PERIOD = {"first_day": (TODAY - timedelta(days=5)).isoformat(), "last_day": (TODAY + timedelta(days=5)).isoformat()}
RUN = {"title": "Run 50 km", "goal_type": "distance_m", "goal": 50_000, "sports": ["run"], **PERIOD}


async def _admin(client) -> dict:
    email = "chief@example.com"
    await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "Chief"})
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def organizer(client) -> tuple[str, dict]:
    user_id, headers = await signup(client, "Org")
    granted = await client.put(f"/users/{user_id}/roles", json={"roles": ["athlete", "organizer"]},
                               headers=await _admin(client))  # fmt: skip
    assert granted.status_code == 200, granted.text
    email = (await client.get("/me", headers=headers)).json()["email"]
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    return user_id, {"Authorization": f"Bearer {login.json()['access_token']}"}


async def create(client, headers, **fields) -> dict:
    answer = await client.post("/challenges", json={**RUN, **fields}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def run(client, headers, km: float, days_ago: int = 1) -> str:
    start = (datetime.now(UTC) - timedelta(days=days_ago)).replace(microsecond=0).isoformat()
    body = {"sport": "run", "start": start, "duration_s": km * 300, "distance_m": km * 1000}
    answer = await client.post("/workouts", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def board(client, challenge_id: str, headers, **params) -> dict:
    answer = await client.get(f"/challenges/{challenge_id}/leaderboard", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _routes() -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, methods in api.openapi()["paths"].items()
        if path.startswith((f"{API_PREFIX}/challenges", f"{API_PREFIX}/me/challenges"))
        for method in methods
    )


async def test_every_challenge_route_needs_a_token(client):
    routes = _routes()
    assert len(routes) == 7
    for method, path in routes:
        answer = await client.request(method, path.format(challenge_id="c1"), json=RUN)
        assert_problem(answer, 401)


async def test_organizers_create_athletes_may_not_and_the_lifecycle_of_one_challenge(client):
    _, athlete = await signup(client, "Ana")
    assert_problem(await client.post("/challenges", json=RUN, headers=athlete), 403, "organizers")
    _, org = await organizer(client)
    made = await create(client, org, description="Spring miles")
    assert made["participants"] == 0 and made["me"] is None and made["scope"] == "everyone"

    ana_id, ana = await signup(client, "Ana")
    earlier = await run(client, ana, 8, days_ago=2)  # before joining, in the period: it counts
    await run(client, ana, 30, days_ago=20)  # before the period: it does not
    joined = await client.post(f"/challenges/{made['id']}/join", headers=ana)
    assert joined.status_code == 200 and joined.json()["progress"] == 8_000.0
    again = await client.post(f"/challenges/{made['id']}/join", headers=ana)
    assert again.json()["progress"] == 8_000.0  # joining twice changes nothing
    bo_id, bo = await signup(client, "Bo")
    await client.post(f"/challenges/{made['id']}/join", headers=bo)
    await client.arena.drain()
    later = await run(client, ana, 45)
    await run(client, bo, 12)
    await client.arena.drain()

    top = await board(client, made["id"], ana, view="top")
    assert [(r["rank"], r["user_id"], r["progress"], r["completed"]) for r in top["rows"]] == [
        (1, ana_id, 53_000.0, True),
        (2, bo_id, 12_000.0, False),
    ]
    assert top["rows"][0]["name"] == "Ana" and top["me"]["rank"] == 1 and top["participants"] == 2
    seen = (await client.get(f"/challenges/{made['id']}", headers=bo)).json()
    assert seen["participants"] == 2 and seen["me"]["rank"] == 2 and seen["me"]["progress"] == 12_000.0
    mine = (await client.get("/me/challenges", headers=ana)).json()["items"]
    assert [(c["id"], c["me"]["progress"]) for c in mine] == [(made["id"], 53_000.0)]
    listed = (await client.get("/challenges", params={"sport": "run"}, headers=bo)).json()["items"]
    assert made["id"] in [c["id"] for c in listed]
    assert made["id"] not in [c["id"] for c in (await client.get("/challenges", params={"sport": "swim"},
                                                                   headers=bo)).json()["items"]]  # fmt: skip

    assert (await client.delete(f"/workouts/{later}", headers=ana)).status_code == 204
    assert (await client.patch(f"/workouts/{earlier}", json={"visibility": "private"}, headers=ana)).status_code == 200
    await client.arena.drain()
    top = await board(client, made["id"], bo, view="top")
    assert [(r["user_id"], r["progress"]) for r in top["rows"]] == [(bo_id, 12_000.0), (ana_id, 8_000.0)]
    assert top["rows"][1]["completed"] is False  # taken back below the goal (the completion stays told)
    around = await board(client, made["id"], ana, view="around_me")
    assert [r["user_id"] for r in around["rows"]] == [bo_id, ana_id]

    assert (await client.post(f"/challenges/{made['id']}/leave", headers=bo)).json() == {"status": "left"}
    assert_problem(await client.post(f"/challenges/{made['id']}/leave", headers=bo), 404, "not in")
    await client.arena.drain()
    assert [r["user_id"] for r in (await board(client, made["id"], ana))["rows"]] == [ana_id]
    assert (await board(client, made["id"], bo, view="around_me"))["rows"] == []
    assert_problem(await client.get(f"/challenges/{uuid.uuid4().hex}", headers=ana), 404)


async def test_friends_see_friends_challenges_and_the_friends_board(client):
    org_id, org = await organizer(client)
    made = await create(client, org, scope="friends", title="Friends' streak", goal_type="streak_days", goal=3,
                        sports=[])  # fmt: skip
    fan_id, fan = await signup(client, "Fan")
    _, stranger = await signup(client, "Stranger")
    assert (await client.post(f"/users/{org_id}/follow", headers=fan)).status_code in (200, 201)
    assert (await client.get(f"/challenges/{made['id']}", headers=fan)).status_code == 200
    for method, path in (("GET", ""), ("POST", "/join"), ("POST", "/leave"), ("GET", "/leaderboard")):
        assert_problem(await client.request(method, f"/challenges/{made['id']}{path}", headers=stranger), 404)
    assert made["id"] not in [c["id"] for c in (await client.get("/challenges", headers=stranger)).json()["items"]]
    await client.post(f"/challenges/{made['id']}/join", headers=fan)
    await client.post(f"/challenges/{made['id']}/join", headers=org)
    await client.arena.drain()
    for days_ago in (1, 2):
        await run(client, fan, 5, days_ago=days_ago)
    await client.arena.drain()
    friends = await board(client, made["id"], fan, view="friends")
    assert [(r["user_id"], r["progress"]) for r in friends["rows"]] == [(fan_id, 2.0), (org_id, 0.0)]


async def test_a_groups_challenge_is_for_its_members_and_team_boards(client):
    owner_id, owner = await signup(client, "Olga")
    member_id, member = await signup(client, "Max")
    _, outsider = await signup(client, "Out")
    group = (await client.post("/groups", json={"name": "Hidden Club", "visibility": "hidden"},
                               headers=owner)).json()  # fmt: skip
    invited = await client.post(f"/groups/{group['id']}/invitations", json={"user_id": member_id}, headers=owner)
    assert invited.status_code == 201, invited.text
    assert (await client.post(f"/groups/{group['id']}/join", headers=member)).json()["status"] == "member"
    body = {**RUN, "scope": "group", "group_id": group["id"]}
    assert_problem(await client.post("/challenges", json=body, headers=member), 403, "admins")
    assert_problem(await client.post("/challenges", json=body, headers=outsider), 404)
    made = await create(client, owner, scope="group", group_id=group["id"])
    assert (await client.post(f"/challenges/{made['id']}/join", headers=member)).status_code == 200
    assert_problem(await client.get(f"/challenges/{made['id']}", headers=outsider), 404)
    assert_problem(await client.post(f"/challenges/{made['id']}/join", headers=outsider), 404)
    assert made["id"] not in [c["id"] for c in (await client.get("/challenges", headers=outsider)).json()["items"]]

    _, org = await organizer(client)
    teams = await create(client, org, team=True, title="Club against club")
    assert_problem(await client.post(f"/challenges/{teams['id']}/join", headers=member), 422, "team")
    assert_problem(await client.post(f"/challenges/{teams['id']}/join", json={"team": group["id"]}, headers=outsider),
                   403, "member")  # fmt: skip
    for who in (owner, member):
        assert (await client.post(f"/challenges/{teams['id']}/join", json={"team": group["id"]},
                                  headers=who)).status_code == 200  # fmt: skip
    await client.arena.drain()
    await run(client, owner, 10)
    await run(client, member, 6)
    await client.arena.drain()
    standings = await board(client, teams["id"], member, view="teams")
    assert [(t["team"], t["progress"], t["members"]) for t in standings["teams"]] == [(group["id"], 16_000.0, 2)]
    assert standings["teams"][0]["name"] is None  # a hidden group's name is not shown on a public board
    inside = await board(client, teams["id"], member, view="group", group_id=group["id"])
    assert [(r["user_id"], r["progress"]) for r in inside["rows"]] == [(owner_id, 10_000.0), (member_id, 6_000.0)]
    assert_problem(await client.get(f"/challenges/{teams['id']}/leaderboard", params={"view": "group",
               "group_id": group["id"]}, headers=outsider), 404)  # fmt: skip
    assert_problem(await client.get(f"/challenges/{made['id']}/leaderboard", params={"view": "teams"},
                                    headers=member), 422, "team")  # fmt: skip


MALFORMED = [
    {},
    {**RUN, "title": ""},
    {**RUN, "title": "   "},
    {**RUN, "title": "x" * 121},
    {**RUN, "description": "d" * 4_001},
    {**RUN, "goal_type": "pushups"},
    {**RUN, "goal": 0},
    {**RUN, "goal": -5},
    {**RUN, "goal": 1e12},
    {**RUN, "goal": "NaN"},
    {**RUN, "sports": ["chess"]},
    {**RUN, "sports": ["run"] * 20},
    {**RUN, "first_day": "2027-02-30"},
    {**RUN, "first_day": PERIOD["last_day"], "last_day": PERIOD["first_day"]},
    {**RUN, "first_day": "1999-12-31"},
    {**RUN, "last_day": (TODAY + timedelta(days=400)).isoformat()},
    {**RUN, "goal_type": "single_effort", "goal": 1500},
    {**RUN, "effort": "5k"},
    {**RUN, "goal_type": "single_effort", "goal": 1500, "effort": "3k"},
    {**RUN, "scope": "group"},
    {**RUN, "group_id": "g1"},
    {**RUN, "scope": "group", "group_id": "../../etc"},
    {**RUN, "team": True, "goal_type": "streak_days", "goal": 3},
    {**RUN, "team": True, "scope": "friends"},
    {**RUN, "goal_type": "streak_days", "goal": 30},
    *({**RUN, "route_id": route_id} for route_id in HOSTILE_ROUTE_IDS),
    {**RUN, "extra": 1},
    ["not", "an", "object"],
]


async def test_malformed_oversized_and_hostile_input_is_refused_and_nothing_is_made(client):
    _, org = await organizer(client)
    before = (await client.get("/challenges", params={"limit": 50}, headers=org)).json()["items"]
    for body in MALFORMED:
        assert_problem(await client.post("/challenges", json=body, headers=org), 422)
    answer = await client.post("/challenges", content=b'{"title": "\\ud800", "goal": 1}',
                               headers={**org, "content-type": "application/json"})  # fmt: skip
    assert_problem(answer, 422)
    assert_problem(await client.post("/challenges", content=b"x" * (2 * 1024 * 1024),
                                      headers={**org, "content-type": "application/json"}), 413)  # fmt: skip
    assert (await client.get("/challenges", params={"limit": 50}, headers=org)).json()["items"] == before
    made = await create(client, org)
    for params in ({"view": "bogus"}, {"view": "group"}, {"view": "group", "group_id": "a/b"}, {"limit": 0},
                   {"limit": 1_000}, {"view": "teams"}):  # fmt: skip
        answer = await client.get(f"/challenges/{made['id']}/leaderboard", params=params, headers=org)
        assert_problem(answer, 422)
    for body in ({"team": "x" * 65}, {"team": "../x"}, {"team": 5}, {"who": "me"}, {"team": "g1"}):
        assert_problem(await client.post(f"/challenges/{made['id']}/join", json=body, headers=org), 422)
    assert (await client.get(f"/challenges/{made['id']}", headers=org)).json()["participants"] == 0
    for params in ({"scope": "mine"}, {"sport": "chess"}, {"limit": 51}, {"cursor": "%%%"}):
        answer = await client.get("/challenges", params=params, headers=org)
        assert answer.status_code in (400, 422) and answer.headers["content-type"] == "application/problem+json"


async def test_a_challenge_that_is_over_takes_no_one(client):
    _, org = await organizer(client)
    old = {"first_day": (date.today() - timedelta(days=40)).isoformat(),
           "last_day": (date.today() - timedelta(days=30)).isoformat()}  # fmt: skip
    made = await create(client, org, **old)
    _, ana = await signup(client, "Ana")
    assert_problem(await client.post(f"/challenges/{made['id']}/join", headers=ana), 409, "over")


async def test_a_challenge_shows_the_route_it_uses_even_once_the_route_is_deleted(client):
    _, org = await organizer(client)
    _, ath = await signup(client, "Ath")
    route = await new_route(client, org)
    link = {field: route[field] for field in ("id", "name", "sport", "distance_m", "elevation_gain_m")}
    made = await create(client, org, route_id=route["id"])
    assert made["linked_route"] == link and "route_id" not in made
    assert (await client.get(f"/challenges/{made['id']}", headers=ath)).json()["linked_route"] == link
    assert (await create(client, org))["linked_route"] is None

    ride = await new_route(client, org, sport="ride")
    assert_problem(await client.post("/challenges", json={**RUN, "route_id": ride["id"]}, headers=org), 409, "ride")
    assert (await create(client, org, sports=[], route_id=ride["id"]))["linked_route"]["sport"] == "ride", "any sport"
    hidden = await new_route(client, org, visibility="followers")
    unseen = await new_route(client, ath, visibility="private")
    for refused, words in ((hidden, "make the route public"), (unseen, "no route")):
        answer = await client.post("/challenges", json={**RUN, "route_id": refused["id"]}, headers=org)
        assert_problem(answer, 422, words)

    assert (await client.delete(f"/routes/{route['id']}", headers=org)).status_code == 204
    assert (await client.get(f"/challenges/{made['id']}", headers=ath)).json()["linked_route"] == link
    assert_problem(await client.get(f"/routes/{route['id']}", headers=ath), 404)
