"""A group of 100,000 members: join in bulk, post, rank.

Through the engine, as the API does it: every join is a journaled turn of the member's shard
(``<group>-<nn>``, 64 of them), and its ``group.joined`` event reaches the group (the count) and
the member's own list of groups through the relay, each applied once. Then a member posts (time
until the post is in the group's feed), some members record a workout each (time until every one
is on the group's weekly board, checked exactly once), and the board and "am I a member" are read
as the API reads them (one batched call to the 64 shards; one to the group and one shard).

Peer in the same run, when Redis answers: a Redis set of members (SADD in pipelined chunks,
SISMEMBER) and a sorted set for the board (ZINCRBY per workout, ZREVRANGE of the top), which is
what one would reach for first; not durable in the same way, and nothing reacts to it.
Run: ``.venv/bin/python -m loadtest.bench_groups`` (``--redis ''`` skips the peer).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid

import ray

from actors.account import Account
from actors.group import Group
from actors.group_board import merge, week_of
from actors.group_feed import GroupFeed
from actors.group_members import GroupMembers
from actors.group_post import GroupPost
from actors.group_shards import MEMBER_SHARDS, member_shard
from actors.user_groups import UserGroups
from engine.cluster import Cluster
from engine.codec import pack
from engine.ray_host import HostSpec
from serve.kinds import KINDS, OPEN_STORE


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms"


async def _chunked(cluster: Cluster, envelopes: list[tuple], chunk: int, label: str) -> list:
    answers: list = []
    for start in range(0, len(envelopes), chunk):
        answers += await cluster.deliver(envelopes[start : start + chunk])
        if (start // chunk) % 5 == 4:
            print(f"  {label}: {start + chunk:,} of {len(envelopes):,}", flush=True)
    return answers


async def _timed(work, times: int) -> list[float]:
    latencies = []
    for n in range(times):
        started = time.perf_counter()
        await work(n)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _snapshot_bytes(group_id: str, members: list[str], now: float) -> tuple[int, int]:
    """The members part of the largest shard's snapshot, and of one entity holding every member."""
    shards: dict[str, dict[str, float]] = {}
    for user in members:
        shards.setdefault(member_shard(group_id, user), {})[user] = now
    return max(len(pack(s)) for s in shards.values()), len(pack({u: now for u in members}))


