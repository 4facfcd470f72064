"""A race's own host lives only while the race needs it; a settled race is read from its record."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import pytest
import ray

from connectors.mosquitto import running_broker
from connectors.mqtt import Hub
from connectors.samples import Sample, pack_samples
from loadtest.server import free_port
from serve.context import Arena, connect
from tests.test_api import assert_problem
from tests.test_mqtt_hub import _Device
from tests.test_races import organizer

pytestmark = pytest.mark.ray

RACES = 30  # in waves of WAVE, the most race hosts allowed at once
WAVE = 10
FIELD = 5  # athletes per race


@pytest.fixture(scope="module")
def settings(settings):
    """The shared API settings, with race hosts that retire within a second and a cap of one wave."""
    from pydantic import SecretStr

    return settings.model_copy(
        update={
            "snapshot_interval": 0.5,
            "race_host_idle": 1.0,
            "race_hosts_max": WAVE,
            "operator_token": SecretStr("operator-" + "x" * 32),
            "rate_limit_scale": 0,  # this module creates races by the dozen
        }
    )


def race_processes() -> int:
    """Entity-host processes of this test session's Ray (its workers are our grandchildren)."""
    me, count = os.getpid(), 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            grandparent = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(b"ray::HostActor") and grandparent == me:
            count += 1
    return count


async def until(condition, what: str, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while not await condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.05)


async def race_hosts(arena: Arena) -> int:
    return (await arena.cluster.dedicated_hosts())["race"]


def no_race_hosts(arena: Arena):
    async def check() -> bool:
        return await race_hosts(arena) == 0

    return check


def archive_caught_up(client, settings):
    """The lake's race archive has taken every race settled so far. It tells each settled race so
    (``mark_archived``), which wakes a race host that had retired: wait for it before asking for none."""
    headers = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}

    async def check() -> bool:
        consumers = (await client.get("http://arena/ops/events", headers=headers)).json()["consumers"]
        return consumers["stream:race-archive"]["lag"] == 0

    return check


async def run_to_final(
    client, org: dict, name: str, devices: tuple[str, ...] = (), capacity: int | None = None
) -> str:
    """A race from creation to final through the API; its field joins and streams as the MQTT hub would
    (``devices``: the organizer runs too, wearing these)."""
    arena = client.arena
    body = {"name": name, "sport": "run", "kind": "distance", "target_m": 100}
    deadline = time.monotonic() + 60
    while True:  # at the cap of race hosts the answer is 503, retryable: a host of the last wave still going
        created = await client.post("/races", json=body | ({"capacity": capacity} if capacity else {}), headers=org)
        if created.status_code != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert created.status_code == 201, created.text
    race_id = created.json()["id"]
    assert (await client.post(f"/races/{race_id}/actions/open", headers=org)).status_code == 200
    field = [{"user_id": f"{race_id[:8]}-{i}", "name": f"Runner {i}"} for i in range(FIELD)]
    assert await arena.race(race_id, "join_many", {"athletes": field}) == list(range(FIELD))
    if devices:
        assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=org)).status_code == 201
    for device_id in devices:
        bound = await client.put(f"/devices/{device_id}/race/{race_id}", headers=org)
        assert bound.status_code == 200, bound.text
    assert (await client.post(f"/races/{race_id}/actions/start", headers=org)).status_code == 200
    now = time.time()
    samples = [Sample(seq=1, t=now, distance=100.0 + i, speed=3.0) for i in range(FIELD)]
    users = [athlete["user_id"] for athlete in field]
    counts = await arena.race(
        race_id, "ingest", {"samples": pack_samples(samples, list(range(FIELD))), "athletes": users}
    )
    assert counts["accepted"] == FIELD
    for action in ("end", "finalize"):
        answer = await client.post(f"/races/{race_id}/actions/{action}", headers=org)
        assert answer.status_code == 200, answer.text
    return race_id


async def read_anonymously(client, race_id: str) -> None:
    info = await client.get(f"/races/{race_id}")
    assert info.status_code == 200 and info.json()["status"] == "final", info.text
    results = (await client.get(f"/races/{race_id}/results")).json()
    assert results["official"] and [r["place"] for r in results["results"]] == list(range(1, FIELD + 1))
    csv = await client.get(f"/races/{race_id}/results.csv")
    assert csv.status_code == 200 and csv.text.count("\n") == FIELD + 1
    board = (await client.get(f"/races/{race_id}/leaderboard")).json()
    assert board["status"] == "final" and len(board["entries"]) == FIELD
    rows = (await client.get(f"/races/{race_id}/leaderboard/rows", params={"count": 2})).json()
    assert rows["total"] == FIELD and len(rows["rows"]) == 2


