"""A challenge of 1,000,000 participants: progress at 2,000 workouts a second while its board is read.

Through the engine, in one process (a host and the relay over SQLite, no Ray: an API read adds one
Ray call to these figures): every participant joins through their participant shard's ``join`` turn
(journaled; its ``challenge.progressed`` reaches the rank index through the relay, applied once). Then
workouts arrive at ``--rate`` a second for ``--seconds``, delivered to the shards as the relay delivers
``challenge.workout`` (each shard's turn journals, emits ``challenge.progressed``, and the relay moves it
to the rank index), while a reader asks, as the API does, the top 100 (``ChallengeBoard.top``) and one
athlete's rank (their shard's ``standing``, then ``ChallengeBoard.ranks``), and the p50/p99 of each are
measured. At the end: how long the relay took to settle, and that the index agrees with the shards.

Peer in the same run: a Redis sorted set (redis.asyncio): ZADD of every participant, then ZINCRBY per
workout at the same rate (one pipeline per tick), ZREVRANGE 0 99 and ZREVRANK, on a key of its own,
deleted afterwards. Not durable in the same way, and nothing reacts to it.

Run: ``.venv/bin/python -m loadtest.bench_challenge [--participants 50000]`` (``make bench-challenge``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors.challenge import Challenge, participant_shard, participant_shards
from actors.challenge_board import ChallengeBoard
from actors.challenge_participants import ChallengeParticipants
from engine.config import HostConfig
from engine.events import EVENT_MESSAGE
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence.sqlite import SQLiteStore

KINDS = [Challenge, ChallengeParticipants, ChallengeBoard]
TICK_S = 0.05


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms (n={len(ordered):,})"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return statistics.median(ordered) if q == 0.5 else ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        config = HostConfig(snapshot_interval=30, passivate_after=3_600)
        self.host = Host(KINDS, SQLiteStore(folder / "arena.db"), config, on_events=lambda: self.relay.poke())
        self.store = SQLiteStore(folder / "arena.db")
        self.relay = Relay(self.store, self.host.deliver, self.host.ask, subscriptions(KINDS), poll=0.05)
        self.args = args
        self.challenge = uuid.uuid4().hex
        self.users = [f"athlete{n:07d}" for n in range(args.participants)]
        self.seq: dict[str, int] = {}

    async def start(self) -> None:
        await self.host.start()
        await self.store.open()
        await self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        await self.host.stop()
        await self.store.close()

    async def ask(self, kind: str, entity_id: str, message: str, body: dict | None = None):
        return await self.host.ask(kind, entity_id, message, body)

    async def create(self) -> dict:
        today = datetime.now(UTC).date()
        card = {"title": "A million kilometres", "goal_type": "distance_m", "goal": 100_000.0, "sports": ["run"],
                "first_day": (today - timedelta(days=14)).isoformat(),
                "last_day": (today + timedelta(days=14)).isoformat(), "scope": "everyone"}  # fmt: skip
        await self.ask("challenge", self.challenge, "create", {"by": "bench", "card": card})
        await self.ask("challenge_board", self.challenge, "open", {"goal_type": "distance_m", "goal": 100_000.0})
        return await self.ask("challenge", self.challenge, "terms")

    async def load(self, terms: dict) -> float:
        """Every participant joins through their shard's ``join`` turn; until the index has them all."""
        started = time.perf_counter()
        chunk = self.args.chunk
        for first in range(0, len(self.users), chunk):
            envelopes = [
                ("challenge_participants", participant_shard(self.challenge, user), "join",
                 {"user_id": user, "terms": terms, "title": "A million kilometres"}, None)
                for user in self.users[first : first + chunk]
            ]  # fmt: skip
            answers = await self.host.deliver(envelopes)
            assert all(isinstance(a, dict) for a in answers), answers[:3]
            if (first // chunk) % 20 == 19:
                print(f"  joined {first + chunk:,} of {len(self.users):,}", flush=True)
        await self._settled(len(self.users))
        return time.perf_counter() - started

    async def _settled(self, participants: int | None = None) -> float:
        started = time.perf_counter()
        while True:
            await self.relay.drain(timeout=600)
            board = await self.ask("challenge_board", self.challenge, "top", {"limit": 1})
            if participants is None or board["participants"] == participants:
                return time.perf_counter() - started
            await asyncio.sleep(0.05)

    def _workout_event(self, user: str, rng: random.Random, now: float) -> list:
        seq = self.seq[user] = self.seq.get(user, 0) + 1
        workout_id = f"{user}-{seq}"
        km = rng.uniform(3, 21)
        summary = {"id": workout_id, "sport": "run", "start": now - 3_600, "elapsed_s": km * 330,
                   "moving_s": km * 320, "distance_m": km * 1000, "source": "fit", "best_efforts": {}}  # fmt: skip
        fields = {"challenge_id": self.challenge, "shard": participant_shard(self.challenge, user), "owner": user,
                  "workout_id": workout_id, "seq": seq, "summary": summary}  # fmt: skip
        return ["challenge.workout", 1, "challenge_entries", user, seq, 0, now, user, fields, 0]

    async def updates(self, stop: asyncio.Event, rng: random.Random) -> dict:
        """``rate`` workouts a second, one delivery per tick, as the relay would bring them to the shards."""
        per_tick = max(1, round(self.args.rate * TICK_S))
        sent, late, started = 0, 0.0, time.perf_counter()
        tick = 0
        while not stop.is_set():
            due = started + tick * TICK_S
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait)
            now = time.time()
            by_shard: dict[str, list] = {}
            for _ in range(per_tick):
                user = self.users[min(len(self.users) - 1, int(rng.paretovariate(1.2)) - 1) if rng.random() < 0.3
                                  else rng.randrange(len(self.users))]  # fmt: skip
                event = self._workout_event(user, rng, now)
                by_shard.setdefault(event[8]["shard"], []).append(event)
            envelopes = [
                ("challenge_participants", shard, EVENT_MESSAGE, {"events": events}, None)
                for shard, events in by_shard.items()
            ]
            await self.host.deliver(envelopes)
            sent += per_tick
            tick += 1
        elapsed = time.perf_counter() - started
        return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "late_s": late}

    async def reads(self, stop: asyncio.Event, rng: random.Random) -> tuple[list[float], list[float]]:
        top, rank = [], []
        while not stop.is_set():
            started = time.perf_counter()
            board = await self.ask("challenge_board", self.challenge, "top", {"limit": 100})
            top.append((time.perf_counter() - started) * 1000)
            assert len(board["rows"]) == 100 or not board["complete"]
            user = rng.choice(self.users)
            started = time.perf_counter()
            me = await self.ask("challenge_participants", participant_shard(self.challenge, user), "standing",
                                {"user_id": user})  # fmt: skip
            await self.ask("challenge_board", self.challenge, "ranks", {"entries": [[user, me["score"], me["at"]]]})
            rank.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(self.args.read_every)
        return top, rank

    async def agree(self) -> bool:
        """The index's top 100 is the shards' merged top 100."""
        board = await self.ask("challenge_board", self.challenge, "top", {"limit": 100})
        parts = await self.host.deliver(
            [("challenge_participants", s, "top", {"limit": 100}, None) for s in participant_shards(self.challenge)]
        )
        merged = sorted((r for p in parts for r in p), key=lambda r: (-r["score"], r["at"], r["user_id"]))[:100]
        return [r["user_id"] for r in board["rows"]] == [r["user_id"] for r in merged]


