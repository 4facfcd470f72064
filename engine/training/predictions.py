"""Race-time predictions from an athlete's own best efforts, with an uncertainty band.

With best efforts at two or more distances, the athlete's own exponent is fitted:
``T2 = T1 × (D2 / D1)^k`` is ``ln T = a + k ln D``, a least-squares line in log space; the band
is the line's 80 % prediction interval (Student's t), never narrower than ±2 %. With one distance
only, Riegel's exponent 1.06 (Riegel 1981, *Athletic records and human endurance*, American
Scientist 69) carries the nearest effort, with a band that widens with the distance bridged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from engine.training.load import EFFORT_METRES

__all__ = ["RACES", "RIEGEL", "predict"]

RIEGEL = 1.06
RACES = {"5k": 5_000.0, "10k": 10_000.0, "half": 21_097.5, "marathon": 42_195.0}
_MIN_SPREAD = 0.02  # ±2 %: no fit of a handful of efforts is surer than a race day's weather
_K_RANGE = (1.0, 1.3)  # a fitted exponent outside this is noise: 1.0 is no fade at all
# Two-sided 80 % Student's t quantiles by degrees of freedom (3 and more: the last one holds roughly).
_T80 = {1: 3.078, 2: 1.886, 3: 1.638, 4: 1.533, 5: 1.476}


def _riegel_spread(ratio: float) -> float:
    """The band of a Riegel prediction: ±5 %, and 3 % more per factor e of distance bridged."""
    return 0.05 + 0.03 * abs(math.log(ratio))


def predict(efforts: Mapping[str, float]) -> dict:
    """Predicted times for 5k, 10k, half and marathon from best efforts (distance key -> seconds)."""
    points = sorted((EFFORT_METRES[k], float(s)) for k, s in efforts.items() if k in EFFORT_METRES and s > 0)
    if not points:
        return {"model": None, "exponent": None, "efforts": 0, "races": []}
    races = []
    if len(points) >= 2:
        x = np.log([d for d, _ in points])
        y = np.log([t for _, t in points])
        k, a = (float(v) for v in np.polyfit(x, y, 1))
        n = len(points)
        if _K_RANGE[0] <= k <= _K_RANGE[1]:
            residual = y - (a + k * x)
            s = math.sqrt(float(residual @ residual) / (n - 2)) if n > 2 else 0.0
            sxx = float(((x - x.mean()) ** 2).sum())
            for name, metres in RACES.items():
                x0 = math.log(metres)
                spread = _T80.get(n - 2, 1.3) * s * math.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / sxx) if n > 2 else 0.0
                spread = max(_MIN_SPREAD, spread, _MIN_SPREAD * (1 + abs(x0 - x.mean())))
                races.append(_race(name, math.exp(a + k * x0), spread))
            return {"model": "fitted", "exponent": k, "efforts": n, "races": races}
    for name, metres in RACES.items():
        known, seconds = min(points, key=lambda p: abs(math.log(p[0] / metres)))
        races.append(_race(name, seconds * (metres / known) ** RIEGEL, _riegel_spread(metres / known)))
    return {"model": "riegel", "exponent": RIEGEL, "efforts": len(points), "races": races}


def _race(name: str, seconds: float, spread: float) -> dict:
    return {
        "race": name,
        "distance_m": RACES[name],
        "seconds": seconds,
        "low_s": seconds * math.exp(-spread),
        "high_s": seconds * math.exp(spread),
    }
