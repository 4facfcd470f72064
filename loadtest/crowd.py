"""Seed a crowd for the load scenarios: accounts in bulk, a race, and access tokens.

A join surge of 50,000 athletes needs 50,000 accounts first; registering them
through the API would spend most of the test hashing passwords (argon2id is
deliberately slow). The crowd is written straight through the engine instead, in
batches, with one password hash shared by all, and each athlete gets an access
token signed with Arena's own key. The scenarios then use only the public API.

Run against a running Arena (same machine, same ``ARENA_*`` settings)::

    .venv/bin/python -m loadtest.crowd --athletes 50000 --out reports/crowd.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path

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
        await cluster.ask("race", race_id, "join_many", {"athletes": chunk})


def _create_race(base: str, organizer_token: str, spec: dict, start: bool) -> str:
    def call(method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{base}/api/v1{path}", method=method, data=json.dumps(body or {}).encode())
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {organizer_token}")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"{}")

    race = call("POST", "/races", spec)
    call("POST", f"/races/{race['id']}/actions/open")
    if start:
        call("POST", f"/races/{race['id']}/actions/start")
    return race["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed accounts, a race and tokens for the load scenarios.")
    parser.add_argument("--athletes", type=int, default=1000)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running Arena")
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--rolling", action="store_true", help="a rolling-start race, live at once (joins still open)")
    parser.add_argument("--join", action="store_true", help="put the whole crowd on the race's start list")
    parser.add_argument("--token-ttl", type=float, default=3600, help="seconds the minted access tokens live")
    parser.add_argument("--out", type=Path, default=Path("reports/crowd.json"))
    args = parser.parse_args()

    import ray

    from serve.settings import Settings

    settings = Settings()
    ray.init(address="auto", namespace=settings.namespace, configure_logging=False, log_to_driver=False)
    crowd = asyncio.run(_seed(settings, args.athletes, args.token_ttl))
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(crowd))
    print(f"{args.athletes:,} athletes and race {crowd['race']} in {args.out} ({crowd['seeded_in_s']} s)")


if __name__ == "__main__":
    main()
