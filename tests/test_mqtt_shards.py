"""Broker shards: several Mosquittos, each device told its own broker, one hub per broker feeding the same races.

The settings that configure them (``ARENA_MQTT_URL``, ``ARENA_MQTT_PID_FILE`` as comma-separated lists)
are tested first, without Ray; then two real brokers that share one password file and ACL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pydantic import SecretStr, ValidationError

from connectors.mosquitto import HUB_USER, broker_of, device_topics, running_broker
from loadtest.server import free_port
from serve.cli import build_hubs, main
from serve.settings import Settings
from tests.test_api import PASSWORD, signup
from tests.test_devices import NOT_AUTHORIZED, WAIT, Peer, _register, broker_files, with_brokers
from tests.test_races import run_samples

# -- settings ----------------------------------------------------------------------


def test_one_broker_url_is_todays_setting(monkeypatch):
    monkeypatch.setenv("ARENA_MQTT_URL", "mqtt://broker.example:8883")
    monkeypatch.setenv("ARENA_MQTT_PID_FILE", "/run/mosquitto.pid")
    settings = Settings()
    assert [(url.host, url.port) for url in settings.mqtt_url] == [("broker.example", 8883)]
    assert [str(path) for path in settings.mqtt_pid_file] == ["/run/mosquitto.pid"]
    assert Settings(mqtt_url="mqtt://broker.example").mqtt_url[0].port == 1883  # MQTT's port when left out


def test_several_brokers_are_a_comma_separated_list_in_order(monkeypatch):
    monkeypatch.setenv("ARENA_MQTT_URL", "mqtt://a.example:1883, mqtt://arena-hub:pw@b.example:1884,mqtt://c.example")
    monkeypatch.setenv("ARENA_MQTT_PID_FILE", "/run/m0.pid,/run/m1.pid")
    settings = Settings()
    assert [(url.host, url.port) for url in settings.mqtt_url] == [
        ("a.example", 1883),
        ("b.example", 1884),
        ("c.example", 1883),
    ]
    assert (settings.mqtt_url[1].username, settings.mqtt_url[1].password) == ("arena-hub", "pw")
    assert [str(path) for path in settings.mqtt_pid_file] == ["/run/m0.pid", "/run/m1.pid"]
    assert (
        Settings(mqtt_url=["mqtt://a.example", "mqtt://b.example"]).mqtt_url
        == Settings(mqtt_url="mqtt://a.example,mqtt://b.example").mqtt_url
    )


def test_no_broker_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("ARENA_MQTT_URL", raising=False)
    monkeypatch.delenv("ARENA_MQTT_PID_FILE", raising=False)
    assert Settings().mqtt_url == () and Settings().mqtt_pid_file == ()
    monkeypatch.setenv("ARENA_MQTT_URL", "")
    assert Settings().mqtt_url == ()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://a.example:1883", "broker 1 ('http://a.example:1883') is not mqtt://[user:password@]host[:port]"),
        ("a.example:1883", "URL scheme should be 'mqtt'"),
        ("mqtt://:1883", "empty host"),
        ("mqtt://", "empty host"),
        ("mqtt://a.example:99999", "invalid port"),
        ("mqtt://a.example:0", "port 0"),
        ("mqtt://a.example/topic", "no path"),
        ("mqtt://a.example,,mqtt://b.example", "broker 2 ('') is not mqtt://"),
        ("mqtt://a.example,mqtt://b.example, ", "broker 3"),
        ("mqtt://a.example,mqtt://a.example:1883", "names the broker a.example:1883 twice"),
    ],
)
def test_malformed_broker_urls_are_refused_with_the_reason(monkeypatch, value, why):
    monkeypatch.setenv("ARENA_MQTT_URL", value)
    with pytest.raises(ValidationError, match="ARENA_MQTT_URL") as refused:
        Settings()
    assert why in str(refused.value)


def test_a_refused_broker_url_does_not_show_its_password(monkeypatch):
    monkeypatch.setenv("ARENA_MQTT_URL", "mqtt://a.example,http://arena-hub:s3cret@b.example")
    with pytest.raises(ValidationError, match="broker 2") as refused:
        Settings()
    assert "s3cret" not in str(refused.value) and "arena-hub:***@b.example" in str(refused.value)


def test_an_empty_pid_file_in_the_list_is_refused(monkeypatch):
    monkeypatch.setenv("ARENA_MQTT_PID_FILE", "/run/m0.pid,,/run/m1.pid")
    with pytest.raises(ValidationError, match="ARENA_MQTT_PID_FILE"):
        Settings()


# -- the hubs of `arena hub` -------------------------------------------------------


def test_arena_hub_builds_one_hub_per_broker_each_with_its_shard_and_session():
    settings = Settings(mqtt_url="mqtt://a.example,mqtt://b.example:1884", mqtt_hub_password="hub-pw")
    cluster = object()  # not contacted before the hubs start
    hubs = build_hubs(settings, cluster, client_id="hub-x")
    assert [(h.host, h.port, h.shard, h.client_id) for h in hubs] == [
        ("a.example", 1883, (0, 2), "hub-x-0"),
        ("b.example", 1884, (1, 2), "hub-x-1"),
    ]
    assert all(hub._client.username == HUB_USER for hub in hubs)  # ARENA_MQTT_HUB_PASSWORD's user
    (only,) = build_hubs(settings, cluster, broker=1, client_id="hub-x")
    assert (only.host, only.shard, only.client_id) == ("b.example", (1, 2), "hub-x-1")  # the same session
    with pytest.raises(ValueError, match="--broker is 0 to 1"):
        build_hubs(settings, cluster, broker=2)


def test_arena_hub_with_one_broker_keeps_its_session_id_and_the_default_broker():
    cluster = object()
    (hub,) = build_hubs(Settings(mqtt_url="mqtt://a.example"), cluster, client_id="hub-x")
    assert (hub.host, hub.port, hub.shard, hub.client_id) == ("a.example", 1883, (0, 1), "hub-x")
    (local,) = build_hubs(Settings(mqtt_url=""), cluster)
    assert (local.host, local.port, local.shard) == ("127.0.0.1", 1883, (0, 1))


def test_arena_hub_refuses_a_broker_it_does_not_have_and_bad_urls_before_joining_ray(monkeypatch, capsys):
    monkeypatch.setenv("ARENA_MQTT_URL", "mqtt://a.example,mqtt://b.example")
    assert main(["hub", "--broker", "2"]) == 2
    assert "--broker is 0 to 1" in capsys.readouterr().err
    monkeypatch.setenv("ARENA_MQTT_URL", "mqtt://a.example,https://b.example")
    assert main(["hub"]) == 2
    assert "broker 2 ('https://b.example')" in capsys.readouterr().err


def test_arena_hub_runs_a_hub_per_broker_and_stops_them_all_on_sigterm(tmp_path, monkeypatch, capsys):
    import ray

    import serve.cli

    ports = [free_port(), free_port()]
    built: list = []

    def hubs(*args, **kwargs):
        built.extend(build_hubs(*args, **kwargs))
        return built

    def stop_when_connected() -> None:
        deadline = time.monotonic() + WAIT
        while not (len(built) == 2 and all(hub._client.is_connected() for hub in built)):
            if time.monotonic() > deadline:
                break  # the hubs never connected: SIGTERM anyway, and the assertions below say so
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    with (
        running_broker(tmp_path / "b0", ports[0], None, None, timeout=WAIT),
        running_broker(tmp_path / "b1", ports[1], None, None, timeout=WAIT),
    ):
        monkeypatch.setenv("ARENA_MQTT_URL", ",".join(f"mqtt://127.0.0.1:{port}" for port in ports))
        monkeypatch.delenv("ARENA_MQTT_HUB_PASSWORD", raising=False)
        monkeypatch.setattr(ray, "init", lambda **_: None)  # no Ray: these hubs see no device
        monkeypatch.setattr("serve.context.connect", lambda settings: object())
        monkeypatch.setattr(serve.cli, "build_hubs", hubs)
        stopper = threading.Thread(target=stop_when_connected)
        stopper.start()
        try:
            assert main(["hub", "--client-id", "hub-cli"]) == 0
        finally:
            stopper.join()
    assert [(hub.port, hub.shard, hub.client_id) for hub in built] == [
        (ports[0], (0, 2), "hub-cli-0"),
        (ports[1], (1, 2), "hub-cli-1"),
    ]
    assert not any(hub._client.is_connected() for hub in built)
    out = capsys.readouterr().out
    assert f"hub-cli-0 on 127.0.0.1:{ports[0]}, broker 0 of 2" in out
    assert f"hub-cli-1 on 127.0.0.1:{ports[1]}, broker 1 of 2" in out


# -- two real brokers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def brokers(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """Two Mosquittos on one machine (``shards``) sharing one password file (with the hub's user) and one ACL."""
    folder = tmp_path_factory.mktemp("shards")
    passwords, hub_password, acl = broker_files(folder)
    ports = [free_port(), free_port()]
    with (
        running_broker(folder / "b0", ports[0], passwords.path, acl, timeout=WAIT) as first,
        running_broker(folder / "b1", ports[1], passwords.path, acl, timeout=WAIT) as second,
    ):
        shards = [
            SimpleNamespace(
                port=port, pid=process.pid, pid_file=folder / f"b{i}" / "mosquitto.pid", passwords=passwords
            )
            for i, (port, process) in enumerate(zip(ports, (first, second), strict=True))
        ]
        yield SimpleNamespace(shards=shards, hub_password=hub_password)


@pytest.fixture(scope="module")
def settings(settings, brokers):
    """The shared API settings with ARENA_MQTT_URL and ARENA_MQTT_PID_FILE listing both brokers."""
    return with_brokers(settings, *brokers.shards, mqtt_hub_password=SecretStr(brokers.hub_password))


async def _connect(port: int, username: str, password: str) -> Peer:
    """A client connected to the broker on ``port``: the broker re-reads the password file on its SIGHUP,
    which is asynchronous, so a fresh credential may be refused for a moment."""
    deadline = time.monotonic() + WAIT
    while True:
        client = Peer(port, username, password)
        if await asyncio.to_thread(client.connect) == 0:
            return client
        await asyncio.to_thread(client.close)
        assert time.monotonic() < deadline, f"{username} is refused by the broker on port {port}"
        await asyncio.sleep(0.1)


async def _refused(port: int, username: str, password: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        client = Peer(port, username, password)
        code = await asyncio.to_thread(client.connect)
        await asyncio.to_thread(client.close)
        if code == NOT_AUTHORIZED:
            return
        assert time.monotonic() < deadline, f"{username} still connects to the broker on port {port}"
        await asyncio.sleep(0.1)


async def _devices_on_both_brokers(client, register) -> list[dict]:
    """Register devices (``register`` returns one's answer) until each of the two brokers has one."""
    devices: list[dict] = []
    for _ in range(16):  # each device lands on either broker with even odds: 2**-15 to miss one
        devices.append(await register())
        if {broker_of(d["id"], 2) for d in devices} == {0, 1}:
            return devices
    raise AssertionError("16 devices all landed on one broker: broker_of does not spread them")


@pytest.mark.ray
async def test_each_device_is_told_its_own_broker_and_its_credentials_work_on_every_broker(client, brokers):
    shards = brokers.shards
    _, headers = await signup(client, "Shard")
    devices = await _devices_on_both_brokers(client, lambda: _register(client, headers))
    for device in devices:
        own = shards[broker_of(device["id"], 2)]
        assert (device["mqtt"]["host"], device["mqtt"]["port"]) == ("127.0.0.1", own.port)
        assert device["mqtt"]["topics"] == device_topics(device["id"])
        credentials = (device["mqtt"]["username"], device["mqtt"]["password"])
        # Both brokers got a SIGHUP (ARENA_MQTT_PID_FILE lists both); they read one password file, so the
        # other broker accepts the device too: the shard is where it is told to go, not a security boundary.
        for broker in shards:
            peer = await _connect(broker.port, *credentials)
            await asyncio.to_thread(peer.close)

    revoked = devices[0]
    answer = await client.delete(f"/devices/{revoked['id']}", headers=headers)
    assert answer.status_code == 204, answer.text
    for broker in shards:
        await _refused(broker.port, revoked["mqtt"]["username"], revoked["mqtt"]["password"])


@pytest.mark.ray
async def test_telemetry_from_devices_on_both_brokers_reaches_the_race_through_one_hub_per_broker(
    client, brokers, settings
):
    shards = brokers.shards
    boss = "boss@example.com"  # an admin in the shared settings
    await client.post("/accounts", json={"email": boss, "password": PASSWORD, "display_name": "Boss"})
    login = await client.post("/auth/login", json={"email": boss, "password": PASSWORD})
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    created = await client.post(
        "/races", json={"name": "Shards 5k", "sport": "run", "kind": "distance", "target_m": 5000}, headers=admin
    )
    assert created.status_code == 201, created.text
    race_id = created.json()["id"]
    assert (await client.post(f"/races/{race_id}/actions/open", headers=admin)).status_code == 200
    athletes: dict[str, str] = {}  # device id → its athlete

    async def athlete_with_a_bound_device() -> dict:
        user_id, headers = await signup(client, "Runner")
        assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)).status_code == 201
        device = await _register(client, headers)
        bound = await client.put(f"/devices/{device['id']}/race/{race_id}", headers=headers)
        assert bound.status_code == 200, bound.text
        athletes[device["id"]] = user_id
        return device

    devices = await _devices_on_both_brokers(client, athlete_with_a_bound_device)
    hubs = build_hubs(settings, client.arena.cluster, client_id=f"hub-{uuid.uuid4().hex[:6]}")
    assert [(h.port, h.shard) for h in hubs] == [(shards[0].port, (0, 2)), (shards[1].port, (1, 2))]
    peers: list[Peer] = []
    try:
        await asyncio.gather(*(h.start() for h in hubs))
        # What each hub publishes on its broker's downlinks, seen with the hub's own credentials.
        for broker in shards:
            peers.append(await _connect(broker.port, HUB_USER, brokers.hub_password))
            assert await asyncio.to_thread(peers[-1].subscribe, "arena/v1/devices/+/downlink") == 1
        listeners = list(peers)
        phones = {}
        for device in devices:
            credentials = device["mqtt"]
            phone = await _connect(credentials["port"], credentials["username"], credentials["password"])
            peers.append(phone)
            phones[device["id"]] = phone
            assert await asyncio.to_thread(phone.subscribe, credentials["topics"]["downlink"]) == 1
            online = json.dumps({"state": "online"}).encode()
            assert await asyncio.to_thread(phone.publish, credentials["topics"]["status"], online) == 0

        deadline = time.monotonic() + WAIT
        while any(d["id"] not in hubs[broker_of(d["id"], 2)].signal for d in devices):
            assert time.monotonic() < deadline, "a device's status did not reach the hub of its broker"
            await asyncio.sleep(0.05)
        assert all(d["id"] not in hubs[1 - broker_of(d["id"], 2)].signal for d in devices)

        assert (await client.post(f"/races/{race_id}/actions/start", headers=admin)).status_code == 200
        samples = run_samples(time.time(), 5)
        for device in devices:
            body = json.dumps({"race": race_id, "samples": samples}).encode()
            telemetry = device["mqtt"]["topics"]["telemetry"]
            assert await asyncio.to_thread(phones[device["id"]].publish, telemetry, body) == 0

        async def distances() -> dict[str, float]:
            results = await client.arena.race(race_id, "results")
            return {r["user_id"]: r["distance_m"] for r in results}

        deadline = time.monotonic() + 20
        while True:
            reached = await distances()
            # The board keeps float32 distances.
            if all(reached.get(user_id, 0) >= samples[-1]["distance"] - 0.01 for user_id in athletes.values()):
                break
            assert time.monotonic() < deadline, f"telemetry did not reach the race: {reached}"
            await asyncio.sleep(0.1)
        for i, h in enumerate(hubs):  # each hub ingested exactly its own broker's devices
            on_it = [d for d in devices if broker_of(d["id"], 2) == i]
            assert h.accepted == len(samples) * len(on_it) and not h.dropped

        # The race's notices reach every device through the hub of its broker, and only there.
        assert (await client.post(f"/races/{race_id}/actions/end", headers=admin)).status_code == 200
        for device in devices:
            got = await asyncio.to_thread(_notices_until_finished, phones[device["id"]])
            assert got[-1] == {"type": "finished", "race": race_id}
        for i, listener in enumerate(listeners):
            own = {device_topics(d["id"])["downlink"] for d in devices if broker_of(d["id"], 2) == i}
            assert await asyncio.to_thread(_downlinks_until_finished, listener, own) == own
    finally:
        await asyncio.gather(*(h.stop() for h in hubs))
        for peer in peers:
            await asyncio.to_thread(peer.close)


def _notices_until_finished(phone: Peer) -> list[dict]:
    notices: list[dict] = []
    while not notices or notices[-1].get("type") != "finished":
        notices.append(json.loads(phone.messages.get(timeout=10).payload))
    return notices


def _downlinks_until_finished(listener: Peer, topics: set[str]) -> set[str]:
    """The downlink topics ``listener`` sees until each of ``topics`` had its ``finished`` notice."""
    seen, finished = set(), set()
    while not topics <= finished:
        message = listener.messages.get(timeout=10)
        seen.add(message.topic)
        if json.loads(message.payload).get("type") == "finished":
            finished.add(message.topic)
    return seen
