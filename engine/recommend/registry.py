"""A model registry on disk: numbered versions with their metrics, and a ``current`` pointer.

```
<root>/
  versions/v000001/model.pt     the model's arrays (torch.save of tensors and lists, no pickled code)
  versions/v000001/meta.json    {"version", "created", "metrics", "counts"}
  current                       the promoted version's name
  history.json                  the versions promoted, in order (rollback walks it back)
  generation                    how many erasures began here (``engine.recommend.erasure``)
```

Every file is written under a temporary name and renamed into place (``os.replace``, atomic),
so a reader sees the old pointer or the new one, and a version appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch

from engine.recommend.model import Model

__all__ = ["ErasedMeanwhile", "Registry"]

_VERSION = re.compile(r"^v\d{6}$")


class ErasedMeanwhile(RuntimeError):
    """A version was trained from data read before an erasure began: it may hold the person, so it is not kept."""


class Registry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def _versions(self) -> Path:
        return self.root / "versions"

    def save(self, model: Model, metrics: dict, counts: dict | None = None, *, since: int | None = None) -> str:
        """Keep ``model`` as the next version (not promoted); returns its name. ``since``: the
        ``generation`` before its training data was read; if an erasure began after, the version
        is deleted and ``ErasedMeanwhile`` raised (train again)."""
        self._versions.mkdir(parents=True, exist_ok=True)
        version = self._save(model, metrics, counts)
        if since is not None and self.generation() != since:  # looked at after the version is in place: an
            shutil.rmtree(self._versions / version, ignore_errors=True)  # erasure scrubs it or this deletes it
            raise ErasedMeanwhile(f"an erasure began while {version} was trained; it was not kept")
        return version

    def _save(self, model: Model, metrics: dict, counts: dict | None) -> str:
        while True:
            names = [p.name for p in self._versions.iterdir() if _VERSION.match(p.name)]
            version = f"v{max([int(n[1:]) for n in names] + [0]) + 1:06d}"
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self._versions))
            torch.save(model.to_state(), staging / "model.pt")
            meta = {"version": version, "created": time.time(), "metrics": metrics, "counts": counts or {}}
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))
            try:
                staging.rename(self._versions / version)  # a directory rename fails if another writer took it
                return version
            except OSError:
                for path in staging.iterdir():
                    path.unlink()
                staging.rmdir()

    def versions(self) -> list[dict]:
        if not self._versions.is_dir():
            return []
        current = self.current()
        metas = []
        for path in sorted(self._versions.iterdir()):
            if _VERSION.match(path.name) and (path / "meta.json").is_file():
                meta = json.loads((path / "meta.json").read_text())
                metas.append({**meta, "current": path.name == current})
        return metas

    def generation(self) -> int:
        """Bumped by each erasure as it begins (``begin_erasure``); 0 before any."""
        try:
            return int((self.root / "generation").read_text().strip())
        except (FileNotFoundError, ValueError):
            return 0

    def begin_erasure(self) -> int:
        """Bump ``generation``: a training that read its data before now will not keep its version."""
        generation = self.generation() + 1
        self._write("generation", str(generation))
        return generation

    def stamp(self, version: str) -> tuple[int, int] | None:
        """What changes when a version's model file is written again (an erasure): its inode and mtime."""
        try:
            stat = (self._versions / version / "model.pt").stat() if _VERSION.match(version) else None
        except OSError:
            return None
        return None if stat is None else (stat.st_ino, stat.st_mtime_ns)

    def current(self) -> str | None:
        try:
            name = (self.root / "current").read_text().strip()
        except FileNotFoundError:
            return None
        return name if _VERSION.match(name) else None

    def load(self, version: str) -> Model:
        self._check(version)
        state = torch.load(self._versions / version / "model.pt", weights_only=True)
        return Model.from_state(state)

    def promote(self, version: str) -> str:
        """Make ``version`` the current one; replicas take it within their polling interval."""
        self._check(version)
        history = self._history()
        if not history or history[-1] != version:
            history.append(version)
        self._write("history.json", json.dumps(history[-100:]))
        self._write("current", version)
        return version

    def rollback(self) -> str:
        """Back to the version promoted before the current one; ``LookupError`` if there is none."""
        history = self._history()
        current = self.current()
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise LookupError("no earlier promoted version to roll back to")
        self._write("history.json", json.dumps(history))
        self._write("current", history[-1])
        return history[-1]

    def _check(self, version: str) -> None:
        if not _VERSION.match(version) or not (self._versions / version / "model.pt").is_file():
            raise LookupError(f"no model version {version!r} in {self.root}")

    def _history(self) -> list[str]:
        try:
            return [v for v in json.loads((self.root / "history.json").read_text()) if _VERSION.match(str(v))]
        except (FileNotFoundError, ValueError):
            return []

    def _write(self, name: str, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.root)
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.root / name)
