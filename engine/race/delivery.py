"""Delivery: what becomes of each sample before it scores (duplicates, late, too old, skewed).

Samples arrive checked against the telemetry contract (``engine.telemetry.decode``); the
board trusts those bounds and judges only what they cannot: who sent a sample, and when.
Samples are idempotent by (entry, seq). Each entry keeps its newest seq
and a 64-bit mask of the seqs below it (the IPsec anti-replay window): a seen seq is a
duplicate and dropped; an unseen one below the newest is *late*, accepted and counted;
one more than 64 below is dropped as too old. A sample timed further ahead of the
receive time than ``SKEW_S`` is clamped to it. Samples of one entry within a
batch are taken in seq order, one round per sample, so the same samples in any order
inside the window give the same board (``scoring`` keeps its results order-free).

A sample whose seq and time disagree (a newer seq timed earlier, or the reverse) raises
a fair-play flag; every accepted sample then scores and goes through fair play in
device order, late ones included. The device clock is checked against the receive
clock once per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.race import scoring
from engine.race.columns import WITHDRAWN
from engine.race.review import raise_flag
from engine.telemetry import SAMPLE_DTYPE

if TYPE_CHECKING:
    from engine.race.board import RaceBoard

__all__ = ["COUNTS", "ingest"]

COUNTS = (
    "accepted",
    "duplicates",
    "late",
    "too_old",
    "skewed",
    "unknown_participant",
    "flagged",
    "finished",
)  # what became of a batch's samples: RaceBoard.ingest's answer, and the board's running totals
WINDOW = 64  # seqs the anti-replay mask remembers below the newest
SKEW_S = 5.0  # a sample further in the future than this is clamped to now
ORDER_SLACK_S = 1.0  # clock jitter tolerated before seq and time order are said to disagree


def ingest(board: RaceBoard, samples: np.ndarray, now: float) -> dict[str, int]:
    """Apply a batch of ``SAMPLE_DTYPE`` samples received at ``now``; returns what became of them."""
    if not isinstance(samples, np.ndarray) or samples.dtype != SAMPLE_DTYPE:
        raise TypeError("ingest takes a numpy array of engine.telemetry.SAMPLE_DTYPE records")
    out = dict.fromkeys(COUNTS, 0)
    n = board.size
    p = samples["entry"].astype(np.int64)
    t = samples["t"].astype(np.float64)
    keep = p < n
    if n:
        keep &= board._col["status"][np.minimum(p, n - 1)] != WITHDRAWN
    out["unknown_participant"] = int(np.count_nonzero(~keep))
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
        board._now = float(now)
        who = batch["p"][np.concatenate(([True], batch["p"][1:] != batch["p"][:-1]))]
        newest = board._col["last_seq"][who].astype(np.int64)
        late = [_round(board, batch if rows is None else {k: v[rows] for k, v in batch.items()}, out)
                for rows in _rounds(batch["p"])]  # fmt: skip
        c = board._col
        seq = c["last_seq"][who].astype(np.int64)
        # A backlog still arriving: samples older than the newest came, or the newest skipped seqs
        took = np.bincount(np.searchsorted(who, batch["p"]), minlength=len(who))
        backlog = np.isin(who, np.concatenate(late)) | ((seq != newest) & (took < seq - newest))
        keep = ((seq != newest) | backlog) & (c["last_t"][who] >= c["start_t"][who])
        if keep.any():
            who, seq, fresh, backlog = who[keep], seq[keep], (seq != newest)[keep], backlog[keep]
            board._rules.clock(who, c["last_t"][who], seq, fresh, backlog, board._now, out)
    for key, value in out.items():
        board.counts[key] += value
    return out


def _rounds(p: np.ndarray) -> list[np.ndarray | None]:
    """Split a batch sorted by (entry, seq) into rounds holding each entry at most once."""
    repeats = p[1:] == p[:-1]
    if not repeats.any():
        return [None]
    firsts = np.flatnonzero(np.concatenate(([True], ~repeats)))
    place = np.arange(len(p)) - np.repeat(firsts, np.diff(np.append(firsts, len(p))))
    by_place = np.argsort(place, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(place))))
    return [by_place[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _round(board: RaceBoard, s: dict[str, np.ndarray], out: dict[str, int]) -> np.ndarray:
    """One round (each entry at most once): the anti-replay window, then scoring and fair play;
    returns the entries whose sample was late (older than one taken before: a backlog arriving)."""
    c = board._col
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
    order_evidence = {"last_seq": last_seq, "last_t": last_t}
    raise_flag(board, "time_regression", p, new & has & (t < last_t - ORDER_SLACK_S), t, seq, out, **order_evidence)
    raise_flag(board, "seq_regression", p, (late | old) & (t > last_t + ORDER_SLACK_S), t, seq, out, **order_evidence)
    accepted = new | late
    out["accepted"] += int(np.count_nonzero(accepted))
    behind = p[late]
    if not accepted.all():
        s = {k: v[accepted] for k, v in s.items()}
        new = new[accepted]
    scored = scoring.score(board, s, new, out)
    if scored is None:
        return behind
    s, new = scored
    board._rules.check(s, new, out)  # before the last distance moves on: the rules read the one before
    scoring.keep_last_distance(board, s, new)
    return behind
