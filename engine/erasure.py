"""Erasing a person from an entity: the engine's half of the right to erasure.

An eraser (``connectors/erasure.py``) finds every entity whose stored state or journal mentions
a user (``Store.mentions``) and sends each one ``ERASE_MESSAGE`` with the user's id and a
stand-in id. The message is journaled like any update; the entity's ``erase_user`` hook drops
what it holds of the person (or pseudonymises it as the stand-in, where others' records must stay
whole: a race's standings). Once the message is durable the host writes a snapshot at once and
compacts the whole journal through it, so no older entry that named the person survives; an
entity that belonged to the person alone (their feed, their gear) is deleted outright.

Why compaction and not crypto-shredding: the engine already folds journals into snapshots and
drops the entries (``Store.compact``); erasure only makes that happen now and for everything.
Crypto-shredding would need a key per person woven through every entity that ever mentions
them (a group, a race, a follower's feed), and a journal entry would have to know whose data
each of its fields is. docs/privacy.md has the whole reasoning.

``scrub`` is the default hook: it drops every list element and map entry that mentions the
person, and writes the stand-in where a field cannot be dropped. Kinds whose records belong to
others as well (a race's standings, a group's ownership) override ``Entity.erase_user``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ERASE_MESSAGE", "mentions", "replace_all", "scrub", "scrub_marks"]

ERASE_MESSAGE = "$erase"  # body: {"user_id": ..., "stand_in": ...}


def mentions(value: Any, needle: str) -> bool:
    """Whether ``needle`` occurs in any string or bytes within ``value``."""
    if isinstance(value, str):
        return needle in value
    if isinstance(value, bytes | bytearray | memoryview):
        return needle.encode() in bytes(value)
    if isinstance(value, dict):
        return any(mentions(k, needle) or mentions(v, needle) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(mentions(item, needle) for item in value)
    return False


def scrub(state: Any, needle: str, stand_in: str) -> Any:
    """``state`` (an entity's snapshot: a map of fields) without the person.

    At the top (the entity's fields): a field that mentions them keeps its place; a string gets
    the stand-in for their id, a container is scrubbed. Below: a list element or a map entry
    (its key or its value) that mentions them is dropped whole: the workout in a feed, the member
    in a list, the person's row in a map of rows."""
    if not isinstance(state, dict):
        return _replace(state, needle, stand_in)
    return {name: _keep_place(value, needle, stand_in) for name, value in state.items()}


def _keep_place(value: Any, needle: str, stand_in: str) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if not mentions(k, needle) and not mentions(v, needle)}
    if isinstance(value, list | tuple):
        return type(value)(item for item in value if not mentions(item, needle))
    if isinstance(value, set | frozenset):
        return type(value)(item for item in value if not mentions(item, needle))
    return _replace(value, needle, stand_in)


def _replace(value: Any, needle: str, stand_in: str) -> Any:
    if isinstance(value, str):
        return value.replace(needle, stand_in)
    if isinstance(value, bytes) and needle.encode() in value:
        return value.replace(needle.encode(), stand_in.encode())
    return value


def scrub_marks(marks: dict[str, Any], needle: str) -> dict[str, Any]:
    """An entity's applied-event marks without those of sources that mention the person (their
    account: it sends nothing more once erased, so nothing needs its mark)."""
    return {key: mark for key, mark in marks.items() if needle not in key}


def replace_all(value: Any, needle: str, stand_in: str) -> Any:
    """``value`` with ``stand_in`` for ``needle`` in every string and map key within it (an event
    that names the person among others: who approved a membership, who was invited)."""
    if isinstance(value, str):
        return value.replace(needle, stand_in)
    if isinstance(value, dict):
        return {replace_all(k, needle, stand_in): replace_all(v, needle, stand_in) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(replace_all(item, needle, stand_in) for item in value)
    return _replace(value, needle, stand_in)
