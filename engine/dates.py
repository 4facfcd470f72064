"""The window of dates Arena takes from outside, so every date it keeps is one a calendar can show.

A recorded fact (a workout by hand, an imported file's timestamps) lies between
1900-01-01 and a day after now: a device's clock or time zone may run a little
ahead, never a century. A scheduled time (a race's start, its registration window)
lies before 2100-01-01 (and a race's start after 1970). Python's dates stop at years
1 and 9999, and analytics turn every start into a date: a workout dated at either end
broke them.
"""

from __future__ import annotations

import math
import numbers
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["EARLIEST", "LATEST_SCHEDULED", "AHEAD_S", "recorded"]

EARLIEST = -2_208_988_800.0  # 1900-01-01T00:00:00Z
LATEST_SCHEDULED = 4_102_444_800.0  # 2100-01-01T00:00:00Z
AHEAD_S = 86_400.0


def recorded(t: Any, what: str, now: float | None = None) -> float:
    """``t`` if it can date a recorded fact, else a ValueError that names ``what``."""
    latest = (time.time() if now is None else now) + AHEAD_S
    finite = isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t)
    if not finite or not EARLIEST <= t <= latest:
        raise ValueError(f"{what} must lie between 1900-01-01 and a day from now, not {_shown(t)}")
    return float(t)


def _shown(t: Any) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(t)[:40]
