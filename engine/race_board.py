"""The hot state of one live race: one array per fact, indexed by participant.

A batch of telemetry (``engine.telemetry``) goes through ``RaceBoard.ingest`` as a
handful of numpy operations over the whole batch; ranking 50,000 athletes is one
``argsort``. The board is pure: no Ray, no I/O, time comes from the samples and
the ``now``/``t`` arguments, so replaying the same calls rebuilds the same board.

Race kinds:

- ``distance``: first to ``target_m``. The finish time is interpolated between
  the last sample before the line and the first one on or past it.
- ``course``: checkpoints at cumulative distances; the last one is the finish.
  Splits are interpolated like the finish.
- ``time``: most distance in ``duration_s`` from each athlete's own start. A
  sample past the window counts only up to the window's end, interpolated.
- ``collective``: the field's total distance toward ``target_m``; athletes are
  ranked by their contribution.

Starts: ``start_mode="mass"`` starts every clock at the gun (``start(which, t)``);
``"rolling"`` opens the start at ``t`` and each athlete's clock starts at their
first sample inside ``start_window_s``. ``distance`` in a sample is cumulative
metres since the athlete's start; samples timed before it are tracked (order,
duplicates) but neither score nor go through fair play.

Delivery: samples are idempotent by (participant, seq). Each participant keeps
its newest seq and a 64-bit mask of the seqs below it (the IPsec anti-replay
window): a seen seq is a duplicate and dropped; an unseen one below the newest
is *late*, accepted and counted; one more than 64 below is dropped as too old.
Cumulative distance only moves forward, and the finish (or window-end) brackets
keep the latest sample before the line and the earliest one past it, so the
same samples in any order inside the window give the same board. Samples of one
participant within a batch are taken in seq order, one round per sample.

Tie rule (``rank``), in order:

1. DSQ and withdrawn athletes come last, in participant order.
2. ``distance`` and ``course``: finished before not finished, then the shorter
   finish time (from the athlete's own start).
3. ``course``, not finished: more checkpoints passed, then the earlier time at
   the last one passed.
4. The greater distance (capped at the target; in ``time`` races, the distance
   at the window's end).
5. The earlier time, from the athlete's own start, at which that distance was
   reached (for finishers, their finish time).
6. The lower participant index.

Times are compared exactly as stored; a first pass sorts on a 64-bit key
(milliseconds, millimetres) and only ties under that key are sorted again on
the exact values.

Fair play (``engine.fair_play``) runs on each round, per sport profile, on
samples in device order, late ones included. A rule raises one flag per athlete
(its evidence, severity, the device time that made it conclusive and the receive
time) and makes the athlete provisional until ``review``. The device clock is
checked against the receive clock once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from engine.fair_play import PROFILES, RULES, SEVERITY, FairPlay, SportProfile, tightened
from engine.fair_play import columns as fair_play_columns
from engine.telemetry import MAX_BATCH, SAMPLE_DTYPE

__all__ = ["RaceBoard", "SportProfile", "PROFILES", "KINDS", "RULES", "SEXES", "STATES", "STATUSES"]


KINDS = ("distance", "time", "course", "collective")
STATUSES = ("dns", "racing", "finished", "dnf", "withdrawn", "dsq")
DNS, RACING, FINISHED, DNF, WITHDRAWN, DSQ, PROVISIONAL = range(7)
STATES = (*STATUSES, "provisional")  # what spectators see: a status, or provisional while flagged
_BIT = {rule: np.uint16(1 << i) for i, rule in enumerate(RULES)}  # RULES only grows at its end: snapshots keep bits
SEXES = ("unknown", "men", "women")  # the W/kg caps of unknown are the men's
_COUNTS = (
    "accepted",
    "duplicates",
    "late",
    "too_old",
    "skewed",
    "unknown_participant",
    "invalid",
    "flagged",
    "finished",
)

WINDOW = 64  # seqs the anti-replay mask remembers below the newest
SKEW_S = 5.0  # a sample further in the future than this is clamped to now
ORDER_SLACK_S = 1.0  # clock jitter tolerated before seq and time order are said to disagree
_LEGACY = {  # fair-play columns of schema-1 snapshots that today's rules no longer keep
    "hr_n", "hr_mean", "hr_var", "hr_power", "power_5min", "power_5min_w", "power_20min", "power_20min_w",
}  # fmt: skip
_MM = 2**44 - 1  # distances and times go into the coarse rank key as 44-bit milli-units
_MAX_CHECKPOINTS = 1000

Which = int | Sequence[int] | np.ndarray | Literal["all"]


def _columns(lines: int) -> tuple[tuple[str, Any, float, tuple[int, ...]], ...]:
    nan, inf = math.nan, math.inf
    return (
        ("category", np.int32, 0, ()),
        ("weight", np.float32, nan, ()),
        ("sex", np.uint8, 0, ()),  # index in SEXES
        ("status", np.uint8, DNS, ()),
        ("flags", np.uint16, 0, ()),  # open fair-play flags, one bit per rule
        ("cleared", np.uint16, 0, ()),  # rules a reviewer accepted for this athlete
        ("open_t", np.float64, nan, ()),  # when the start opened for this athlete
        ("start_t", np.float64, nan, ()),  # this athlete's clock start
        ("last_seq", np.uint32, 0, ()),
        ("seen", np.uint64, 0, ()),  # anti-replay mask: bit k is last_seq - k
        ("last_t", np.float64, nan, ()),  # time of the newest seq; NaN: no sample yet
        ("d_t", np.float64, nan, ()),  # last scoring distance and its time
        ("d_last", np.float32, nan, ()),
        ("pos_t", np.float64, nan, ()),  # last known position
        ("lat", np.float64, nan, ()),
        ("lon", np.float64, nan, ()),
        ("distance", np.float64, 0.0, ()),  # furthest scoring distance
        ("dist_t", np.float64, inf, ()),  # when it was first reached
        ("cp", np.uint16, 0, ()),  # lines (checkpoints, finish) passed
        ("lo_t", np.float64, -inf, ()),  # latest sample before the line that brackets the result
        ("lo_d", np.float64, 0.0, ()),
        ("hi_t", np.float64, inf, ()),  # earliest sample on or past it
        ("hi_d", np.float64, 0.0, ()),
        ("splits", np.float64, nan, (lines,)),  # when each line was crossed
    )


def _interp(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, x: Any) -> np.ndarray:
    span = x1 - x0
    safe = np.where(span > 0, span, 1.0)
    return y0 + np.where(span > 0, (x - x0) / safe, 1.0) * (y1 - y0)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value msgpack carries; NaN and ±inf become None."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def warm_up() -> None:
    """Load (or compile, the first time on a machine) fair play's rules for every board layout:
    a race host calls it as it starts, so its first batch does not wait for them."""
    for sport in ("run", "ride"):
        board = RaceBoard(2, sport=sport, kind="distance", target_m=1000.0)
        board.add(2, weights_kg=np.array([70.0, 60.0]))
        board.start("all", 0.0)
        samples = np.zeros(3, SAMPLE_DTYPE)
        samples["participant"], samples["seq"], samples["t"] = [0, 0, 1], [1, 3, 1], [1.0, 3.0, 1.0]
        samples["lat"], samples["lon"], samples["hr"], samples["power"] = 45.0, 7.0, 140, 200
        board.ingest(samples, 4.0)
        samples["seq"], samples["t"] = [2, 4, 2], [2.0, 4.0, 2.0]  # a late sample, then in order
        board.ingest(samples, 5.0)


def _milli(values: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.floor(values * 1000.0), nan=_MM, posinf=_MM), 0, _MM).astype(np.uint64)


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
        if kind not in KINDS:
            raise ValueError(f"unknown race kind {kind!r}; the kinds are {', '.join(KINDS)}")
        if start_mode not in ("mass", "rolling"):
            raise ValueError(f"start_mode is 'mass' or 'rolling', not {start_mode!r}")
        if start_window_s is not None and not start_window_s > 0:
            raise ValueError(f"start_window_s must be positive, not {start_window_s!r}")
        lines = [float(x) for x in checkpoints_m]
        if kind == "course":
            if not lines or not 0 < lines[0] or any(b <= a for a, b in zip(lines, lines[1:])):
                raise ValueError("a course race needs checkpoints_m: positive, strictly increasing distances")
            if len(lines) > _MAX_CHECKPOINTS:
                raise ValueError(f"a course has at most {_MAX_CHECKPOINTS} checkpoints, not {len(lines)}")
            if target_m is not None and target_m != lines[-1]:
                raise ValueError(f"the finish of a course is its last checkpoint ({lines[-1]} m), not {target_m} m")
            target_m = lines[-1]
        elif lines:
            raise ValueError(f"checkpoints_m belong to course races, not {kind} races")
        if kind in ("distance", "collective", "course") and not (target_m is not None and target_m > 0):
            raise ValueError(f"a {kind} race needs a positive target_m, not {target_m!r}")
        if kind == "time" and not (duration_s is not None and duration_s > 0):
            raise ValueError(f"a time race needs a positive duration_s, not {duration_s!r}")
        if kind == "distance":
            lines = [float(target_m)]
        self.sport = sport
        self.kind = kind
        self.fair_play = dict(fair_play or {})
        self.profile: SportProfile = tightened(PROFILES[sport], self.fair_play)
        self.target_m = None if target_m is None else float(target_m)
        self.duration_s = None if duration_s is None or kind != "time" else float(duration_s)
        self.checkpoints_m = tuple(lines) if kind == "course" else ()
        self.start_mode = start_mode
        self.start_window_s = start_window_s
        self._lines = np.asarray(lines, np.float64)
        self._size = 0
        self._schema = _columns(len(lines))  # fair play's columns are views of its per-athlete records
        self._col = {name: np.full((capacity, *shape), fill, dtype) for name, dtype, fill, shape in self._schema}
        self._rules = FairPlay(self.profile, self._col, self._record)
        self._rules.resize(capacity, 0)
        self._now = math.nan  # the receive time of the batch being ingested
        self._flags: list[dict] = []
        self._opened: float | None = None  # start("all") time, inherited by athletes added later
        self._ended = math.inf
        self._total = 0.0  # collective: distance of every athlete not disqualified
        self._reached_t: float | None = None
        self.counts = dict.fromkeys(_COUNTS, 0)
        self._order = np.arange(0)
        self.rank_of = np.zeros(0, np.int64)  # place - 1 of each athlete, as of the last rank()

    # The field

    @property
    def size(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return len(self._col["status"])

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
            done = out & (self._col["start_t"][:n] + self.duration_s <= t)
        else:
            done = np.zeros(n, bool)
        status[done] = FINISHED
        status[out & ~done] = DNF

    # Ingest

    def ingest(self, samples: np.ndarray, now: float) -> dict[str, int]:
        """Apply a batch of ``SAMPLE_DTYPE`` samples received at ``now``; returns what became of them."""
        if not isinstance(samples, np.ndarray) or samples.dtype != SAMPLE_DTYPE:
            raise TypeError("ingest takes a numpy array of engine.telemetry.SAMPLE_DTYPE records")
        if samples.ndim != 1 or len(samples) > MAX_BATCH:
            raise ValueError(f"a batch is a flat array of at most {MAX_BATCH:,} samples")
        out = dict.fromkeys(_COUNTS, 0)
        n = self._size
        p = samples["participant"].astype(np.int64)
        t = samples["t"].astype(np.float64)
        known = p < n
        if n:
            known &= self._col["status"][np.minimum(p, n - 1)] != WITHDRAWN
        timed = np.isfinite(t)
        keep = known & timed
        out["unknown_participant"] = int(np.count_nonzero(~known))
        out["invalid"] = int(np.count_nonzero(known & ~timed))
        future = keep & (t > now + SKEW_S)
        out["skewed"] = int(np.count_nonzero(future))
        t[future] = now
        chosen = np.flatnonzero(keep)
        if len(chosen):
            chosen = chosen[np.argsort((p[chosen] << 32) | samples["seq"][chosen].astype(np.int64))]
            batch = {
                "p": p[chosen],
                "seq": samples["seq"][chosen].astype(np.int64),
                "t": t[chosen],
                "d": samples["distance"][chosen].astype(np.float64),
                "lat": samples["lat"][chosen],
                "lon": samples["lon"][chosen],
                "speed": samples["speed"][chosen].astype(np.float64),
                "hr": samples["hr"][chosen].astype(np.float64),
                "power": samples["power"][chosen].astype(np.float64),
                "cadence": samples["cadence"][chosen].astype(np.float64),
            }
            self._now = float(now)
            who = batch["p"][np.concatenate(([True], batch["p"][1:] != batch["p"][:-1]))]
            newest = self._col["last_seq"][who]
            for rows in self._rounds(batch["p"]):
                self._round(batch if rows is None else {k: v[rows] for k, v in batch.items()}, out)
            c = self._col
            who = who[(c["last_seq"][who] != newest) & (c["last_t"][who] >= c["start_t"][who])]
            if len(who):
                self._rules.clock(who, c["last_t"][who], c["last_seq"][who].astype(np.int64), self._now, out)
        for key, value in out.items():
            self.counts[key] += value
        return out

    @staticmethod
    def _rounds(p: np.ndarray) -> list[np.ndarray | None]:
        """Split a batch sorted by (participant, seq) into rounds holding each participant at most once."""
        repeats = p[1:] == p[:-1]
        if not repeats.any():
            return [None]
        firsts = np.flatnonzero(np.concatenate(([True], ~repeats)))
        place = np.arange(len(p)) - np.repeat(firsts, np.diff(np.append(firsts, len(p))))
        by_place = np.argsort(place, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(place))))
        return [by_place[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _round(self, s: dict[str, np.ndarray], out: dict[str, int]) -> None:
        c = self._col
        p, seq, t = s["p"], s["seq"], s["t"]
        last_t = c["last_t"][p]
        last_seq = c["last_seq"][p].astype(np.int64)
        seen = c["seen"][p]
        has = ~np.isnan(last_t)
        ahead = seq - last_seq
        new = ~has | (ahead > 0)
        behind = np.where(new, 0, -ahead)
        bit = np.left_shift(np.uint64(1), np.minimum(behind, WINDOW - 1).astype(np.uint64))
        inside = ~new & (behind < WINDOW)
        unseen = (seen & bit) == 0
        late = inside & unseen
        old = ~new & ~inside
        slid = np.left_shift(seen, np.clip(ahead, 0, WINDOW - 1).astype(np.uint64)) | np.uint64(1)
        slid = np.where(has & (ahead < WINDOW), slid, np.uint64(1))
        c["seen"][p] = np.where(new, slid, np.where(late, seen | bit, seen))
        c["last_seq"][p] = np.where(new, seq, last_seq)
        c["last_t"][p] = np.where(new, t, last_t)
        out["duplicates"] += int(np.count_nonzero(inside & ~unseen))
        out["late"] += int(np.count_nonzero(late))
        out["too_old"] += int(np.count_nonzero(old))
        order_evidence = {"seq": seq, "last_seq": last_seq, "last_t": last_t}
        self._raise("time_regression", p, new & has & (t < last_t - ORDER_SLACK_S), t, out, **order_evidence)
        self._raise("seq_regression", p, (late | old) & (t > last_t + ORDER_SLACK_S), t, out, **order_evidence)
        accepted = new | late
        out["accepted"] += int(np.count_nonzero(accepted))
        if not accepted.all():
            s = {k: v[accepted] for k, v in s.items()}
            new = new[accepted]
            p, t = s["p"], s["t"]
        start = c["start_t"][p]
        if self.start_mode == "rolling":
            opened = c["open_t"][p]
            window = math.inf if self.start_window_s is None else self.start_window_s
            starting = (t >= opened) & (t <= opened + window) & ~(start <= t)
            if starting.any():
                start = np.where(starting, t, start)
                c["start_t"][p] = start
        scoring = (t >= start) & (t <= self._ended)
        if not scoring.any():
            return
        if not scoring.all():
            s = {k: v[scoring] for k, v in s.items()}
            new, start = new[scoring], start[scoring]
            p = s["p"]
        status = c["status"][p]
        c["status"][p] = np.where(status == DNS, RACING, status)
        if self.kind == "time":
            self._score_time(s, start, out)
        else:
            self._score_distance(s, start, out)
        self._rules.check(s, new, out)
        if not new.all():
            s = {k: v[new] for k, v in s.items()}
        p, ok = s["p"], s["d"] >= 0
        c["d_t"][p] = np.where(ok, s["t"], c["d_t"][p])
        c["d_last"][p] = np.where(ok, s["d"], c["d_last"][p])

    def _score_distance(self, s: dict[str, np.ndarray], start: np.ndarray, out: dict[str, int]) -> None:
        c = self._col
        p, t, d = s["p"], s["t"], s["d"]
        ok = d >= 0
        distance, dist_t = c["distance"][p], c["dist_t"][p]
        better = ok & ((d > distance) | ((d == distance) & (t < dist_t)))
        reached = np.where(better, d, distance)
        c["distance"][p] = reached
        c["dist_t"][p] = np.where(better, t, dist_t)
        if self.kind == "collective":
            self._collect(p, t, reached - distance)
            return
        lines = self._lines
        passed = c["cp"][p].astype(np.int64)
        passing = np.searchsorted(lines, reached, side="right")
        cross = passing > passed
        lo_t, lo_d, hi_t, hi_d = c["lo_t"][p], c["lo_d"][p], c["hi_t"][p], c["hi_d"][p]
        # Before the first line, ``lo`` is the latest sample; after a line, the
        # bracket around it is narrowed by late samples that fall inside it.
        line = lines[np.maximum(passed - 1, 0)]
        below = ok & ~cross & ((passed == 0) | (d < line)) & (t > lo_t) & (t < hi_t)
        above = ok & ~cross & (passed > 0) & (d >= line) & (t < hi_t) & (t > lo_t)
        lo_t, lo_d = np.where(below, t, lo_t), np.where(below, d, lo_d)
        hi_t, hi_d = np.where(above, t, hi_t), np.where(above, d, hi_d)
        narrowed = (below | above) & (passed > 0)
        if narrowed.any():
            c["splits"][p[narrowed], passed[narrowed] - 1] = _interp(
                lo_d[narrowed], lo_t[narrowed], hi_d[narrowed], hi_t[narrowed], line[narrowed]
            )
        if cross.any():
            # The sample before a newly crossed line: the latest one below it
            # (tracked before the first line; the last distance reading after),
            # else the athlete's start or the previous line.
            first = cross & (passed == 0)
            unknown = first & (lo_t == -np.inf)
            lo_t = np.where(unknown, start, lo_t)
            lo_d = np.where(unknown, 0.0, lo_d)
            prev_t, prev_d = c["d_t"][p], c["d_last"][p].astype(np.float64)
            later = cross & (passed > 0)
            previous = later & (prev_t < t)
            gone = later & ~previous
            back = np.maximum(passed - 1, 0)
            lo_t = np.where(previous, prev_t, np.where(gone, c["splits"][p, back], lo_t))
            lo_d = np.where(previous, prev_d, np.where(gone, lines[back], lo_d))
            hi_t, hi_d = np.where(cross, t, hi_t), np.where(cross, d, hi_d)
            for j in range(int(passed[cross].min()), int(passing[cross].max())):
                at = cross & (passed <= j) & (passing > j)
                c["splits"][p[at], j] = _interp(lo_d[at], lo_t[at], hi_d[at], hi_t[at], lines[j])
            c["cp"][p] = passing
            status = c["status"][p]
            done = cross & (passing == len(lines)) & ((status == RACING) | (status == DNF))
            c["status"][p[done]] = FINISHED
            out["finished"] += int(np.count_nonzero(done))
        c["lo_t"][p], c["lo_d"][p], c["hi_t"][p], c["hi_d"][p] = lo_t, lo_d, hi_t, hi_d

    def _score_time(self, s: dict[str, np.ndarray], start: np.ndarray, out: dict[str, int]) -> None:
        c = self._col
        p, t, d = s["p"], s["t"], s["d"]
        ok = d >= 0
        end = start + self.duration_s
        within = ok & (t <= end)
        distance, dist_t = c["distance"][p], c["dist_t"][p]
        better = within & ((d > distance) | ((d == distance) & (t < dist_t)))
        c["distance"][p] = np.where(better, d, distance)
        c["dist_t"][p] = np.where(better, t, dist_t)
        lo_t, hi_t = c["lo_t"][p], c["hi_t"][p]
        below = within & (t > lo_t)
        above = ok & (t > end) & (t < hi_t)
        c["lo_t"][p] = np.where(below, t, lo_t)
        c["lo_d"][p] = np.where(below, d, c["lo_d"][p])
        c["hi_t"][p] = np.where(above, t, hi_t)
        c["hi_d"][p] = np.where(above, d, c["hi_d"][p])
        status = c["status"][p]
        done = ok & (t > end) & ((status == RACING) | (status == DNF))
        c["status"][p[done]] = FINISHED
        out["finished"] += int(np.count_nonzero(done))

    def _collect(self, p: np.ndarray, t: np.ndarray, gained: np.ndarray) -> None:
        gained = np.where(self._col["status"][p] == DSQ, 0.0, gained)
        if self._reached_t is None and self._total + gained.sum() >= self.target_m:
            by_time = np.argsort(t, kind="stable")
            running = self._total + np.cumsum(gained[by_time])
            self._reached_t = float(t[by_time][np.searchsorted(running, self.target_m)])
        self._total += float(gained.sum())

    def _raise(
        self,
        rule: str,
        p: np.ndarray,
        tripped: np.ndarray,
        t: np.ndarray,
        out: dict,
        *,
        seq: np.ndarray | None = None,
        since: np.ndarray | None = None,
        window: tuple[np.ndarray, np.ndarray] | None = None,
        **evidence: Any,
    ) -> None:
        """Flag ``rule`` for the athletes ``p[tripped]``: ``t`` is the device time that made it conclusive."""
        if not tripped.any():
            return
        bit = _BIT[rule]
        c = self._col
        hits = np.flatnonzero(tripped)
        hits = hits[((c["flags"][p[hits]] | c["cleared"][p[hits]]) & bit) == 0]
        if not len(hits):
            return
        c["flags"][p[hits]] |= bit
        for i in hits:
            facts = {k: _plain(v[i] if isinstance(v, np.ndarray) else v) for k, v in evidence.items()}
            if window is not None:
                facts["window"] = [_plain(window[0][i]), _plain(window[1][i])]
            if seq is not None:
                facts["seqs"] = [int(max(since[i], 0)) if since is not None else int(seq[i]), int(seq[i])]
            self._record(rule, int(p[i]), float(t[i]), facts)
        out["flagged"] += len(hits)

    def _record(self, rule: str, participant: int, t: float, evidence: dict) -> None:
        """Keep a flag whose bit is already set: ``t`` is the device time that made it conclusive."""
        self._flags.append(
            {
                "participant": participant,
                "rule": rule,
                "t": t,
                "at": _plain(self._now),
                "severity": SEVERITY[rule],
                "evidence": evidence,
                "decision": None,
            }
        )

    # Fair-play review

    def flags(self, index: int | None = None) -> list[dict]:
        """Raised flags, oldest first, with the reviewer's decision once there is one."""
        chosen = [f for f in self._flags if index is None or f["participant"] == index]
        return [{**f, "evidence": dict(f["evidence"])} for f in chosen]

    def review(self, index: int, accept: bool) -> None:
        """Accept: the open flags are cleared and their rules don't raise again for this athlete. Reject: DSQ."""
        self._rows(index)
        c = self._col
        for flag in self._flags:
            if flag["participant"] == index and flag["decision"] is None:
                flag["decision"] = "accepted" if accept else "dsq"
        if accept:
            c["cleared"][index] |= c["flags"][index]
            c["flags"][index] = 0
        elif c["status"][index] != DSQ:
            if self.kind == "collective":
                self._total -= float(c["distance"][index])
            c["status"][index] = DSQ

    def status(self, index: int) -> str:
        """One athlete's status in ``STATUSES``."""
        self._rows(index)
        return STATUSES[int(self._col["status"][index])]

    def reinstate(self, index: int, status: str) -> None:
        """Undo a disqualification (a correction): the athlete is ``status`` again, their flags cleared."""
        self._rows(index)
        if status not in STATUSES or status == "dsq":
            raise ValueError(f"a reinstated athlete is one of {', '.join(STATUSES[:-1])}, not {status!r}")
        c = self._col
        if c["status"][index] != DSQ:
            raise ValueError("only a disqualified athlete can be reinstated")
        c["status"][index] = STATUSES.index(status)
        c["cleared"][index] |= c["flags"][index]
        c["flags"][index] = 0
        if self.kind == "collective":
            self._total += float(c["distance"][index])

    # Ranking and views

    def _scored(self) -> tuple[np.ndarray, np.ndarray]:
        """Each athlete's scored distance and the unix time it was reached (inf: never)."""
        n, c = self._size, self._col
        distance, when = c["distance"][:n], c["dist_t"][:n]
        if self.kind in ("distance", "course"):
            return np.minimum(distance, self.target_m), when
        if self.kind == "collective":
            return distance, when
        start = c["start_t"][:n]
        end = start + self.duration_s
        hi_t = c["hi_t"][:n]
        lo_t = c["lo_t"][:n]
        known = lo_t > -np.inf
        at_end = _interp(np.where(known, lo_t, start), np.where(known, c["lo_d"][:n], 0.0), hi_t, c["hi_d"][:n], end)
        taken = (hi_t < np.inf) & (at_end > distance)
        return np.where(taken, at_end, distance), np.where(taken, end, when)

    def _finish_elapsed(self) -> np.ndarray:
        n, c = self._size, self._col
        if self.kind == "time":
            return np.where(c["status"][:n] == FINISHED, self.duration_s, np.inf)
        if self.kind == "collective":
            return np.full(n, np.inf)
        done = c["cp"][:n] == len(self._lines)
        return np.where(done, c["splits"][:n, -1] - c["start_t"][:n], np.inf)

    def rank(self, category: int | None = None) -> np.ndarray:
        """Participant indices, best first (the tie rule is in the module docstring)."""
        n, c = self._size, self._col
        scored, when = self._scored()
        start = c["start_t"][:n]
        reached = np.nan_to_num(when - start, nan=np.inf)
        far = np.uint64(_MM) - _milli(scored)
        if self.kind in ("time", "collective"):
            coarse = far
            keys = [reached, -scored]
        else:
            finish = self._finish_elapsed()
            done = finish < np.inf
            reached = np.where(done, finish, reached)
            keys = [reached, -scored]
            if self.kind == "course":
                passed = c["cp"][:n].astype(np.int64)
                at_line = c["splits"][:n][np.arange(n), np.maximum(passed - 1, 0)] - start
                at_line = np.where(passed > 0, at_line, 0.0)
                rest = np.where(passed > 0, _milli(at_line), far)
                group = (len(self._lines) - passed + 1).astype(np.uint64)
                keys += [at_line, -passed]
            else:
                rest, group = far, np.uint64(1)
            coarse = np.where(done, _milli(finish), (group << np.uint64(44)) | rest)
            keys += [finish]
        out = c["status"][:n] >= WITHDRAWN
        coarse[out] = np.uint64(1 << 62) + np.flatnonzero(out).astype(np.uint64)
        order = np.argsort(coarse)
        ranked = coarse[order]
        tie = ranked[1:] == ranked[:-1]
        if tie.any():
            spots = np.flatnonzero(np.concatenate((tie, [False])) | np.concatenate(([False], tie)))
            tied = np.sort(order[spots])
            order[spots] = tied[np.lexsort([k[tied] for k in keys] + [coarse[tied]])]
        self._order = order
        rank_of = np.empty(n, np.int64)
        rank_of[order] = np.arange(n)
        self.rank_of = rank_of
        if category is None:
            return order
        return order[c["category"][:n][order] == category]

    def place(self, index: int) -> int | None:
        """1-based place overall as of the last ``rank()``; None for an athlete added since."""
        return int(self.rank_of[index]) + 1 if 0 <= index < len(self.rank_of) else None

    def _entries(self, who: np.ndarray, first_place: int, leader: int | None, ahead: np.ndarray) -> list[dict]:
        c = self._col
        scored, when = self._scored()
        start = c["start_t"][: self._size]
        finish = self._finish_elapsed()

        def gaps(behind: np.ndarray, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            metres = scored[front] - scored[behind]
            seconds = np.full(len(behind), np.nan)
            if self.kind in ("distance", "course"):
                line = c["cp"][behind].astype(np.int64) - 1
                both = (line >= 0) & (c["cp"][front] > line)
                safe = np.maximum(line, 0)
                seconds = np.where(
                    both,
                    (c["splits"][behind, safe] - start[behind]) - (c["splits"][front, safe] - start[front]),
                    np.nan,
                )
            return metres, seconds

        has_ahead = ahead >= 0
        gap_m, gap_s = gaps(who, np.full(len(who), leader if leader is not None else 0))
        ahead_m, ahead_s = gaps(who, np.where(has_ahead, ahead, who))
        elapsed = when[who] - start[who]
        moving = (scored[who] > 0) & (elapsed > 0)
        projected_s = projected_m = np.full(len(who), np.nan)
        if self.kind in ("distance", "course"):
            pace = np.where(moving, elapsed * self.target_m / np.where(moving, scored[who], 1.0), np.nan)
            projected_s = np.where(finish[who] < np.inf, finish[who], pace)
        elif self.kind == "time":
            projected_m = np.where(moving, scored[who] * self.duration_s / np.where(moving, elapsed, 1.0), np.nan)
        statuses = self._status_names(who)
        columns = {
            "participant": who,
            "category": c["category"][who],
            "distance_m": scored[who],
            "gap_m": gap_m,
            "gap_s": gap_s,
            "gap_ahead_m": np.where(has_ahead, ahead_m, np.nan),
            "gap_ahead_s": np.where(has_ahead, ahead_s, np.nan),
            "finish_s": finish[who],
            "projected_finish_s": projected_s,
            "projected_distance_m": projected_m,
        }
        lists = {k: v.tolist() for k, v in columns.items()}
        return [
            {"rank": first_place + i, **{k: _plain(v[i]) for k, v in lists.items()}, "status": statuses[i]}
            for i in range(len(who))
        ]

    def _status_names(self, who: np.ndarray) -> list[str]:
        return [STATES[code] for code in self.states(who).tolist()]

    def states(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Each athlete's code in ``STATES``: a status, or provisional (flagged, still racing or finished)."""
        rows = self._rows(np.asarray(indices, np.int64))
        status = self._col["status"][rows]
        provisional = (self._col["flags"][rows] != 0) & ((status == RACING) | (status == FINISHED))
        return np.where(provisional, PROVISIONAL, status).astype(np.uint8)

    def _active(self, order: np.ndarray) -> np.ndarray:
        return order[self._col["status"][order] < WITHDRAWN]

    def leaderboard(self, n: int = 100, category: int | None = None) -> dict:
        """The top ``n`` (DSQ and withdrawn athletes left out) and the race totals, as plain values."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a number of places, not {n!r}")
        ranked = self._active(self.rank(category))
        top = ranked[:n]
        ahead = np.concatenate(([-1], top[:-1])) if len(top) else top
        leader = int(ranked[0]) if len(ranked) else None
        return {
            "kind": self.kind,
            "sport": self.sport,
            "category": category,
            "entries": self._entries(top, 1, leader, ahead),
            "totals": self.totals(),
        }

    def around(self, index: int, n: int = 5) -> list[dict]:
        """The ±``n`` places around an athlete, overall, as of the last ``rank()``."""
        self._rows(index)
        if len(self._order) != self._size:
            self.rank()
        ranked = self._active(self._order)
        place = int(self.rank_of[index])
        if place >= len(ranked):
            return []
        first = max(place - n, 0)
        who = ranked[first : place + n + 1]
        ahead = np.concatenate(([ranked[first - 1] if first else -1], who[:-1]))
        return self._entries(who, first + 1, int(ranked[0]), ahead)

    def distances(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Current distance of each athlete in ``indices``, as an array (for packed views)."""
        return self._col["distance"][self._rows(np.asarray(indices, np.int64))]

    def positions(self, indices: Sequence[int] | np.ndarray) -> dict[str, list]:
        """Latest known positions for the map, column by column; None where unknown."""
        rows = self._rows(np.asarray(indices, np.int64))
        c = self._col
        columns = {"participant": rows, "lat": c["lat"][rows], "lon": c["lon"][rows], "t": c["pos_t"][rows]}
        columns["distance_m"] = c["distance"][rows]
        return {k: [_plain(x) for x in v.tolist()] for k, v in columns.items()}

    def totals(self) -> dict:
        n, c = self._size, self._col
        status = c["status"][:n]
        counts = np.bincount(status, minlength=len(STATUSES)).tolist()
        provisional = int(np.count_nonzero((c["flags"][:n] != 0) & ((status == RACING) | (status == FINISHED))))
        totals = {
            "participants": n,
            **dict(zip(STATUSES, counts)),
            "provisional": provisional,
            "flagged": len({f["participant"] for f in self._flags if f["decision"] is None}),
            "samples": self.counts["accepted"],
        }
        if self.kind == "collective":
            totals.update(
                distance_m=self._total,
                target_m=self.target_m,
                progress=min(self._total / self.target_m, 1.0),
                reached_t=self._reached_t,
            )
        else:
            totals["distance_m"] = float(c["distance"][:n][status != DSQ].sum())
        return totals

    def results(self) -> list[dict]:
        """Official results in rank order; a place only for finishers. Statuses include dns, dnf and dsq."""
        order = self.rank()
        c = self._col
        scored, _ = self._scored()
        finish = self._finish_elapsed()
        status = c["status"][order]
        places = np.cumsum(status == FINISHED)
        splits = c["splits"][order] - c["start_t"][order][:, None] if self.kind == "course" else None
        rows = []
        for i, who in enumerate(order.tolist()):
            flags = int(c["flags"][who])
            row = {
                "place": int(places[i]) if status[i] == FINISHED else None,
                "participant": who,
                "category": int(c["category"][who]),
                "status": STATUSES[status[i]],
                "provisional": bool(flags) and status[i] in (RACING, FINISHED),
                "distance_m": float(scored[who]),
                "finish_s": _plain(finish[who]),
                "flags": [rule for rule in RULES if flags & _BIT[rule]],
            }
            if splits is not None:
                row["splits_s"] = [_plain(x) for x in splits[i].tolist()]
            rows.append(row)
        return rows

    # Snapshots

    def to_state(self) -> dict:
        """The whole board as msgpack-friendly values (arrays as raw bytes)."""
        n = self._size
        return {
            "schema": 3,
            "sport": self.sport,
            "fair_play": dict(self.fair_play),
            "kind": self.kind,
            "target_m": self.target_m,
            "duration_s": self.duration_s,
            "checkpoints_m": list(self.checkpoints_m),
            "start_mode": self.start_mode,
            "start_window_s": self.start_window_s,
            "capacity": self.capacity,
            "size": n,
            "opened": self._opened,
            "ended": None if self._ended == math.inf else self._ended,
            "total": self._total,
            "reached_t": self._reached_t,
            "counts": dict(self.counts),
            "flags": self.flags(),
            "columns": {
                name: {"dtype": column.dtype.str, "shape": list(column[:n].shape), "data": column[:n].tobytes()}
                for name, column in self._col.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict) -> RaceBoard:
        if not isinstance(state, dict) or state.get("schema") not in (1, 2, 3):
            raise ValueError("not a race board snapshot of schema 1, 2 or 3")
        board = cls(
            state["capacity"],
            sport=state["sport"],
            kind=state["kind"],
            target_m=state["target_m"],
            duration_s=state["duration_s"],
            checkpoints_m=state["checkpoints_m"],
            start_mode=state["start_mode"],
            start_window_s=state["start_window_s"],
            fair_play=state.get("fair_play"),
        )
        n = state["size"]
        saved_columns = state["columns"]
        if state["schema"] == 1:
            # Written before fair play kept its own columns: the new ones start afresh (their
            # windows fill again within minutes), the old power and heart-rate averages go.
            saved_columns = {k: v for k, v in saved_columns.items() if k not in _LEGACY and k in board._col}
            fresh = set(board._col) - set(saved_columns)
            if not fresh <= {name for name, *_ in fair_play_columns(board.profile)} | {"sex"}:
                raise ValueError("race board snapshot: its columns do not match this version of the board")
        elif set(saved_columns) != set(board._col):
            raise ValueError("race board snapshot: its columns do not match this version of the board")
        if not 0 <= n <= board.capacity:
            raise ValueError("race board snapshot: its columns do not match this version of the board")
        for name, saved in saved_columns.items():
            column = board._col[name]
            if np.dtype(saved["dtype"]) != column.dtype or tuple(saved["shape"]) != (n, *column.shape[1:]):
                raise ValueError(f"race board snapshot: column {name} has the wrong type or shape")
            column[:n] = np.frombuffer(saved["data"], column.dtype).reshape(saved["shape"])
        board._size = n
        board._opened = state["opened"]
        board._ended = math.inf if state["ended"] is None else state["ended"]
        board._total = state["total"]
        board._reached_t = state["reached_t"]
        board.counts = dict(state["counts"])
        board._flags = [{**f, "evidence": dict(f["evidence"])} for f in state["flags"]]
        if state["schema"] == 1:
            # kin_seq and the fair-play clock resume from the delivery state
            board._col["kin_seq"][:n] = board._col["last_seq"][:n]
        if state["schema"] == 2:
            # the heart-rate ring was kept newest first (slot k: k seqs before kin_seq); now by seq
            ring, newest = board._col["hr_ring"][:n], board._col["kin_seq"][:n].astype(np.int64)
            slots = (newest[:, None] - np.arange(ring.shape[1])[None, :]) % ring.shape[1]
            board._col["hr_ring"][np.arange(n)[:, None], slots] = ring.copy()
        return board

    def memory_bytes(self) -> int:
        """Bytes of hot state held in the participant arrays (at capacity)."""
        return sum(column.nbytes for column in self._col.values())
