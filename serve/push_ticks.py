"""The tick relay: each race watched once for every push process of the cluster.

A push process that asked a race for its view each tick, as an API replica's spectator cache does,
cost the race's host one ``Race.view`` per process per tick, and a view is not cheap: 74 ms of the
host's CPU at 50,000 athletes (docs/push.md). The relay, one named Ray actor per namespace, keeps
the spectator cache (``serve.spectators``: one ``Race.view`` a tick per watched race) and answers
each push process's long poll for a race's next tick from it: the race's host is asked once a tick
whatever the number of push processes, and every process shows the same ticks (the same event ids,
so a stream resumes on another process without a gap).

A tick travels without the whole order (``order``, ``distance``, ``states``): a push process shows
boards alone. A relay that restarts numbers its ticks from 1 again under a new epoch; a poll of an
older epoch gets the current tick at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import ray

from engine.errors import EngineError, HostUnavailable, error_from_wire
from serve.settings import Settings
from serve.spectators import RaceView, Spectators

__all__ = ["RELAY", "TickFeed", "start_relay"]

log = logging.getLogger(__name__)

RELAY = "arena-push-ticks"
WAIT_S = 10.0  # a poll's longest wait for the next tick; then it answers host_unavailable and is asked again


def _tick(view: RaceView, known: int) -> dict:
    """``view`` as ``Race.view`` answers it, with the athletes after ``known`` and without the whole order."""
    roster = zip(view.user_ids[known:], view.names[known:], view.categories[known:], strict=False)
    return {
        "status": view.status,
        "organizer": view.organizer,
        "at": view.at,
        "roster": [list(athlete) for athlete in roster],
        "boards": view.boards,
        "order": b"",
        "distance": b"",
        "states": b"",
        "totals": view.totals,
        "signal_lost": sorted(view.signal_lost),
        "private": sorted(view.private),
    }


class _Relay:
    """The Ray actor: one spectator cache for every push process."""

    def __init__(self, settings: Settings) -> None:
        from actors.race_client import RaceClient
        from serve.context import connect

        races = RaceClient(connect(settings), host_idle=settings.race_host_idle)
        self._spectators = Spectators(races.ref, tick=settings.spectator_tick)
        self._wait = max(WAIT_S, 3 * settings.spectator_tick)
        self._epoch = os.urandom(8).hex()

    async def next(self, race_id: str, epoch: str | None, after: int, known: int) -> tuple[str, int, dict] | list:
        """The race's latest tick if it is not tick ``after`` (of ``epoch``), else the next one, as
        ``(epoch, number, tick)``; an error as ``EngineError.to_wire``. A watch of a race that ended (no
        poll for a while) and started again numbers from 1 again: a caller's ``after`` above the latest
        number is from the old watch, and gets the latest at once."""
        if epoch != self._epoch:
            after = 0
        try:
            async with asyncio.timeout(self._wait):
                async with contextlib.aclosing(self._spectators.updates(race_id)) as views:
                    async for view in views:
                        if view.version != after:
                            return self._epoch, view.version, _tick(view, known)
        except TimeoutError:
            return HostUnavailable(f"no tick of race {race_id} in {self._wait:g} s").to_wire()
        except EngineError as error:
            return error.to_wire()
        raise AssertionError("a race's updates never end")

    def refreshes(self) -> int:
        """How many views the relay asked races for (one a tick per watched race)."""
        return self._spectators.refreshes


_RelayActor = ray.remote(_Relay)


def start_relay(settings: Settings) -> Any:
    """The relay's handle, started if it does not run (every push process may call it; the first one's settings hold)."""
    return _RelayActor.options(
        name=RELAY,
        namespace=settings.namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,  # reads only: safe to ask a restarted relay again
        num_cpus=0,
    ).remote(settings)


class TickFeed:
    """A push process's end of the relay: the next tick of a race (``serve.spectators.Follow``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._relay: Any = None
        self._seen: dict[str, tuple[str | None, int]] = {}  # race id -> (epoch, number) of the last tick

    def start(self) -> None:
        """Start the relay now, not on the first stream."""
        if self._relay is None:
            self._relay = start_relay(self._settings)

    async def __call__(self, race_id: str, known: int) -> dict:
        self.start()
        epoch, after = self._seen.get(race_id, (None, 0))
        try:
            answer = await self._relay.next.remote(race_id, epoch, after, known)
        except ray.exceptions.RayError as failure:  # the relay died: Ray restarts it, and the watch asks again
            log.warning("push: the tick relay did not answer for race %s: %s", race_id, failure)
            raise HostUnavailable("the tick relay is restarting") from None
        if isinstance(answer, list):
            error = error_from_wire(answer)
            if not error.retryable:  # the race is gone: forget it
                self._seen.pop(race_id, None)
            raise error
        epoch, number, tick = answer
        self._seen[race_id] = (epoch, number)
        return tick
