"""The MQTT gateway of live races: device telemetry from Mosquitto into race entities.

Topic scheme v1 (``arena/v1/devices/{device_id}/...``):

- ``telemetry`` (device → Arena, QoS 1): msgpack or JSON, ``{"race": id, "samples": [...]}``
  or one sample map with ``"race"``;
- ``status`` (device → Arena): ``{"state": "online" | "offline"}``, the device's retained
  last will being ``offline``;
- ``downlink`` (Arena → device): why a message was dropped, and the race's notices: a
  countdown each second of the last ten before ``start_at``, the start, the finish.

A QoS 1 message is acknowledged only once the race has journaled its batch: the hub
runs with manual acks and a persistent session, so messages it has not acknowledged
are redelivered when it (or another hub of the shared subscription) reconnects. A
message that can never succeed (malformed, unknown device, refused by the race) is
acknowledged anyway, counted in ``Hub.dropped`` and explained on the downlink topic.

A device's status reaches its race (``Race.signal``), so spectators see who lost
signal. Each race with a device seen by this hub has one watcher that asks the race
for its status once a second and sends the notices to all the race's devices, until
the race ends. The hub asks races through ``RaceClient``, as the API does: a settled
race is read from its record and refuses samples, so no device wakes its host.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgpack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.race import ENDED
from actors.race_client import RaceClient
from connectors.mosquitto import broker_of
from connectors.samples import MAX_SAMPLES_PER_POST, Sample, pack_samples
from engine.errors import EngineError, NotFound

__all__ = ["Hub", "Route"]

log = logging.getLogger(__name__)

PREFIX = "arena/v1/devices/"
SHARE_GROUP = "arena-hub"
MAX_PAYLOAD = 256 * 1024
MAX_ID = 128
COUNTDOWN_S = 10
_READ_BURST = 512  # packets read per readable event at most, so other work gets its turn

Route = Callable[[str], Awaitable[dict | None]]
OnStatus = Callable[[str, str], Awaitable[None]]


class _Uplink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    race: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    samples: Annotated[list[Sample], Field(min_length=1, max_length=MAX_SAMPLES_PER_POST)]


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["online", "offline"]


class _Drop(Exception):
    """Bad input: acknowledged, counted under ``reason`` and explained on the downlink."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class _Group:
    """One race's samples in one batch window, the athletes they belong to, and the MQTT
    messages that carried them: one ingest message per race, however many devices."""

    race_id: str
    athletes: dict[str, int] = field(default_factory=dict)  # owner → position in the batch's list
    samples: list[Sample] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # each sample's athlete
    messages: list[tuple[str, str, int, int]] = field(default_factory=list)  # (device_id, owner, mid, qos)


def _decode(payload: bytes) -> Any:
    # JSON starts with "{" (after optional whitespace); a msgpack map never does.
    if payload.lstrip()[:1] == b"{":
        return json.loads(payload)
    return msgpack.unpackb(payload, raw=False, strict_map_key=True)


def _device_of(topic: str, leaf: str) -> str:
    if not topic.startswith(PREFIX) or not topic.endswith("/" + leaf):
        raise _Drop("topic", f"not an arena/v1 {leaf} topic: {topic[:200]}")
    device_id = topic[len(PREFIX) : -len(leaf) - 1]
    if not device_id or len(device_id) > MAX_ID or "/" in device_id:
        raise _Drop("topic", f"not a device id: {device_id[:200]!r}")
    return device_id