async def _arena(args: argparse.Namespace, cluster: Cluster, relay) -> dict:
    figures: dict = {}
    group_id, owner = uuid.uuid4().hex, "owner"
    await cluster.ref(Account, owner).ask(Account.register, email="owner@x", password_hash="-", display_name="Owner")
    await cluster.ref(Group, group_id).ask(Group.create, owner=owner, profile={"name": "Big City Runners"})
    await cluster.ref(GroupMembers, member_shard(group_id, owner)).ask(GroupMembers.found, user_id=owner)
    members = [f"m{n}" for n in range(args.members)]
    assert await relay.settle.remote(120), "the relay did not start"  # its start-up is not the joins' cost

    started = time.perf_counter()
    answers = await _chunked(
        cluster,
        [
            (GroupMembers.kind, member_shard(group_id, u), "join", {"user_id": u, "policy": "open"}, None)
            for u in members
        ],
        args.chunk,
        "joined",
    )
    figures["join_s"] = time.perf_counter() - started
    assert answers == ["member"] * len(members), [a for a in answers if a != "member"][:3]
    assert await relay.settle.remote(900), "the relay did not catch up with the joins"
    figures["joined_settled_s"] = time.perf_counter() - started
    view = await cluster.ref(Group, group_id).ask(Group.view)
    assert view["members"] == args.members + 1, view["members"]
    sample = members[:: max(1, len(members) // 200)]
    lists = await cluster.deliver([(UserGroups.kind, u, "group_ids", None, None) for u in sample])
    assert all(ids == [group_id] for ids in lists), "a member's list misses the group"
    sizes = [
        c["members"]
        for c in await cluster.deliver(
            [(GroupMembers.kind, f"{group_id}-{n:02d}", "counts", None, None) for n in range(MEMBER_SHARDS)]
        )
    ]
    figures["shard_sizes"] = (min(sizes), max(sizes))
    figures["snapshot_bytes"] = _snapshot_bytes(group_id, [owner, *members], time.time())

    async def standing(n: int) -> None:
        user = members[(n * 7919) % len(members)]
        terms, mine = await cluster.deliver(
            [
                (Group.kind, group_id, "terms", {"viewer": user}, None),
                (GroupMembers.kind, member_shard(group_id, user), "standing", {"user_id": user}, None),
            ]
        )
        assert mine == "member" and terms["visibility"] == "public"

    figures["standing"] = _percentiles(await _timed(standing, args.reads))

    post_id = uuid.uuid4().hex
    started = time.perf_counter()
    await cluster.ref(GroupPost, post_id).ask(
        GroupPost.create, group_id=group_id, author=members[0], author_name="M0", text="Long run on Sunday?"
    )
    posted = time.perf_counter() - started
    while (await cluster.ref(GroupFeed, group_id).ask(GroupFeed.read, limit=1))["items"][:1] == []:
        await asyncio.sleep(0.005)
    figures["post"] = (posted * 1000, (time.perf_counter() - started) * 1000)

    active = members[: args.active]
    await _chunked(
        cluster,
        [
            (Account.kind, u, "register", {"email": f"{u}@x", "password_hash": "-", "display_name": u}, None)
            for u in active
        ],
        args.chunk,
        "registered",
    )
    assert await relay.settle.remote(600)
    now = time.time()
    workouts = [
        {"id": uuid.uuid4().hex, "sport": ("run", "ride")[n % 2], "start": now - 60, "title": "Morning",
         "distance_m": 5_000.0 + n % 997, "moving_s": 1_800.0, "elevation_gain_m": 20.0, "visibility": "public"}
        for n in range(len(active))
    ]  # fmt: skip
    started = time.perf_counter()
    await _chunked(
        cluster,
        [(Account.kind, u, "add_workout", {"summary": w}, None) for u, w in zip(active, workouts)],
        args.chunk,
        "workouts",
    )
    recorded = time.perf_counter() - started
    week = week_of(now - 60)

    async def on_board() -> int:
        parts = await cluster.deliver(
            [
                (
                    GroupMembers.kind,
                    f"{group_id}-{n:02d}",
                    "board",
                    {"week": week, "metric": "workouts", "limit": 10**6},
                    None,
                )
                for n in range(MEMBER_SHARDS)
            ]
        )
        return sum(row["workouts"] for part in parts for row in part["rows"])

    deadline = time.monotonic() + 900
    while (counted := await on_board()) < len(active) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    boarded = time.perf_counter() - started
    assert await relay.settle.remote(900), "the relay did not catch up with the workouts"
    figures["workouts"] = (recorded, boarded, time.perf_counter() - started)
    counted = await on_board()
    assert counted == len(active), f"{counted:,} workouts on the board for {len(active):,} recorded"
    feed = await cluster.ref(GroupFeed, group_id).ask(GroupFeed.read, limit=100)
    assert len({i["id"] for i in feed["items"]}) == len(feed["items"]) == 100

    async def rank(n: int) -> None:
        me = active[(n * 7919) % len(active)]
        mine = member_shard(group_id, me)
        parts = await cluster.deliver(
            [
                (
                    GroupMembers.kind,
                    shard,
                    "board",
                    {"week": week, "metric": "distance_m", "limit": 20, "me": me if shard == mine else None},
                    None,
                )
                for shard in (f"{group_id}-{k:02d}" for k in range(MEMBER_SHARDS))
            ]  # fmt: skip
        )
        top = merge([p["rows"] for p in parts], "distance_m", 20)
        assert len(top) == 20 and any(p["me"] for p in parts)

    figures["rank"] = _percentiles(await _timed(rank, args.reads))
    return figures


def _redis_peer(url: str, members: int, active: int, reads: int, chunk: int) -> dict:
    import redis

    client = redis.Redis.from_url(url)
    prefix = f"bench-groups-{uuid.uuid4().hex[:6]}"
    key, board = f"{prefix}:members", f"{prefix}:board"
    figures: dict = {}
    try:
        started = time.perf_counter()
        names = [f"m{n}" for n in range(members)]
        for start in range(0, members, chunk):
            client.sadd(key, *names[start : start + chunk])
        figures["join_s"] = time.perf_counter() - started
        figures["standing"] = _percentiles(
            [t for t in (_one(lambda n=n: client.sismember(key, names[(n * 7919) % members])) for n in range(reads))]
        )
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for n in range(active):
            pipe.zincrby(board, 5_000.0 + n % 997, names[n])
            if n % chunk == chunk - 1:
                pipe.execute()
        pipe.execute()
        figures["workouts_s"] = time.perf_counter() - started
        figures["rank"] = _percentiles(
            [_one(lambda n=n: (client.zrevrange(board, 0, 19, withscores=True), client.zrevrank(board, names[n])))
             for n in range(reads)]
        )  # fmt: skip
    finally:
        client.delete(key, board)
        client.close()
    return figures


def _one(work) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


async def main(args: argparse.Namespace) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as folder:
        spec = HostSpec(f"sqlite:///{folder}/groups.db", KINDS, hosts=args.hosts, open_store=OPEN_STORE)
        cluster = Cluster(spec, namespace=f"groups-{uuid.uuid4().hex[:6]}")
        relay = cluster.start_relay()
        try:
            arena = await _arena(args, cluster, relay)
        finally:
            cluster.kill()
    ray.shutdown()
    n = args.members
    largest, flat = arena["snapshot_bytes"]
    print(
        f"\nA group of {n:,} members, {args.hosts} shared hosts, journal on SQLite, {MEMBER_SHARDS} member shards\n"
        f"  join: {n:,} joins journaled in {arena['join_s']:.1f} s ({n / arena['join_s']:,.0f} joins/s); the group's"
        f" count and every member's list settled (group.joined, applied once) after {arena['joined_settled_s']:.1f} s"
        f" ({n / arena['joined_settled_s']:,.0f} members/s)\n"
        f"  shards: {arena['shard_sizes'][0]:,} to {arena['shard_sizes'][1]:,} members each; the largest shard's members"
        f" snapshot {largest / 1024:,.0f} KiB, against {flat / 1024:,.0f} KiB for one entity holding them all\n"
        f"  am I a member (group + my shard, one batched call): {arena['standing']}\n"
        f"  post: journaled in {arena['post'][0]:.1f} ms, in the group's feed after {arena['post'][1]:.1f} ms\n"
        f"  rank: {args.active:,} members record a workout each: journaled in {arena['workouts'][0]:.1f} s, every one on"
        f" the weekly board after {arena['workouts'][1]:.1f} s ({args.active / arena['workouts'][1]:,.0f} workouts/s;"
        f" exactly once, checked); every reaction (followers' feeds too) after {arena['workouts'][2]:.1f} s\n"
        f"  weekly board, top 20 and my row (64 shards, one batched call, merged): {arena['rank']}"
    )
    if args.redis:
        try:
            peer = _redis_peer(args.redis, n, args.active, args.reads, args.chunk)
        except Exception as error:  # no Redis here: the peer is skipped, the figures above stand
            print(f"\nRedis peer skipped: {error}")
            return
        print(
            f"\nPeer: Redis, a set of members and a sorted set for the board (in memory, nothing reacts)\n"
            f"  join: SADD in chunks of {args.chunk:,}: {peer['join_s']:.2f} s ({n / peer['join_s']:,.0f} joins/s);"
            f" ratio {(n / arena['join_s']) / (n / peer['join_s']):.2f}x\n"
            f"  am I a member (SISMEMBER): {peer['standing']}\n"
            f"  rank: {args.active:,} ZINCRBY pipelined: {peer['workouts_s']:.2f} s; top 20 + my rank: {peer['rank']}"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=20_000, help="members who record a workout this week")
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=5_000, help="envelopes per batched call")
    parser.add_argument("--reads", type=int, default=300, help="timed reads of each kind")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="'' skips the Redis peer")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
