"""The SQLite store alone: journal entries per second appended in batches spread over many entities,
with the commit log (one row per commit, folded into the journal in bulk) and without it (one
random-key row per entity and commit), and as the store decides by default (``auto``: the log while
the batches' entities repeat), interleaved in one run. Folds are counted: the clock stops
once every entry is in the journal. Run: ``.venv/bin/python -m loadtest.bench_store``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from engine.store import JournalEntry
from persistence import SQLiteStore

BODY = b"\x81\xa6meters\xcb@\t\x99\x99\x99\x99\x99\x9a"  # {"meters": 3.2}, as the engine benchmark's


async def appended(path: str, commit_log: str, entities: int, batch: int, total: int) -> tuple[float, float]:
    """Entries/s and CPU µs per entry of ``total`` entries in batches of ``batch`` over ``entities``
    into a new store at ``path``."""
    store = SQLiteStore(path, commit_log=commit_log)
    await store.open()
    seqs: dict[str, int] = {}
    sent = 0
    started, cpu = time.perf_counter(), time.process_time()
    while sent < total:
        entries = []
        for n in range(sent, sent + batch):
            entity_id = f"athlete-{n % entities}"
            seq = seqs[entity_id] = seqs.get(entity_id, 0) + 1
            entries.append(JournalEntry("tally", entity_id, seq, "record", BODY, 1.0))
        await store.append(entries)
        sent += batch
    await store.read_journal("tally", "athlete-0")  # folds what is left
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await store.close()
    return total / elapsed, cpu / total * 1e6


async def main(args: argparse.Namespace) -> None:
    print(f"{args.total:,} entries in batches of {args.batch:,}, median of {args.rounds} interleaved rounds")
    print("entities | commit log | entries/s | CPU µs per entry | ratio")
    for entities in args.entities:
        rates: dict[str, list[tuple[float, float]]] = {mode: [] for mode in args.commit_log}
        with tempfile.TemporaryDirectory() as folder:
            for round_ in range(args.rounds):
                for commit_log in args.commit_log:
                    path = f"{folder}/{round_}-{commit_log}.db"
                    rates[commit_log].append(await appended(path, commit_log, entities, args.batch, args.total))
        first = statistics.median(rate for rate, _ in rates[args.commit_log[0]])
        for commit_log in args.commit_log:
            rate = statistics.median(rate for rate, _ in rates[commit_log])
            cpu = statistics.median(us for _, us in rates[commit_log])
            print(
                f"{entities:>8,} | {commit_log:>10} | {rate:>9,.0f} | {cpu:>16.2f} | {rate / first:.2f}x",
                flush=True,
            )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--batch", type=int, default=2_000, help="entries per append (a host's group commit)")
    parser.add_argument("--total", type=int, default=600_000, help="entries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--commit-log", nargs="+", choices=["auto", "on", "off"], default=["off", "auto", "on"],
        help="the modes to compare (the ratio is against the first)",
    )  # fmt: skip
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
