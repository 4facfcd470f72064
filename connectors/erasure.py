"""The eraser: removes an erased account's person from everywhere Arena keeps data (docs/privacy.md).

The account's grace period ends with ``account.erased``. The relay hands every event to this
stream (a consumer of the outbox with a cursor of its own, like the lake), and for each erasure
it runs every part that holds data, each of which handles its own:

- the engine's store: the outbox first (events about the person are deleted, others that name
  them get a stand-in; no lagging consumer can pick them up after), then every entity whose
  snapshot, journal or timers mention them gets ``ERASE_MESSAGE`` (``engine.erasure``): the
  entity's own ``erase_user`` decides what goes, then its journal is compacted through a fresh
  snapshot, or it is deleted whole. Rounds repeat until a scan finds nothing (a message in
  flight during the first round may have written the person again).
- the lake (partitions rewritten), the NATS stream (messages deleted), the recommendation
  models (the person's embedding removed from every saved version), Redis (keys naming them):
  each a ``Part`` with ``erase`` and ``remnants``.

A failure raises: the relay sends the batch again and the eraser starts over, which is safe
because every step is idempotent. ``arena privacy verify USER_ID`` runs ``remnants`` of every part.
``serve/erasure.py`` composes the parts from the settings.

The stand-in is random and new for each run, and written nowhere with the person's id: the
pseudonymised rows (a race's standings) cannot be linked back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.events import ACCOUNT_ERASED
from engine.codec import unpack
from engine.erasure import ERASE_MESSAGE
from engine.errors import EngineError, UnknownKind
from engine.events import EventRecord
from engine.store import Mention, Store

__all__ = ["Eraser", "Part", "StorePart", "new_stand_in", "ENTITY_PLACES", "KEPT_EVENTS"]

log = logging.getLogger(__name__)

ENTITY_PLACES = ("snapshot", "journal", "reminder")
KEPT_EVENTS = (ACCOUNT_ERASED.name,)  # the notice itself: outside consumers of the stream act on it
_AT_ONCE = 32  # entities erased at once
_ROUNDS = 50  # scans before the eraser gives up (and the relay retries the whole erasure later)

Ask = Callable[..., Awaitable[Any]]


def new_stand_in() -> str:
    return f"erased-{secrets.token_hex(8)}"


class Part(Protocol):
    """One place that holds data: it erases the person from itself and says what is left."""

    name: str

    async def erase(self, user_id: str, stand_in: str) -> int:
        """Remove or pseudonymise every trace of ``user_id``; how many things it changed."""

    async def remnants(self, user_id: str) -> list[str]:
        """What still names ``user_id``, one line each (empty: clean)."""


@dataclass
class StorePart:
    """The engine's store: the outbox, then every entity that mentions the person."""

    store: Store
    ask: Ask
    name: str = "store"
    pause: float = 0.05  # between scans, while compactions after the erase messages land

    async def erase(self, user_id: str, stand_in: str) -> int:
        changed = 0
        for _ in range(_ROUNDS):
            changed += await self.store.erase_events(user_id, stand_in, keep=KEPT_EVENTS)
            entities = _entities(await self.store.mentions(user_id))
            if not entities:
                return changed
            changed += await self._erase_entities(entities, user_id, stand_in)
            await asyncio.sleep(self.pause)
        left = await self.remnants(user_id)
        raise RuntimeError(f"{len(left)} place(s) still name the person after {_ROUNDS} rounds: {left[:5]}")

    async def _erase_entities(self, entities: list[tuple[str, str]], user_id: str, stand_in: str) -> int:
        gate = asyncio.Semaphore(_AT_ONCE)
        body = {"user_id": user_id, "stand_in": stand_in}

        async def one(kind: str, entity_id: str) -> int:
            async with gate:
                try:
                    await self.ask(kind, entity_id, ERASE_MESSAGE, body)
                except UnknownKind:  # a kind no host runs any more: its rows go as they are
                    await self.store.delete_entity(kind, entity_id)
                return 1

        results = await asyncio.gather(*(one(k, i) for k, i in entities), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures[:3]:
            log.warning("eraser: an entity did not take the erasure (it is asked again): %s", failure)
        if failures and not isinstance(failures[0], EngineError):
            raise failures[0]
        return sum(r for r in results if isinstance(r, int))

    async def remnants(self, user_id: str) -> list[str]:
        return [
            f"{m.place} {m.kind} {m.key}".rstrip()
            for m in await self.store.mentions(user_id)
            if not (m.place == "event" and m.kind in KEPT_EVENTS)
        ]

    async def notices(self, user_id: str) -> list[str]:
        """The erasure notices kept about the person (the account.erased events)."""
        return [f"{m.kind} at position {m.key}" for m in await self.store.mentions(user_id)
                if m.place == "event" and m.kind in KEPT_EVENTS]  # fmt: skip


def _entities(found: Sequence[Mention]) -> list[tuple[str, str]]:
    return sorted({(m.kind, m.key) for m in found if m.place in ENTITY_PLACES})


@dataclass
class Eraser:
    """The relay's stream that carries out erasures; ``parts`` beyond the store come from the
    settings (``open_eraser``)."""

    parts: list[Part] = field(default_factory=list)
    name: str = "eraser"
    erased: int = 0
    wait_for_consumers: float = 60.0  # seconds, at most, for the outbox's other consumers to pass the notice
    _store_part: StorePart | None = None

    def bind(self, store: Store, ask: Ask) -> None:
        self._store_part = StorePart(store, ask)
        for part in self.parts:
            bind = getattr(part, "bind", None)
            if bind is not None:
                bind(store, ask)

    async def close(self) -> None:
        for part in self.parts:
            close = getattr(part, "close", None)
            if close is not None:
                await close()

    async def publish(self, records: Sequence[EventRecord]) -> None:
        for record in records:
            if record.type != ACCOUNT_ERASED.name:
                continue
            user_id = unpack(record.body).get("user_id")
            if not isinstance(user_id, str) or not user_id:
                log.error("eraser: event %s names no user; skipped", record.id)
                continue
            await self._consumers_passed(record.position)
            await self.erase(user_id)

    async def _consumers_passed(self, position: int) -> None:
        """Wait until every other consumer of the outbox (each reaction, the lake, the stream) has
        passed everything before the notice, so that none writes the person anywhere after they were
        erased from it. A consumer stuck longer than ``wait_for_consumers`` is not waited for: the
        eraser's rounds and ``arena privacy verify`` catch what it writes late."""
        assert self._store_part is not None
        store, deadline = self._store_part.store, time.monotonic() + self.wait_for_consumers
        while True:
            behind = {name: at for name, at in (await store.cursors()).items()
                      if at < position - 1 and name != f"stream:{self.name}"}  # fmt: skip
            if not behind:
                return
            if time.monotonic() > deadline:
                log.warning("eraser: erasing while %d consumer(s) lag behind the notice: %s", len(behind),
                            sorted(behind)[:5])  # fmt: skip
                return
            await asyncio.sleep(0.2)

    async def erase(self, user_id: str) -> dict[str, int]:
        """Erase the person from every part; what each changed."""
        if self._store_part is None:
            raise RuntimeError("the eraser is not bound to a relay (bind)")
        started, stand_in = time.monotonic(), new_stand_in()
        report = {}
        first = [p for p in self.parts if getattr(p, "first", False)]  # they read what the store part deletes
        for part in first:
            report[part.name] = await part.erase(user_id, stand_in)
        report["store"] = await self._store_part.erase(user_id, stand_in)
        for part in self.parts:
            if part not in first:
                report[part.name] = await part.erase(user_id, stand_in)
        self.erased += 1
        log.info("eraser: a person erased in %.1f s: %s", time.monotonic() - started, report)
        return report

    async def remnants(self, user_id: str) -> dict[str, list[str]]:
        if self._store_part is None:
            raise RuntimeError("the eraser is not bound to a relay (bind)")
        found = {"store": await self._store_part.remnants(user_id)}
        for part in self.parts:
            found[part.name] = await part.remnants(user_id)
        return found
