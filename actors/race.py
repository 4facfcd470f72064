"""A live race: its lifecycle, its field, and its board of live results.

A race of more than ``SHARED_RACE_CAPACITY`` athletes is a dedicated entity (a host of its own,
a Ray process, for its life: ``Race.hosted_alone``); a smaller one, created with a capacity of
at most that and an id that says so (``SHARED_RACE_PREFIX``), lives on the shared hosts like
any other entity and costs no process. Telemetry arrives as batches
of packed samples (``engine.telemetry``), each one journaled message, and the
columnar ``RaceBoard`` scores them with fair play on. Every transition is kept
with its time and who made it.

Lifecycle: draft → open → live → finished → final, or cancelled from any state
before final. ``start_at`` starts the race by itself (a timer); a time race ends
itself when its window has passed for everyone.

Notices (``engine.notices``), which the MQTT hub relays to the race's devices: a
countdown each second of the last ``COUNTDOWN_S`` before ``start_at`` (a timer of
its own), the start, and the finish (ended or cancelled), each once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from actors.erasing import ERASED_NAME, pseudonymise
from actors.events import RACE_RESULT, RACE_SETTLED
from actors.route import check_link
from actors.workout import SPORTS as WORKOUT_SPORTS
from engine.entity import Entity, query, update
from engine.erasure import replace_all
from engine.errors import Forbidden, NotFound, Rejected
from engine.race import MAX_CHECKPOINTS, SEXES, RaceBoard, warm_up
from engine.telemetry import decode, encode

__all__ = [
    "Race",
    "RaceEntries",
    "RaceIndex",
    "RaceRef",
    "COUNTDOWN_S",
    "ENDED",
    "MAX_CAPACITY",
    "MAX_CATEGORIES",
    "MAX_CATEGORY_CHARS",
    "MAX_CHECKPOINTS",
    "MAX_DURATION_S",
    "MAX_NAME_CHARS",
    "MAX_ROUTE_POINTS",
    "MAX_TARGET_M",
    "ROUTE_TOLERANCE",
    "RACE_STATUSES",
    "SETTLED",
]

RACE_STATUSES = ("draft", "open", "live", "finished", "final", "cancelled")  # the race's lifecycle
SETTLED = ("final", "cancelled")  # nothing changes a settled race but a recorded correction
ENDED = ("finished", *SETTLED)  # the race is over: no telemetry, withdrawals or device bindings
COUNTDOWN_S = 10  # the seconds before start_at that the race counts down, one notice each
_NOBODY = np.uint32(0xFFFFFFFF)  # an entry no race reaches: counted as unknown
_NEXT = {"open": ("draft",), "live": ("open",), "finished": ("live",), "final": ("finished",)}
_CONFIG = (
    "name",
    "sport",
    "kind",
    "target_m",
    "duration_s",
    "checkpoints_m",
    "start_mode",
    "start_at",
    "start_window_s",
    "categories",
    "capacity",
    "registration_opens",
    "registration_closes",
    "route",
    "linked_route",
    "fair_play",
)
# The bounds of a race's settings, written once: the entity holds every race to capacity,
# route and checkpoints (MAX_CHECKPOINTS, the board's own); the API states all of them in
# its OpenAPI shape and refuses a request past any.
MAX_NAME_CHARS = 120
MAX_TARGET_M = 10_000_000  # 10,000 km
MAX_DURATION_S = 30 * 86_400  # a month: the longest time race, and the longest rolling start
MAX_CATEGORIES, MAX_CATEGORY_CHARS = 50, 40
MAX_CAPACITY = 1_000_000
# A race created for at most this many athletes lives on the shared hosts: its board is a few MB
# and a few thousand samples a second at most, and it then costs no Ray process (about 128 MB
# while it runs, and Ray's bookkeeping of every process that ever ran, docs/benchmarks.md). Its
# id says so, so that every process routes it alike without asking anyone.
SHARED_RACE_CAPACITY = 5_000
SHARED_RACE_PREFIX = "s-"
MAX_ROUTE_POINTS = 5_000
# A finish this far off (a share of) the distance of the route the race uses is refused: a race of "the
# harbour 10k" that is 12 km is a mistake, a few metres of GPS noise in the route's measure is not.
ROUTE_TOLERANCE = 0.02
# The board's columns that make an athlete's standing (place, time, splits, fair-play decisions); an
# erased athlete keeps these, under a stand-in, and loses the rest: position, weight, sex, heart rate.
_STANDING = frozenset({
    "category", "status", "flags", "cleared", "open_t", "start_t", "last_seq", "seen", "last_t", "d_t", "d_last",
    "distance", "dist_t", "cp", "lo_t", "lo_d", "hi_t", "hi_d", "splits",
})  # fmt: skip


def _board(config: dict) -> RaceBoard:
    return RaceBoard(
        0,
        sport=config["sport"],
        kind=config["kind"],
        target_m=config.get("target_m"),
        duration_s=config.get("duration_s"),
        checkpoints_m=config.get("checkpoints_m") or (),
        start_mode=config.get("start_mode", "mass"),
        start_window_s=config.get("start_window_s"),
        fair_play=config.get("fair_play"),
    )


def _route(points: Any) -> list[list[float]]:
    """The course as [lat, lon] points, for maps: 2 to MAX_ROUTE_POINTS of them, in range."""
    if not isinstance(points, list) or not 2 <= len(points) <= MAX_ROUTE_POINTS:
        raise Rejected(f"a route is a list of 2 to {MAX_ROUTE_POINTS:,} [lat, lon] points")
    route = []
    for point in points:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise Rejected("each route point is [lat, lon]")
        lat, lon = point
        if not (
            isinstance(lat, int | float) and isinstance(lon, int | float) and -90 <= lat <= 90 and -180 <= lon <= 180
        ):
            raise Rejected("a route point's latitude is within ±90 and its longitude within ±180")
        route.append([float(lat), float(lon)])
    return route


def _on_route(merged: dict, changes: dict) -> None:
    """A race that uses a route runs the route's distance: a distance race given no ``target_m`` takes
    the route's, and a distance or course race whose finish is off it by more than ``ROUTE_TOLERANCE``
    is refused. A time or collective race uses the route as its course only (laps of it)."""
    metres = float(check_link(merged["linked_route"], (merged["sport"],))["distance_m"])
    if merged["kind"] == "distance" and "target_m" not in changes:
        if "linked_route" in changes or merged.get("target_m") is None:
            merged["target_m"] = metres
    finish, lines = merged.get("target_m"), merged.get("checkpoints_m")
    if merged["kind"] == "course":
        finish = lines[-1] if isinstance(lines, list) and lines else None
    if merged["kind"] not in ("distance", "course") or not isinstance(finish, int | float):
        return  # a finish that is not a number is the board's to refuse
    if abs(finish - metres) > ROUTE_TOLERANCE * metres:
        raise Rejected(
            f"the race's route is {metres:,.0f} m and its finish {finish:,.0f} m: give a distance within"
            f" {ROUTE_TOLERANCE:.0%} of the route's, or none to take the route's"
        )


class Race(Entity):
    kind = "race"
    dedicated = True

    @classmethod
    def hosted_alone(cls, entity_id: str) -> bool:
        return not entity_id.startswith(SHARED_RACE_PREFIX)

    @classmethod
    def warm(cls) -> None:
        warm_up()  # fair play's compiled rules load before the first batch, not during it

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.status: str | None = None
        self.organizer: str | None = None
        self.config: dict[str, Any] = {}
        self.athletes: list[dict] = []  # the entry list, by entry: {"user_id", "name", "category"}
        self.devices: dict[str, int] = {}
        self.signal_lost: set[int] = set()  # participant indices whose device went offline
        self.health: set[int] = set()  # participant indices who consented to health data: only theirs keep hr
        self.private: set[int] = set()  # participant indices of athletes whose profile is private
        self.transitions: list[dict] = []
        self.corrections: list[dict] = []  # changes to final results: who, when, what and why
        self.before_dsq: dict[str, str] = {}  # user id → status before a disqualification, to reinstate
        self.board: RaceBoard | None = None
        self.archived = False  # the lake has its telemetry (``journal_kept``)
        self._index: dict[str, int] = {}

    def retirable(self) -> bool:
        """A settled race is read from its record (``RaceRef``): its host may stop once idle."""
        return self.status in SETTLED

    def journal_kept(self) -> bool:
        """Its journal holds the raw telemetry: kept until the lake has archived it (where the host
        is told to keep it: ``HostConfig.archived_kinds``)."""
        return not self.archived

    # -- snapshots: the board travels as raw arrays --------------------------

    def snapshot(self) -> dict:
        return {
            "status": self.status,
            "organizer": self.organizer,
            "config": self.config,
            "athletes": self.athletes,
            "devices": self.devices,
            "signal_lost": sorted(self.signal_lost),
            "private": sorted(self.private),
            "health": sorted(self.health),
            "transitions": self.transitions,
            "corrections": self.corrections,
            "before_dsq": self.before_dsq,
            "archived": self.archived,
            "board": self.board.to_state() if self.board is not None else None,
        }

    def restore(self, state: dict) -> None:
        board = state.pop("board")
        self.signal_lost = set(state.pop("signal_lost", ()))
        self.private = set(state.pop("private", ()))
        self.health = set(state.pop("health", ()))
        vars(self).update(state)
        self.board = RaceBoard.from_state(board) if board is not None else None
        self._index = {a["user_id"]: i for i, a in enumerate(self.athletes)}

    # -- erasure ---------------------------------------------------------------

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """The standings stay whole: the athlete's entry becomes the stand-in, a "Deleted athlete", with
        their place, time and splits; their position, weight, sex and heart rate go, and so do their
        device bindings. An athlete of a race not yet over is withdrawn (nothing more comes from them).
        An organizer becomes the stand-in: the race stays, managed by nobody."""
        index = self._index.get(user_id)
        if index is not None and self.board is not None:
            if self.status in ("open", "live"):
                self.board.withdraw(index)
            self.athletes[index] = {**self.athletes[index], "user_id": stand_in, "name": ERASED_NAME}
            self.devices = {device: i for device, i in self.devices.items() if i != index}
            self.signal_lost.discard(index)
            self._forget_readings(index)
        self.organizer = replace_all(self.organizer, user_id, stand_in)
        for name in ("config", "athletes", "transitions", "corrections", "before_dsq", "devices"):
            setattr(self, name, replace_all(getattr(self, name), user_id, stand_in))
        self._index = {a["user_id"]: i for i, a in enumerate(self.athletes)}
        return False

    def _forget_readings(self, index: int) -> None:
        """Entry ``index``'s board columns other than its standing back to those of an athlete never heard from."""
        state = self.created_board.to_state()
        blank_board = _board(self.config)
        blank_board.add(1)
        blank = blank_board.to_state()["columns"]
        for name, column in state["columns"].items():
            if name in _STANDING or name not in blank:
                continue
            dtype = np.dtype(column["dtype"])
            values = np.frombuffer(column["data"], dtype).reshape(column["shape"]).copy()
            values[index] = np.frombuffer(blank[name]["data"], dtype).reshape(blank[name]["shape"])[0]
            column["data"] = values.tobytes()
        self.board = RaceBoard.from_state(state)

    # -- organizer -----------------------------------------------------------

    @property
    def created_board(self) -> RaceBoard:
        """The board, which every created race has (``_require`` refuses a race never created)."""
        assert self.board is not None, "the race was never created"
        return self.board

    def _require(self) -> None:
        if self.status is None:
            raise NotFound("no such race")

    def _organizer(self, by: str) -> None:
        self._require()
        if self.status == "draft" and by != self.organizer:
            raise NotFound("no such race")  # a draft exists for its organizer alone
        if by != self.organizer:
            raise Forbidden("only the race's organizer may do this")

    def _move(self, status: str, by: str | None, reason: str | None = None) -> dict:
        self.status = status
        event = {"status": status, "at": self.now, "by": by}
        if reason:
            event["reason"] = reason
        self.transitions.append(event)
        return event

    @update
    def create(self, organizer: str, config: dict) -> dict:
        if self.status is not None:
            raise Rejected("this race already exists")
        config = self._checked(config)
        self.organizer = organizer
        self.config = config
        self.board = _board(config)
        self._move("draft", organizer)
        return self.info()

    def _checked(self, config: dict) -> dict:
        unknown = set(config) - set(_CONFIG)
        if unknown:
            raise Rejected(f"unknown race setting(s): {', '.join(sorted(unknown))}")
        shared = not self.hosted_alone(self.id)
        capacity = SHARED_RACE_CAPACITY if shared else 100_000
        merged = {"start_mode": "mass", "categories": [], "capacity": capacity, **self.config, **config}
        for name in ("name", "sport", "kind"):
            if not merged.get(name):
                raise Rejected(f"a race needs a {name}")
        if merged.get("linked_route") is not None:
            _on_route(merged, config)
        try:
            _board(merged)
        except ValueError as error:
            raise Rejected(str(error)) from None
        if merged["start_mode"] == "rolling" and not merged.get("start_window_s"):
            raise Rejected("a rolling start needs start_window_s: how long the start stays open")
        if not 1 <= int(merged["capacity"]) <= MAX_CAPACITY:
            raise Rejected(f"capacity is between 1 and {MAX_CAPACITY:,} athletes")
        if shared and int(merged["capacity"]) > SHARED_RACE_CAPACITY:
            raise Rejected(
                f"this race was created for at most {SHARED_RACE_CAPACITY:,} athletes and runs on the shared hosts;"
                " create a race with the larger capacity instead (it gets a process of its own)"
            )
        if merged.get("route") is not None:
            merged["route"] = _route(merged["route"])
        return merged

    @update
    def configure(self, by: str, changes: dict) -> dict:
        self._organizer(by)
        if self.status not in ("draft", "open"):
            raise Rejected(f"a {self.status} race can no longer be changed")
        if self.athletes and {"sport", "kind", "categories", "fair_play"} & set(changes):
            raise Rejected("sport, kind, categories and fair_play are fixed once athletes have joined")
        self.config = self._checked(changes)
        if not self.athletes:
            self.board = _board(self.config)
        self._schedule_start()
        return self.info()

    def _schedule_start(self) -> None:
        start_at = self.config.get("start_at")
        if self.status == "open" and start_at:
            self.set_timer("start", float(start_at), "start", {"by": self.organizer})
            self.set_timer("countdown", max(self.now, float(start_at) - COUNTDOWN_S), "countdown")
        else:
            self.cancel_timer("start")
            self.cancel_timer("countdown")

    @update
    def countdown(self) -> None:
        """The countdown's timer: a notice with the whole seconds left to ``start_at``, then the next one."""
        start_at = self.config.get("start_at")
        if self.status != "open" or not start_at:
            return
        seconds = math.ceil(float(start_at) - self.now - 1e-6)  # a timer fires at its instant: that second
        if 0 < seconds <= COUNTDOWN_S:
            self.notice({"type": "countdown", "race": self.id, "seconds": seconds})
        if seconds > 1:
            self.set_timer("countdown", float(start_at) - min(seconds - 1, COUNTDOWN_S), "countdown")

    def _transition(self, status: str, by: str) -> dict:
        self._organizer(by)
        if self.status not in _NEXT[status]:
            raise Rejected(f"a {self.status} race cannot become {status}")
        return self._move(status, by)

    @update
    def open(self, by: str) -> dict:
        event = self._transition("open", by)
        self._schedule_start()
        return event

    @update
    def start(self, by: str) -> dict:
        """Force-start (or the start_at timer): the gun goes off now."""
        event = self._transition("live", by)
        self.cancel_timer("start")
        self.cancel_timer("countdown")
        self.notice({"type": "start", "race": self.id, "at": self.now})
        self.created_board.start("all", self.now)
        if self.config["kind"] == "time":
            rolling = self.config["start_mode"] == "rolling"
            window = (self.config.get("start_window_s") or 0) if rolling else 0
            self.set_timer("end", self.now + window + self.config["duration_s"], "end", {"by": by})
        return event

    @update
    def end(self, by: str) -> dict:
        """Force-end (or the time race's own end): whoever is still out is DNF."""
        event = self._transition("finished", by)
        self.cancel_timer("end")
        self.created_board.end(self.now)
        self.notice({"type": "finished", "race": self.id})
        return event

    @update
    def finalize(self, by: str) -> dict:
        """Results become official; provisional athletes must be reviewed first."""
        self._require()
        if any(f["decision"] is None for f in self.created_board.flags()):
            raise Rejected("review every flagged athlete before the results become final")
        event = self._transition("final", by)
        self._emit_results()
        self.emit(RACE_SETTLED, race_id=self.id, status="final", athletes=len(self.athletes))
        return event

    def _emit_results(self) -> None:
        """Each athlete who started gets ``race.result``: it becomes their workout and a notification."""
        started = next((t["at"] for t in self.transitions if t["status"] == "live"), None)
        if started is None:
            return
        config = self.config
        for row in self.results():
            if row["status"] not in ("finished", "dnf"):
                continue
            elapsed, distance = row["finish_s"] or 0.0, row["distance_m"]
            workout_id = f"{self.id}-{row['participant']}"
            summary = {
                "id": workout_id,
                "sport": config["sport"] if config["sport"] in WORKOUT_SPORTS else "other",
                "title": f"{config['name']}: " + (f"#{row['place']}" if row["place"] else row["status"].upper()),
                "start": started,
                "elapsed_s": elapsed,
                "moving_s": elapsed,
                "distance_m": distance,
                "elevation_gain_m": 0.0,
                "pace_s_per_km": elapsed / (distance / 1000) if distance and elapsed else None,
                "avg_hr": None,
                "max_hr": None,
                "avg_power": None,
                "calories": None,
                "visibility": None,  # the athlete's default
                "indoor": False,
                "source": "race",
                "race_id": self.id,
                "best_efforts": {},
            }
            self.emit(
                RACE_RESULT, race_id=self.id, user_id=row["user_id"], workout_id=workout_id, summary=summary, result=row
            )

    @update
    def cancel(self, by: str, reason: str | None = None) -> dict:
        self._organizer(by)
        if self.status in SETTLED:
            raise Rejected(f"a {self.status} race cannot be cancelled")
        for timer in ("start", "countdown", "end"):
            self.cancel_timer(timer)
        if self.status != "finished":  # a finished race told its devices already
            self.notice({"type": "finished", "race": self.id})
        moved = self._move("cancelled", by, reason)
        self.emit(RACE_SETTLED, race_id=self.id, status="cancelled", athletes=len(self.athletes))
        return moved

    @update
    def mark_archived(self) -> None:
        """The lake archived this race's telemetry (``connectors.lake.race_archive``): the host may
        compact its journal from now on."""
        if self.status not in SETTLED:
            raise Rejected(f"a {self.status} race is not archived: its telemetry may still grow")
        self.archived = True

    @update
    def review(self, by: str, user_id: str, accept: bool) -> dict:
        self._organizer(by)
        if self.status in SETTLED:
            raise Rejected(f"the race is {self.status}: results change only through a recorded correction")
        index = self._athlete(user_id)
        if not accept:
            self._keep_status(user_id, index)
        self.created_board.review(index, accept)
        return {"user_id": user_id, "accepted": accept}

    def _keep_status(self, user_id: str, index: int) -> None:
        status = self.created_board.status(index)
        if status != "dsq":
            self.before_dsq[user_id] = status

    @update
    def correct(self, by: str, user_id: str, action: str, reason: str) -> dict:
        """Change a final result (disqualify, or reinstate a disqualified athlete), recorded with its reason."""
        self._organizer(by)
        if self.status != "final":
            raise Rejected("only final results are corrected; before that, review the flags")
        reason = (reason or "").strip()
        if not reason:
            raise Rejected("a correction needs a reason")
        index = self._athlete(user_id)
        before = self.created_board.status(index)
        if action == "disqualify":
            if before == "dsq":
                raise Rejected("this athlete is already disqualified")
            self._keep_status(user_id, index)
            self.created_board.review(index, False)
        elif action == "reinstate":
            if before != "dsq" or user_id not in self.before_dsq:
                raise Rejected("only a disqualified athlete can be reinstated")
            self.created_board.reinstate(index, self.before_dsq.pop(user_id))
        else:
            raise Rejected("a correction disqualifies or reinstates an athlete")
        correction = {
            "at": self.now,
            "by": by,
            "user_id": user_id,
            "participant": index,
            "action": action,
            "from": before,
            "to": self.created_board.status(index),
            "reason": reason[:500],
        }
        self.corrections.append(correction)
        return correction

    # -- athletes ------------------------------------------------------------

    def _athlete(self, user_id: str) -> int:
        index = self._index.get(user_id)
        if index is None:
            raise NotFound("this athlete is not in the race")
        return index

    def _admit(
        self,
        user_id: str,
        name: str,
        category: str | None,
        weight_kg: float | None,
        private: bool = False,
        sex: str | None = None,
        health: bool = True,
    ) -> int:
        index = self._index.get(user_id)
        if index is not None:
            return index  # joining twice is joining once
        if self.status == "draft":
            raise NotFound("no such race")
        if self.status not in ("open", "live") or (self.status == "live" and self.config["start_mode"] != "rolling"):
            raise Rejected(f"registration is closed: the race is {self.status}")
        opens, closes = self.config.get("registration_opens"), self.config.get("registration_closes")
        if (opens and self.now < opens) or (closes and self.now > closes):
            raise Rejected("registration is closed at this time")
        if len(self.athletes) >= self.config["capacity"]:
            raise Rejected("the race is full")
        categories = self.config["categories"]
        if categories and category not in categories:
            raise Rejected(f"category is one of {', '.join(categories)}")
        code = categories.index(category) if categories else 0
        if sex is not None and sex not in SEXES[1:]:
            raise Rejected(f"sex is one of {', '.join(SEXES[1:])} (it picks the W/kg caps), or absent")
        weight = np.array([weight_kg if weight_kg else np.nan], np.float32)
        sexes = np.array([SEXES.index(sex) if sex else 0])
        (index,) = self.created_board.add(1, categories=np.array([code]), weights_kg=weight, sexes=sexes)
        self.athletes.append({"user_id": user_id, "name": name, "category": category})
        self._index[user_id] = index
        if private:
            self.private.add(index)
        if health:
            self.health.add(index)
        return index

    @update
    def join(
        self,
        user_id: str,
        name: str,
        category: str | None = None,
        weight_kg: float | None = None,
        private: bool = False,
        sex: str | None = None,
        health: bool = True,
    ) -> int:
        """``health``: whether the athlete consented to health data (docs/privacy.md), as the API says for
        every athlete who joins through it; without it their heart rate is dropped from every sample
        before it is scored or journaled (the API sends no weight for them either)."""
        self._require()
        return self._admit(user_id, name, category, weight_kg, private, sex, health)

    @update
    def join_many(self, athletes: list[dict]) -> list:
        """A join surge in one message: an index or a refusal for each athlete, in order."""
        self._require()
        answers: list[int | dict[str, str]] = []
        for athlete in athletes:
            try:
                answers.append(
                    self._admit(
                        athlete["user_id"],
                        athlete["name"],
                        athlete.get("category"),
                        athlete.get("weight_kg"),
                        athlete.get("private", False),
                        athlete.get("sex"),
                        athlete.get("health", True),
                    )
                )
            except Rejected as refused:
                answers.append({"error": refused.message})
        return answers

    @update
    def withdraw(self, user_id: str) -> None:
        self._require()
        index = self._athlete(user_id)
        if self.status in ENDED:
            raise Rejected(f"the race is {self.status}: a withdrawal is no longer possible")
        self.created_board.withdraw(index)

    @update
    def privacy(self, user_id: str, private: bool) -> None:
        """The athlete made their profile private or public: the race shows their name accordingly."""
        self._require()
        index = self._athlete(user_id)
        if private:
            self.private.add(index)
        else:
            self.private.discard(index)

    @update
    def health_consent(self, user_id: str, given: bool) -> None:
        """The athlete gave or withdrew consent to health data: their heart rate is kept, or dropped, from
        their next sample on."""
        self._require()
        index = self._athlete(user_id)
        if given:
            self.health.add(index)
        else:
            self.health.discard(index)

    def redact(self, message_type: str, body: dict) -> dict:
        """Samples keep a heart rate only for athletes who consented to health data: the others' is zeroed
        (absent) before the batch is scored or journaled."""
        if message_type != "ingest" or not isinstance(body.get("samples"), bytes | bytearray):
            return body
        if len(self.health) == len(self.athletes):
            return body  # everyone consented: the common case costs a length check
        try:
            batch = decode(body["samples"])
        except (TypeError, ValueError):
            return body  # the handler refuses it, as it would have
        if not batch["hr"].any():
            return body
        entries = batch["entry"]
        athletes = body.get("athletes")
        if athletes is not None:
            if not isinstance(athletes, list):
                return body
            nobody = int(_NOBODY)
            lookup = np.array([self._index.get(u, nobody) if isinstance(u, str) else nobody for u in athletes]
                              + [nobody], np.int64)  # fmt: skip
            entries = lookup[np.minimum(entries, len(athletes))]
        kept_for = np.zeros(len(self.athletes) + 1, bool)  # the last one: an entry that is nobody
        if self.health:
            kept_for[np.fromiter(self.health, np.int64, len(self.health))] = True
        drop = ~kept_for[np.minimum(entries, len(self.athletes))] & (batch["hr"] != 0)
        if not drop.any():
            return body
        kept = batch.copy()
        kept["hr"][drop] = 0
        return {**body, "samples": encode(kept)}

    @update
    def bind_device(self, user_id: str, device_id: str) -> int:
        """Copy a device's binding to the athlete's entry, for status notices and lost-signal marks.

        The device entity owns the binding (``Device.bind``: its owner, to their own entry, one
        race at a time); the race only says whether the athlete may bind here at all.
        """
        self._require()
        index = self._athlete(user_id)
        if self.status in ENDED:
            raise Rejected(f"the race is {self.status}: devices are no longer bound")
        self.devices[device_id] = index
        return index

    @update
    def unbind_device(self, device_id: str) -> None:
        self._require()
        self.devices.pop(device_id, None)

    @update
    def signal(self, device_id: str, state: str) -> list[int]:
        """A bound device went offline (its last will) or came back: spectators see who lost signal."""
        self._require()
        if state not in ("online", "offline"):
            raise Rejected("a device's state is online or offline")
        index = self.devices.get(device_id)
        if index is None:
            raise Rejected("this device is not bound to the race")
        if state == "offline":
            self.signal_lost.add(index)
        else:
            self.signal_lost.discard(index)
        return sorted(self.signal_lost)

    # -- live ----------------------------------------------------------------

    @update
    def ingest(self, samples: bytes, athletes: list[str] | None = None) -> dict:
        """Score a batch of packed samples; counts of what was accepted, dropped and flagged.

        With ``athletes`` (user ids) each sample's ``entry`` is a position in that list, not
        in the race's entry list: a gateway batches many athletes without knowing
        their places in the race. Samples of athletes not in the race count as unknown.
        """
        self._require()
        if self.status == "draft":
            raise NotFound("no such race")
        if self.status != "live":
            raise Rejected(f"the race is {self.status}: it takes telemetry only while live")
        try:
            batch = decode(samples)
        except ValueError as error:
            raise Rejected(str(error)) from None
        strangers: list[str] = []
        if athletes is not None:
            lookup = np.array([self._index.get(user, _NOBODY) for user in athletes] + [_NOBODY], np.uint32)
            strangers = [user for user, index in zip(athletes, lookup.tolist()) if index == _NOBODY]
            if strangers and len(strangers) == len(athletes):
                raise Forbidden("join the race before sending telemetry")
            batch = batch.copy()
            batch["entry"] = lookup[np.minimum(batch["entry"], len(athletes))]
        counts: dict[str, Any] = self.created_board.ingest(batch, self.now)
        counts["not_in_race"] = strangers
        if self.signal_lost:  # telemetry is the surest sign that the signal is back
            lost = np.fromiter(self.signal_lost, np.uint32, len(self.signal_lost))
            self.signal_lost.difference_update(lost[np.isin(lost, batch["entry"])].tolist())
        return counts

    # -- reading -------------------------------------------------------------

    @query
    def entrants(self) -> list[str]:
        """The user id of each entry, in entry order (the lake's race archive maps samples with it)."""
        return [athlete["user_id"] for athlete in self.athletes]

    @query
    def info(self) -> dict:
        self._require()
        return {
            "id": self.id,
            "status": self.status,
            "organizer": self.organizer,
            "linked_route": None,
            **self.config,
            "athletes": len(self.athletes),
            "transitions": self.transitions,
            "corrections": [{**c, "private": c["participant"] in self.private} for c in self.corrections],
            "totals": self.created_board.totals() if self.board is not None else {},
        }

    @query
    def lifecycle(self) -> str:
        """Where the race stands (its status): what a listener to its notices that starts late asks once."""
        self._require()
        assert self.status is not None
        return self.status

    @query
    def device_map(self) -> dict[str, int]:
        return self.devices

    @query
    def view(self, n: int = 100, known: int = 0) -> dict:
        """What spectators see, fetched by each API replica once a tick: every category's top
        ``n``, the whole order as packed arrays (for "around me" and rank lookups), and the
        athletes who joined since the caller's ``known`` count."""
        self._require()
        board = self.created_board
        boards = {"": board.leaderboard(n)}
        for code, name in enumerate(self.config["categories"]):
            boards[name] = board.leaderboard(n, category=code)
        order = board.rank().astype(np.uint32)
        distances = board.distances(order)
        return {
            "status": self.status,
            "organizer": self.organizer,
            "at": self.now,
            "roster": [[a["user_id"], a["name"], a["category"]] for a in self.athletes[known:]],
            "boards": boards,
            "order": order.tobytes(),
            "distance": np.asarray(distances, np.float32).tobytes(),
            "states": board.states(order).tobytes(),
            "totals": board.totals(),
            "signal_lost": sorted(self.signal_lost),
            "private": sorted(self.private),
        }

    @query
    def results(self) -> list[dict]:
        self._require()
        rows = self.created_board.results()
        for row in rows:
            athlete = self.athletes[row["participant"]]
            row.update(
                user_id=athlete["user_id"],
                name=athlete["name"],
                category=athlete["category"],
                private=row["participant"] in self.private,
            )
        return rows

    @query
    def flags(self) -> list[dict]:
        self._require()
        flags = self.created_board.flags()
        for flag in flags:
            athlete = self.athletes[flag["participant"]]
            flag.update(user_id=athlete["user_id"], name=athlete["name"])
        return flags


