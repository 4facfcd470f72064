"""The raw telemetry of every settled race, archived into the lake from the race's own journal.

A race journals each batch of samples it takes (``Race.ingest``: the packed samples, and the
athletes they are for). With the lake on, the race's host keeps that journal instead of
compacting it after snapshots (``HostConfig.archived_kinds``, ``Race.journal_kept``), so the
race's hot path writes nothing more than it did. This relay stream (``race-archive``, a cursor
of its own) waits for ``race.settled``, then:

1. asks the race for its entry list (``Race.entrants``: entry index -> user id);
2. reads the journal a part at a time (``Store.read_journal(..., up_to_seq)``) up to the entry
   that settled the race (the event's ``seq``: no sample comes after it), decodes each
   ``ingest`` batch and maps its athletes to the race's entries (samples of anybody not in the
   race were refused by it and are left out), and writes them as the race's Parquet archive
   (``TelemetryWriter``: row groups as they come, renamed into place whole at the end);
3. tells the race (``mark_archived``): from then on its host compacts its journal.

Each step is safe to repeat: a relay killed anywhere sends ``race.settled`` again, a race with
an archive file is not written twice (``race_file``), and ``mark_archived`` is idempotent. A
race that fails for good (its journal unreadable) is logged and counted in ``failed`` and keeps
its journal, so nothing is lost; the stream goes on with the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actors.events import RACE_SETTLED
from actors.race import Race
from connectors.lake.archive import TelemetryWriter, race_file
from engine.codec import unpack
from engine.errors import EngineError, NotFound
from engine.events import EventRecord
from engine.store import JournalEntry, Store
from engine.telemetry import SAMPLE_DTYPE

__all__ = ["RaceArchive"]

log = logging.getLogger(__name__)

_NOBODY = np.iinfo(np.uint32).max
_COLUMNS = ("seq", "t", "distance", "speed", "hr", "power", "cadence", "lat", "lon")


class RaceArchive:
    name = "race-archive"

    def __init__(self, root: Path | str, *, entries_per_read: int = 64) -> None:
        self.root = Path(root)
        self.entries_per_read = entries_per_read
        self.archived = 0  # races archived (or found archived) and told so
        self.samples = 0  # samples written
        self.failed: dict[str, str] = {}  # race id -> why its archive failed for good
        self._store: Store | None = None
        self._ask: Callable[..., Awaitable[Any]] | None = None

    def bind(self, store: Store, ask: Callable[..., Awaitable[Any]]) -> None:
        """The relay's store (to read journals) and its way to ask an entity (``Cluster.ask``)."""
        self._store, self._ask = store, ask

    async def close(self) -> None:
        pass

    async def publish(self, records: Sequence[EventRecord]) -> None:
        for record in records:
            if record.type != RACE_SETTLED.name:
                continue
            race_id = unpack(record.body).get("race_id")
            if not isinstance(race_id, str):
                log.error("race archive: event %s has no race id; skipped", record.id)
                continue
            await self.archive(race_id, record.seq)

    async def archive(self, race_id: str, settled_seq: int) -> Path | None:
        """Archive one race (again: a no-op but for telling it) from its journal up to ``settled_seq``
        (the seq of the entry that settled it); its file, or None without samples. Raises what may
        pass (the store or the race's host away) so that the relay sends it again."""
        if self._store is None or self._ask is None:
            raise RuntimeError("the race archive is not bound to a relay (bind)")
        try:
            path = race_file(self.root, race_id)
            if path is None:
                path = await self._write(race_id, settled_seq)
            await self._ask(Race.kind, race_id, "mark_archived", {})
        except NotFound:
            log.warning("race archive: race %s is gone (erased?); nothing to archive", race_id)
            return None
        except EngineError as error:
            if error.retryable:
                raise
            self._fail(race_id, error)
            return None
        except (ValueError, TypeError, KeyError) as error:  # a journal that does not read as a race's
            self._fail(race_id, error)
            return None
        self.archived += 1
        self.failed.pop(race_id, None)
        return path

    def _fail(self, race_id: str, error: Exception) -> None:
        self.failed[race_id] = f"{type(error).__name__}: {error}"
        log.error("race archive: race %s not archived, its journal is kept: %s", race_id, error)

    async def _write(self, race_id: str, settled_seq: int) -> Path | None:
        assert self._store is not None and self._ask is not None
        athletes = await self._ask(Race.kind, race_id, "entrants", {})
        index = {user: i for i, user in enumerate(athletes)}
        with TelemetryWriter(self.root, race_id, athletes=athletes) as writer:
            if writer.done is not None:
                return writer.done
            after = 0
            while after < settled_seq:
                up_to = min(after + self.entries_per_read, settled_seq)
                entries = await self._store.read_journal(Race.kind, race_id, after, up_to)
                columns = await asyncio.to_thread(_columns, entries, index)
                if columns is not None:
                    await asyncio.to_thread(writer.add, columns)
                after = up_to
            path = await asyncio.to_thread(writer.finish)
            self.samples += writer.samples
        return path


def _columns(entries: Sequence[JournalEntry], index: dict[str, int]) -> dict[str, np.ndarray] | None:
    """The samples of ``entries``' ingest batches, as archive columns with the race's entry index."""
    parts: list[np.ndarray] = []
    for entry in entries:
        if entry.message_type != "ingest":
            continue
        body = unpack(entry.body)
        if entry.schema_version != Race.schema_version:
            body = Race.upgrade_message(entry.message_type, body, entry.schema_version)
        samples = np.frombuffer(body["samples"], SAMPLE_DTYPE)  # checked (``decode``) when the race took it
        athletes = body.get("athletes")
        if athletes is None:  # entries are the race's own indices already
            keep = samples["entry"] < len(index)
            parts.append(samples[keep])
            continue
        lookup = np.array([index.get(user, _NOBODY) for user in athletes] + [_NOBODY], np.uint32)
        mapped = samples.copy()
        mapped["entry"] = lookup[np.minimum(samples["entry"], len(athletes))]
        parts.append(mapped[mapped["entry"] != _NOBODY])
    if not parts:
        return None
    samples = np.concatenate(parts)
    if not len(samples):
        return None
    return {"entry": samples["entry"], **{name: samples[name] for name in _COLUMNS}}
