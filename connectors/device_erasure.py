"""Erasure's part for device credentials: an erased person's devices can no longer connect.

A device's MQTT username is its own id, not its owner's, so the scan that finds the person in the
store cannot find their lines in Mosquitto's password file. This part runs before the store's
(``first``): it asks the person's ``device_owner`` entity for their devices while it still exists,
removes their credentials and has the brokers re-read the file. Its ``remnants`` are credentials
whose device no longer exists in the store: orphans that whoever erased them left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from connectors.mosquitto import PasswordFile, reload_brokers
from engine.store import Store

__all__ = ["CredentialsPart"]


class CredentialsPart:
    name = "mqtt"
    first = True  # before the store's part deletes the device_owner entity that lists the devices

    def __init__(self, password_file: Path | str, pid_files: Sequence[Path | str] = ()) -> None:
        self.file = PasswordFile(password_file)
        self.pid_files = [Path(p) for p in pid_files]
        self._store: Store | None = None
        self._ask: Callable[..., Awaitable[Any]] | None = None

    def bind(self, store: Store, ask: Callable[..., Awaitable[Any]]) -> None:
        self._store, self._ask = store, ask

    async def erase(self, user_id: str, stand_in: str) -> int:
        if self._ask is None:
            raise RuntimeError("the credentials part is not bound (bind)")
        devices = await self._ask("device_owner", user_id, "device_ids", {})
        known = await asyncio.to_thread(self.file.usernames)
        gone = [device for device in devices if device in known]
        for device in gone:
            await asyncio.to_thread(self.file.remove, device)
        if gone:
            await asyncio.to_thread(reload_brokers, self.pid_files)
        return len(gone)

    async def remnants(self, user_id: str) -> list[str]:
        """Credentials of devices the store no longer has (the person's, if erasure missed them)."""
        if self._store is None:
            return []
        usernames = await asyncio.to_thread(self.file.usernames)
        if not usernames:
            return []
        existing = set(await self._store.entity_ids("device"))
        return [f"MQTT credentials of device {name} that no longer exists" for name in sorted(usernames - existing)]