async def engine(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-challenge-") as folder:
        bench = Bench(Path(folder), args)
        await bench.start()
        try:
            terms = await bench.create()
            print(f"engine: {args.participants:,} participants join ...", flush=True)
            joined = await bench.load(terms)
            print(f"  joined and on the board in {joined:.1f} s ({args.participants / joined:,.0f}/s)", flush=True)
            rng = random.Random(7)
            stop = asyncio.Event()
            writer = asyncio.create_task(bench.updates(stop, random.Random(11)))
            reader = asyncio.create_task(bench.reads(stop, rng))
            await asyncio.sleep(args.seconds)
            stop.set()
            sent, (top, rank) = await writer, await reader
            settle = await bench._settled()
            agreed = await bench.agree()
            return {"joined_s": joined, "updates": sent, "top": top, "rank": rank, "settle_s": settle,
                    "agree": agreed}  # fmt: skip
        finally:
            await bench.stop()


async def redis_peer(args: argparse.Namespace) -> dict | None:
    try:
        import redis.asyncio as redis
    except ImportError:
        print("redis is not installed: no peer")
        return None
    client = redis.Redis.from_url(args.redis)
    key = f"bench-challenge-{uuid.uuid4().hex}"
    try:
        await client.ping()
    except Exception as error:
        print(f"Redis does not answer ({error}): no peer")
        return None
    users = [f"athlete{n:07d}" for n in range(args.participants)]
    try:
        started = time.perf_counter()
        for first in range(0, len(users), 10_000):
            await client.zadd(key, {user: 0 for user in users[first : first + 10_000]})
        loaded = time.perf_counter() - started
        stop = asyncio.Event()

        async def updates() -> dict:
            rng, per_tick = random.Random(11), max(1, round(args.rate * TICK_S))
            sent, tick, began, late = 0, 0, time.perf_counter(), 0.0
            while not stop.is_set():
                wait = began + tick * TICK_S - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    late = max(late, -wait)
                pipe = client.pipeline(transaction=False)
                for _ in range(per_tick):
                    pipe.zincrby(key, rng.uniform(3_000, 21_000), rng.choice(users))
                await pipe.execute()
                sent += per_tick
                tick += 1
            elapsed = time.perf_counter() - began
            return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "late_s": late}

        async def reads() -> tuple[list[float], list[float]]:
            rng, top, rank = random.Random(7), [], []
            while not stop.is_set():
                began = time.perf_counter()
                await client.zrevrange(key, 0, 99, withscores=True)
                top.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                await client.zrevrank(key, rng.choice(users))
                rank.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(args.read_every)
            return top, rank

        writer, reader = asyncio.create_task(updates()), asyncio.create_task(reads())
        await asyncio.sleep(args.seconds)
        stop.set()
        sent, (top, rank) = await writer, await reader
        return {"loaded_s": loaded, "updates": sent, "top": top, "rank": rank}
    finally:
        await client.delete(key)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=2_000.0, help="workouts a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the updates run")
    parser.add_argument("--read-every", type=float, default=0.01, help="seconds between one reader's reads")
    parser.add_argument("--chunk", type=int, default=5_000, help="joins per batched delivery")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="'' skips the Redis peer")
    args = parser.parse_args()
    if args.participants < 100:
        parser.error("--participants: at least 100 (the board reads a top 100)")
    figures = asyncio.run(engine(args))
    peer = asyncio.run(redis_peer(args)) if args.redis else None
    up = figures["updates"]
    print(f"\nengine, {args.participants:,} participants, updates {up['rate']:,.0f}/s sustained for {up['seconds']:.0f} s "
          f"(at most {up['late_s'] * 1000:.0f} ms late), relay settled {figures['settle_s']:.2f} s after, "
          f"index agrees with the shards: {figures['agree']}")  # fmt: skip
    print(f"  top 100:          {_ms(figures['top'])}")
    print(f"  one athlete rank: {_ms(figures['rank'])}")
    if peer is not None:
        pu = peer["updates"]
        print(f"redis sorted set, loaded in {peer['loaded_s']:.1f} s, updates {pu['rate']:,.0f}/s "
              f"(at most {pu['late_s'] * 1000:.0f} ms late)")  # fmt: skip
        print(f"  top 100 (ZREVRANGE 0 99): {_ms(peer['top'])}")
        print(f"  one rank (ZREVRANK):      {_ms(peer['rank'])}")
        for name in ("top", "rank"):
            ratio = _p(figures[name], 0.5) / _p(peer[name], 0.5)
            ratio99 = _p(figures[name], 0.99) / _p(peer[name], 0.99)
            print(f"  engine/redis {name}: p50 {ratio:.2f}x, p99 {ratio99:.2f}x")


if __name__ == "__main__":
    main()
