"""Devices: registration through the API, and the credentials and ACL enforced by a real Mosquitto."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mosquitto import HUB_USER, LANES, PasswordFile, acl_text, device_topics, reload, running_broker
from loadtest.server import free_port
from tests.test_api import PASSWORD, assert_problem, signup

WAIT = 5.0
NOT_AUTHORIZED = 135


def broker_files(folder: Path) -> tuple[PasswordFile, str, Path]:
    """A password file holding the hub's user (with a fresh password) and Arena's ACL, in ``folder``."""
    passwords = PasswordFile(folder / "passwd")
    hub_password = uuid.uuid4().hex
    passwords.set(HUB_USER, hub_password)
    acl = folder / "acl"
    acl.write_text(acl_text())
    return passwords, hub_password, acl


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """One Mosquitto for the module, with Arena's ACL and the hub's credentials."""
    folder = tmp_path_factory.mktemp("mosquitto")
    passwords, hub_password, acl = broker_files(folder)
    port = free_port()
    with running_broker(folder, port, passwords.path, acl, timeout=WAIT) as process:
        yield SimpleNamespace(
            port=port,
            pid=process.pid,
            pid_file=folder / "mosquitto.pid",
            passwords=passwords,
            hub_password=hub_password,
        )


class Peer:
    """A paho MQTT v5 client whose every step waits at most ``WAIT`` seconds for the broker's answer."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.port = port
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{username}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._answers: dict[tuple[str, int], ReasonCode] = {}
        self._answered = threading.Condition()
        self.disconnected = threading.Event()
        self.client.on_connect = lambda c, u, flags, rc, props: self._answer(("connect", 0), rc)
        self.client.on_publish = lambda c, u, mid, rc, props: self._answer(("publish", mid), rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self._answer(("subscribe", mid), rcs[0])
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.set()

    def _answer(self, key: tuple[str, int], code: ReasonCode) -> None:
        with self._answered:
            self._answers[key] = code
            self._answered.notify_all()

    def _wait(self, key: tuple[str, int]) -> ReasonCode:
        with self._answered:
            assert self._answered.wait_for(lambda: key in self._answers, WAIT), f"no answer to {key} in {WAIT}s"
            return self._answers.pop(key)

    def connect(self) -> int:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        return self._wait(("connect", 0)).value

    def publish(self, topic: str, payload: bytes) -> int:
        return self._wait(("publish", self.client.publish(topic, payload, qos=1).mid)).value

    def subscribe(self, topic_filter: str) -> int:
        return self._wait(("subscribe", self.client.subscribe(topic_filter, qos=1)[1])).value

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def peer(port: int, username: str, password: str) -> Iterator[Peer]:
    client = Peer(port, username, password)
    try:
        yield client
    finally:
        client.close()


def _received(hub: Peer, wait: float = WAIT) -> list[tuple[str, bytes]]:
    """Every message the hub gets until ``wait`` seconds pass without one."""
    got = []
    while True:
        try:
            message = hub.messages.get(timeout=wait)
        except queue.Empty:
            return got
        got.append((message.topic, message.payload))
        wait = 0.5


@contextmanager
def hub(broker: SimpleNamespace) -> Iterator[Peer]:
    with peer(broker.port, HUB_USER, broker.hub_password) as client:
        assert client.connect() == 0
        assert client.subscribe("$share/hub/arena/v1/devices/+/telemetry") == 1  # granted QoS 1
        yield client


def _device(broker: SimpleNamespace) -> tuple[str, str]:
    device_id, password = uuid.uuid4().hex, uuid.uuid4().hex
    broker.passwords.set(device_id, password)
    reload(broker.pid)
    return device_id, password


# -- the broker: credentials and the ACL ----------------------------------------


def test_a_device_publishes_to_its_own_telemetry_and_the_hub_receives_it(broker):
    device_id, password = _device(broker)
    with hub(broker) as arena, peer(broker.port, device_id, password) as device:
        assert device.connect() == 0
        assert device.publish(device_topics(device_id)["telemetry"], b'{"race": "r", "samples": []}') == 0
        assert _received(arena) == [(device_topics(device_id)["telemetry"], b'{"race": "r", "samples": []}')]


def test_a_bound_device_publishes_on_its_races_lane_and_nowhere_else(broker):
    device_id, password = _device(broker)
    other, _ = _device(broker)
    lane = device_topics(device_id, "race-1")["telemetry"]
    with hub(broker) as arena, peer(broker.port, device_id, password) as device:
        assert arena.subscribe("$share/hub.lanes/arena/v1/devices/+/telemetry/+") == 1
        assert device.connect() == 0
        assert device.publish(lane, b'{"race": "race-1", "samples": []}') == 0
        base = lane.rpartition("/")[0]
        for forged in (
            f"{base}/{LANES}",  # no such lane
            f"{base}/07",  # not written as the number it is
            f"{lane}/1",
            device_topics(other, "race-1")["telemetry"],
        ):
            assert device.publish(forged, b"forged") == NOT_AUTHORIZED, forged
        assert _received(arena) == [(lane, b'{"race": "race-1", "samples": []}')]


def test_a_device_cannot_publish_as_another_device(broker):
    device_id, password = _device(broker)
    other, _ = _device(broker)
    with hub(broker) as arena, peer(broker.port, device_id, password) as device:
        assert device.connect() == 0
        assert device.publish(device_topics(other)["telemetry"], b"forged") == NOT_AUTHORIZED
        assert _received(arena, wait=1.0) == []


def test_a_device_hears_only_its_own_downlink(broker):
    device_id, password = _device(broker)
    other, _ = _device(broker)
    with hub(broker) as arena, peer(broker.port, device_id, password) as device:
        assert device.connect() == 0
        device.subscribe(device_topics(device_id)["downlink"])
        device.subscribe(device_topics(other)["downlink"])  # granted, but Mosquitto filters each message
        assert arena.publish(device_topics(other)["downlink"], b"not for you") == 0
        assert arena.publish(device_topics(device_id)["downlink"], b"go in 10") == 0
        assert _received(device) == [(device_topics(device_id)["downlink"], b"go in 10")]


def test_a_wrong_password_is_refused_at_connect(broker):
    device_id, _ = _device(broker)
    with peer(broker.port, device_id, "not the password") as device:
        assert device.connect() == NOT_AUTHORIZED


def test_a_revoked_device_is_disconnected_and_cannot_connect_again(broker):
    device_id, password = _device(broker)
    with peer(broker.port, device_id, password) as device:
        assert device.connect() == 0
        broker.passwords.remove(device_id)
        reload(broker.pid)
        assert device.disconnected.wait(WAIT)
    assert device_id not in broker.passwords.usernames()
    with peer(broker.port, device_id, password) as again:
        assert again.connect() == NOT_AUTHORIZED


def test_the_broker_writes_its_pid_file(broker):
    assert int(broker.pid_file.read_text()) == broker.pid


# -- the API ---------------------------------------------------------------------


def with_brokers(settings, *brokers: SimpleNamespace, **fields):
    """``settings`` with these brokers, given and validated as ``ARENA_MQTT_URL`` and ``ARENA_MQTT_PID_FILE`` are
    (comma-separated), and any other ``fields``; the brokers share one password file."""
    return type(settings)(
        **{
            **dict(settings),
            "mqtt_url": ",".join(f"mqtt://127.0.0.1:{broker.port}" for broker in brokers),
            "mqtt_password_file": brokers[0].passwords.path,
            "mqtt_pid_file": ",".join(str(broker.pid_file) for broker in brokers),
            **fields,
        }
    )


@pytest.fixture(scope="module")
def settings(settings, broker):
    """The shared API settings, with this module's broker (conftest's ``client`` uses them)."""
    return with_brokers(settings, broker)


async def _register(client, headers, name: str = "Watch") -> dict:
    answer = await client.post("/devices", json={"name": name, "model": "Forerunner 965"}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.mark.ray
async def test_registering_a_device_shows_its_credentials_once(client, broker):
    user_id, headers = await signup(client, "Dev")
    device = await _register(client, headers)
    mqtt_ = device["mqtt"]
    assert device["owner"] == user_id and not device["revoked"] and device["race_id"] is None
    assert mqtt_["username"] == device["id"] and len(mqtt_["password"]) >= 24
    assert (mqtt_["host"], mqtt_["port"]) == ("127.0.0.1", broker.port)
    assert mqtt_["topics"] == device_topics(device["id"])
    assert device["id"] in broker.passwords.usernames()
    listed = (await client.get("/devices", headers=headers)).json()
    assert [d["id"] for d in listed] == [device["id"]]
    assert mqtt_["password"] not in str(listed) and "hash" not in str(listed)


@pytest.mark.ray
async def test_malformed_registrations_are_refused(client):
    _, headers = await signup(client, "Bad")
    assert_problem(await client.post("/devices", json={"name": "", "model": "x"}, headers=headers), 422)
    assert_problem(await client.post("/devices", json={"name": "a", "model": "x", "id": "me"}, headers=headers), 422)
    assert_problem(await client.post("/devices", json={"name": "a", "model": "x"}), 401)


@pytest.mark.ray
async def test_listing_shows_only_my_devices_in_registration_order(client):
    _, mine = await signup(client, "Mia")
    _, theirs = await signup(client, "Tom")
    first = await _register(client, mine, "Watch")
    second = await _register(client, mine, "Bike computer")
    await _register(client, theirs, "Phone")
    listed = (await client.get("/devices", headers=mine)).json()
    assert [d["id"] for d in listed] == [first["id"], second["id"]]
    assert (await client.get("/devices", headers=(await signup(client, "New"))[1])).json() == []


@pytest.mark.ray
async def test_someone_elses_device_is_not_found(client):
    _, owner = await signup(client, "Own")
    _, stranger = await signup(client, "Str")
    device = await _register(client, owner)
    assert_problem(await client.delete(f"/devices/{device['id']}", headers=stranger), 404, "no such device")
    assert_problem(await client.put(f"/devices/{device['id']}/race/r1", headers=stranger), 404, "no such device")
    assert_problem(await client.delete(f"/devices/{device['id']}/race", headers=stranger), 404, "no such device")
    assert_problem(await client.delete(f"/devices/{uuid.uuid4().hex}", headers=owner), 404, "no such device")


@pytest.mark.ray
async def test_a_revoked_device_loses_its_mqtt_credentials(client, broker):
    _, headers = await signup(client, "Rev")
    device = await _register(client, headers)
    credentials = device["mqtt"]
    with peer(broker.port, credentials["username"], credentials["password"]) as phone:
        assert await asyncio.to_thread(phone.connect) == 0
        topic = credentials["topics"]["telemetry"]
        assert await asyncio.to_thread(phone.publish, topic, b"{}") < 0x80  # 16: accepted, no subscribers
    answer = await client.delete(f"/devices/{device['id']}", headers=headers)
    assert answer.status_code == 204, answer.text
    assert device["id"] not in broker.passwords.usernames()
    assert (await client.get("/devices", headers=headers)).json()[0]["revoked"] is True
    deadline = time.monotonic() + WAIT
    while True:  # the SIGHUP is asynchronous: the broker re-reads its files soon after
        with peer(broker.port, credentials["username"], credentials["password"]) as again:
            if await asyncio.to_thread(again.connect) == NOT_AUTHORIZED:
                break
        assert time.monotonic() < deadline, "the revoked device still connects"
        await asyncio.sleep(0.1)
    assert_problem(await client.put(f"/devices/{device['id']}/race/r1", headers=headers), 409, "revoked")


@pytest.mark.ray
async def test_binding_my_device_to_a_race_i_joined(client):
    boss = "boss@example.com"
    await client.post("/accounts", json={"email": boss, "password": PASSWORD, "display_name": "Boss"})
    login = await client.post("/auth/login", json={"email": boss, "password": PASSWORD})
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    race = await client.post(
        "/races", json={"name": "Dawn 5k", "sport": "run", "kind": "distance", "target_m": 5000}, headers=admin
    )
    assert race.status_code == 201, race.text
    race_id = race.json()["id"]
    assert (await client.post(f"/races/{race_id}/actions/open", headers=admin)).status_code == 200
    _, headers = await signup(client, "Runner")
    device = await _register(client, headers)
    not_joined = await client.put(f"/devices/{device['id']}/race/{race_id}", headers=headers)
    assert not_joined.status_code in (403, 404, 409), not_joined.text
    assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)).status_code == 201
    bound = await client.put(f"/devices/{device['id']}/race/{race_id}", headers=headers)
    assert bound.status_code == 200, bound.text
    assert bound.json()["device"]["race_id"] == race_id and isinstance(bound.json()["participant"], int)
    assert bound.json()["topics"] == device_topics(device["id"], race_id)  # its telemetry on the race's lane
    assert bound.json()["topics"]["telemetry"] != device["mqtt"]["topics"]["telemetry"]
    unbound = await client.delete(f"/devices/{device['id']}/race", headers=headers)
    assert unbound.json()["race_id"] is None
