"""The Ray actor that hosts entities: a thin shell around ``engine.host.Host``.

Calls carry msgpack bytes (Ray moves ``bytes`` without pickling) and answer
with msgpack bytes: one ``[0, value]`` or ``[1, code, message]`` per envelope.
Errors travel as values, so one bad message never fails its batch.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.bus.event_log import RayBus
from engine.codec import pack, unpack
from engine.config import HostConfig
from engine.entity import Entity
from engine.errors import EngineError, HandlerFailed, MalformedMessage
from engine.gc_tuning import tune_gc
from engine.host import Host
from engine.notices import NOTICE_LOG, publisher
from engine.relay import RELAY_NAME
from engine.routing import ShardMap
from engine.store import Store

__all__ = ["HostSpec", "HostActor", "load_kind", "load_store_opener", "encode_results"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostSpec:
    """What a host is made of, by import path: it is built in its own process.

    The composition root names the store opener (``open_store``: "module:function" taking
    ``store_url`` and answering an ``engine.store.Store``), so the engine imports no store.
    """

    store_url: str
    kinds: tuple[str, ...]  # "module:Class" of each Entity subclass
    config: HostConfig = field(default_factory=HostConfig)
    index: int = 0
    hosts: int = 1
    shards: int = 1024
    dedicated: tuple[str, str] | None = None  # (kind, id) for a dedicated host
    open_store: str = field(kw_only=True)  # "module:function" (url) -> Store
    namespace: str = field(default="arena", kw_only=True)  # the cluster's Ray namespace: where notices go


def _load(path: str) -> Any:
    module_name, separator, name = path.partition(":")
    if not separator or not module_name or not name:
        raise ValueError(f"{path!r} is not an import path of the form 'module:name'")
    return getattr(importlib.import_module(module_name), name, None)


def load_kind(path: str) -> type[Entity]:
    cls = _load(path)
    if not (isinstance(cls, type) and issubclass(cls, Entity)):
        raise TypeError(f"{path!r} does not name an Entity subclass")
    return cls


def load_store_opener(path: str) -> Callable[[str], Store]:
    opener = _load(path)
    if not callable(opener):
        raise TypeError(f"{path!r} does not name a function that opens a store")
    return opener


def encode_results(results: list[Any]) -> bytes:
    wire = [[1, *r.to_wire()] if isinstance(r, EngineError) else [0, r] for r in results]
    try:
        return pack(wire)
    except (TypeError, ValueError, OverflowError):
        return pack([_encodable(item) for item in wire])


def _encodable(item: list) -> list:
    try:
        pack(item)
        return item
    except (TypeError, ValueError, OverflowError) as error:
        return [1, *HandlerFailed(f"the handler's answer cannot be encoded: {error}").to_wire()]


@ray.remote
class HostActor:
    def __init__(self, spec: HostSpec) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        self._spec = spec
        tune_gc(spec.config.gc_young)  # this actor owns its process
        kinds = [load_kind(path) for path in spec.kinds]
        if spec.dedicated is not None:
            only = spec.dedicated
            for kind in kinds:
                if kind.kind == only[0]:
                    kind.warm()
            owns = lambda kind, entity_id: (kind, entity_id) == only  # noqa: E731
        else:
            shard_map = ShardMap(spec.hosts, spec.shards)
            alone = {kind.kind: kind.hosted_alone for kind in kinds if kind.dedicated}
            for kind in kinds:
                if kind.dedicated:
                    kind.warm()  # its entities not hosted alone are hosted here

            def owns(kind: str, entity_id: str) -> bool:
                hosted_alone = alone.get(kind)
                if hosted_alone is not None and hosted_alone(entity_id):
                    return False  # its own host's, never a shared one's
                return shard_map.owns(spec.index, kind, entity_id)

        store = load_store_opener(spec.open_store)(spec.store_url)
        notices = RayBus(NOTICE_LOG, namespace=spec.namespace)
        self._host = Host(kinds, store, spec.config, owns=owns, publish=publisher(notices), on_events=self._poke_relay)
        self._relay: Any = None
        self._relay_missing_until = 0.0
        self._started: asyncio.Task | None = None
        self._retiring: asyncio.Task | None = None

    def _poke_relay(self) -> None:
        """Wake the relay after a commit that carried events; without one running, it finds them by
        polling when it starts (looked up again at most every 10 s)."""
        if self._relay is None:
            now = time.monotonic()
            if now < self._relay_missing_until:
                return
            try:
                self._relay = ray.get_actor(RELAY_NAME, namespace=self._spec.namespace)
            except ValueError:
                self._relay_missing_until = now + 10.0
                return
        try:
            self._relay.poke.remote()
        except Exception:  # gone: look it up again next time
            self._relay = None

    async def _ready(self) -> Host:
        if self._started is None:
            loop = asyncio.get_running_loop()
            self._started = loop.create_task(self._host.start())
            if self._spec.dedicated is not None:
                self._retiring = loop.create_task(self._retire_when_idle())
        await asyncio.shield(self._started)
        return self._host

    async def _retire_when_idle(self) -> None:
        """A dedicated host lives while its entity needs it: once the entity is retirable and the
        host has been idle ``retire_after`` seconds, it snapshots and the actor exits for good
        (the next message to the entity starts a new one)."""
        after, started, dedicated = self._spec.config.retire_after, self._started, self._spec.dedicated
        assert started is not None and dedicated is not None  # only a started dedicated host retires
        await asyncio.shield(started)
        while not self._host.retirable(after):
            if self._host.closing:
                return
            await asyncio.sleep(min(1.0, after / 4))
        log.info("host %s retires after %.0f s idle", "/".join(dedicated), after)
        await self._host.stop()
        self._exit()

    def _exit(self) -> None:
        # For good: messages that arrived during the stop were answered HostUnavailable, and
        # the cluster starts a new host by the same name for the next one.
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    # Ray records every task's events in its GCS (and the node's dashboard agent) for the dashboard's
    # task list: a few KB each, the last 100,000 by default, so a busy Arena fills that store with
    # deliveries within minutes. Deliveries are the engine's own transport (the hosts' metrics count
    # them), so they leave no task events.
    @ray.method(enable_task_events=False)
    async def deliver(self, batch: bytes) -> bytes:
        """Answer a msgpack list of envelopes ``[kind, id, message_type, body, at]``."""
        try:
            envelopes = unpack(batch)
        except Exception as error:
            return pack([[1, *MalformedMessage(f"the batch is not valid msgpack: {error}").to_wire()]])
        if not isinstance(envelopes, list):
            return pack([[1, *MalformedMessage("a batch is a list of envelopes").to_wire()]])
        host = await self._ready()
        return encode_results(await host.deliver(envelopes))

    async def metrics(self) -> dict:
        host = await self._ready()
        return {
            "pid": os.getpid(),
            "index": self._spec.index,
            "dedicated": self._spec.dedicated,
            **host.metrics(),
            # The process's own: the host owns it (its store's thread included).
            "cpu_seconds": time.process_time(),
            "gc_young": gc.get_threshold()[0],
            "gc_full_collections": gc.get_stats()[2]["collections"],
        }

    async def health(self) -> dict:
        host = await self._ready()
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "index": self._spec.index,
            "dedicated": self._spec.dedicated,
            "active_entities": host.active_entities,
            "store": await host.store.health(),
        }

    async def stop(self) -> None:
        host = await self._ready()
        await host.stop()
        if self._spec.dedicated is not None:  # a stopped dedicated host has nothing left to do
            asyncio.get_running_loop().call_later(0.5, self._exit)  # once this call has answered

    def pid(self) -> int:
        return os.getpid()
