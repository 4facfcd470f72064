"""A demo race for ``arena run --demo``: an organizer, a route and simulated athletes, live at once.

The organizer and one athlete you can sign in as are real accounts, made through the API;
their passwords are kept in ``DATA_DIR/demo.json`` so a restart finds them again. The
simulated field joins in one message and streams one telemetry batch a second straight
into the race (as the MQTT hub does), so the demo needs neither a broker nor hundreds of
password hashes. When everyone is home the race is ended, its cheater disqualified and its
results made final (published into the athletes' workouts), and the next one starts; a
stopping ``arena run`` does the same with the race under way, and a run that was killed
leaves it to the next start. Races are numbered on across runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from actors.account import Account
from actors.race import Race
from connectors.samples import Sample, pack_samples
from engine.errors import EngineError
from serve.context import Arena
from serve.demo_community import seed_community
from serve.settings import Settings

__all__ = ["Swarm", "DemoRace", "loop_route", "ORGANIZER_EMAIL", "RUNNER_EMAIL"]

log = logging.getLogger(__name__)

ORGANIZER_EMAIL = "organizer@demo.arena.dev"
RUNNER_EMAIL = "runner@demo.arena.dev"
_FIRST = ("Ada", "Bo", "Chen", "Dara", "Eli", "Femi", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lea", "Mo", "Nia", "Oto")
_LAST = ("Akers", "Berg", "Costa", "Diaz", "Eze", "Fox", "Gray", "Holm", "Ito", "Jung", "Kent", "Lund", "Moss")


def loop_route(lat: float = 48.8625, lon: float = 2.2495, length_m: float = 3000.0, points: int = 120) -> list:
    """A closed, slightly wobbly loop of about ``length_m`` around (lat, lon), as [lat, lon] points."""
    radius = length_m / (2 * math.pi * 1.1)
    route = []
    for i in range(points + 1):
        a = 2 * math.pi * i / points
        r = radius * (1 + 0.12 * math.sin(3 * a) + 0.05 * math.cos(7 * a))
        north, east = r * math.sin(a) * 0.7, r * math.cos(a)
        route.append([lat + north / 111_320, lon + east / (111_320 * math.cos(math.radians(lat)))])
    return route


@dataclass
class _Runner:
    user_id: str
    speed: float  # m/s, the athlete's own pace
    cheat: bool = False
    seq: int = 0
    distance: float = 0.0
    silent_until: float = 0.0  # a dropout: no samples until then


@dataclass
class Swarm:
    """Simulated athletes of a running race: each tick, every one's next sample (pace wobbles,
    heart rate drifts, some drop out for a while, cheaters go far too fast)."""

    user_ids: list[str]
    cheaters: int = 0
    dropouts: float = 0.0  # chance per athlete per tick of a 20 s dropout
    finish_m: float = math.inf  # athletes past the line stop sending
    seed: int = 7
    runners: list[_Runner] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._rng = rng
        self.runners = [
            _Runner(user, 15.0 if i < self.cheaters else rng.uniform(2.6, 4.6), cheat=i < self.cheaters)
            for i, user in enumerate(self.user_ids)
        ]

    def tick(self, now: float, dt: float = 1.0) -> dict[str, Sample]:
        """The samples of this tick, by athlete (the silent ones are missing)."""
        out = {}
        for runner in self.runners:
            if runner.distance >= self.finish_m:
                continue
            if now < runner.silent_until:
                runner.distance += runner.speed * dt  # still running, just not heard
                continue
            if self.dropouts and not runner.cheat and self._rng.random() < self.dropouts:
                runner.silent_until = now + 20
                continue
            speed = runner.speed * (1 + self._rng.uniform(-0.05, 0.05))
            runner.distance += speed * dt
            runner.seq += 1
            hr = 150 + int(runner.distance / 200) + self._rng.randint(-3, 3)
            out[runner.user_id] = Sample(seq=runner.seq, t=now, distance=runner.distance, speed=speed, hr=hr)
        return out


class DemoRace:
    """Keeps a demo race going on a running Arena at ``url``: create, fill, start, stream, end, again."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        athletes: int = 300,
        distance_m: float = 3000.0,
        announce=log.info,
    ) -> None:
        if athletes < 1:
            raise ValueError("a demo race needs at least one athlete")
        self.settings = settings
        self.url = url.rstrip("/")
        self.athletes = athletes
        self.distance_m = distance_m
        self.file = Path(settings.data_dir) / "demo.json"
        self.race_id: str | None = None
        self.announce = announce

    def _state(self) -> dict:
        try:
            return json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(state, indent=2))
        self.file.chmod(0o600)

    async def _account(self, http: httpx.AsyncClient, arena: Arena, state: dict, key: str, email: str, name: str):
        """Sign in as a demo account, registering it first if needed; returns (user id, password)."""
        password = state.get(key, {}).get("password") or secrets.token_urlsafe(12)
        answer = await http.post("/auth/login", json={"email": email, "password": password})
        if answer.status_code != 200:
            registered = await http.post("/accounts", json={"email": email, "password": password, "display_name": name})
            if registered.status_code == 409:
                raise RuntimeError(f"{email} exists with another password: delete {self.file.parent} to start afresh")
            registered.raise_for_status()
        me = (await http.get("/me", headers=await self._bearer(http, email, password))).json()
        state[key] = {"email": email, "password": password, "id": me["id"]}
        return me["id"], password

    @staticmethod
    async def _bearer(http: httpx.AsyncClient, email: str, password: str) -> dict:
        answer = await http.post("/auth/login", json={"email": email, "password": password})
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    async def run(self, stop: asyncio.Event) -> None:
        arena = Arena.build(self.settings)
        async with httpx.AsyncClient(base_url=f"{self.url}/api/v1", timeout=60) as http:
            state = self._state()
            organizer_id, organizer_password = await self._account(
                http, arena, state, "organizer", ORGANIZER_EMAIL, "Demo Organizer"
            )
            runner_id, runner_password = await self._account(http, arena, state, "runner", RUNNER_EMAIL, "You (demo)")
            roles = await arena.ref(Account, organizer_id).ask(Account.me)
            if "organizer" not in roles["roles"]:
                await arena.ref(Account, organizer_id).ask(Account.set_roles, roles=[*roles["roles"], "organizer"])
            self._save(state)
            self.announce(
                f"Demo accounts (passwords in {self.file}): organizer {ORGANIZER_EMAIL} / "
                f"{organizer_password}, athlete {RUNNER_EMAIL} / {runner_password}"
            )
            try:
                await seed_community(
                    http,
                    state,
                    await self._bearer(http, ORGANIZER_EMAIL, organizer_password),
                    await self._bearer(http, RUNNER_EMAIL, runner_password),
                    self.announce,
                )
            except httpx.HTTPError as error:
                log.warning("demo community: %s; the race goes on without it", error)
            self._save(state)
            await self._first_model(arena)
            if state.get("race"):  # left live by an `arena run` that was killed: results first
                await self._close(http, state, state["race"])
            while not stop.is_set():
                try:
                    await self._one_race(http, arena, state, runner_id, stop)
                except (httpx.HTTPError, EngineError) as error:
                    log.warning("demo race: %s; starting another in 5 s", error)
                    await _sleep(stop, 5)
        await arena.spectators.close()

    async def _first_model(self, arena: Arena) -> None:
        """Train a first recommendation model from the community just seeded (a Ray job over the lake),
        unless the registry has one: a newcomer then sees people, groups and challenges at once."""
        from engine.recommend import Registry
        from serve.recommender import registry_root, train_from_lake

        registry = registry_root(self.settings)
        if Registry(registry).current() is not None or not self.settings.lake:
            return
        await arena.drain()
        for _ in range(20):  # the relay's lake stream files the community's events a moment after
            try:
                made = await asyncio.to_thread(train_from_lake, self.settings.lake_root, registry)
            except LookupError:
                await asyncio.sleep(1)
                continue
            except Exception as error:  # the demo goes on without recommendations
                log.warning("demo model: %s", error)
                return
            self.announce(f"First recommendation model {made['version']} trained in {made['counts']['seconds']} s "
                          f"on {made['counts']['pairs']} interactions: /api/v1/me/recommendations/groups")  # fmt: skip
            return

    async def _close(self, http: httpx.AsyncClient, state: dict, race_id: str) -> None:
        """End the race as an organizer would (whoever is still out is DNF), disqualify the flagged
        (the demo's cheater) and finalize it: results go into the athletes' workouts and feeds."""
        headers = await self._bearer(http, state["organizer"]["email"], state["organizer"]["password"])
        info = await http.get(f"/races/{race_id}", headers=headers)
        status = info.json()["status"] if info.status_code == 200 else "gone"
        if status in ("draft", "open"):
            (await http.post(f"/races/{race_id}/actions/cancel", headers=headers)).raise_for_status()
        elif status in ("live", "finished"):
            if status == "live":
                (await http.post(f"/races/{race_id}/actions/end", headers=headers)).raise_for_status()
            flags = await http.get(f"/races/{race_id}/flags", headers=headers)
            flags.raise_for_status()
            for flag in flags.json():
                if flag["decision"] is None:
                    decided = await http.post(f"/races/{race_id}/flags/{flag['user_id']}/disqualify", headers=headers)
                    decided.raise_for_status()
            (await http.post(f"/races/{race_id}/actions/finalize", headers=headers)).raise_for_status()
            self.announce(f"Demo race final, results published: {self.url}/races/{race_id}")
        state["race"] = None
        self._save(state)

    async def _one_race(
        self, http: httpx.AsyncClient, arena: Arena, state: dict, runner_id: str, stop: asyncio.Event
    ) -> None:
        headers = await self._bearer(http, state["organizer"]["email"], state["organizer"]["password"])
        lap = state["races"] = state.get("races", 0) + 1  # numbered on from the last run's
        body = {
            "name": f"Demo {self.distance_m / 1000:g} km #{lap}",
            "sport": "run",
            "kind": "distance",
            "target_m": self.distance_m,
            "categories": ["women", "men"],
            "route": loop_route(length_m=self.distance_m),
        }
        created = await http.post("/races", json=body, headers=headers)
        created.raise_for_status()
        race_id = self.race_id = state["race"] = created.json()["id"]
        self._save(state)
        (await http.post(f"/races/{race_id}/actions/open", headers=headers)).raise_for_status()
        rng = random.Random(lap)
        field_ids = [f"demo{lap:04d}x{i:05d}" for i in range(self.athletes - 1)] + [runner_id]
        entries = [
            {
                "user_id": user,
                "name": "You (demo)" if user == runner_id else f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                "category": rng.choice(["women", "men"]),
                "health": user != runner_id,  # the simulated field's heart rates; the demo account gave no consent
            }
            for user in field_ids
        ]
        await arena.races.ref(race_id).ask(Race.join_many, athletes=entries)
        (await http.post(f"/races/{race_id}/actions/start", headers=headers)).raise_for_status()
        self.announce(f"Demo race live, {self.athletes} athletes: {self.url}/races/{race_id}")
        swarm = Swarm(field_ids, cheaters=1, dropouts=0.002, finish_m=self.distance_m + 20, seed=lap)
        started = time.time()
        while not stop.is_set():
            now = time.time()
            samples = swarm.tick(now)
            if samples:
                users = list(samples)
                packed = pack_samples(list(samples.values()), list(range(len(users))))
                await arena.races.ref(race_id).ask(Race.ingest, samples=packed, athletes=users)
            everyone_home = all(r.distance >= self.distance_m or r.cheat for r in swarm.runners)
            if everyone_home or now - started > 3 * 3600:
                break
            await _sleep(stop, max(0.0, 1.0 - (time.time() - now)))
        await self._close(http, state, race_id)  # also when `arena run` is stopping: never left live
        if stop.is_set():  # results are published in the background: let them land before the hosts stop
            runner = await self._bearer(http, state["runner"]["email"], state["runner"]["password"])
            for _ in range(30):
                if (await http.get(f"/workouts/{race_id}-{self.athletes - 1}", headers=runner)).status_code == 200:
                    break
                await asyncio.sleep(0.5)
        await _sleep(stop, 30)  # the final board stays on screen a while


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
