"""The client side of the engine: find an entity's host and talk to it.

``Cluster`` routes ``(kind, id)`` to a shard and the shard to one of the
shared hosts, or to the entity's own dedicated host when its kind asks for one.
Hosts are named, detached Ray actors, so every process that connects with the
same spec reaches the same hosts, and Ray restarts a host that dies.
Hosts are spread over the cluster's nodes, so losing a node loses a share of
them for the time Ray takes to restart it elsewhere, never all of them.

Asks made in the same turn of the event loop travel together: an API replica
answering many requests at once sends one Ray call per host for all of them, not
one per request. Alone, an ask leaves at once (the flush is the loop's next step).

A dedicated host exits for good once its entity is done (``Entity.retirable``) and
idle: a handle to it that answers ``ActorDiedError`` is forgotten and the message
goes to a new host of the same name. ``max_dedicated`` caps how many dedicated
hosts may live at once; a message that would start one more gets ``TooManyHosts``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, TypeVar

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from engine.bus.event_log import RayBus
from engine.codec import pack, unpack
from engine.entity import Entity
from engine.errors import EngineError, HostUnavailable, TooManyHosts, error_from_wire
from engine.notices import NOTICE_LOG, channel
from engine.ray_host import HostActor, HostSpec, load_kind, load_store_opener
from engine.ray_relay import RELAY_NAME, RelayActor, RelaySpec
from engine.refs import Ref
from engine.routing import ShardMap

__all__ = ["Cluster"]

E = TypeVar("E", bound=Entity)

_HOST_DOWN = (RayActorError, ActorDiedError, ActorUnavailableError)
_HOST_SHARE = 0.001  # of a node's `node_resource`: a node that offers 1 takes up to 1,000 hosts


class Cluster:
    def __init__(
        self,
        spec: HostSpec,
        *,
        namespace: str = "arena",
        max_restarts: int = -1,
        max_concurrency: int = 1000,
        node_resource: str | None = None,
        max_dedicated: int | None = None,
    ):
        """``node_resource``: a custom resource that marks the nodes hosts may run on (unset: any node);
        ``max_dedicated``: how many dedicated hosts may live at once in the namespace (unset: no cap)."""
        if spec.hosts < 1:
            raise ValueError(f"a cluster needs at least one host, got {spec.hosts}")
        if max_dedicated is not None and max_dedicated < 1:
            raise ValueError(f"max_dedicated is at least 1 when set, got {max_dedicated}")
        self.max_dedicated = max_dedicated
        self.spec = spec
        self.namespace = namespace
        self._options = {
            "namespace": namespace,
            "lifetime": "detached",
            "get_if_exists": True,
            "max_restarts": max_restarts,
            "max_task_retries": 0,  # a retried delivery could apply a message twice
            "max_concurrency": max_concurrency,
            "num_cpus": 0,
            # Hosts take no CPU, so Ray's default policy would pack them all onto one node.
            "scheduling_strategy": "SPREAD",
        }
        if node_resource is not None:
            self._options["resources"] = {node_resource: _HOST_SHARE}
        self._map = ShardMap(spec.hosts, spec.shards)
        load_store_opener(spec.open_store)  # a wrong path fails here, not in every host as it starts
        # A dedicated kind's entities that are not hosted alone (a small race) live on the shared
        # hosts like any other entity: the shared hosts know every kind.
        self._kinds = {cls.kind: cls for cls in map(load_kind, spec.kinds)}
        self._dedicated_kinds = {cls.kind: path for path in spec.kinds if (cls := load_kind(path)).dedicated}
        self._shared_spec = replace(spec, index=0, dedicated=None, namespace=namespace)
        self._hosts = [self._host(f"arena-host-{i}", self._with(index=i)) for i in range(spec.hosts)]
        self._dedicated: dict[tuple[str, str], Any] = {}
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[tuple, asyncio.Future]]] = {}  # per loop
        self._sending: set[asyncio.Task] = set()
        self._notice_log: RayBus | None = None

    def _with(self, **changes: Any) -> HostSpec:
        return replace(self._shared_spec, **changes)

    def _host(self, name: str, spec: HostSpec) -> Any:
        return HostActor.options(name=name, **self._options).remote(spec)  # type: ignore[attr-defined]  # @ray.remote

    def host_for(self, kind: str, entity_id: str) -> Any:
        """The entity's host, started if it is a dedicated one that does not run (no cap applies here)."""
        if not self._alone(kind, entity_id):
            return self._hosts[self._map.host_of(kind, entity_id)]
        key = (kind, entity_id)
        handle = self._dedicated.get(key)
        if handle is None:
            handle = self._dedicated[key] = self._host(self._name(key), self._dedicated_spec(key))
        return handle

    def _alone(self, kind: str, entity_id: str) -> bool:
        return kind in self._dedicated_kinds and self._kinds[kind].hosted_alone(entity_id)

    @staticmethod
    def _name(key: tuple[str, str]) -> str:
        return f"arena-{key[0]}-{key[1]}"

    def _dedicated_spec(self, key: tuple[str, str]) -> HostSpec:
        return self._with(kinds=(self._dedicated_kinds[key[0]],), index=0, hosts=1, dedicated=key)

    async def _route(self, kind: str, entity_id: str) -> Any:
        """``host_for``, with the cap on dedicated hosts checked before one is started."""
        if not self._alone(kind, entity_id) or (kind, entity_id) in self._dedicated or self.max_dedicated is None:
            return self.host_for(kind, entity_id)
        key = (kind, entity_id)
        handle = await asyncio.to_thread(self._running, key)
        if handle is None:
            live = await self.dedicated_hosts()
            if sum(live.values()) >= self.max_dedicated:
                raise TooManyHosts(f"{sum(live.values())} dedicated hosts run, the most allowed; retry later")
            return self.host_for(kind, entity_id)
        return self._dedicated.setdefault(key, handle)

    def _running(self, key: tuple[str, str]) -> Any:
        try:
            return ray.get_actor(self._name(key), namespace=self.namespace)
        except ValueError:  # no live actor by that name
            return None

    async def dedicated_hosts(self) -> dict[str, int]:
        """Dedicated hosts alive (or restarting) in this namespace, by kind: every process's, not only ours."""
        named = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        counts = dict.fromkeys(self._dedicated_kinds, 0)
        for actor in named:
            if actor["namespace"] != self.namespace:
                continue
            for kind in counts:
                if actor["name"].startswith(f"arena-{kind}-"):
                    counts[kind] += 1
        return counts

    def forget_host(self, kind: str, entity_id: str) -> None:
        """Let go of the entity's dedicated host here, as one does of an entity that is done (the host
        retires by itself once idle): a process that talked to thousands of races keeps no handle for
        each. A later message finds the host by its name, or starts it again."""
        self._dedicated.pop((kind, entity_id), None)

    def _forget(self, handle: Any) -> bool:
        """Drop a dedicated host that exited for good; True if it was one."""
        for key, known in list(self._dedicated.items()):
            if known == handle:
                del self._dedicated[key]
                return True
        return False

    @property
    def hosts(self) -> list[Any]:
        return [*self._hosts, *self._dedicated.values()]

    async def ask(
        self, kind: str, entity_id: str, message_type: str, body: Any = None, *, at: float | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append(((kind, entity_id, message_type, body, at), answer))
        result = await answer
        if isinstance(result, EngineError):
            raise result
        return result

    def notices(self, cls: type[Entity], entity_id: str) -> AbstractAsyncContextManager[AsyncIterator[dict]]:
        """What the entity tells its listeners from now on (``engine.notices``), until the context exits;
        ``{"type": "lagged"}`` where some were lost."""
        return self._notices().subscribe(channel(cls.kind, entity_id))

    def start_notices(self) -> None:
        """Start the notice log now. Otherwise the first notice starts it (a Ray process) in the
        middle of whatever published it: the first race's start, which cost a race benchmark a
        quarter of its samples/s while the process came up."""
        self._notices().start()

    def start_relay(self, streams: tuple[tuple[str, str], ...] = (), batch: int | None = None) -> Any:
        """Start the cluster's relay (``engine.relay``) if it does not run: the process that delivers
        domain events to the entities that react to them and publishes them to ``streams``. Every
        process that connects may call it; the first one's ``streams`` hold."""
        spec = RelaySpec(replace(self.spec, namespace=self.namespace), streams, self.max_dedicated, batch)
        handle = RelayActor.options(  # type: ignore[attr-defined]  # @ray.remote
            name=RELAY_NAME,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=-1,  # its methods are reads, or replays the hosts apply once
            num_cpus=0,
        ).remote(spec)
        handle.run.remote()  # never answers; Ray resends it to a restarted relay, which starts again
        return handle

    def relay(self) -> Any:
        """The running relay's handle (``start_relay`` first)."""
        return ray.get_actor(RELAY_NAME, namespace=self.namespace)

    def _notices(self) -> RayBus:
        if self._notice_log is None:
            self._notice_log = RayBus(NOTICE_LOG, namespace=self.namespace)
        return self._notice_log

    def ref(self, cls: type[E], entity_id: str) -> Ref[E]:
        """The entity ``(cls.kind, entity_id)``, asked through this cluster by its handlers."""
        return Ref(self.ask, cls, entity_id)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._send(self._pending.pop(loop)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, pending: list[tuple[tuple, asyncio.Future]]) -> None:
        try:
            results = await self.deliver([envelope for envelope, _ in pending])
        except Exception as error:  # the envelopes' fate is unknown: each caller hears why
            results = [error] * len(pending)
        for (_, answer), result in zip(pending, results):
            if answer.done():  # the caller went away (a cancelled request)
                continue
            if isinstance(result, Exception) and not isinstance(result, EngineError):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    async def deliver(self, envelopes: Sequence[Sequence[Any]]) -> list[Any]:
        """One Ray call per host involved; answers in the envelopes' order."""
        by_host: dict[Any, list[int]] = defaultdict(list)
        results: list[Any] = [None] * len(envelopes)
        for index, envelope in enumerate(envelopes):
            try:
                by_host[await self._route(envelope[0], envelope[1])].append(index)
            except EngineError as refused:
                results[index] = refused

        async def call(handle: Any, indexes: list[int]) -> None:
            batch = pack([list(envelopes[i]) for i in indexes])
            try:
                if handle in self._hosts:
                    answers = await self.call_host(handle, batch, len(indexes))
                else:
                    answers = await self.call_host(handle, batch, len(indexes), retired_raises=True)
            except ActorDiedError:
                # A dedicated host that retired: it ran none of these (a stopping host answers
                # HostUnavailable), so they go once to the new host of the same name.
                self._forget(handle)
                envelope = envelopes[indexes[0]]
                try:
                    handle = await self._route(envelope[0], envelope[1])
                except EngineError as refused:
                    answers = [refused] * len(indexes)
                else:
                    answers = await self.call_host(handle, batch, len(indexes))
            for i, answer in zip(indexes, answers):
                results[i] = answer

        await asyncio.gather(*(call(handle, indexes) for handle, indexes in by_host.items()))
        return results

    @staticmethod
    async def call_host(handle: Any, batch: bytes, size: int, *, retired_raises: bool = False) -> list[Any]:
        """Send a packed batch to one host; a host that is down answers every envelope with HostUnavailable.

        ``retired_raises``: a host that exited for good raises ``ActorDiedError`` instead."""
        try:
            wire = unpack(await handle.deliver.remote(batch))
        except _HOST_DOWN as error:
            if retired_raises and isinstance(error, ActorDiedError):
                raise
            return [HostUnavailable(f"the host is down or restarting: {type(error).__name__}")] * size
        if len(wire) != size:  # the host refused the batch as a whole
            return [error_from_wire(wire[0][1:])] * size
        return [item[1] if item[0] == 0 else error_from_wire(item[1:]) for item in wire]

    async def metrics(self) -> list[dict]:
        return await self._each("metrics")

    async def health(self) -> list[dict]:
        return await self._each("health")

    async def stop(self) -> None:
        """Snapshot and stop every host (they restart lazily on the next message)."""
        await self._each("stop")

    async def _each(self, method: str) -> list[dict]:
        async def one(handle: Any) -> dict | None:
            try:
                return {"alive": True, **(await getattr(handle, method).remote() or {})}
            except _HOST_DOWN as error:
                if isinstance(error, ActorDiedError) and self._forget(handle):
                    return None  # a dedicated host that retired: gone, not failing
                return {"alive": False, "error": type(error).__name__}

        return [answer for answer in await asyncio.gather(*(one(h) for h in self.hosts)) if answer is not None]

    def kill(self) -> None:
        for handle in self.hosts:
            ray.kill(handle, no_restart=True)
        for name in (NOTICE_LOG, RELAY_NAME):
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
            except ValueError:  # never started in this namespace
                pass
