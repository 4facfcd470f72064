"""An API replica is killed mid-stream behind HAProxy, as a chaos test would: every failure a client
sees is a dropped connection or a 503 problem+json with Retry-After, and a client that follows
the contract (resend the same batch) loses no acknowledged sample and counts none twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from loadtest.server import free_port, start_arena, stop, wait_healthy

pytestmark = pytest.mark.ray

ATHLETES = 12
BATCHES = 30  # per athlete, sent one after the other
SAMPLES = 5  # per batch
PASSWORD = "correct horse battery"


def replica_pids(root: int) -> list[int]:
    """The API replicas (Serve deployment ``gateway``) of the Arena process ``root``."""
    parents: dict[int, int] = {}
    titles: dict[int, bytes] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            titles[int(proc.name)] = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 1)
        return False

    return [
        pid for pid, title in titles.items() if title.startswith(b"ray::ServeReplica:arena:gateway") and descends(pid)
    ]


ADMIN = f"boss-{uuid.uuid4().hex[:8]}@example.com"


class Client:
    """A device author's client: resend on a dropped connection or a 503, after Retry-After."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.refusals: list[httpx.Response] = []  # every answer that was not 2xx
        self.drops: list[str] = []  # every connection that broke

    async def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        while True:
            try:
                answer = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                assert not isinstance(error, httpx.TimeoutException), f"{method} {path} hung: {error!r}"
                self.drops.append(type(error).__name__)
                await asyncio.sleep(0.2)
                continue
            if answer.status_code < 500:
                return answer
            self.refusals.append(answer)
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))


async def account(client: Client, name: str, email: str | None = None) -> tuple[str, dict]:
    email = email or f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    created = await client.send("POST", "/accounts", json={"email": email, "password": PASSWORD, "display_name": name})
    assert created.status_code == 201, created.text
    return created.json()["id"], await bearer(client, email)


async def bearer(client: Client, email: str) -> dict:
    login = await client.send("POST", "/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture
def arena(postgres_url, tmp_path):
    """A throwaway Arena on PostgreSQL, the store a deployment behind HAProxy runs. The embedded store's
    once-only counting under resends is the engine's, tested on both stores by the SIGKILL tests
    (tests/test_race_recovery.py, tests/test_ray_engine.py); a second Arena here only doubled the time."""
    settings = {
        "num_cpus": "2",
        "replicas": "2",
        "argon2_time_cost": "1",
        "argon2_memory_kib": "1024",
        "admin_emails": json.dumps([ADMIN]),
        "rate_limit_scale": "0",
        "namespace": f"chaos-{uuid.uuid4().hex[:6]}",
        "database_url": postgres_url,
    }
    port = free_port()
    process = start_arena(tmp_path, port, **settings)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


async def test_a_replica_killed_mid_stream_costs_only_retries_that_the_contract_handles(arena):
    url, process = arena
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30) as http:
        client = Client(http)
        _, admin = await account(client, "boss", ADMIN)  # ARENA_ADMIN_EMAILS
        me = (await client.send("GET", "/me", headers=admin)).json()
        assert "admin" in me["roles"], f"{ADMIN} registered without the admin role (another Arena on {url}?): {me}"
        org_email = f"org-{uuid.uuid4().hex[:8]}@example.com"  # the PostgreSQL store is the session's
        org_id, _ = await account(client, "org", org_email)
        granted = await client.send("PUT", f"/users/{org_id}/roles", json={"roles": ["organizer"]}, headers=admin)
        assert granted.status_code == 200, granted.text
        org = await bearer(client, org_email)
        race = await client.send(
            "POST", "/races", json={"name": "Chaos", "sport": "run", "kind": "time", "duration_s": 3600}, headers=org
        )
        race_id = race.json()["id"]
        await client.send("POST", f"/races/{race_id}/actions/open", headers=org)
        athletes = [await account(client, f"a{i}") for i in range(ATHLETES)]
        for _, headers in athletes:
            assert (
                await client.send("POST", f"/races/{race_id}/athletes", json={}, headers=headers)
            ).status_code == 201
        await client.send("POST", f"/races/{race_id}/actions/start", headers=org)

        accepted = duplicates = 0
        sent = asyncio.Event()
        progress = 0

        async def stream(headers: dict) -> None:
            nonlocal accepted, duplicates, progress
            start = time.time()
            for batch in range(BATCHES):
                samples = [
                    {
                        "seq": batch * SAMPLES + k,
                        "t": start + batch * SAMPLES + k,
                        "distance": 3.0 * (batch * SAMPLES + k),
                        "speed": 3.0,
                    }
                    for k in range(SAMPLES)
                ]
                answer = await client.send(
                    "POST", f"/races/{race_id}/telemetry", json={"samples": samples}, headers=headers
                )
                assert answer.status_code == 200, answer.text
                accepted += answer.json()["accepted"]
                duplicates += answer.json()["duplicates"]
                progress += 1
                if progress == ATHLETES * BATCHES // 3:
                    sent.set()

        async def kill_a_replica() -> int:
            await sent.wait()
            pids = replica_pids(process.pid)
            assert len(pids) == 2, pids
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]

        killed, *_ = await asyncio.gather(kill_a_replica(), *(stream(headers) for _, headers in athletes))

        for answer in client.refusals:  # the contract: 503, problem+json, Retry-After
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
            assert int(answer.headers["Retry-After"]) >= 1
        total = ATHLETES * BATCHES * SAMPLES
        # Each sample was acknowledged: new, or already counted (a resend after an unknown outcome).
        assert accepted + duplicates == total
        info = (await client.send("GET", f"/races/{race_id}")).json()
        assert info["totals"]["samples"] == total, "an acknowledged sample was lost or counted twice"

        results = (await client.send("GET", f"/races/{race_id}/results")).json()["results"]
        last = 3.0 * (BATCHES * SAMPLES - 1)
        assert sorted(r["distance_m"] for r in results) == [pytest.approx(last)] * ATHLETES
        for _ in range(120):  # Serve replaces the killed replica
            if killed not in replica_pids(process.pid) and len(replica_pids(process.pid)) == 2:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"the killed replica was not replaced: {replica_pids(process.pid)}")
