"""The device side of MQTT 3.1.1 on raw asyncio transports, for swarms of tens of thousands.

A swarm needs one connection per device (the broker's ACL keys on the username),
and paho's client costs about 190 µs of CPU per device-second once its packet
machinery, locks and per-client bookkeeping are counted (5,000 devices took 0.95
of a core, docs/benchmarks.md). A device of a load test only ever sends CONNECT
(with its last will), PUBLISH at QoS 1 and DISCONNECT, and reads CONNACK, PUBACK
and PINGRESP: those few packets are framed here, and each connection is an
``asyncio.Protocol`` on the swarm's one event loop (uvloop when installed).

This is load-generation code, not a client library: it does not subscribe, resend
unacknowledged messages (the hub's loss tests do that with paho), or speak MQTT 5.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from connectors.mqtt import codec
from connectors.mqtt.codec import length, string

__all__ = ["DISCONNECT", "Link", "connect_packet", "publish_packet", "topic"]

DISCONNECT = b"\xe0\x00"
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PINGRESP = 0x10, 0x20, 0x30, 0x40, 0xD0


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_retain: bool = True,
    keepalive: int = 60,
    clean: bool = True,
) -> bytes:
    """CONNECT, MQTT 3.1.1, as a device sends it (the hub's codec, with a device's defaults)."""
    return codec.connect_packet(client_id, username=username, password=password, keepalive=keepalive, clean=clean,
                                will_topic=will_topic, will_payload=will_payload, will_retain=will_retain)  # fmt: skip


def publish_packet(topic: bytes, payload: bytes, packet_id: int, *, retain: bool = False) -> bytes:
    """PUBLISH at QoS 1; ``topic`` is the already length-prefixed topic (``_string``)."""
    body_length = len(topic) + 2 + len(payload)
    return b"".join(
        (
            bytes((_PUBLISH | 0x02 | (0x01 if retain else 0),)),
            length(body_length),
            topic,
            packet_id.to_bytes(2),
            payload,
        )
    )


def topic(name: str) -> bytes:
    """A topic framed once, for every PUBLISH on it."""
    return string(name)


class Link(asyncio.Protocol):
    """One device's connection. It calls back on CONNACK and on loss, and counts PUBACKs.

    ``on_connack(code)``, ``on_ack()`` and ``on_lost()`` are plain callables: the
    swarm keeps its counters in them. Incoming PUBLISH packets (a downlink the
    device did not subscribe to cannot arrive; a retained one might) are skipped.
    """

    __slots__ = ("transport", "_buffer", "_hello", "on_connack", "on_ack", "on_lost", "_next_id")

    def __init__(
        self,
        hello: bytes,
        on_connack: Callable[[int], None],
        on_ack: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self._buffer = b""
        self._hello = hello
        self.on_connack, self.on_ack, self.on_lost = on_connack, on_ack, on_lost
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        transport.write(self._hello)

    def publish(self, topic: bytes, payload: bytes, *, retain: bool = False) -> None:
        self._next_id = self._next_id % 0xFFFF + 1  # 1 … 65,535
        assert self.transport is not None
        self.transport.write(publish_packet(topic, payload, self._next_id, retain=retain))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        end, at = len(buffer), 0
        while end - at >= 2:
            kind = buffer[at]
            length, shift, header = 0, 0, at + 1
            while True:  # the remaining length
                if header >= end:
                    self._buffer = buffer[at:]
                    return
                digit = buffer[header]
                length |= (digit & 0x7F) << shift
                header += 1
                if not digit & 0x80:
                    break
                shift += 7
            if header + length > end:
                break
            kind &= 0xF0
            if kind == _PUBACK:
                self.on_ack()
            elif kind == _CONNACK:
                self.on_connack(buffer[header + 1] if length >= 2 else 255)
            at = header + length  # PINGRESP, PUBLISH: nothing to do
        self._buffer = buffer[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()

    def close(self, *, graceful: bool = True) -> None:
        """DISCONNECT and close; ``graceful=False`` drops the link silently (the broker sends the will)."""
        if self.transport is None:
            return
        if graceful:
            self.transport.write(DISCONNECT)
            self.transport.close()
        else:
            self.transport.abort()