def _version(record: dict) -> tuple[int, int]:
    """How far a settled race's record has come: its transitions and corrections so far."""
    info = record["info"]
    return len(info.get("transitions", ())), len(info.get("corrections", ()))


class RaceRef(Entity):
    """A race's entry on the shared hosts: proof that it exists before anyone wakes its dedicated
    host and, once the race is settled (final or cancelled), its record.

    A race lives in a Ray actor of its own; asking an unknown id would start one. The
    API asks this small entity first, so a probe of random ids costs nothing. The record
    holds what readers see of a settled race (the answers of its ``READS``, taken when it
    settled and again after every later change), so reading it never starts the race's host,
    which stops once the race is settled and idle.
    """

    kind = "race_ref"
    READS = ("info", "results", "view", "flags", "device_map")

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.organizer: str | None = None
        self.status: str | None = None  # final or cancelled, once settled
        self.record: dict | None = None  # the answers of READS, by name
        self.privacy_changes: dict[str, bool] = {}  # user id → private, made after settling

    @update
    def register(self, organizer: str) -> None:
        if self.organizer is not None:
            raise Rejected("this race already exists")
        self.organizer = organizer

    @query
    def exists(self) -> bool:
        return self.organizer is not None

    @query
    def state(self) -> dict:
        return {"exists": self.organizer is not None, "status": self.status}

    @update
    def settle(self, record: dict) -> None:
        """Keep the settled race's record (its answers to READS); replaces the one before."""
        if self.organizer is None:
            raise NotFound("no such race")
        if set(record) != set(self.READS) or record["info"].get("status") not in SETTLED:
            raise Rejected("a race's record holds the answers of a final or cancelled race to " + ", ".join(self.READS))
        if self.record is not None and _version(record) < _version(self.record):
            return  # an older record taken by a slower replica
        self.status = record["info"]["status"]
        self.record = record
        for user_id, private in self.privacy_changes.items():
            self._show(user_id, private)

    @update
    def privacy(self, user_id: str, private: bool) -> None:
        """An athlete of a settled race changed their privacy: the record shows it, the race's host stays asleep."""
        self._settled()
        self.privacy_changes[user_id] = private
        self._show(user_id, private)

    def _show(self, user_id: str, private: bool) -> None:
        record = self.record
        assert record is not None, "a settled race keeps its record"
        view = record["view"]
        index = next((i for i, athlete in enumerate(view["roster"]) if athlete[0] == user_id), None)
        if index is None:
            return
        hidden = set(view.get("private", ()))
        if private:
            hidden.add(index)
        else:
            hidden.discard(index)
        view["private"] = sorted(hidden)
        for row in (*record["results"], *record["info"].get("corrections", ())):
            if row["user_id"] == user_id:
                row["private"] = private

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """As the race itself does (``Race.erase_user``): the record's entry of the athlete becomes the
        stand-in, a "Deleted athlete", their device bindings go."""
        self.privacy_changes.pop(user_id, None)
        record = self.record
        if record is not None:
            roster = record["view"]["roster"]
            index = next((i for i, athlete in enumerate(roster) if athlete[0] == user_id), None)
            if index is not None:
                roster[index] = [stand_in, ERASED_NAME, *roster[index][2:]]
                record["device_map"] = {d: i for d, i in record["device_map"].items() if i != index}
            for row in (*record["results"], *record["flags"]):
                if row.get("user_id") == user_id:
                    row.update(user_id=stand_in, name=ERASED_NAME)
        return pseudonymise(self, user_id, stand_in)

    def _settled(self) -> dict:
        if self.record is None:
            raise Rejected("this race is not settled: ask the race itself")
        return self.record

    @query
    def info(self) -> dict:
        return self._settled()["info"]

    @query
    def results(self) -> list[dict]:
        return self._settled()["results"]

    @query
    def flags(self) -> list[dict]:
        return self._settled()["flags"]

    @query
    def device_map(self) -> dict[str, int]:
        return self._settled()["device_map"]

    @query
    def view(self, n: int = 100, known: int = 0) -> dict:
        view = self._settled()["view"]
        boards = {name: {**board, "entries": board["entries"][:n]} for name, board in view["boards"].items()}
        return {**view, "roster": view["roster"][known:], "boards": boards}


