"""The bus across processes and machines: Redis pub/sub, one listening connection per process."""

from __future__ import annotations

import asyncio
import logging
import os

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.bus.fanout import FanoutBus, Subscription

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

_CHANNEL = "arena:user:"


class RedisBus(FanoutBus):
    """Redis pub/sub: channel ``arena:user:{user_id}``, msgpack messages, one listening connection."""

    def __init__(self, redis_url: str, *, queue_size: int = 256, max_event_bytes: int = 64 * 1024):
        super().__init__(queue_size, max_event_bytes)
        self._redis = redis.asyncio.Redis.from_url(redis_url)
        # The listener does not retry behind our back: the reader has to see a
        # broken connection to tell subscribers that events were lost.
        self._listener = redis.asyncio.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
        self._pubsub = self._listener.pubsub()
        self._commands = asyncio.Lock()  # (un)subscribes reach Redis in the order they were decided
        # PING token -> the join it confirms, or None: the resubscription after a lost connection
        self._pings: dict[bytes, tuple[Subscription, asyncio.Future[None]] | None] = {}
        self._reader: asyncio.Task | None = None

    async def _send(self, user_id: str, data: bytes) -> None:
        await self._redis.publish(_CHANNEL + user_id, data)

    async def _send_many(self, events: list[tuple[str, bytes]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            for user_id, data in events:
                pipe.publish(_CHANNEL + user_id, data)
            await pipe.execute()

    async def _join(self, subscription: Subscription) -> None:
        joined = asyncio.get_running_loop().create_future()
        async with self._commands:
            # SUBSCRIBE again to a subscribed channel is harmless, and the PING
            # after it is answered once Redis has applied it.
            await self._pubsub.subscribe(_CHANNEL + subscription.user_id)
            await self._ping((subscription, joined))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="arena-bus-redis-reader")
        await joined

    async def _leave(self, subscription: Subscription, last: bool) -> None:
        if not last:
            return
        try:
            async with self._commands:
                await self._pubsub.unsubscribe(_CHANNEL + subscription.user_id)
        except Exception as error:  # the channel stays subscribed: its messages find nobody here
            log.warning("bus: unsubscribe of %r failed: %s", subscription.user_id, error)

    async def _ping(self, waiter: tuple[Subscription, asyncio.Future[None]] | None) -> None:
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
    def _joined(subscription: Subscription, joined: asyncio.Future[None]) -> None:
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
