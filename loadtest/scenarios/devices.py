"""Devices: each user is one watch seeded in a live race, streaming a sample a second over MQTT.

The watch's athlete joined the race and registered and bound the watch before the run
(``loadtest.crowd --devices``); the user (``loadtest.device_swarm.MqttDevice``, one paho
client each) signs in to the broker with the watch's own credentials and publishes at QoS 1;
a PUBACK means the race journaled the sample. Run with ``python -m loadtest.scenarios devices``.
"""

from __future__ import annotations

from loadtest.device_swarm import MqttDevice
from loadtest.scenarios import final_counts  # noqa: F401 - writes locust's final counts

__all__ = ["MqttDevice"]
