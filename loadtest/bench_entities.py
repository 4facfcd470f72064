"""The entity the engine benchmark drives: a per-athlete distance tally."""

from __future__ import annotations

from engine.entity import Entity, query, update


class Tally(Entity):
    kind = "tally"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.meters = 0.0
        self.samples = 0

    @update
    def record(self, meters: float) -> int:
        self.meters += meters
        self.samples += 1
        return self.samples

    @query
    def total(self) -> float:
        return self.meters
