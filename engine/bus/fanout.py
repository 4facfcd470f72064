"""What every bus transport shares: validation, encoding, and the fan-out to local subscribers.

Each process keeps one link to the transport for all of its local subscribers and
fans every event out to their bounded queues. A subscriber that falls behind loses
its oldest events and reads ``{"type": "lagged"}`` where they were, so one slow
client never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from engine.codec import pack, unpack

__all__ = ["FanoutBus", "Subscription"]

log = logging.getLogger(__name__)

_GAP = None  # in a subscriber's queue: events were lost here
_MAX_USER_ID = 256


class Subscription:
    """One local subscriber: a bounded queue of packed events, read as an async iterator.

    Events stay packed until read, so each reader decodes its own copy and
    events dropped for lag are never decoded.
    """

    def __init__(self, user_id: str, size: int):
        self.user_id = user_id
        # Until the transport confirms that whatever arrives next was sent after
        # it joined, it receives nothing: events published before are not its news.
        self.live = False
        self._size = size
        self._queue: deque[bytes | None] = deque()
        self._events = 0
        self._closed = False
        self._ready = asyncio.Event()

    def put(self, data: bytes) -> None:
        if self._events >= self._size:
            while self._queue[0] is _GAP:
                self._queue.popleft()
            self._queue.popleft()
            self._events -= 1
            if not self._queue or self._queue[0] is not _GAP:
                self._queue.appendleft(_GAP)
        self._queue.append(data)
        self._events += 1
        self._ready.set()

    def lag(self) -> None:
        if not self._queue or self._queue[-1] is not _GAP:
            self._queue.append(_GAP)
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict:
        while True:
            while not self._queue:
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
                await self._ready.wait()
            data = self._queue.popleft()
            if data is _GAP:
                return {"type": "lagged"}
            self._events -= 1
            try:
                event = unpack(data)
            except ValueError as error:  # not ours: someone else wrote to the channel
                log.warning("bus: dropped an undecodable event for %r: %s", self.user_id, error)
                continue
            if isinstance(event, dict):
                return event
            log.warning("bus: dropped a %s event for %r: events are maps", type(event).__name__, self.user_id)


class _Fanout:
    """The local subscribers of each user."""

    def __init__(self, queue_size: int):
        self.queue_size = queue_size
        self._by_user: dict[str, set[Subscription]] = {}

    def add(self, user_id: str) -> Subscription:
        subscription = Subscription(user_id, self.queue_size)
        self._by_user.setdefault(user_id, set()).add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> bool:
        """Drop one subscriber; True when it was its user's last."""
        subscription.close()
        subscribers = self._by_user.get(subscription.user_id)
        if subscribers is None:
            return False
        subscribers.discard(subscription)
        if subscribers:
            return False
        del self._by_user[subscription.user_id]
        return True

    def deliver(self, user_id: str, data: bytes) -> None:
        for subscription in self._by_user.get(user_id, ()):
            if subscription.live:
                subscription.put(data)

    def lag(self) -> None:
        """Events may have been lost for everyone (the transport broke)."""
        for subscribers in self._by_user.values():
            for subscription in subscribers:
                if subscription.live:
                    subscription.lag()

    def close(self) -> None:
        for subscribers in self._by_user.values():
            for subscription in subscribers:
                subscription.close()
        self._by_user.clear()

    def users(self) -> list[str]:
        return sorted(self._by_user)

    def __len__(self) -> int:
        return len(self._by_user)


def _check_user(user_id: Any) -> None:
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a string, not {type(user_id).__name__}")
    if not 0 < len(user_id) <= _MAX_USER_ID:
        raise ValueError(f"user_id must have 1 to {_MAX_USER_ID} characters, got {len(user_id)}")
    try:
        user_id.encode()
    except UnicodeEncodeError:
        raise ValueError("user_id must be valid Unicode text (no lone surrogates)") from None


class FanoutBus(ABC):
    """What both buses share: validation, encoding and the local fan-out.

    A subclass moves packed events between processes (``_send``) and hears
    when a local subscriber joins (``_join``, returning once it is live: it
    will receive everything published afterwards) or leaves (``_leave``).
    """

    def __init__(self, queue_size: int, max_event_bytes: int):
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be at least 1, got {max_event_bytes}")
        self.max_event_bytes = max_event_bytes
        self._fanout = _Fanout(queue_size)

    async def publish(self, user_id: str, event: dict) -> None:
        await self._send(user_id, self._packed(user_id, event))

    async def publish_many(self, events: list[tuple[str, dict]]) -> None:
        """Several events, each to its user, in one move between processes where the transport can
        (a fan-out of a notification to 100,000 inboxes is one call, not 100,000)."""
        await self._send_many([(user_id, self._packed(user_id, event)) for user_id, event in events])

    def _packed(self, user_id: str, event: dict) -> bytes:
        _check_user(user_id)
        if not isinstance(event, dict):
            raise TypeError(f"an event must be a dict, not {type(event).__name__}")
        data = pack(event)
        if len(data) > self.max_event_bytes:
            raise ValueError(f"an event of {len(data)} bytes is over the {self.max_event_bytes}-byte limit")
        return data

    async def _send_many(self, events: list[tuple[str, bytes]]) -> None:
        for user_id, data in events:
            await self._send(user_id, data)

    @asynccontextmanager
    async def subscribe(self, user_id: str) -> AsyncIterator[AsyncIterator[dict]]:
        _check_user(user_id)
        subscription = self._fanout.add(user_id)
        try:
            await self._join(subscription)
            yield subscription
        finally:
            await self._leave(subscription, self._fanout.remove(subscription))

    @abstractmethod
    async def _send(self, user_id: str, data: bytes) -> None: ...

    @abstractmethod
    async def _join(self, subscription: Subscription) -> None: ...

    @abstractmethod
    async def _leave(self, subscription: Subscription, last: bool) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...
