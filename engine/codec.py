"""msgpack encoding of messages, results and state, with limits for hostile input."""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["pack", "unpack", "MAX_MESSAGE_BYTES"]

# A single Ray call carries at most this much; larger input is refused before
# decoding so a hostile payload cannot make a host allocate without bound.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_packer = msgpack.Packer(use_bin_type=True)


def pack(value: Any) -> bytes:
    return _packer.pack(value)


def unpack(data: bytes) -> Any:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"payload of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
