"""The hub's MQTT 3.1.1 codec: the broker's stream cut anywhere, and malformed, oversized and hostile packets."""

from __future__ import annotations

import asyncio
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mosquitto import running_broker
from connectors.mqtt.codec import (
    DISCONNECT,
    MAX_CONTROL,
    PINGREQ,
    ProtocolError,
    Reader,
    connect_packet,
    length,
    pubacks,
    publish_packet,
    subscribe_packet,
)
from connectors.mqtt.transport import Transport
from loadtest.server import free_port

MAX = 64 * 1024


def _publish(topic: str, payload: bytes, packet_id: int = 0, qos: int = 1) -> bytes:
    """A PUBLISH as the broker writes it (QoS 0 has no packet id)."""
    head = struct.pack("!H", len(topic.encode())) + topic.encode() + (struct.pack("!H", packet_id) if qos else b"")
    return bytes((0x30 | qos << 1,)) + length(len(head) + len(payload)) + head + payload


def _feed(reader: Reader, stream: bytes, cuts: list[int]) -> list:
    out, at = [], 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        if cut > at:
            out += reader.feed(stream[at:cut])
            at = cut
    return out


messages = st.lists(
    st.tuples(
        st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40),
        st.binary(max_size=300),
        st.integers(1, 0xFFFF),
        st.sampled_from([0, 1]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(0, 20_000), max_size=40), st.integers(0, 0x7FFF))
def test_publishes_cut_anywhere_come_out_whole_in_order_with_their_ids(sent, cuts, generation):
    stream = b"".join(_publish(t, p, i, q) + b"\xd0\x00" for t, p, i, q in sent)  # a PINGRESP after each
    reader = Reader(MAX, tag=generation << 16)
    got = _feed(reader, stream, cuts)
    assert got == [(t, p, (generation << 16 | i) if q else 0, q) for t, p, i, q in sent]
    assert reader.control == [(0xD0, b"")] * len(sent)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000), st.lists(st.integers(0, 2_000), max_size=20))
def test_random_bytes_either_parse_or_raise_protocol_error_and_never_anything_else(stream, cuts):
    reader = Reader(MAX_CONTROL)
    try:
        for topic, payload, mid, qos in _feed(reader, stream, cuts):
            assert isinstance(topic, str) and "\x00" not in topic and isinstance(payload, bytes)
            assert qos in (0, 1) and (mid > 0) == (qos == 1)
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "more than 4 bytes"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x32\x04\x00\x09ab", "runs past its end"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
        (b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
        (b"\x30\x04\x00\x02a\x00", "U\\+0000"),
        (b"\x90" + length(MAX_CONTROL + 1), "control packet"),
    ],
)
def test_malformed_packets_are_refused_naming_the_fault(packet, why):
    with pytest.raises(ProtocolError, match=why):
        Reader(MAX).feed(packet)


def test_a_publish_past_the_limit_is_read_past_not_held_and_the_stream_goes_on():
    reader = Reader(MAX, tag=3 << 16)
    huge = _publish("arena/v1/devices/d1/telemetry", b"x" * (10 * MAX), 7)
    after = _publish("arena/v1/devices/d2/telemetry", b"ok", 8)
    stream = huge + after
    got = [m for at in range(0, len(stream), 4_096) for m in reader.feed(stream[at : at + 4_096])]
    assert reader.oversized == [
        ("arena/v1/devices/d1/telemetry", len(huge) - 1 - len(length(10 * MAX)), 3 << 16 | 7, 1)
    ]
    assert got == [("arena/v1/devices/d2/telemetry", b"ok", 3 << 16 | 8, 1)]
    assert reader._buffered < 2 * 4_096, "the oversized payload was buffered"


def test_a_claimed_length_of_256_mb_holds_no_memory_and_its_header_alone_waits():
    reader = Reader(MAX)
    assert reader.feed(b"\x32" + length(268_435_455) + b"\x00") == []  # the topic's length, cut in two
    assert reader.feed(b"\x01t\x00\x05" + b"y" * 1000) == []
    assert reader.oversized == [("t", 268_435_455, 5, 1)]
    assert reader._skip == 268_435_455 - 2 - 1 - 2 - 1000 and not reader._chunks


