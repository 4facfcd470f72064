"""A rank index for a board of up to millions: top N and "the rank of a score" in O(log n).

Scores (higher is better) fall into ``buckets`` buckets of ``width`` from ``low`` (below ``low``:
the first bucket, above the last: the last). A Fenwick tree (numpy) counts the participants per
bucket, so "how many score in a higher bucket" is a prefix sum. Beside it, ``top`` holds, with
their exact scores, every participant whose bucket is at least ``cutoff``: sorted by
``(-score, at, user)``, so ties go to who got there first. ``cutoff`` rises whenever the list
passes ``2 × keep`` so that it stays bounded (between ``keep`` and ``2 × keep`` entries while one
bucket does not hold more than that); it never falls, so a list emptied by corrections (scores
taken back, participants leaving) can hold fewer than a board asks for: ``top`` says so
(``complete`` false) and the caller merges the participants' shards instead.

Ranks: exact for a participant in ``top``; below the cutoff, one plus the participants in higher
buckets: participants in one bucket share its best rank (a bucket is a challenge's ``UNITS`` step,
10 m, 10 s, one activity, or finer).

Participants without a score (no effort yet in a single-effort challenge) are counted apart
(``unscored``) and ranked after everyone.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

__all__ = ["RankIndex", "BUCKETS", "KEEP"]

BUCKETS = 1 << 17  # 131,072 buckets: 512 KiB of int32 counts
KEEP = 1_000


class RankIndex:
    def __init__(self, low: float, width: float, buckets: int = BUCKETS, keep: int = KEEP) -> None:
        if not (math.isfinite(low) and math.isfinite(width) and width > 0):
            raise ValueError("a rank index needs a finite low and a positive width")
        if buckets < 2 or keep < 1:
            raise ValueError("a rank index needs at least two buckets and keeps at least one entry")
        self.low, self.width, self.buckets, self.keep = float(low), float(width), buckets, keep
        self.tree = np.zeros(buckets + 1, dtype=np.int32)  # Fenwick, 1-based: bucket b is index b + 1
        self.scored = 0
        self.unscored = 0
        self.cutoff = 0
        self.top: list[tuple[float, float, str]] = []  # (-score, at, user), sorted
        self.where: dict[str, tuple[float, float, str]] = {}  # user -> their key in ``top``

    # -- arithmetic --------------------------------------------------------------------

    def bucket(self, score: float) -> int:
        b = math.floor((score - self.low) / self.width)
        return 0 if b < 0 else self.buckets - 1 if b >= self.buckets else b

    def _add(self, bucket: int, delta: int) -> None:
        tree, i = self.tree, bucket + 1
        while i <= self.buckets:
            tree[i] += delta
            i += i & -i

    def _prefix(self, bucket: int) -> int:
        """How many score in buckets 0..bucket."""
        tree, i, total = self.tree, bucket + 1, 0
        while i > 0:
            total += int(tree[i])
            i -= i & -i
        return total

    def above(self, bucket: int) -> int:
        """How many score in a bucket higher than ``bucket``."""
        return self.scored - self._prefix(bucket)

    # -- changes -----------------------------------------------------------------------

    def move(self, user: str, before: list | None, after: list | None) -> None:
        """``user`` went from ``before`` to ``after``: each ``[score or None, at]``, or None for not on
        the board (joining, leaving)."""
        if before is not None:
            self._remove(user, before)
        if after is not None:
            self._insert(user, after)

    def _remove(self, user: str, standing: list) -> None:
        score = standing[0]
        if score is None:
            self.unscored -= 1
            return
        self._add(self.bucket(score), -1)
        self.scored -= 1
        key = self.where.pop(user, None)
        if key is not None:
            i = bisect.bisect_left(self.top, key)
            if i < len(self.top) and self.top[i] == key:
                del self.top[i]

    def _insert(self, user: str, standing: list) -> None:
        score, at = standing
        if score is None:
            self.unscored += 1
            return
        bucket = self.bucket(score)
        self._add(bucket, 1)
        self.scored += 1
        if bucket >= self.cutoff:
            key = (-float(score), float(at), user)
            bisect.insort(self.top, key)
            self.where[user] = key
            if len(self.top) > 2 * self.keep:
                self._raise_cutoff()

    def _raise_cutoff(self) -> None:
        """Keep the list to the entries of the buckets from the ``keep``-th entry's up, or from the one
        above it when that bucket alone would hold more than ``2 × keep``."""
        nth = self.bucket(-self.top[self.keep - 1][0])
        cutoff = nth if self.above(nth - 1) <= 2 * self.keep else nth + 1
        self.cutoff = max(self.cutoff, cutoff)
        kept = [key for key in self.top if self.bucket(-key[0]) >= self.cutoff]
        for key in self.top[len(kept) :]:
            del self.where[key[2]]
        self.top = kept

    # -- reading -----------------------------------------------------------------------

    @property
    def participants(self) -> int:
        return self.scored + self.unscored

    def complete(self, n: int) -> bool:
        """Whether ``top`` holds the board's first ``n`` (or everyone scored)."""
        return len(self.top) >= n or len(self.top) == self.scored

    def rows(self, start: int, count: int) -> list[dict[str, Any]]:
        """Entries ``start``.. of ``top`` with their ranks (1-based)."""
        return [
            {"rank": start + i + 1, "user_id": user, "score": -negative, "at": at}
            for i, (negative, at, user) in enumerate(self.top[start : start + count])
        ]

    def rank(self, score: float | None, at: float = math.inf, user: str = "") -> int:
        """The rank of a participant at ``score`` (reached at ``at``): exact in ``top``, else the best
        rank of its bucket; without a score, after everyone scored."""
        if score is None:
            return self.scored + 1
        key = self.where.get(user) or (-float(score), float(at), user)
        bucket = self.bucket(score)
        if bucket >= self.cutoff:
            return bisect.bisect_left(self.top, key) + 1
        return self.above(bucket) + 1

    def position(self, user: str) -> int | None:
        """Where ``user`` is in ``top`` (0-based), or None."""
        key = self.where.get(user)
        return None if key is None else bisect.bisect_left(self.top, key)

    # -- keeping -----------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "low": self.low,
            "width": self.width,
            "buckets": self.buckets,
            "keep": self.keep,
            "tree": self.tree.tobytes(),
            "scored": self.scored,
            "unscored": self.unscored,
            "cutoff": self.cutoff,
            "top": [list(key) for key in self.top],
        }

    @classmethod
    def from_state(cls, state: dict) -> RankIndex:
        index = cls(state["low"], state["width"], state["buckets"], state["keep"])
        index.tree = np.frombuffer(state["tree"], dtype=np.int32).copy()
        index.scored, index.unscored, index.cutoff = state["scored"], state["unscored"], state["cutoff"]
        index.top = [(float(k[0]), float(k[1]), str(k[2])) for k in state["top"]]
        index.where = {key[2]: key for key in index.top}
        return index
