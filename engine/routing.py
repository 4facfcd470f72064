"""Routing: ``(kind, id) → shard → host``, stable across processes and restarts."""

from __future__ import annotations

import zlib

__all__ = ["shard_of", "ShardMap"]


def shard_of(kind: str, entity_id: str, shards: int) -> int:
    # crc32, not hash(): Python salts str hashes per process.
    return zlib.crc32(f"{kind}\x00{entity_id}".encode()) % shards


class ShardMap:
    """Shards are many (about ten times the most hosts expected) so they can move."""

    def __init__(self, hosts: int, shards: int = 1024) -> None:
        if hosts < 1:
            raise ValueError(f"a shard map needs at least one host, got {hosts}")
        if shards < hosts:
            raise ValueError(f"shards ({shards}) must be at least the number of hosts ({hosts})")
        self.hosts = hosts
        self.shards = shards
        self._owner = [shard % hosts for shard in range(shards)]

    def host_of(self, kind: str, entity_id: str) -> int:
        return self._owner[shard_of(kind, entity_id, self.shards)]

    def owns(self, host: int, kind: str, entity_id: str) -> bool:
        return self.host_of(kind, entity_id) == host
