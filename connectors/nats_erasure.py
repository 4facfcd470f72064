"""Erasure in the NATS JetStream stream (``connectors.nats_stream``): the eraser's ``stream`` part.

A JetStream message cannot be changed, only deleted, so every message that names the person goes:
in its subject, its headers (the event id: the events of their account carry its id) or its payload
(the user an event is about, or any field: who approved someone else's membership). The outbox keeps
the events that merely mention them, with the stand-in (``Store.erase_events``); the stream is a
transport with a retention of its own, not the record, and a consumer that needs those events whole
rebuilds from the outbox or the lake. Publishing a pseudonymised copy instead would put the event out
of position order, after the notice, under an id JetStream already saw.

The erasure notices (``account.erased`` about the person) stay: consumers outside Arena act on them.

One scan reads the stream from its first message to the last one there when the scan began, through
an ephemeral pull consumer that acknowledges nothing, ``batch`` messages at a time: memory holds one
batch and the sequences it deletes. A stream that does not exist holds nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from connectors.erasure import KEPT_EVENTS
from connectors.nats_stream import STREAM, decode
from engine.erasure import mentions

__all__ = ["StreamPart"]

log = logging.getLogger(__name__)

_IDLE_CONSUMER_S = 60.0  # the server drops the scan's consumer this long after a scan that died


class StreamPart:
    """The person's messages in one JetStream stream: deleted by ``erase``, listed by ``remnants``."""

    name = "stream"

    def __init__(self, url: str, *, stream: str = STREAM, batch: int = 1_000, timeout: float = 10.0) -> None:
        if not isinstance(stream, str) or not stream or any(c in stream for c in " .*>\t\r\n"):
            raise ValueError(f"a JetStream stream name is a word without spaces, dots or wildcards, got {stream!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.url = url
        self.stream = stream
        self.batch = batch
        self.timeout = timeout

    async def erase(self, user_id: str, stand_in: str) -> int:
        _check(user_id)
        deleted = 0
        async with self._jetstream() as js, aclosing(self._scan(js, user_id)) as found:
            async for batch in found:
                done = await asyncio.gather(*(self._delete(js, seq) for seq, _ in batch))
                deleted += sum(done)
        return deleted

    async def remnants(self, user_id: str) -> list[str]:
        _check(user_id)
        lines: list[str] = []
        async with self._jetstream() as js, aclosing(self._scan(js, user_id)) as found:
            async for batch in found:
                lines.extend(line for _, line in batch)
        return lines

    async def _delete(self, js: Any, seq: int) -> bool:
        try:
            return bool(await js.delete_msg(self.stream, seq))
        except NotFoundError:  # gone meanwhile: its retention ran out, or another run deleted it
            return False

    @asynccontextmanager
    async def _jetstream(self) -> AsyncIterator[Any]:
        # No reconnecting behind our back: a connection lost mid-scan fails the run, which the
        # eraser starts over (every step is idempotent).
        nc = await asyncio.wait_for(
            nats.connect(self.url, connect_timeout=self.timeout, allow_reconnect=False, error_cb=self._error),
            self.timeout,
        )
        try:
            yield nc.jetstream(timeout=self.timeout)
        finally:
            await nc.close()

    async def _error(self, error: Exception) -> None:
        log.warning("stream erasure, NATS at %s: %s", self.url, error)

    async def _scan(self, js: Any, user_id: str) -> AsyncGenerator[list[tuple[int, str]], None]:
        """The messages that name the person (not the notices), a batch at a time: (sequence, line)."""
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            return
        last = info.state.last_seq
        if not info.state.messages:
            return
        consumer = await js.add_consumer(
            self.stream,
            ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=_IDLE_CONSUMER_S,
                mem_storage=True,
                num_replicas=1,
            ),
        )
        sub = await js.pull_subscribe_bind(consumer=consumer.name, stream=self.stream)
        needle = user_id.encode("utf-8", "surrogatepass")
        try:
            while True:
                try:
                    messages = await sub.fetch(self.batch, timeout=self.timeout)
                except nats.errors.TimeoutError:
                    if (await sub.consumer_info()).num_pending == 0:
                        return  # the last messages went (deleted, or their retention ran out)
                    continue
                found, seq = [], 0
                for message in messages:
                    seq = message.metadata.sequence.stream
                    if seq > last:
                        break
                    line = _naming(message, user_id, needle)
                    if line is not None:
                        found.append((seq, f"message {seq} on {message.subject}: {line}"))
                if found:
                    yield found
                if seq >= last or (messages and messages[-1].metadata.num_pending == 0):
                    return
        finally:
            await sub.unsubscribe()
            try:
                await js.delete_consumer(self.stream, consumer.name)
            except NotFoundError:
                pass


def _check(user_id: object) -> None:
    if not isinstance(user_id, str):
        raise TypeError(f"a user id is a string, got {type(user_id).__name__}")
    if not user_id:
        raise ValueError("an empty user id names everyone")


def _naming(message: Any, user_id: str, needle: bytes) -> str | None:
    """What the message is, if it names the person and is not their erasure notice; else None."""
    data = message.data or b""
    named = user_id in message.subject or any(user_id in k or user_id in v for k, v in (message.headers or {}).items())
    if not named and needle not in data:  # most messages: no decoding
        return None
    try:
        event = decode(data)
    except (ValueError, TypeError):  # not one of ours: a message someone else published there
        return "(not an Arena event)"
    # The bytes matched somewhere: confirm on the decoded strings (a short id's bytes can be a number's).
    if not named and not mentions(event, user_id):
        return None
    if event["type"] in KEPT_EVENTS and event["user_id"] == user_id:
        return None
    return f"{event['type']!s:.80} {event['id']!s:.120}"
