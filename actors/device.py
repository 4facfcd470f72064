"""An athlete's sensor or phone that streams telemetry over MQTT, and the list of an owner's devices.

The MQTT password never reaches the entity: the API generates it, hands it out
once and keeps only its sha256 here (Mosquitto keeps its own hash in its
password file). The MQTT hub asks ``route`` to learn whose samples a device
sends and to which race.

The device is the one owner of its binding: only its owner binds it, to their own
entry (``athlete``) in one race at a time; the race keeps a copy for status notices.
"""

from __future__ import annotations

from actors.erasing import pseudonymise
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected

__all__ = ["Device", "DeviceOwner"]


class Device(Entity):
    kind = "device"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.registered = False
        self.owner = ""
        self.name = ""
        self.model = ""
        self.secret_hash = ""
        self.created_at = 0.0
        self.revoked_at: float | None = None
        self.race_id: str | None = None
        self.athlete: str | None = None  # whose entry in ``race_id`` the samples count for

    def _require(self) -> None:
        if not self.registered:
            raise NotFound("no such device")

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """The person's device goes whole, its MQTT credential (``secret_hash``) with it: the broker
        refuses an id it does not know. Another's device that merely mentions them (a name) keeps the rest."""
        if user_id in (self.owner, self.athlete) or user_id in self.id:
            return True
        return pseudonymise(self, user_id, stand_in)

    def _owned_by(self, by: str) -> None:
        self._require()
        if by != self.owner:
            raise Forbidden("only the device's owner may do this")

    @update
    def register(self, owner: str, name: str, model: str, secret_hash: str) -> dict:
        if self.registered:
            raise Rejected("this device already exists")
        self.registered = True
        self.owner = owner
        self.name = name
        self.model = model
        self.secret_hash = secret_hash
        self.created_at = self.now
        return self.info()

    @update
    def revoke(self, by: str) -> dict:
        self._owned_by(by)
        if self.revoked_at is None:
            self.revoked_at = self.now
            self.race_id = self.athlete = None
        return self.info()

    @update
    def bind(self, by: str, race_id: str) -> dict:
        """Bind to the owner's entry in ``race_id``, moving it from any other race (``moved_from``)."""
        self._owned_by(by)
        if self.revoked_at is not None:
            raise Rejected("this device was revoked")
        before = self.race_id
        self.race_id, self.athlete = race_id, by
        return {**self.info(), "moved_from": before if before not in (None, race_id) else None}

    @update
    def unbind(self, by: str) -> dict:
        self._owned_by(by)
        self.race_id = self.athlete = None
        return self.info()

    @query
    def info(self) -> dict:
        self._require()
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "model": self.model,
            "created_at": self.created_at,
            "revoked": self.revoked_at is not None,
            "revoked_at": self.revoked_at,
            "race_id": self.race_id,
            "athlete": self.athlete,
        }

    @query
    def route(self) -> dict:
        self._require()
        return {"owner": self.owner, "race_id": self.race_id, "revoked": self.revoked_at is not None}


class DeviceOwner(Entity):
    """The devices one athlete registered, addressed by the athlete's account id."""

    kind = "device_owner"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.devices: dict[str, float] = {}  # device id → when it was registered

    @update
    def add(self, device_id: str) -> None:
        self.devices.setdefault(device_id, self.now)

    @query
    def device_ids(self) -> list[str]:
        return sorted(self.devices, key=lambda d: (self.devices[d], d))
