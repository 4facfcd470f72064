"""Discovery: one shard of the directory of listed groups (``d00``..``d15``, by the group's id).

Each shard keeps the listing cards ``group.listed`` brings (hidden and deleted groups are
dropped, never listed) and two indexes rebuilt from them, never snapshotted: the trigrams of
each name, for a search that forgives typos, and the H3 cell of each shown point, for near-me.

Name search works as PostgreSQL's ``pg_trgm`` ``word_similarity`` does: words are padded
(``"  run "``), cut into trigrams, and a name scores the share of the query's trigrams it holds
(``"runers"`` finds "Paris Runners" at 0.86), with the Jaccard similarity of the whole name to
break ties. The API asks every shard in one batched call and merges their answers.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Any

from actors.erasing import relist
from actors.events import GROUP_LISTED
from actors.places import MAX_RADIUS_KM, cells_near, distance_km, index_cell
from engine.entity import Entity, query
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["GroupDirectory", "trigrams", "similarity", "MIN_SIMILARITY", "MAX_CANDIDATES"]

MIN_SIMILARITY = 0.45
MAX_CANDIDATES = 200  # per shard and query


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c if c.isalnum() else " " for c in folded if not unicodedata.combining(c))
    return plain.split()


def trigrams(text: str) -> set[str]:
    """pg_trgm's trigrams: each word padded with two spaces before and one after."""
    found: set[str] = set()
    for word in _words(text):
        padded = f"  {word} "
        found.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return found


def similarity(query_grams: set[str], name_grams: set[str]) -> tuple[float, float]:
    """(the share of the query's trigrams in the name, the Jaccard similarity of both)."""
    shared = len(query_grams & name_grams)
    if not shared:
        return 0.0, 0.0
    return shared / len(query_grams), shared / len(query_grams | name_grams)


class GroupDirectory(Entity):
    kind = "group_directory"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: dict[str, dict] = {}  # group id -> listing card
        self._grams: dict[str, set[str]] = {}  # trigram -> group ids
        self._cells: dict[str, set[str]] = {}  # H3 cell -> group ids

    def snapshot(self) -> Any:
        return {"entries": self.entries}

    def restore(self, state: Any) -> None:
        for group_id, listing in state["entries"].items():
            self._put(group_id, listing)

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """A listing that names the person (in its name, say) stays under the stand-in."""
        relist(self.entries, self._drop, self._put, user_id, stand_in)
        return False

    def _put(self, group_id: str, listing: dict) -> None:
        self.entries[group_id] = listing
        for gram in trigrams(listing["name"]):
            self._grams.setdefault(gram, set()).add(group_id)
        if listing.get("point"):
            self._cells.setdefault(index_cell(listing["point"]), set()).add(group_id)

    def _drop(self, group_id: str) -> None:
        listing = self.entries.pop(group_id, None)
        if listing is None:
            return
        for gram in trigrams(listing["name"]):
            ids = self._grams.get(gram)
            if ids is not None:
                ids.discard(group_id)
                if not ids:
                    del self._grams[gram]
        if listing.get("point"):
            cell = index_cell(listing["point"])
            ids = self._cells.get(cell)
            if ids is not None:
                ids.discard(group_id)
                if not ids:
                    del self._cells[cell]

    @react(GROUP_LISTED, to=To.field("directory"))
    def on_listed(self, event: Event) -> None:
        group_id, listing = event.fields["group_id"], event.fields["listing"]
        self._drop(group_id)
        if listing is not None:
            self._put(group_id, listing)

    @query
    def search(
        self,
        text: str | None = None,
        sport: str | None = None,
        near: list[float] | None = None,
        radius_km: float = 25.0,
        limit: int = 50,
    ) -> list[dict]:
        """Listed groups that match every filter given, each with its ``score`` (name) and ``distance_km``
        (near); at most ``limit``, the best by name, else by distance, else by members."""
        if near is not None and not 0 < radius_km <= MAX_RADIUS_KM:
            raise Rejected(f"a radius is more than 0 and at most {MAX_RADIUS_KM:g} km")
        limit = max(1, min(int(limit), MAX_CANDIDATES))
        candidates: dict[str, dict[str, Any]] = {}
        nearby: set[str] = set()
        if near is not None:
            nearby = {g for cell in cells_near(near[0], near[1], radius_km) for g in self._cells.get(cell, ())}
        if text:
            wanted = trigrams(text)
            if not wanted:
                return []
            counts = Counter(g for gram in wanted for g in self._grams.get(gram, ()))
            for group_id in counts:
                score, tie = similarity(wanted, trigrams(self.entries[group_id]["name"]))
                if score >= MIN_SIMILARITY:
                    candidates[group_id] = {"score": round(score, 3), "tie": tie}
        else:
            candidates = {
                group_id: {"score": None, "tie": 0.0} for group_id in (self.entries if near is None else nearby)
            }
        if near is not None:
            for group_id in list(candidates):
                if group_id not in nearby:
                    del candidates[group_id]
                    continue
                distance = distance_km(near, self.entries[group_id]["point"])
                if distance > radius_km:
                    del candidates[group_id]
                else:
                    candidates[group_id]["distance_km"] = round(distance, 2)
        if sport is not None:
            candidates = {g: c for g, c in candidates.items() if sport in (self.entries[g]["sports"] or [])}

        def best(group_id: str) -> tuple:
            found, listing = candidates[group_id], self.entries[group_id]
            if text:
                return (-found["score"], -found["tie"], -listing["members"], group_id)
            if near is not None:
                return (found["distance_km"], -listing["members"], group_id)
            return (-listing["members"], group_id)

        chosen = sorted(candidates, key=best)[:limit]
        return [
            {
                "id": group_id,
                **self.entries[group_id],
                "score": candidates[group_id]["score"],
                "distance_km": candidates[group_id].get("distance_km"),
            }
            for group_id in chosen
        ]
