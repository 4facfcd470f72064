"""The hub's per-race batches: rows packed straight into the race's records, a window that lengthens with load.

The race here is a stand-in that keeps what it was sent (the hub against the real race and
Mosquitto is tests/test_mqtt_hub.py): these pin down what a batch holds and how long a window is.
"""

from __future__ import annotations

import asyncio
import math

import msgpack
import numpy as np
import pytest

from actors.race_client import RaceClient
from connectors.mqtt.batching import Batches
from connectors.mqtt.uplink import uplink
from engine.refs import Ref
from engine.telemetry import decode

T0 = 1_700_000_000.0


class _Race:
    """Answers what Batches asks of a live race, and keeps each ingest."""

    def __init__(self) -> None:
        self.ingests: list[tuple[str, np.ndarray, list[str]]] = []

    async def ask(self, kind: str, entity_id: str, message: str, fields: dict | None = None) -> object:
        if message == "state":
            return {"exists": True, "status": None}
        assert message == "ingest" and fields is not None
        self.ingests.append((entity_id, decode(fields["samples"]), fields["athletes"]))
        return {"accepted": len(fields["samples"]) // 46, "not_in_race": []}

    def ref(self, cls: type, entity_id: str) -> Ref:
        return Ref(self.ask, cls, entity_id)


def _batches(race: _Race, acked: list, **options) -> tuple[Batches, set[asyncio.Task]]:
    tasks: set[asyncio.Task] = set()

    def spawn(work) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    settings = {"window": 0.05, "max_window": 0.5, "ingests_per_s": 100.0, "max_batch": 1_000} | options
    batches = Batches(
        race,  # type: ignore[arg-type]
        RaceClient(race),  # type: ignore[arg-type]
        retry_delay=0.1,
        ack=acked.extend,
        drop=lambda *dropped: pytest.fail(f"dropped {dropped}"),
        spawn=spawn,
        **settings,
    )
    return batches, tasks


def _message(race_id: str, seqs: range, **readings) -> object:
    return uplink(msgpack.packb({"race": race_id, "samples": [{"seq": s, "t": T0 + s, **readings} for s in seqs]}))


async def test_rows_of_several_athletes_arrive_as_the_packed_records_of_one_ingest():
    race, acked = _Race(), []
    batches, tasks = _batches(race, acked)
    first = _message("r", range(3), distance=5.0, hr=150)
    second = uplink(msgpack.packb({"race": "r", "seq": 9, "t": T0, "power": 300}))  # one sample's own fields
    nulls = _message("r", range(10, 12), hr=None, lat=None)  # null: absent
    batches.add("r", "alice", first.rows, ("d1", "alice", 1, 1))
    batches.add("r", "bob", second.rows, ("d2", "bob", 2, 1))
    batches.add("r", "alice", nulls.rows, ("d1", "alice", 3, 1))
    batches.flush()
    await asyncio.gather(*tasks)
    ((race_id, samples, athletes),) = race.ingests
    assert race_id == "r" and athletes == ["alice", "bob"]
    assert samples["entry"].tolist() == [0, 0, 0, 1, 0, 0]
    assert samples["seq"].tolist() == [0, 1, 2, 9, 10, 11]
    assert samples["t"].tolist() == [T0, T0 + 1, T0 + 2, T0, T0 + 10, T0 + 11]
    assert samples["hr"].tolist() == [150, 150, 150, 0, 0, 0] and samples["power"].tolist() == [0, 0, 0, 300, 0, 0]
    assert samples["distance"][:3].tolist() == [5.0] * 3 and all(math.isnan(d) for d in samples["distance"][3:])
    assert all(math.isnan(v) for v in samples["lat"])
    assert sorted(acked) == [(1, 1), (2, 1), (3, 1)]


async def test_the_window_lengthens_with_the_races_of_the_last_one_and_stops_at_its_bound():
    race, acked = _Race(), []
    batches, tasks = _batches(race, acked)
    assert batches.current == 0.05
    for races, window in [(20, 0.2), (80, 0.5), (3, 0.05), (10, 0.1)]:
        for k in range(races):
            batches.add(f"r{k}", "a", _message(f"r{k}", range(1)).rows, ("d", "a", k + 1, 1))
        batches.flush()
        assert batches.current == pytest.approx(window), f"{races} races"
    await asyncio.gather(*tasks)
    assert len(race.ingests) == 20 + 80 + 3 + 10, "one ingest per race per window"


async def test_without_a_rate_to_keep_the_window_never_moves_and_a_full_batch_goes_alone():
    race, acked = _Race(), []
    batches, tasks = _batches(race, acked, max_window=None, ingests_per_s=math.inf, max_batch=4)
    batches.add("other", "a", _message("other", range(1)).rows, ("d", "a", 1, 1))
    batches.add("big", "a", _message("big", range(3)).rows, ("d", "a", 2, 1))
    batches.add("big", "b", _message("big", range(3, 5)).rows, ("d", "b", 3, 1))  # 5 samples: full
    await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert [(race_id, len(samples)) for race_id, samples, _ in race.ingests] == [("big", 5)]
    batches.flush()
    await asyncio.gather(*tasks)
    assert [race_id for race_id, *_ in race.ingests] == ["big", "other"] and batches.current == 0.05


def test_a_window_bound_below_the_window_or_a_rate_of_nothing_is_refused():
    race = _Race()
    with pytest.raises(ValueError, match="max_window"):
        _batches(race, [], max_window=0.01)
    with pytest.raises(ValueError, match="ingests_per_s"):
        _batches(race, [], ingests_per_s=0)
