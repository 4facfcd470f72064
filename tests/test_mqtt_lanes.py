"""Race lanes: a bound device publishes on its race's lane, and only that lane's hubs hear the race.

The lane arithmetic and the topic contract are tested without a broker; then four hub processes'
hubs (members 0-3 of 4, two per lane) on a real Mosquitto feed two real races, a hub dies, and
the lane's other hub carries on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from connectors.mosquitto import LANES, device_topics, lane_of, lanes_of, running_broker
from connectors.mqtt import Hub
from connectors.mqtt.uplink import Drop, device_of
from loadtest.server import free_port
from serve.cli import build_hubs, main
from serve.settings import Settings
from tests.test_mqtt_hub import (
    SAMPLES_PER_MESSAGE,
    _Device,
    _distance,
    _message,
    _routes,
    _until,
    fresh_cluster,
    start_race,
)

# -- the lanes, without a broker ---------------------------------------------------------


def test_a_race_has_one_stable_lane_and_races_spread_over_the_lanes():
    assert lane_of("race-1") == lane_of("race-1")
    lanes = Counter(lane_of(uuid.uuid4().hex) for _ in range(6_400))
    assert set(lanes) == set(range(LANES))  # every lane used, none outside
    assert max(lanes.values()) < 3 * 6_400 / LANES  # and none holds a crowd


@pytest.mark.parametrize(("members", "per_race"), [(1, 2), (2, 2), (3, 2), (4, 2), (20, 2), (5, 3), (7, 1), (3, 5)])
def test_each_lane_is_heard_by_per_race_members_and_the_members_share_the_lanes_evenly(members, per_race):
    heard = Counter(lane for member in range(members) for lane in lanes_of(member, members, per_race))
    assert heard == dict.fromkeys(range(LANES), min(per_race, members))
    sizes = [len(lanes_of(member, members, per_race)) for member in range(members)]
    assert max(sizes) - min(sizes) <= min(per_race, members)


def test_lanes_of_refuses_a_member_outside_its_set():
    for member, members, per_race in ((4, 4, 2), (-1, 4, 2), (0, 0, 2), (0, 4, 0)):
        with pytest.raises(ValueError):
            lanes_of(member, members, per_race)


def test_a_bound_device_is_told_its_races_lane_and_an_unbound_one_the_device_keyed_topic():
    bound = device_topics("d1", "race-1")
    assert bound["telemetry"] == f"arena/v1/devices/d1/telemetry/{lane_of('race-1')}"
    assert device_topics("d1")["telemetry"] == "arena/v1/devices/d1/telemetry"
    assert bound["status"] == device_topics("d1")["status"] and bound["downlink"] == device_topics("d1")["downlink"]


def test_the_hub_reads_a_device_from_both_telemetry_topics_and_refuses_a_lane_that_is_not_one():
    assert device_of("arena/v1/devices/d1/telemetry", "telemetry") == "d1"
    assert device_of("arena/v1/devices/d1/telemetry/0", "telemetry") == "d1"
    assert device_of(f"arena/v1/devices/d1/telemetry/{LANES - 1}", "telemetry") == "d1"
    for lane in (str(LANES), "07", "x", "", "-1", "\u0663", "1/2", " 1"):
        with pytest.raises(Drop, match="race lane") as refused:
            device_of(f"arena/v1/devices/d1/telemetry/{lane}", "telemetry")
        assert refused.value.reason == "topic"
    for topic in ("arena/v1/devices/d1/status/1", "arena/v1/devices/d1/x/telemetry", "arena/v1/devices//telemetry/1"):
        with pytest.raises(Drop):
            device_of(topic, "telemetry" if "status" not in topic else "status")


def test_a_hub_subscribes_to_its_lanes_each_shared_and_refuses_lanes_that_do_not_exist():
    hub = Hub(object(), group="g", lanes=[3, 4])  # type: ignore[arg-type]  # not contacted before start
    assert hub._client.topics == [
        "$share/g/arena/v1/devices/+/telemetry",
        "$share/g/arena/v1/devices/+/status",
        "$share/g.3/arena/v1/devices/+/telemetry/3",
        "$share/g.4/arena/v1/devices/+/telemetry/4",
    ]
    every = Hub(object(), group=None)  # type: ignore[arg-type]
    assert "arena/v1/devices/+/telemetry/+" in every._client.topics and every.lanes is None
    for lanes in ([LANES], [-1], [1, 1]):
        with pytest.raises(ValueError, match="lanes"):
            Hub(object(), group="g", lanes=lanes)  # type: ignore[arg-type]


def test_arena_hub_member_takes_its_lanes_and_needs_a_shared_subscription(capsys):
    settings = Settings(mqtt_url="mqtt://a.example")
    (hub,) = build_hubs(settings, object(), share="arena-hub", member=(1, 4), hubs_per_race=2)
    assert hub.lanes == tuple(lanes_of(1, 4, 2)) and hub.client_id.endswith("-m1")
    with pytest.raises(ValueError, match="--member needs --share"):
        build_hubs(settings, object(), member=(1, 4))
    assert main(["hub", "--member", "1/4"]) == 2
    assert "--member needs --share" in capsys.readouterr().err
    for bad in ("4/4", "x/4", "1", "-1/4"):
        with pytest.raises(SystemExit):
            main(["hub", "--share", "--member", bad])
        assert "J/K" in capsys.readouterr().err


@pytest.mark.ray
async def test_a_hub_of_every_lane_refuses_a_lane_that_is_not_one_and_says_so(tmp_path, two_races):
    """Where the ACL does not stop it first (brokers without Arena's ACL), the hub does."""
    cluster, (first, _) = two_races
    route = _routes({"d-first": {"owner": "a0", "race_id": first, "revoked": False}})
    port = free_port()
    with running_broker(tmp_path / "broker", port, None, None):
        hub = Hub(cluster, port=port, client_id=f"hub-{uuid.uuid4().hex[:6]}", route=route, group=None)
        device = listener = None
        await hub.start()
        try:
            listener = _Device(port, "listener", listen="arena/v1/devices/+/downlink")
            device = _Device(port, "phone")
            for lane in ("07", str(LANES), "x"):
                device.send("d-first", _message(first, 0), kind=f"telemetry/{lane}")
            device.send("d-first", _message(first, 0, 2), kind=f"telemetry/{lane_of(first)}")
            await _until(lambda: hub.acked == 4, what="every message acked")
            assert hub.dropped == {"topic": 3} and hub.accepted == 2
            await _until(lambda: listener.errors("d-first") == ["topic"] * 3, what="each refusal on the downlink")
        finally:
            for client in (device, listener):
                if client is not None:
                    client.close()
            await hub.stop()


# -- four hubs, two races, a real broker and the real engine ----------------------------------


def _race_on(member: int, members: int = 4) -> str:
    """A race id whose lane is heard by members ``member`` and ``member + 1``."""
    while (lane_of(race_id := uuid.uuid4().hex)) % members != member:
        pass
    return race_id


@pytest.fixture
async def two_races(ray_cluster, tmp_path):
    cluster = fresh_cluster(tmp_path, "lanes")
    races = (_race_on(0), _race_on(2))
    try:
        for race_id in races:
            await start_race(cluster, race_id)
        yield cluster, races
    finally:
        cluster.kill()


@pytest.mark.ray
async def test_each_race_reaches_only_its_lanes_hubs_and_survives_one_of_them_dying(tmp_path, two_races):
    cluster, (first, second) = two_races
    route = _routes(
        {
            "d-first": {"owner": "a0", "race_id": first, "revoked": False},
            "d-second": {"owner": "a0", "race_id": second, "revoked": False},
            "d-old": {"owner": "a1", "race_id": first, "revoked": False},  # a device from before lanes
        }
    )
    port = free_port()
    with running_broker(tmp_path / "broker", port, None, None, max_inflight=1000, max_queued=100_000):
        group = f"g{uuid.uuid4().hex[:6]}"
        hubs = [
            Hub(cluster, port=port, client_id=f"{group}-m{j}", route=route, group=group, lanes=lanes_of(j, 4, 2))
            for j in range(4)
        ]
        device = None
        await asyncio.gather(*(hub.start() for hub in hubs))
        try:
            device = _Device(port, "phone")
            lanes = {race_id: lane_of(race_id) for race_id in (first, second)}
            messages = 12
            for k in range(messages):
                for device_id, race_id in (("d-first", first), ("d-second", second)):
                    device.send(
                        device_id, _message(race_id, k * SAMPLES_PER_MESSAGE), kind=f"telemetry/{lanes[race_id]}"
                    )
            await _until(lambda: sum(hub.acked for hub in hubs) == 2 * messages, what="every message acked")
            assert [(hub.hears(first), hub.hears(second)) for hub in hubs] == [
                (True, False), (True, False), (False, True), (False, True)
            ]  # fmt: skip
            last = 10.0 * (messages * SAMPLES_PER_MESSAGE - 1)
            assert await _distance(cluster, first, "a0") == pytest.approx(last)
            assert await _distance(cluster, second, "a0") == pytest.approx(last)

            device.send("d-old", _message(first, 0, 3))  # the device-keyed topic: any hub of the group
            await _until(lambda: sum(hub.acked for hub in hubs) == 2 * messages + 1, what="acked")
            assert await _distance(cluster, first, "a1") == pytest.approx(20.0)
            assert not any(hub.dropped for hub in hubs)

            # Member 0 dies without a word. Its persistent session keeps its share of the lane for
            # it (Mosquitto queues a shared subscription's messages for an offline member), so the
            # lane's other hub carries on with the rest, and the restarted member 0 catches up.
            await hubs[0].stop(drain=False)
            before = hubs[1].accepted
            for k in range(messages, 2 * messages):  # 60 samples: within the race's anti-replay window
                device.send("d-first", _message(first, k * SAMPLES_PER_MESSAGE), kind=f"telemetry/{lanes[first]}")
            await _until(lambda: hubs[1].accepted > before, what="member 1 carries the lane on")
            hubs[0] = Hub(
                cluster, port=port, client_id=f"{group}-m0", route=route, group=group, lanes=lanes_of(0, 4, 2)
            )
            await hubs[0].start()
            sent = messages * SAMPLES_PER_MESSAGE
            await _until(lambda: hubs[0].accepted + hubs[1].accepted - before == sent, what="every sample in")
            assert hubs[0].accepted > 0  # what was queued for member 0 while it was down
            assert await _distance(cluster, first, "a0") == pytest.approx(
                10.0 * (2 * messages * SAMPLES_PER_MESSAGE - 1)
            )
            assert not any(hub.hears(first) for hub in hubs[2:])
        finally:
            if device is not None:
                device.close()
            for hub in hubs:
                await hub.stop()
