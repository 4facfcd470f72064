"""Devices that stream telemetry over MQTT: register one (credentials shown once), list, revoke, bind to a race."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from actors.device import Device, DeviceOwner
from actors.race import Race
from connectors.mosquitto import PasswordFile, broker_of, device_topics, reload_brokers
from engine.errors import EngineError, Forbidden, NotFound, Rejected
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.problems import Problem
from serve.settings import Settings

__all__ = ["bind_device", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/devices", tags=["devices"])


class NewDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=120)]
    model: Annotated[str, Field(min_length=1, max_length=120)]


def _broker(settings: Settings, device_id: str) -> dict:
    """Where the device connects: its own broker among the shards (``broker_of``), without credentials."""
    brokers = settings.mqtt_url
    if not brokers:
        return {"host": None, "port": None}
    url = brokers[broker_of(device_id, len(brokers))]
    return {"host": url.host, "port": url.port}


async def _credentials(settings: Settings, change) -> None:
    """Apply ``change`` to Mosquitto's password file, then make every broker on this machine re-read it."""
    if settings.mqtt_password_file is None:
        return
    await asyncio.to_thread(change, PasswordFile(settings.mqtt_password_file))
    reload_brokers(settings.mqtt_pid_file)


async def _mine(arena: Arena, device_id: str, caller: Caller) -> dict:
    info = await arena.ref(Device, device_id).ask(Device.info)
    if info["owner"] != caller.id:
        raise NotFound("no such device")
    return info


@router.post("", status_code=201, summary="Register a device; its MQTT password is shown only in this answer")
async def register(body: NewDevice, caller: CallerDep, arena: ArenaDep) -> dict:
    device_id = new_id()
    password = secrets.token_urlsafe(24)
    message = {"owner": caller.id, **body.model_dump(), "secret_hash": hashlib.sha256(password.encode()).hexdigest()}
    info = await arena.ref(Device, device_id).ask(Device.register, **message)
    await arena.ref(DeviceOwner, caller.id).ask(DeviceOwner.add, device_id=device_id)
    await _credentials(arena.settings, lambda file: file.set(device_id, password))
    mqtt = {
        "username": device_id,
        "password": password,
        **_broker(arena.settings, device_id),
        "topics": device_topics(device_id),
    }
    return {**info, "mqtt": mqtt}


@router.get("", summary="My devices, revoked ones included")
async def mine(caller: CallerDep, arena: ArenaDep) -> list[dict]:
    device_ids = await arena.ref(DeviceOwner, caller.id).ask(DeviceOwner.device_ids)
    return list(await asyncio.gather(*(arena.ref(Device, d).ask(Device.info) for d in device_ids)))


@router.delete("/{device_id}", status_code=204, summary="Revoke one of my devices: it can no longer connect")
async def revoke(device_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    info = await _mine(arena, device_id, caller)
    await arena.ref(Device, device_id).ask(Device.revoke, by=caller.id)
    await _credentials(arena.settings, lambda file: file.remove(device_id))
    await _release(arena, info["race_id"], device_id)
    return Response(status_code=204)


async def bind_device(arena: Arena, caller: Caller, device_id: str, race_id: str) -> dict:
    """Bind one of the caller's own devices to the caller's entry in a race (both bind routes).

    The device entity owns the binding: an unknown id, or someone else's device, is 404;
    a revoked one 409. The race says whether the caller may bind there (in the race, not
    ended) and keeps a copy; a device bound to another race moves here, and that race
    forgets it. A copy the device then refuses is taken back. The answer's ``topics`` are the
    device's for this race: its telemetry on the race's lane.
    """
    if (await _mine(arena, device_id, caller))["revoked"]:
        raise Problem(409, "this device was revoked")
    participant = await arena.races.ref(race_id).ask(Race.bind_device, user_id=caller.id, device_id=device_id)
    try:
        device = await arena.ref(Device, device_id).ask(Device.bind, by=caller.id, race_id=race_id)
    except (Forbidden, NotFound, Rejected):  # revoked meanwhile: bound nowhere, so no race keeps it
        await _release(arena, race_id, device_id)
        raise
    await _release(arena, device.pop("moved_from"), device_id)
    # the race's lane: only the hubs of the lane hear it (the device-keyed topic still works)
    return {"device": device, "participant": participant, "topics": device_topics(device_id, race_id)}


async def _release(arena: Arena, race_id: str | None, device_id: str) -> None:
    """Tell a race the device no longer reports there; the device's own record already says so."""
    if race_id is None:
        return
    try:  # a settled race routes nothing: the race client leaves its host asleep
        await arena.races.ref(race_id).ask(Race.unbind_device, device_id=device_id)
    except EngineError as error:  # the device entity is the authority: a stale copy only affects notices
        log.warning("race %s kept device %s: %s", race_id, device_id, error)


@router.put("/{device_id}/race/{race_id}", summary="Send this device's telemetry to my entry in a race")
async def bind(device_id: EntityId, race_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await bind_device(arena, caller, device_id, race_id)


@router.delete("/{device_id}/race", summary="Stop routing this device's telemetry to a race")
async def unbind(device_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    info = await _mine(arena, device_id, caller)
    device = await arena.ref(Device, device_id).ask(Device.unbind, by=caller.id)
    await _release(arena, info["race_id"], device_id)
    return device
