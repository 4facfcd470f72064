"""The Ray actor that hosts entities: a thin shell around ``engine.host.Host``.

Calls carry msgpack bytes (Ray moves ``bytes`` without pickling) and answer
with msgpack bytes: one ``[0, value]`` or ``[1, code, message]`` per envelope.
Errors travel as values, so one bad message never fails its batch.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.codec import pack, unpack
from engine.config import HostConfig
from engine.entity import Entity
from engine.errors import EngineError, HandlerFailed, MalformedMessage
from engine.host import Host
from engine.routing import ShardMap

__all__ = ["HostSpec", "HostActor", "load_kind", "encode_results"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostSpec:
    store_url: str
    kinds: tuple[str, ...]  # "module:Class" of each Entity subclass
    config: HostConfig = field(default_factory=HostConfig)
    index: int = 0
    hosts: int = 1
    shards: int = 1024
    dedicated: tuple[str, str] | None = None  # (kind, id) for a dedicated host


def load_kind(path: str) -> type[Entity]:
    module_name, _, class_name = path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Entity)):
        raise TypeError(f"{path!r} does not name an Entity subclass")
    return cls


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
        from persistence import open_store  # the composition of a host: engine + a store

        self._spec = spec
        kinds = [load_kind(path) for path in spec.kinds]
        if spec.dedicated is not None:
            only = spec.dedicated
            for kind in kinds:
                if kind.kind == only[0]:
                    kind.warm()
            owns = lambda kind, entity_id: (kind, entity_id) == only  # noqa: E731
        else:
            shard_map = ShardMap(spec.hosts, spec.shards)
            owns = lambda kind, entity_id: shard_map.owns(spec.index, kind, entity_id)  # noqa: E731
        self._host = Host(kinds, open_store(spec.store_url), spec.config, owns=owns)
        self._started: asyncio.Task | None = None
        self._retiring: asyncio.Task | None = None

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
        after = self._spec.config.retire_after
        await asyncio.shield(self._started)
        while not self._host.retirable(after):
            if self._host.closing:
                return
            await asyncio.sleep(min(1.0, after / 4))
        log.info("host %s retires after %.0f s idle", "/".join(self._spec.dedicated), after)
        await self._host.stop()
        self._exit()

    def _exit(self) -> None:
        # For good: messages that arrived during the stop were answered HostUnavailable, and
        # the cluster starts a new host by the same name for the next one.
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

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
        return {"pid": os.getpid(), "index": self._spec.index, "dedicated": self._spec.dedicated, **host.metrics()}

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
