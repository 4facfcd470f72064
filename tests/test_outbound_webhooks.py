"""Outbound webhooks through the real app, engine and relay (the shared Ray), delivered to a real HTTP server
playing a partner (aiohttp on a free loopback port): signed deliveries in order, retries after 5xx, dead
letters and their replay, pause, delete, a secret rotation, the relay and the hosts killed mid-queue, hostile
input, and the CRM segment export. Unit tests of the URL guard and the entity's bounds need no Ray."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from actors.webhook import DEAD_MAX, QUEUE_MAX, WebhookEndpoint
from engine.commerce.signatures import BadSignature, verify_webhook
from loadtest.server import free_port
from serve.outbound import Policy, _Blocked, _GuardedResolver, check_url, signature
from tests.conftest import module_settings, stop_cluster_services
from tests.test_api import PASSWORD, assert_problem, signup

TERMS = {"title": "Spring", "description": "", "discount": "10%", "starts": 0.0, "expires": 4_000_000_000.0,
         "mode": "shared", "per_user": 1, "total": 100_000}  # fmt: skip


# -- without Ray ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://partner.example/hook", "https://"),
        ("ftp://partner.example/hook", "https://"),
        ("https://user:pw@partner.example/hook", "password"),
        ("https://@partner.example/hook", "password"),
        ("https:///hook", "no host"),
        ("https://127.0.0.1/hook", "not a public address"),
        ("https://10.1.2.3/hook", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[::1]:8443/hook", "not a public address"),
        ("https://[::ffff:127.0.0.1]/hook", "not a public address"),
        ("https://localhost/hook", "local name"),
        ("https://metadata.google.internal/hook", "local name"),
        ("https://intranet/hook", "local name"),
        ("https://partner.example/hook#x", "fragment"),
        ("https://partner.example/ho ok", "spaces"),
        ("https://partner.example:99999/hook", "cannot be read"),
        ("https://partner.example/" + "a" * 2_000, "longer"),
    ],
)
def test_a_url_that_could_reach_inside_or_leak_is_refused(url, words):
    with pytest.raises(ValueError, match=words):
        check_url(url, allow_private=False)


def test_a_public_https_url_is_taken_and_loopback_only_when_allowed():
    assert check_url("https://crm.partner.example:8443/hooks/arena?x=1", allow_private=False)
    assert check_url("http://127.0.0.1:9000/hook", allow_private=True)
    with pytest.raises(ValueError):
        check_url("http://127.0.0.1:9000/hook", allow_private=False)


async def test_a_name_that_resolves_inside_is_refused_at_delivery():
    resolver = _GuardedResolver()
    try:
        with pytest.raises(_Blocked, match="not a public address"):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()


def test_the_backoff_doubles_with_jitter_and_ends():
    policy = Policy(attempts=4, backoff=1.0, backoff_max=3.0)
    waits = [[policy.retry_at(attempt, 100.0) for _ in range(50)] for attempt in (1, 2, 3)]
    for attempt, found in zip((1, 2, 3), waits, strict=True):
        delay = min(2 ** (attempt - 1), 3.0)
        assert all(100 + delay / 2 <= w <= 100 + delay for w in found)
        assert len(set(found)) > 1  # jitter
    assert policy.retry_at(4, 100.0) is None


def test_a_header_carries_one_v1_per_secret_and_each_verifies():
    header = signature(["new", "old"], b'{"a":1}', 1_000)
    assert header.count("v1=") == 2
    for key in ("new", "old"):
        assert verify_webhook([key], header, b'{"a":1}', 1_000) == 1_000
    with pytest.raises(BadSignature):
        verify_webhook(["other"], header, b'{"a":1}', 1_000)


def _event(n: int, user: str = "u-1") -> dict:
    return {"id": f"promotion/P/{n}/0", "type": "promo.redeemed", "version": 1, "at": 50.0 + n,
            "data": {"user_id": user}, "user": user, "position": n}  # fmt: skip


def _endpoint(now: float = 0.0) -> WebhookEndpoint:
    endpoint = WebhookEndpoint("e1")
    endpoint._now = now
    endpoint.create(url="https://p.example/h", types=["promo.redeemed"], secret="s", description="", created_by="a")
    return endpoint


def test_a_queue_is_bounded_and_what_overflows_is_dead_then_the_oldest_dead_go():
    endpoint = _endpoint()
    endpoint.enqueue(events=[_event(n) for n in range(1, QUEUE_MAX + DEAD_MAX + 11)])
    assert len(endpoint.queue) == QUEUE_MAX and len(endpoint.dead) == DEAD_MAX and endpoint.dropped == 10
    assert endpoint.dead[0]["error"].startswith("queue full")
    endpoint.enqueue(events=[_event(5)])  # a batch the stream sends again after a crash
    assert len(endpoint.queue) == QUEUE_MAX and endpoint.dropped == 10


def test_an_event_from_before_the_endpoint_or_of_another_type_is_not_queued():
    endpoint = _endpoint(now=100.0)
    endpoint.enqueue(events=[_event(1), {**_event(60), "type": "shop.purchased"}, _event(70)])
    assert [item["id"] for item in endpoint.queue] == ["promotion/P/70/0"]


# -- through the app ------------------------------------------------------------------------------


class Partner:
    """A partner's HTTP server: answers each delivery with the next of ``answers`` (then 200), records them."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.answers: list[int] = []
        self.always: int = 200
        self.delay = 0.0
        self.got: list[dict] = []  # each delivery: headers, body, status answered

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.answers.pop(0) if self.answers else self.always
        self.got.append({"headers": dict(request.headers), "body": body, "status": status, "path": request.path})
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=status, text="ok")

    def delivered(self, path: str = "/hooks") -> list[dict]:
        """The bodies answered 2xx on ``path``, in the order they came."""
        return [json.loads(g["body"]) for g in self.got if g["status"] < 300 and g["path"] == path]


