"""The spectators' view of live races: one cache per API replica, refreshed once a tick.

Ten thousand spectators of a race cost one actor call per tick per replica, not
one per spectator: each watched race has one refresher task that fetches the
race's view and wakes every waiting stream. Top-N, "around me" and rank lookups
are answered from the cached arrays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from actors.race import Race
from engine.errors import EngineError
from engine.race import STATES
from engine.refs import Ref

__all__ = ["Follow", "RaceView", "Spectators"]

log = logging.getLogger(__name__)

Follow = Callable[[str, int], Awaitable[dict]]  # (race id, athletes known) -> the next tick, as Race.view answers


@dataclass
class RaceView:
    race_id: str
    version: int
    status: str
    at: float
    boards: dict[str, dict]
    names: list[str]  # by participant index
    user_ids: list[str]
    order: np.ndarray  # participant indices, best first
    distance: np.ndarray  # metres, in ``order``
    totals: dict
    index_of: dict[str, int]
    signal_lost: set[int]  # participant indices whose device went offline
    categories: list[str | None] = field(default_factory=list)  # by participant index
    states: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # STATES codes, in ``order``
    organizer: str | None = None
    private: set[int] = field(default_factory=set)  # participant indices of private athletes (serve.race_privacy)
    rank_of: np.ndarray = field(init=False)  # place - 1 of each participant index
    previous: RaceView | None = None  # the view one tick before (only one back: no chain)
    events: dict[tuple, tuple[str, dict]] = field(default_factory=dict, init=False)  # live events, encoded once

    def __post_init__(self) -> None:
        self.rank_of = np.full(len(self.user_ids), -1, np.int64)
        self.rank_of[self.order] = np.arange(len(self.order))
        for board in self.boards.values():
            for entry in board["entries"]:
                entry["user_id"] = self.user_ids[entry["participant"]]
                entry["name"] = self.names[entry["participant"]]
                if entry["participant"] in self.signal_lost:
                    entry["signal_lost"] = True

    def place(self, user_id: str) -> int | None:
        index = self.index_of.get(user_id)
        if index is None or index >= len(self.rank_of) or self.rank_of[index] < 0:
            return None
        return int(self.rank_of[index]) + 1

    def rows(self, start: int, stop: int, places: np.ndarray | None = None) -> list[dict]:
        """Rows ``start:stop`` of the overall order, or of ``places`` (0-based places, a filtered order)."""
        places = np.arange(len(self.order)) if places is None else places
        start, stop = max(0, start), min(len(places), stop)
        leader = float(self.distance[places[0]]) if len(places) else 0.0
        states = self.states.tolist() if len(self.states) == len(self.order) else None
        rows = []
        for place in places[start:stop].tolist():
            who = int(self.order[place])
            row = {
                "place": place + 1,
                "participant": who,
                "user_id": self.user_ids[who],
                "name": self.names[who],
                "distance_m": float(self.distance[place]),
                "gap_m": leader - float(self.distance[place]),
            }
            if who < len(self.categories) and self.categories[who] is not None:
                row["category"] = self.categories[who]
            if states is not None:
                row["status"] = STATES[states[place]]
            if who in self.signal_lost:
                row["signal_lost"] = True
            rows.append(row)
        return rows

    def filtered(self, category: str = "", text: str = "") -> np.ndarray:
        """0-based places of the athletes in ``category`` whose name contains ``text`` (any case).

        A private athlete's name is never matched: a search must not tell who is hidden."""
        keep = np.ones(len(self.order), bool)
        if category:
            wanted = np.fromiter((c == category for c in self.categories), bool, len(self.categories))
            keep &= wanted[self.order] if len(wanted) else False
        if text:
            needle = text.casefold()
            named = np.fromiter(
                (needle in name.casefold() and i not in self.private for i, name in enumerate(self.names)),
                bool,
                len(self.names),
            )
            keep &= named[self.order] if len(named) else False
        return np.flatnonzero(keep)

    def around(self, user_id: str, n: int) -> list[dict]:
        place = self.place(user_id)
        return [] if place is None else self.rows(place - 1 - n, place + n)


