"""Matrix factorisation with side features, trained with BPR (Bayesian personalised ranking).

A user's vector is their own embedding plus the mean of their features' (region, main sports);
an item's is its embedding plus the mean of its features' (kind, sports, region). Features are one
table shared by both sides, so a newcomer with only a region and a sport, or a race nobody has run
yet, still has a vector: that is the cold start. The score is ``user · item + bias(item)``.

BPR samples (user, item they took, item of the same kind they did not) and pushes the first above
the second: a ranking loss for implicit feedback, where an absent pair means "unknown", not "no".
Negatives come from the same kind, because "people" and "races" are ranked apart.

``Model`` is what training leaves: plain arrays, so serving needs no autograd and a version loads
in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.recommend.data import KINDS, Interactions

__all__ = ["Model", "train"]


@dataclass
class Model:
    items: list[str]
    item_vectors: np.ndarray  # float32 (items, dim), bias folded in as the last column
    users: list[str]
    user_vectors: np.ndarray  # float32 (users, dim), 1.0 as the last column (meets the bias)
    features: list[str]
    feature_vectors: np.ndarray  # float32 (features, dim - 1)
    never: set[str]
    ends: dict[str, float]

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def user_vector(self, user: str, tokens: list[str]) -> tuple[np.ndarray, bool]:
        """The user's vector, and whether it is a cold start (built from ``tokens`` alone)."""
        at = self._user_at.get(user)
        if at is not None:
            return self.user_vectors[at], False
        return np.append(self._mean(tokens), np.float32(1.0)).astype(np.float32), True

    def item_vector(self, item: str, tokens: list[str]) -> np.ndarray:
        at = self._item_at.get(item)
        if at is not None:
            return self.item_vectors[at]
        return np.append(self._mean(tokens), np.float32(0.0)).astype(np.float32)

    def _mean(self, tokens: list[str]) -> np.ndarray:
        rows = [self._feature_at[t] for t in tokens if t in self._feature_at]
        if not rows:
            return np.zeros(self.dim - 1, dtype=np.float32)
        return self.feature_vectors[rows].mean(axis=0)

    def __post_init__(self) -> None:
        self._user_at = {u: n for n, u in enumerate(self.users)}
        self._item_at = {i: n for n, i in enumerate(self.items)}
        self._feature_at = {f: n for n, f in enumerate(self.features)}

    def to_state(self) -> dict:
        return {
            "items": self.items,
            "item_vectors": torch.from_numpy(self.item_vectors),
            "users": self.users,
            "user_vectors": torch.from_numpy(self.user_vectors),
            "features": self.features,
            "feature_vectors": torch.from_numpy(self.feature_vectors),
            "never": sorted(self.never),
            "ends": self.ends,
        }

    @classmethod
    def from_state(cls, state: dict) -> Model:
        return cls(
            items=list(state["items"]),
            item_vectors=state["item_vectors"].numpy(),
            users=list(state["users"]),
            user_vectors=state["user_vectors"].numpy(),
            features=list(state["features"]),
            feature_vectors=state["feature_vectors"].numpy(),
            never=set(state["never"]),
            ends=dict(state["ends"]),
        )