def test_the_packets_the_hub_writes_are_framed_as_mqtt_3_1_1_says():
    assert connect_packet("hub", username="u", password="p", keepalive=30) == (
        b"\x10\x15\x00\x04MQTT\x04\xc0\x00\x1e\x00\x03hub\x00\x01u\x00\x01p"
    )
    assert connect_packet("hub", username=None, password=None, keepalive=30, clean=True)[9] == 0x02
    assert subscribe_packet(1, ["a/+"]) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert publish_packet("t", b"xy", 258) == b"\x32\x07\x00\x01t\x01\x02xy"
    assert publish_packet("t", b"", 1, dup=True)[0] == 0x3A
    assert pubacks([1, 0xFFFF]) == b"\x40\x02\x00\x01\x40\x02\xff\xff"
    assert (PINGREQ, DISCONNECT) == (b"\xc0\x00", b"\xe0\x00")
    with pytest.raises(ValueError, match="65,535"):
        publish_packet("t" * 70_000, b"", 1)
    with pytest.raises(ValueError, match="remaining length"):
        length(268_435_456)


async def _broker_that_says(answers: list[bytes], seen: list[bytes], then: bytes = b"") -> tuple[asyncio.Server, int]:
    """A hostile 'broker': it answers each of the hub's first writes with the next of ``answers``, a moment
    later sends ``then``, and records what the hub sent."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answer in answers:
                seen.append(await reader.read(1024))
                writer.write(answer)
                await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(then)
            while data := await reader.read(1024):
                seen.append(data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    port = free_port()
    return await asyncio.start_server(session, "127.0.0.1", port), port


async def test_a_broker_that_sends_garbage_is_dropped_and_the_hub_tries_again():
    seen: list[bytes] = []
    server, port = await _broker_that_says([b"\x20\x02\x00\x00", b"\x90\x03\x00\x01\x01"], seen, then=b"\x36\x00")
    transport = Transport(
        "127.0.0.1", port, "hub-x", username=None, password=None, topics=["a/+"],
        on_messages=lambda messages: None, on_oversized=lambda *_: None, retry_delay=0.05, max_packet=MAX,
    )  # fmt: skip
    async with server:
        await transport.start(timeout=5)  # CONNACK and SUBACK came, then QoS 3: the link drops
        deadline = asyncio.get_running_loop().time() + 10
        while len([s for s in seen if s.startswith(b"\x10")]) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the hub did not connect again"
            await asyncio.sleep(0.02)
        await transport.close(graceful=False)
    assert seen[0].startswith(connect_packet("hub-x", username=None, password=None, keepalive=30))


async def test_a_refused_connect_says_why():
    server, port = await _broker_that_says([b"\x20\x02\x00\x05"], [])
    transport = Transport(
        "127.0.0.1", port, "hub-x", username="u", password="bad", topics=["a/+"],
        on_messages=lambda messages: None, on_oversized=lambda *_: None, retry_delay=0.05, max_packet=MAX,
    )  # fmt: skip
    async with server:
        with pytest.raises(ConnectionError, match="not authorized"):
            await transport.start(timeout=5)


async def test_acks_of_a_connection_that_is_gone_are_not_written_on_the_next(tmp_path):
    """The broker's persistent session redelivers what was not acked; an ack for the old link's ids stays unsent."""
    port = free_port()
    got: list = []
    with running_broker(tmp_path / "broker", port, None, None):
        hub = Transport(
            "127.0.0.1", port, f"hub-{uuid.uuid4().hex[:6]}", username=None, password=None, topics=["t/+"],
            on_messages=got.extend, on_oversized=lambda *_: None, retry_delay=0.05, max_packet=MAX,
        )  # fmt: skip
        device = Transport(
            "127.0.0.1", port, f"dev-{uuid.uuid4().hex[:6]}", username=None, password=None, topics=[],
            on_messages=lambda messages: None, on_oversized=lambda *_: None, retry_delay=0.05, max_packet=MAX,
        )  # fmt: skip
        await hub.start(timeout=5)
        await device.start(timeout=5)
        try:
            device.publish("t/1", b"one")
            await _until(lambda: len(got) == 1)
            ((_, _, first_mid, _),) = got
            assert hub._link is not None and hub._link.transport is not None
            hub._link.transport.abort()  # the link drops before the ack: the broker keeps the message
            await _until(lambda: len(got) == 2)  # the same session, its message again
            assert got[1][:2] == ("t/1", b"one") and got[1][2] != first_mid and got[1][2] & 0xFFFF == first_mid & 0xFFFF
            hub.ack([(first_mid, 1)])  # meant for the dead link: not written
            assert not hub._acks
            hub.ack([(got[1][2], 1)])
            assert hub._acks == [first_mid & 0xFFFF]
        finally:
            await device.close(graceful=True)
            await hub.close(graceful=True)


async def _until(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
