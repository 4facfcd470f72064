"""One athlete's equipment: shoes, bikes, components; the distance and time each has done.

Mileage comes from the athlete's workout events. Each workout's contribution is kept (which item it
counted for, how far, how long), so an edit, a reassignment or a delete takes back exactly what it
added. ``workout.recorded``, ``.edited`` and ``.deleted`` reach this entity through three consumers,
in any order: each carries the account's journal seq of the change, and a workout keeps the newest
(a delete that overtakes its record leaves a tombstone, and the late record counts nothing).
Redeliveries are skipped by the engine's per-source marks, so mileage stays exact.

Bounded: ``MAX_GEAR`` items (retired ones included) and ``MAX_TRACKED`` workouts' contributions; past
that the oldest contributions are forgotten (their distance stays on the item, but a later edit or
delete of such an old workout no longer corrects it).
"""

from __future__ import annotations

import hashlib
from typing import Any

from actors.events import GEAR_WORN, SHOP_PURCHASED, WORKOUT_DELETED, WORKOUT_EDITED, WORKOUT_RECORDED
from engine.commerce.wear import COMPONENTS, GEAR_TYPES, WARN_AT, life_m, worn_ratio
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["Gear", "MAX_GEAR", "MAX_TRACKED", "CATALOGUE_ID"]

MAX_GEAR = 200
MAX_TRACKED = 20_000
CATALOGUE_ID = "shop"  # the one catalogue (actors/catalogue.py)
_EDITABLE = ("name", "brand", "model", "purchased", "start_m", "life_m", "sports", "price", "currency")