class _Net(torch.nn.Module):
    def __init__(self, users: int, items: int, features: int, dim: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(users, dim)
        self.item = torch.nn.Embedding(items, dim)
        self.bias = torch.nn.Embedding(items, 1)
        self.feature = torch.nn.EmbeddingBag(features + 1, dim, mode="mean", padding_idx=features)
        for table in (self.user, self.item):
            torch.nn.init.normal_(table.weight, std=0.05)
        torch.nn.init.zeros_(self.bias.weight)
        torch.nn.init.normal_(self.feature.weight, std=0.05)
        with torch.no_grad():
            self.feature.weight[features].zero_()


def _token_table(names: list[str], tokens: dict[str, list[str]], feature_at: dict[str, int]) -> torch.Tensor:
    """Each row's feature indices, padded with the padding index to the widest row."""
    pad = len(feature_at)
    rows = [[feature_at[t] for t in tokens.get(name, [])] for name in names]
    width = max([len(r) for r in rows] + [1])
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def train(
    data: Interactions, *, dim: int = 32, epochs: int = 30, batch: int = 2048, lr: float = 0.03,
    l2: float = 1e-5, seed: int = 0, threads: int | None = 1,
) -> Model:  # fmt: skip
    """Fit the model on ``data``'s pairs; deterministic for a seed. One thread by default: on a shared 2-core
    machine two threads trained 6x slower than one (measured), and the job runs beside the API."""
    if dim < 2 or epochs < 1 or batch < 1:
        raise ValueError("dim must be at least 2, epochs and batch at least 1")
    if threads is not None:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    features = sorted({t for ts in (*data.user_features.values(), *data.item_features.values()) for t in ts})
    feature_at = {f: n for n, f in enumerate(features)}
    net = _Net(max(len(data.users), 1), max(len(data.items), 1), len(features), dim - 1)
    user_tokens = _token_table(data.users, data.user_features, feature_at)
    item_tokens = _token_table(data.items, data.item_features, feature_at)
    kinds = torch.from_numpy(data.item_kinds.astype(np.int64))
    by_kind = [torch.nonzero(kinds == k).flatten() for k in range(len(KINDS))]
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    users, items = torch.from_numpy(data.user.astype(np.int64)), torch.from_numpy(data.item.astype(np.int64))
    weights = torch.from_numpy(data.weight)

    def vectors(u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return net.user(u) + net.feature(user_tokens[u]), net.item(i) + net.feature(item_tokens[i])

    for _ in range(epochs if len(users) else 0):
        order = torch.randperm(len(users), generator=generator)
        for start in range(0, len(order), batch):
            take = order[start : start + batch]
            u, i, w = users[take], items[take], weights[take]
            j = _negatives(i, kinds, by_kind, generator)
            user_vec, pos = vectors(u, i)
            neg = net.item(j) + net.feature(item_tokens[j])
            x = (user_vec * (pos - neg)).sum(1) + (net.bias(i) - net.bias(j)).squeeze(1)
            loss = -(w * torch.nn.functional.logsigmoid(x)).mean()
            loss = loss + l2 * (user_vec.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / len(take)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        all_users = torch.arange(len(data.users))
        all_items = torch.arange(len(data.items))
        user_vectors = net.user(all_users) + net.feature(user_tokens) if len(data.users) else torch.zeros(0, dim - 1)
        item_vectors = net.item(all_items) + net.feature(item_tokens) if len(data.items) else torch.zeros(0, dim - 1)
        bias = net.bias(all_items) if len(data.items) else torch.zeros(0, 1)
        # An item nobody took in training (a race not yet run) has only its features to go by.
        untaken = torch.from_numpy(np.bincount(data.item, minlength=len(data.items)) == 0)
        item_vectors[untaken] = net.feature(item_tokens[untaken]) if bool(untaken.any()) else item_vectors[untaken]
        bias[untaken] = 0.0
        feature_vectors = net.feature.weight[: len(features)].clone()
    return Model(
        items=list(data.items),
        item_vectors=torch.cat([item_vectors, bias], 1).numpy().astype(np.float32),
        users=list(data.users),
        user_vectors=torch.cat([user_vectors, torch.ones(len(user_vectors), 1)], 1).numpy().astype(np.float32),
        features=features,
        feature_vectors=feature_vectors.numpy().astype(np.float32),
        never=set(data.never),
        ends=dict(data.ends),
    )


def _negatives(
    items: torch.Tensor, kinds: torch.Tensor, by_kind: list[torch.Tensor], generator: torch.Generator
) -> torch.Tensor:
    """One random item of the same kind per positive."""
    out = torch.empty_like(items)
    item_kinds = kinds[items]
    for k, pool in enumerate(by_kind):
        mask = item_kinds == k
        n = int(mask.sum())
        if n and len(pool):
            out[mask] = pool[torch.randint(len(pool), (n,), generator=generator)]
    return out
