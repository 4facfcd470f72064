"""Entity kinds used by the engine's tests (importable by Ray workers)."""

from __future__ import annotations

from engine.entity import Entity, peek, query, update
from engine.errors import Rejected


class Counter(Entity):
    kind = "counter"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.total = 0
        self.applied: list[str] = []
        self.rings = 0

    @update
    def add(self, amount: int, tag: str | None = None) -> int:
        if amount < 0:
            raise Rejected("amounts are positive")
        self.total += amount
        if tag is not None:
            self.applied.append(tag)
        return self.total

    @update
    def explode(self) -> None:
        self.total += 1_000
        raise RuntimeError("boom")

    @update
    def remind(self, delay: float, name: str = "ring") -> float:
        due = self.now + delay
        self.set_timer(name, due, "ring")
        return due

    @update
    def forget(self, name: str = "ring") -> None:
        self.cancel_timer(name)

    @update
    def ring(self) -> None:
        self.rings += 1

    @query
    def value(self) -> dict:
        return {"total": self.total, "applied": self.applied, "rings": self.rings, "now": self.now}

    @peek
    def glance(self) -> int:
        return self.total


class Room(Entity):
    """A kind that asks for a dedicated host of its own."""

    kind = "room"
    dedicated = True

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.members: list[str] = []

    @update
    def enter(self, who: str) -> int:
        self.members.append(who)
        return len(self.members)

    @query
    def who(self) -> list[str]:
        return self.members