def _uplink(payload: bytes) -> _Uplink:
    if len(payload) > MAX_PAYLOAD:
        raise _Drop("oversized", f"a message holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    try:
        body = _decode(payload)
        if isinstance(body, dict) and "samples" not in body and "race" in body:
            body = {"race": body.pop("race"), "samples": [body]}
        return _Uplink.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _Drop("malformed", f"{where}: {first['msg']}") from None
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise _Drop("malformed", f"neither msgpack nor JSON: {error}") from None


class Hub:
    """One gateway process; several with the same ``group`` split the stream between them
    (``group=None``: a plain subscription, for the one hub of a broker)."""

    def __init__(
        self,
        cluster: Any = None,
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
        max_batch: int = 1_000,
        route_ttl: float = 10.0,
        retry_delay: float = 0.5,
        poll: float = 1.0,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if cluster is None and route is None:
            raise ValueError("a hub needs a cluster (to ingest and, by default, to route devices)")
        if batch_window <= 0 or max_batch < 1:
            raise ValueError("batch_window must be positive and max_batch at least 1")
        if not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard is (index, brokers) with 0 <= index < brokers, not {shard}")
        self.shard = shard  # this hub's broker among the shards: it sends notices to its devices only
        self.cluster = cluster
        self.races = races or (RaceClient(cluster) if cluster is not None else None)
        self.host, self.port = host, port
        self.client_id = client_id or f"arena-hub-{socket.gethostname()}"
        self.group = group
        self.batch_window, self.max_batch = batch_window, max_batch
        self.route_ttl, self.retry_delay, self.poll = route_ttl, retry_delay, poll
        self._route = route or self._ask_device
        self._on_status = on_status or (self._tell_race if cluster is not None else None)
        self.received = self.acked = self.batches = self.accepted = 0
        self.dropped: Counter[str] = Counter()
        self.signal: dict[str, tuple[str, float]] = {}
        self._routes: dict[str, tuple[float, dict | None]] = {}  # device → (fresh until, route)
        self._refreshing: set[str] = set()
        self._pending: dict[str, _Group] = {}  # by race
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._watchers: dict[str, asyncio.Task] = {}  # race id → its notices; kept once done
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: list[tuple[str, bytes, int, int]] = []  # read by paho, handled once per burst
        self._woken = False
        self._housekeeper: asyncio.Future | None = None
        self._connected: asyncio.Event | None = None
        self._stopping = False
        # MQTT 3.1.1 with a persistent session (clean_session off): paho parses a v5
        # PUBLISH's properties into an object per message, which took half the hub's CPU.
        # The broker keeps the session (persistent_client_expiration) and sets the
        # window of unacknowledged messages (max_inflight_messages).
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        self._client.manual_ack_set(True)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    # -- lifecycle -------------------------------------------------------------
    #
    # paho runs on the hub's own event loop, not on a thread of its own (paho's
    # external-loop mode: loop_read/loop_write/loop_misc driven by add_reader and
    # add_writer). No thread hop per message, no lock contention with the loop, and
    # no wake-up byte through a socket pair for each acknowledgement.

    async def start(self, timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        self._stopping = False
        client = self._client
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._wrote
        deadline = self._loop.time() + timeout
        while True:
            try:
                client.connect(self.host, self.port, keepalive=30)
                break
            except OSError as error:
                if self._loop.time() > deadline:
                    raise ConnectionError(f"no MQTT broker on {self.host}:{self.port}: {error}") from None
                await asyncio.sleep(0.2)
        self._housekeeper = asyncio.ensure_future(self._housekeeping())
        try:
            await asyncio.wait_for(self._connected.wait(), max(0.1, deadline - self._loop.time()))
        except TimeoutError:
            await self._close(graceful=False)
            raise ConnectionError(f"no MQTT broker answered on {self.host}:{self.port} within {timeout}s") from None

    async def stop(self, drain: bool = True, timeout: float = 10.0) -> None:
        """Send what is pending and wait for its acks, then disconnect; ``drain=False`` leaves
        everything not yet acknowledged to the broker, to be redelivered (as after a crash)."""
        self._stopping = True
        watchers = [task for task in self._watchers.values() if not task.done()]
        for task in watchers:
            task.cancel()
        if watchers:
            await asyncio.wait(watchers, timeout=timeout)
        if drain:
            self._flush()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=timeout)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        self._pending.clear()
        await self._close(graceful=drain, timeout=timeout)

    async def _close(self, graceful: bool, timeout: float = 10.0) -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            await asyncio.gather(self._housekeeper, return_exceptions=True)
            self._housekeeper = None
        sock = self._client.socket()
        if sock is None or sock.fileno() == -1:  # never connected, or already closed here
            return
        if graceful:  # the loop writes the acks still queued, then DISCONNECT; paho then closes
            self._client.disconnect()
            assert self._loop is not None
            deadline = self._loop.time() + timeout
            while self._client.socket() is not None and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
            if self._client.socket() is None:
                return
        # No DISCONNECT: the broker keeps the session's unacknowledged messages for the next hub.
        self._socket_close(self._client, None, sock)
        sock.close()

    async def _housekeeping(self) -> None:
        """The keep-alive checked each second, and a new connection (the same session) after a lost one."""
        pause = self.retry_delay
        while True:
            await asyncio.sleep(1.0 if self._client.socket() is not None else pause)
            if self._client.socket() is not None:
                self._client.loop_misc()
                pause = self.retry_delay
                continue
            try:
                self._client.reconnect()
            except OSError as error:
                pause = min(pause * 2, 10.0)
                log.warning("mqtt broker %s:%s unreachable (%s); again in %.1f s", self.host, self.port, error, pause)

    # -- paho, on the hub's event loop -----------------------------------------

    def _socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock, self._readable)

    def _socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)

    def _wrote(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _readable(self) -> None:
        # paho's loop_read reads one packet when none of ours is in flight: read on
        # while PUBLISHes keep coming, rather than one packet per turn of the loop.
        for _ in range(_READ_BURST):
            before = len(self._inbox)
            if self._client.loop_read() != mqtt.MQTT_ERR_SUCCESS or len(self._inbox) == before:
                return

    def _writable(self) -> None:
        self._client.loop_write()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("mqtt connection refused: %s", reason)
            return
        # A shared subscription splits the stream between the hubs of a group; a plain one (no
        # group) is the only kind Mosquitto 2.0 restores from its store after a restart, so a
        # lone hub per broker loses nothing that devices send before it is back (docs/mqtt.md).
        share = f"$share/{self.group}/" if self.group else ""
        client.subscribe([(f"{share}{PREFIX}+/{leaf}", 1) for leaf in ("telemetry", "status")])
        assert self._connected is not None
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Handled once per read burst (one loop_read reads all the packets there are).
        self._inbox.append((message.topic, message.payload, message.mid, message.qos))
        if not self._woken:
            self._woken = True
            assert self._loop is not None
            self._loop.call_soon(self._receive)

    # -- the hub's event loop --------------------------------------------------

    def _receive(self) -> None:
        self._woken = False
        inbox, self._inbox = self._inbox, []
        if self._stopping:
            return  # not acknowledged: the broker gives it to the next session
        self.received += len(inbox)
        for topic, payload, mid, qos in inbox:
            if topic.endswith("/status"):
                self._spawn(self._status(topic, payload, mid, qos))
            else:
                self._telemetry(topic, payload, mid, qos)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mqtt hub task failed", exc_info=task.exception())

    def _telemetry(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Into its race's batch at once when the device's route is cached (the common case)."""
        device_id = None
        try:
            device_id = _device_of(topic, "telemetry")
            uplink = _uplink(payload)
        except _Drop as drop:
            self._drop(device_id, drop.reason, drop.detail, [(mid, qos)])
            return
        cached, now = self._routes.get(device_id), time.monotonic()
        if cached is None or cached[0] <= now:  # unknown or expired: the message waits for the route
            self._spawn(self._routed(device_id, uplink, mid, qos))
            return
        if cached[0] - now < self.route_ttl / 2 and device_id not in self._refreshing:
            # Past half its life: one lookup renews it while the device streams on, so
            # a steady device never waits, and a revocation still lands within route_ttl.
            self._refreshing.add(device_id)
            self._spawn(self._refresh(device_id))
        self._batch(device_id, cached[1], uplink, mid, qos)

    async def _refresh(self, device_id: str) -> None:
        try:
            await self._lookup(device_id)
        except EngineError as error:  # the route in hand stays until it expires
            log.warning("device %s route refresh failed: %s", device_id, error)
        finally:
            self._refreshing.discard(device_id)

    async def _routed(self, device_id: str, uplink: _Uplink, mid: int, qos: int) -> None:
        try:
            route = await self._resolve(device_id)
        except EngineError as error:  # route lookup failed: retryable or a bug, never an ack
            log.warning("device %s route failed: %s; left to the broker to redeliver", device_id, error)
            return
        self._batch(device_id, route, uplink, mid, qos)

    def _batch(self, device_id: str, route: dict | None, uplink: _Uplink, mid: int, qos: int) -> None:
        if route is None:
            return self._drop(device_id, "unknown_device", "this device is not registered", [(mid, qos)])
        if route.get("revoked"):
            return self._drop(device_id, "revoked", "this device was revoked", [(mid, qos)])
        if route.get("race_id") != uplink.race:
            return self._drop(device_id, "not_bound", f"this device is not bound to race {uplink.race}", [(mid, qos)])
        self._watch(uplink.race)
        group = self._pending.get(uplink.race)
        if group is None:
            group = self._pending[uplink.race] = _Group(uplink.race)
        position = group.athletes.setdefault(route["owner"], len(group.athletes))
        group.samples.extend(uplink.samples)
        group.positions.extend([position] * len(uplink.samples))
        group.messages.append((device_id, route["owner"], mid, qos))
        if len(group.samples) >= self.max_batch:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.batch_window, self._flush)

    async def _status(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        device_id = None
        try:
            device_id = _device_of(topic, "status")
            if len(payload) > MAX_PAYLOAD:
                raise _Drop("oversized", f"a message holds at most {MAX_PAYLOAD} bytes")
            try:
                state = _Status.model_validate(_decode(payload)).state
            except (ValueError, TypeError, msgpack.UnpackException):
                raise _Drop("malformed", 'a status is {"state": "online" | "offline"}') from None
        except _Drop as drop:
            self._drop(device_id, drop.reason, drop.detail, [(mid, qos)])
            return
        self.signal[device_id] = (state, time.time())
        if state == "online" and self.cluster is not None:
            try:
                route = await self._resolve(device_id)
            except EngineError as error:
                log.warning("device %s route failed: %s", device_id, error)
            else:
                if route is not None and route.get("race_id") and not route.get("revoked"):
                    self._watch(route["race_id"])
        if self._on_status is not None:
            try:
                await self._on_status(device_id, state)
            except Exception:
                log.exception("on_status hook failed for device %s", device_id)
        self._ack([(mid, qos)])

    async def _resolve(self, device_id: str) -> dict | None:
        now = time.monotonic()
        cached = self._routes.get(device_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        return await self._lookup(device_id)

    async def _lookup(self, device_id: str) -> dict | None:
        """Ask for the device's route and keep it ``route_ttl`` seconds."""
        try:
            route = await self._route(device_id)
        except NotFound:
            route = None
        self._routes[device_id] = (time.monotonic() + self.route_ttl, route)
        return route

    async def _ask_device(self, device_id: str) -> dict | None:
        return await self.cluster.ask("device", device_id, "route")

    async def _tell_race(self, device_id: str, state: str) -> None:
        route = await self._resolve(device_id)
        if route is None or not route.get("race_id") or route.get("revoked"):
            return
        try:
            await self.races.ask(route["race_id"], "signal", {"device_id": device_id, "state": state})
        except EngineError as error:
            log.info("race %s took no status from device %s: %s", route["race_id"], device_id, error)

    # -- race notices on the downlink ------------------------------------------

    def _watch(self, race_id: str) -> None:
        if self.cluster is None or self._stopping or race_id in self._watchers:
            return
        task = asyncio.ensure_future(self._notices(race_id))
        task.add_done_callback(self._watched)
        self._watchers[race_id] = task

    def _watched(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("race watcher failed", exc_info=task.exception())

    async def _notices(self, race_id: str) -> None:
        """Poll the race once a second (a query for all its devices, not one per device) until it ends
        (a settled race answers from its record: the watcher learns it ended without waking its host)."""
        status, counted = None, None
        while True:
            try:
                info, devices = await asyncio.gather(
                    self.races.ask(race_id, "info"), self.races.ask(race_id, "device_map")
                )
            except EngineError as error:
                if not error.retryable:
                    log.info("stopped watching race %s: %s", race_id, error)
                    return
                await asyncio.sleep(self.poll)
                continue
            delay = self.poll
            if info["status"] in ENDED:
                self._notify(devices, {"type": "finished", "race": race_id})
                return
            if info["status"] == "live" and status in ("draft", "open"):
                at = next((t["at"] for t in reversed(info["transitions"]) if t["status"] == "live"), None)
                self._notify(devices, {"type": "start", "race": race_id, "at": at})
            start_at = info.get("start_at")
            if info["status"] == "open" and start_at:
                left = float(start_at) - time.time()
                seconds = math.ceil(left)
                if 0 < seconds <= COUNTDOWN_S and seconds != counted:
                    counted = seconds
                    self._notify(devices, {"type": "countdown", "race": race_id, "seconds": seconds})
                if left > 0:  # wake just after the next whole second before the gun
                    delay = min(delay, left % 1.0 + 0.01)
            status = info["status"]
            await asyncio.sleep(delay)

    def _notify(self, devices: dict[str, int], notice: dict) -> None:
        index, brokers = self.shard
        for device_id in devices:
            if brokers == 1 or broker_of(device_id, brokers) == index:
                self._downlink(device_id, notice)

    def _downlink(self, device_id: str, body: dict) -> None:
        self._client.publish(f"{PREFIX}{device_id}/downlink", json.dumps(body), qos=1)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            groups, self._pending = list(self._pending.values()), {}
            self._spawn(self._ingest(groups))

    async def _ingest(self, groups: list[_Group]) -> None:
        self.batches += len(groups)
        # A settled race takes no samples, and asking it would start its host again: refused here.
        refusals = await asyncio.gather(*(self.races.live(g.race_id) for g in groups), return_exceptions=True)
        live = [g for g, refused in zip(groups, refusals) if refused is None]
        envelopes = [
            (
                "race",
                g.race_id,
                "ingest",
                {"samples": pack_samples(g.samples, g.positions), "athletes": list(g.athletes)},
                None,
            )
            for g in live
        ]
        try:
            delivered = iter(await self.cluster.deliver(envelopes) if envelopes else [])
        except Exception as error:  # Ray itself failed: nothing known to be journaled
            log.warning("ingest of %d groups failed: %s", len(live), error)
            delivered = iter([error] * len(live))
        answers = [next(delivered) if refused is None else refused for refused in refusals]
        retry = []
        for group, answer in zip(groups, answers):
            if isinstance(answer, EngineError) and not answer.retryable:
                self._drop_messages(group.messages, answer.code, answer.message)
            elif isinstance(answer, Exception):
                retry.append(group)
            else:
                self.accepted += answer["accepted"]
                strangers = set(answer.get("not_in_race", ()))
                refused = [m for m in group.messages if m[1] in strangers]
                self._drop_messages(refused, "forbidden", "join the race before sending telemetry")
                self._ack([(mid, qos) for _, owner, mid, qos in group.messages if owner not in strangers])
        if retry and not self._stopping:
            # Ingestion is idempotent by (participant, seq): sending again is safe. The
            # messages stay unacknowledged meanwhile, so a crash here loses nothing.
            await asyncio.sleep(self.retry_delay)
            if not self._stopping:
                await self._ingest(retry)

    def _drop_messages(self, messages: list[tuple[str, str, int, int]], reason: str, detail: str) -> None:
        """Drop (ack, count and explain) messages, one downlink notice per device."""
        by_device: dict[str, list[tuple[int, int]]] = {}
        for device_id, _, mid, qos in messages:
            by_device.setdefault(device_id, []).append((mid, qos))
        for device_id, mine in by_device.items():
            self._drop(device_id, reason, detail, mine)

    def _drop(self, device_id: str | None, reason: str, detail: str, messages: list[tuple[int, int]]) -> None:
        self.dropped[reason] += max(len(messages), 1)
        log.info("dropped a message of device %s: %s (%s)", device_id, reason, detail)
        if device_id is not None:
            self._downlink(device_id, {"error": reason, "detail": detail, "t": time.time()})
        self._ack(messages)

    def _ack(self, messages: list[tuple[int, int]]) -> None:
        for mid, qos in messages:
            if qos > 0:
                self._client.ack(mid, qos)
            self.acked += 1
