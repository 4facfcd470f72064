"""Seed a crowd for the load scenarios: accounts in bulk, a race, and access tokens.

A join surge of 50,000 athletes needs 50,000 accounts first; registering them
through the API would spend most of the test hashing passwords (argon2id is
deliberately slow). The crowd is written straight through the engine instead, in
batches, with one password hash shared by all, and each athlete gets an access
token signed with Arena's own key. The scenarios then use only the public API.

With ``--devices N``, N more athletes each register a watch, join the race and bind
the watch to it: the first ``--api-devices`` of them through the API itself
(``POST /races/{id}/athletes``, ``POST /devices``, ``PUT /devices/{id}/race/{race}``,
which write the broker's password file and reload it), the rest straight through
the engine with their MQTT credentials hashed into ``ARENA_MQTT_PASSWORD_FILE`` in one
``mosquitto_passwd -U``. Their ids and passwords go to the output file, for
``loadtest.device_swarm``'s ``MqttDevice`` locust users.

Run against a running Arena (same machine, same ``ARENA_*`` settings)::

    .venv/bin/python -m loadtest.crowd --athletes 50000 --out reports/crowd.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from actors.race import Race
from engine.errors import EngineError

PASSWORD = "crowd-password-1"
_BATCH = 2_000


async def _seed(settings, athletes: int, token_ttl: float) -> dict:
    from serve.auth import Passwords, Tokens
    from serve.context import connect

    cluster = connect(settings)
    tokens = Tokens(settings.signing_secret(), access_ttl=token_ttl)
    password_hash = await Passwords(settings.argon2_time_cost, settings.argon2_memory_kib).hash(PASSWORD)
    crowd = [(uuid.uuid4().hex, f"crowd-{i}-{uuid.uuid4().hex[:8]}@example.com") for i in range(athletes + 1)]
    started = time.monotonic()
    for first in range(0, len(crowd), _BATCH):
        chunk = crowd[first : first + _BATCH]
        envelopes = [("email", email, "claim", {"user_id": user_id}, None) for user_id, email in chunk]
        envelopes += [
            (
                "account",
                user_id,
                "register",
                {
                    "email": email,
                    "password_hash": password_hash,
                    "display_name": f"Athlete {first + i}",
                    "roles": ["athlete", "organizer"] if first + i == 0 else ["athlete"],
                },
                None,
            )
            for i, (user_id, email) in enumerate(chunk)
        ]
        failed = [r for r in await cluster.deliver(envelopes) if isinstance(r, EngineError)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(envelopes)} seed messages failed, first: {failed[0]}")
        print(f"  {min(first + _BATCH, len(crowd)):,} / {len(crowd):,} accounts", flush=True)
    organizer, *field = crowd

    def token(user_id: str, roles: list[str]) -> str:
        return tokens.access(user_id, roles, family=uuid.uuid4().hex)[0]

    return {
        "seeded_in_s": round(time.monotonic() - started, 1),
        "password": PASSWORD,
        "organizer": {
            "id": organizer[0],
            "email": organizer[1],
            "token": token(organizer[0], ["athlete", "organizer"]),
        },
        "athletes": [{"id": user_id, "email": email, "token": token(user_id, ["athlete"])} for user_id, email in field],
    }


async def _join_all(settings, race_id: str, athletes: list[dict]) -> None:
    """The whole crowd on the start list, in join surges of 20,000 (one message each)."""
    from serve.context import connect

    cluster = connect(settings)
    for first in range(0, len(athletes), 20_000):
        chunk = [
            {"user_id": a["id"], "name": f"Athlete {first + i}"} for i, a in enumerate(athletes[first : first + 20_000])
        ]
        await cluster.ref(Race, race_id).ask(Race.join_many, athletes=chunk)


def _call(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}/api/v1{path}", method=method, data=json.dumps(body or {}).encode())
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:  # the problem document says why (a bare "401" did not)
        raise RuntimeError(f"{method} {path}: HTTP {error.code}: {error.read()[:2000]!r}") from None


def _create_race(base: str, organizer_token: str, spec: dict, start: bool) -> str:
    race = _call(base, organizer_token, "POST", "/races", spec)
    _call(base, organizer_token, "POST", f"/races/{race['id']}/actions/open")
    if start:
        _call(base, organizer_token, "POST", f"/races/{race['id']}/actions/start")
    return race["id"]


def _device_through_api(base: str, race_id: str, athlete: dict) -> dict:
    """What an athlete does in the app: join the race, register the watch, bind it to the race."""
    _call(base, athlete["token"], "POST", f"/races/{race_id}/athletes", {})
    device = _call(base, athlete["token"], "POST", "/devices", {"name": "Load watch", "model": "device_swarm"})
    _call(base, athlete["token"], "PUT", f"/devices/{device['id']}/race/{race_id}")
    return {"id": device["id"], "password": device["mqtt"]["password"], "owner": athlete["id"]}


async def _devices_through_engine(settings, race_id: str, athletes: list[dict], broker: dict) -> list[dict]:
    """The same facts as the API writes, in bulk; the credentials hashed into the broker's file at once."""
    from connectors.mosquitto import PasswordFile, reload
    from serve.context import connect

    cluster = connect(settings)
    await _join_all(settings, race_id, athletes)
    devices = [{"id": uuid.uuid4().hex, "password": secrets.token_urlsafe(24), "owner": a["id"]} for a in athletes]
    for first in range(0, len(devices), _BATCH):
        chunk = devices[first : first + _BATCH]
        for envelopes in (
            [
                message
                for d in chunk
                for message in (
                    (
                        "device",
                        d["id"],
                        "register",
                        {
                            "owner": d["owner"],
                            "name": "Load watch",
                            "model": "device_swarm",
                            "secret_hash": hashlib.sha256(d["password"].encode()).hexdigest(),
                        },
                        None,
                    ),
                    ("device_owner", d["owner"], "add", {"device_id": d["id"]}, None),
                )
            ],
            [
                message
                for d in chunk
                for message in (
                    ("race", race_id, "bind_device", {"user_id": d["owner"], "device_id": d["id"]}, None),
                    ("device", d["id"], "bind", {"by": d["owner"], "race_id": race_id}, None),
                )
            ],
        ):
            failed = [r for r in await cluster.deliver(envelopes) if isinstance(r, EngineError)]
            if failed:
                raise RuntimeError(f"{len(failed)} of {len(envelopes)} device messages failed, first: {failed[0]}")
    PasswordFile(broker["password_file"]).set_many({d["id"]: d["password"] for d in devices})
    if broker["pid_file"] is not None and Path(broker["pid_file"]).exists():
        reload(int(Path(broker["pid_file"]).read_text().strip()))
    return devices