class Gear(Entity):
    kind = "gear"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.items: dict[str, dict[str, Any]] = {}
        self.defaults: dict[str, str] = {}  # sport -> the item its workouts count for
        # workout id -> {"seq", "sport", "distance_m", "time_s", "gear", "manual", "deleted", "counted"}
        self.workouts: dict[str, dict[str, Any]] = {}

    # -- items -------------------------------------------------------------

    def _item(self, gear_id: str) -> dict:
        item = self.items.get(gear_id)
        if item is None:
            raise NotFound("no such gear")
        return item

    def _check(self, item: dict) -> None:
        if item["type"] not in GEAR_TYPES:
            raise Rejected(f"gear type is one of {', '.join(GEAR_TYPES)}")
        if item["type"] == "component":
            item["component"] = item.get("component") or "other"
            if item["component"] not in COMPONENTS:
                raise Rejected(f"a component is one of {', '.join(COMPONENTS)}")
        elif item.get("component") is not None:
            raise Rejected("only a component names its part")

    @update
    def add(self, gear_id: str, fields: dict, default_for: list[str] | None = None) -> dict:
        """A new item (``fields``: type, component, name, brand, model, purchased, start_m, life_m, sports,
        price, currency, product_id); the default of ``default_for``'s sports from now on."""
        if gear_id in self.items:
            raise Rejected("this gear already exists")
        if len(self.items) >= MAX_GEAR:
            raise Rejected(f"an athlete keeps {MAX_GEAR} items of gear at most; delete some retired ones")
        item: dict[str, Any] = {"type": fields.get("type"), "component": fields.get("component"), "name": "", "brand": None,
                "model": None, "purchased": None, "start_m": 0, "life_m": None, "sports": [], "price": None,
                "currency": None, "product_id": fields.get("product_id"), "order_id": fields.get("order_id")}  # fmt: skip
        item.update({k: v for k, v in fields.items() if k in _EDITABLE})
        item.update(id=gear_id, created=self.now, retired=False, retired_at=None, distance_m=0.0, time_s=0.0,
                    workouts=0, warned=False)  # fmt: skip
        self._check(item)
        self.items[gear_id] = item
        for sport in default_for or ():
            self.defaults[sport] = gear_id
        self._warn(item)
        return self._card(item)

    @update
    def edit(self, gear_id: str, changes: dict) -> dict:
        item = self._item(gear_id)
        for name in changes:
            if name not in _EDITABLE:
                raise Rejected(f"{name!r} cannot be changed")
        item.update(changes)
        if "life_m" in changes or "start_m" in changes:
            ratio = worn_ratio(self._used(item), self._life(item))
            item["warned"] = item["warned"] and ratio is not None and ratio >= WARN_AT  # a new life warns anew
            self._warn(item)
        return self._card(item)

    @update
    def set_default(self, sport: str, gear_id: str | None) -> dict[str, str]:
        """The item ``sport``'s new workouts count for (None: none)."""
        if gear_id is None:
            self.defaults.pop(sport, None)
        else:
            if self._item(gear_id)["retired"]:
                raise Rejected("a retired item is nobody's default")
            self.defaults[sport] = gear_id
        return self.defaults

    @update
    def retire(self, gear_id: str, retired: bool = True) -> dict:
        item = self._item(gear_id)
        item["retired"] = retired
        item["retired_at"] = self.now if retired else None
        if retired:
            self.defaults = {s: g for s, g in self.defaults.items() if g != gear_id}
        return self._card(item)

    @update
    def remove(self, gear_id: str) -> None:
        self._item(gear_id)
        for workout_id, entry in self.workouts.items():
            if entry["gear"] == gear_id:
                entry["gear"] = None
                self._count(workout_id, entry)
        del self.items[gear_id]
        self.defaults = {s: g for s, g in self.defaults.items() if g != gear_id}

    # -- workouts ------------------------------------------------------------

    @update
    def assign(self, workout_id: str, gear_id: str | None) -> dict:
        """By hand: the workout counts for ``gear_id`` (None: for no item), whatever the defaults say."""
        if gear_id is not None:
            self._item(gear_id)
        entry = self.workouts.get(workout_id)
        if entry is None:  # the API saw the workout; its workout.recorded has not reached here yet
            entry = self._track(workout_id, {"seq": -1, "sport": None, "distance_m": 0.0, "time_s": 0.0,
                                             "gear": None, "manual": True, "deleted": False, "counted": None})  # fmt: skip
        if entry["deleted"]:
            raise NotFound("no such workout")
        entry["gear"] = gear_id
        entry["manual"] = True
        self._count(workout_id, entry)
        return {"workout_id": workout_id, "gear_id": gear_id}

    @react(WORKOUT_RECORDED, to=To.field("owner"))
    def on_workout(self, event: Event) -> None:
        self._change(event, event.fields["summary"])

    @react(WORKOUT_EDITED, to=To.field("owner"))
    def on_workout_edited(self, event: Event) -> None:
        self._change(event, event.fields["after"])

    @react(WORKOUT_DELETED, to=To.field("owner"))
    def on_workout_deleted(self, event: Event) -> None:
        self._change(event, None)

    def _change(self, event: Event, summary: dict | None) -> None:
        workout_id = event.fields["workout_id"]
        entry = self.workouts.get(workout_id)
        if entry is not None and entry["seq"] >= event.seq:
            return  # an older state of the workout than the one already counted
        if entry is None:
            entry = self._track(workout_id, {"seq": event.seq, "sport": None, "distance_m": 0.0, "time_s": 0.0,
                                             "gear": None, "manual": False, "deleted": False, "counted": None})  # fmt: skip
        first = entry["seq"] < 0 or entry["sport"] is None
        entry["seq"] = event.seq
        if summary is None:
            entry["deleted"] = True
        else:
            entry["sport"] = summary.get("sport")
            entry["distance_m"] = float(summary.get("distance_m") or 0)
            entry["time_s"] = float(summary.get("moving_s") or summary.get("elapsed_s") or 0)
            if first and not entry["manual"]:  # the sport's default at the time the workout is counted
                default = self.defaults.get(entry["sport"])
                entry["gear"] = default if default in self.items else None
        self._count(workout_id, entry)

    def _track(self, workout_id: str, entry: dict) -> dict:
        self.workouts[workout_id] = entry
        while len(self.workouts) > MAX_TRACKED:  # the oldest are forgotten; their mileage stays
            del self.workouts[next(iter(self.workouts))]
        return entry

    def _count(self, workout_id: str, entry: dict) -> None:
        """Take back what the workout counted, then count what it counts now."""
        counted = entry["counted"]
        if counted is not None and counted[0] in self.items:
            item = self.items[counted[0]]
            item["distance_m"] -= counted[1]
            item["time_s"] -= counted[2]
            item["workouts"] -= 1
        entry["counted"] = None
        gear_id = entry["gear"]
        if entry["deleted"] or gear_id not in self.items or entry["sport"] is None:
            return
        item = self.items[gear_id]
        item["distance_m"] += entry["distance_m"]
        item["time_s"] += entry["time_s"]
        item["workouts"] += 1
        entry["counted"] = [gear_id, entry["distance_m"], entry["time_s"]]
        self._warn(item)

    def _used(self, item: dict) -> float:
        return item["start_m"] + item["distance_m"]

    def _life(self, item: dict) -> int | None:
        return life_m(item["type"], item["component"], item["life_m"])

    def _warn(self, item: dict) -> None:
        ratio = worn_ratio(self._used(item), self._life(item))
        if item["warned"] or item["retired"] or ratio is None or ratio < WARN_AT:
            return
        item["warned"] = True
        self.emit(GEAR_WORN, user_id=self.id, gear_id=item["id"], gear=self._card(item), catalogue=CATALOGUE_ID)

    @react(SHOP_PURCHASED, to=To.field("user_id"))
    def on_purchased(self, event: Event) -> None:
        """Gear bought through Arena's link joins the athlete's equipment, one item per unit (up to 5 a line)."""
        order_id = event.fields["order_id"]
        digest = hashlib.sha256(order_id.encode()).hexdigest()[:16]  # the shop's id may hold any character
        for n, line in enumerate(event.fields["lines"]):
            if line.get("gear_type") not in GEAR_TYPES:
                continue
            for unit in range(min(int(line.get("quantity") or 1), 5)):
                gear_id = f"o{digest}-{n}-{unit}"
                if gear_id in self.items or len(self.items) >= MAX_GEAR:
                    continue
                sports = list(line.get("sports") or [])
                fields = {"type": line["gear_type"], "component": line.get("component"), "name": line["title"][:80],
                          "brand": line.get("brand"), "model": line["title"][:80], "sports": sports,
                          "price": line.get("price"), "currency": event.fields["currency"],
                          "product_id": line["product_id"], "order_id": order_id}  # fmt: skip
                takes = [s for s in sports if s not in self.defaults] if line["gear_type"] in ("shoes", "bike") else []
                self.add(gear_id, fields, takes)

    # -- reading ---------------------------------------------------------------

    def _card(self, item: dict) -> dict:
        life = self._life(item)
        used = self._used(item)
        return {**{k: v for k, v in item.items() if k != "warned"}, "used_m": round(used, 1), "life_m": life,
                "own_life_m": item["life_m"], "wear": None if not life else round(used / life, 4),
                "default_for": sorted(s for s, g in self.defaults.items() if g == item["id"])}  # fmt: skip

    @query
    def listing(self, retired: bool = True) -> dict:
        items = [self._card(i) for i in self.items.values() if retired or not i["retired"]]
        items.sort(key=lambda i: (i["retired"], -i["created"], i["id"]))
        return {"items": items, "defaults": self.defaults}

    @query
    def card(self, gear_id: str) -> dict:
        return self._card(self._item(gear_id))

    @query
    def of_workout(self, workout_id: str) -> dict:
        entry = self.workouts.get(workout_id)
        gear_id = None if entry is None or entry["deleted"] else entry["gear"]
        return {"workout_id": workout_id, "gear_id": gear_id, "manual": bool(entry and entry["manual"])}

    @query
    def export(self) -> dict:
        return {"items": list(self.items.values()), "defaults": self.defaults}
