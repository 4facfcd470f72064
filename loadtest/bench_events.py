"""Domain events end to end: how many events per second go from their emitters' journal commits,
through the outbox and the relay, into the entities that react (each applied once), on one host
pair with the journal on SQLite; and how fast the relay publishes them to NATS JetStream with
de-duplication.

Peers in the same run: the same messages sent straight from memory to the counters
(``cluster.deliver``, not durable: what Arena did before domain events), and JetStream publishes
one at a time, each awaiting its ack (what a first client does).
Run: ``.venv/bin/python -m loadtest.bench_events`` (NATS on 127.0.0.1:4222 for the stream part).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
import uuid

import ray

from engine.cluster import Cluster
from engine.config import HostConfig
from engine.ray_host import HostSpec
from engine.relay import BATCH
from persistence import open_store

KINDS = ("loadtest.bench_entities:Ticker", "loadtest.bench_entities:Counter")


async def _emit(cluster: Cluster, sources: int, per_source: int, counters: list[str], per_call: int) -> None:
    """Each source emits ``per_source`` events, ``per_call`` per message, spread over the counters."""
    n = 0
    for start in range(0, per_source, per_call):
        envelopes = []
        for s in range(sources):
            targets = [counters[(n + k) % len(counters)] for k in range(min(per_call, per_source - start))]
            n += len(targets)
            envelopes.append(("ticker", f"t{s}", "ticks", {"targets": targets}, None))
        results = await cluster.deliver(envelopes)
        assert all(isinstance(r, int) for r in results), results[:3]


async def _counted(cluster: Cluster, counters: list[str]) -> int:
    return sum(await cluster.deliver([("counter", c, "total", None, None) for c in counters]))


async def _direct(cluster: Cluster, events: int, counters: list[str], chunk: int) -> None:
    for start in range(0, events, chunk):
        envelopes = [
            ("counter", counters[n % len(counters)], "apply", {"meters": 10.0}, None)
            for n in range(start, min(events, start + chunk))
        ]
        results = await cluster.deliver(envelopes)
        assert all(r is None for r in results), results[:3]


async def _jetstream(store_url: str, url: str, events: int) -> None:
    import nats

    from connectors.nats_stream import JetStream
    from engine.relay import Relay

    name = f"BENCH{uuid.uuid4().hex[:8].upper()}"
    stream = JetStream(url, stream=name, prefix=f"bench.{name.lower()}")
    store = open_store(store_url)
    await store.open()

    async def nobody(*args, **kwargs):
        raise AssertionError("no subscription here")

    relay = Relay(store, nobody, nobody, [], streams=[stream], batch=5_000)
    started = time.perf_counter()
    await relay.drain(timeout=600)
    elapsed = time.perf_counter() - started
    published = stream.published
    again = time.perf_counter()
    relay.progress["stream:nats"].position = 0  # a relay that lost its cursor: every event again
    await relay.drain(timeout=600)
    resent = time.perf_counter() - again
    nc = await nats.connect(url)
    js = nc.jetstream()
    kept = (await js.stream_info(name)).state.messages
    records = await store.read_events(0, 5_000)
    peer_started = time.perf_counter()
    for record in records:  # the peer: one publish at a time, each awaiting its ack
        await js.publish(
            f"bench.{name.lower()}.peer", record.body, stream=name, headers={"Nats-Msg-Id": f"peer-{record.id}"}
        )
    peer_rate = len(records) / (time.perf_counter() - peer_started)
    await js.delete_stream(name)
    await nc.close()
    await stream.close()
    await store.close()
    rate = published / elapsed
    print(
        f"\nJetStream, {published:,} events from one relay (Nats-Msg-Id de-duplication, {stream.window:,} acks in flight)\n"
        f"  Arena: {elapsed:.2f} s, {rate:,.0f} events/s; the same events sent again: {resent:.2f} s,"
        f" the stream kept {kept:,} (none twice)\n"
        f"  peer, one publish at a time awaiting each ack ({len(records):,} events): {peer_rate:,.0f} events/s;"
        f" ratio {rate / peer_rate:.1f}x"
    )


def _nats_up(host: str = "127.0.0.1", port: int = 4222) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


async def main(args: argparse.Namespace) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as folder:
        store_url = f"sqlite:///{folder}/events.db?commit_log={args.commit_log}"
        namespace = f"events-{uuid.uuid4().hex[:6]}"
        spec = HostSpec(
            store_url,
            KINDS,
            HostConfig(gc_young=args.gc_young),
            hosts=2,
            open_store="persistence:open_store",
            namespace=namespace,
        )
        cluster = Cluster(spec, namespace=namespace)
        counters = [f"c{i}" for i in range(args.counters)]
        events = args.sources * args.per_source
        try:
            # Warm the hosts and every counter (activated, in memory) before anything is timed.
            await cluster.deliver([("counter", c, "total", None, None) for c in counters])

            started = time.perf_counter()
            await _direct(cluster, events, counters, args.chunk)
            direct = time.perf_counter() - started
            assert await _counted(cluster, counters) == events

            if args.backlog:  # emit first, then time the relay alone through the backlog
                started = time.perf_counter()
                await _emit(cluster, args.sources, args.per_source, counters, args.per_call)
                emitted = time.perf_counter() - started
                relay = cluster.start_relay(batch=args.relay_batch)
                started = time.perf_counter()
            else:
                relay = cluster.start_relay(batch=args.relay_batch)
                assert await relay.settle.remote(60)
                started = time.perf_counter()
                await _emit(cluster, args.sources, args.per_source, counters, args.per_call)
                emitted = time.perf_counter() - started
            assert await relay.settle.remote(600), "the relay did not catch up"
            elapsed = time.perf_counter() - started
            assert await _counted(cluster, counters) == 2 * events, "an event was lost or applied twice"
            status = await relay.status.remote()
            tick = status["consumers"]["counter.on_tick"]
        finally:
            cluster.kill()
        ray.shutdown()
        rate, direct_rate = events / elapsed, events / direct
        print(
            f"\n{events:,} events from {args.sources:,} sources ({args.per_call} per message) to {args.counters:,}"
            f" counters, 2 shared hosts, journal on SQLite (commit log {args.commit_log}),"
            f" {args.relay_batch or BATCH:,} events a relay step\n"
            f"  Arena, durable (emitted in the journal commit, relayed, applied once): {elapsed:.2f} s,"
            f" {rate:,.0f} events/s (emitting took {emitted:.2f} s; {tick['deliveries']:,} deliveries)\n"
            f"  peer, the same messages sent straight from memory (chunks of {args.chunk:,}, not durable):"
            f" {direct:.2f} s, {direct_rate:,.0f} events/s; ratio {rate / direct_rate:.2f}x"
        )
        if args.nats and _nats_up():
            await _jetstream(store_url, args.nats, events)
        elif args.nats:
            print(f"\nJetStream part skipped: nothing answers at {args.nats}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1_000)
    parser.add_argument("--per-source", type=int, default=200)
    parser.add_argument("--per-call", type=int, default=20, help="events one message emits")
    parser.add_argument("--counters", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=2_000, help="envelopes per call of the peer")
    parser.add_argument(
        "--backlog", action="store_true", help="emit everything first, then time the relay alone (outbox -> entities)"
    )
    parser.add_argument("--relay-batch", type=int, default=None, help="events a relay step reads (engine.relay.BATCH)")
    parser.add_argument("--commit-log", choices=["auto", "on", "off"], default="auto", help="SQLite's commit log")
    parser.add_argument(
        "--gc-young", type=int, default=HostConfig().gc_young,
        help="the hosts' and the relay's young-collection threshold (0: CPython's default; engine.gc_tuning)",
    )  # fmt: skip
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="'' skips the JetStream part")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
