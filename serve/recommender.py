"""The recommendation models on Serve: the ``Recommender`` deployment and the training job.

``Recommender`` holds the registry's current version and answers the API through a deployment
handle. Requests are batched with ``@serve.batch``: the users of one batch asking for one kind
are scored in one matrix product (``engine.recommend.Index``). Each replica looks at the
registry's ``current`` pointer every ``poll_s`` seconds; a new version is loaded beside the one
serving and then swapped in with one assignment, so requests in flight finish on the old one and
none fails (a promotion or a rollback is a pointer written atomically: ``arena models``). The
version serving is loaded again the same way when its file was written again: an erasure took a
person out of it (``engine.recommend.erasure``), and their embedding stops serving within ``poll_s``.

``train_from_lake`` is the training job: a Ray task that reads the lake's event tables with Ray
Data, trains, evaluates on a time split, and keeps the result in the registry (docs/models.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import serve

__all__ = ["Recommender", "TRAINING_TABLES", "read_lake", "registry_root", "train_from_lake", "train_job"]

log = logging.getLogger(__name__)
# engine.recommend (torch) is imported where it is used: the API's replicas import this module for
# the deployment's class alone, and torch would add about 2 s to their start.

# The lake's event tables that training reads, and their columns (docs/models.md, "Training data").
TRAINING_TABLES = {
    "workout.recorded": ["user_id", "at", "region", "summary_sport"],
    "group.joined": ["user_id", "at", "group_id"],
    "group.listed": ["at", "group_id", "listing_visibility", "listing_sports", "listing_region"],
    "challenge.joined": ["user_id", "at", "challenge_id", "ends"],
    "race.result": ["user_id", "at", "race_id", "summary_sport", "result_place"],
    "group_event.attended": ["user_id", "at", "event_id", "group_id"],
    "follow.started": ["user_id", "at", "followee_id"],
    "follow.ended": ["user_id", "at", "followee_id"],
    "kudos.given": ["user_id", "at", "owner"],
    "comment.posted": ["user_id", "at", "owner"],
}
MAX_BATCH = 32
BATCH_WAIT_S = 0.004


class _Served:
    """One loaded version: its model and index."""

    def __init__(self, version: str, registry: Any) -> None:
        from engine.recommend import Index

        self.version = version
        self.stamp = registry.stamp(version)  # before loading: a file written again meanwhile is loaded again
        self.model = registry.load(version)
        self.index = Index(self.model)


@serve.deployment(name="recommender", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
class Recommender:
    def __init__(self, registry: str, poll_s: float = 1.0) -> None:
        import torch

        from engine.recommend import Registry

        torch.set_num_threads(1)  # many small products; threads only fight the API for the 2 cores
        self.registry = Registry(registry)
        self.poll_s = poll_s
        self.served: _Served | None = None
        self._refresh()
        self._poller = asyncio.get_running_loop().create_task(self._poll()) if poll_s > 0 else None

    def _refresh(self) -> str | None:
        version = self.registry.current()
        stamp = self.registry.stamp(version) if version is not None else None
        if version is not None and (
            self.served is None or self.served.version != version or stamp not in (None, self.served.stamp)
        ):
            try:
                self.served = _Served(version, self.registry)  # loaded beside the old one, then swapped in
                log.info("recommender: serving model %s", version)
            except (LookupError, OSError, RuntimeError, KeyError) as error:
                log.error("recommender: model %s could not be loaded, keeping %s: %s",
                          version, self.served and self.served.version, error)  # fmt: skip
        return self.served.version if self.served else None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await asyncio.to_thread(self._refresh)

    async def refresh(self) -> str | None:
        """Look at the pointer now (a test, an operator who will not wait for the poll)."""
        return await asyncio.to_thread(self._refresh)

    async def version(self) -> str | None:
        return self.served.version if self.served else None

    async def recommend(self, ask: dict) -> dict:
        """``ask``: user, kind, k, exclude (ids), features (the user's tokens: region, sports), and for
        items the index cannot know (open races) ``candidates``: [[id, [tokens]], ...]."""
        return await self._batched(ask)

    async def recommend_unbatched(self, ask: dict) -> dict:
        """The same answer, scored alone: the benchmark's peer."""
        return _answer(self.served, [ask])[0]

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _batched(self, asks: list[dict]) -> list[dict]:
        return _answer(self.served, asks)


def _answer(served: _Served | None, asks: list[dict]) -> list[dict]:
    if served is None:
        return [{"version": None, "items": [], "cold_start": True} for _ in asks]
    model, index = served.model, served.index
    vectors, cold = [], []
    for ask in asks:
        vector, is_cold = model.user_vector(ask["user"], list(ask.get("features") or ()))
        vectors.append(vector)
        cold.append(is_cold)
    answers: list[dict | None] = [None] * len(asks)
    by_kind: dict[str, list[int]] = {}
    for n, ask in enumerate(asks):
        if ask.get("candidates") is not None:
            ranked = index.rank(vectors[n], [(c, list(t)) for c, t in ask["candidates"]], ask["kind"])
            excluded = set(ask.get("exclude") or ())
            answers[n] = {"items": [r for r in ranked if r[0] not in excluded][: ask["k"]]}
        else:
            by_kind.setdefault(ask["kind"], []).append(n)
    now = time.time()
    for kind, rows in by_kind.items():
        excludes = [set(asks[n].get("exclude") or ()) | {asks[n]["user"]} for n in rows]
        if kind == "challenge":  # over: never worth joining
            over = {i.split(":", 1)[1] for i, end in model.ends.items() if end < now}
            excludes = [e | over for e in excludes]
        found = index.search(np.stack([vectors[n] for n in rows]), kind, [asks[n]["k"] for n in rows], excludes)
        for n, items in zip(rows, found, strict=True):
            answers[n] = {"items": items}
    return [{**a, "version": served.version, "cold_start": cold[n]} for n, a in enumerate(answers) if a is not None]


def read_lake(root: Path | str) -> dict[str, list[dict]]:
    """The training tables' rows, read with Ray Data (a table the lake does not have yet: no rows)."""
    from connectors.lake.datasets import read

    tables: dict[str, list[dict]] = {}
    for name, columns in TRAINING_TABLES.items():
        try:
            dataset = read(root, "events", name)
        except LookupError:
            tables[name] = []
            continue
        present = [c for c in columns if c in dataset.schema().names]
        tables[name] = dataset.select_columns(present).take_all()
    return tables


def train_job(lake: Path | str, registry: Path | str, *, epochs: int = 30, dim: int = 32, promote: bool = True,
              tables: dict[str, list[dict]] | None = None) -> dict:  # fmt: skip
    """Read, train, evaluate, keep (and promote): what the Ray task runs."""
    from engine.recommend import Registry, build, evaluate, time_split, train
    from engine.recommend.evaluate import model_scorer, popularity_scorer

    started = time.perf_counter()
    generation = Registry(registry).generation()  # before reading: an erasure after it voids this training
    data = build(tables if tables is not None else read_lake(lake))
    if not len(data):
        raise LookupError(f"the lake at {lake} holds no interactions to train on yet")
    fit, test = time_split(data, 0.2) if len(data) >= 50 else (data, data.subset(np.zeros(len(data), dtype=bool)))
    held_out = train(fit, epochs=epochs, dim=dim)
    metrics: dict[str, Any] = {}
    if len(test):
        for name, scores in (("model", evaluate(model_scorer(held_out, fit), fit, test)),
                             ("popularity", evaluate(popularity_scorer(fit), fit, test))):  # fmt: skip
            metrics[name] = {
                kind: {"recall@20": s.recall, "ndcg@20": s.ndcg, "users": s.users} for kind, s in scores.items()
            }
    model = train(data, epochs=epochs, dim=dim)  # the served model learns from everything
    counts = {"pairs": len(data), "users": len(data.users), "items": len(data.items), "skipped": data.skipped,
              "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
    keeper = Registry(registry)
    version = keeper.save(model, metrics, counts, since=generation)
    if promote:
        keeper.promote(version)
    return {"version": version, "promoted": promote, "metrics": metrics, "counts": counts}


@ray.remote(num_cpus=1, max_retries=0)
def _train_task(lake: str, registry: str, epochs: int, dim: int, promote: bool) -> dict:
    return train_job(lake, registry, epochs=epochs, dim=dim, promote=promote)


def train_from_lake(lake: Path | str, registry: Path | str, *, epochs: int = 30, dim: int = 32,
                    promote: bool = True) -> dict:  # fmt: skip
    """Run the training job as a Ray task on the running Ray (``ray.init`` first) and wait for it."""
    return ray.get(_train_task.remote(str(lake), str(registry), epochs, dim, promote))


def registry_root(settings: Any) -> Path:
    """The registry's folder: ``models/recommend`` under the data folder (absolute: replicas run elsewhere)."""
    return (Path(settings.data_dir) / "models" / "recommend").resolve()
