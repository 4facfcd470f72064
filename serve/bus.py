"""Live delivery of per-user events to whichever replica holds the user's open connections.

Each process keeps one link to the transport (a Redis pub/sub connection, or
one long poll of a Ray actor) for all of its local subscribers, and fans every
event out to their bounded queues. A subscriber that falls behind loses its
oldest events and reads ``{"type": "lagged"}`` where they were, so one slow
client never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from itertools import islice
from typing import Any, Protocol

import ray

from engine.codec import pack, unpack

__all__ = ["Bus", "RedisBus", "RayBus", "bus"]

log = logging.getLogger(__name__)

_CHANNEL = "arena:user:"
_GAP = None  # in a subscriber's queue: events were lost here
_MAX_USER_ID = 256


class Bus(Protocol):
    async def publish(self, user_id: str, event: dict) -> None:
        """Send ``event`` to every subscriber of ``user_id``, on any replica."""

    def subscribe(self, user_id: str) -> AbstractAsyncContextManager[AsyncIterator[dict]]:
        """Events of ``user_id`` published from now on, until the context exits."""

    async def aclose(self) -> None: ...


class _Subscription:
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

    def __aiter__(self) -> _Subscription:
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
        self._by_user: dict[str, set[_Subscription]] = {}

    def add(self, user_id: str) -> _Subscription:
        subscription = _Subscription(user_id, self.queue_size)
        self._by_user.setdefault(user_id, set()).add(subscription)
        return subscription

    def remove(self, subscription: _Subscription) -> bool:
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


class _FanoutBus(ABC):
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
        _check_user(user_id)
        if not isinstance(event, dict):
            raise TypeError(f"an event must be a dict, not {type(event).__name__}")
        data = pack(event)
        if len(data) > self.max_event_bytes:
            raise ValueError(f"an event of {len(data)} bytes is over the {self.max_event_bytes}-byte limit")
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
    async def _join(self, subscription: _Subscription) -> None: ...

    @abstractmethod
    async def _leave(self, subscription: _Subscription, last: bool) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...


class RedisBus(_FanoutBus):
    """Redis pub/sub: channel ``arena:user:{user_id}``, msgpack messages, one listening connection."""

    def __init__(self, redis_url: str, *, queue_size: int = 256, max_event_bytes: int = 64 * 1024):
        super().__init__(queue_size, max_event_bytes)
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._redis = redis.asyncio.Redis.from_url(redis_url)
        # The listener does not retry behind our back: the reader has to see a
        # broken connection to tell subscribers that events were lost.
        self._listener = redis.asyncio.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
        self._pubsub = self._listener.pubsub()
        self._commands = asyncio.Lock()  # (un)subscribes reach Redis in the order they were decided
        # PING token -> the join it confirms, or None: the resubscription after a lost connection
        self._pings: dict[bytes, tuple[_Subscription, asyncio.Future[None]] | None] = {}
        self._reader: asyncio.Task | None = None

    async def _send(self, user_id: str, data: bytes) -> None:
        await self._redis.publish(_CHANNEL + user_id, data)

    async def _join(self, subscription: _Subscription) -> None:
        joined = asyncio.get_running_loop().create_future()
        async with self._commands:
            # SUBSCRIBE again to a subscribed channel is harmless, and the PING
            # after it is answered once Redis has applied it.
            await self._pubsub.subscribe(_CHANNEL + subscription.user_id)
            await self._ping((subscription, joined))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="arena-bus-redis-reader")
        await joined

    async def _leave(self, subscription: _Subscription, last: bool) -> None:
        if not last:
            return
        try:
            async with self._commands:
                await self._pubsub.unsubscribe(_CHANNEL + subscription.user_id)
        except Exception as error:  # the channel stays subscribed: its messages find nobody here
            log.warning("bus: unsubscribe of %r failed: %s", subscription.user_id, error)

    async def _ping(self, waiter: tuple[_Subscription, asyncio.Future[None]] | None) -> None:
        # Redis answers a PING after the commands sent before it. Hold ``_commands``.
        token = os.urandom(8).hex().encode()
        self._pings[token] = waiter
        try:
            await self._pubsub.ping(token)
        except Exception:
            self._pings.pop(token, None)
            raise

    async def _resubscribe(self) -> None:
        async with self._commands:
            await self._pubsub.connect()  # redis-py subscribes again to every channel it had
            await self._ping(None)

    async def _read(self) -> None:
        pause = 0.1
        broken = False
        while True:
            try:
                if broken:
                    await self._resubscribe()
                    broken = False
                message = await self._pubsub.get_message(timeout=None)
            except Exception as error:
                log.warning("bus: Redis pub/sub connection lost (%s); reconnecting in %.1f s", error, pause)
                for waiter in self._pings.values():  # their PING died with the connection
                    if waiter is not None:
                        self._joined(*waiter)
                self._pings.clear()
                broken = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            if message is None:
                continue
            if message["type"] == "message":
                self._fanout.deliver(message["channel"][len(_CHANNEL) :].decode(), message["data"])
            elif message["type"] == "pong" and message["data"] in self._pings:
                waiter = self._pings.pop(message["data"])
                if waiter is None:  # subscribed again: what was published meanwhile is lost, here
                    self._fanout.lag()
                else:
                    self._joined(*waiter)

    @staticmethod
    def _joined(subscription: _Subscription, joined: asyncio.Future[None]) -> None:
        subscription.live = True
        if not joined.done():
            joined.set_result(None)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        self._fanout.close()
        await self._pubsub.aclose()
        await self._listener.aclose()
        await self._redis.aclose()


class _EventLog:
    """The Ray actor behind RayBus: the last ``capacity`` events of all users, numbered from 1."""

    def __init__(self, capacity: int):
        self._events: deque[tuple[int, str, bytes]] = deque(maxlen=capacity)
        self._seq = 0
        # A restarted actor numbers from 0 again; pollers notice by the new epoch.
        self._epoch = os.urandom(8).hex()
        self._waiting: dict[str, asyncio.Event] = {}  # poller -> its waiting poll's wake-up

    async def publish(self, user_id: str, data: bytes) -> None:
        self._seq += 1
        self._events.append((self._seq, user_id, data))
        for wake in self._waiting.values():
            wake.set()

    async def poll(
        self, poller: str, epoch: str | None, after: int, users: list[str], timeout: float
    ) -> tuple[str, int, list[tuple[int, str, bytes]], bool]:
        """Events of ``users`` numbered after ``after``, waiting up to ``timeout`` s for one.

        Answers ``(epoch, last number, events, lost)``; ``lost`` says events
        after ``after`` fell out of the log (or the log restarted) unseen.
        A first poll (no epoch) only learns where the log stands. A poll from
        a ``poller`` ends the one it had waiting: that one's caller moved on.
        """
        if epoch is None:
            return self._epoch, self._seq, [], False
        lost = epoch != self._epoch
        if lost:
            after = 0
        wanted = set(users)
        deadline = asyncio.get_running_loop().time() + timeout
        superseded = self._waiting.get(poller)
        if superseded is not None:
            superseded.set()
        wake = self._waiting[poller] = asyncio.Event()
        try:
            while True:
                oldest = self._events[0][0] if self._events else self._seq + 1
                lost = lost or after + 1 < oldest
                found = [e for e in islice(self._events, max(0, after + 1 - oldest), None) if e[1] in wanted]
                remaining = deadline - asyncio.get_running_loop().time()
                if found or remaining <= 0 or self._waiting.get(poller) is not wake:
                    return self._epoch, self._seq, found, lost
                after = self._seq
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            if self._waiting.get(poller) is wake:
                del self._waiting[poller]


_EventLogActor = ray.remote(_EventLog)


class RayBus(_FanoutBus):
    """Without Redis: a named, detached Ray actor keeps a ring of recent events.

    Each RayBus runs one long poll for all the users subscribed in its process,
    never one call per connection; a publish is one call.
    """

    def __init__(
        self,
        name: str = "arena-bus",
        namespace: str = "arena",
        *,
        capacity: int = 4096,
        poll_timeout: float = 10.0,
        queue_size: int = 256,
        max_event_bytes: int = 64 * 1024,
    ):
        super().__init__(queue_size, max_event_bytes)
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if not poll_timeout > 0:
            raise ValueError(f"poll_timeout must be positive, got {poll_timeout}")
        self.name = name
        self.namespace = namespace
        self.capacity = capacity
        self.poll_timeout = poll_timeout
        self._actor: Any = None
        self._poller_id = os.urandom(8).hex()
        self._joining: dict[_Subscription, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._poller: asyncio.Task | None = None

    def _log(self) -> Any:
        if self._actor is None:
            self._actor = _EventLogActor.options(
                name=self.name,
                namespace=self.namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                max_restarts=-1,
            ).remote(self.capacity)
        return self._actor

    async def _send(self, user_id: str, data: bytes) -> None:
        await self._log().publish.remote(user_id, data)

    async def _join(self, subscription: _Subscription) -> None:
        joined = self._joining[subscription] = asyncio.get_running_loop().create_future()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="arena-bus-ray-poller")
        self._wake.set()
        await asyncio.shield(joined)

    async def _leave(self, subscription: _Subscription, last: bool) -> None:
        self._joining.pop(subscription, None)  # the next poll leaves its user out when it was the last

    async def _poll(self) -> None:
        epoch: str | None = None
        cursor = 0
        pause = 0.1
        while True:
            if not self._fanout:
                self._wake.clear()
                await self._wake.wait()
                continue
            joining = list(self._joining.items())
            self._joining.clear()
            self._wake.clear()
            # Joiners need to know where the log stands now: ask without waiting.
            wait = self.poll_timeout if epoch is not None and not joining else 0.0
            ref = self._log().poll.remote(self._poller_id, epoch, cursor, self._fanout.users(), wait)
            try:
                answer = await self._first(ref) if wait else await ref
            except Exception as error:
                log.warning("bus: polling Ray actor %s failed (%s); retrying in %.1f s", self.name, error, pause)
                self._joining.update((s, joined) for s, joined in joining if not s.closed)
                epoch = None  # start again from where the log stands then, and report the gap there
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            if answer is None:  # a subscriber joined meanwhile: poll again with it
                continue
            epoch_now, head, events, lost = answer
            if lost or epoch is None:  # None: the first poll, or the first after a failure
                self._fanout.lag()
            for _, user_id, data in events:
                self._fanout.deliver(user_id, data)
            for subscription, joined in joining:  # from the next poll on, everything is news to them
                subscription.live = True
                if not joined.done():
                    joined.set_result(None)
            epoch, cursor = epoch_now, head

    async def _first(self, ref: Any) -> Any:
        """The poll's answer, or None if a subscriber joins first.

        The abandoned poll needs no cancelling: the next poll of this process
        ends it in the actor.
        """
        answer = asyncio.ensure_future(ref)
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({answer, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not answer.done():
                answer.cancel()
                answer = None
        return None if answer is None else answer.result()

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        for joined in self._joining.values():
            joined.cancel()
        self._joining.clear()
        self._fanout.close()


def bus(redis_url: str | None, namespace: str) -> Bus:
    """Redis pub/sub when Redis is configured, else the Ray actor of this namespace."""
    if redis_url:
        return RedisBus(redis_url)
    return RayBus(namespace=namespace)
