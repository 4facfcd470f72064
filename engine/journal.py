"""Group commit: journal entries from many messages share one store transaction.

While one transaction is in flight the next batch fills up, so under load a
commit carries thousands of entries and costs about as much as one. Batches
commit strictly in order; when one fails, the batch filling behind it fails
too, because its entries may follow the failed ones in their entities' seq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from engine.events import EventRecord
from engine.store import JournalEntry, Reminder, Store

__all__ = ["Flush", "GroupCommitter"]

log = logging.getLogger(__name__)


class Flush:
    """One group commit; ``error`` is set if it did not reach the store."""

    __slots__ = ("entries", "reminders", "events", "future", "error")

    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []
        self.events: list[EventRecord] = []  # the outbox rows the entries' messages emitted
        self.reminders: dict[tuple[str, str], Reminder] = {}
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.future.done()

    async def wait(self) -> BaseException | None:
        await asyncio.shield(self.future)
        return self.error

    def _finish(self, error: BaseException | None) -> None:
        self.error = error
        if not self.future.done():
            self.future.set_result(None)


class GroupCommitter:
    def __init__(
        self, store: Store, on_failed: Callable[[Flush], None], on_events: Callable[[], None] | None = None
    ) -> None:
        """``on_events``: told after each commit that carried events (the relay's wake-up)."""
        self._store = store
        self._on_failed = on_failed
        self._on_events = on_events
        self._open = Flush()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.in_flight = 0  # entries taken by the current transaction
        self.commits = 0
        self.committed_entries = 0
        self.last_commit_seconds = 0.0
        self.oldest_pending_since: float | None = None

    @property
    def pending(self) -> int:
        """Entries not yet durable: the open batch and the one being written."""
        return len(self._open.entries) + self.in_flight

    def add(
        self, entry: JournalEntry, reminder: Reminder | None = None, events: list[EventRecord] | None = None
    ) -> Flush:
        flush = self._open
        if not flush.entries:
            self.oldest_pending_since = time.monotonic()
            self._wake.set()
        flush.entries.append(entry)
        if reminder is not None:
            flush.reminders[(reminder.kind, reminder.entity_id)] = reminder
        if events:
            flush.events.extend(events)
        return flush

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="arena-group-commit")

    async def drain(self) -> None:
        """Return once everything added so far has been written (or failed)."""
        while self._open.entries or self.in_flight:
            self._wake.set()
            await asyncio.sleep(0.001)

    async def stop(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._open.entries:
                flush, self._open = self._open, Flush()
                self.in_flight = len(flush.entries)
                started = time.monotonic()
                try:
                    reminders = list(flush.reminders.values())
                    if flush.events:  # the outbox rows commit in the same transaction as their causes
                        await self._store.append(flush.entries, reminders, flush.events)
                    else:
                        await self._store.append(flush.entries, reminders)
                except Exception as error:  # the store said no: fail this batch and the one behind it
                    log.error("journal commit of %d entries failed: %s", len(flush.entries), error)
                    follower, self._open = self._open, Flush()
                    for failed in (flush, follower):
                        failed._finish(error)
                        if failed.entries:
                            self._on_failed(failed)
                else:
                    flush._finish(None)
                    if flush.events and self._on_events is not None:
                        self._on_events()
                    self.commits += 1
                    self.committed_entries += len(flush.entries)
                finally:
                    self.in_flight = 0
                    self.last_commit_seconds = time.monotonic() - started
                self.oldest_pending_since = time.monotonic() if self._open.entries else None
