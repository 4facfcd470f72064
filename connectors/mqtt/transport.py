"""The hub's MQTT connection: an asyncio protocol on the hub's own loop, its persistent session, manual acks.

One connection to one broker, MQTT 3.1.1, ``clean_session`` off: the broker keeps the
session and redelivers what the hub has not acknowledged when it connects again. Each
socket read is cut into packets at once (``codec.Reader``) and its PUBLISHes handed on
together; the acks asked for while they are handled go out in one write. The hub keeps
its 30 s keep-alive, and reconnects by itself (0.5 s, doubling to 10 s between tries).

A mid carries the connection's number above its 16-bit packet id: an ack that arrives
after the connection it was meant for is gone is not written on the next one (where the
id may name another message); the broker redelivers that message, and ingestion is
idempotent, so it is counted once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from connectors.mqtt.codec import (
    CONNACK,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    SUBACK,
    Message,
    ProtocolError,
    Reader,
    connect_packet,
    pubacks,
    publish_packet,
    subscribe_packet,
)

__all__ = ["Message", "Transport"]

log = logging.getLogger(__name__)

KEEPALIVE = 30  # seconds
MAX_UNSENT = 16_384  # downlink messages waiting for the broker's PUBACK; more are dropped, counted
_CONNACK_REFUSED = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class _Refused(ConnectionError):
    pass


class _Link(asyncio.Protocol):
    """The socket of one connection; everything it reads goes to its transport."""

    def __init__(self, owner: Transport, reader: Reader) -> None:
        self.owner, self.reader = owner, reader
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.heard = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        try:
            messages = self.reader.feed(data)
        except ProtocolError as error:
            log.error("mqtt broker %s:%s sent a malformed packet (%s): reconnecting", *self.owner.address, error)
            assert self.transport is not None
            self.transport.abort()
            return
        self.owner._received(self, messages)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner._lost(self)


class Transport:
    """``on_messages`` gets what one socket read brought, on the loop; ``on_oversized(topic, size, mid, qos)``
    a PUBLISH past ``max_packet``, never held whole; ``topics`` are subscribed (QoS 1) on each connect."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None,
        password: str | None,
        topics: list[str],
        on_messages: Callable[[list[Message]], None],
        on_oversized: Callable[[str, int, int, int], None],
        retry_delay: float,
        max_packet: int,
    ) -> None:
        self.host, self.port, self.topics = host, port, topics
        self.client_id, self.username = client_id, username
        self.retry_delay = retry_delay
        self.max_packet = max_packet
        self.failed_reconnects = 0
        self.unsent = 0  # downlink messages dropped: too many waiting for the broker
        self._hello = connect_packet(client_id, username=username, password=password, keepalive=KEEPALIVE)
        self._on_messages, self._on_oversized = on_messages, on_oversized
        self._link: _Link | None = None
        self._generation = 0  # the connection's number, above each mid's packet id
        self._answers: dict[int, asyncio.Future] = {}  # CONNACK (key 0) and SUBACK by packet id
        self._acks: list[int] = []  # packet ids to acknowledge, written once per turn of the loop
        self._outgoing: dict[int, bytes] = {}  # downlink packet id → PUBLISH until the broker's PUBACK
        self._next_id = 0
        self._said = 0.0  # when the hub last wrote: PINGREQ when quiet for half the keep-alive
        self._housekeeper: asyncio.Task | None = None
        self._closing = False

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def is_connected(self) -> bool:
        return self._link is not None and self._link.transport is not None

    async def start(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._closing = False
        deadline = loop.time() + timeout
        while True:
            try:
                await self._connect(max(0.1, deadline - loop.time()))
                break
            except _Refused:
                raise
            except (OSError, TimeoutError) as error:
                if loop.time() > deadline:
                    raise ConnectionError(f"no MQTT broker answered on {self.host}:{self.port}: {error}") from None
                await asyncio.sleep(0.2)
        self._housekeeper = asyncio.ensure_future(self._housekeeping())

    async def close(self, graceful: bool, timeout: float = 10.0) -> None:
        """``graceful``: the acks still queued are written, then DISCONNECT; else the connection just
        drops and the broker keeps the session's unacknowledged messages for the next hub."""
        self._closing = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            await asyncio.gather(self._housekeeper, return_exceptions=True)
            self._housekeeper = None
        link = self._link
        if link is None or link.transport is None:
            self._link = None
            return
        if graceful:
            self._flush_acks(link)
        self._link = None
        if graceful:
            link.transport.write(DISCONNECT)
            link.transport.close()
            try:
                await asyncio.wait_for(asyncio.shield(link.lost), timeout)
                return
            except TimeoutError:
                pass
        if link.transport is not None:
            link.transport.abort()

    def publish(self, topic: str, payload: bytes | str) -> None:
        """At QoS 1: kept until the broker acknowledges it, sent again after a reconnect."""
        if len(self._outgoing) >= MAX_UNSENT:
            self.unsent += 1
            log.warning("mqtt downlink to %s dropped: %d messages wait for the broker", topic, MAX_UNSENT)
            return
        while True:
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._outgoing:
                break
        body = payload.encode() if isinstance(payload, str) else payload
        packet = publish_packet(topic, body, self._next_id)
        self._outgoing[self._next_id] = packet
        if self.is_connected():
            self._write(packet)

    def ack(self, messages: list[tuple[int, int]]) -> None:
        """Acknowledge ``(mid, qos)``s: written at the end of this turn of the loop, with the others asked for."""
        generation = self._generation
        ids = [mid & 0xFFFF for mid, qos in messages if qos and mid >> 16 == generation]
        if ids and self.is_connected():
            if not self._acks:
                asyncio.get_running_loop().call_soon(self._flush_acks, self._link)
            self._acks += ids

    # -- the connection ----------------------------------------------------------

    async def _connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._generation = self._generation % 0x7FFF + 1
        reader = Reader(self.max_packet, tag=self._generation << 16)
        self._acks = []
        connack = self._answers[0] = loop.create_future()
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: _Link(self, reader), self.host, self.port), timeout
        )
        self._link = link
        try:
            self._write(self._hello)
            code = await asyncio.wait_for(connack, timeout)
            if code:
                raise _Refused(
                    f"MQTT broker {self.host}:{self.port} refused the hub: {_CONNACK_REFUSED.get(code, code)}"
                )
            if self.topics:
                suback = self._answers[1] = loop.create_future()
                self._write(subscribe_packet(1, self.topics))
                granted = await asyncio.wait_for(suback, timeout)
                for topic, code in zip(self.topics, granted):
                    if code == 0x80:
                        log.error("mqtt broker %s:%s refused the subscription %s", self.host, self.port, topic)
            for packet in self._outgoing.values():  # the broker may not have had them
                self._write(_dup(packet))
        except BaseException:
            self._answers.clear()
            if link.transport is not None:
                link.transport.abort()
            self._link = None
            raise

    async def _housekeeping(self) -> None:
        """The keep-alive, and a new connection (the same session) after a lost one."""
        pause = self.retry_delay
        while True:
            link = self._link
            if link is not None and link.transport is not None:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                if now - link.heard > KEEPALIVE * 1.5:
                    log.warning("mqtt broker %s:%s silent for %d s: reconnecting", self.host, self.port, KEEPALIVE)
                    if link.transport is not None:
                        link.transport.abort()
                elif now - self._said >= KEEPALIVE / 2:
                    self._write(PINGREQ)
                pause = self.retry_delay
                continue
            await asyncio.sleep(pause)
            try:
                await self._connect(10.0)
            except (OSError, TimeoutError) as error:  # a refusal (_Refused) is an OSError too
                self.failed_reconnects += 1
                pause = min(pause * 2, 10.0)
                log.warning("mqtt broker %s:%s unreachable (%s); again in %.1f s", self.host, self.port, error, pause)

    def _write(self, packet: bytes) -> None:
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.write(packet)
            self._said = time.monotonic()

    def _flush_acks(self, link: _Link | None) -> None:
        acks, self._acks = self._acks, []
        if acks and link is self._link:
            self._write(pubacks(acks))

    # -- what the link read ------------------------------------------------------

    def _received(self, link: _Link, messages: list[Message]) -> None:
        reader = link.reader
        if reader.control:
            control, reader.control = reader.control, []
            for first, body in control:
                self._control(first, body)
        if reader.oversized:
            oversized, reader.oversized = reader.oversized, []
            for message in oversized:
                self._on_oversized(*message)
        if messages and not self._closing:
            self._on_messages(messages)

    def _control(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBACK and len(body) == 2:
            self._outgoing.pop(body[0] << 8 | body[1], None)
        elif kind == CONNACK and len(body) == 2:
            answer = self._answers.pop(0, None)
            if answer is not None and not answer.done():
                answer.set_result(body[1])
        elif kind == SUBACK and len(body) >= 2:
            answer = self._answers.pop(body[0] << 8 | body[1], None)
            if answer is not None and not answer.done():
                answer.set_result(list(body[2:]))
        # PINGRESP: being heard is all it is for

    def _lost(self, link: _Link) -> None:
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(ConnectionError("the connection to the broker closed"))
        self._answers.clear()
        if link is self._link:
            self._acks = []
            if not self._closing:
                log.warning("mqtt connection to %s:%s lost; reconnecting", self.host, self.port)


def _dup(packet: bytes) -> bytes:
    return bytes((packet[0] | 0x08,)) + packet[1:]
