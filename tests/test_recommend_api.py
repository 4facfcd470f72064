"""Recommendations through the API and the Recommender deployment on Serve: the rules after the model
(no hidden group, blocked athlete or private profile, whatever the model proposes), training from
the lake as a Ray job, the model swapped under load with no failed request, and bad requests."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from engine.recommend import Registry
from serve.app import api
from serve.ingress import free_port
from serve.recommender import Recommender, registry_root, train_from_lake, train_job

pytestmark = pytest.mark.ray

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def recommender(ray_cluster, settings):
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    handle = serve.run(Recommender.bind(str(registry_root(settings)), 0.2), name="reco-test", route_prefix=None)
    yield handle
    serve.delete("reco-test")
    serve.shutdown()


@pytest.fixture
async def reco(client, recommender):
    api.state.recommender = recommender
    yield client
    api.state.recommender = None


async def signup(client: httpx.AsyncClient, name: str) -> dict:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": name})
    assert created.status_code == 201, created.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    return {"id": created.json()["id"], "headers": {"Authorization": f"Bearer {login.json()['access_token']}"}}


def problem(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return answer.json()


async def _group(client, owner: dict, **fields) -> str:
    body = {"name": f"Club {uuid.uuid4().hex[:6]}", "sports": ["run"], "region": "Bretagne", **fields}
    answer = await client.post("/groups", json=body, headers=owner["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def _promote(recommender, registry: Registry, version: str) -> None:
    registry.promote(version)
    assert await recommender.refresh.remote() == version


async def test_nothing_shown_leaks_a_hidden_group_a_blocked_athlete_or_a_private_profile(reco, recommender, settings):
    me, friend, blocker, blocked, private, followed = [
        await signup(reco, name) for name in ("Me", "Friend", "Blocker", "Blocked", "Private", "Followed")
    ]
    assert (await reco.put(f"/users/{me['id']}/block", headers=blocker["headers"])).status_code == 204
    assert (await reco.put(f"/users/{blocked['id']}/block", headers=me["headers"])).status_code == 204
    assert (await reco.patch("/me", json={"private": True}, headers=private["headers"])).status_code == 200
    assert (await reco.post(f"/users/{followed['id']}/follow", headers=me["headers"])).status_code == 200
    public = await _group(reco, friend)
    hidden = await _group(reco, friend, visibility="hidden")
    mine = await _group(reco, me)
    assert await reco.arena.drain()  # my membership of my own group reaches my list of groups (group.joined)
    # A model that proposes everything to everyone: the rules alone must keep it decent.
    people = [friend, blocker, blocked, private, followed]
    rows = {
        "group_event.attended": [
            {"user_id": p["id"], "event_id": "e1", "at": 1.0 + n} for n, p in enumerate([me, *people])
        ],
        "group.joined": [
            {"user_id": p["id"], "group_id": g, "at": 2.0} for p in [me, *people] for g in (public, hidden, mine)
        ],
    }
    made = train_job(settings.lake_root, registry_root(settings), epochs=3, dim=8, tables=rows)
    await _promote(recommender, Registry(registry_root(settings)), made["version"])
    proposed = await recommender.recommend.remote({"user": me["id"], "kind": "user", "k": 10, "exclude": []})
    assert {p["id"] for p in people} <= {i for i, _ in proposed["items"]}  # the model did propose them all

    answer = await reco.get("/me/recommendations/people", params={"limit": 10}, headers=me["headers"])
    assert answer.status_code == 200, answer.text
    assert [i["id"] for i in answer.json()["items"]] == [friend["id"]]
    assert answer.json()["model"] == made["version"] and answer.json()["cold_start"] is False
    groups = await reco.get("/me/recommendations/groups", headers=me["headers"])
    assert [g["id"] for g in groups.json()["items"]] == [public]
    # and the other way round: the blocker, the blocked and the private athlete are not shown "me"
    for other in (blocker, blocked):
        seen = await reco.get("/me/recommendations/people", headers=other["headers"])
        assert me["id"] not in {i["id"] for i in seen.json()["items"]}
    seen = await reco.get("/me/recommendations/people", headers=friend["headers"])
    assert private["id"] not in {i["id"] for i in seen.json()["items"]}


async def test_training_reads_the_lake_as_a_ray_job_and_a_newcomer_gets_a_cold_start(reco, recommender, settings):
    owner, runner, newcomer = [await signup(reco, name) for name in ("Owner", "Runner", "Newcomer")]
    club = await _group(reco, owner, region="Alsace")
    assert (await reco.post(f"/groups/{club}/join", headers=runner["headers"])).status_code == 200
    await reco.arena.drain()
    for _ in range(100):  # the relay's lake stream writes the events in a moment of its own
        made = await asyncio.to_thread(
            train_from_lake, settings.lake_root, registry_root(settings), epochs=3, dim=8, promote=False
        )
        if made["counts"]["pairs"] >= 2:
            break
        await asyncio.sleep(0.2)
    assert made["counts"]["pairs"] >= 2 and not made["promoted"]
    await _promote(recommender, Registry(registry_root(settings)), made["version"])
    profile = {"profile": {"region": "Alsace", "sports": ["run"]}}
    assert (await reco.patch("/me", json=profile, headers=newcomer["headers"])).status_code == 200
    answer = await reco.get("/me/recommendations/groups", headers=newcomer["headers"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["cold_start"] is True and club in [g["id"] for g in answer.json()["items"]]


async def test_a_promotion_and_a_rollback_under_load_fail_no_request(reco, recommender, settings):
    me, other = await signup(reco, "Loaded"), await signup(reco, "Other")
    registry = Registry(registry_root(settings))
    rows = {"group_event.attended": [{"user_id": u["id"], "event_id": "e", "at": 1.0} for u in (me, other)]}
    first = train_job(settings.lake_root, registry.root, epochs=2, dim=8, tables=rows)["version"]
    second = train_job(settings.lake_root, registry.root, epochs=2, dim=8, tables=rows, promote=False)["version"]
    await _promote(recommender, registry, first)
    answers: list[httpx.Response] = []

    async def load() -> None:
        for _ in range(30):
            answers.extend(await asyncio.gather(*(
                reco.get("/me/recommendations/people", params={"limit": 5}, headers=me["headers"]) for _ in range(8)
            )))  # fmt: skip

    async def swap() -> None:
        await asyncio.sleep(0.3)
        registry.promote(second)  # the replica polls the pointer every 0.2 s in this test
        await asyncio.sleep(0.8)
        registry.rollback()

    await asyncio.gather(load(), swap())
    assert [a.status_code for a in answers] == [200] * len(answers)
    versions = [a.json()["model"] for a in answers]
    assert {first, second} <= set(versions), versions
    assert registry.current() == first


async def test_bad_requests_get_a_clear_problem(reco, client):
    me = await signup(reco, "Asker")
    problem(await reco.get("/me/recommendations/people"), 401)
    problem(await reco.get("/me/recommendations/people", headers={"Authorization": "Bearer nonsense"}), 401)
    for limit in ("0", "51", "ten", "1e9", "-1", "9" * 400):
        problem(await reco.get("/me/recommendations/people", params={"limit": limit}, headers=me["headers"]), 422)
    for which in ("shoes", "..%2F..%2Fetc", "PEOPLE", "x" * 5000):
        assert (await reco.get(f"/me/recommendations/{which}", headers=me["headers"])).status_code in (404, 422)
    api.state.recommender = None  # an app without the deployment proposes nothing, and says so
    answer = await client.get("/me/recommendations/groups", headers=me["headers"])
    assert answer.status_code == 200 and answer.json() == {"items": [], "model": None, "cold_start": True}
