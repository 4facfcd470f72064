"""Per-race batches: the samples of one batch window, one ingest message per race, acks once journaled.

Each ingest message is a row of the race's journal. The window is ``window`` while the hub
sends fewer than ``ingests_per_s`` of them a second, and lengthens with load to keep to
that rate, ``max_window`` at most (what a sample may wait here, well under the second of
freshness a race promises): a hub that hears many races sends fewer, larger batches, and
the journals' rows per second stop growing with the number of races times hubs.

A QoS 1 message is acknowledged only once its race has journaled the batch that carried
it; a batch the race refuses for good is dropped (acknowledged, counted, explained); one
that failed for a reason that may pass is sent again (ingestion is idempotent by
(entry, seq)), its messages unacknowledged meanwhile, so a crash loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from actors.race import Race
from actors.race_client import RaceClient
from connectors.mqtt.uplink import Row, pack
from engine.cluster import Cluster
from engine.errors import EngineError
from engine.telemetry import encode

__all__ = ["Batches", "Sent"]

log = logging.getLogger(__name__)

Sent = tuple[str, str, int, int]  # (device id, owner, mid, qos) of one MQTT message
Ack = Callable[[list[tuple[int, int]]], None]
Drop = Callable[[str | None, str, str, list[tuple[int, int]]], None]  # device, reason, detail, (mid, qos)s


@dataclass
class _Group:
    """One race's samples in one batch window, the athletes they belong to, and the messages that carried them."""

    race_id: str
    athletes: dict[str, int] = field(default_factory=dict)  # owner → its entry in the batch's list
    rows: list[Row] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)  # each message's athlete
    counts: list[int] = field(default_factory=list)  # each message's samples
    messages: list[Sent] = field(default_factory=list)

    def packed(self) -> bytes:
        return encode(pack(self.rows, np.repeat(np.array(self.entries, np.uint32), self.counts)))


class Batches:
    def __init__(
        self,
        cluster: Cluster,
        races: RaceClient,
        *,
        window: float,
        max_batch: int,
        retry_delay: float,
        ack: Ack,
        drop: Drop,
        spawn: Callable[[Awaitable[None]], None],
        max_window: float | None = None,
        ingests_per_s: float = float("inf"),
    ) -> None:
        if max_window is not None and max_window < window:
            raise ValueError(f"max_window ({max_window} s) is at least the window ({window} s)")
        if ingests_per_s <= 0:
            raise ValueError(f"ingests_per_s is positive, not {ingests_per_s}")
        self.window, self.max_batch, self.retry_delay = window, max_batch, retry_delay
        self.max_window = window if max_window is None else max_window
        self.ingests_per_s = ingests_per_s
        self.current = window  # this window's length: lengthened with the races of the last one
        self.batches = self.accepted = 0
        self.stopping = False
        self._cluster, self._races = cluster, races
        self._ack, self._drop, self._spawn = ack, drop, spawn
        self._pending: dict[str, _Group] = {}  # by race
        self._flush_handle: asyncio.TimerHandle | None = None

    def add(self, race_id: str, owner: str, rows: list[Row], message: Sent) -> bool:
        """Whether the message is its race's first in this window."""
        group = self._pending.get(race_id)
        first = group is None
        if group is None:
            group = self._pending[race_id] = _Group(race_id)
        athletes = group.athletes
        entry = athletes.get(owner)
        if entry is None:
            entry = athletes[owner] = len(athletes)
        group.rows += rows
        group.entries.append(entry)
        group.counts.append(len(rows))
        group.messages.append(message)
        if len(group.rows) >= self.max_batch:  # this race's batch is full: it goes now, the others wait
            del self._pending[race_id]
            self._spawn(self._ingest([group]))
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.current, self.flush)
        return first

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            groups, self._pending = list(self._pending.values()), {}
            # As many races next time: the window that keeps to ingests_per_s, within its bounds.
            self.current = min(self.max_window, max(self.window, len(groups) / self.ingests_per_s))
            self._spawn(self._ingest(groups))

    def clear(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending.clear()

    async def _ingest(self, groups: list[_Group]) -> None:
        self.batches += len(groups)
        # A settled race takes no samples, and asking it would start its host again: refused here.
        refusals = await asyncio.gather(*(self._races.live(g.race_id) for g in groups), return_exceptions=True)
        live = [g for g, refused in zip(groups, refusals) if refused is None]
        # Asked in one turn of the loop, they travel together: one Ray call per host.
        delivered = iter(
            await asyncio.gather(
                *(
                    self._cluster.ref(Race, g.race_id).ask(Race.ingest, samples=g.packed(), athletes=list(g.athletes))
                    for g in live
                ),
                return_exceptions=True,
            )
        )
        retry = []
        for group, refused in zip(groups, refusals):
            answer = next(delivered) if refused is None else refused
            if isinstance(answer, EngineError) and not answer.retryable:
                self._drop_messages(group.messages, answer.code, answer.message)
            elif isinstance(answer, BaseException):
                log.warning("ingest into race %s failed: %s", group.race_id, answer)
                retry.append(group)
            else:
                self.accepted += answer["accepted"]
                strangers = set(answer.get("not_in_race", ()))
                refused_messages = [m for m in group.messages if m[1] in strangers]
                self._drop_messages(refused_messages, "forbidden", "join the race before sending telemetry")
                self._ack([(mid, qos) for _, owner, mid, qos in group.messages if owner not in strangers])
        if retry and not self.stopping:
            await asyncio.sleep(self.retry_delay)
            if not self.stopping:
                await self._ingest(retry)

    def _drop_messages(self, messages: list[Sent], reason: str, detail: str) -> None:
        """Drop (ack, count and explain) messages, one downlink notice per device."""
        by_device: dict[str, list[tuple[int, int]]] = {}
        for device_id, _, mid, qos in messages:
            by_device.setdefault(device_id, []).append((mid, qos))
        for device_id, mine in by_device.items():
            self._drop(device_id, reason, detail, mine)
