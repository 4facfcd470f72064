"""Journal rows per second that MQTT hubs cause in races: H hubs × R races, each hub's real ``Batches``.

Every ingest message a hub sends is a command its race journals: a row. How many a second
the races get depends on how many (hub, race) pairs have a sample in a batch window, and
on the window. The whole field of ``--hubs`` hubs (the hub processes that share a broker's
stream) runs in this process, in real time, each with the real
``connectors.mqtt.batching.Batches`` (its timer, its flushes, its acks), against a stand-in
cluster that answers ``ingest`` at once and counts the rows. Each race's messages reach the
hubs that hear it, split evenly between them (as a shared subscription does), at even
intervals:

- **device-keyed** (``.../telemetry``, devices before race lanes): every hub hears every race;
- **race lanes** (``.../telemetry/{lane}``, what binding tells a device): race ``r`` is heard
  by the hubs whose ``connectors.mosquitto.lanes_of(j, hubs, hubs_per_race)`` hold
  ``lane_of(r)``: the routing Arena runs, not a model of it.

For each: the fixed 50 ms window, and the window that lengthens with load
(``ingests_per_s``, ``max_window``). Reported: rows/s for the field as run and "on time" (what
it would be if every window were cut on time: one process playing 20 hubs at 50,000 messages a
second falls behind in the device-keyed cases, whose waits then pass the window, so their
measured rows are fewer than the field would send), and how long a sample waited in its hub (from ``add`` to the ack once the race answered) at p50 / p99 / max.
Run: ``.venv/bin/python -m loadtest.bench_mqtt_rows --hubs 20 --races 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

from actors.race_client import RaceClient
from connectors.mosquitto import lane_of, lanes_of
from connectors.mqtt.batching import Batches
from loadtest.bench_mqtt_floor import StandInCluster


@dataclass
class Case:
    name: str
    lanes: bool  # race lanes (Arena's routing) or device-keyed
    ingests_per_s: float  # inf: the window never lengthens


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def heard(race_ids: list[str], hubs: int, hubs_per_race: int, lanes: bool) -> list[list[str]]:
    """The races each hub hears."""
    if not lanes:
        return [list(race_ids) for _ in range(hubs)]
    mine = [set(lanes_of(j, hubs, hubs_per_race)) for j in range(hubs)]
    return [[r for r in race_ids if lane_of(r) in mine[j]] for j in range(hubs)]


def bound(case: Case, per_hub: list[list[str]], args: argparse.Namespace) -> float:
    """Rows a second if every window were cut on time: each hub's window (lengthened to keep its
    (hub, race) pairs to ``ingests_per_s``, up to ``max_window``), one row per pair that has a message in it."""
    reach: dict[str, int] = {}
    for races in per_hub:
        for race_id in races:
            reach[race_id] = reach.get(race_id, 0) + 1
    rows = 0.0
    for races in per_hub:
        window = min(max(args.window, len(races) / case.ingests_per_s), max(args.window, args.max_window))
        rows += sum(min(args.devices_per_race * args.rate / reach[r], 1 / window) for r in races)
    return rows


async def _field(case: Case, args: argparse.Namespace) -> tuple[float, list[float], list[float], list[list[str]]]:
    """The field for ``--seconds``: rows per second, the samples' waits, each hub's last window, its races."""
    race_ids = [f"race-{k}" for k in range(args.races)]
    per_hub = heard(race_ids, args.hubs, args.hubs_per_race, case.lanes)
    reach = {r: sum(r in races for races in per_hub) for r in race_ids}
    cluster = StandInCluster()
    added: list[float] = []
    waits: list[float] = []
    tasks: set[asyncio.Task] = set()

    def ack(messages: list[tuple[int, int]]) -> None:
        now = time.monotonic()
        waits.extend(now - added[mid] for mid, _ in messages)

    def spawn(work) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    hubs = [
        Batches(
            cluster,  # type: ignore[arg-type]  # the stand-in answers what Batches asks
            RaceClient(cluster),  # type: ignore[arg-type]
            window=args.window,
            max_window=args.max_window,
            ingests_per_s=case.ingests_per_s,
            max_batch=1_000,
            retry_delay=0.5,
            ack=ack,
            drop=lambda *dropped: None,
            spawn=spawn,
        )
        for _ in range(args.hubs)
    ]
    # (hub, race, messages a second) for every pair that has traffic
    feeds = [
        (batches, race_id, args.devices_per_race * args.rate / reach[race_id])
        for batches, races in zip(hubs, per_hub, strict=True)
        for race_id in races
    ]
    owed = [0.0] * len(feeds)
    row = (1, time.time(), 10.0, 45.0, 6.0, 3.0, 150, 0, 0)
    tick, ticks = 0.005, 0
    started = time.monotonic()
    counted_from = started + args.warmup
    ingests_before = 0
    while (now := time.monotonic()) < counted_from + args.seconds:
        if not ingests_before and now >= counted_from:
            ingests_before, waits[:] = max(1, cluster.ingests), []
        for k, (batches, race_id, rate) in enumerate(feeds):  # each pair's messages of this tick
            owed[k] += rate * tick
            whole = int(owed[k])
            owed[k] -= whole
            for _ in range(whole):
                mid = len(added)
                added.append(now)
                batches.add(race_id, f"u{mid % 1_000}", [row], ("d", "u", mid, 1))
        ticks += 1
        await asyncio.sleep(max(0.0, started + tick * ticks - time.monotonic()))
    counted = cluster.ingests - ingests_before
    for batches in hubs:
        batches.flush()
    await asyncio.gather(*tasks)
    return counted / args.seconds, waits, [b.current for b in hubs], per_hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=20)
    parser.add_argument("--races", type=int, default=50)
    parser.add_argument("--devices-per-race", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per device per second")
    parser.add_argument("--hubs-per-race", type=int, default=2, help="race lanes: the hubs that hear each lane")
    parser.add_argument("--window", type=float, default=0.05, help="the batch window, s")
    parser.add_argument("--max-window", type=float, default=0.5, help="the longest window, s")
    parser.add_argument("--ingests-per-s", type=float, default=50.0, help="a hub's ingest messages a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    if args.hubs_per_race > args.hubs:
        raise SystemExit("--hubs-per-race is at most --hubs")
    cases = [
        Case("device-keyed, 50 ms window", False, float("inf")),
        Case(f"device-keyed, window for {args.ingests_per_s:g} ingests/s", False, args.ingests_per_s),
        Case(f"race lanes ({args.hubs_per_race} hubs/lane), 50 ms window", True, float("inf")),
        Case(f"race lanes ({args.hubs_per_race} hubs/lane), window for {args.ingests_per_s:g}/s", True, args.ingests_per_s),
    ]  # fmt: skip
    load = os.getloadavg()
    print(
        f"{args.hubs} hubs × {args.races} races, {args.devices_per_race:,} devices per race at {args.rate:g} msg/s, "
        f"window {args.window * 1e3:.0f} ms up to {args.max_window * 1e3:.0f} ms; the field run {args.seconds:g} s "
        f"per case; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    first = first_bound = None
    for case in cases:
        rows, waits, windows, per_hub = asyncio.run(_field(case, args))
        ideal = bound(case, per_hub, args)
        first, first_bound = first or rows, first_bound or ideal
        races = [len(r) for r in per_hub]
        print(
            f"  {case.name:46} rows/s {rows:8,.0f} ({first / rows:4.1f}x fewer; on time {ideal:7,.0f}, "
            f"{first_bound / ideal:4.1f}x)  races per hub {min(races)}-{max(races)}  window "
            f"{min(windows) * 1e3:4.0f}-{max(windows) * 1e3:4.0f} ms  wait in hub p50/p99/max "
            f"{_percentile(waits, 0.5):.3f}/{_percentile(waits, 0.99):.3f}/{max(waits):.3f} s"
        )


if __name__ == "__main__":
    main()
