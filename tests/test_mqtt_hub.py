"""The MQTT hub against a real Mosquitto and the real engine: acked only once journaled, never counted twice."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import msgpack
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mosquitto import running_broker
from connectors.mqtt import MAX_PAYLOAD, Hub
from engine.cluster import Cluster
from engine.ray_host import HostSpec
from loadtest.server import free_port
from serve.kinds import KINDS, OPEN_STORE
from tests.conftest import Clock

pytestmark = pytest.mark.ray

SAMPLES_PER_MESSAGE = 5


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of this test alone, on a free port, with persistence (as in production)."""
    port = free_port()
    with running_broker(tmp_path / "broker", port, None, None, max_inflight=1000, max_queued=100_000):
        yield port


@pytest.fixture
async def race(ray_cluster, tmp_path):
    """A live race with athletes a0 and a1 on a fresh cluster."""
    cluster = fresh_cluster(tmp_path, "mqtt")
    race_id = uuid.uuid4().hex
    try:
        await start_race(cluster, race_id)
        yield cluster, race_id
    finally:
        cluster.kill()


def fresh_cluster(tmp_path, prefix: str) -> Cluster:
    """Arena's kinds on one host journaling to a SQLite file of the test, in a namespace of its own."""
    return Cluster(
        HostSpec(f"sqlite:///{tmp_path}/a.db", KINDS, hosts=1, open_store=OPEN_STORE),
        namespace=f"{prefix}-{uuid.uuid4().hex[:8]}",
    )


async def start_race(cluster: Cluster, race_id: str) -> None:
    """A live race with athletes a0 and a1, created as the API creates races."""
    config = {"name": "R", "sport": "run", "kind": "time", "duration_s": 3600}
    await cluster.ask("race_ref", race_id, "register", {"organizer": "org"})
    await cluster.ask("race", race_id, "create", {"organizer": "org", "config": config})
    await cluster.ask("race", race_id, "open", {"by": "org"})
    for user in ("a0", "a1"):
        await cluster.ask("race", race_id, "join", {"user_id": user, "name": user.upper()})
    await cluster.ask("race", race_id, "start", {"by": "org"})


def _routes(table: dict[str, dict]):
    async def route(device_id: str) -> dict | None:
        return table.get(device_id)

    return route


