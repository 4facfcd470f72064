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


# -- domain events (loadtest/bench_events.py) ------------------------------------

from engine.events import Event, To, declare, react  # noqa: E402

TICKED = declare(
    "bench.ticked", fields=("source", "n", "to", "meters"), user_field="to", doc="a benchmark source ticked"
)


class Ticker(Entity):
    """Emits one event per tick, each to one of the counters."""

    kind = "ticker"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.n = 0

    @update
    def ticks(self, targets: list[str]) -> int:
        for target in targets:
            self.n += 1
            self.emit(TICKED, source=self.id, n=self.n, to=target, meters=10.0)
        return self.n


class Counter(Entity):
    """Adds up the ticks it receives, through the relay (``apply``: the same, sent directly)."""

    kind = "counter"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.count = 0
        self.meters = 0.0

    @react(TICKED, to=To.field("to"))
    def on_tick(self, event: Event) -> None:
        self.count += 1
        self.meters += event.fields["meters"]

    @update
    def apply(self, meters: float) -> None:
        self.count += 1
        self.meters += meters

    @query
    def total(self) -> int:
        return self.count
