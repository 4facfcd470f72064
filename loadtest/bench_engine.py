"""Entity messages per second through one host: batched vs one Ray call per message.

Both sides drive the same Ray actor (an engine host journaling to SQLite), the
same entity kind and the same handler; the only difference is how messages
travel. Run: ``.venv/bin/python -m loadtest.bench_engine``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid

import ray

from engine.cluster import Cluster
from engine.codec import pack, unpack
from engine.config import HostConfig
from engine.ray_host import HostSpec
from serve.kinds import OPEN_STORE

KIND = "loadtest.bench_entities:Tally"


def _envelopes(start: int, count: int, entities: int) -> list[list]:
    return [["tally", f"athlete-{(start + n) % entities}", "record", {"meters": 3.2}, None] for n in range(count)]


async def batched(handle, total: int, batch: int, window: int, entities: int) -> float:
    """Messages/s sending ``batch`` envelopes per Ray call, ``window`` calls in flight."""
    sent = 0
    in_flight: set[asyncio.Future] = set()
    errors = 0
    started = time.perf_counter()
    while sent < total or in_flight:
        while sent < total and len(in_flight) < window:
            in_flight.add(asyncio.ensure_future(handle.deliver.remote(pack(_envelopes(sent, batch, entities)))))
            sent += batch
        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            errors += sum(1 for flag, *_ in unpack(future.result()) if flag)
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{errors} messages failed in the batched run")
    return sent / elapsed


async def one_call_per_message(handle, total: int, window: int, entities: int) -> float:
    """Messages/s with one Ray call per message, pipelined ``window`` deep (the peer)."""
    sent = 0
    in_flight: set[asyncio.Future] = set()
    started = time.perf_counter()
    while sent < total or in_flight:
        while sent < total and len(in_flight) < window:
            in_flight.add(asyncio.ensure_future(handle.deliver.remote(pack(_envelopes(sent, 1, entities)))))
            sent += 1
        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
    return sent / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    summary = []
    for entities in args.entities:
        with tempfile.TemporaryDirectory() as folder:
            hosts = {}  # each configuration's host, side by side: rounds interleave
            for log in args.commit_log:
                for young in args.gc_young:
                    name = f"log {log}, gc {young or 'default'}"
                    spec = HostSpec(
                        f"sqlite:///{folder}/bench-{log}-{young}.db?commit_log={log}",
                        (KIND,),
                        HostConfig(gc_young=young),
                        hosts=1,
                        open_store=OPEN_STORE,
                    )
                    cluster = Cluster(spec, namespace=f"bench-{uuid.uuid4().hex[:6]}")
                    handle = cluster.host_for("tally", "athlete-0")
                    await batched(handle, max(entities, args.batch * 4), args.batch, args.window, entities)  # activate
                    hosts[name] = (cluster, handle)
            batch_rates: dict[str, list[float]] = {name: [] for name in hosts}
            host_cpu: dict[str, list[float]] = {name: [] for name in hosts}
            peer_rates = []
            for round_ in range(args.rounds):
                for name, (_, handle) in hosts.items():
                    before = (await handle.metrics.remote())["cpu_seconds"]
                    batch_rates[name].append(await batched(handle, args.messages, args.batch, args.window, entities))
                    host_cpu[name].append(
                        ((await handle.metrics.remote())["cpu_seconds"] - before) / args.messages * 1e6
                    )
                    print(
                        f"{entities:,} entities, round {round_ + 1}, {name}: batched {batch_rates[name][-1]:,.0f} msg/s,"
                        f" host CPU {host_cpu[name][-1]:.2f} us per message",
                        flush=True,
                    )
                peer_rates.append(await one_call_per_message(handle, args.peer_messages, args.peer_window, entities))
                print(f"{entities:,} entities, round {round_ + 1}: one call per message {peer_rates[-1]:,.0f} msg/s")
            peer = statistics.median(peer_rates)
            for name, (cluster, _) in hosts.items():
                metrics = (await cluster.metrics())[0]
                cluster.kill()
                best = statistics.median(batch_rates[name])
                summary.append(
                    f"{entities:>8,} | {name:>22} | {best:>9,.0f} | {statistics.median(host_cpu[name]):>6.2f}"
                    f" | {peer:>7,.0f} | {best / peer:>6.1f}x"
                    f" | {metrics['journal_entries'] / max(1, metrics['journal_commits']):,.0f}"
                )
    ray.shutdown()
    print(
        f"\nmedian of {args.rounds} rounds; one host journaling to SQLite; batched: {args.batch:,} messages per call,"
        f" {args.window} calls in flight; peer: one Ray call per message, {args.peer_window} in flight, on the"
        f" last host\n"
        "entities | configuration | batched msg/s | host CPU us/msg | peer msg/s | ratio | entries per group commit"
    )
    print("\n".join(summary))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400_000, help="messages per batched round")
    parser.add_argument("--batch", type=int, default=2_000, help="envelopes per Ray call")
    parser.add_argument("--window", type=int, default=8, help="batched calls in flight")
    parser.add_argument("--peer-messages", type=int, default=5_000, help="messages per one-call-per-message round")
    parser.add_argument("--peer-window", type=int, default=64, help="single-message calls in flight")
    parser.add_argument(
        "--entities", type=int, nargs="+", default=[1_000, 10_000], help="distinct entities addressed (one run each)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--commit-log", nargs="+", choices=["auto", "on", "off"], default=["auto"],
        help="SQLite's commit log modes to compare (interleaved rounds)",
    )  # fmt: skip
    parser.add_argument(
        "--gc-young", type=int, nargs="+", default=[0, HostConfig().gc_young],
        help="the host's young-collection threshold to compare (0: CPython's default; engine.gc_tuning)",
    )  # fmt: skip
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
