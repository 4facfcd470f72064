"""The hot state of one live race: one array per fact, indexed by participant.

A batch of telemetry (``engine.telemetry``) goes through ``RaceBoard.ingest`` as a
handful of numpy operations over the whole batch; ranking 50,000 athletes is one
``argsort``. The board is pure: no Ray, no I/O, time comes from the samples and the
``now``/``t`` arguments, so replaying the same calls rebuilds the same board.

``RaceBoard`` holds the field and its columns (``columns``) and reads as the table of
contents of the package: a batch goes through ``delivery`` (duplicates, late, skew),
``scoring`` (each race kind) and ``fair_play`` (the rules, per sport ``profiles``);
``review`` keeps the flags and the organizer's decisions, ``ranking`` orders the field
(the tie rule), ``views`` answers spectators and ``snapshot`` encodes the board.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Literal

import numpy as np

from engine.race import delivery, ranking, review, snapshot, views
from engine.race.columns import DNF, DSQ, FINISHED, RACING, SEXES, WITHDRAWN, layout
from engine.race.delivery import COUNTS
from engine.race.fair_play import FairPlay
from engine.race.profiles import PROFILES, SportProfile, tightened
from engine.race.scoring import MAX_CHECKPOINTS, RACE_KINDS
from engine.telemetry import SAMPLE_DTYPE

__all__ = ["RaceBoard", "Which", "warm_up"]

Which = int | Sequence[int] | np.ndarray | Literal["all"]


class RaceBoard:
    def __init__(
        self,
        capacity: int,
        *,
        sport: str,
        kind: str,
        target_m: float | None = None,
        duration_s: float | None = None,
        checkpoints_m: Sequence[float] = (),
        start_mode: Literal["mass", "rolling"] = "mass",
        start_window_s: float | None = None,
        fair_play: dict[str, float] | None = None,
    ) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be a count of participants, not {capacity!r}")
        if sport not in PROFILES:
            raise ValueError(f"unknown sport {sport!r}; the profiles are {', '.join(PROFILES)}")
        if kind not in RACE_KINDS:
            raise ValueError(f"unknown race kind {kind!r}; the kinds are {', '.join(RACE_KINDS)}")
        if start_mode not in ("mass", "rolling"):
            raise ValueError(f"start_mode is 'mass' or 'rolling', not {start_mode!r}")
        if start_window_s is not None and not start_window_s > 0:
            raise ValueError(f"start_window_s must be positive, not {start_window_s!r}")
        lines = [float(x) for x in checkpoints_m]
        if kind == "course":
            if not lines or not 0 < lines[0] or any(b <= a for a, b in zip(lines, lines[1:])):
                raise ValueError("a course race needs checkpoints_m: positive, strictly increasing distances")
            if len(lines) > MAX_CHECKPOINTS:
                raise ValueError(f"a course has at most {MAX_CHECKPOINTS} checkpoints, not {len(lines)}")
            if target_m is not None and target_m != lines[-1]:
                raise ValueError(f"the finish of a course is its last checkpoint ({lines[-1]} m), not {target_m} m")
            target_m = lines[-1]
        elif lines:
            raise ValueError(f"checkpoints_m belong to course races, not {kind} races")
        if kind in ("distance", "collective", "course") and not (target_m is not None and target_m > 0):
            raise ValueError(f"a {kind} race needs a positive target_m, not {target_m!r}")
        if kind == "time" and not (duration_s is not None and duration_s > 0):
            raise ValueError(f"a time race needs a positive duration_s, not {duration_s!r}")
        self.sport = sport
        self.kind = kind
        self.fair_play = dict(fair_play or {})
        self.profile: SportProfile = tightened(PROFILES[sport], self.fair_play)
        self.target_m = None if target_m is None else float(target_m)
        self.duration_s = None if duration_s is None or kind != "time" else float(duration_s)
        if kind == "distance":
            lines = [self.target]
        self.checkpoints_m = tuple(lines) if kind == "course" else ()
        self.start_mode = start_mode
        self.start_window_s = start_window_s
        self._lines = np.asarray(lines, np.float64)
        self._size = 0
        self._schema = layout(len(lines))  # fair play's columns are views of its per-athlete records
        self._col = {name: np.full((capacity, *shape), fill, dtype) for name, dtype, fill, shape in self._schema}
        self._rules = FairPlay(self.profile, self._col, partial(review.record, self))
        self._rules.resize(capacity, 0)
        self._now = math.nan  # the receive time of the batch being ingested
        self._flags: list[dict] = []
        self._opened: float | None = None  # start("all") time, inherited by athletes added later
        self._ended = math.inf
        self._total = 0.0  # collective: distance of every athlete not disqualified
        self._reached_t: float | None = None
        self.counts = dict.fromkeys(COUNTS, 0)
        self.rank_of = np.zeros(0, np.int64)  # place - 1 of each athlete, as of the last refresh_ranking()

    # The field

    @property
    def size(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return len(self._col["status"])

    @property
    def target(self) -> float:
        """The distance a distance, course or collective race is run to (each needs one)."""
        assert self.target_m is not None, f"a {self.kind} race has no target_m"
        return self.target_m

    @property
    def duration(self) -> float:
        """How long each athlete's time race lasts (a time race needs one)."""
        assert self.duration_s is not None, f"a {self.kind} race has no duration_s"
        return self.duration_s

    def add(
        self,
        count: int,
        categories: np.ndarray | None = None,
        weights_kg: np.ndarray | None = None,
        sexes: np.ndarray | None = None,
    ) -> range:
        """Register ``count`` athletes; returns their participant indices. ``sexes``: indices in ``SEXES``."""
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a number of athletes, not {count!r}")
        extras = {"categories": categories, "weights_kg": weights_kg, "sexes": sexes}
        for name, values in extras.items():
            if values is not None and np.shape(values) != (count,):
                raise ValueError(f"{name} must hold one value per added athlete ({count}), not {np.shape(values)}")
        first = self._size
        if first + count > self.capacity:
            self._grow(max(first + count, 2 * self.capacity, 16))
        rows = slice(first, first + count)
        if categories is not None:
            self._col["category"][rows] = categories
        if weights_kg is not None:
            self._col["weight"][rows] = weights_kg
        if sexes is not None:
            if not np.isin(sexes, range(len(SEXES))).all():
                raise ValueError(f"sexes are indices in {SEXES}")
            self._col["sex"][rows] = sexes
        if self._opened is not None:
            self._col["open_t"][rows] = self._opened
            if self.start_mode == "mass":
                self._col["start_t"][rows] = self._opened
        self._size += count
        return range(first, first + count)

    def _grow(self, capacity: int) -> None:
        for name, dtype, fill, shape in self._schema:
            bigger = np.full((capacity, *shape), fill, dtype)
            bigger[: self._size] = self._col[name][: self._size]
            self._col[name] = bigger
        self._rules.resize(capacity, self._size)

    def _rows(self, which: Which) -> np.ndarray | slice:
        if isinstance(which, str):
            if which != "all":
                raise ValueError(f"which is an athlete index, a list of them or 'all', not {which!r}")
            return slice(0, self._size)
        rows = np.atleast_1d(np.asarray(which))
        if rows.dtype.kind not in "iu" or rows.ndim != 1:
            raise ValueError(f"athletes are named by integer participant index, not {which!r}")
        if len(rows) and (rows.min() < 0 or rows.max() >= self._size):
            raise ValueError(f"participant index out of range: the field has {self._size} athletes")
        return rows

    def start(self, which: Which, t: float) -> None:
        """Mass start: the clocks of ``which`` start at ``t``. Rolling: their start opens at ``t``."""
        if not math.isfinite(t):
            raise ValueError(f"a start time must be a finite unix time, not {t!r}")
        rows = self._rows(which)
        if isinstance(which, str):
            self._opened = float(t)
        self._col["open_t"][rows] = t
        if self.start_mode == "mass":
            self._col["start_t"][rows] = t

    def withdraw(self, index: int) -> None:
        rows = self._rows(index)
        status = self._col["status"]
        status[rows] = np.where(status[rows] == DSQ, DSQ, WITHDRAWN)

    def end(self, t: float) -> None:
        """Close the race at ``t``: samples timed later no longer score; who is still out is DNF."""
        if not math.isfinite(t):
            raise ValueError(f"an end time must be a finite unix time, not {t!r}")
        self._ended = float(t)
        n = self._size
        status = self._col["status"][:n]
        out = status == RACING
        if self.kind == "collective":
            done = out
        elif self.kind == "time":
            done = out & (self._col["start_t"][:n] + self.duration <= t)
        else:
            done = np.zeros(n, bool)
        status[done] = FINISHED
        status[out & ~done] = DNF

    # Telemetry

    def ingest(self, samples: np.ndarray, now: float) -> dict[str, int]:
        """Apply a batch of ``SAMPLE_DTYPE`` samples received at ``now``; returns what became of them."""
        return delivery.ingest(self, samples, now)

    # Fair-play review

    def flags(self, index: int | None = None) -> list[dict]:
        """Raised flags, oldest first, with the reviewer's decision once there is one."""
        return review.flags(self, index)

    def review(self, index: int, accept: bool) -> None:
        """Accept: the open flags are cleared and their rules don't raise again for this athlete. Reject: DSQ."""
        review.review(self, index, accept)

    def status(self, index: int) -> str:
        """One athlete's status in ``ATHLETE_STATUSES``."""
        return review.status(self, index)

    def reinstate(self, index: int, status: str) -> None:
        """Undo a disqualification (a correction): the athlete is ``status`` again, their flags cleared."""
        review.reinstate(self, index, status)

    # Ranking and views

    def rank(self, category: int | None = None) -> np.ndarray:
        """Participant indices, best first (the tie rule is in ``engine.race.ranking``)."""
        return ranking.rank(self, category)

    def refresh_ranking(self) -> np.ndarray:
        """Rank the field and keep each athlete's place (``rank_of``) for ``place``; returns the order."""
        return ranking.refresh(self)

    def place(self, index: int) -> int | None:
        """1-based place overall as of the last ``refresh_ranking()``; None for an athlete added since."""
        return ranking.place(self, index)

    def states(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Each athlete's code in ``STATES``: a status, or provisional (flagged, still racing or finished)."""
        return views.states(self, indices)

    def leaderboard(self, n: int = 100, category: int | None = None) -> dict:
        """The top ``n`` (DSQ and withdrawn athletes left out) and the race totals, as plain values."""
        return views.leaderboard(self, n, category)

    def distances(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Current distance of each athlete in ``indices``, as an array (for packed views)."""
        return views.distances(self, indices)

    def totals(self) -> dict:
        return views.totals(self)

    def results(self) -> list[dict]:
        """Official results in rank order; a place only for finishers. Statuses include dns, dnf and dsq."""
        return views.results(self)

    # Snapshots

    def to_state(self) -> dict:
        """The whole board as msgpack-friendly values (arrays as raw bytes)."""
        return snapshot.to_state(self)

    @classmethod
    def from_state(cls, state: dict) -> RaceBoard:
        board = cls(**snapshot.settings(state))
        snapshot.restore(board, state)
        board._rules.restored(board.size)
        return board

    def memory_bytes(self) -> int:
        """Bytes of hot state held in the participant arrays (at capacity)."""
        return sum(column.nbytes for column in self._col.values())


def warm_up() -> None:
    """Load (or compile, the first time on a machine) fair play's rules for every board layout:
    a race host calls it as it starts, so its first batch does not wait for them."""
    for sport in ("run", "ride"):  # the two layouts: without and with the W/kg power rings
        board = RaceBoard(2, sport=sport, kind="distance", target_m=1000.0)
        board.add(2, weights_kg=np.array([70.0, 60.0]))
        board.start("all", 0.0)
        samples = np.zeros(3, SAMPLE_DTYPE)
        samples["entry"], samples["seq"], samples["t"] = [0, 0, 1], [1, 3, 1], [1.0, 3.0, 1.0]
        samples["lat"], samples["lon"], samples["hr"], samples["power"] = 45.0, 7.0, 140, 200
        board.ingest(samples, 4.0)
        samples["seq"], samples["t"] = [2, 4, 2], [2.0, 4.0, 2.0]  # a late sample, then in order
        board.ingest(samples, 5.0)