class _Device:
    """A device (or a test's listener) speaking MQTT v5 from paho's own thread."""

    def __init__(self, port: int, client_id: str, will: bytes | None = None, listen: str | None = None) -> None:
        self.received: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if will is not None:
            self.client.will_set(f"arena/v1/devices/{client_id}/status", will, qos=1, retain=True)
        subscribed = threading.Event()
        if listen is not None:
            self.client.on_connect = lambda c, *_: c.subscribe(listen, qos=1)
            self.client.on_subscribe = lambda *_: subscribed.set()
            self.client.on_message = self._on_message
        else:
            subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert subscribed.wait(10), "the subscription was not confirmed"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.received.append((message.topic, json.loads(message.payload)))

    def errors(self, device_id: str) -> list[str]:
        with self._lock:
            return [body["error"] for topic, body in self.received if topic == f"arena/v1/devices/{device_id}/downlink"]

    def send(self, device_id: str, body: dict | bytes, kind: str = "telemetry", pack=msgpack.packb) -> None:
        payload = body if isinstance(body, bytes) else pack(body)
        self.client.publish(f"arena/v1/devices/{device_id}/{kind}", payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _message(race_id: str, first: int, n: int = SAMPLES_PER_MESSAGE) -> dict:
    now = time.time()
    samples = [{"seq": s, "t": now, "distance": 10.0 * s, "speed": 3.0, "hr": 150} for s in range(first, first + n)]
    return {"race": race_id, "samples": samples}


async def _until(check, timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _distance(cluster: Cluster, race_id: str, user_id: str) -> float:
    results = await cluster.ask("race", race_id, "results")
    return next(r["distance_m"] for r in results if r["user_id"] == user_id)


async def test_samples_published_by_a_device_reach_the_race_in_batches(broker, race):
    cluster, race_id = race
    route = _routes({"d0": {"owner": "a0", "race_id": race_id, "revoked": False}})
    hub = Hub(cluster, port=broker, client_id=f"hub-{uuid.uuid4().hex[:6]}", route=route)
    device = None
    await hub.start()
    try:
        device = _Device(broker, "d0")
        messages = 20
        for k in range(messages):
            device.send("d0", _message(race_id, k * SAMPLES_PER_MESSAGE), pack=json.dumps if k % 2 else msgpack.packb)
        await _until(lambda: hub.acked == messages, what="every message acked")
        assert hub.accepted == messages * SAMPLES_PER_MESSAGE
        assert hub.batches < messages, "samples were not batched"
        assert not hub.dropped
        assert await _distance(cluster, race_id, "a0") == pytest.approx(10.0 * (messages * SAMPLES_PER_MESSAGE - 1))
    finally:
        if device is not None:
            device.close()
        await hub.stop()


async def test_a_restarted_hub_gets_the_unacked_messages_again_and_the_race_counts_each_sample_once(broker, race):
    cluster, race_id = race
    route = _routes({"d0": {"owner": "a0", "race_id": race_id, "revoked": False}})
    client_id = f"hub-{uuid.uuid4().hex[:6]}"
    first = Hub(cluster, port=broker, client_id=client_id, route=route)
    second = Hub(cluster, port=broker, client_id=client_id, route=route)
    device = None
    await first.start()
    try:
        device = _Device(broker, "d0")
        for k in range(10):
            device.send("d0", _message(race_id, k * SAMPLES_PER_MESSAGE))
        await _until(lambda: first.acked == 10, what="the first half acked")
        # The hub dies between journaling a batch and acknowledging it.
        first._ack = lambda messages: None
        for k in range(10, 20):
            device.send("d0", _message(race_id, k * SAMPLES_PER_MESSAGE))
        await _until(lambda: first.accepted == 20 * SAMPLES_PER_MESSAGE, what="the second half journaled")
        await first.stop(drain=False)
        for k in range(20, 30):  # sent while no hub is connected: the persistent session keeps them
            device.send("d0", _message(race_id, k * SAMPLES_PER_MESSAGE))

        await second.start()
        await _until(lambda: second.acked == second.received >= 20, what="the redelivered messages acked")
        assert second.received == 20, "the 10 unacked messages and the 10 queued ones, each once"
        assert first.accepted + second.accepted == 30 * SAMPLES_PER_MESSAGE, "a sample was lost or counted twice"
        assert await _distance(cluster, race_id, "a0") == pytest.approx(10.0 * (30 * SAMPLES_PER_MESSAGE - 1))
    finally:
        if device is not None:
            device.close()
        await first.stop(drain=False)
        await second.stop()


async def test_bad_input_is_dropped_acked_counted_and_explained_and_the_hub_keeps_working(broker, race):
    cluster, race_id = race
    route = _routes(
        {
            "good": {"owner": "a1", "race_id": race_id, "revoked": False},
            "revoked": {"owner": "a1", "race_id": race_id, "revoked": True},
            "elsewhere": {"owner": "a1", "race_id": "another-race", "revoked": False},
            "stranger": {"owner": "not-joined", "race_id": race_id, "revoked": False},
        }
    )
    hub = Hub(cluster, port=broker, client_id=f"hub-{uuid.uuid4().hex[:6]}", route=route)
    device = listener = None
    await hub.start()
    try:
        listener = _Device(broker, "listener", listen="arena/v1/devices/+/downlink")
        device = _Device(broker, "sender")
        bad_hr = _message(race_id, 0)
        bad_hr["samples"][0]["hr"] = -1
        device.send("good", b"\xc1 not msgpack")
        device.send("good", b"{not json")
        device.send("good", bad_hr)
        device.send("good", {"race": race_id, "seq": 1, "t": time.time(), "distance": 5.0, "extra": 1})
        device.send("good", b"{" + b" " * MAX_PAYLOAD + b"}")
        device.send("nobody", _message(race_id, 0))
        device.send("revoked", _message(race_id, 0))
        device.send("elsewhere", _message(race_id, 0))
        device.send("stranger", _message(race_id, 0))
        device.send("good", {"race": race_id, "seq": 7, "t": time.time(), "distance": 42.0})
        await _until(lambda: hub.acked == 10, what="every message acked")
        assert hub.dropped == {
            "malformed": 4,
            "oversized": 1,
            "unknown_device": 1,
            "revoked": 1,
            "not_bound": 1,
            "forbidden": 1,
        }
        await _until(lambda: len(listener.received) == 9, what="a downlink message for each drop")
        assert sorted(listener.errors("good")) == ["malformed"] * 4 + ["oversized"]
        assert listener.errors("nobody") == ["unknown_device"]
        assert listener.errors("revoked") == ["revoked"]
        assert listener.errors("elsewhere") == ["not_bound"]
        assert listener.errors("stranger") == ["forbidden"]
        assert hub.accepted == 1
        assert await _distance(cluster, race_id, "a1") == pytest.approx(42.0)
    finally:
        for client in (device, listener):
            if client is not None:
                client.close()
        await hub.stop()


async def test_a_device_that_vanishes_is_seen_offline_by_its_last_will(broker):
    seen: list[tuple[str, str]] = []

    async def on_status(device_id: str, state: str) -> None:
        seen.append((device_id, state))

    hub = Hub(port=broker, client_id=f"hub-{uuid.uuid4().hex[:6]}", route=_routes({}), on_status=on_status)
    await hub.start()
    try:
        device = _Device(broker, "watch", will=json.dumps({"state": "offline"}).encode())
        device.send("watch", {"state": "online"}, kind="status", pack=lambda body: json.dumps(body).encode())
        await _until(lambda: hub.signal.get("watch", ("",))[0] == "online", what="the device online")
        device.client.loop_stop()
        device.client.socket().close()  # no DISCONNECT: the broker publishes the will
        await _until(lambda: hub.signal["watch"][0] == "offline", what="the last will")
        assert seen == [("watch", "online"), ("watch", "offline")]
        assert hub.acked == 2 and not hub.dropped
    finally:
        await hub.stop()


async def test_the_default_route_asks_the_device_entity_through_an_authenticated_broker(race, tmp_path):
    from connectors.mosquitto import HUB_USER, PasswordFile, acl_text, running_broker

    cluster, race_id = race
    await cluster.ask("device", "d9", "register", {"owner": "a0", "name": "Watch", "model": "W1", "secret_hash": "x"})
    await cluster.ask("device", "d9", "bind", {"by": "a0", "race_id": race_id})
    passwords, acl = PasswordFile(tmp_path / "passwd"), tmp_path / "acl"
    passwords.set(HUB_USER, "hub-secret")
    passwords.set("d9", "device-secret")
    acl.write_text(acl_text())
    port = free_port()
    with running_broker(tmp_path / "broker", port, tmp_path / "passwd", acl):
        clock = Clock()
        hub = Hub(
            cluster,
            port=port,
            client_id="hub-auth",
            username=HUB_USER,
            password="hub-secret",
            route_ttl=10.0,
            monotonic=clock,
        )
        device = None
        await hub.start()
        try:
            device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="d9", protocol=mqtt.MQTTv5)
            device.username_pw_set("d9", "device-secret")
            device.connect("127.0.0.1", port)
            device.loop_start()
            device.publish(
                "arena/v1/devices/d9/telemetry", msgpack.packb(_message(race_id, 0)), qos=1
            ).wait_for_publish(10)
            await _until(lambda: hub.acked == 1, what="the message acked")
            assert hub.accepted == SAMPLES_PER_MESSAGE and not hub.dropped

            await cluster.ask("device", "d9", "revoke", {"by": "a0"})
            clock.now += 10.0  # the cached route expires
            device.publish(
                "arena/v1/devices/d9/telemetry", msgpack.packb(_message(race_id, 5)), qos=1
            ).wait_for_publish(10)
            await _until(lambda: hub.acked == 2, what="the revoked device's message acked")
            assert hub.dropped == {"revoked": 1}
            assert await _distance(cluster, race_id, "a0") == pytest.approx(40.0)
        finally:
            if device is not None:
                device.disconnect()
                device.loop_stop()
            await hub.stop()


async def _bind(cluster: Cluster, race_id: str, device_id: str, user_id: str) -> None:
    """A registered device, bound to the athlete's entry (as `PUT /devices/{id}/race/{race}` does)."""
    await cluster.ask(
        "device", device_id, "register", {"owner": user_id, "name": "Watch", "model": "W1", "secret_hash": "x"}
    )
    await cluster.ask("device", device_id, "bind", {"by": user_id, "race_id": race_id})
    await cluster.ask("race", race_id, "bind_device", {"user_id": user_id, "device_id": device_id})


def _online(device: _Device, device_id: str) -> None:
    device.send(device_id, {"state": "online"}, kind="status", pack=lambda body: json.dumps(body).encode())


async def test_a_device_that_dies_shows_its_athlete_as_signal_lost_on_the_race(broker, race):
    cluster, race_id = race
    device_id = f"w-{uuid.uuid4().hex[:8]}"
    await _bind(cluster, race_id, device_id, "a1")
    hub = Hub(cluster, port=broker, client_id=f"hub-{uuid.uuid4().hex[:6]}")
    await hub.start()
    try:
        device = _Device(broker, device_id, will=json.dumps({"state": "offline"}).encode())
        _online(device, device_id)
        await _until(lambda: hub.signal.get(device_id, ("",))[0] == "online", what="the device online")
        device.client.loop_stop()
        device.client.socket().close()  # no DISCONNECT: the broker publishes the will
        await _until(lambda: hub.acked == 2, what="the last will acked")
        assert (await cluster.ask("race", race_id, "view"))["signal_lost"] == [1]
        assert not hub.dropped
    finally:
        await hub.stop()


async def test_devices_of_a_race_get_a_countdown_a_start_and_a_finished_notice(broker, ray_cluster, tmp_path):
    cluster = Cluster(
        HostSpec(f"sqlite:///{tmp_path}/a.db", KINDS, hosts=1, open_store=OPEN_STORE),
        namespace=f"mqtt-{uuid.uuid4().hex[:8]}",
    )
    race_id, device_id = uuid.uuid4().hex, f"w-{uuid.uuid4().hex[:8]}"
    hub = Hub(cluster, port=broker, client_id=f"hub-{uuid.uuid4().hex[:6]}")
    device = listener = None
    try:
        config = {"name": "R", "sport": "run", "kind": "time", "duration_s": 3600}
        await cluster.ask("race_ref", race_id, "register", {"organizer": "org"})  # as the API creates races
        await cluster.ask("race", race_id, "create", {"organizer": "org", "config": config})
        await cluster.ask("race", race_id, "open", {"by": "org"})
        await cluster.ask("race", race_id, "join", {"user_id": "a0", "name": "A0"})
        await _bind(cluster, race_id, device_id, "a0")
        await hub.start()
        listener = _Device(broker, "listener", listen=f"arena/v1/devices/{device_id}/downlink")
        device = _Device(broker, device_id)
        _online(device, device_id)
        # The gun is set once all is in place (the hub hears the race from its first device), so slow
        # starts of Ray actors cannot eat the countdown: notices are told once, to whoever listens.
        await _until(lambda: hub.hears(race_id), timeout=30, what="the hub listening to the race")
        start_at = time.time() + 3.5
        await cluster.ask("race", race_id, "configure", {"by": "org", "changes": {"start_at": start_at}})

        def notices() -> list[dict]:
            with listener._lock:
                return [body for _, body in listener.received]

        await _until(lambda: any(n["type"] == "start" for n in notices()), timeout=15, what="the start notice")
        *countdown, start = notices()
        assert countdown and all(
            n == {"type": "countdown", "race": race_id, "seconds": n["seconds"]} for n in countdown
        )
        seconds = [n["seconds"] for n in countdown]
        assert seconds == sorted(seconds, reverse=True) and len(set(seconds)) == len(seconds) and seconds[-1] == 1
        assert start == {"type": "start", "race": race_id, "at": pytest.approx(start_at)}

        await cluster.ask("race", race_id, "cancel", {"by": "org", "reason": "storm"})
        await _until(lambda: notices()[-1]["type"] == "finished", timeout=10, what="the finished notice")
        assert notices()[-1] == {"type": "finished", "race": race_id}
    finally:
        for client in (device, listener):
            if client is not None:
                client.close()
        await hub.stop()
        cluster.kill()


async def test_the_hub_reconnects_by_itself_when_the_broker_restarts_and_loses_nothing(race, tmp_path):
    """The broker goes away and comes back (persistence on): the hub's session resumes and the
    messages a device sent meanwhile are all counted, once."""
    cluster, race_id = race
    route = _routes({"d0": {"owner": "a0", "race_id": race_id, "revoked": False}})
    port = free_port()
    folder = tmp_path / "broker"
    # The one hub of its broker: a plain subscription, which Mosquitto restores after a restart
    # (it does not restore shared ones: what devices sent before the hub was back would be lost).
    hub = Hub(cluster, port=port, client_id=f"hub-{uuid.uuid4().hex[:6]}", route=route, retry_delay=0.1, group=None)
    device = None
    try:
        with running_broker(folder, port, None, None, max_inflight=1000, max_queued=100_000):
            await hub.start()
            device = _Device(port, "d0")
            for k in range(5):
                device.send("d0", _message(race_id, k * SAMPLES_PER_MESSAGE))
            await _until(lambda: hub.acked == 5, what="the first messages acked")
            device.close()
        # The broker is down now (its session store saved on the way out); the hub keeps trying.
        failed = hub.failed_reconnects
        await _until(lambda: hub.failed_reconnects >= failed + 2, what="the hub trying the gone broker again")
        assert hub.received == 5
        with running_broker(folder, port, None, None, max_inflight=1000, max_queued=100_000):
            device = _Device(port, "d0")
            for k in range(5, 10):
                device.send("d0", _message(race_id, k * SAMPLES_PER_MESSAGE))
            # Acks the dying broker never read come back as duplicates: acked may pass 10.
            await _until(
                lambda: hub.accepted == 10 * SAMPLES_PER_MESSAGE, timeout=30, what="the hub back on its session"
            )
            await _until(lambda: hub.acked == hub.received >= 10, what="every message acked")
            assert hub.accepted == 10 * SAMPLES_PER_MESSAGE and not hub.dropped, "a sample lost or counted twice"
            assert await _distance(cluster, race_id, "a0") == pytest.approx(10.0 * (10 * SAMPLES_PER_MESSAGE - 1))
            device.close()
            device = None
            await hub.stop()
    finally:
        if device is not None:
            device.close()
        await hub.stop()
