"""Domain events out to NATS JetStream, for services and the lake outside the engine.

The relay (``engine.relay``) hands this stream every event of the outbox in position order.
Each becomes one message on ``arena.events.<source kind>.<event type>`` in the stream
``ARENA_EVENTS``, its payload the event's fields (msgpack), its headers the rest:

- ``Nats-Msg-Id``: the event's id (``kind/entity/seq/n``). JetStream drops a message whose id
  it saw within the duplicate window, so a batch the relay sends again after a crash is
  stored once.
- ``Arena-Position``, ``Arena-Type``, ``Arena-Version``, ``Arena-Source``, ``Arena-At`` and
  ``Arena-User`` (the user the event is about, when it is about one: erasure finds it).

Messages are published asynchronously, up to ``window`` awaiting their acks at once, in
position order; a batch returns once JetStream acknowledged all of it, and fails (to be sent
again from the relay's cursor) if any was refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import nats
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from engine.events import EventRecord

__all__ = ["JetStream", "open_stream", "STREAM", "SUBJECTS"]

log = logging.getLogger(__name__)

STREAM = "ARENA_EVENTS"
SUBJECTS = "arena.events"
_DUPLICATE_WINDOW_S = 2 * 60 * 60  # a relay down for less than this never stores an event twice


def subject(record: EventRecord) -> str:
    return f"{SUBJECTS}.{record.source_kind}.{record.type}"


def headers(record: EventRecord) -> dict[str, str]:
    found = {
        "Nats-Msg-Id": record.id,
        "Arena-Position": str(record.position),
        "Arena-Type": record.type,
        "Arena-Version": str(record.version),
        "Arena-Source": f"{record.source_kind}/{record.source_id}",
        "Arena-At": repr(record.at),
    }
    if record.user_id is not None:
        found["Arena-User"] = record.user_id
    return found


class JetStream:
    name = "nats"

    def __init__(self, url: str, *, stream: str = STREAM, window: int = 4_096, timeout: float = 10.0) -> None:
        self.url = url
        self.stream = stream
        self.window = window
        self.timeout = timeout
        self._nc: nats.NATS | None = None
        self._js: Any = None
        self.published = 0

    async def _context(self):
        if self._js is None or self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                self.url, connect_timeout=self.timeout, max_reconnect_attempts=-1, allow_reconnect=True
            )
            js = self._nc.jetstream(publish_async_max_pending=self.window)
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[f"{SUBJECTS}.>"],
                        duplicate_window=_DUPLICATE_WINDOW_S,
                    )
                )
            self._js = js
        return self._js

    async def publish(self, records: Sequence[EventRecord]) -> None:
        js = await self._context()
        acks = []
        for record in records:
            acks.append(
                await js.publish_async(
                    subject(record), record.body, wait_stall=self.timeout, stream=self.stream, headers=headers(record)
                )
            )
        await asyncio.wait_for(asyncio.gather(*acks), self.timeout)
        self.published += len(records)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = self._js = None


def open_stream(url: str) -> JetStream:
    """The relay's opener (``serve.settings.Settings.streams``)."""
    return JetStream(url)
