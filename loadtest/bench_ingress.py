"""Serve ingress throughput: Arena's API through Ray Serve against plain uvicorn.

Each mode starts Arena in its own process with a fresh local Ray and an embedded
store, seeds an athlete and a live race, then drives three routes with ``wrk``
(keep-alive, one thread, C, so the load generator takes little of the 2 cores):

- ``/livez``: the app and nothing else (the ingress itself);
- ``/api/v1/me``: a token checked and one entity query through the engine;
- ``/api/v1/races/{id}/leaderboard``: the spectators' hot path (replica cache).

Modes: ``serve`` (``ARENA_INGRESS=proxy``: Serve's default Python proxy),
``haproxy`` (``ARENA_INGRESS=haproxy``, Arena's default: HAProxy in front, replicas
serving HTTP directly; see ``serve/ingress.py``) and ``uvicorn`` (the same FastAPI
app and engine, ``loadtest.ingress_peer``). Prints req/s, p50/p99 and each mode's
ratio to uvicorn.

Run: ``.venv/bin/python -m loadtest.bench_ingress`` (needs ``wrk``: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from loadtest import server

MODES = ("serve", "haproxy", "uvicorn")
ROUTES = ("livez", "me", "leaderboard")
ORGANIZER = "organizer@bench-arena.example.com"


def _call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    request = urllib.request.Request(f"{base}{path}", method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: {error.code} {error.read()[:500]!r}") from None
    return json.loads(raw) if raw else {}


def _seed(base: str) -> dict[str, str]:
    """An organizer (admin by ARENA_ADMIN_EMAILS) with a live race they are in."""
    _call(
        base, "POST", "/api/v1/accounts", {"email": ORGANIZER, "password": "bench-password-1", "display_name": "Bench"}
    )
    token = _call(base, "POST", "/api/v1/auth/login", {"email": ORGANIZER, "password": "bench-password-1"})[
        "access_token"
    ]
    race = _call(
        base, "POST", "/api/v1/races", {"name": "Ingress", "sport": "run", "kind": "distance", "target_m": 5000}, token
    )
    _call(base, "POST", f"/api/v1/races/{race['id']}/actions/open", {}, token)
    _call(base, "POST", f"/api/v1/races/{race['id']}/athletes", {}, token)
    _call(base, "POST", f"/api/v1/races/{race['id']}/actions/start", {}, token)
    return {"token": token, "race": race["id"]}


def _wrk(url: str, seconds: float, connections: int, token: str | None) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "--timeout", "10s"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "errors": (int(errors.group(1)) if errors else 0) + (sum(map(int, sockets.groups())) if sockets else 0),
    }


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _start(mode: str, port: int, data: Path, replicas: int) -> subprocess.Popen:
    settings = {"admin_emails": json.dumps([ORGANIZER]), "replicas": str(replicas)}
    if mode == "uvicorn":
        return server.start(
            ["-m", "loadtest.ingress_peer", "--port", str(port)], data, server.environment(data, **settings)
        )
    return server.start_arena(data, port, ingress="proxy" if mode == "serve" else "haproxy", **settings)


def measure(mode: str, seconds: float, connections: int, replicas: int) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix=f"arena-ingress-{mode}-") as tmp:
        data = Path(tmp)
        port = server.free_port()
        base = f"http://127.0.0.1:{port}"
        process = _start(mode, port, data, replicas)
        try:
            server.wait_healthy(base, process)
            seed = _seed(base)
            urls = {
                "livez": (f"{base}/livez", None),
                "me": (f"{base}/api/v1/me", seed["token"]),
                "leaderboard": (f"{base}/api/v1/races/{seed['race']}/leaderboard?n=10", None),
            }
            results = {}
            for route, (url, token) in urls.items():
                _wrk(url, 2, connections, token)  # warm up: connections, caches, the JIT-less paths
                results[route] = _wrk(url, seconds, connections, token)
                print(f"  {mode:8} {route:12} {results[route]}", flush=True)
            return results
        except Exception:
            print((data / "server.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description="Arena's API through Ray Serve (default, HAProxy) vs plain uvicorn.")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=1, help="Serve replicas of the API")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    results = {}
    for mode in args.modes:
        print(f"{mode}: starting", flush=True)
        results[mode] = measure(mode, args.seconds, args.connections, args.replicas)

    print(f"\n{'route':12} " + " ".join(f"{m + ' req/s':>14} {'p50':>7} {'p99':>7}" for m in args.modes))
    for route in ROUTES:
        cells = [results[m][route] for m in args.modes]
        print(f"{route:12} " + " ".join(f"{c['rps']:14,.0f} {c['p50_ms']:7.1f} {c['p99_ms']:7.1f}" for c in cells))
    if "uvicorn" in results:
        for mode in (m for m in args.modes if m != "uvicorn"):
            ratios = ", ".join(
                f"{route} {results[mode][route]['rps'] / results['uvicorn'][route]['rps']:.2f}" for route in ROUTES
            )
            print(f"{mode} / uvicorn throughput: {ratios}")
    errors = {m: {r: results[m][r]["errors"] for r in ROUTES} for m in args.modes}
    print(f"errors (non-2xx + socket): {errors}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
