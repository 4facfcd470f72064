"""The race board's hot path on one core: ingest, ranking, rank lookups, memory.

Streams ``--seconds`` of 1 Hz telemetry for ``--participants`` riders through
``engine.telemetry.decode`` and ``RaceBoard.ingest`` in batches of ``--batch``
samples, fair play on, then times ``rank()`` over the whole field and single
rank lookups. Run: ``.venv/bin/python -m loadtest.bench_board``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from engine.race import RaceBoard, warm_up
from engine.telemetry import decode, empty, encode

T0 = 1_700_000_000.0


def telemetry(participants: int, seconds: int, batch: int, seed: int) -> list[bytes]:
    """Encoded batches in arrival order: each second's samples in random participant order."""
    rng = np.random.default_rng(seed)
    pace = rng.uniform(7.0, 12.0, participants)
    power = rng.uniform(150, 320, participants)
    heading = rng.uniform(0, 2 * np.pi, participants)
    travelled = np.zeros(participants)
    stream = []
    for second in range(seconds):
        speed = pace + rng.normal(0, 0.3, participants)
        samples = empty(participants)
        samples["entry"] = rng.permutation(participants)
        who = samples["entry"]
        samples["seq"] = second + 1
        samples["t"] = T0 + second + rng.uniform(0, 0.2, participants)
        samples["distance"] = travelled[who]
        samples["lat"] = 45.0 + travelled[who] * np.cos(heading[who]) / 111_195 + rng.normal(0, 3e-5, participants)
        samples["lon"] = 7.0 + travelled[who] * np.sin(heading[who]) / 78_700 + rng.normal(0, 4e-5, participants)
        samples["speed"] = speed[who]
        samples["hr"] = 130 + 30 * power[who] / 320 + rng.normal(0, 2, participants)
        samples["power"] = power[who] + rng.normal(0, 25, participants).clip(-100, 100)
        samples["cadence"] = 88
        travelled += speed
        stream.append(samples)
    joined = np.concatenate(stream)
    return [encode(joined[i : i + batch]) for i in range(0, len(joined), batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=5_000, help="samples per ingest call")
    parser.add_argument("--rounds", type=int, default=20, help="repeats of rank()")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    print(f"building {args.seconds} s of 1 Hz telemetry for {args.participants:,} riders...", flush=True)
    batches = telemetry(args.participants, args.seconds, args.batch, args.seed)
    board = RaceBoard(args.participants, sport="ride", kind="distance", target_m=180_000)
    rng = np.random.default_rng(args.seed)
    board.add(
        args.participants,
        categories=rng.integers(0, 10, args.participants),
        weights_kg=rng.uniform(55, 95, args.participants),
    )
    board.start("all", T0)
    warm_up()  # as a race host does when it starts: fair play's compiled rules loaded

    latencies = []
    total = 0
    started, cpu = time.perf_counter(), time.process_time()
    for data in batches:
        begun = time.perf_counter()
        samples = decode(data)
        outcome = board.ingest(samples, now=float(samples["t"][-1]))
        latencies.append(time.perf_counter() - begun)
        total += outcome["accepted"]
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if total != args.participants * args.seconds:
        raise SystemExit(f"only {total:,} of {args.participants * args.seconds:,} samples were accepted")
    latencies.sort()
    print(
        f"ingest (decode + ingest, fair play on): {total / elapsed:,.0f} samples/s;"
        f" per {args.batch:,}-sample batch p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms,"
        f" p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms; flags raised: {len(board.flags())};"
        f" {cpu / total * 1e6:.2f} CPU s per 1M samples (steadier than the rate on a shared machine)"
    )

    timings = []
    for _ in range(args.rounds):
        begun = time.perf_counter()
        board.refresh_ranking()  # rank() and each athlete's place, for place() below
        timings.append(time.perf_counter() - begun)
    print(
        f"refresh_ranking() of {board.size:,}: median {statistics.median(timings) * 1e3:.2f} ms, best {min(timings) * 1e3:.2f} ms"
    )

    begun = time.perf_counter()
    board.leaderboard(100)
    print(f"leaderboard(100) including rank(): {(time.perf_counter() - begun) * 1e3:.2f} ms")

    lookups = rng.integers(0, board.size, 200_000).tolist()
    begun = time.perf_counter()
    for index in lookups:
        board.place(index)
    print(f"rank lookup (place(i), from rank_of): {(time.perf_counter() - begun) / len(lookups) * 1e6:.3f} µs")

    hot = board.memory_bytes()
    print(
        f"hot state: {hot / 2**20:.1f} MiB, {hot / board.capacity:.0f} bytes per participant"
        f" (capacity {board.capacity:,}, field {board.size:,})"
    )


if __name__ == "__main__":
    main()
