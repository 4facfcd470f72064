"""A campaign to N recipients through the real engine: 64 audience shards, the outbox and the relay, N inboxes.

The audience is back-filled into its shards (``CampaignAudience.enrol``, as from the lake's user dimension):
90% consenting in a zone where it is daytime now, 10% in one where it is night (their delivery is deferred to
08:00 local, so they must receive nothing now). The campaign is sent for a local time already passed, so the
daytime members are due at once; the time printed is from ``POST``-equivalent ``Campaign.create`` until the
relay has delivered every ``campaign.sent`` into the inboxes (each inbox new, so each is also activated).
Then a sample of inboxes is checked: one marketing notification each by day, none by night.

    .venv/bin/python -m loadtest.bench_campaign                  # 20,000 recipients
    .venv/bin/python -m loadtest.bench_campaign --recipients 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import ray

from actors.campaign import SHARDS, Campaign, audience_shard
from actors.campaign_audience import CampaignAudience
from actors.inbox import Inbox
from engine.cluster import Cluster
from engine.ray_host import HostSpec
from serve.kinds import KINDS, OPEN_STORE


def _zone(hours: range) -> str:
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        if all((now + timedelta(hours=offset, minutes=m)).hour in hours for m in (0, 30)):
            return f"Etc/GMT{-offset:+d}" if offset else "UTC"
    raise RuntimeError("no zone")


async def main(args: argparse.Namespace) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    day, night = _zone(range(9, 20)), _zone(range(0, 6))
    with tempfile.TemporaryDirectory() as folder:
        spec = HostSpec(f"sqlite:///{folder}/campaign.db", KINDS, hosts=args.hosts, open_store=OPEN_STORE)
        cluster = Cluster(spec, namespace=f"campaign-{uuid.uuid4().hex[:6]}")
        relay = cluster.start_relay()
        users = [f"u{n:08d}" for n in range(args.recipients)]
        sleepers = set(random.Random(7).sample(users, args.recipients // 10))
        slices: dict[str, dict[str, dict]] = {f"a{i:02d}": {} for i in range(SHARDS)}
        for user in users:
            slices[audience_shard(user)][user] = {"c": True, "r": "Bretagne", "s": ["run"],
                                                  "z": night if user in sleepers else day}  # fmt: skip
        started = time.perf_counter()
        for shard, members in slices.items():
            items = list(members.items())
            for i in range(0, len(items), 20_000):
                await cluster.ref(CampaignAudience, shard).ask(
                    CampaignAudience.enrol, members=dict(items[i : i + 20_000])
                )
        print(f"audience of {args.recipients:,} enrolled in {SHARDS} shards: {time.perf_counter() - started:.1f} s")
        send_at = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        target = {"regions": ["Bretagne"], "sports": ["run"], "min_level": 0, "groups": [], "tiers": []}
        message = {"kind": "offer", "title": "Spring", "body": "20% off", "link": "/offers", "url": "/offers"}
        started = time.perf_counter()
        await cluster.ref(Campaign, "bench").ask(Campaign.create, spec={"message": message, "target": target,
                                                                         "send_at": send_at, "created_by": "b"})  # fmt: skip
        awake = args.recipients - len(sleepers)
        sent = 0
        while sent < awake:  # the shards' timers ring a moment after campaign.scheduled reached them
            await asyncio.sleep(0.2)
            figures = [await cluster.ref(CampaignAudience, s).ask(CampaignAudience.figures, campaign_id="bench")
                       for s in slices]  # fmt: skip
            sent = sum(f["sent"] for f in figures)
        assert await relay.settle.remote(1_800), "the relay did not finish"
        elapsed = time.perf_counter() - started
        print(f"campaign to {args.recipients:,}: {sent:,} delivered now ({awake:,} by day), "
              f"{len(sleepers):,} deferred to 08:00 local: {elapsed:.1f} s, {sent / elapsed:,.0f} inboxes/s")  # fmt: skip
        sample = random.Random(3).sample(users, min(400, len(users)))
        for user in sample:
            items = (await cluster.ref(Inbox, user).ask(Inbox.browse, limit=10))["items"]
            assert len(items) == (0 if user in sleepers else 1), (user, items)
        print(f"checked {len(sample)} inboxes: one notification by day, none by night")
        await cluster.stop()
    ray.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000, help="how many (default 20,000)")
    parser.add_argument("--hosts", type=int, default=2, help="shared host actors (default 2)")
    asyncio.run(main(parser.parse_args()))
