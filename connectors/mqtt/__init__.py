"""The MQTT gateway of live races: device telemetry from Mosquitto into race entities.

Topic scheme v1 (``arena/v1/devices/{device_id}/...``):

- ``telemetry`` (device → Arena, QoS 1): msgpack or JSON, ``{"race": id, "samples": [...]}``
  or one sample map with ``"race"``;
- ``status`` (device → Arena): ``{"state": "online" | "offline"}``, the device's retained
  last will being ``offline``;
- ``downlink`` (Arena → device): why a message was dropped, and the race's notices: a
  countdown each second of the last ten before ``start_at``, the start, the finish.

A QoS 1 message is acknowledged only once the race has journaled its batch: the hub
runs with manual acks and a persistent session, so messages it has not acknowledged
are redelivered when it (or another hub of the shared subscription) reconnects. A
message that can never succeed (malformed, unknown device, refused by the race) is
acknowledged anyway, counted in ``Hub.dropped`` and explained on the downlink topic.

A device's status reaches its race (``Race.signal``), so spectators see who lost
signal. The hub asks races through ``RaceClient``, as the API does: a settled race is
read from its record and refuses samples, so no device wakes its host.

The rooms: ``codec`` and ``transport`` (the hub's MQTT 3.1.1 client, an asyncio protocol),
``uplink`` (topics and payloads, parsed into the telemetry contract's fields), ``routes``
(the device → race route cache), ``batching`` (per-race batches and their acks), ``notices``
(what races tell, relayed to their devices), ``hub`` (the wiring).
"""

from connectors.mqtt.hub import SHARE_GROUP, Hub, OnStatus, Route
from connectors.mqtt.uplink import MAX_PAYLOAD

__all__ = ["MAX_PAYLOAD", "SHARE_GROUP", "Hub", "OnStatus", "Route"]
