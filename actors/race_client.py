"""How the API and the MQTT hub talk to races without waking a settled race's host.

A race lives on a host of its own while it needs one; once it is settled (final or
cancelled) and idle, that host stops. Asking the race anything would start it again,
so every ask goes through ``RaceClient``: it checks the race's ``RaceRef`` first (an
unknown id never starts a host), answers a settled race's reads from the record there,
and refuses its athletes' and devices' writes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors.race import SETTLED, Race, RaceRef
from engine.errors import NotFound, Rejected
from engine.refs import Ref

__all__ = ["LIVE_WRITES", "RaceClient"]

# What athletes and devices send a race: its hot path, and refused without its host once it is settled.
LIVE_WRITES = frozenset({"ingest", "join", "join_many", "withdraw", "bind_device", "signal"})
_FORGOTTEN = frozenset({"unbind_device"})  # a settled race routes no device: nothing to forget
_KNOWN = 10_000  # races whose state is remembered; settled for good, so forgetting costs one ask


class RaceClient:
    def __init__(self, cluster: Any, *, host_idle: float = 300.0) -> None:
        """``cluster``: the engine's (``engine.cluster.Cluster``); ``host_idle``: how long a settled
        race's host stays up idle (``ARENA_RACE_HOST_IDLE``)."""
        if host_idle <= 0:
            raise ValueError(f"host_idle is a positive number of seconds, got {host_idle}")
        self._cluster = cluster
        # Reads and the hot path trust a "not settled" checked less than this long ago: a quarter
        # of the time a settled race's host stays up, at most 2 s, so a race settled through
        # another process is read from its record before its host stops.
        self._recheck_after = min(2.0, host_idle / 4)
        self._known: dict[str, tuple[str | None, float]] = {}  # id → (settled status, checked at)

    async def ask(self, race_id: str, message_type: str, body: dict | None = None) -> Any:
        """Ask a race, after making sure it exists: an unknown id must not start a dedicated host.

        A settled race is read from its record (``RaceRef``), so no read starts its host; a
        change to it (an organizer's correction) goes to the race, starting its host if it had
        stopped, and the record is taken again.
        """
        if message_type in LIVE_WRITES:
            await self.live(race_id)
            return await self._cluster.ask("race", race_id, message_type, body)
        settled = await self.settled(race_id, trust_recent=message_type in RaceRef.READS)
        if settled is not None:
            if message_type in RaceRef.READS or message_type == "privacy":
                return await self._cluster.ask("race_ref", race_id, message_type, body)
            if message_type in _FORGOTTEN:
                return None
        answer = await self._cluster.ask("race", race_id, message_type, body)
        if settled is not None or message_type in ("finalize", "cancel"):
            await self.settle(race_id)
        elif message_type in ("info", "view") and answer.get("status") in SETTLED:  # settled by another process
            await self.settle(race_id)
        return answer

    def ref(self, race_id: str) -> Ref[Race]:
        """The race, asked by its handlers through ``ask``."""
        return Ref(self._send, Race, race_id)

    async def _send(self, kind: str, race_id: str, message_type: str, body: Any) -> Any:
        return await self.ask(race_id, message_type, body)

    async def live(self, race_id: str) -> None:
        """Raise unless the race takes its athletes' and devices' writes: NotFound, or Rejected once settled."""
        settled = await self.settled(race_id)
        if settled is not None:
            raise Rejected(f"the race is {settled}: only its organizer's corrections change it now")

    async def settled(self, race_id: str, *, trust_recent: bool = True) -> str | None:
        """The race's settled status (None while it is not settled); NotFound for an unknown id.

        Settled is for good; ``trust_recent``: a "not settled" checked a moment ago holds."""
        known = self._known.get(race_id)
        now = time.monotonic()
        if known is not None and (known[0] is not None or (trust_recent and now - known[1] < self._recheck_after)):
            return known[0]
        state = await Ref(self._cluster.ask, RaceRef, race_id).ask(RaceRef.state)
        if not state["exists"]:
            raise NotFound("no such race")
        self._remember(race_id, state["status"], now)
        return state["status"]

    async def settle(self, race_id: str) -> None:
        """Take a settled race's record again: its answers to every read, kept by its ``RaceRef``."""
        answers = await asyncio.gather(*(self._cluster.ask("race", race_id, read) for read in RaceRef.READS))
        record = dict(zip(RaceRef.READS, answers, strict=True))
        status = record["info"]["status"]
        if status in SETTLED:
            await Ref(self._cluster.ask, RaceRef, race_id).ask(RaceRef.settle, record=record)
            self._remember(race_id, status, time.monotonic())

    def _remember(self, race_id: str, status: str | None, at: float) -> None:
        if status is not None:  # settled: its host retires soon, and nothing here asks it again but a correction
            self._cluster.forget_host("race", race_id)
        self._known.pop(race_id, None)  # to the end: the oldest goes first
        self._known[race_id] = (status, at)
        if len(self._known) > _KNOWN:
            del self._known[next(iter(self._known))]
