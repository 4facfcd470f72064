"""The relay's Ray actor: one named, detached process per cluster that runs ``engine.relay``.

Ray restarts it when it dies; it then reads its cursors again and sends what was in flight
once more (the hosts apply each event once). Streams to outside systems are named by import
path, as stores are (``"module:function"`` taking a URL and answering an ``engine.relay.Stream``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

import ray

from engine.gc_tuning import tune_gc
from engine.ray_host import HostSpec, load_kind, load_store_opener
from engine.relay import RELAY_NAME, Relay, subscriptions

__all__ = ["RELAY_NAME", "RelaySpec", "RelayActor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySpec:
    hosts: HostSpec  # the cluster's: its store, every kind (shared and dedicated) and its namespace
    streams: tuple[tuple[str, str], ...] = ()  # ("module:function", url) of each outside stream
    max_dedicated: int | None = None
    batch: int | None = None  # events a consumer reads a step (None: engine.relay.BATCH)


@ray.remote
class RelayActor:
    def __init__(self, spec: RelaySpec) -> None:
        from engine.cluster import Cluster  # the cluster module imports this one

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        tune_gc(spec.hosts.config.gc_young)  # the relay owns its process, and moves events in batches as hosts do
        self._spec = spec
        kinds = [load_kind(path) for path in spec.hosts.kinds]
        self._store = load_store_opener(spec.hosts.open_store)(spec.hosts.store_url)
        self._cluster = Cluster(spec.hosts, namespace=spec.hosts.namespace, max_dedicated=spec.max_dedicated)
        streams = [load_store_opener(opener)(url) for opener, url in spec.streams]
        self._relay = Relay(
            self._store,
            self._cluster.deliver,
            self._cluster.ask,
            subscriptions(kinds),
            streams=streams,  # type: ignore[arg-type]  # each opener answers a Stream
            **({} if spec.batch is None else {"batch": spec.batch}),
        )
        self._started: asyncio.Task | None = None

    async def _ready(self) -> Relay:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._started)
        return self._relay

    async def _start(self) -> None:
        await self._store.open()
        await self._relay.start()
        log.info("relay started: %s", ", ".join(self._relay.progress))

    async def start(self) -> None:
        await self._ready()

    @ray.method(enable_task_events=False)
    async def run(self) -> None:
        """Start, then never answer: a caller's pending call is how a restarted relay starts again
        (Ray sends the call once more to the new process)."""
        await self._ready()
        await asyncio.Event().wait()

    async def status(self) -> dict[str, Any]:
        relay = await self._ready()
        return {"pid": os.getpid(), **(await relay.status())}

    @ray.method(enable_task_events=False)
    async def poke(self) -> None:
        """A host committed events (engine.journal): look for them now."""
        self._relay.poke()

    async def settle(self, timeout: float = 60.0) -> bool:
        relay = await self._ready()
        return await relay.settle(timeout)

    async def replay(self, subscription: str | None = None, limit: int = 1_000) -> dict[str, int]:
        relay = await self._ready()
        return await relay.replay(subscription, limit)

    async def dead_letters(self, subscription: str | None = None, limit: int = 100) -> list[dict]:
        await self._ready()
        return [
            {
                "id": d.id,
                "subscription": d.subscription,
                "target": d.target,
                "event": d.event.id,
                "type": d.event.type,
                "position": d.event.position,
                "error": d.error,
                "attempts": d.attempts,
                "failed_at": d.failed_at,
            }
            for d in await self._store.dead_letters(subscription, limit)
        ]

    def pid(self) -> int:
        return os.getpid()
