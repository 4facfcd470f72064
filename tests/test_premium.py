"""Premium through the HTTP API against a real Arena: the subscription's state machine driven by the billing
provider's signed webhooks, sent by a real aiohttp client to Arena served by uvicorn (forged, stale, replayed,
out of order, malformed, oversized), expiry by durable timers across a restart, and the one entitlement
policy on the premium routes (401, 403 naming the plan, then 200 once subscribed)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from engine.commerce.signatures import sign_webhook
from loadtest.server import free_port
from serve.app import API_PREFIX, api
from tests.conftest import module_settings, stop_cluster_services
from tests.test_api import assert_problem, signup

pytestmark = pytest.mark.ray

SECRET = "whsec_" + "b" * 32
GRACE_S = 3


@pytest.fixture(scope="module")
def settings(ray_cluster, tmp_path_factory):

    settings = module_settings(
        tmp_path_factory,
        "premium",
        billing_webhook_secret=f"old-key,{SECRET}",
        billing_grace_s=GRACE_S,
    )
    yield settings
    stop_cluster_services(settings.namespace)


class Provider:
    """The billing provider: signs and sends its subscription events to Arena over HTTP."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http, self.created = url, http, int(time.time()) - 100

    def event(self, user_id: str, type: str, *, period_end: float | None = None, plan: str = "premium",
              created: int | None = None) -> dict:  # fmt: skip
        self.created += 1
        end = int(period_end if period_end is not None else time.time() + 30 * 86_400)
        return {"id": f"evt_{uuid.uuid4().hex}", "type": type, "created": created or self.created,
                "data": {"user_id": user_id, "plan": plan, "period_end": end}, "livemode": False}  # fmt: skip

    async def send(self, event: dict | bytes, *, secret: str = SECRET, t: float | None = None,
                   header: str | None = None) -> tuple[int, dict]:  # fmt: skip
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        signature = header if header is not None else sign_webhook(secret, body, int(t or time.time()))
        async with self.http.post(f"{self.url}/webhooks/billing", data=body,
                                  headers={"Arena-Signature": signature, "Content-Type": "application/json"}) as answer:  # fmt: skip
            return answer.status, await answer.json(content_type=None)


@pytest.fixture
async def provider(client):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http:
        yield Provider(f"http://127.0.0.1:{port}{API_PREFIX}", http)
    server.should_exit = True
    await task