async def test_many_races_run_to_final_and_their_processes_go_while_their_results_stay_readable(client, settings):
    arena = client.arena
    _, org = await organizer(client)
    await until(no_race_hosts(arena), "race hosts of earlier tests to stop")
    await arena.cluster.health()  # the shared hosts are up
    base = race_processes()
    finished: list[str] = []
    for wave in range(RACES // WAVE):
        finished += await asyncio.gather(*(run_to_final(client, org, f"Race {wave}.{i}") for i in range(WAVE)))
        await until(archive_caught_up(client, settings), f"the lake to archive wave {wave}")
        await until(no_race_hosts(arena), f"the race hosts of wave {wave} to stop")
    assert len(set(finished)) == RACES

    async def back_to_base() -> bool:
        return race_processes() == base

    await until(back_to_base, "the race processes to exit")

    # A replica that has never seen these races (as after a restart) reads them all anonymously.
    fresh = Arena.build(settings)
    client.arena = fresh
    from serve.app import api

    api.state.arena = fresh
    try:
        for race_id in finished:
            await read_anonymously(client, race_id)
    finally:
        await fresh.spectators.close()
    assert await race_hosts(fresh) == 0, "a read started a race host"
    assert race_processes() == base


async def test_a_small_race_runs_to_final_on_the_shared_hosts_and_starts_no_process(client):
    arena = client.arena
    _, org = await organizer(client)
    await until(no_race_hosts(arena), "race hosts of earlier tests to stop")
    await arena.cluster.health()
    base = race_processes()

    club = await asyncio.gather(*(run_to_final(client, org, f"Club {i}", capacity=50) for i in range(WAVE)))

    assert all(race_id.startswith("s-") for race_id in club)
    assert await race_hosts(arena) == 0 and race_processes() == base, "a small race started a process"
    for race_id in club:
        await read_anonymously(client, race_id)
    body = {"name": "Club", "sport": "run", "kind": "distance", "target_m": 5000}
    small = (await client.post("/races", json=body | {"capacity": 5_000}, headers=org)).json()["id"]
    grown = await client.patch(f"/races/{small}", json={"capacity": 5_001}, headers=org)
    assert "shared hosts" in assert_problem(grown, 409)["detail"]
    big = (await client.post("/races", json=body | {"capacity": 5_001}, headers=org)).json()["id"]
    assert not big.startswith("s-") and await race_hosts(arena) == 1, "a race of more than 5,000 has its own host"
    assert (await client.post(f"/races/{big}/actions/cancel", headers=org)).status_code == 200
    await until(no_race_hosts(arena), "the big race's host to stop")


async def test_a_correction_wakes_a_stopped_race_host_and_its_record_follows(client):
    arena = client.arena
    org_id, org = await organizer(client)
    race_id = await run_to_final(client, org, "Corrected")
    await until(no_race_hosts(arena), "the race host to stop")
    loser = f"{race_id[:8]}-{FIELD - 1}"  # the leader: furthest
    correction = await arena.race(
        race_id, "correct", {"by": org_id, "user_id": loser, "action": "disqualify", "reason": "cut the course"}
    )
    assert correction["to"] == "dsq"
    results = (await client.get(f"/races/{race_id}/results")).json()["results"]
    assert next(r for r in results if r["user_id"] == loser)["status"] == "dsq"
    await until(no_race_hosts(arena), "the woken race host to stop again")
    info = (await client.get(f"/races/{race_id}")).json()
    assert info["status"] == "final" and len(info["corrections"]) == 1
    assert await race_hosts(arena) == 0


async def test_past_the_cap_a_race_that_needs_a_host_waits_with_503_and_retry_after(client, settings):
    from serve.app import api

    _, org = await organizer(client)
    capped = Arena.build(settings.model_copy(update={"race_hosts_max": 2}))
    api.state.arena = capped
    try:
        await until(no_race_hosts(capped), "race hosts of earlier tests to stop")
        body = {"name": "Crowded", "sport": "run", "kind": "distance", "target_m": 1000}
        for _ in range(2):
            assert (await client.post("/races", json=body, headers=org)).status_code == 201
        refused = await client.post("/races", json=body, headers=org)
        problem = assert_problem(refused, 503)
        assert problem["code"] == "too_many_hosts" and int(refused.headers["Retry-After"]) >= 1
        token = settings.operator_token.get_secret_value()
        metrics = await client.get("http://arena/metrics", headers={"Authorization": f"Bearer {token}"})
        assert 'arena_dedicated_hosts{kind="race"} 2.0' in metrics.text
    finally:
        await capped.spectators.close()
        api.state.arena = client.arena
        kill_race_hosts(capped.cluster, settings)


async def register_device(client, headers: dict) -> str:
    answer = await client.post("/devices", json={"name": "Watch", "model": "Forerunner 965"}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def waking(settings):
    """Settings under which a race host, once woken, stays up (for a test that must see it, not miss it)."""
    return settings.model_copy(update={"race_host_idle": 3600.0})


def kill_race_hosts(cluster, settings) -> None:
    for handle in cluster.hosts[settings.hosts :]:  # the races' hosts, not the shared ones
        ray.kill(handle, no_restart=True)


async def test_the_mqtt_hub_learns_a_race_is_settled_from_its_record_and_wakes_no_host(client, settings, tmp_path):
    arena = client.arena
    _, org = await organizer(client)
    device_id = await register_device(client, org)
    race_id = await run_to_final(client, org, "Watched", devices=(device_id,))
    await until(no_race_hosts(arena), "the race host to stop")
    # A hub process of its own (it knows nothing of the race yet) whose race hosts, if it woke one, stay up.
    cluster = connect(waking(settings))
    port = free_port()
    with running_broker(tmp_path / "broker", port, None, None):
        hub = Hub(cluster, port=port, client_id=f"hub-{uuid.uuid4().hex[:6]}")
        listener = watch = None
        await hub.start()
        try:
            listener = _Device(port, "listener", listen=f"arena/v1/devices/{device_id}/downlink")
            watch = _Device(port, device_id)
            watch.send(device_id, {"state": "online"}, kind="status", pack=lambda body: json.dumps(body).encode())
            watch.send(device_id, {"race": race_id, "seq": 1, "t": time.time(), "distance": 5.0})

            async def told() -> bool:
                heard = [body for _, body in listener.received]
                return hub.acked == 2 and {"type": "finished", "race": race_id} in heard

            await until(told, "the device told that its race finished")
            assert hub.dropped == {"rejected": 1} and hub.accepted == 0  # the sample: the race is final
            assert [body["error"] for _, body in listener.received if "error" in body] == ["rejected"]
            assert await race_hosts(arena) == 0, "the hub woke the settled race's host"
        finally:
            for device in (watch, listener):
                if device is not None:
                    device.close()
            await hub.stop()
            kill_race_hosts(cluster, settings)


async def test_unbinding_or_revoking_a_device_of_a_settled_race_wakes_no_host(client, settings):
    from serve.app import api

    _, org = await organizer(client)
    unbound, revoked = await register_device(client, org), await register_device(client, org)
    race_id = await run_to_final(client, org, "Worn", devices=(unbound, revoked))
    await until(no_race_hosts(client.arena), "the race host to stop")
    waker = Arena.build(waking(settings))  # a replica that has not seen the race, whose race hosts stay up
    api.state.arena = waker
    try:
        answer = await client.delete(f"/devices/{unbound}/race", headers=org)
        assert answer.status_code == 200 and answer.json()["race_id"] is None, answer.text
        assert (await client.delete(f"/devices/{revoked}", headers=org)).status_code == 204
        assert await race_hosts(waker) == 0, "forgetting a device woke the settled race's host"
        info = (await client.get(f"/races/{race_id}")).json()
        assert info["status"] == "final"
    finally:
        await waker.spectators.close()
        api.state.arena = client.arena
        kill_race_hosts(waker.cluster, settings)


async def test_leaderboards_of_unknown_races_leave_no_watch_behind_in_the_replica(client):
    spectators = client.arena.spectators
    for _ in range(20):
        assert_problem(await client.get(f"/races/{uuid.uuid4().hex}/leaderboard"), 404)

    async def forgotten() -> bool:
        return not spectators._watches

    await until(forgotten, "the unknown races' watches to go")


def test_the_race_host_settings_are_checked():
    from serve.settings import Settings

    with pytest.raises(ValueError):
        Settings(race_host_idle=0)
    with pytest.raises(ValueError):
        Settings(race_hosts_max=0)
    assert Settings(race_host_idle=7).host_config().retire_after == 7
