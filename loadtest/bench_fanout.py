"""Fan-out on write: one athlete with 100,000 followers posts a workout.

Measures how fast the item reaches every follower's feed through Arena's durable fan-out (the
account emits ``workout.recorded`` in its journal commit; the relay delivers it to the feeds,
each applied once), what the other users feel meanwhile (latency of unrelated entity calls,
against the same calls on an idle system), and two peers in the same run: the fan-out Arena had
before, chunked and batched from an API replica's memory but lost if that process dies, and the
one a user would write first, one Ray call per follower.
Run: ``.venv/bin/python -m loadtest.bench_fanout``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid

import ray

from actors.account import Account
from engine.cluster import Cluster
from engine.codec import pack
from engine.ray_host import HostSpec
from serve.kinds import KINDS, OPEN_STORE


async def direct_fanout(cluster: Cluster, followers: list[str], item: dict, chunk: int) -> int:
    """The fan-out Arena had before domain events: chunks of envelopes from the API replica's
    memory, one Ray call per host per chunk; nothing survives the replica."""
    delivered = 0
    for start in range(0, len(followers), chunk):
        results = await cluster.deliver(
            [("feed", f, "push", {"item": item}, None) for f in followers[start : start + chunk]]
        )
        delivered += sum(1 for r in results if r is None)
    return delivered


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _probe(cluster: Cluster, users: list[str], stop: asyncio.Event) -> list[float]:
    """Latency of unrelated single calls, one after another, until ``stop``."""
    latencies = []
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        await cluster.ref(Account, users[n % len(users)]).ask(Account.me)
        latencies.append((time.perf_counter() - started) * 1000)
        n += 1
    return latencies


async def _timed_probe(cluster: Cluster, users: list[str], seconds: float) -> list[float]:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await _probe(cluster, users, stop)


async def main(args: argparse.Namespace) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as folder:
        spec = HostSpec(f"sqlite:///{folder}/fanout.db", KINDS, hosts=args.hosts, open_store=OPEN_STORE)
        cluster = Cluster(spec, namespace=f"fanout-{uuid.uuid4().hex[:6]}")
        relay = cluster.start_relay()
        star = "star"
        users = [f"user-{i}" for i in range(50)]
        for user in [star, *users]:
            await cluster.ref(Account, user).ask(
                Account.register, email=f"{user}@x", password_hash="-", display_name=user
            )
        followers = [f"fan-{i}" for i in range(args.followers)]
        started = time.perf_counter()
        for start in range(0, len(followers), 5_000):
            chunk = followers[start : start + 5_000]
            await cluster.deliver([("account", star, "follow_requested", {"follower": f}, None) for f in chunk])
        print(f"{len(followers):,} followers set up in {time.perf_counter() - started:.1f} s", flush=True)

        assert await relay.settle.remote(120)
        for start in range(0, len(followers), 5_000):  # every feed in memory, as for both peers below
            await cluster.deliver([("feed", f, "read", {"limit": 1}, None) for f in followers[start : start + 5_000]])
        pids = {"relay": await relay.pid.remote()}
        for n, handle in enumerate(cluster.hosts):
            pids[f"host {n}"] = await handle.pid.remote()
        idle = await _timed_probe(cluster, users, 3.0)
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        summary = {
            "id": uuid.uuid4().hex,
            "start": time.time(),
            "sport": "run",
            "title": "Long run",
            "visibility": "public",
        }
        stop = asyncio.Event()
        probe = asyncio.ensure_future(_probe(cluster, users, stop))
        started = time.perf_counter()
        await cluster.ref(Account, star).ask(Account.add_workout, summary=summary)
        assert await relay.settle.remote(600), "the relay did not finish the fan-out"
        elapsed = time.perf_counter() - started
        cpu = {name: _cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        stop.set()
        busy = await probe
        sample = followers[:: max(1, len(followers) // 100)]
        reads = await cluster.deliver([("feed", f, "read", {"limit": 1}, None) for f in sample])
        assert all(r["items"] and r["items"][0]["id"] == summary["id"] for r in reads), "a feed misses the item"

        item = {"id": uuid.uuid4().hex, "at": time.time(), "owner": star, "sport": "run", "title": "Long run"}
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        delivered = await direct_fanout(
            cluster, await cluster.ref(Account, star).ask(Account.ids, which="followers"), item, args.chunk
        )
        direct_elapsed = time.perf_counter() - started
        direct_cpu = {name: _cpu_seconds(pid) - before[name] for name, pid in pids.items() if name != "relay"}
        assert delivered == len(followers), f"only {delivered:,} feeds got the item"

        peer_followers = followers[: args.peer_followers]
        peer_item = {**item, "id": uuid.uuid4().hex}
        handles = [cluster.host_for("feed", f) for f in peer_followers]
        started = time.perf_counter()
        in_flight: set = set()
        for follower, handle in zip(peer_followers, handles):
            if len(in_flight) >= 64:
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.add(
                asyncio.ensure_future(
                    handle.deliver.remote(pack([["feed", follower, "push", {"item": peer_item}, None]]))
                )
            )
        await asyncio.wait(in_flight)
        peer_rate = len(peer_followers) / (time.perf_counter() - started)
        cluster.kill()
    ray.shutdown()
    rate, direct_rate = len(followers) / elapsed, len(followers) / direct_elapsed
    print(
        f"\nfan-out of one workout to {len(followers):,} followers, {args.hosts} hosts, journal on SQLite\n"
        f"  Arena, durable (workout.recorded through the outbox and the relay): {elapsed:.1f} s, {rate:,.0f} feeds/s\n"
        f"  peer, the fan-out before domain events (chunks of {args.chunk:,} from the replica's memory, not durable):"
        f" {direct_elapsed:.1f} s, {direct_rate:,.0f} feeds/s; ratio {rate / direct_rate:.2f}x\n"
        f"  peer, one Ray call per follower (64 in flight, {len(peer_followers):,} followers): {peer_rate:,.0f} feeds/s;"
        f" ratio {rate / peer_rate:.1f}x\n"
        f"  CPU per feed, durable path: "
        + ", ".join(f"{name} {seconds / len(followers) * 1e6:.0f} µs" for name, seconds in cpu.items())
        + "; before domain events: "
        + ", ".join(f"{name} {seconds / len(followers) * 1e6:.0f} µs" for name, seconds in direct_cpu.items())
        + "\n"
        f"  other users' calls meanwhile: p50 {statistics.median(busy):.1f} ms, p99 {_percentile(busy, 0.99):.1f} ms"
        f" ({len(busy):,} calls)\n"
        f"  same calls on the idle system: p50 {statistics.median(idle):.1f} ms, p99 {_percentile(idle, 0.99):.1f} ms"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--peer-followers", type=int, default=5_000)
    parser.add_argument("--chunk", type=int, default=2_000, help="feeds per fan-out chunk")
    parser.add_argument("--hosts", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