class _Watch:
    def __init__(self) -> None:
        self.view: RaceView | None = None
        self.changed = asyncio.Condition()
        self.last_read = time.monotonic()
        self.user_ids: list[str] = []  # the roster grows by appending: fetched once per athlete
        self.names: list[str] = []
        self.categories: list[str | None] = []
        self.index_of: dict[str, int] = {}
        self.task: asyncio.Task | None = None
        self.error: EngineError | None = None

    def latest(self) -> RaceView:
        """The latest view, or the error that kept the first one from arriving."""
        if self.view is None:
            assert self.error is not None  # the waits end on a view or an error
            raise self.error
        return self.view


class Spectators:
    def __init__(
        self,
        race: Callable[[str], Ref[Race]],
        *,
        tick: float = 1.0,
        top: int = 100,
        idle_after: float = 30.0,
        follow: Follow | None = None,
    ) -> None:
        """``follow``: where each tick comes from instead of asking the race once a tick; it answers
        once the next tick is out (the push tier's tick relay, ``serve.push_ticks``), so it is not paced."""
        self._race = race  # RaceClient.ref: checks the race exists before waking its host
        self._follow = follow
        self.tick = tick
        self._top = top
        self._idle_after = idle_after
        self._watches: dict[str, _Watch] = {}
        self.refreshes = 0

    async def view(self, race_id: str) -> RaceView:
        """The latest cached view; the first reader of a race waits for its first refresh."""
        watch = self._watch(race_id)
        if watch.view is None:
            async with watch.changed:
                await watch.changed.wait_for(lambda: watch.view is not None or watch.error is not None)
        return watch.latest()

    async def updates(self, race_id: str):
        """Each new view of the race, as it arrives, until the caller stops iterating."""
        watch = self._watch(race_id)
        version = -1

        def fresh() -> bool:  # a failed refresh keeps the last view: wait for the next one, do not repeat it
            if watch.view is None:
                return watch.error is not None
            return watch.view.version != version

        while True:
            async with watch.changed:
                await watch.changed.wait_for(fresh)
            view = watch.latest()
            watch.last_read = time.monotonic()
            version = view.version
            yield view

    def _watch(self, race_id: str) -> _Watch:
        watch = self._watches.get(race_id)
        if watch is None or watch.task is None or watch.task.done():
            watch = self._watches[race_id] = watch if watch and watch.view else _Watch()
            watch.error = None
            watch.task = asyncio.get_running_loop().create_task(self._refresh(race_id, watch))
        watch.last_read = time.monotonic()
        return watch

    async def _refresh(self, race_id: str, watch: _Watch) -> None:
        version = watch.view.version if watch.view else 0
        while time.monotonic() - watch.last_read < self._idle_after:
            started = time.monotonic()
            try:
                known = len(watch.user_ids)
                if self._follow is not None:
                    raw = await self._follow(race_id, known)
                else:
                    raw = await self._race(race_id).ask(Race.view, n=self._top, known=known)
            except EngineError as error:
                watch.error = error
                async with watch.changed:
                    watch.changed.notify_all()
                if not error.retryable:  # an unknown race: its watch goes too (ids probed at random leave nothing)
                    break
            else:
                version += 1
                self.refreshes += 1
                for user_id, name, *category in raw["roster"]:  # only athletes who joined since the last tick
                    watch.index_of[user_id] = len(watch.user_ids)
                    watch.user_ids.append(user_id)
                    watch.names.append(name)
                    watch.categories.append(category[0] if category else None)
                if watch.view is not None:
                    watch.view.previous = None
                watch.view = RaceView(
                    race_id,
                    version,
                    raw["status"],
                    raw["at"],
                    raw["boards"],
                    watch.names,
                    watch.user_ids,
                    np.frombuffer(raw["order"], np.uint32),
                    np.frombuffer(raw["distance"], np.float32),
                    raw["totals"],
                    watch.index_of,
                    set(raw["signal_lost"]),
                    watch.categories,
                    np.frombuffer(raw.get("states", b""), np.uint8),
                    organizer=raw.get("organizer"),
                    private=set(raw.get("private", ())),
                    previous=watch.view,
                )
                watch.error = None
                async with watch.changed:
                    watch.changed.notify_all()
            if self._follow is None or watch.error is not None:
                await asyncio.sleep(max(0.0, self.tick - (time.monotonic() - started)))
        self._watches.pop(race_id, None)

    async def close(self) -> None:
        for watch in list(self._watches.values()):
            if watch.task is not None:
                watch.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch.task
