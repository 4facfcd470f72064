"""Offline evaluation: a time-split hold-out, recall@k and NDCG@k, against popularity and random.

The split is by time, as the model meets the future: every pair before the cut trains, the pairs
after it of users known before it are the hold-out. Each user's ranking leaves out the items they
already took in training (they are filtered in serving too), and counts only items of the kind
being asked (people are ranked among people).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.recommend.data import KINDS, Interactions
from engine.recommend.model import Model

__all__ = ["Scores", "evaluate", "time_split", "model_scorer", "popularity_scorer", "random_scorer"]

Scorer = Callable[[np.ndarray], np.ndarray]  # user rows → (users, items) scores


@dataclass
class Scores:
    recall: float
    ndcg: float
    users: int


def time_split(data: Interactions, hold_out: float = 0.2) -> tuple[Interactions, Interactions]:
    if not 0 < hold_out < 1:
        raise ValueError("hold_out is a fraction between 0 and 1")
    cut = float(np.quantile(data.at, 1 - hold_out)) if len(data) else 0.0
    before = data.at < cut
    known = np.zeros(len(data.users), dtype=bool)
    known[data.user[before]] = True
    return data.subset(before), data.subset(~before & known[data.user])


def model_scorer(model: Model, data: Interactions) -> Scorer:
    """Scores of ``model`` over ``data``'s item space (items it never saw: from their features)."""
    items = np.stack([model.item_vector(i, data.item_features.get(i, [])) for i in data.items])
    users = np.stack([model.user_vector(u, data.user_features.get(u, []))[0] for u in data.users])
    return lambda rows: users[rows] @ items.T


def popularity_scorer(train: Interactions) -> Scorer:
    counts = np.bincount(train.item, minlength=len(train.items)).astype(np.float32)
    return lambda rows: np.broadcast_to(counts, (len(rows), len(counts)))


def random_scorer(items: int, seed: int = 0) -> Scorer:
    rng = np.random.default_rng(seed)
    return lambda rows: rng.random((len(rows), items), dtype=np.float32)


def evaluate(scorer: Scorer, train: Interactions, test: Interactions, k: int = 20) -> dict[str, Scores]:
    """recall@k and NDCG@k per item kind, averaged over the users with a held-out item of that kind."""
    kinds = train.item_kinds
    seen: dict[int, set[int]] = {}
    for u, i in zip(train.user.tolist(), train.item.tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
    out: dict[str, Scores] = {}
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    item_at = {item: n for n, item in enumerate(train.items)}
    for kind_at, kind in enumerate(KINDS):
        truth: dict[int, set[int]] = {}
        for u, i in zip(test.user.tolist(), test.item.tolist(), strict=True):
            if kinds[i] == kind_at and i not in seen.get(u, ()):
                truth.setdefault(u, set()).add(i)
        if not truth:
            continue
        columns = np.nonzero(kinds == kind_at)[0]
        if kind == "race":  # races to join are those not yet run, as in serving: none that anybody took before the cut
            columns = columns[np.bincount(train.item, minlength=len(train.items))[columns] == 0]
        users = np.array(sorted(truth))
        recalls, ndcgs = [], []
        for start in range(0, len(users), 512):
            rows = users[start : start + 512]
            scores = np.array(scorer(rows), dtype=np.float32)[:, columns]
            for r, u in enumerate(rows.tolist()):
                for i in seen.get(u, ()):
                    if kinds[i] == kind_at:
                        at = np.searchsorted(columns, i)
                        if at < len(columns) and columns[at] == i:
                            scores[r, at] = -np.inf
                own = item_at.get(f"user:{train.users[u]}")
                if own is not None and kinds[own] == kind_at:
                    at = np.searchsorted(columns, own)
                    if at < len(columns) and columns[at] == own:
                        scores[r, at] = -np.inf
                top = columns[np.argsort(-scores[r], kind="stable")[:k]]
                hits = np.array([i in truth[u] for i in top.tolist()], dtype=np.float64)
                recalls.append(hits.sum() / min(len(truth[u]), k))
                ideal = discounts[: min(len(truth[u]), k)].sum()
                ndcgs.append(float((hits * discounts[: len(hits)]).sum() / ideal))
        out[kind] = Scores(float(np.mean(recalls)), float(np.mean(ndcgs)), len(users))
    return out
