"""The fan-out on write is durable: a SIGKILL of the relay or of a feeds' host in the middle of a
fan-out to 100,000 followers ends with every follower holding the item exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
import uuid

import pytest

from actors.account import Account
from actors.feed import Feed
from engine.cluster import Cluster
from engine.ray_host import HostSpec
from serve.kinds import KINDS, OPEN_STORE

pytestmark = pytest.mark.ray

FOLLOWERS = 100_000
CHUNK = 5_000


async def _pid(handle) -> int:
    return await handle.pid.remote()


async def _feeds_holding(cluster: Cluster, followers: list[str], item_id: str) -> list[int]:
    """How many times each follower's feed holds the item."""
    counts: list[int] = []
    for start in range(0, len(followers), CHUNK):
        reads = await cluster.deliver(
            [("feed", f, "read", {"limit": 5}, None) for f in followers[start : start + CHUNK]]
        )
        for read in reads:
            assert isinstance(read, dict), read
            counts.append(sum(1 for item in read["items"] if item["id"] == item_id))
    return counts


@pytest.mark.parametrize(
    "victim, commit_log",
    # A feeds' host killed with SQLite's commit log on: its fan-out batches are log rows, not yet folded.
    [("relay", "auto"), ("feed host", "auto"), ("feed host", "on")],
)
async def test_a_sigkill_mid_fan_out_leaves_every_follower_with_the_item_once(
    ray_cluster, tmp_path, victim, commit_log
):
    namespace = f"fanout-chaos-{uuid.uuid4().hex[:6]}"
    url = f"sqlite:///{tmp_path}/arena.db?commit_log={commit_log}"
    spec = HostSpec(url, KINDS, hosts=2, open_store=OPEN_STORE, namespace=namespace)
    cluster = Cluster(spec, namespace=namespace)
    try:
        relay = cluster.start_relay()
        star = "star"
        await cluster.ref(Account, star).ask(
            Account.register, email="star@example.com", password_hash="-", display_name="Star"
        )
        followers = [f"fan-{i}" for i in range(FOLLOWERS)]
        for start in range(0, FOLLOWERS, CHUNK):
            answers = await cluster.deliver(
                [("account", star, "follow_requested", {"follower": f}, None) for f in followers[start : start + CHUNK]]
            )
            assert all(answer == "following" for answer in answers)
        assert await relay.settle.remote(60)  # the relay is up and has nothing waiting

        # Typed in ("manual"), so it earns no badge: a badge would start a second fan-out of 100,000,
        # the followers' inbox notices, that this test does not check and that took most of its time.
        summary = {"id": "w1", "start": time.time(), "sport": "run", "title": "Long run", "distance_m": 21_097.0,
                   "moving_s": 5400.0, "elapsed_s": 5460.0, "visibility": "public", "source": "manual"}  # fmt: skip
        await cluster.ref(Account, star).ask(Account.add_workout, summary=summary)

        # Kill once the fan-out is under way: some feeds hold the item, and not yet all of them.
        probe = followers[:: FOLLOWERS // 200]
        deadline = time.monotonic() + 120
        while (holding := sum(await _feeds_holding(cluster, probe, "w1"))) == 0:
            assert time.monotonic() < deadline, "the fan-out never started"
            await asyncio.sleep(0.02)
        assert holding < len(probe), "the fan-out was over before the kill"
        handle = relay if victim == "relay" else cluster.host_for("feed", followers[-1])
        os.kill(await _pid(handle), signal.SIGKILL)

        deadline = time.monotonic() + 240
        while True:  # Ray restarts the victim; the relay resends what was in flight
            try:
                if await cluster.relay().settle.remote(30):
                    break
            except Exception:  # the relay itself is restarting
                pass
            assert time.monotonic() < deadline, "the fan-out did not finish after the kill"
            await asyncio.sleep(0.5)

        counts = await _feeds_holding(cluster, followers, "w1")
        missing = sum(1 for c in counts if c == 0)
        doubled = sum(1 for c in counts if c > 1)
        assert (missing, doubled) == (0, 0), f"{missing} feeds miss the item, {doubled} hold it twice"
        assert [i["id"] for i in (await cluster.ref(Feed, star).ask(Feed.read, limit=5))["items"]] == ["w1"]
        assert await cluster.relay().dead_letters.remote() == []
        feed = (await cluster.relay().status.remote())["consumers"]["feed.on_workout"]
        assert feed["lag"] == 0
        if victim == "relay":  # the restarted relay sent the event to every feed again; those that had it, kept it once
            assert feed["repeated"] > 0
        if commit_log == "on":  # most feeds were written through the log (a store claims what it logs)
            with sqlite3.connect(tmp_path / "arena.db") as conn:
                claimed = conn.execute("SELECT count(*) FROM journal_claims WHERE kind = 'feed'").fetchone()[0]
            assert claimed > FOLLOWERS // 2, claimed
    finally:
        cluster.kill()
