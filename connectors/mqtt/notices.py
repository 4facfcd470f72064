"""Race notices to devices: what a race tells (its countdown, its start, its finish) relayed to its
devices' downlinks, by each hub to the devices of its own broker.

A race decides its notices itself, from its timers and its lifecycle, and publishes them
(``engine.notices``). The hub listens to each race it has seen a device of, from the first
such device on; once listening it asks the race once where it stands, so a device of a race
that ended before the hub listened still hears that it finished (a settled race answers from
its record, without waking its host). The race's devices are asked for at each notice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from actors.race import ENDED, Race
from actors.race_client import RaceClient
from connectors.mosquitto import broker_of
from engine.cluster import Cluster
from engine.errors import EngineError

__all__ = ["Notices"]

log = logging.getLogger(__name__)


class Notices:
    def __init__(
        self, cluster: Cluster, races: RaceClient, send: Callable[[str, dict], None], shard: tuple[int, int]
    ) -> None:
        self._cluster, self._races, self._send, self.shard = cluster, races, send, shard
        self._listeners: dict[str, asyncio.Task] = {}  # race id → its relay; kept once done: a race is heard once
        self.heard: set[str] = set()  # races whose notices reach this hub now (subscribed)

    def listen(self, race_id: str) -> None:
        if race_id in self._listeners:
            return
        task = asyncio.ensure_future(self._relay(race_id))
        task.add_done_callback(self._done)
        self._listeners[race_id] = task

    async def stop(self, timeout: float) -> None:
        running = [task for task in self._listeners.values() if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout)

    def _done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("race notices failed", exc_info=task.exception())

    async def _relay(self, race_id: str) -> None:
        finished = {"type": "finished", "race": race_id}
        try:
            async with self._cluster.notices(Race, race_id) as notices:
                self.heard.add(race_id)
                if await self._ended(race_id):
                    await self._tell(race_id, finished)
                    return
                async for notice in notices:
                    if notice.get("type") == "lagged":
                        continue
                    await self._tell(race_id, notice)
                    if notice == finished:
                        return
        except EngineError as error:
            log.info("stopped listening to race %s: %s", race_id, error)
        finally:
            self.heard.discard(race_id)

    async def _ended(self, race_id: str) -> bool:
        try:
            if await self._races.settled(race_id) is not None:
                return True
            return await self._cluster.ref(Race, race_id).ask(Race.lifecycle) in ENDED
        except EngineError as error:
            if not error.retryable:
                raise
            log.warning("race %s did not say where it stands (%s): its notices will", race_id, error)
            return False

    async def _tell(self, race_id: str, notice: dict) -> None:
        try:
            devices = await self._races.ref(race_id).ask(Race.device_map)
        except EngineError as error:
            log.warning("race %s: notice %s reached no device: %s", race_id, notice.get("type"), error)
            return
        index, brokers = self.shard
        for device_id in devices:
            if brokers == 1 or broker_of(device_id, brokers) == index:
                self._send(device_id, notice)
