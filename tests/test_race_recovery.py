"""A race's dedicated host is killed with SIGKILL mid-race: nothing acknowledged is lost or counted twice."""

from __future__ import annotations

import os
import signal
import uuid

import numpy as np
import pytest

from actors.race import Race
from engine.cluster import Cluster
from engine.config import HostConfig
from engine.errors import EngineError, HostUnavailable
from engine.host import rebuild
from engine.ray_host import HostSpec
from engine.telemetry import empty, encode
from persistence import open_store
from serve.kinds import KINDS, OPEN_STORE

pytestmark = pytest.mark.ray

ATHLETES = 200
SECONDS = 120
SPEED = 3.0  # m/s


def second(k: int, gun: float) -> bytes:
    """Every athlete's sample for second ``k`` of the race, one batch."""
    batch = empty(ATHLETES)
    batch["entry"] = np.arange(ATHLETES)
    batch["seq"] = k
    batch["t"] = gun + k
    batch["distance"] = SPEED * k * (1 + np.arange(ATHLETES) / 1000)  # athlete i is i per mille faster
    batch["speed"] = SPEED
    return encode(batch)


async def test_sigkill_of_a_race_host_loses_no_acknowledged_sample_and_counts_none_twice(ray_cluster, store_url):
    config = HostConfig(snapshot_interval=0.3, compact_every=1_000_000)  # keep the whole journal to replay it
    cluster = Cluster(
        HostSpec(store_url, KINDS, config, hosts=1, open_store=OPEN_STORE),
        namespace=f"race-kill-{uuid.uuid4().hex[:6]}",
    )
    race_id = uuid.uuid4().hex
    try:
        gun = 1_800_000_000.0
        await cluster.ask(
            "race",
            race_id,
            "create",
            {"organizer": "org", "config": {"name": "R", "sport": "run", "kind": "time", "duration_s": 3600}},
        )
        await cluster.ask("race", race_id, "open", {"by": "org"})
        joined = await cluster.ask(
            "race", race_id, "join_many", {"athletes": [{"user_id": f"a{i}", "name": f"A{i}"} for i in range(ATHLETES)]}
        )
        assert joined == list(range(ATHLETES))
        await cluster.deliver([("race", race_id, "start", {"by": "org"}, gun - 1)])
        host = cluster.host_for("race", race_id)
        pid = await host.pid.remote()

        accepted = duplicates = 0
        unacknowledged: list[int] = []
        killed = False
        for k in range(1, SECONDS + 1):
            (answer,) = await cluster.deliver([("race", race_id, "ingest", {"samples": second(k, gun)}, gun + k)])
            if isinstance(answer, EngineError):
                assert isinstance(answer, HostUnavailable), answer
                unacknowledged.append(k)
                continue
            accepted += answer["accepted"]
            duplicates += answer["duplicates"]
            if k == SECONDS // 2 and not killed:
                os.kill(pid, signal.SIGKILL)
                killed = True
        assert killed
        for k in unacknowledged:  # the gateway's retry: idempotent by (participant, seq)
            (answer,) = await cluster.deliver([("race", race_id, "ingest", {"samples": second(k, gun)}, gun + k)])
            accepted += answer["accepted"]
            duplicates += answer["duplicates"]
        assert await host.pid.remote() != pid

        assert accepted == ATHLETES * SECONDS, "a sample was lost or counted twice"
        live = await cluster.ask("race", race_id, "results")
        expected = {f"a{i}": SPEED * SECONDS * (1 + i / 1000) for i in range(ATHLETES)}
        assert {r["user_id"]: r["distance_m"] for r in live} == pytest.approx(expected, rel=1e-5)

        # The board equals a replay of the journal from the first message, with no snapshot.
        store = open_store(store_url)
        await store.open()
        try:
            entries = await store.read_journal("race", race_id)
        finally:
            await store.close()
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        replayed, _, _ = rebuild(Race, race_id, None, entries)
        assert replayed.results() == live
    finally:
        cluster.kill()
