"""Erasure in the recommendation models: the person's embedding and id gone from every saved version.

``ModelsPart`` is the models' part of the eraser (``connectors/erasure.py``). A version holds people
in three places: their user vector (``users``), their item vector when others may be proposed to
follow them (``items``: ``user:<id>``), and, where an id of theirs is inside another entity's id,
that item too; ``never`` and ``ends`` are keyed by items. ``erase`` drops every row and entry that
names the person (a feature token, ``region:…`` or ``sport:…``, names nobody, but one that did
would go as well), from every version and from a crashed save's staging folder, and writes each
model file again under a temporary name, renamed over the old one (atomic). The other vectors are
kept as they are: a version without the person ranks everybody else as it did.

At once: each ``Recommender`` replica looks at the current version's file every ``poll_s`` (1 s)
and loads it again when it was written again (``Registry.stamp``), beside the one serving.

The next training: it reads the lake, which the lake's part rewrote first. A training that read
the lake before that would save a version holding the person after the models were erased, so
``erase`` begins with ``Registry.begin_erasure``, and a training job saves with ``since=`` the
generation it read first: a version trained across an erasure is deleted, not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from engine.erasure import mentions, replace_all
from engine.recommend.model import Model
from engine.recommend.registry import Registry

__all__ = ["ModelsPart", "erase_models", "model_remnants", "without"]

log = logging.getLogger(__name__)


class ModelsPart:
    """The registry under ``root`` (it may not exist yet: no model trained)."""

    name = "models"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    async def erase(self, user_id: str, stand_in: str) -> int:
        return await asyncio.to_thread(erase_models, self.root, user_id, stand_in)

    async def remnants(self, user_id: str) -> list[str]:
        return await asyncio.to_thread(model_remnants, self.root, user_id)


def erase_models(root: Path | str, user_id: str, stand_in: str) -> int:
    """Drop ``user_id`` from every saved version under ``root``; how many model files changed."""
    _check(user_id)
    if not isinstance(stand_in, str) or not stand_in or user_id in stand_in:
        raise ValueError("the stand-in must be a non-empty string that does not contain the user id")
    registry = Registry(root)
    registry.begin_erasure()  # first, even before the first version: a training may be under way
    changed = 0
    for folder in _folders(registry.root):
        with contextlib.suppress(FileNotFoundError):  # a staging folder saved or given up meanwhile
            changed += _erase_version(folder, user_id, stand_in)
    return changed


def model_remnants(root: Path | str, user_id: str) -> list[str]:
    """One line per saved version (or staging folder) that still names ``user_id``."""
    _check(user_id)
    lines = []
    for folder in _folders(Path(root)):
        try:
            model = _load(folder / "model.pt")
        except FileNotFoundError:
            continue
        except Exception as error:  # torch says "not a model" in many ways
            lines.append(f"{folder.name}: its model cannot be read, so may hold anything ({error})")
            continue
        said = _named(model, user_id)
        meta = folder / "meta.json"
        if meta.is_file() and mentions(json.loads(meta.read_text()), user_id):
            said.append("its metadata")
        if said:
            lines.append(f"{folder.name}: {', '.join(said)}")
    return lines


def without(model: Model, user_id: str) -> Model | None:
    """``model`` without what names ``user_id`` (None: nothing does)."""
    users = [n for n, u in enumerate(model.users) if user_id not in u]
    items = [n for n, i in enumerate(model.items) if user_id not in i]
    features = [n for n, f in enumerate(model.features) if user_id not in f]
    never = {i for i in model.never if user_id not in i}
    ends = {i: end for i, end in model.ends.items() if user_id not in i}
    if (len(users), len(items), len(features), len(never), len(ends)) == (
        len(model.users), len(model.items), len(model.features), len(model.never), len(model.ends)
    ):  # fmt: skip
        return None
    return Model(
        items=[model.items[n] for n in items],
        item_vectors=np.ascontiguousarray(model.item_vectors[items]),
        users=[model.users[n] for n in users],
        user_vectors=np.ascontiguousarray(model.user_vectors[users]),
        features=[model.features[n] for n in features],
        feature_vectors=np.ascontiguousarray(model.feature_vectors[features]),
        never=never,
        ends=ends,
    )


def _check(user_id: str) -> None:
    if not isinstance(user_id, str):
        raise TypeError(f"a user id is a string, not {type(user_id).__name__}")
    if not user_id:
        raise ValueError("an empty user id would name everybody")


def _folders(root: Path) -> Iterator[Path]:
    """Every version's folder, and the staging folders of saves under way or crashed."""
    versions = root / "versions"
    if not versions.is_dir():
        return
    for folder in sorted(versions.iterdir()):
        if folder.is_dir() and not folder.is_symlink() and (folder / "model.pt").is_file():
            yield folder


def _load(path: Path) -> Model:
    return Model.from_state(torch.load(path, weights_only=True))


def _named(model: Model, user_id: str) -> list[str]:
    said = []
    for what, names in (("users", model.users), ("items", model.items), ("features", model.features),
                        ("never", model.never), ("ends", model.ends)):  # fmt: skip
        found = sum(user_id in name for name in names)
        if found:
            said.append(f"{found} of its {what}")
    return said


def _erase_version(folder: Path, user_id: str, stand_in: str) -> int:
    try:
        model = _load(folder / "model.pt")
    except FileNotFoundError:
        raise
    except Exception as error:  # a save still writing it (its training began before this erasure, and
        # ``save(since=)`` deletes what it keeps), or a broken file: stopping would stop every erasure
        log.error("models erasure: %s is no readable model and is left as it is (remnants lists it): %s", folder, error)
        return 0
    changed = 0
    scrubbed = without(model, user_id)
    if scrubbed is not None:
        _replace(folder / "model.pt", lambda sink: torch.save(scrubbed.to_state(), sink))
        changed = 1
    meta = folder / "meta.json"
    if meta.is_file() and mentions(facts := json.loads(meta.read_text()), user_id):
        fixed = json.dumps(replace_all(facts, user_id, stand_in), indent=2).encode()
        _replace(meta, lambda sink: sink.write(fixed))
    return changed


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` again, whole or not at all: a temporary file beside it, flushed, renamed over it."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
