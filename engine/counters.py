"""Request counters over sliding windows: the previous fixed window, weighted by how much of it
still overlaps, plus the current one.

``Counters`` is what a throttle counts with; ``MemoryCounters`` counts in this process,
``persistence.redis_counters.RedisCounters`` in Redis, shared by every API replica.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Counters", "CounterWindows", "MemoryCounters", "Rate"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    seconds: int

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"a rate's count must be a positive integer, got {self.count!r}")
        if not isinstance(self.seconds, int) or self.seconds < 1:
            raise ValueError(f"a rate's window must be a positive number of seconds, got {self.seconds!r}")


class Counters(Protocol):
    async def hit(self, keys: Sequence[tuple[str, Rate]]) -> int | None:
        """Count one request against each key; the seconds to wait if any key is over its rate, else None."""

    async def aclose(self) -> None: ...


_SLACK = 1e-6  # float error: 10 × (1 - 0.3) + 3 must still be 10


class CounterWindows:
    """The arithmetic both stores share: whether a key is over its rate, and how long it then waits."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    @staticmethod
    def _wait(rate: Rate, now: float, current: int, previous: int) -> float | None:
        """None while ``current`` (this request included) plus the overlap of ``previous`` is within the rate."""
        w = rate.seconds
        into = (now % w) / w  # how far into the current window
        if previous * (1 - into) + current <= rate.count + _SLACK:
            return None
        # When would one more request fit, if none came meanwhile?
        if current + 1 <= rate.count:
            return max(0.0, w * (1 - (rate.count - current - 1) / previous) - into * w)
        return (1 - into) * w + w * max(0.0, 1 - (rate.count - 1) / current)

    def _retry_after(
        self, keys: Sequence[tuple[str, Rate]], now: float, counts: Sequence[tuple[int, int]]
    ) -> int | None:
        waits = [
            wait
            for (_, rate), (current, previous) in zip(keys, counts)
            if (wait := self._wait(rate, now, current, previous)) is not None
        ]
        return max(1, math.ceil(max(waits) - _SLACK)) if waits else None


class MemoryCounters(CounterWindows):
    """Counts in this process; at most ``max_keys`` keys, the least recently hit evicted first."""

    def __init__(self, *, clock: Clock = time.time, max_keys: int = 100_000) -> None:
        super().__init__(clock)
        if max_keys < 2:
            raise ValueError(f"max_keys must be at least 2 (an account and an address), got {max_keys!r}")
        self.max_keys = max_keys
        self._windows: OrderedDict[str, tuple[int, int, int]] = OrderedDict()  # key: (window, current, previous)

    async def hit(self, keys: Sequence[tuple[str, Rate]]) -> int | None:
        now = self._clock()
        counts = []
        for key, rate in keys:
            window = int(now // rate.seconds)
            seen, current, previous = self._windows.pop(key, (window, 0, 0))
            if seen == window - 1:
                current, previous = 0, current
            elif seen != window:
                current, previous = 0, 0
            self._windows[key] = (window, current + 1, previous)
            counts.append((current + 1, previous))
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        return self._retry_after(keys, now, counts)

    async def aclose(self) -> None:
        self._windows.clear()
