"""Keyset pages over newest-first lists: stable while new items arrive at the front."""

from __future__ import annotations

from typing import Any

__all__ = ["page", "MAX_PAGE"]

MAX_PAGE = 100


def page(items: list[dict], before: list | None, limit: int, key: tuple[str, str] = ("at", "id")) -> dict[str, Any]:
    """Items after the ``before`` key (``[at, id]`` of the last item seen), newest first.

    ``items`` is newest first. Returns ``{"items": [...], "next": [at, id] | None}``.
    """
    limit = max(1, min(int(limit), MAX_PAGE))
    at_key, id_key = key
    start = 0
    if before is not None:
        cursor = (before[0], before[1])
        start = len(items)
        for index, item in enumerate(items):
            if (item[at_key], item[id_key]) < cursor:
                start = index
                break
    chosen = items[start : start + limit]
    more = start + limit < len(items)
    return {"items": chosen, "next": [chosen[-1][at_key], chosen[-1][id_key]] if more and chosen else None}
