"""A big race's snapshot writes and its recovery, with and without the snapshot budget (issue #21).

One race on an in-process host (no Ray) journaling to SQLite takes ``--seconds`` of 1 Hz
telemetry from every rider (fair play on), its clock moved one simulated second per second of
telemetry, with the host's write-behind snapshots every ``--interval`` s. The host is then
killed at the worst moment, just before its next snapshot (the longest journal tail), and a
fresh host on the same file activates the race: the time that takes is the recovery time, and
the recovered results and board must equal the live ones. Run twice in one go: without a budget
(every dirty entity every interval) and with ``--budget`` (by default the host's default budget). Run:
``.venv/bin/python -m loadtest.bench_race_snapshots --riders 50000``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from actors.race import Race
from engine.config import HostConfig
from engine.host import Host
from engine.store import Snapshot
from engine.telemetry import encode
from loadtest.bench_race import JOIN_CHUNK, ORGANIZER, Riders
from persistence.sqlite import SQLiteStore

BATCH = 5_000  # samples per ingest, as bench_race sends them


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _run(riders: Riders, folder: Path, budget: float, args: argparse.Namespace) -> dict[str, float]:
    clock = _Clock(riders.gun - 1)
    config = HostConfig(snapshot_interval=args.interval, snapshot_budget=budget)
    host = Host([Race], SQLiteStore(folder / "race.db"), config, clock=clock, monotonic=clock)
    written: list[tuple[float, int]] = []  # (simulated time, bytes) of each snapshot of the race
    save = host.store.save_snapshots

    async def counted(snapshots: Sequence[Snapshot]) -> None:
        await save(snapshots)
        written.extend((clock.now, len(s.state)) for s in snapshots)

    host.store.save_snapshots = counted  # type: ignore[method-assign]  # a bench's probe
    await host.start()
    for task in host._tasks:  # the bench turns the crank itself, on its own clock
        task.cancel()
    race = "bench"
    config_race = {"name": "Bench ride", "sport": "ride", "kind": "time", "duration_s": 3600}
    await host.ask("race", race, "create", {"organizer": ORGANIZER, "config": config_race})
    await host.ask("race", race, "open", {"by": ORGANIZER})
    for first in range(0, riders.size, JOIN_CHUNK):
        athletes = [
            {"user_id": f"rider-{i}", "name": f"Rider {i}", "weight_kg": float(riders.weight[i])}
            for i in range(first, min(first + JOIN_CHUNK, riders.size))
        ]
        await host.ask("race", race, "join_many", {"athletes": athletes})
    await host.ask("race", race, "start", {"by": ORGANIZER}, at=riders.gun)

    ingest_s = 0.0
    k = 0
    while True:
        clock.now = riders.gun + k + 1
        second = riders.second(k)
        began = time.perf_counter()
        for first in range(0, riders.size, BATCH):
            body = {"samples": encode(second[first : first + BATCH])}
            await host.ask("race", race, "ingest", body, at=clock.now)
        ingest_s += time.perf_counter() - began
        k += 1
        gaps = [b[0] - a[0] for a, b in zip(written, written[1:])]
        if k >= args.seconds and gaps and clock.now - written[-1][0] >= max(gaps) - 1:
            break  # the next maintain would snapshot: the longest tail a kill can leave
        await host.maintain()
    tail = clock.now - written[-1][0]
    live = await host.ask("race", race, "results")
    live_board = host._active[("race", race)].entity.board.to_state()
    await _kill(host)

    recoveries = []
    for _ in range(args.recoveries):  # each from a fresh host, killed after it: the same snapshot and tail
        again = Host([Race], SQLiteStore(folder / "race.db"), config, clock=clock, monotonic=clock)
        await again.start()
        began, cpu = time.perf_counter(), time.process_time()
        await again.ask("race", race, "info")  # the first message activates the race: snapshot, then journal tail
        recoveries.append((time.perf_counter() - began, time.process_time() - cpu))
        recovered = await again.ask("race", race, "results")
        recovered_board = again._active[("race", race)].entity.board.to_state()
        await _kill(again)
        if recovered != live or recovered_board != live_board:
            raise SystemExit("the recovered race differs from the live one")
    span = written[-1][0] - written[0][0]
    steady = sum(size for _, size in written[1:])  # the bytes written after the first snapshot, over its span
    return {
        "bytes_per_s": steady / span if span else math.nan,
        "snapshot_mb": written[-1][1] / 1e6,
        "every_s": span / (len(written) - 1) if len(written) > 1 else math.nan,
        "tail_s": tail,
        "recovery_s": statistics.median(wall for wall, _ in recoveries),
        "recovery_max_s": max(wall for wall, _ in recoveries),
        "recovery_cpu_s": statistics.median(cpu for _, cpu in recoveries),
        "samples_per_s": k * riders.size / ingest_s,
    }


async def _kill(host: Host) -> None:
    """As kill -9 leaves it: what was committed stays, no final snapshot."""
    for task in [*host._tasks, *host._background]:
        task.cancel()
    assert host._committer is not None
    await host._committer.stop()
    await host.store.close()


async def main(args: argparse.Namespace) -> None:
    riders = Riders(args.riders, gun=1_800_000_000.0, seed=1)
    rows = []
    for name, budget in (("no budget", math.inf), (f"budget {args.budget / 1e6:g} MB/s", args.budget)):
        with tempfile.TemporaryDirectory() as folder:
            result = await _run(riders, Path(folder), budget, args)
        rows.append((name, result))
        print(f"  {name}: done", flush=True)
    print(f"\n{args.riders:,} riders at 1 Hz, snapshot interval {args.interval:g} s, SQLite, fair play on\n")
    print(f"recovery: median (slowest) of {args.recoveries}; its CPU time: median, all of the process's threads\n")
    print(
        "| | snapshot | written every | snapshot writes | kill-time journal tail | recovery | recovery CPU | samples/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['snapshot_mb']:.1f} MB | {r['every_s']:.0f} s | {r['bytes_per_s'] / 1e6:.2f} MB/s"
            f" | {r['tail_s']:.0f} s | {r['recovery_s']:.2f} s ({r['recovery_max_s']:.2f}) | {r['recovery_cpu_s']:.2f} s"
            f" | {r['samples_per_s']:,.0f} |"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--riders", type=int, default=50_000, help="riders in the race")
    parser.add_argument("--seconds", type=int, default=40, help="simulated seconds of telemetry (at least)")
    parser.add_argument("--interval", type=float, default=5.0, help="ARENA_SNAPSHOT_INTERVAL, seconds")
    parser.add_argument("--recoveries", type=int, default=3, help="recoveries timed from the killed host's store")
    default = HostConfig().snapshot_budget
    parser.add_argument("--budget", type=float, default=default, help="snapshot budget, bytes/s per entity")
    args = parser.parse_args(argv)
    if min(args.riders, args.seconds, args.recoveries) < 1 or not args.interval > 0 or not args.budget > 0:
        parser.error("riders, seconds, recoveries, interval and budget must be positive")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
