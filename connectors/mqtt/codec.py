"""The hub's side of MQTT 3.1.1 on the wire: the packets it writes, and a reader that cuts the broker's stream.

Only what a subscriber with a persistent session needs: CONNECT, SUBSCRIBE, PUBLISH (QoS 0
and 1, both ways), PUBACK, PINGREQ and DISCONNECT. The reader takes whatever one socket
read brought and hands back every whole PUBLISH in it as ``(topic, payload, mid, qos)``,
with one bytes slice per payload and no object per packet besides that tuple: paho's
per-packet machinery was most of the hub's CPU (docs/mqtt.md, docs/benchmarks.md).

What the broker sends is checked as it is cut: a remaining length of more than four
bytes, a PUBLISH whose topic runs past its packet, QoS 3, packet id 0 at QoS 1, a topic
that is not UTF-8 or a control packet larger than any the broker has reason to send
raise ``ProtocolError``, and the connection is dropped (MQTT's answer to a malformed
packet). A PUBLISH larger than ``max_packet`` is not held in memory: its topic and id
are kept, the rest of it is read past, and it comes out in ``oversized``.
"""

from __future__ import annotations

import struct

__all__ = [
    "CONNACK",
    "DISCONNECT",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "SUBACK",
    "Message",
    "ProtocolError",
    "Reader",
    "connect_packet",
    "length",
    "pubacks",
    "string",
    "publish_packet",
    "subscribe_packet",
]

Message = tuple[str, bytes, int, int]  # (topic, payload, mid, qos)
Oversized = tuple[str, int, int, int]  # (topic, size in bytes, mid, qos)

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x90, 0xD0
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
MAX_CONTROL = 4_096  # CONNACK, PUBACK, SUBACK (a code per topic), PINGRESP: a few bytes each
_PUBACK_HEAD = 0x40020000  # a PUBACK is 4 bytes: 0x40, 2, and the packet id, big-endian


class ProtocolError(Exception):
    """The broker's stream is not MQTT 3.1.1: the connection is dropped and made again."""


def length(n: int) -> bytes:
    """MQTT's remaining length: 7 bits per byte, least significant first, at most 4 bytes."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"an MQTT packet's remaining length is 0 to 268,435,455, not {n}")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(value: str | bytes) -> bytes:
    """An MQTT UTF-8 string (or binary data): its length in two bytes, then the bytes."""
    data = value.encode() if isinstance(value, str) else value
    if len(data) > 0xFFFF:
        raise ValueError(f"an MQTT string holds at most 65,535 bytes, not {len(data)}")
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str,
    *,
    username: str | None,
    password: str | None,
    keepalive: int,
    clean: bool = False,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_retain: bool = True,
) -> bytes:
    """CONNECT at protocol level 4; ``clean=False`` resumes the broker's session of ``client_id``; the
    will, if any, at QoS 1 (a device's: the hub has none)."""
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will_topic is not None:
        flags |= 0x04 | 0x08 | (0x20 if will_retain else 0)
        payload += string(will_topic) + string(will_payload)
    if username is not None:
        flags |= 0x80
        payload += string(username)
        if password is not None:
            flags |= 0x40
            payload += string(password)
    body = string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) + payload
    return b"\x10" + length(len(body)) + body


def subscribe_packet(packet_id: int, topics: list[str], qos: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(string(t) + bytes((qos,)) for t in topics)
    return b"\x82" + length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int, *, dup: bool = False) -> bytes:
    """PUBLISH at QoS 1 (``dup``: sent again after a reconnect)."""
    head = string(topic) + struct.pack("!H", packet_id)
    return bytes((0x32 | (0x08 if dup else 0),)) + length(len(head) + len(payload)) + head + payload


def pubacks(packet_ids: list[int]) -> bytes:
    """One PUBACK per id, in one buffer: a read burst's acks go out in one write."""
    return struct.pack(f">{len(packet_ids)}I", *[_PUBACK_HEAD | i for i in packet_ids])


