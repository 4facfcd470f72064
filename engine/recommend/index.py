"""The candidates: an exact dot-product search over every item of a kind, many users at once.

Exact search is one matrix product, (users × dim) by (dim × items), then a top-k: on this
machine's class of CPU that stays in milliseconds up to about 10^6 items of 32 dimensions
(128 MB of float32); past that, an approximate index (IVF, HNSW) takes its place behind the
same ``search``. Items that must never be shown (hidden groups) are left out of the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engine.recommend.data import KINDS
from engine.recommend.model import Model

__all__ = ["Index"]


class Index:
    def __init__(self, model: Model) -> None:
        self.model = model
        self._ids: dict[str, list[str]] = {}
        self._matrix: dict[str, torch.Tensor] = {}
        for kind in KINDS:
            rows = [n for n, item in enumerate(model.items) if item.startswith(f"{kind}:") and item not in model.never]
            self._ids[kind] = [model.items[n].split(":", 1)[1] for n in rows]
            self._matrix[kind] = torch.from_numpy(np.ascontiguousarray(model.item_vectors[rows])).T.contiguous()

    def size(self, kind: str) -> int:
        return len(self._ids[kind])

    def search(
        self, vectors: np.ndarray, kind: str, k: Sequence[int], exclude: Sequence[set[str]]
    ) -> list[list[tuple[str, float]]]:
        """For each row of ``vectors``, the ``k[row]`` best items of ``kind`` not in ``exclude[row]``."""
        if kind not in KINDS:
            raise ValueError(f"kind is one of {', '.join(KINDS)}, not {kind!r}")
        ids, matrix = self._ids[kind], self._matrix[kind]
        if not ids or not len(vectors):
            return [[] for _ in range(len(vectors))]
        scores = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)) @ matrix
        want = min(len(ids), max(k[r] + len(exclude[r]) for r in range(len(vectors))))
        top_scores, top_at = torch.topk(scores, want, dim=1)
        out = []
        for row, (values, places) in enumerate(zip(top_scores.tolist(), top_at.tolist(), strict=True)):
            chosen = [(ids[p], v) for v, p in zip(values, places, strict=True) if ids[p] not in exclude[row]]
            out.append(chosen[: k[row]])
        return out

    def rank(
        self, vector: np.ndarray, candidates: Sequence[tuple[str, list[str]]], kind: str
    ) -> list[tuple[str, float]]:
        """Given candidates (an id and its features: an open race the model never saw), best first."""
        if not candidates:
            return []
        matrix = np.stack([self.model.item_vector(f"{kind}:{c}", tokens) for c, tokens in candidates])
        scores = matrix @ vector
        order = np.argsort(-scores, kind="stable")
        return [(candidates[n][0], float(scores[n])) for n in order]
