"""The eraser's parts, composed from the settings (``Settings.eraser_spec``): the composition root
picks the stores' adapters, as it does for everything else (``connectors/erasure.py`` has the eraser)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from connectors.erasure import Eraser, Part
from engine.store import Store
from serve.revocation import revocations

__all__ = ["FilesPart", "SessionsPart", "open_eraser", "parts"]


class SessionsPart:
    """The person's access tokens die with the erasure (the account's own refresh tokens went with it): a
    token still alive could otherwise write them back somewhere after the store was cleaned. The
    revocation is kept under a digest of the id (``engine.revocations.user_key``), for a token's lifetime."""

    name = "sessions"
    first = True

    def __init__(self, redis_url: str | None, access_ttl: float) -> None:
        self.redis_url, self.access_ttl = redis_url, access_ttl
        self._ask: Callable[..., Awaitable[Any]] | None = None

    def bind(self, store: Store, ask: Callable[..., Awaitable[Any]]) -> None:
        self._ask = ask

    async def erase(self, user_id: str, stand_in: str) -> int:
        revoked = revocations(self.redis_url, self._ask)
        try:
            await revoked.revoke_user(user_id, time.time(), self.access_ttl + 1)
        finally:
            await revoked.aclose()
        return 1

    async def remnants(self, user_id: str) -> list[str]:
        return []  # a digest, gone with the tokens' lifetime


class FilesPart:
    """Files Arena writes for one person under the data folder, in a folder named by their id: their export
    archives (``serve/api/export.py``)."""

    name = "files"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _folder(self, user_id: str) -> Path | None:
        folder = self.root / user_id
        if not user_id or folder.resolve().parent != self.root.resolve():  # "..", "/", "": not a folder of theirs
            return None
        return folder

    async def erase(self, user_id: str, stand_in: str) -> int:
        folder = self._folder(user_id)
        if folder is None or not folder.exists():
            return 0
        count = sum(1 for _ in folder.rglob("*"))
        await asyncio.to_thread(shutil.rmtree, folder)
        return count

    async def remnants(self, user_id: str) -> list[str]:
        if not user_id or not self.root.is_dir():
            return []
        found = await asyncio.to_thread(lambda: [p for p in self.root.rglob("*") if user_id in p.name])
        return [f"file {path}" for path in sorted(found)]


def open_eraser(spec: str) -> Eraser:
    """The eraser with the parts ``spec`` names (``serve.settings.Settings.eraser_spec``):
    ``lake=<folder>&nats=<url>&models=<folder>&redis=<url>&mqtt=<file>``, each optional."""
    config = dict(parse_qsl(spec, keep_blank_values=False))
    return Eraser(parts(config))


def parts(config: dict[str, str]) -> list[Part]:
    """The parts besides the store, from the ``lake``, ``nats``, ``models``, ``redis`` and ``mqtt``
    (the password file; ``mqtt_pid`` the brokers' pid files, comma-separated) settings."""
    found: list[Part] = [SessionsPart(config.get("redis"), float(config.get("access_ttl", 900)))]
    if config.get("files"):
        found.append(FilesPart(config["files"]))
    if config.get("mqtt"):
        from connectors.device_erasure import CredentialsPart

        pids = [p for p in config.get("mqtt_pid", "").split(",") if p]
        found.append(CredentialsPart(config["mqtt"], pids))
    if config.get("lake"):
        from connectors.lake.erasure import LakePart

        found.append(LakePart(config["lake"]))
    if config.get("nats"):
        from connectors.nats_erasure import StreamPart

        found.append(StreamPart(config["nats"]))
    if config.get("models"):
        from engine.recommend.erasure import ModelsPart

        found.append(ModelsPart(config["models"]))
    if config.get("redis"):
        from persistence.redis_erasure import RedisPart

        found.append(RedisPart(config["redis"], config.get("namespace", "arena")))
    return found
