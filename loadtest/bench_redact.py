"""What ``Race.redact`` adds to a race's ingest when not every athlete consented to health data (docs/privacy.md).

The peer is the ingest itself: the cost a batch pays anyway, against which the redaction is a ratio.
Run: ``.venv/bin/python -m loadtest.bench_redact``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from actors.race import Race
from engine.telemetry import empty, encode

T0 = 1_800_000_000.0


def _race(athletes: int) -> Race:
    race = Race("bench-redact")
    race._now = T0
    race.create("organizer", {"name": "redact", "sport": "run", "kind": "time", "duration_s": 3600})
    race.open("organizer")
    race.join_many([{"user_id": f"a{i}", "name": f"a{i}", "health": i % 2 == 0} for i in range(athletes)])
    race.start("organizer")
    return race


def _batch(rng: np.random.Generator, athletes: int, size: int, k: int) -> dict:
    samples = empty(size)
    samples["entry"] = rng.integers(0, athletes, size)
    samples["seq"] = k
    samples["t"] = T0 + k
    samples["distance"] = 3.0 * k
    samples["speed"] = 3.0
    samples["hr"] = 150
    return {"samples": encode(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--athletes", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000, help="samples per batch (a gateway's second)")
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    race = _race(args.athletes)
    rng = np.random.default_rng(1)
    bodies = [_batch(rng, args.athletes, args.batch, k) for k in range(1, args.batches + 1)]

    started = time.perf_counter()
    redacted = [race.redact("ingest", body) for body in bodies]
    redact_s = time.perf_counter() - started
    started = time.perf_counter()
    for body in redacted:
        race._now += 1
        race.ingest(**body)
    ingest_s = time.perf_counter() - started
    race.health = set(range(args.athletes))
    started = time.perf_counter()
    for body in bodies:
        race.redact("ingest", body)
    everyone_s = time.perf_counter() - started

    per = 1000 / args.batches
    print(f"{args.athletes:,} athletes, half consenting, {args.batches} batches of {args.batch:,} samples:")
    print(f"  redact {redact_s * per:.3f} ms/batch, ingest {ingest_s * per:.3f} ms/batch, "
          f"redact/ingest {redact_s / ingest_s:.2f}x")  # fmt: skip
    print(f"  everyone consenting: redact {everyone_s * per * 1000:.1f} us/batch")


if __name__ == "__main__":
    main()
