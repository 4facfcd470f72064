"""How a group's parts are addressed: its members spread over shards, its listing in a directory shard.

A group of 100,000 members must not be one entity holding 100,000 ids in one snapshot, so a
member's standing (and their week on the group's board) lives in the member shard that a stable
hash of their user id picks: ``<group id>-<shard>``. The same hash, on the group's id, picks the
directory shard that lists the group. crc32, not ``hash()``: Python salts string hashes per process.
"""

from __future__ import annotations

import zlib

__all__ = ["MEMBER_SHARDS", "DIRECTORY_SHARDS", "member_shard", "member_shards", "shard_number", "directory_shard"]

MEMBER_SHARDS = 64  # 100,000 members: about 1,600 per shard; a million: about 16,000
DIRECTORY_SHARDS = 16


def _bucket(value: str, buckets: int) -> int:
    return zlib.crc32(value.encode()) % buckets


def member_shard(group_id: str, user_id: str) -> str:
    """The member shard that holds ``user_id``'s standing in ``group_id``."""
    return f"{group_id}-{_bucket(user_id, MEMBER_SHARDS):02d}"


def member_shards(group_id: str, first: int = 0) -> list[str]:
    """Every member shard of a group, in order, from ``first``."""
    return [f"{group_id}-{n:02d}" for n in range(first, MEMBER_SHARDS)]


def shard_number(shard_id: str) -> int:
    """``7`` for ``<group>-07``."""
    return int(shard_id.rsplit("-", 1)[1])


def directory_shard(group_id: str) -> str:
    return f"d{_bucket(group_id, DIRECTORY_SHARDS):02d}"
