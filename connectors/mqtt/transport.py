"""paho on the hub's own event loop: one MQTT connection, its persistent session, manual acks.

paho runs in its external-loop mode (loop_read/loop_write/loop_misc driven by the loop's
add_reader and add_writer), not on a thread of its own: no thread hop per message, no lock
contention with the loop, and no wake-up byte through a socket pair for each acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["Message", "Transport"]

log = logging.getLogger(__name__)

Message = tuple[str, bytes | bytearray, int, int]  # (topic, payload, mid, qos)
_READ_BURST = 512  # packets read per readable event at most, so other work gets its turn


class Transport:
    """``on_messages`` gets what one read burst brought, on the loop; ``topics`` are subscribed on each connect."""

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
        retry_delay: float,
    ) -> None:
        self.host, self.port, self.topics = host, port, topics
        self.retry_delay = retry_delay
        self._on_messages = on_messages
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: list[Message] = []  # read by paho, handed on once per burst
        self._woken = False
        self._housekeeper: asyncio.Future | None = None
        self._connected: asyncio.Event | None = None
        self.failed_reconnects = 0
        # MQTT 3.1.1 with a persistent session (clean_session off): paho parses a v5
        # PUBLISH's properties into an object per message, which took half the hub's CPU.
        # The broker keeps the session (persistent_client_expiration) and sets the
        # window of unacknowledged messages (max_inflight_messages).
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        self.client.manual_ack_set(True)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    async def start(self, timeout: float) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        client = self.client
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._wrote
        deadline = loop.time() + timeout
        while True:
            try:
                client.connect(self.host, self.port, keepalive=30)
                break
            except OSError as error:
                if loop.time() > deadline:
                    raise ConnectionError(f"no MQTT broker on {self.host}:{self.port}: {error}") from None
                await asyncio.sleep(0.2)
        self._housekeeper = asyncio.ensure_future(self._housekeeping())
        try:
            await asyncio.wait_for(self._connected.wait(), max(0.1, deadline - loop.time()))
        except TimeoutError:
            await self.close(graceful=False)
            raise ConnectionError(f"no MQTT broker answered on {self.host}:{self.port} within {timeout}s") from None

    async def close(self, graceful: bool, timeout: float = 10.0) -> None:
        """``graceful``: the acks still queued are written, then DISCONNECT; else the connection just
        drops and the broker keeps the session's unacknowledged messages for the next hub."""
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            await asyncio.gather(self._housekeeper, return_exceptions=True)
            self._housekeeper = None
        sock = self.client.socket()
        if sock is None or sock.fileno() == -1:  # never connected, or already closed here
            return
        if graceful:  # paho closes the socket after DISCONNECT
            self.client.disconnect()
            assert self._loop is not None
            deadline = self._loop.time() + timeout
            while self.client.socket() is not None and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
            if self.client.socket() is None:
                return
        self._socket_close(self.client, None, sock)
        sock.close()

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1)

    def ack(self, mid: int, qos: int) -> None:
        self.client.ack(mid, qos)

    async def _housekeeping(self) -> None:
        """The keep-alive checked each second, and a new connection (the same session) after a lost one."""
        pause = self.retry_delay
        while True:
            await asyncio.sleep(1.0 if self.client.socket() is not None else pause)
            if self.client.socket() is not None:
                self.client.loop_misc()
                pause = self.retry_delay
                continue
            try:
                self.client.reconnect()
            except OSError as error:
                self.failed_reconnects += 1
                pause = min(pause * 2, 10.0)
                log.warning("mqtt broker %s:%s unreachable (%s); again in %.1f s", self.host, self.port, error, pause)

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
            if self.client.loop_read() != mqtt.MQTT_ERR_SUCCESS or len(self._inbox) == before:
                return

    def _writable(self) -> None:
        self.client.loop_write()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("mqtt connection refused: %s", reason)
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        assert self._connected is not None
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Handed on once per read burst (one loop_read reads all the packets there are).
        self._inbox.append((message.topic, message.payload, message.mid, message.qos))
        if not self._woken:
            self._woken = True
            assert self._loop is not None
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._woken = False
        inbox, self._inbox = self._inbox, []
        self._on_messages(inbox)
