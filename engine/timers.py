"""One timer queue per host: a heap of due instants, polled by one loop."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

__all__ = ["TimerQueue"]


class TimerQueue:
    """Entries are hints: the entity's own timer table decides whether one fires."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, kind: str, entity_id: str, name: str) -> None:
        heapq.heappush(self._heap, (due, kind, entity_id, name))

    def pop_due(self, now: float) -> Iterator[tuple[float, str, str, str]]:
        heap = self._heap
        while heap and heap[0][0] <= now:
            yield heapq.heappop(heap)
