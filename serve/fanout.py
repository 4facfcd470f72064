"""Fan-out on write: a new activity is pushed into every follower's feed, in the background.

The post's caller does not wait for it. Followers are sent in chunks of envelopes,
one Ray call per host per chunk, so a hundred thousand followers cost about fifty
calls, and chunks go one after another so one athlete's fan-out never floods the
hosts that everyone else's requests go through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec

from actors.feed import Feed
from engine.cluster import Cluster
from engine.errors import EngineError
from engine.refs import message_type

__all__ = ["FanOut"]

log = logging.getLogger(__name__)
P = ParamSpec("P")


class FanOut:
    def __init__(self, cluster: Cluster, *, chunk: int = 2_000, retries: int = 5) -> None:
        self._cluster = cluster
        self._chunk = chunk
        self._retries = retries
        self._tasks: set[asyncio.Task] = set()
        self.pushed = 0
        self.failed = 0

    def start(
        self,
        followers: Sequence[str],
        handler: Callable[Concatenate[Feed, P], object],
        /,
        *args: P.args,
        **fields: P.kwargs,
    ) -> None:
        """Send ``handler``'s message to each follower's feed without waiting for it."""
        if not followers:
            return
        task = asyncio.get_running_loop().create_task(self.run(followers, handler, *args, **fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(
        self,
        followers: Sequence[str],
        handler: Callable[Concatenate[Feed, P], object],
        /,
        *args: P.args,
        **fields: P.kwargs,
    ) -> int:
        name = message_type(Feed, handler)
        if args:
            raise TypeError(f"{Feed.kind}.{name}: pass the message's fields by name")
        delivered = 0
        for start in range(0, len(followers), self._chunk):
            pending = [(Feed.kind, f, name, fields, None) for f in followers[start : start + self._chunk]]
            for attempt in range(self._retries + 1):
                results = await self._cluster.deliver(pending)
                retry = [e for e, r in zip(pending, results) if isinstance(r, EngineError) and r.retryable]
                delivered += (
                    len(pending)
                    - len(retry)
                    - sum(1 for r in results if isinstance(r, EngineError) and not r.retryable)
                )
                if not retry:
                    break
                pending = retry
                await asyncio.sleep(0.05 * 2**attempt)
            else:
                self.failed += len(pending)
                log.warning("fan-out gave up on %d feeds after %d tries", len(pending), self._retries + 1)
        self.pushed += delivered
        return delivered

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