@pytest.fixture(scope="module")
def settings(ray_cluster, tmp_path_factory):

    settings = module_settings(
        tmp_path_factory,
        "webhooks",
        lake=False,
        webhooks_allow_private=True,  # the partner is on loopback
        webhooks_attempts=3,
        webhooks_backoff=0.05,
        webhooks_backoff_max=0.2,
        webhooks_timeout=2.0,
    )
    yield settings
    stop_cluster_services(settings.namespace)


@pytest.fixture
async def partner():
    server = Partner()
    app = web.Application()
    app.router.add_post("/{path:.*}", server._hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    yield server
    await runner.cleanup()


async def _admin(client) -> dict:
    await client.post("/accounts", json={"email": "boss@example.com", "password": PASSWORD, "display_name": "Boss"})
    login = await client.post("/auth/login", json={"email": "boss@example.com", "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _endpoint_for(client, boss: dict, url: str, events: tuple[str, ...] = ("promo.redeemed",)) -> dict:
    answer = await client.post("/admin/webhooks", json={"url": url, "events": list(events)}, headers=boss)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _promotion(client) -> Callable[[str], Awaitable[dict]]:
    """A shared code: each call redeems it for one more athlete (a ``promo.redeemed`` in the outbox)."""
    code = "P" + uuid.uuid4().hex[:8].upper()
    await client.arena.ask("promotion", code, "create", {"terms": TERMS, "codes": []})

    async def redeem(user_id: str) -> dict:
        return await client.arena.ask("promotion", code, "redeem", {"suffix": None, "user_id": user_id})

    return redeem


async def _until(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def _info(client, boss: dict, endpoint_id: str) -> dict:
    answer = await client.get(f"/admin/webhooks/{endpoint_id}", headers=boss)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.ray
async def test_a_partner_gets_each_event_signed_in_order_with_the_fields_it_may_see(client, partner):
    boss = await _admin(client)
    endpoint = await _endpoint_for(client, boss, partner.url)
    assert endpoint["secret"].startswith("whsec_") and endpoint["state"] == "active"
    listed = (await client.get("/admin/webhooks", headers=boss)).json()["items"]
    assert endpoint["id"] in [e["id"] for e in listed] and all("secret" not in e for e in listed)

    redeem = await _promotion(client)
    users = [f"athlete-{n}" for n in range(5)]
    for user in users:
        await redeem(user)
    await _until(lambda: len(partner.delivered()) == 5, "five deliveries")

    bodies = partner.delivered()
    assert [b["data"]["user_id"] for b in bodies] == users  # in order
    assert {b["type"] for b in bodies} == {"promo.redeemed"} and all(b["version"] == 1 for b in bodies)
    assert set(bodies[0]["data"]) == {"promotion_id", "user_id", "code", "discount"}
    assert bodies[0]["at"].endswith("Z") and bodies[0]["id"].startswith("promotion/")
    for got in partner.got:
        assert verify_webhook([endpoint["secret"]], got["headers"]["Arena-Signature"], got["body"], time.time())
        assert got["headers"]["Arena-Event-Id"] == json.loads(got["body"])["id"]
    log = (await client.get(f"/admin/webhooks/{endpoint['id']}/deliveries", headers=boss)).json()["items"]
    assert [line["status"] for line in log] == [200] * 5 and all(line["latency_ms"] >= 0 for line in log)
    assert (await _info(client, boss, endpoint["id"]))["delivered"] == 5


@pytest.mark.ray
async def test_a_delivery_is_retried_after_5xx_then_a_dead_letter_is_replayed(client, partner):
    boss = await _admin(client)
    endpoint = await _endpoint_for(client, boss, partner.url)
    redeem = await _promotion(client)
    partner.answers = [500, 502]  # then 200
    await redeem("retried")
    await _until(lambda: len(partner.delivered()) == 1, "the third attempt")
    attempts = [g["headers"]["Arena-Delivery-Attempt"] for g in partner.got]
    assert attempts == ["1", "2", "3"] and [g["status"] for g in partner.got] == [500, 502, 200]
    assert len({g["body"] for g in partner.got}) == 1  # the same bytes at every attempt

    partner.always = 503
    await redeem("dead-1")
    await redeem("dead-2")
    letters: list[dict] = []

    async def dead() -> bool:
        letters[:] = (await client.get(f"/admin/webhooks/{endpoint['id']}/dead-letters", headers=boss)).json()["items"]
        return len(letters) == 2

    await _until(dead, "both dead letters (3 attempts each)")
    assert letters[0]["error"] == "HTTP 503" and letters[0]["attempts"] == 3
    log = (await client.get(f"/admin/webhooks/{endpoint['id']}/deliveries", headers=boss)).json()["items"]
    assert log[0]["status"] == 503 and log[0]["error"] == "HTTP 503"

    partner.always = 200
    one = letters[-1]["event"]  # the older
    answer = await client.post(f"/admin/webhooks/{endpoint['id']}/dead-letters/replay", json={"event_id": one},
                               headers=boss)  # fmt: skip
    assert answer.json() == {"replayed": 1}
    await _until(lambda: [b["id"] for b in partner.delivered()][1:] == [one], "the replayed one")
    answer = await client.post(f"/admin/webhooks/{endpoint['id']}/dead-letters/replay", headers=boss)
    assert answer.json() == {"replayed": 1}
    await _until(lambda: len(partner.delivered()) == 3, "the rest replayed")
    assert [b["data"]["user_id"] for b in partner.delivered()] == ["retried", "dead-1", "dead-2"]
    missing = await client.post(f"/admin/webhooks/{endpoint['id']}/dead-letters/replay", json={"event_id": one},
                                headers=boss)  # fmt: skip
    assert_problem(missing, 404, "no dead letter")


@pytest.mark.ray
async def test_a_paused_endpoint_holds_its_queue_and_a_deleted_one_gets_nothing(client, partner):
    boss = await _admin(client)
    endpoint = await _endpoint_for(client, boss, partner.url)
    paused = await client.post(f"/admin/webhooks/{endpoint['id']}/pause", headers=boss)
    assert paused.json()["state"] == "paused"
    redeem = await _promotion(client)
    await redeem("held-1")
    await redeem("held-2")
    await _until(lambda: _queued(client, boss, endpoint["id"], 2), "two queued while paused")
    await asyncio.sleep(1.5)  # longer than the worker's poll (1 s): had it sent, the partner would have them
    assert partner.got == []
    await client.post(f"/admin/webhooks/{endpoint['id']}/resume", headers=boss)
    await _until(lambda: len(partner.delivered()) == 2, "the held ones after resume")

    answer = await client.delete(f"/admin/webhooks/{endpoint['id']}", headers=boss)
    assert answer.status_code == 204
    await redeem("after-delete")
    await client.arena.drain()  # the stream has passed the event
    assert len(partner.got) == 2
    assert_problem(await client.get(f"/admin/webhooks/{endpoint['id']}", headers=boss), 404)
    assert endpoint["id"] not in [e["id"] for e in (await client.get("/admin/webhooks", headers=boss)).json()["items"]]


async def _queued(client, boss: dict, endpoint_id: str, count: int) -> bool:
    answer = await client.get(f"/admin/webhooks/{endpoint_id}", headers=boss)
    if answer.status_code == 503:  # a host restarting (the kill test): ask again
        return False
    assert answer.status_code == 200, answer.text
    return answer.json()["queued"] == count


@pytest.mark.ray
async def test_a_rotated_secret_signs_beside_the_old_one_for_a_while(client, partner):
    boss = await _admin(client)
    endpoint = await _endpoint_for(client, boss, partner.url)
    rotated = await client.post(f"/admin/webhooks/{endpoint['id']}/secret", json={"keep_old_s": 3600}, headers=boss)
    assert rotated.status_code == 200 and rotated.json()["secret"] != endpoint["secret"]
    assert len(rotated.json()["secrets"]) == 2
    redeem = await _promotion(client)
    await redeem("rotated")
    await _until(lambda: len(partner.delivered()) == 1, "one delivery")
    got = partner.got[0]
    assert got["headers"]["Arena-Signature"].count("v1=") == 2
    for secret in (endpoint["secret"], rotated.json()["secret"]):
        verify_webhook([secret], got["headers"]["Arena-Signature"], got["body"], time.time())
    again = await client.post(f"/admin/webhooks/{endpoint['id']}/secret", json={"keep_old_s": 0}, headers=boss)
    assert len(again.json()["secrets"]) == 1


@pytest.mark.ray
async def test_the_relay_and_the_hosts_killed_mid_queue_lose_no_delivery(client, partner):
    import ray

    from engine.relay import RELAY_NAME

    boss = await _admin(client)
    endpoint = await _endpoint_for(client, boss, partner.url)
    await client.post(f"/admin/webhooks/{endpoint['id']}/pause", headers=boss)
    redeem = await _promotion(client)
    users = [f"kept-{n:02d}" for n in range(30)]
    for user in users:
        await redeem(user)
    await _until(lambda: _queued(client, boss, endpoint["id"], 30), "thirty queued")
    partner.delay = 0.05  # slow enough to be killed in the middle
    await client.post(f"/admin/webhooks/{endpoint['id']}/resume", headers=boss)
    await _until(lambda: len(partner.got) >= 5, "the first deliveries")

    relay = ray.get_actor(RELAY_NAME, namespace=client.arena.settings.namespace)
    ray.kill(relay, no_restart=False)  # Ray restarts it: the stream and the worker with it
    for host in client.arena.cluster.hosts[: client.arena.settings.hosts]:
        ray.kill(host, no_restart=False)  # the endpoint's queue comes back from the store
    partner.delay = 0.0
    await _until(lambda: {b["data"]["user_id"] for b in partner.delivered()} == set(users), "all thirty", timeout=60)
    order = [b["data"]["user_id"] for b in partner.delivered()]
    assert sorted(set(order), key=order.index) == users  # first arrivals in order; a repeat is the at-least-once
    await _until(lambda: _queued(client, boss, endpoint["id"], 0), "an empty queue", timeout=30)


@pytest.mark.ray
async def test_hostile_input_is_refused_with_a_reason(client, partner):
    boss = await _admin(client)
    _, member = await signup(client, "Mia")
    assert_problem(await client.get("/admin/webhooks"), 401)
    assert_problem(await client.post("/admin/webhooks", json={"url": partner.url, "events": ["promo.redeemed"]}), 401)
    assert_problem(await client.get("/admin/webhooks", headers=member), 403)
    assert_problem(await client.post("/admin/webhooks", json={"url": partner.url, "events": ["promo.redeemed"]},
                                     headers=member), 403)  # fmt: skip
    assert_problem(await client.post("/admin/crm/segment", json={}, headers=member), 403)

    for body in (
        {"url": partner.url, "events": ["workout.recorded"]},  # not for partners
        {"url": partner.url, "events": ["no.such"]},
        {"url": partner.url, "events": []},
        {"url": "ftp://partner.example/h", "events": ["promo.redeemed"]},
        {"url": "http://user:secret@127.0.0.1:1/h", "events": ["promo.redeemed"]},
        {"url": "https://partner.example/" + "a" * 3_000, "events": ["promo.redeemed"]},
        {"url": partner.url, "events": ["promo.redeemed"], "secret": "mine"},  # Arena makes the secret
        {"url": 5, "events": ["promo.redeemed"]},
    ):
        answer = await client.post("/admin/webhooks", json=body, headers=boss)
        assert_problem(answer, 422)
    huge = {"url": partner.url, "events": ["promo.redeemed"], "description": "x" * (2 * 1024 * 1024)}
    assert (await client.post("/admin/webhooks", json=huge, headers=boss)).status_code == 413
    assert_problem(await client.get("/admin/webhooks/nosuch", headers=boss), 404)
    assert_problem(await client.post("/admin/webhooks/nosuch/pause", headers=boss), 404)
    assert_problem(await client.get("/admin/webhooks/..%2F..%2Fetc", headers=boss), 404)
    endpoint = await _endpoint_for(client, boss, partner.url)
    answer = await client.post(f"/admin/webhooks/{endpoint['id']}/secret", json={"keep_old_s": 10**9}, headers=boss)
    assert_problem(answer, 422)
    types = (await client.get("/admin/webhooks/event-types", headers=boss)).json()["events"]
    assert "promo.redeemed" in types and "workout.recorded" not in types


@pytest.mark.ray
async def test_a_segment_export_lists_only_consenting_targeted_users_with_consented_fields(client):
    boss = await _admin(client)
    people = {}
    for name, consent, region in (("Ann", True, "Lyon"), ("Bob", False, "Lyon"), ("Cid", True, "Oslo"),
                                  ("Dee", True, "=HYPERLINK(\"x\")")):  # fmt: skip
        user_id, headers = await signup(client, name)
        answer = await client.patch("/me", json={"marketing_consent": consent, "profile": {"region": region, "sports": ["run"]}},
                                    headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
        people[name] = user_id
    await client.arena.drain()  # audience.changed has reached the shards

    answer = await client.post("/admin/crm/segment", json={"regions": ["Lyon"]}, headers=boss)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["user_id", "region", "sports", "tier", "level"]
    assert rows[1:] == [[people["Ann"], "Lyon", "run", "free", "0"]]  # Bob did not consent

    everyone = await client.post("/admin/crm/segment", json={}, headers=boss)
    found = {row[0]: row for row in csv.reader(io.StringIO(everyone.text))}
    assert set(found) - {"user_id"} >= {people["Ann"], people["Cid"], people["Dee"]}
    assert people["Bob"] not in found
    assert found[people["Dee"]][1] == '\'=HYPERLINK("x")'  # a formula stays text in a spreadsheet
    assert_problem(await client.post("/admin/crm/segment", json={"regions": ["x"] * 51}, headers=boss), 422)


@pytest.mark.ray
async def test_an_erased_athletes_queued_deliveries_go_and_the_others_stay(client, partner):
    from actors.account import Account
    from engine.ray_host import load_store_opener
    from serve.kinds import OPEN_STORE

    boss = await _admin(client)
    person, _ = await signup(client, "Pat")
    endpoint = await _endpoint_for(client, boss, partner.url)
    await client.post(f"/admin/webhooks/{endpoint['id']}/pause", headers=boss)
    redeem = await _promotion(client)
    await redeem(person)
    await redeem("someone-else")
    await _until(lambda: _queued(client, boss, endpoint["id"], 2), "both queued")

    await client.arena.ref(Account, person).ask(Account.request_erasure, due=time.time())  # the grace period ends
    store = load_store_opener(OPEN_STORE)(client.arena.settings.database_url)
    await store.open()
    try:

        async def forgotten() -> bool:
            mentions = [m for m in await store.mentions(person) if m.kind == WebhookEndpoint.kind]
            return not mentions and await _queued(client, boss, endpoint["id"], 1)

        await _until(forgotten, "the endpoint forgets the person", timeout=60)
    finally:
        await store.close()
    await client.post(f"/admin/webhooks/{endpoint['id']}/resume", headers=boss)
    await _until(lambda: len(partner.delivered()) == 1, "the other athlete's delivery")
    assert partner.delivered()[0]["data"]["user_id"] == "someone-else"
