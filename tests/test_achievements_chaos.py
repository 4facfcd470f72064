"""Awards are durable: a SIGKILL of the host that holds the athletes' achievements in the middle of
awarding thousands of badges ends with every badge awarded, announced and notified exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter

import pytest

from engine.cluster import Cluster
from engine.codec import unpack
from engine.ray_host import HostSpec
from persistence.sqlite import SQLiteStore
from serve.kinds import KINDS, OPEN_STORE

pytestmark = pytest.mark.ray

ATHLETES = 3_000
CHUNK = 2_000
BADGES = {"first_5k", "100k_month"}  # both earned by one 100 km run


async def _in_chunks(cluster: Cluster, envelopes: list) -> list:
    answers = []
    for start in range(0, len(envelopes), CHUNK):
        answers += await cluster.deliver(envelopes[start : start + CHUNK])
    return answers


async def _badges(cluster: Cluster, athletes: list[str]) -> list[set[str]]:
    answers = await _in_chunks(cluster, [("achievements", a, "summary", {}, None) for a in athletes])
    assert all(isinstance(a, dict) for a in answers), [a for a in answers if not isinstance(a, dict)][:3]
    return [{b["id"] for b in a["badges"]} for a in answers]


async def _told(cluster: Cluster, athletes: list[str]) -> list[int]:
    """How many badge notifications each athlete's inbox holds."""
    inboxes = await _in_chunks(cluster, [("inbox", a, "browse", {"limit": 10}, None) for a in athletes])
    return [sum(1 for n in inbox["items"] if n["type"] == "badge") for inbox in inboxes]


async def test_a_sigkill_mid_award_leaves_every_badge_awarded_once(ray_cluster, tmp_path):
    namespace = f"award-chaos-{uuid.uuid4().hex[:6]}"
    url = f"sqlite:///{tmp_path}/arena.db"
    cluster = Cluster(HostSpec(url, KINDS, hosts=2, open_store=OPEN_STORE, namespace=namespace), namespace=namespace)
    try:
        athletes = [f"a{i}" for i in range(ATHLETES)]
        registered = await _in_chunks(
            cluster,
            [("account", a, "register", {"email": f"{a}@x.org", "password_hash": "-", "display_name": a}, None)
             for a in athletes],
        )  # fmt: skip
        assert all(isinstance(r, dict) for r in registered)
        start = time.time() - 86_400
        ultra = {"sport": "run", "title": "Ultra", "start": start, "elapsed_s": 36_500.0, "moving_s": 36_000.0,
                 "distance_m": 100_000.0, "visibility": "public", "source": "fit", "best_efforts": {}}  # fmt: skip
        recorded = await _in_chunks(
            cluster, [("account", a, "add_workout", {"summary": {**ultra, "id": f"w-{a}"}}, None) for a in athletes]
        )
        assert all(isinstance(r, dict) for r in recorded)

        cluster.start_relay()  # the whole backlog waits: the awards start now
        # Kill once awarding is under way: some athletes hold badges, and not all have been told of them.
        probe = athletes[:: ATHLETES // 200]
        deadline = time.monotonic() + 120
        while not any(await _badges(cluster, probe)):
            assert time.monotonic() < deadline, "no badge was ever awarded"
            await asyncio.sleep(0.01)
        told = await _told(cluster, probe)
        assert sum(told) < len(BADGES) * len(probe), "the awards were over before the kill"
        os.kill(await cluster.host_for("achievements", athletes[-1]).pid.remote(), signal.SIGKILL)

        deadline = time.monotonic() + 180
        while True:  # Ray restarts the host; it recovers from its journal, and the relay sends again
            try:
                if await cluster.relay().settle.remote(30):
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, "the awards did not finish after the kill"
            await asyncio.sleep(0.5)

        assert all(badges == BADGES for badges in await _badges(cluster, athletes))
        store = SQLiteStore(tmp_path / "arena.db")
        await store.open()
        try:
            awarded: Counter = Counter()
            position = 0
            while records := await store.read_events(position, 10_000):
                awarded.update((r.user_id, unpack(r.body)["badge"]) for r in records if r.type == "badge.awarded")
                position = records[-1].position
        finally:
            await store.close()
        assert len(awarded) == ATHLETES * len(BADGES) and set(awarded.values()) == {1}
        assert Counter(await _told(cluster, athletes)) == {len(BADGES): ATHLETES}, "each is told of each badge once"
        points = {a["points"] for a in await _in_chunks(cluster, [("achievements", a, "summary", {}, None)
                                                                  for a in athletes])}  # fmt: skip
        assert points == {300}  # ten hours' running, capped
        assert await cluster.relay().dead_letters.remote() == []
    finally:
        cluster.kill()
