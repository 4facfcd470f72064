"""Memory of an idle Arena after N finished races, against the same Arena before any race.

Starts Arena in its own process (fresh local Ray, embedded store), measures the
proportional set size (PSS: shared pages split between the processes that share
them) of its whole process tree, runs N races from creation to final through the
API (an organizer who runs in each race, one telemetry batch), lets the race hosts go
idle, and measures again. A race's host is a Ray process of its own while the race
needs it and stops once the race is final and idle (``ARENA_RACE_HOST_IDLE``), so
the two numbers should differ by the store's and caches' growth, not by processes.
Each measure after the races prints every process (a Ray worker by its actor class)
with its PSS before and after and its growth per race: where the memory went.

Run: ``.venv/bin/python -m loadtest.bench_idle_memory --races 1000 --passivate-after 60`` (races of
their own hosts), ``... --capacity 200`` (club races, on the shared hosts)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loadtest import server

ORGANIZER = "organizer@bench-memory.example.com"
PASSWORD = "correct horse battery"


def _call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    for _ in range(120):  # a 503 (the cap on race hosts, a host stopping) says when to come back
        request = urllib.request.Request(f"{base}/api/v1{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise RuntimeError(f"{method} {path}: {error.code} {error.read()[:300]!r}") from None
            time.sleep(float(error.headers.get("Retry-After", "1")))
    raise RuntimeError(f"{method} {path}: still 503")


def _tree(root: int) -> set[int]:
    """``root`` and every process under it."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    members = {root}
    grew = True
    while grew:
        before = len(members)
        members |= {pid for pid, parent in parents.items() if parent in members}
        grew = len(members) != before
    return members


def _label(pid: int) -> str:
    """What a process is: a Ray worker's title (its actor class), else its program and module."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if words[0].startswith("ray::"):
        return words[0].split(".")[0]  # ray::HostActor.deliver while it works: the class is what counts
    program = Path(words[0]).name
    if program.startswith("python") and len(words) > 2 and words[1] == "-m":
        return f"python -m {words[2]}"
    if program.startswith("python") and len(words) > 1:
        return f"python {Path(words[1]).name}"
    return program


def processes(root: int) -> dict[int, tuple[str, float]]:
    """Each process of ``root``'s tree: pid → (what it is, PSS in MiB)."""
    found = {}
    for pid in _tree(root):
        try:
            pss = sum(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                if line.startswith("Pss:")
            )
            found[pid] = (_label(pid), pss / 1024)
        except (OSError, IndexError):
            continue
    return found


def total(found: dict[int, tuple[str, float]]) -> float:
    return sum(pss for _, pss in found.values())


def attribution(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], races: int) -> str:
    """A table of each process's PSS before and after, biggest growth first (per race in KiB)."""
    rows = []
    for pid in before.keys() | after.keys():
        label = (after.get(pid) or before[pid])[0]
        was, now = before.get(pid, ("", 0.0))[1], after.get(pid, ("", 0.0))[1]
        gone = " (gone)" if pid not in after else " (new)" if pid not in before else ""
        rows.append(
            (
                now - was,
                f"{pid:>8}  {label[:44]:<44}{gone:<7} {was:8.1f} {now:8.1f} {now - was:+8.1f}"
                f" {(now - was) * 1024 / max(races, 1):+8.1f}",
            )
        )
    header = f"{'pid':>8}  {'process':<44}{'':<7} {'before':>8} {'after':>8} {'MiB':>8} {'KiB/race':>8}"
    return "\n".join([header, *(line for _, line in sorted(rows, key=lambda row: -row[0]))])


def one_race(base: str, token: str, n: int, capacity: int | None = None) -> None:
    body = {"name": f"Memory {n}", "sport": "run", "kind": "distance", "target_m": 50}
    race = _call(base, "POST", "/races", body | ({"capacity": capacity} if capacity else {}), token)
    race_id = race["id"]
    _call(base, "POST", f"/races/{race_id}/actions/open", token=token)
    _call(base, "POST", f"/races/{race_id}/athletes", {}, token)
    _call(base, "POST", f"/races/{race_id}/actions/start", token=token)
    now = time.time()
    samples = [{"seq": i, "t": now + i, "distance": 10.0 * i, "speed": 3.0} for i in range(6)]
    _call(base, "POST", f"/races/{race_id}/telemetry", {"samples": samples}, token)
    for action in ("end", "finalize"):
        _call(base, "POST", f"/races/{race_id}/actions/{action}", token=token)


def settle(process, seconds: float) -> dict[int, tuple[str, float]]:
    """Wait ``seconds`` (hosts go idle, Ray's idle workers exit), then the tree's processes and their PSS."""
    time.sleep(seconds)
    return processes(process.pid)


def report(what: str, found: dict[int, tuple[str, float]], base: dict[int, tuple[str, float]], races: int) -> None:
    print(f"{what}: {total(found):,.0f} MiB PSS in {len(found)} processes", flush=True)
    if found is not base:
        grown = total(found) - total(base)
        print(f"difference: {grown:+,.0f} MiB ({(total(found) / total(base) - 1) * 100:+.1f}%)", flush=True)
        print(attribution(base, found, races), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=4, help="races run at once")
    parser.add_argument("--idle", type=float, default=5.0, help="ARENA_RACE_HOST_IDLE for the run")
    parser.add_argument(
        "--capacity",
        type=int,
        help="each race's capacity; at most 5,000 (SHARED_RACE_CAPACITY) runs it on the shared hosts, with no "
        "process of its own (default: none given, 100,000: a host of its own each)",
    )
    parser.add_argument(
        "--passivate-after",
        type=float,
        default=600.0,
        help="ARENA_PASSIVATE_AFTER for the run; the last measure waits for it, so entities that the races "
        "woke on the shared hosts (stored standings, accounts) have left memory too",
    )
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="arena-memory-"))
    port = server.free_port()
    base = f"http://127.0.0.1:{port}"
    process = server.start_arena(
        data,
        port,
        admin_emails=json.dumps([ORGANIZER]),
        rate_limit_scale="0",
        race_host_idle=str(args.idle),
        passivate_after=str(args.passivate_after),
        argon2_time_cost="1",
        argon2_memory_kib="1024",
        access_token_ttl="86400",  # one token for the whole run
    )
    try:
        server.wait_healthy(base, process)
        _call(base, "POST", "/accounts", {"email": ORGANIZER, "password": PASSWORD, "display_name": "Org"})
        user = _call(base, "POST", "/auth/login", {"email": ORGANIZER, "password": PASSWORD})
        me = _call(base, "GET", "/me", token=user["access_token"])
        _call(base, "PUT", f"/users/{me['id']}/roles", {"roles": ["athlete", "organizer"]}, user["access_token"])
        token = _call(base, "POST", "/auth/login", {"email": ORGANIZER, "password": PASSWORD})["access_token"]
        before = settle(process, 30)
        report("idle, no race", before, before, 0)
        started = time.monotonic()
        with ThreadPoolExecutor(args.parallel) as pool:
            for done, _ in enumerate(pool.map(lambda n: one_race(base, token, n, args.capacity), range(args.races)), 1):
                if done % 50 == 0:
                    print(f"  {done} races final ({time.monotonic() - started:.0f} s)", flush=True)
        report(f"idle, {args.races} races final", settle(process, args.idle + 30), before, args.races)
        if args.passivate_after < 600:
            report("after passivation", settle(process, args.passivate_after + 30), before, args.races)
    finally:
        server.stop(process)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
