"""Race day: the crowd joins a live rolling-start race while spectators watch it and
athletes use the rest of the API, all at once. Weights: 1 athlete joining for every
4 spectators and 1 athlete browsing. Run with ``python -m loadtest.scenarios race-day``.
"""

from __future__ import annotations

from loadtest.scenarios.athletes import Athlete
from loadtest.scenarios.join_surge import JoiningAthlete
from loadtest.scenarios.spectators import Spectator

JoiningAthlete.weight = 1
Spectator.weight = 4
Athlete.weight = 1

__all__ = ["Athlete", "JoiningAthlete", "Spectator"]
