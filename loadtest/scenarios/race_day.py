"""Race day: the crowd joins a live rolling-start race while spectators watch it, athletes
use the rest of the API and the watches of athletes already racing stream telemetry over
MQTT, all at once. Weights: 1 athlete joining for every 4 spectators and 1 athlete
browsing; on top of those, one ``MqttDevice`` user for each seeded device (``--devices``).
Run with ``python -m loadtest.scenarios race-day``.
"""

from __future__ import annotations

import json
import os

from loadtest.scenarios.athletes import Athlete
from loadtest.scenarios.join_surge import JoiningAthlete
from loadtest.scenarios.spectators import Spectator

JoiningAthlete.weight = 1
Spectator.weight = 4
Athlete.weight = 1

__all__ = ["Athlete", "JoiningAthlete", "Spectator"]

if os.environ.get("ARENA_DEVICES"):  # the seeded devices, one user each, whatever the weights
    from loadtest.device_swarm import MqttDevice
    from loadtest.scenarios import final_counts  # noqa: F401 - writes locust's final counts

    with open(os.environ["ARENA_DEVICES"]) as _file:
        MqttDevice.fixed_count = len(json.load(_file)["devices"])
    __all__ += ["MqttDevice"]
