"""A race and accounts on a three-node Ray cluster on this machine; a worker node is killed mid-race.

Run by ``test_multinode.py`` in a process of its own (a process joins one Ray cluster,
and the test session already has one): ``python -m tests.multinode_race STORE_URL``
prints one JSON report on its last line.

The cluster is Ray's own multi-node test cluster: a head node that runs no entity
host (like a production head, it only coordinates) and two worker nodes that offer
the ``arena_host`` resource. The scenario streams a race's telemetry from a client
that retries each batch until it is acknowledged, SIGKILLs the worker node that hosts
the race halfway through, and keeps streaming. ``Cluster.remove_node`` kills a node's
raylet and its daemons but not its worker processes, which would go on serving until the
GCS declares the node dead; a lost machine takes them all, so the hosts' processes on
that node are killed with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid

import numpy as np

ATHLETES = 300
SECONDS = 60
KILL_AT = SECONDS // 2
ACCOUNTS = 40
SPEED = 3.0  # m/s
GUN = 1_800_000_000.0
RESOURCE = "arena_host"
RETRY_FOR = 120.0  # seconds a batch may go unacknowledged before the scenario gives up
# A SIGKILLed raylet cannot say goodbye: the GCS notices it by missed health checks.
# Ray's defaults (every 3 s, 5 misses) take 15 s or more; these take about 3 s.
FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 4,
}


def second(k: int) -> bytes:
    """Every athlete's sample for second ``k`` of the race, one batch."""
    from engine.telemetry import empty, encode

    batch = empty(ATHLETES)
    batch["entry"] = np.arange(ATHLETES)
    batch["seq"] = k
    batch["t"] = GUN + k
    batch["distance"] = SPEED * k * (1 + np.arange(ATHLETES) / 1000)  # athlete i is i per mille faster
    batch["speed"] = SPEED
    return encode(batch)


async def _until_answered(engine, envelope: tuple) -> tuple[object, int]:
    """The gateway's retry: resend a message while its host is unavailable; (answer, attempts)."""
    from engine.errors import EngineError, HostUnavailable

    deadline = time.monotonic() + RETRY_FOR
    attempts = 0
    while True:
        attempts += 1
        (answer,) = await engine.deliver([envelope])
        if not isinstance(answer, HostUnavailable):
            if isinstance(answer, EngineError):
                raise answer
            return answer, attempts
        if time.monotonic() > deadline:
            raise TimeoutError(f"no host answered {envelope[2]} for {RETRY_FOR:.0f} s")
        await asyncio.sleep(0.2)


async def _placement(engine) -> dict[str, tuple[str, int]]:
    """Each host's Ray node id and process id, by host name, once every host answers."""
    deadline = time.monotonic() + RETRY_FOR
    while not all(h["alive"] for h in await engine.health()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"hosts still down after {RETRY_FOR:.0f} s")
        await asyncio.sleep(0.2)
    health = await engine.health()
    return {
        f"arena-{h['dedicated'][0]}-{h['dedicated'][1]}" if h["dedicated"] else f"arena-host-{h['index']}": (
            h["node"],
            h["pid"],
        )
        for h in health
    }


async def scenario(store_url: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    from actors.race import Race
    from engine.cluster import Cluster
    from engine.config import HostConfig
    from engine.host import rebuild
    from engine.ray_host import HostSpec
    from persistence import open_store
    from serve.kinds import KINDS, OPEN_STORE

    nodes = RayCluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION},
    )
    workers = [nodes.add_node(num_cpus=1, resources={RESOURCE: 1}) for _ in range(2)]
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False, configure_logging=False)
    config = HostConfig(snapshot_interval=0.3, compact_every=1_000_000)  # keep the whole journal to replay it
    engine = Cluster(
        HostSpec(store_url, KINDS, config, hosts=4, open_store=OPEN_STORE),
        namespace=f"multinode-{uuid.uuid4().hex[:6]}",
        node_resource=RESOURCE,
    )
    race_id = uuid.uuid4().hex
    report: dict = {"head": nodes.head_node.node_id, "workers": [w.node_id for w in workers]}
    try:
        accounts = {
            f"u{i}": await engine.ask(
                "account",
                f"u{i}",
                "register",
                {"email": f"u{i}@example.com", "password_hash": "x", "display_name": f"U{i}"},
            )
            for i in range(ACCOUNTS)
        }
        await engine.ask(
            "race",
            race_id,
            "create",
            {"organizer": "org", "config": {"name": "R", "sport": "run", "kind": "time", "duration_s": 3600}},
        )
        await engine.ask("race", race_id, "open", {"by": "org"})
        athletes = [{"user_id": f"a{i}", "name": f"A{i}"} for i in range(ATHLETES)]
        report["joined"] = len(await engine.ask("race", race_id, "join_many", {"athletes": athletes}))
        await engine.deliver([("race", race_id, "start", {"by": "org"}, GUN - 1)])
        before = await _placement(engine)
        report["placement_before"] = {name: node for name, (node, _) in before.items()}
        victim = next(w for w in workers if w.node_id == before[f"arena-race-{race_id}"][0])

        accepted = duplicates = 0
        report["attempts"] = {}
        for k in range(1, SECONDS + 1):
            envelope = ("race", race_id, "ingest", {"samples": second(k)}, GUN + k)
            answer, attempts = await _until_answered(engine, envelope)
            accepted += answer["accepted"]
            duplicates += answer["duplicates"]
            if attempts > 1:
                report["attempts"][k] = attempts
            if k == KILL_AT:
                await asyncio.to_thread(nodes.remove_node, victim, allow_graceful=False)
                for node, pid in before.values():
                    if node == victim.node_id:
                        os.kill(pid, signal.SIGKILL)
                report["killed"] = victim.node_id
        report["accepted"] = accepted
        report["duplicates"] = duplicates
        report["placement_after"] = {name: node for name, (node, _) in (await _placement(engine)).items()}
        report["alive_nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])

        report["accounts_intact"] = [
            user
            for user, me in accounts.items()
            if (await _until_answered(engine, ("account", user, "me", None, None)))[0] == me
        ]
        live = await engine.ask("race", race_id, "results")
        report["distances"] = {r["user_id"]: r["distance_m"] for r in live}
        report["status"] = (await engine.ask("race", race_id, "info"))["status"]

        store = open_store(store_url)
        await store.open()
        try:
            entries = await store.read_journal("race", race_id)
        finally:
            await store.close()
        report["journal_seqs_contiguous"] = [e.seq for e in entries] == list(range(1, len(entries) + 1))
        replayed, _, _ = rebuild(Race, race_id, None, entries)
        report["replay_accepted"] = replayed.board.counts["accepted"]
        report["replay_equals_live"] = replayed.results() == live
    finally:
        engine.kill()
        ray.shutdown()
        nodes.shutdown()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(scenario(sys.argv[1]))), flush=True)
