"""The board's snapshot codec: the whole board as msgpack-friendly values (arrays as raw bytes).

Schema 4 is written. Older snapshots are upgraded as they are read:

- schema 1 was written before fair play kept its own columns: the new ones start afresh
  (their windows fill again within minutes), the old power and heart-rate averages go;
- schema 2 kept the heart-rate ring newest first; it is kept by seq since;
- schemas 1-3 were written before the clock rule knew how long ago a device's silence ended
  (``clk_since``): it starts as long ago.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.race.delivery import COUNTS
from engine.race.fair_play import columns as fair_play_columns

if TYPE_CHECKING:
    from engine.race.board import RaceBoard

__all__ = ["SCHEMA", "restore", "settings", "to_state"]

SCHEMA = 4
_ADDED_4 = {"clk_since"}  # fair-play columns schema 4 added: they start afresh in older snapshots
_LEGACY = {  # fair-play columns of schema-1 snapshots that today's rules no longer keep
    "hr_n", "hr_mean", "hr_var", "hr_power", "power_5min", "power_5min_w", "power_20min", "power_20min_w",
}  # fmt: skip
_MISMATCH = "race board snapshot: its columns do not match this version of the board"


def to_state(board: RaceBoard) -> dict:
    """The whole board as msgpack-friendly values (arrays as raw bytes)."""
    n = board.size
    return {
        "schema": SCHEMA,
        "sport": board.sport,
        "fair_play": dict(board.fair_play),
        "kind": board.kind,
        "target_m": board.target_m,
        "duration_s": board.duration_s,
        "checkpoints_m": list(board.checkpoints_m),
        "start_mode": board.start_mode,
        "start_window_s": board.start_window_s,
        "capacity": board.capacity,
        "size": n,
        "opened": board._opened,
        "ended": None if board._ended == math.inf else board._ended,
        "total": board._total,
        "reached_t": board._reached_t,
        "counts": dict(board.counts),
        "flags": board.flags(),
        "columns": {
            name: {"dtype": column.dtype.str, "shape": list(column[:n].shape), "data": column[:n].tobytes()}
            for name, column in board._col.items()
        },
    }


def settings(state: dict) -> dict[str, Any]:
    """The arguments of the board a snapshot was taken of (its columns are restored into it)."""
    if not isinstance(state, dict) or state.get("schema") not in (1, 2, 3, SCHEMA):
        raise ValueError("not a race board snapshot of schema 1 to 4")
    return {
        "capacity": state["capacity"],
        "sport": state["sport"],
        "kind": state["kind"],
        "target_m": state["target_m"],
        "duration_s": state["duration_s"],
        "checkpoints_m": state["checkpoints_m"],
        "start_mode": state["start_mode"],
        "start_window_s": state["start_window_s"],
        "fair_play": state.get("fair_play"),
    }


def restore(board: RaceBoard, state: dict) -> None:
    """Fill a fresh board made from ``settings(state)`` with the snapshot's columns and totals."""
    n = state["size"]
    saved_columns = state["columns"]
    if state["schema"] == 1:
        saved_columns = {k: v for k, v in saved_columns.items() if k not in _LEGACY and k in board._col}
        fresh = set(board._col) - set(saved_columns)
        if not fresh <= {name for name, *_ in fair_play_columns(board.profile)} | {"sex"}:
            raise ValueError(_MISMATCH)
    elif set(saved_columns) != set(board._col) - (_ADDED_4 if state["schema"] < 4 else set()):
        raise ValueError(_MISMATCH)
    if not 0 <= n <= board.capacity:
        raise ValueError(_MISMATCH)
    for name, saved in saved_columns.items():
        column = board._col[name]
        if np.dtype(saved["dtype"]) != column.dtype or tuple(saved["shape"]) != (n, *column.shape[1:]):
            raise ValueError(f"race board snapshot: column {name} has the wrong type or shape")
        column[:n] = np.frombuffer(saved["data"], column.dtype).reshape(saved["shape"])
    board._size = n
    board._opened = state["opened"]
    board._ended = math.inf if state["ended"] is None else state["ended"]
    board._total = state["total"]
    board._reached_t = state["reached_t"]
    board.counts = {key: state["counts"].get(key, 0) for key in COUNTS}  # older boards also counted "invalid"
    board._flags = [{**f, "evidence": dict(f["evidence"])} for f in state["flags"]]
    if state["schema"] == 1:
        # kin_seq and the fair-play clock resume from the delivery state
        board._col["kin_seq"][:n] = board._col["last_seq"][:n]
    if state["schema"] == 2:
        # the heart-rate ring was kept newest first (slot k: k seqs before kin_seq); now by seq
        ring, newest = board._col["hr_ring"][:n], board._col["kin_seq"][:n].astype(np.int64)
        slots = (newest[:, None] - np.arange(ring.shape[1])[None, :]) % ring.shape[1]
        board._col["hr_ring"][np.arange(n)[:, None], slots] = ring.copy()
