"""A property-based fuzz of every operation in the OpenAPI document: no input makes the API answer 5xx.

Schemathesis turns the document into Hypothesis strategies, valid (positive) and invalid
(negative) requests alike; each is sent in-process to the real app over real hosts and
store, as nobody or as an athlete, an organizer or an admin, with ids of things that exist
or made up. Every answer must be below 500, and every error a problem document.

Bounded for the suite: ``ARENA_FUZZ_EXAMPLES`` examples per operation (default 15),
derandomized, so a run is repeatable; raise it for a longer hunt.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from serve.app import api

pytestmark = pytest.mark.ray

EXAMPLES = int(os.environ.get("ARENA_FUZZ_EXAMPLES", "15"))
PASSWORD = "correct horse battery"
# Streams answer for as long as the race or the session lasts: their input is fuzzed by the
# surface probe (tests/test_api_surface.py), and here they would hold a request forever.
STREAMS = {("GET", "/api/v1/races/{race_id}/live"), ("GET", "/api/v1/notifications/stream")}

SCHEMA = schemathesis.openapi.from_dict(api.openapi())
OPERATIONS = sorted(
    (op.method.upper(), op.path)
    for result in SCHEMA.get_all_operations()
    if (op := result.ok()) is not None and (op.method.upper(), op.path) not in STREAMS
)


class World:
    """The app on its own event loop, with people and things for the fuzzer's ids to point at."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # The fuzzer comes from its own address: its failed sign-ins must not lock out the setup's.
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api, client=("10.0.0.1", 5000)), base_url="http://arena"
        )
        self.fuzzer = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api, client=("10.9.8.7", 5000)), base_url="http://arena"
        )
        self.ids: dict[str, str] = {}
        self.people: dict[str, str] = {}  # who -> email
        self.headers: dict[str, dict[str, str]] = {}

    def run(self, work):
        return self.loop.run_until_complete(work)

    async def sign_up(self, who: str, email: str) -> str:
        body = {"email": email, "password": PASSWORD, "display_name": who.capitalize()}
        answer = await self.http.post("/api/v1/accounts", json=body)
        assert answer.status_code == 201, answer.text
        self.people[who] = email
        return answer.json()["id"]

    async def sign_in(self) -> None:
        """Fresh tokens: the fuzzer may sign a session out or change roles."""
        for who, email in self.people.items():
            answer = await self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            self.headers[who] = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    async def build(self) -> None:
        tag = uuid.uuid4().hex[:8]
        await self.sign_up("admin", "boss@example.com")
        organizer = await self.sign_up("organizer", f"org-{tag}@example.com")
        self.ids["user_id"] = await self.sign_up("athlete", f"athlete-{tag}@example.com")
        await self.sign_in()
        roles = {"roles": ["athlete", "organizer"]}
        answer = await self.http.put(f"/api/v1/users/{organizer}/roles", json=roles, headers=self.headers["admin"])
        assert answer.status_code == 200, answer.text
        await self.sign_in()
        race = {"name": "Fuzz 5k", "sport": "run", "kind": "distance", "target_m": 5000}
        answer = await self.http.post("/api/v1/races", json=race, headers=self.headers["organizer"])
        assert answer.status_code == 201, answer.text
        self.ids["race_id"] = answer.json()["id"]
        await self.http.post(f"/api/v1/races/{self.ids['race_id']}/actions/open", headers=self.headers["organizer"])
        answer = await self.http.post(
            f"/api/v1/races/{self.ids['race_id']}/athletes", json={}, headers=self.headers["athlete"]
        )
        assert answer.status_code == 201, answer.text
        answer = await self.http.post(
            "/api/v1/devices", json={"name": "Watch", "model": "F1"}, headers=self.headers["athlete"]
        )
        assert answer.status_code in (200, 201), answer.text
        self.ids["device_id"] = answer.json()["id"]
        await self.fresh_workout()

    async def fresh_workout(self) -> None:
        """A workout with a comment, again for each operation: the fuzzer may delete them."""
        body = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1800, "distance_m": 6000}
        answer = await self.http.post("/api/v1/workouts", json=body, headers=self.headers["athlete"])
        assert answer.status_code == 201, answer.text
        self.ids["workout_id"] = answer.json()["id"]
        answer = await self.http.post(
            f"/api/v1/workouts/{self.ids['workout_id']}/comments",
            json={"text": "nice"},
            headers=self.headers["athlete"],
        )
        assert answer.status_code == 201, answer.text
        self.ids["comment_id"] = answer.json()["id"]

    async def send(self, case, who: str | None) -> httpx.Response:
        sent = case.as_transport_kwargs(base_url="http://arena")
        headers = {k: v for k, v in (sent.get("headers") or {}).items() if k.lower() != "user-agent"}
        if who is not None:
            headers.update(self.headers[who])
        body = {}
        if sent.get("json") is not None or "json" in sent:
            body["json"] = sent["json"]
        if sent.get("files"):
            body["files"] = sent["files"]
            if isinstance(sent.get("data"), dict):
                body["data"] = sent["data"]
        elif isinstance(sent.get("data"), dict):
            body["data"] = sent["data"]
        elif sent.get("data") is not None:
            body["content"] = sent["data"]
        try:
            request = self.fuzzer.build_request(
                sent["method"], sent["url"], params=sent.get("params"), headers=headers, **body
            )
        except (httpx.HTTPError, TypeError, ValueError, UnicodeError):
            reject()  # not a request a client library can send
        return await self.fuzzer.send(request)


@pytest.fixture(scope="module")
def world(settings):
    import ray

    from serve.context import Arena

    loop = asyncio.new_event_loop()
    arena = Arena.build(settings)
    api.state.arena = arena
    world = World(loop)
    try:
        world.run(world.build())
        yield world
    finally:
        world.run(world.http.aclose())
        world.run(world.fuzzer.aclose())
        world.run(arena.drain())
        world.run(arena.spectators.close())
        for handle in arena.cluster.hosts[settings.hosts :]:
            ray.kill(handle, no_restart=True)
        leftover = asyncio.all_tasks(loop)  # what the Arena keeps running (revocation followers, buses)
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.close()


def _path_parameters(path: str, ids: dict[str, str]) -> dict[str, str]:
    return {name: ids[name] for name in re.findall(r"\{(\w+)\}", path) if name in ids}


def test_the_fuzz_covers_the_whole_document():
    assert len(OPERATIONS) > 50
    assert ("GET", "/api/v1/users/{user_id}/workouts") in OPERATIONS


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_no_input_makes_an_operation_answer_5xx(world, method, path):
    world.run(world.sign_in())
    world.run(world.fresh_workout())
    operation = SCHEMA[path][method]
    known = _path_parameters(path, world.ids)
    strategies = [
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=known or None),
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=known or None),
    ]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies), who=st.sampled_from(["athlete", "organizer", "admin", None]))
    def probe(case, who):
        answer = world.run(world.send(case, who))
        request = answer.request
        seen = f"{request.method} {request.url} as {who}: {answer.status_code} {answer.text[:300]}"
        if os.environ.get("FUZZ_DEBUG"):
            print("FUZZ", seen[:200])
        assert answer.status_code < 500, seen
        if answer.status_code >= 400:
            assert answer.headers.get("content-type") == "application/problem+json", seen

    probe()
