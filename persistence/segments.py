"""Journal segments: one row per run of consecutive seqs of one entity.

A group commit carries thousands of entries and a hot entity (a live race) has many
of them in a row; packing each run into one row costs the store one insert instead
of hundreds. Both stores share this layout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from operator import attrgetter

from engine.codec import pack, unpack
from engine.store import JournalConflict, JournalEntry, Snapshot

__all__ = ["SEGMENT_BYTES", "Segment", "pack_segments", "unpack_segments", "join_entries", "loaded_entities"]

# A segment packs whole entries; it ends before it would grow past this, so that every
# segment stays far below what engine.codec.unpack accepts when it is read back.
SEGMENT_BYTES = 1 << 20

_SEQ = attrgetter("seq")
Segment = tuple[str, str, int, int, bytes]  # a journal row: kind, entity_id, first_seq, last_seq, entries


def pack_segments(entries: Sequence[JournalEntry]) -> list[Segment]:
    """The journal rows ``(kind, entity_id, first_seq, last_seq, entries)`` that hold ``entries``.

    One row per run of consecutive seqs of an entity; ``entries`` packs
    ``[message_type, body, at, schema_version]`` for each seq of the run, in order.
    Raises ``JournalConflict`` if the batch holds a seq of an entity twice.
    """
    by_entity: defaultdict[tuple[str, str], list[JournalEntry]] = defaultdict(list)
    for entry in entries:
        by_entity[entry[:2]].append(entry)
    rows: list[Segment] = []
    for (kind, entity_id), run in by_entity.items():
        run.sort(key=_SEQ)  # linear when already in order, as hosts write them
        first_seq = previous_seq = run[0].seq
        segment: list[tuple[str, bytes, float, int]] = []
        size = 0
        for entry in run:
            seq = entry.seq
            if segment and (seq != previous_seq + 1 or size + len(entry.body) > SEGMENT_BYTES):
                if seq == previous_seq:
                    raise JournalConflict(
                        f"this batch of {len(entries)} entries holds seq {seq} of {kind} {entity_id!r} twice;"
                        " nothing was written"
                    )
                rows.append((kind, entity_id, first_seq, previous_seq, pack(segment)))
                first_seq, segment, size = seq, [], 0
            segment.append(entry[3:])
            size += len(entry.body)
            previous_seq = seq
        rows.append((kind, entity_id, first_seq, previous_seq, pack(segment)))
    return rows


def join_entries(packed: Sequence[bytes]) -> bytes:
    """The entries of consecutive runs (each a segment's packed ``entries``) as one run's, without
    unpacking them: a msgpack array is its length, then its elements."""
    if len(packed) == 1:
        return packed[0]
    count, bodies = 0, []
    for run in packed:
        head = run[0]
        if 0x90 <= head <= 0x9F:
            length, start = head & 0x0F, 1
        elif head == 0xDC:
            length, start = int.from_bytes(run[1:3], "big"), 3
        elif head == 0xDD:
            length, start = int.from_bytes(run[1:5], "big"), 5
        else:
            raise ValueError(f"a segment's entries are not a msgpack array (first byte {head:#x})")
        count += length
        bodies.append(memoryview(run)[start:])
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 1 << 16:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(bodies)


def unpack_segments(
    kind: str, entity_id: str, after_seq: int, rows: Iterable[tuple[int, bytes]], up_to_seq: int | None = None
) -> list[JournalEntry]:
    """The entries with ``after_seq < seq <= up_to_seq`` in ``(first_seq, entries)`` rows, in seq order."""
    read: list[JournalEntry] = []
    for first_seq, packed in rows:
        skip = max(after_seq + 1 - first_seq, 0)
        fields = unpack(packed)[skip:]
        if up_to_seq is not None:
            del fields[max(up_to_seq - first_seq - skip + 1, 0) :]
        read.extend(JournalEntry(kind, entity_id, seq, *rest) for seq, rest in enumerate(fields, first_seq + skip))
    return read


def loaded_entities(
    kind: str,
    entity_ids: Sequence[str],
    snapshots: dict[str, Snapshot],
    segments: dict[str, list[tuple[int, bytes]]],
) -> dict[str, tuple[Snapshot | None, list[JournalEntry]]]:
    """``Store.load``'s answer from one query's snapshots and journal rows, keyed by entity id."""
    loaded = {}
    for entity_id in entity_ids:
        snapshot = snapshots.get(entity_id)
        after = snapshot.seq if snapshot else 0
        loaded[entity_id] = (snapshot, unpack_segments(kind, entity_id, after, segments.get(entity_id, ())))
    return loaded
