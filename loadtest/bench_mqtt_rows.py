"""Journal rows per second that MQTT hubs cause in races: a model of H hubs × R races driven by the real ``Batches``.

Every ingest message a hub sends is a command its race journals: a row. How many a second
the races get depends on how many (hub, race) pairs have a sample in a batch window, and
on the window. The hubs of a field are alike, so one hub is run, in real time, with the
real ``connectors.mqtt.batching.Batches`` (its timer, its flushes, its acks) and a
stand-in cluster that answers ``ingest`` at once; its rows per second times ``--hubs`` is
the field's. It is fed what one hub of the field would hear, at even intervals:

- **device-keyed** (today: broker shards by device id, a shared subscription within a
  broker): each race's devices spread over every hub, so each hub hears all ``--races``,
  each at ``devices per race × rate / hubs`` messages a second;
- **race-keyed** (a model of routing each race to ``--hubs-per-race`` hubs): a hub hears
  ``races × hubs per race / hubs`` races, each at ``devices per race × rate / hubs per race``.

For each: the fixed 50 ms window, and the window that lengthens with load
(``ingests_per_s``, ``max_window``). Reported: rows/s for the field, and how long a sample
waited in the hub (from ``add`` to the ack once the race answered) at p50 / p99 / max.
Run: ``.venv/bin/python -m loadtest.bench_mqtt_rows --hubs 20 --races 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

from actors.race_client import RaceClient
from connectors.mqtt.batching import Batches
from loadtest.bench_mqtt_floor import StandInCluster


@dataclass
class Case:
    name: str
    keyed: bool  # race-keyed routing (the model) or device-keyed (today)
    ingests_per_s: float  # inf: the window never lengthens


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _one(case: Case, args: argparse.Namespace) -> tuple[float, list[float], float]:
    """One hub of the field for ``--seconds``: its ingests per second, the samples' waits, its last window."""
    if case.keyed:
        races = max(1, round(args.races * args.hubs_per_race / args.hubs))
        rate = args.devices_per_race * args.rate / args.hubs_per_race
    else:
        races, rate = args.races, args.devices_per_race * args.rate / args.hubs
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

    batches = Batches(
        cluster,  # type: ignore[arg-type]  # the stand-in answers what Batches asks
        RaceClient(cluster),
        window=args.window,
        max_window=args.max_window,
        ingests_per_s=case.ingests_per_s,
        max_batch=1_000,
        retry_delay=0.5,
        ack=ack,
        drop=lambda *dropped: None,
        spawn=spawn,
    )
    race_ids = [f"race-{k}" for k in range(races)]
    row = (1, time.time(), 10.0, 45.0, 6.0, 3.0, 150, 0, 0)
    tick, ticks, owed = 0.005, 0, 0.0
    started = time.monotonic()
    counted_from = started + args.warmup
    ingests_before = 0
    while (now := time.monotonic()) < counted_from + args.seconds:
        if not ingests_before and now >= counted_from:
            ingests_before, waits[:] = max(1, cluster.ingests), []
        owed += rate * tick
        whole, owed = int(owed), owed - int(owed)
        for race_id in race_ids:  # each race's messages of this tick
            for _ in range(whole):
                added.append(time.monotonic())
                batches.add(race_id, f"u{len(added) % 1_000}", [row], ("d", "u", len(added) - 1, 1))
        ticks += 1
        await asyncio.sleep(max(0.0, started + tick * ticks - time.monotonic()))
    counted = cluster.ingests - ingests_before
    batches.flush()
    await asyncio.gather(*tasks)
    return counted / args.seconds, waits, batches.current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=20)
    parser.add_argument("--races", type=int, default=50)
    parser.add_argument("--devices-per-race", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per device per second")
    parser.add_argument("--hubs-per-race", type=int, default=2, help="race-keyed: the hubs a race's devices reach")
    parser.add_argument("--window", type=float, default=0.05, help="the batch window, s")
    parser.add_argument("--max-window", type=float, default=0.5, help="the longest window, s")
    parser.add_argument("--ingests-per-s", type=float, default=50.0, help="a hub's ingest messages a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    if args.hubs_per_race > args.hubs:
        raise SystemExit("--hubs-per-race is at most --hubs")
    cases = [
        Case("device-keyed, 50 ms window (today)", False, float("inf")),
        Case(f"device-keyed, window for {args.ingests_per_s:g} ingests/s", False, args.ingests_per_s),
        Case(f"race-keyed ({args.hubs_per_race} hubs/race), 50 ms window", True, float("inf")),
        Case(f"race-keyed ({args.hubs_per_race} hubs/race), window for {args.ingests_per_s:g}/s", True, args.ingests_per_s),
    ]  # fmt: skip
    load = os.getloadavg()
    print(
        f"{args.hubs} hubs × {args.races} races, {args.devices_per_race:,} devices per race at {args.rate:g} msg/s, "
        f"window {args.window * 1e3:.0f} ms up to {args.max_window * 1e3:.0f} ms; one hub run {args.seconds:g} s "
        f"per case; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    today = None
    for case in cases:
        per_hub, waits, window = asyncio.run(_one(case, args))
        rows = per_hub * args.hubs
        today = today or rows
        print(
            f"  {case.name:52} rows/s {rows:8,.0f} ({today / rows:4.1f}x fewer)  window {window * 1e3:4.0f} ms  "
            f"wait in hub p50/p99/max {_percentile(waits, 0.5):.3f}/{_percentile(waits, 0.99):.3f}/{max(waits):.3f} s"
        )


if __name__ == "__main__":
    main()