class RaceEntries(Entity):
    """The races one athlete joined, addressed by the athlete's account id: who to tell of a privacy change."""

    kind = "race_entries"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.races: dict[str, float] = {}  # race id → when the athlete joined

    @update
    def add(self, race_id: str) -> None:
        self.races.setdefault(race_id, self.now)

    @query
    def race_ids(self) -> list[str]:
        return list(self.races)


class RaceIndex(Entity):
    """The most recent races, newest first, for the pages' lists: one entity (``all``), bounded.

    A race's status here is as of its organizer's last action through the API; the race
    itself is the authority (a timer may have started or ended it since).
    """

    kind = "race_index"
    keep = 500

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.races: list[dict] = []

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """An organizer's races stay listed, organized by the stand-in."""
        return pseudonymise(self, user_id, stand_in)

    @update
    def add(self, race_id: str, name: str, organizer: str, status: str) -> None:
        entry = {"id": race_id, "name": name, "organizer": organizer, "status": status, "at": self.now}
        self.races = [entry, *(r for r in self.races if r["id"] != race_id)][: self.keep]

    @update
    def note(self, race_id: str, status: str, name: str | None = None) -> None:
        for race in self.races:
            if race["id"] == race_id:
                race["status"] = status
                if name:
                    race["name"] = name

    @query
    def recent(self, organizer: str | None = None, limit: int = 50) -> list[dict]:
        """Newest first; drafts only for their organizer (``organizer``: only theirs)."""
        chosen = [r for r in self.races if (r["organizer"] == organizer if organizer else r["status"] != "draft")]
        return chosen[:limit]