async def _state(client, headers) -> dict:
    answer = await client.get("/me/subscription", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_the_premium_reports_need_the_entitlement_and_follow_the_subscription(client, provider):
    ana_id, ana = await signup(client, "Ana")
    assert_problem(await client.get("/me/reports/professionals"), 401)
    refused = assert_problem(await client.get("/me/reports/professionals", headers=ana), 403, "premium plan")
    assert (refused["entitlement"], refused["plan"]) == ("advanced_training", "premium")
    assert_problem(await client.get("/me/reports/peers", headers=ana), 403, "advanced_training")
    assert (await _state(client, ana))["tier"] == "free"
    status, answer = await provider.send(provider.event(ana_id, "subscription.renewed"))
    assert status == 200 and answer["state"] == "active", answer
    assert (await client.get("/me/reports/professionals", headers=ana)).status_code == 200  # at once: no cache
    mine = await _state(client, ana)
    assert mine["entitlements"] == ["advanced_training", "recommendations", "premium_content"]
    await provider.send(provider.event(ana_id, "subscription.expired"))
    assert_problem(await client.get("/me/reports/professionals", headers=ana), 403)
    plans = (await client.get("/plans", headers=ana)).json()["items"]
    assert [p["plan"] for p in plans] == ["premium", "premium_plus"]


async def test_every_transition_of_the_state_machine_is_recorded(client, provider):
    bo_id, bo = await signup(client, "Bo")
    for type, state in [("subscription.created", "created"), ("subscription.renewed", "active"),
                        ("subscription.payment_failed", "past_due"), ("subscription.renewed", "active"),
                        ("subscription.canceled", "canceled")]:  # fmt: skip
        status, answer = await provider.send(provider.event(bo_id, type))
        assert (status, answer["state"]) == (200, state), answer
    mine = await _state(client, bo)
    assert mine["tier"] == "premium"  # canceled keeps the plan until the period ends
    path = [(h["from"], h["to"], h["cause"]) for h in mine["history"]]
    assert path == [("none", "created", "subscription.created"), ("created", "active", "subscription.renewed"),
                    ("active", "past_due", "subscription.payment_failed"),
                    ("past_due", "active", "subscription.renewed"),
                    ("active", "canceled", "subscription.canceled")]  # fmt: skip


async def test_forged_stale_replayed_and_out_of_order_webhooks(client, provider):
    cy_id, cy = await signup(client, "Cy")
    renewed = provider.event(cy_id, "subscription.renewed", plan="premium_plus")
    assert_problem_status = [
        await provider.send(renewed, secret="whsec_forged"),
        await provider.send(renewed, t=time.time() - 3_600),
        await provider.send(renewed, header="t=1,v1=zz"),
        await provider.send(renewed, header=""),
    ]
    assert [s for s, _ in assert_problem_status] == [401, 401, 401, 401]
    assert (await _state(client, cy))["state"] == "none"  # nothing forged got through
    first = await provider.send(renewed, secret="old-key")  # the key being rotated out still signs
    assert first[0] == 200 and first[1]["recorded"] is True
    again = await asyncio.gather(*(provider.send(renewed) for _ in range(3)))  # replays, some at once
    assert all(s == 200 and a["duplicate"] and not a["recorded"] for s, a in again), again
    late_failure = provider.event(cy_id, "subscription.payment_failed", created=renewed["created"] - 50)
    status, answer = await provider.send(late_failure)  # sent before the renewal, delivered after it
    assert status == 200 and answer["stale"] and answer["state"] == "active"
    mine = await _state(client, cy)
    assert mine["tier"] == "premium_plus" and len(mine["history"]) == 1
    unknown = await provider.send(provider.event("nobody-" + uuid.uuid4().hex[:8], "subscription.renewed"))
    assert unknown == (200, {"event_id": unknown[1]["event_id"], "recorded": False, "reason": "no such account"})


async def test_malformed_and_oversized_billing_events_are_refused_and_change_nothing(client, provider):
    dee_id, dee = await signup(client, "Dee")
    good = provider.event(dee_id, "subscription.renewed")
    for bad in [b"{", b"[]", json.dumps({**good, "type": "subscription.stolen"}).encode(),
                json.dumps({**good, "data": {**good["data"], "plan": "gold"}}).encode(),
                json.dumps({**good, "data": {**good["data"], "user_id": "../x"}}).encode(),
                json.dumps({**good, "created": -1}).encode(), "\ud800".encode("utf-8", "surrogatepass")]:  # fmt: skip
        status, answer = await provider.send(bad)
        assert status in (400, 422), (bad, status, answer)
    status, _ = await provider.send(b'{"id": "' + b"x" * 70_000 + b'"}')
    assert status == 413
    assert (await _state(client, dee))["state"] == "none"


async def test_grace_and_period_end_expire_by_durable_timers_across_a_restart(client, provider, settings):
    import ray

    eve_id, eve = await signup(client, "Eve")
    fay_id, fay = await signup(client, "Fay")
    now = time.time()
    await provider.send(provider.event(eve_id, "subscription.renewed", period_end=now + 1))
    status, answer = await provider.send(provider.event(eve_id, "subscription.payment_failed", period_end=now + 1))
    assert answer["state"] == "past_due" and answer["entitlements"], answer  # the grace keeps the plan
    await provider.send(provider.event(fay_id, "subscription.renewed", period_end=now + 2))
    await provider.send(provider.event(fay_id, "subscription.canceled", period_end=now + 2))
    assert (await _state(client, fay))["state"] == "canceled"
    for host in client.arena.cluster.hosts[: settings.hosts]:  # killed as by a crash; Ray starts them again
        ray.kill(host, no_restart=False)
    deadline, states = time.time() + 30, []
    while time.time() < deadline:
        answers = [await client.get("/me/subscription", headers=h) for h in (eve, fay)]
        states = [a.json().get("state") for a in answers if a.status_code == 200]
        if states == ["expired", "expired"]:
            break
        await asyncio.sleep(0.5)
    assert states == ["expired", "expired"]
    eve_path = [(h["from"], h["to"], h["cause"]) for h in (await _state(client, eve))["history"]]
    assert eve_path[-1] == ("past_due", "expired", "period_end")
    assert time.time() >= int(now + 1) + GRACE_S  # not before the grace ran out (the provider sends whole seconds)
    assert_problem(await client.get("/me/reports/professionals", headers=eve), 403)
