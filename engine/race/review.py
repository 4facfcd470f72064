"""Fair-play flags and their review: what a rule raised, and what the organizer decided.

A rule raises one flag per athlete (its evidence, severity, the device time that made it
conclusive and the receive time) and makes the athlete provisional until reviewed. The
reviewer accepts (the flags are cleared and their rules don't raise again for this
athlete) or disqualifies; a disqualification may later be undone (``reinstate``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from engine.race.columns import ATHLETE_STATUSES, DSQ, FLAG_BIT
from engine.race.fair_play import SEVERITY
from engine.race.views import plain

if TYPE_CHECKING:
    from engine.race.board import RaceBoard

__all__ = ["flags", "raise_flag", "record", "reinstate", "review", "status"]


def raise_flag(
    board: RaceBoard,
    rule: str,
    p: np.ndarray,
    tripped: np.ndarray,
    t: np.ndarray,
    seq: np.ndarray,
    out: dict,
    **evidence: Any,
) -> None:
    """Flag ``rule`` for the athletes ``p[tripped]``: ``t`` is the device time that made it conclusive."""
    if not tripped.any():
        return
    bit = FLAG_BIT[rule]
    c = board._col
    hits = np.flatnonzero(tripped)
    hits = hits[((c["flags"][p[hits]] | c["cleared"][p[hits]]) & bit) == 0]
    if not len(hits):
        return
    c["flags"][p[hits]] |= bit
    for i in hits:
        facts = {k: plain(v[i] if isinstance(v, np.ndarray) else v) for k, v in evidence.items()}
        facts["seqs"] = [int(seq[i]), int(seq[i])]
        record(board, rule, int(p[i]), float(t[i]), facts)
    out["flagged"] += len(hits)


def record(board: RaceBoard, rule: str, participant: int, t: float, evidence: dict) -> None:
    """Keep a flag whose bit is already set: ``t`` is the device time that made it conclusive."""
    board._flags.append(
        {
            "participant": participant,
            "rule": rule,
            "t": t,
            "at": plain(board._now),
            "severity": SEVERITY[rule],
            "evidence": evidence,
            "decision": None,
        }
    )


def flags(board: RaceBoard, index: int | None = None) -> list[dict]:
    """Raised flags, oldest first, with the reviewer's decision once there is one."""
    chosen = [f for f in board._flags if index is None or f["participant"] == index]
    return [{**f, "evidence": dict(f["evidence"])} for f in chosen]


def review(board: RaceBoard, index: int, accept: bool) -> None:
    """Accept: the open flags are cleared and their rules don't raise again for this athlete. Reject: DSQ."""
    board._rows(index)
    c = board._col
    for flag in board._flags:
        if flag["participant"] == index and flag["decision"] is None:
            flag["decision"] = "accepted" if accept else "dsq"
    if accept:
        c["cleared"][index] |= c["flags"][index]
        c["flags"][index] = 0
    elif c["status"][index] != DSQ:
        if board.kind == "collective":
            board._total -= float(c["distance"][index])
        c["status"][index] = DSQ


def status(board: RaceBoard, index: int) -> str:
    """One athlete's status in ``ATHLETE_STATUSES``."""
    board._rows(index)
    return ATHLETE_STATUSES[int(board._col["status"][index])]


def reinstate(board: RaceBoard, index: int, status: str) -> None:
    """Undo a disqualification (a correction): the athlete is ``status`` again, their flags cleared."""
    board._rows(index)
    if status not in ATHLETE_STATUSES or status == "dsq":
        raise ValueError(f"a reinstated athlete is one of {', '.join(ATHLETE_STATUSES[:-1])}, not {status!r}")
    c = board._col
    if c["status"][index] != DSQ:
        raise ValueError("only a disqualified athlete can be reinstated")
    c["status"][index] = ATHLETE_STATUSES.index(status)
    c["cleared"][index] |= c["flags"][index]
    c["flags"][index] = 0
    if board.kind == "collective":
        board._total += float(c["distance"][index])
