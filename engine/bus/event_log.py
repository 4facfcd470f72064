"""The bus without Redis: a named, detached Ray actor keeps a ring of recent events.

Each process runs one long poll of it for all of its local subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from itertools import islice
from typing import Any

import ray

from engine.bus.fanout import FanoutBus, Subscription

__all__ = ["RayBus"]

log = logging.getLogger(__name__)

_PUBLISH_CHUNK = 4_096  # events per call of publish_many: a few MB at most


class _EventLog:
    """The Ray actor behind RayBus: the last ``capacity`` events of all users, numbered from 1."""

    def __init__(self, capacity: int):
        self._events: deque[tuple[int, str, bytes]] = deque(maxlen=capacity)
        self._seq = 0
        # A restarted actor numbers from 0 again; pollers notice by the new epoch.
        self._epoch = os.urandom(8).hex()
        self._waiting: dict[str, asyncio.Event] = {}  # poller -> its waiting poll's wake-up

    async def publish(self, user_id: str, data: bytes) -> None:
        await self.publish_many([(user_id, data)])

    async def publish_many(self, events: list[tuple[str, bytes]]) -> None:
        for user_id, data in events:
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


class RayBus(FanoutBus):
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
        self._joining: dict[Subscription, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._poller: asyncio.Task | None = None

    def start(self) -> None:
        """Start the event log's actor now (it starts on first use otherwise): a process of its own
        whose start-up should not land on a hot moment, such as a race's gun."""
        self._log()

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

    async def _send_many(self, events: list[tuple[str, bytes]]) -> None:
        for first in range(0, len(events), _PUBLISH_CHUNK):
            await self._log().publish_many.remote(events[first : first + _PUBLISH_CHUNK])

    async def _join(self, subscription: Subscription) -> None:
        joined = self._joining[subscription] = asyncio.get_running_loop().create_future()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="arena-bus-ray-poller")
        self._wake.set()
        await asyncio.shield(joined)

    async def _leave(self, subscription: Subscription, last: bool) -> None:
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
