"""Tuning of a host; serve/settings.py fills it from ``ARENA_`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from engine.gc_tuning import YOUNG

__all__ = ["HostConfig"]


@dataclass(frozen=True, slots=True)
class HostConfig:
    snapshot_interval: float = 5.0  # seconds between write-behind snapshots of dirty entities
    passivate_after: float = 600.0  # seconds idle before an entity is flushed and dropped
    mailbox_capacity: int = 10_000  # messages queued for one entity before it answers Overloaded
    max_queued: int = 200_000  # messages queued in all mailboxes of a host
    max_uncommitted: int = 500_000  # journal entries not yet durable before updates answer Overloaded
    timer_resolution: float = 0.05  # seconds between polls of the timer queue
    compact_every: int = 1_000  # journal entries folded into snapshots before they are deleted
    # Bytes per second one entity's write-behind snapshots may average: after a snapshot of B bytes the
    # next periodic one waits B / snapshot_budget seconds (a 47 MB board: every 47 s; a board under
    # 5 MB is not held back at the 5 s interval), and its recovery replays that much more journal
    # (docs/engine.md, "Snapshots of a big race"). math.inf: no limit.
    snapshot_budget: float = 1_000_000.0
    snapshot_max_wait: float = 60.0  # the longest the budget holds a snapshot back: it bounds the replayed tail
    retire_after: float = 300.0  # seconds a dedicated host whose entity is retirable stays idle before it stops
    # Kinds whose journal an archiver reads (the lake's race archive): the host does not compact an
    # entity of these while it says ``Entity.journal_kept``; the archiver compacts it when done.
    archived_kinds: tuple[str, ...] = ()
    # Container allocations between the collector's young collections in the host's process
    # (``engine.gc_tuning``; 0: CPython's default of 700, which cost a host half its CPU per message).
    gc_young: int = YOUNG

    def __post_init__(self) -> None:
        positive = ("snapshot_interval", "passivate_after", "timer_resolution", "retire_after")
        for name in (*positive, "snapshot_budget", "snapshot_max_wait"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HostConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("mailbox_capacity", "max_queued", "max_uncommitted", "compact_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"HostConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.gc_young < 0:
            raise ValueError(f"HostConfig.gc_young must be 0 (CPython's default) or more, got {self.gc_young}")
