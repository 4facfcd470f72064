"""Recommendations through the Recommender deployment: p99 at a steady 200 requests/s, and batched
against unbatched throughput of the same model (one replica), printed as a ratio.

    .venv/bin/python -m loadtest.bench_reco                      # 3,000-athlete community, 20 s at 200/s
    .venv/bin/python -m loadtest.bench_reco --rate 200 --seconds 10 --users 1000
    .venv/bin/python -m loadtest.bench_reco --extra-people 1000000   # a catalogue of a million people

Requests go through a deployment handle, as the API sends them (the API's own HTTP cost is measured
by loadtest/bench_ingress.py). Each asks for 30 people of a random known athlete.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import tempfile
import time

import numpy as np

__all__ = ["main"]


async def _steady(handle, users: list[str], rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    rng = random.Random(1)

    async def one() -> None:
        started = time.perf_counter()
        await handle.recommend.remote({"user": rng.choice(users), "kind": "user", "k": 30, "exclude": []})
        latencies.append(time.perf_counter() - started)

    tasks = []
    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


async def _throughput(handle, method: str, users: list[str], concurrency: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    rng = random.Random(2)

    async def worker() -> None:
        nonlocal done
        call = getattr(handle, method)
        while time.perf_counter() < stop:
            await call.remote({"user": rng.choice(users), "kind": "user", "k": 30, "exclude": []})
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def _widened(model, people: int):
    """``model`` with ``people`` more people to recommend, their vectors drawn like the trained ones'
    (the search's cost is what is measured: a matrix product over every person, then a top-k)."""
    rng = np.random.default_rng(3)
    trained = model.item_vectors
    extra = rng.normal(trained.mean(axis=0), trained.std(axis=0), (people, trained.shape[1])).astype(np.float32)
    return dataclasses.replace(  # a new Model: its lookups are built again for the wider catalogue
        model,
        items=[*model.items, *(f"user:extra-{n}" for n in range(people))],
        item_vectors=np.concatenate([trained, extra]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--extra-people", type=int, default=0,
        help="people added to the model's catalogue with random vectors (how batching fares with 10^5-10^6 items)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    from engine.recommend import Registry, build, train
    from loadtest.reco_eval import community
    from serve.recommender import Recommender

    data = build(community(args.users))
    model = train(data, epochs=10)
    if args.extra_people:
        model = _widened(model, args.extra_people)
    folder = tempfile.mkdtemp(prefix="bench-reco-")
    registry = Registry(folder)
    registry.promote(registry.save(model, {}))
    users = [u for u in data.users]
    print(f"model: {len(model.users):,} users, {len(model.items):,} items, dim {model.dim}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"location": "NoServer"})
    handle = serve.run(Recommender.bind(folder, 0), name="bench-reco", route_prefix=None)

    async def run() -> None:
        await _steady(handle, users, args.rate, 2.0)  # warm up
        latencies = np.array(await _steady(handle, users, args.rate, args.seconds)) * 1000
        print(f"steady {args.rate:.0f} req/s for {args.seconds:.0f} s ({len(latencies):,} requests): "
              f"p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms, "
              f"max {latencies.max():.1f} ms")  # fmt: skip
        batched = await _throughput(handle, "recommend", users, args.concurrency, 10)
        unbatched = await _throughput(handle, "recommend_unbatched", users, args.concurrency, 10)
        print(f"throughput at {args.concurrency} in flight: batched {batched:,.0f} req/s, unbatched "
              f"{unbatched:,.0f} req/s, ratio {batched / unbatched:.2f}x")  # fmt: skip

    try:
        asyncio.run(run())
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