class Reader:
    """Cuts the broker's byte stream into packets. ``feed`` answers the whole PUBLISHes;
    other packets pile up in ``control`` as ``(first byte, body)``, too-large PUBLISHes in
    ``oversized``. ``tag`` is or'ed into each mid (the transport numbers its connections
    there, so an ack meant for an earlier connection is recognised)."""

    __slots__ = ("max_packet", "tag", "control", "oversized", "_chunks", "_buffered", "_need", "_skip")

    def __init__(self, max_packet: int, tag: int = 0) -> None:
        if max_packet < MAX_CONTROL:
            raise ValueError(f"max_packet is at least {MAX_CONTROL} bytes, not {max_packet}")
        self.max_packet, self.tag = max_packet, tag
        self.control: list[tuple[int, bytes]] = []
        self.oversized: list[Oversized] = []
        self._chunks: list[bytes] = []  # the start of a packet not yet whole
        self._buffered = 0
        self._need = 0  # bytes the packet at the head of _chunks needs in all
        self._skip = 0  # bytes of an oversized PUBLISH still to read past

    def feed(self, data: bytes) -> list[Message]:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data, self._skip = data[self._skip :], 0
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._need:
                return []  # a large packet, still coming: not joined again for each read
            data = b"".join(self._chunks)
            self._chunks, self._buffered, self._need = [], 0, 0
        out: list[Message] = []
        at, end, tag = 0, len(data), self.tag
        while at < end:
            if end - at < 2:
                return self._keep(data, at, 2, out)
            first = data[at]
            size = data[at + 1]
            header = at + 2
            if size & 0x80:  # a longer remaining length
                size &= 0x7F
                shift = 7
                while True:
                    if header >= end:
                        return self._keep(data, at, header - at + 1, out)
                    digit = data[header]
                    header += 1
                    size |= (digit & 0x7F) << shift
                    if not digit & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("a remaining length of more than 4 bytes")
            stop = header + size
            if first & 0xF0 != PUBLISH:
                if size > MAX_CONTROL:
                    raise ProtocolError(f"a control packet (type {first >> 4}) of {size} bytes")
                if stop > end:
                    return self._keep(data, at, stop - at, out)
                self.control.append((first, data[header:stop]))
                at = stop
                continue
            qos = (first >> 1) & 3
            if qos == 3:
                raise ProtocolError("a PUBLISH at QoS 3")
            if size > self.max_packet:
                # Its topic and id (at most 65,539 bytes) are kept; the rest is read past.
                if header + 2 > end:
                    return self._keep(data, at, header - at + 2, out)
                topic_end = header + 2 + (data[header] << 8 | data[header + 1])
                if topic_end + (2 if qos else 0) > stop:
                    raise ProtocolError("a PUBLISH whose topic runs past its end")
                if topic_end + 2 > end:
                    return self._keep(data, at, topic_end + 2 - at, out)
                mid = (data[topic_end] << 8 | data[topic_end + 1]) if qos else 0
                self.oversized.append((_topic(data, header + 2, topic_end), size, tag | mid, qos))
                if stop > end:
                    self._skip = stop - end
                    return out
                at = stop
                continue
            if stop > end:
                return self._keep(data, at, stop - at, out)
            topic_end = header + 2 + (data[header] << 8 | data[header + 1])
            if qos:
                payload_at = topic_end + 2
                if payload_at > stop:
                    raise ProtocolError("a PUBLISH whose topic runs past its end")
                mid = data[topic_end] << 8 | data[topic_end + 1]
                if not mid:
                    raise ProtocolError("a QoS 1 PUBLISH with packet id 0")
                out.append((_topic(data, header + 2, topic_end), data[payload_at:stop], tag | mid, qos))
            else:
                if topic_end > stop:
                    raise ProtocolError("a PUBLISH whose topic runs past its end")
                out.append((_topic(data, header + 2, topic_end), data[topic_end:stop], 0, 0))
            at = stop
        return out

    def _keep(self, data: bytes, at: int, need: int, out: list[Message]) -> list[Message]:
        rest = data[at:]
        self._chunks, self._buffered, self._need = [rest], len(rest), need
        return out


def _topic(data: bytes, start: int, end: int) -> str:
    try:
        topic = data[start:end].decode()
    except UnicodeDecodeError:
        raise ProtocolError("a PUBLISH topic that is not UTF-8") from None
    if "\x00" in topic:
        raise ProtocolError("a PUBLISH topic with U+0000 in it")
    return topic
