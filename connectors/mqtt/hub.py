"""The hub: one gateway process's MQTT connection wired to routes, per-race batches and race notices."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from actors.device import Device
from actors.race import Race
from actors.race_client import RaceClient
from connectors.mosquitto import LANES
from connectors.mqtt.batching import Batches
from connectors.mqtt.notices import Notices
from connectors.mqtt.routes import Lookup, Routes
from connectors.mqtt.transport import Message, Transport
from connectors.mqtt.uplink import MAX_PAYLOAD, PREFIX, Drop, Uplink, device_of, status, uplink
from engine.cluster import Cluster
from engine.errors import EngineError

__all__ = ["SHARE_GROUP", "Hub", "OnStatus", "Route"]

log = logging.getLogger(__name__)

SHARE_GROUP = "arena-hub"
_SENDERS = 100_000  # telemetry topics whose device id is kept (the cache starts over past that)
MAX_PACKET = 4 * MAX_PAYLOAD  # a PUBLISH the transport holds whole; a larger one is read past and dropped

Route = Lookup
OnStatus = Callable[[str, str], Awaitable[None]]


class Hub:
    """One gateway process; several with the same ``group`` split the stream between them
    (``group=None``: a plain subscription, for the one hub of a broker).

    ``lanes``: the race lanes this hub hears (``connectors.mosquitto.lanes_of``), each a
    shared subscription of its own (group ``{group}.{lane}``), so a race's devices reach only
    the hubs of its lane; None: every lane, shared by the whole group. Device-keyed telemetry
    (``.../telemetry``, no lane) and statuses are always shared by the whole group.
    """

    def __init__(
        self,
        cluster: Cluster | None = None,
        *,
        races: RaceClient | None = None,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        group: str | None = SHARE_GROUP,
        route: Route | None = None,
        on_status: OnStatus | None = None,
        batch_window: float = 0.05,
        max_batch_window: float = 0.5,
        ingests_per_s: float = 50.0,
        max_batch: int = 1_000,
        route_ttl: float = 10.0,
        retry_delay: float = 0.5,
        shard: tuple[int, int] = (0, 1),
        lanes: Sequence[int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``batch_window`` lengthens up to ``max_batch_window`` to keep this hub's ingest messages (journal
        rows) to ``ingests_per_s`` (connectors/mqtt/batching.py). ``monotonic`` ages cached routes; a
        test passes a clock it moves by hand."""
        if cluster is None and route is None:
            raise ValueError("a hub needs a cluster (to ingest and, by default, to route devices)")
        if batch_window <= 0 or max_batch < 1:
            raise ValueError("batch_window must be positive and max_batch at least 1")
        if not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard is (index, brokers) with 0 <= index < brokers, not {shard}")
        self.shard = shard  # this hub's broker among the shards: it sends notices to its devices only
        self.cluster = cluster
        self.client_id = client_id or f"arena-hub-{socket.gethostname()}"
        self.group = group
        self.received = self.acked = 0
        self.dropped: Counter[str] = Counter()
        self.signal: dict[str, tuple[str, float]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._senders: dict[str, str] = {}  # telemetry topic → its device id
        self._stopping = False
        # A shared subscription splits the stream between the hubs of a group; a plain one (no
        # group) is the only kind Mosquitto 2.0 restores from its store after a restart, so a
        # lone hub per broker loses nothing that devices send before it is back (docs/mqtt.md).
        share = f"$share/{group}/" if group else ""
        topics = [f"{share}{PREFIX}+/{leaf}" for leaf in ("telemetry", "status")]
        if lanes is None:
            topics.append(f"{share}{PREFIX}+/telemetry/+")
        else:
            if any(not 0 <= lane < LANES for lane in lanes) or len(set(lanes)) != len(lanes):
                raise ValueError(f"lanes are distinct numbers from 0 to {LANES - 1}")
            topics += [(f"$share/{group}.{lane}/" if group else "") + f"{PREFIX}+/telemetry/{lane}" for lane in lanes]
        self.lanes = None if lanes is None else tuple(lanes)
        self._transport = Transport(
            host,
            port,
            self.client_id,
            username=username,
            password=password,
            topics=topics,
            on_messages=self._receive,
            on_oversized=self._oversized,
            retry_delay=retry_delay,
            max_packet=MAX_PACKET,
        )
        self._routes = Routes(route or self._ask_device, route_ttl, self._spawn, monotonic)
        self._on_status = on_status or (self._tell_race if cluster is not None else None)
        self._batches: Batches | None = None
        self._notices: Notices | None = None
        if cluster is not None:
            races = races or RaceClient(cluster)
            self._batches = Batches(
                cluster,
                races,
                window=batch_window,
                max_window=max_batch_window,
                ingests_per_s=ingests_per_s,
                max_batch=max_batch,
                retry_delay=retry_delay,
                ack=lambda messages: self._ack(messages),  # looked up at each call: a test may stand in for it
                drop=lambda *dropped: self._drop(*dropped),
                spawn=self._spawn,
            )
            self._notices = Notices(cluster, races, self._downlink, shard)
        self._races = races

    @property
    def host(self) -> str:
        return self._transport.host

    @property
    def port(self) -> int:
        return self._transport.port

    @property
    def failed_reconnects(self) -> int:
        """Attempts to reach a broker that was gone; they go on, further apart, until it is back."""
        return self._transport.failed_reconnects

    @property
    def _client(self) -> Transport:  # the connection, for tests that look at it
        return self._transport

    @property
    def batches(self) -> int:
        return self._batches.batches if self._batches is not None else 0

    @property
    def accepted(self) -> int:
        return self._batches.accepted if self._batches is not None else 0

    async def start(self, timeout: float = 10.0) -> None:
        self._stopping = False
        if self._batches is not None:
            self._batches.stopping = False
        await self._transport.start(timeout)

    def hears(self, race_id: str) -> bool:
        """Whether the race's notices reach this hub now: it listens from the first device of the race it sees."""
        return self._notices is not None and race_id in self._notices.heard

    async def stop(self, drain: bool = True, timeout: float = 10.0) -> None:
        """Send what is pending and wait for its acks, then disconnect; ``drain=False`` leaves
        everything not yet acknowledged to the broker, to be redelivered (as after a crash)."""
        self._stopping = True
        if self._notices is not None:
            await self._notices.stop(timeout)
        if self._batches is not None:
            self._batches.stopping = True
            if drain:
                self._batches.flush()
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=timeout)
            self._batches.clear()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        await self._transport.close(graceful=drain, timeout=timeout)

    # -- messages, once per read burst -------------------------------------------

    def _receive(self, inbox: list[Message]) -> None:
        if self._stopping:
            return  # not acknowledged: the broker gives it to the next session
        self.received += len(inbox)
        senders = self._senders
        for topic, payload, mid, qos in inbox:
            device_id = senders.get(topic)
            if device_id is not None:  # a telemetry topic seen before
                self._telemetry(device_id, payload, mid, qos)
            elif topic.endswith("/status"):
                self._spawn(self._status(topic, payload, mid, qos))
            else:
                try:
                    device_id = device_of(topic, "telemetry")
                except Drop as drop:
                    self._drop(drop.device, drop.reason, drop.detail, [(mid, qos)])
                    continue
                if len(senders) >= _SENDERS:
                    senders.clear()
                senders[topic] = device_id
                self._telemetry(device_id, payload, mid, qos)

    def _oversized(self, topic: str, size: int, mid: int, qos: int) -> None:
        """A message far past ``MAX_PAYLOAD``, which the transport read past instead of holding."""
        self.received += 1
        try:
            device_id: str | None = device_of(topic, "status" if topic.endswith("/status") else "telemetry")
        except Drop:
            device_id = None
        self._drop(device_id, "oversized", f"a message holds at most {MAX_PAYLOAD} bytes, not {size}", [(mid, qos)])

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mqtt hub task failed", exc_info=task.exception())

    def _telemetry(self, device_id: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        """Into its race's batch at once when the device's route is cached (the common case)."""
        try:
            message = uplink(payload)
        except Drop as drop:
            self._drop(device_id, drop.reason, drop.detail, [(mid, qos)])
            return
        fresh, route = self._routes.cached(device_id)
        if fresh:
            self._batch(device_id, route, message, mid, qos)
        else:  # unknown or expired: the message waits for the route
            self._spawn(self._routed(device_id, message, mid, qos))

    async def _routed(self, device_id: str, message: Uplink, mid: int, qos: int) -> None:
        try:
            route = await self._routes.resolve(device_id)
        except EngineError as error:  # route lookup failed: retryable or a bug, never an ack
            log.warning("device %s route failed: %s; left to the broker to redeliver", device_id, error)
            return
        self._batch(device_id, route, message, mid, qos)

    def _batch(self, device_id: str, route: dict | None, message: Uplink, mid: int, qos: int) -> None:
        if route is None:
            return self._drop(device_id, "unknown_device", "this device is not registered", [(mid, qos)])
        if route.get("revoked"):
            return self._drop(device_id, "revoked", "this device was revoked", [(mid, qos)])
        if route.get("race_id") != message.race:
            return self._drop(device_id, "not_bound", f"this device is not bound to race {message.race}", [(mid, qos)])
        assert self._batches is not None  # a hub without a cluster routes, but ingests nothing
        owner = route["owner"]
        if self._batches.add(message.race, owner, message.rows, (device_id, owner, mid, qos)):
            self._listen(message.race)  # once per race and window is enough: listening is for good

    async def _status(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        device_id = None
        try:
            device_id = device_of(topic, "status")
            state = status(payload)
        except Drop as drop:
            self._drop(device_id, drop.reason, drop.detail, [(mid, qos)])
            return
        self.signal[device_id] = (state, time.time())
        if state == "online" and self.cluster is not None:
            try:
                route = await self._routes.resolve(device_id)
            except EngineError as error:
                log.warning("device %s route failed: %s", device_id, error)
            else:
                if route is not None and route.get("race_id") and not route.get("revoked"):
                    self._listen(route["race_id"])
        if self._on_status is not None:
            try:
                await self._on_status(device_id, state)
            except Exception:
                log.exception("on_status hook failed for device %s", device_id)
        self._ack([(mid, qos)])

    def _listen(self, race_id: str) -> None:
        if self._notices is not None and not self._stopping:
            self._notices.listen(race_id)

    async def _ask_device(self, device_id: str) -> dict | None:
        assert self.cluster is not None
        return await self.cluster.ref(Device, device_id).ask(Device.route)

    async def _tell_race(self, device_id: str, state: str) -> None:
        route = await self._routes.resolve(device_id)
        if route is None or not route.get("race_id") or route.get("revoked"):
            return
        assert self._races is not None
        try:
            await self._races.ref(route["race_id"]).ask(Race.signal, device_id=device_id, state=state)
        except EngineError as error:
            log.info("race %s took no status from device %s: %s", route["race_id"], device_id, error)

    # -- answers to devices ----------------------------------------------------------

    def _downlink(self, device_id: str, body: dict) -> None:
        self._transport.publish(f"{PREFIX}{device_id}/downlink", json.dumps(body))

    def _drop(self, device_id: str | None, reason: str, detail: str, messages: list[tuple[int, int]]) -> None:
        self.dropped[reason] += max(len(messages), 1)
        log.info("dropped a message of device %s: %s (%s)", device_id, reason, detail)
        if device_id is not None:
            self._downlink(device_id, {"error": reason, "detail": detail, "t": time.time()})
        self._ack(messages)

    def _ack(self, messages: list[tuple[int, int]]) -> None:
        self._transport.ack(messages)
        self.acked += len(messages)
