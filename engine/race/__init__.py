"""The rules of a live race: scoring, ranking, fair play, on columnar per-athlete state.

Why here: ``shared/DESIGN.md`` puts the pure domain rules (scoring, leaderboards, fair
play, gamification, load) in ``engine/`` beside the runtime, and the entities that use
them in ``actors/``. The race *entity* (its lifecycle, field, devices and messages) is
``actors/race.py``; this package is what it computes with. It imports nothing of the
runtime (host, routing, timers) and nothing else of Arena but ``engine.telemetry``, the
sample format; numpy and numba are its only dependencies.

Modules, in the order a sample meets them:

- ``board``: ``RaceBoard``, one race's field and columns; its methods are the public API.
- ``columns``: the per-athlete column layout, athlete statuses and sexes.
- ``delivery``: duplicates, late and too-old samples (the anti-replay window), clock skew.
- ``scoring``: each race kind (distance, course, time, collective): lines, splits, finish.
- ``profiles``: each sport's fair-play thresholds, with their sources; how far a race may tighten them.
- ``fair_play``: the rules, compiled (numba), and their per-athlete state.
- ``review``: raised flags and the organizer's decisions.
- ``ranking``: the order of the field and the tie rule.
- ``views``: leaderboards, totals and results as plain values.
- ``snapshot``: the board as msgpack-friendly state, and the upgrades of older schemas.
"""

from __future__ import annotations

from engine.race.board import RaceBoard, Which, warm_up
from engine.race.columns import ATHLETE_STATUSES, SEXES
from engine.race.fair_play import RULES, SEVERITY
from engine.race.profiles import PROFILES, SPORTS, TIGHTEN, SportProfile, tightened
from engine.race.scoring import MAX_CHECKPOINTS, RACE_KINDS
from engine.race.views import STATES

__all__ = [
    "ATHLETE_STATUSES",
    "MAX_CHECKPOINTS",
    "PROFILES",
    "RACE_KINDS",
    "RULES",
    "SEVERITY",
    "SEXES",
    "SPORTS",
    "STATES",
    "TIGHTEN",
    "RaceBoard",
    "SportProfile",
    "Which",
    "tightened",
    "warm_up",
]
