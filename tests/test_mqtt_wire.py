"""The device swarm's MQTT 3.1.1 framing, on its own and against a real Mosquitto with Arena's ACL."""

from __future__ import annotations

import json
import shutil
import threading
import time

import msgpack
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mqtt.codec import length as _length
from loadtest import device_swarm
from loadtest.mqtt_wire import Link, connect_packet, publish_packet, topic
from loadtest.server import free_port
from tests.conftest import require_program


class _Recorder:
    def __init__(self) -> None:
        self.connacks: list[int] = []
        self.acks = 0
        self.lost = 0

    def link(self) -> Link:
        return Link(b"", self.connacks.append, self._ack, self._lost)

    def _ack(self) -> None:
        self.acks += 1

    def _lost(self) -> None:
        self.lost += 1


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01")],
)
def test_remaining_lengths_are_mqtts_variable_byte_integers(n, encoded):
    assert _length(n) == encoded


def test_a_connect_packet_carries_the_will_and_the_credentials_in_order():
    packet = connect_packet("d1", username="d1", password="pw", will_topic="t/status", will_payload=b"off")
    assert packet[0] == 0x10 and packet[1] == len(packet) - 2
    assert packet[2:8] == b"\x00\x04MQTT" and packet[8] == 4  # protocol level 4: MQTT 3.1.1
    assert packet[9] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02  # user, password, will retain, QoS 1, will, clean
    assert packet[12:] == b"\x00\x02d1" + b"\x00\x08t/status" + b"\x00\x03off" + b"\x00\x02d1" + b"\x00\x02pw"
    with pytest.raises(ValueError, match="65,535"):
        connect_packet("x" * 70_000)


def test_a_publish_packet_is_qos_1_with_its_packet_id():
    packet = publish_packet(topic("a/b"), b"x" * 200, 513, retain=True)
    assert packet[0] == 0x33  # PUBLISH, QoS 1, retain
    assert packet[1:3] == _length(2 + 3 + 2 + 200)
    assert packet[3:8] == b"\x00\x03a/b" and packet[8:10] == (513).to_bytes(2) and packet[10:] == b"x" * 200


def test_packets_split_anywhere_are_read_whole_and_unknown_ones_skipped():
    long_publish = publish_packet(topic("arena/v1/devices/d/downlink"), b"y" * 300, 7)  # two length bytes
    stream = b"\x20\x02\x00\x00" + b"\x40\x02\x00\x01" + long_publish + b"\xd0\x00" + b"\x40\x02\x00\x02"
    for size in (1, 2, 3, 5, len(stream)):
        recorder = _Recorder()
        link = recorder.link()
        for start in range(0, len(stream), size):
            link.data_received(stream[start : start + size])
        assert recorder.connacks == [0] and recorder.acks == 2, size
    refused = _Recorder()
    refused.link().data_received(b"\x20\x02\x00\x05")  # CONNACK 5: not authorised
    assert refused.connacks == [5]
    garbage = _Recorder()
    garbage.link().data_received(b"\xf0\x00\x00\x00\x70\x7f")  # reserved type, a truncated one: ignored
    assert garbage.connacks == [] and garbage.acks == 0


def test_the_swarm_publishes_through_arenas_acl_and_a_dropped_device_leaves_its_will(tmp_path):
    for program in ("mosquitto", "mosquitto_passwd"):
        require_program(program, shutil.which(program), "apt-get install mosquitto")
    from connectors.mosquitto import HUB_USER, PasswordFile, acl_text, lane_of, running_broker

    port = free_port()
    passwords = PasswordFile(tmp_path / "passwd")
    passwords.set_many({HUB_USER: "hub", **{f"w{k}": "secret" for k in range(20)}})
    (tmp_path / "acl").write_text(acl_text())
    with running_broker(tmp_path / "broker", port, tmp_path / "passwd", tmp_path / "acl"):
        seen: dict[str, list] = {"telemetry": [], "status": []}
        lock = threading.Lock()

        topics: set[str] = set()

        def on_message(client, userdata, message):
            leaf = message.topic.split("/")[4]  # telemetry comes on the race's lane: .../telemetry/{lane}
            body = json.loads(message.payload) if leaf == "status" else msgpack.unpackb(message.payload)
            with lock:
                seen[leaf].append((message.topic.split("/")[3], body))
                topics.add(message.topic)

        subscribed = threading.Event()
        listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="listener")
        listener.username_pw_set(HUB_USER, "hub")
        listener.on_message = on_message
        listener.on_subscribe = lambda *_: subscribed.set()
        listener.connect("127.0.0.1", port)
        listener.subscribe("arena/v1/devices/#", qos=1)
        listener.loop_start()
        try:
            assert subscribed.wait(10), "the broker never confirmed the listener's subscription"
            args = device_swarm.parser().parse_args(
                ["--devices", "20", "--port", str(port), "--prefix", "w", "--password", "secret",
                 "--race", "r1", "--seconds", "6", "--dropout", "0.05", "--seed", "3"]
            )  # fmt: skip
            stats = device_swarm.run_shard(args, 0, 20)
            # A silent drop (the socket aborted) may take the message then in flight with it.
            everyone = {f"w{k}" for k in range(20)}

            def arrived() -> bool:
                with lock:
                    online = {device for device, body in seen["status"] if body == {"state": "online"}}
                    wills = any(body == {"state": "offline"} for _, body in seen["status"])
                    telemetry = len(seen["telemetry"])
                return (
                    telemetry >= stats["messages"] - stats["dropouts"]
                    and online == everyone
                    and (wills or not stats["dropouts"])
                )

            deadline = time.monotonic() + 10
            while not arrived() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            listener.loop_stop()
            listener.disconnect()
    assert stats["connected"] >= 20 and stats["refused"] == 0 and stats["connect_errors"] == 0
    assert stats["acked"] >= stats["messages"] > 0  # each PUBLISH acknowledged (and each online status)
    with lock:
        telemetry, status = list(seen["telemetry"]), list(seen["status"])
    assert stats["messages"] - stats["dropouts"] <= len(telemetry) <= stats["messages"]
    lane = lane_of("r1")  # each device's telemetry on the race's lane, through the devices' ACL
    assert {t for t in topics if "/telemetry" in t} == {f"arena/v1/devices/w{k}/telemetry/{lane}" for k in range(20)}
    for _, body in telemetry:
        assert body["race"] == "r1" and body["samples"]
        assert all(sample["seq"] >= 1 and sample["t"] > 0 and -90 <= sample["lat"] <= 90 for sample in body["samples"])
    by_device: dict[str, list[int]] = {}
    for device, body in telemetry:
        by_device.setdefault(device, []).extend(s["seq"] for s in body["samples"])
    for device, seqs in by_device.items():  # resumed after a dropout, never repeated
        assert seqs == sorted(set(seqs)), device
    if stats["dropouts"]:
        assert any(body == {"state": "offline"} for _, body in status), "a silent drop publishes the last will"
    assert {device for device, body in status if body == {"state": "online"}} == {f"w{k}" for k in range(20)}
