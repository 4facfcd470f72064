"""CPython's cycle collector, tuned for a process that moves messages in batches.

The collector runs a young collection every ``threshold0`` container allocations (700 by default)
and promotes what survives it. A host holds each batch of 2,000 envelopes, its replies and its
journal entries across awaits until the group commit is durable, so at the default most of a batch
is alive at every young collection: it is scanned, promoted, scanned again in the middle generation,
and pushes the full collection (which scans every entity, and everything Ray and the imports left
in the process) to run often. Measured on a host journaling to SQLite with 10,000 entities
(``loadtest/bench_engine.py --gc-young 0 50000``), the collector took about half the host's CPU per
message (``docs/engine.md``).

Nothing in a host's hot path is cyclic: what it allocates is freed by reference counting once the
batch is answered. Collecting young objects every ``young`` allocations instead lets a batch die
before it is looked at, at a bounded cost in memory (at most ``young`` container objects that a cycle
keeps alive wait for the next collection: a few MB at 50,000). ``gc.freeze`` moves what the process
holds at start (modules, Ray's worker) out of the collector's sight for good; it is never freed
anyway.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG", "tune_gc"]

YOUNG = 50_000  # ARENA_GC_YOUNG's default (HostConfig.gc_young): past it, no faster (loadtest/bench_engine.py)


def tune_gc(young: int) -> None:
    """Young collections every ``young`` container allocations (0: leave the interpreter's default),
    and what the process holds now frozen out of every collection. Process-wide: only a process's
    owner calls it (an engine host, the relay, an API replica)."""
    if young < 0:
        raise ValueError(f"young must be 0 (CPython's default) or a number of allocations, got {young}")
    if young == 0:
        return
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
