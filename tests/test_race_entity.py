"""The race entity on a host without Ray: lifecycle, timers, join surges, snapshots."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actors.race import Race, RaceRef
from connectors.samples import Sample, pack_samples
from engine.codec import unpack
from engine.config import HostConfig
from engine.errors import Forbidden, NotFound, Rejected
from engine.host import Host, rebuild
from engine.telemetry import empty, encode
from persistence.sqlite import SQLiteStore
from tests.conftest import T0, Clock


def make_host(path, clock: Clock | None = None, **config) -> Host:
    """A race host on a real store; with ``clock``, time stands still until the test moves it."""
    store = SQLiteStore(path / "arena.db")
    if clock is None:
        return Host([Race, RaceRef], store, HostConfig(timer_resolution=0.01, **config))
    return Host([Race, RaceRef], store, HostConfig(**config), clock=clock, monotonic=clock)


RIDE = {"name": "Hour", "sport": "ride", "kind": "time", "duration_s": 3600}


async def test_every_transition_is_kept_and_illegal_ones_are_refused(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("race", "r", "create", {"organizer": "org", "config": RIDE})
    with pytest.raises(Rejected, match="cannot become live"):
        await host.ask("race", "r", "start", {"by": "org"})
    with pytest.raises(NotFound):  # a draft exists for its organizer alone
        await host.ask("race", "r", "open", {"by": "someone"})
    await host.ask("race", "r", "open", {"by": "org"})
    with pytest.raises(Forbidden):
        await host.ask("race", "r", "start", {"by": "someone"})
    for action in ("start", "end", "finalize"):
        await host.ask("race", "r", action, {"by": "org"})
    with pytest.raises(Rejected, match="final race cannot be cancelled"):
        await host.ask("race", "r", "cancel", {"by": "org"})
    info = await host.ask("race", "r", "info")
    assert [t["status"] for t in info["transitions"]] == ["draft", "open", "live", "finished", "final"]
    with pytest.raises(NotFound):
        await host.ask("race", "nope", "info")
    await host.stop()


async def test_start_at_starts_the_race_and_a_time_race_ends_itself(tmp_path, clock):
    host = make_host(tmp_path, clock)
    await host.start()
    gun = T0 + 60
    await host.ask("race", "r", "create", {"organizer": "org", "config": {**RIDE, "duration_s": 600, "start_at": gun}})
    await host.ask("race", "r", "open", {"by": "org"})

    async def status_at(now: float) -> str:
        clock.now = now
        await host.fire_timers()
        return (await host.ask("race", "r", "info"))["status"]

    assert await status_at(gun - 0.1) == "open"
    assert await status_at(gun) == "live"
    assert await status_at(gun + 599.9) == "live"
    assert await status_at(gun + 600) == "finished"
    info = await host.ask("race", "r", "info")
    assert [t["status"] for t in info["transitions"]] == ["draft", "open", "live", "finished"]
    assert info["transitions"][2]["at"] == gun
    await host.stop()


async def test_a_join_surge_of_twenty_thousand_in_one_message_and_capacity_holds(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("race", "r", "create", {"organizer": "org", "config": {**RIDE, "capacity": 20_000}})
    await host.ask("race", "r", "open", {"by": "org"})
    surge = [{"user_id": f"u{i}", "name": f"U{i}"} for i in range(20_000)]
    assert await host.ask("race", "r", "join_many", {"athletes": surge}) == list(range(20_000))
    again = await host.ask("race", "r", "join_many", {"athletes": surge[:2] + [{"user_id": "late", "name": "L"}]})
    assert again == [0, 1, {"error": "the race is full"}]
    assert await host.ask("race", "r", "join", {"user_id": "u7", "name": "U7"}) == 7
    await host.stop()


async def test_a_race_comes_back_whole_from_its_snapshot(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("race", "r", "create", {"organizer": "org", "config": {**RIDE, "categories": ["a", "b"]}})
    await host.ask("race", "r", "open", {"by": "org"})
    await host.ask("race", "r", "join", {"user_id": "u1", "name": "One", "category": "b", "weight_kg": 70})
    await host.ask("race", "r", "bind_device", {"user_id": "u1", "device_id": "watch-1"})
    await host.ask("race", "r", "join", {"user_id": "u2", "name": "Two", "category": "a"})
    before = await host.ask("race", "r", "view")
    await host.stop()  # snapshots the board as raw arrays

    again = make_host(tmp_path)
    await again.start()
    after = await again.ask("race", "r", "view")
    assert {k: v for k, v in after.items() if k != "at"} == {k: v for k, v in before.items() if k != "at"}
    assert await again.ask("race", "r", "device_map") == {"watch-1": 0}
    await again.stop()


def _second(k: int, riders: int, rng: np.random.Generator) -> bytes:
    """Second ``k`` of a ride: every rider once, in a random order, some twice (a retry)."""
    who = np.concatenate([rng.permutation(riders), rng.integers(0, riders, riders // 20)])
    batch = empty(len(who))
    batch["entry"], batch["seq"], batch["t"] = who, k, T0 + k + rng.uniform(0, 0.9, len(who))
    batch["distance"] = k * (7.0 + who / riders) + rng.normal(0, 0.5, len(who))
    batch["lat"], batch["lon"] = 45.0 + k * 1e-4, 7.0 + who * 1e-5
    batch["speed"], batch["hr"], batch["cadence"] = (7.5 + rng.normal(0, 2, len(who))).clip(0), 150, 88
    batch["power"] = rng.normal(220, 90, len(who)).clip(0)  # some over the W/kg caps: fair play flags them
    return encode(batch)


async def test_a_big_race_killed_while_its_snapshot_is_held_back_recovers_its_board_exactly(tmp_path, clock):
    riders = 2_000
    config = {"snapshot_interval": 5, "snapshot_budget": 20_000, "compact_every": 1_000_000}  # the journal stays whole
    host = make_host(tmp_path, clock, **config)
    await host.start()
    await host.ask("race", "r", "create", {"organizer": "org", "config": RIDE})
    await host.ask("race", "r", "open", {"by": "org"})
    athletes = [{"user_id": f"u{i}", "name": f"U{i}", "weight_kg": 50 + i % 40} for i in range(riders)]
    await host.ask("race", "r", "join_many", {"athletes": athletes})
    clock.now = T0
    await host.ask("race", "r", "start", {"by": "org"}, at=T0)
    rng = np.random.default_rng(7)
    for k in range(1, 41):
        clock.now = T0 + k
        await host.ask("race", "r", "ingest", {"samples": _second(k, riders, rng)}, at=clock.now)
        await host.maintain()
    snapshot = await host.store.load_snapshot("race", "r")
    assert snapshot is not None and snapshot.seq < host._active[("race", "r")].seq  # a journal tail to replay
    board = host._active[("race", "r")].entity.board
    live = {"board": board.to_state(), "results": await host.ask("race", "r", "results")}
    assert live["board"]["flags"], "fair play raised no flag: the test would not cover its state"
    for task in host._tasks:  # kill -9: no final snapshot
        task.cancel()
    await host._committer.stop()
    await host.store.close()

    again = make_host(tmp_path, clock, **config)
    await again.start()
    assert await again.ask("race", "r", "results") == live["results"]
    assert again._active[("race", "r")].entity.board.to_state() == live["board"]  # every column, flag and count
    entries = await again.store.read_journal("race", "r")
    replayed, _, _ = rebuild(Race, "r", None, entries)  # the whole journal from the first message, no snapshot
    assert replayed.board.to_state() == live["board"]
    await again.stop()


async def test_bad_settings_and_bad_batches_are_refused_with_reasons(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    for config, words in (
        ({**RIDE, "kind": "relay"}, "kind"),
        ({**RIDE, "sport": "chess"}, "sport"),
        ({"name": "x", "sport": "run", "kind": "distance"}, "target_m"),
        ({**RIDE, "start_mode": "rolling"}, "start_window_s"),
        ({**RIDE, "teleport": True}, "unknown"),
        ({**RIDE, "capacity": 0}, "capacity"),
    ):
        with pytest.raises(Rejected, match=words):
            await host.ask("race", f"bad-{words}", "create", {"organizer": "org", "config": config})
    await host.ask("race", "r", "create", {"organizer": "org", "config": RIDE})
    await host.ask("race", "r", "open", {"by": "org"})
    await host.ask("race", "r", "start", {"by": "org"})
    for garbage in (b"x" * 45, b"\xff" * 46 * 3):
        with pytest.raises(Rejected):
            await host.ask("race", "r", "ingest", {"samples": garbage})
    assert (await host.ask("race", "r", "info"))["status"] == "live"  # the race keeps running
    await host.stop()


async def test_an_athlete_whose_device_went_offline_shows_signal_lost_until_telemetry_arrives(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    await host.ask("race", "r", "create", {"organizer": "org", "config": RIDE})
    await host.ask("race", "r", "open", {"by": "org"})
    for user in ("u0", "u1"):
        await host.ask("race", "r", "join", {"user_id": user, "name": user.upper()})
    await host.ask("race", "r", "bind_device", {"user_id": "u1", "device_id": "watch-1"})
    await host.ask("race", "r", "start", {"by": "org"})
    with pytest.raises(Rejected, match="not bound"):
        await host.ask("race", "r", "signal", {"device_id": "stranger", "state": "offline"})
    with pytest.raises(Rejected, match="online or offline"):
        await host.ask("race", "r", "signal", {"device_id": "watch-1", "state": "asleep"})
    assert await host.ask("race", "r", "signal", {"device_id": "watch-1", "state": "offline"}) == [1]
    await host.stop()  # the lost signal is part of the snapshot

    again = make_host(tmp_path)
    await again.start()
    assert (await again.ask("race", "r", "view"))["signal_lost"] == [1]
    await again.ask("race", "r", "ingest", {"samples": _samples(), "athletes": ["u0"]})
    assert (await again.ask("race", "r", "view"))["signal_lost"] == [1], "another athlete's telemetry"
    await again.ask("race", "r", "ingest", {"samples": _samples(), "athletes": ["u1"]})
    assert (await again.ask("race", "r", "view"))["signal_lost"] == []
    await again.ask("race", "r", "signal", {"device_id": "watch-1", "state": "offline"})
    await again.ask("race", "r", "signal", {"device_id": "watch-1", "state": "online"})
    assert (await again.ask("race", "r", "view"))["signal_lost"] == []
    await again.stop()


def _samples() -> bytes:
    return pack_samples([Sample(seq=0, t=time.time(), distance=10.0)])


async def test_a_route_is_validated_and_kept_and_totals_count_samples_and_flagged_athletes(tmp_path):
    host = make_host(tmp_path)
    await host.start()
    loop = [[48.86, 2.25], [48.87, 2.26], [48.86, 2.25]]
    run = {"name": "Loop", "sport": "run", "kind": "distance", "target_m": 3000, "route": loop}
    assert (await host.ask("race", "r", "create", {"organizer": "org", "config": run}))["route"] == loop
    for route in ([[48.8, 2.2]], [[91, 0], [0, 0]], [[0, 0, 0], [1, 1]], [[0, 0]] * 5001):
        with pytest.raises(Rejected, match="route"):
            await host.ask("race", "r", "configure", {"by": "org", "changes": {"route": route}})
    await host.ask("race", "r", "open", {"by": "org"})
    await host.ask("race", "r", "join_many", {"athletes": [{"user_id": u, "name": u} for u in ("ann", "zed")]})
    await host.ask("race", "r", "start", {"by": "org"})
    now = time.time()
    samples = [Sample(seq=i, t=now + i * 0.5, distance=i * 1.5, speed=3.0) for i in range(1, 6)]
    samples += [Sample(seq=i, t=now + i * 0.5, distance=i * 20.0, speed=40.0) for i in range(1, 6)]
    packed = pack_samples(samples, [0] * 5 + [1] * 5)
    await host.ask("race", "r", "ingest", {"samples": packed, "athletes": ["ann", "zed"]})
    totals = (await host.ask("race", "r", "info"))["totals"]
    assert totals["samples"] == 10 and totals["flagged"] == 1
    view = await host.ask("race", "r", "view", {"n": 10})
    assert [row[2] for row in view["roster"]] == [None, None]
    assert sorted(view["states"]) == [1, 6]  # racing, provisional
    await host.ask("race", "r", "review", {"by": "org", "user_id": "zed", "accept": False})
    assert (await host.ask("race", "r", "info"))["totals"]["flagged"] == 0
    await host.stop()


async def test_a_heart_rate_is_kept_only_for_athletes_who_consented_and_never_journaled_for_the_others(tmp_path):
    from engine.telemetry import decode

    host = make_host(tmp_path)
    await host.start()
    try:
        await host.ask("race", "r", "create", {"organizer": "org", "config": RIDE})
        await host.ask("race", "r", "open", {"by": "org"})
        await host.ask("race", "r", "join", {"user_id": "yes", "name": "Y", "health": True})
        await host.ask("race", "r", "join", {"user_id": "no", "name": "N", "health": False})
        await host.ask("race", "r", "start", {"by": "org"})

        def batch(first: int) -> bytes:
            now = time.time()
            samples = [Sample(seq=first + i, t=now + i, distance=10.0 * i, speed=9.0, hr=150) for i in range(3)]
            return pack_samples(samples * 2, [0] * 3 + [1] * 3)

        await host.ask("race", "r", "ingest", {"samples": batch(0)})
        # by position in an athletes list, as a gateway sends
        await host.ask("race", "r", "ingest", {"samples": batch(3), "athletes": ["no", "yes"]})
        await host.ask("race", "r", "health_consent", {"user_id": "no", "given": True})
        await host.ask("race", "r", "ingest", {"samples": batch(6)})
        journal = [e for e in await host.store.read_journal("race", "r") if e.message_type == "ingest"]
        kept = []
        for entry in journal:
            body = unpack(entry.body)
            samples = decode(body["samples"])
            names = body.get("athletes") or ["yes", "no"]
            kept.append({names[e]: int(h) for e, h in zip(samples["entry"], samples["hr"])})
        assert kept == [{"yes": 150, "no": 0}, {"no": 0, "yes": 150}, {"yes": 150, "no": 150}]
    finally:
        await host.stop()