def _seed_devices(settings, base: str, race_id: str, athletes: list[dict], through_api: int, broker: dict) -> dict:
    """Each athlete with a watch bound to the race; the broker and the devices' credentials."""
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        devices = list(pool.map(lambda a: _device_through_api(base, race_id, a), athletes[:through_api]))
    print(f"  {len(devices):,} devices registered and bound through the API", flush=True)
    if len(athletes) > through_api:
        devices += asyncio.run(_devices_through_engine(settings, race_id, athletes[through_api:], broker))
        print(f"  {len(athletes) - through_api:,} devices seeded through the engine", flush=True)
    return {
        "broker": {"host": broker["host"], "port": broker["port"]},
        "devices": devices,
        "devices_seeded_in_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed accounts, a race and tokens for the load scenarios.")
    parser.add_argument("--athletes", type=int, default=1000)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running Arena")
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--rolling", action="store_true", help="a rolling-start race, live at once (joins still open)")
    parser.add_argument("--join", action="store_true", help="put the whole crowd on the race's start list")
    parser.add_argument("--devices", type=int, default=0, help="more athletes, each with a device bound to the race")
    parser.add_argument("--api-devices", type=int, default=100, help="of the devices, how many register via the API")
    parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the devices' Mosquitto")
    parser.add_argument("--password-file", type=Path, help="that broker's password file (needed with --devices)")
    parser.add_argument("--pid-file", type=Path, help="that broker's pid file: SIGHUP once the devices are in")
    parser.add_argument("--token-ttl", type=float, default=3600, help="seconds the minted access tokens live")
    parser.add_argument("--out", type=Path, default=Path("reports/crowd.json"))
    args = parser.parse_args()
    if args.devices and args.password_file is None:
        parser.error("--devices needs --password-file: the broker must know the devices")

    import ray

    from serve.settings import Settings

    settings = Settings()
    ray.init(address="auto", namespace=settings.namespace, configure_logging=False, log_to_driver=False)
    crowd = asyncio.run(_seed(settings, args.athletes + args.devices, args.token_ttl))
    crowd["athletes"], wearers = crowd["athletes"][: args.athletes], crowd["athletes"][args.athletes :]
    spec = {
        "name": "Crowd race",
        "sport": "run",
        "kind": "distance",
        "target_m": 10_000,
        "capacity": args.capacity,
        "start_mode": "rolling" if args.rolling else "mass",
        **({"start_window_s": 3600} if args.rolling else {}),
    }
    crowd["race"] = _create_race(args.url.rstrip("/"), crowd["organizer"]["token"], spec, start=args.rolling)
    if args.join:
        asyncio.run(_join_all(settings, crowd["race"], crowd["athletes"]))
    if wearers:
        host, _, port = args.broker.rpartition(":")
        broker = {"host": host, "port": int(port), "password_file": args.password_file, "pid_file": args.pid_file}
        crowd |= _seed_devices(settings, args.url.rstrip("/"), crowd["race"], wearers, args.api_devices, broker)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(crowd))
    devices = f", {args.devices:,} devices" if args.devices else ""
    print(f"{args.athletes:,} athletes{devices} and race {crowd['race']} in {args.out} ({crowd['seeded_in_s']} s)")


if __name__ == "__main__":
    main()
