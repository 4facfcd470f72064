"""Devices → Mosquitto → MQTT hubs → live race, end to end, for fields of thousands of devices.

For each ``--devices`` count: private Mosquittos (Arena's config, password file and
ACL, free ports on 127.0.0.1; one broker per 18,000 devices, as one broker holds as many
connections as it may open files, and devices go to theirs by ``broker_of``), a real
Cluster (SQLite in a temp folder) with a live race the devices' athletes joined, the real
``connectors.mqtt.Hub`` (in this process, or with ``--hub-processes N`` in processes
of their own sharing each broker's stream, as ``arena hub`` runs; its route table in
memory, as the device entity would answer it), and ``loadtest.device_swarm`` in child
processes sampling at 1 Hz for ``--seconds``.

Reported: samples/s the race accepted, the CPU of the brokers, of the hubs and of the
swarm from /proc, and freshness: a few probe devices send one sample a second whose
distance encodes its time; ``view`` is polled every ``--poll`` s, and a sample's freshness
is when its distance first shows minus its ``t``.
Run: ``.venv/bin/python -m loadtest.bench_mqtt --devices 5000 7500 --hub-processes 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import ray
from paho.mqtt.enums import CallbackAPIVersion

from actors.race import Race, RaceRef
from connectors.mosquitto import HUB_USER, acl_text, broker_of, running_broker
from connectors.mqtt import Hub
from engine.cluster import Cluster
from engine.ray_host import HostSpec
from loadtest.server import free_port
from serve.kinds import KINDS, OPEN_STORE

ORGANIZER = "bench-organizer"
PASSWORD = "bench-device"
HUB_PASSWORD = "bench-hub"
JOIN_CHUNK = 5_000
PER_BROKER = 18_000  # device connections per Mosquitto: each is an open file, and the hard limit here is 20,000
PER_PROCESS = 18_000  # device connections per swarm process, likewise
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    devices: int
    brokers: int = 1
    hub_processes: int = 0
    connected: int = 0
    published: int = 0
    accepted: int = 0
    window: float = 0.0
    broker_cpu: float = 0.0
    hub_cpu: float = 0.0
    swarm_cpu: float = 0.0
    hub_proc_cpu: float = 0.0
    machine_cpu: float = 0.0
    freshness: list[float] = field(default_factory=list)
    dropped: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _tree_cpu_seconds(pid: int) -> float:
    """A process and all its descendants (the swarm's shards)."""
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        return _cpu_seconds(pid) + sum(_tree_cpu_seconds(int(child)) for child in children)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _machine_cpu_seconds() -> float:
    jiffies = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / _TICKS


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _password_file(path: Path, users: list[str]) -> None:
    """Every device at once: ``mosquitto_passwd -U`` hashes a plain file in place (one call, not one per user)."""
    path.write_text(f"{HUB_USER}:{HUB_PASSWORD}\n" + "".join(f"{u}:{PASSWORD}\n" for u in users))
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True, timeout=600)


class _Probes:
    """Devices in this process that walk at exactly 1 m/s, so a distance on the board dates its sample."""

    def __init__(self, ports: list[int], race_id: str, ids: list[str]) -> None:
        self.race_id, self.ids, self.t0 = race_id, ids, time.time()
        self.clients = []
        for device_id in ids:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
            client.username_pw_set(device_id, PASSWORD)
            client.connect("127.0.0.1", ports[broker_of(device_id, len(ports))], keepalive=60)
            client.loop_start()
            self.clients.append(client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        seq = 0
        while not self._stop.wait(1.0 - (time.time() - self.t0) % 1.0):
            seq += 1
            for device_id, client in zip(self.ids, self.clients):
                t = time.time()
                sample = {"seq": seq, "t": t, "distance": t - self.t0, "speed": 1.0}
                body = msgpack.packb({"race": self.race_id, "samples": [sample]})
                client.publish(f"arena/v1/devices/{device_id}/telemetry", body, qos=1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


class _HubProcess:
    """A hub in a process of its own (``--hub-worker``), on this benchmark's Ray and race hosts.

    It prints its counters as a JSON line twice a second; ``accepted`` and ``dropped``
    are the latest. Its routes come from a file (the in-memory table of the devices).
    """

    def __init__(self, shard: int, shards: int, port: int, k: int, routes: Path, cluster: Cluster) -> None:
        self.shard, self.shards, self.port, self.k, self.routes = shard, shards, port, k, routes
        self.namespace, self.database = cluster.namespace, cluster.spec.store_url
        self.accepted, self.dropped = 0, Counter()
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "token"}
        command = [
            sys.executable, "-m", "loadtest.bench_mqtt", "--hub-worker", "--port", str(self.port),
            "--shard", f"{self.shard},{self.shards}", "--client-id", f"bench-hub-{self.shard}-{self.k}",
            "--routes", str(self.routes), "--namespace", self.namespace, "--database", self.database,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = await asyncio.to_thread(self.process.stdout.readline)  # its first counters: it is connected
        if not line.startswith("{"):
            raise SystemExit(f"hub process {self.k} did not start")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            counters = json.loads(line)
            self.accepted, self.dropped = counters["accepted"], Counter(counters["dropped"])

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            await asyncio.to_thread(self.process.wait, 30)


def _hub_worker(args: argparse.Namespace) -> None:
    shard, shards = (int(part) for part in args.shard.split(","))
    table = json.loads(Path(args.routes).read_text())

    async def route(device_id: str) -> dict | None:
        return table.get(device_id)

    async def run() -> None:
        ray.init(address=os.environ["RAY_ADDRESS"], namespace=args.namespace, configure_logging=False)
        cluster = Cluster(HostSpec(args.database, KINDS, hosts=1, open_store=OPEN_STORE), namespace=args.namespace)
        hub = Hub(
            cluster, port=args.port, client_id=args.client_id, username=HUB_USER, password=HUB_PASSWORD,
            route=route, shard=(shard, shards),
        )  # fmt: skip
        await hub.start()
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stopping.set)
        while not stopping.is_set():
            print(json.dumps({"accepted": hub.accepted, "dropped": hub.dropped}), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
        await hub.stop()
        print(json.dumps({"accepted": hub.accepted, "dropped": hub.dropped}), flush=True)

    asyncio.run(run())


async def _watch(
    cluster: Cluster, race_id: str, probes: _Probes, who: list[int], poll: float, until: float
) -> list[float]:
    """Poll the race's view; each time a probe's distance moves, how old the sample that moved it is."""
    fresh, last = [], dict.fromkeys(who, -1.0)
    while time.time() < until:
        started = time.monotonic()
        view = await cluster.ref(Race, race_id).ask(Race.view, n=10)
        seen = time.time()
        order = np.frombuffer(view["order"], np.uint32)
        distance = np.frombuffer(view["distance"], np.float32)
        where = {int(p): float(d) for p, d in zip(order, distance) if int(p) in last}
        for participant, d in where.items():
            if d > last[participant] + 0.5:  # float32: a distance near 1e3 m is good to a few mm
                if last[participant] >= 0:
                    fresh.append(seen - (probes.t0 + d))
                last[participant] = d
        await asyncio.sleep(max(0.0, poll - (time.monotonic() - started)))
    return fresh


async def _one(devices: int, args: argparse.Namespace) -> Result:
    result = Result(devices)
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        folder = Path(tmp)
        device_ids = [f"d{k}" for k in range(devices)]
        probe_ids = [f"probe{k}" for k in range(args.probes)]
        started = time.perf_counter()
        _password_file(folder / "passwd", device_ids + probe_ids)
        (folder / "acl").write_text(acl_text())
        print(f"  {devices:,} devices: password file in {time.perf_counter() - started:.1f} s", flush=True)
        cluster = Cluster(
            HostSpec(f"sqlite:///{folder}/race.db", KINDS, hosts=1, open_store=OPEN_STORE),
            namespace=f"mqtt-{uuid.uuid4().hex[:8]}",
        )
        race_id = uuid.uuid4().hex
        shards = args.brokers or math.ceil((devices + args.probes + 100) / PER_BROKER)
        ports = [free_port() for _ in range(shards)]
        try:
            config = {"name": "Bench", "sport": "run", "kind": "time", "duration_s": 3_600}
            await cluster.ref(RaceRef, race_id).ask(RaceRef.register, organizer=ORGANIZER)  # as the API creates races
            await cluster.ref(Race, race_id).ask(Race.create, organizer=ORGANIZER, config=config)
            await cluster.ref(Race, race_id).ask(Race.open, by=ORGANIZER)
            users = [f"u-{d}" for d in device_ids + probe_ids]
            index: list[int] = []
            for first in range(0, len(users), JOIN_CHUNK):
                chunk = [{"user_id": u, "name": u} for u in users[first : first + JOIN_CHUNK]]
                index += await cluster.ref(Race, race_id).ask(Race.join_many, athletes=chunk)
            await cluster.ref(Race, race_id).ask(Race.start, by=ORGANIZER)
            table = {d: {"owner": f"u-{d}", "race_id": race_id, "revoked": False} for d in device_ids + probe_ids}

            async def route(device_id: str) -> dict | None:
                return table.get(device_id)

            with contextlib.ExitStack() as stack:
                brokers = [
                    stack.enter_context(running_broker(folder / f"broker{k}", port, folder / "passwd", folder / "acl"))
                    for k, port in enumerate(ports)
                ]
                if args.hub_processes:  # as `arena hub` runs: processes of their own, sharing each broker's stream
                    (folder / "routes.json").write_text(json.dumps(table))
                    hubs: list[Any] = [
                        _HubProcess(k % shards, shards, ports[k % shards], k, folder / "routes.json", cluster)
                        for k in range(max(args.hub_processes, shards))
                    ]
                else:
                    hubs = [
                        Hub(
                            cluster,
                            port=port,
                            client_id=f"bench-hub-{k}",
                            username=HUB_USER,
                            password=HUB_PASSWORD,
                            route=route,
                            shard=(k, shards),
                        )
                        for k, port in enumerate(ports)
                    ]
                for hub in hubs:
                    await hub.start()
                probes = _Probes(ports, race_id, probe_ids)
                try:
                    await _drive(
                        result, args, hubs, [b.pid for b in brokers], cluster, race_id, probes, index[devices:], ports
                    )
                finally:
                    probes.close()
                    for hub in hubs:
                        await hub.stop()
                result.brokers = shards
                result.hub_processes = len(hubs) if args.hub_processes else 0
                for k in range(shards):
                    log = (folder / f"broker{k}" / "mosquitto.log").read_text(errors="replace").splitlines()
                    result.notes += [line for line in log if "rror" in line or "arning" in line][:5]
        finally:
            cluster.kill()
    return result


async def _drive(
    result: Result,
    args,
    hubs: list[Any],
    broker_pids: list[int],
    cluster,
    race_id: str,
    probes: _Probes,
    who: list[int],
    ports: list[int],
) -> None:
    processes = max(args.processes, math.ceil(result.devices / PER_PROCESS))
    command = [
        sys.executable, "-m", "loadtest.device_swarm", "--devices", str(result.devices),
        "--brokers", ",".join(f"127.0.0.1:{port}" for port in ports),
        "--race", race_id, "--prefix", "d", "--password", PASSWORD, "--seconds", str(args.seconds),
        "--processes", str(processes), "--samples-per-message", str(args.samples_per_message),
        "--cheaters", str(args.cheaters), "--dropout", str(args.dropout), "--connect-rate", str(args.connect_rate),
    ]  # fmt: skip
    swarm = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = 0
    assert swarm.stderr is not None and swarm.stdout is not None
    while ready < processes:  # every shard has connected its devices
        line = await asyncio.to_thread(swarm.stderr.readline)
        if not line:
            raise SystemExit(f"the swarm ended before connecting: {swarm.stdout.read()}")
        print("   ", line.strip(), flush=True)
        ready += "connected in" in line
    threading.Thread(target=swarm.stderr.read, daemon=True).start()
    settle = min(5.0, args.seconds / 5)
    await asyncio.sleep(settle)  # the first messages of every device are in

    def brokers_cpu() -> float:
        return sum(_cpu_seconds(pid) for pid in broker_pids)

    def accepted() -> int:
        return sum(hub.accepted for hub in hubs)

    def hubs_cpu() -> float:  # hub processes (none when the hubs run in this process)
        return sum(_cpu_seconds(hub.process.pid) for hub in hubs if getattr(hub, "process", None) is not None)

    swarm_cpu, hub_proc_cpu = _tree_cpu_seconds(swarm.pid), hubs_cpu()
    accepted0, broker_cpu, hub_cpu, machine = (
        accepted(),
        brokers_cpu(),
        _cpu_seconds(os.getpid()),
        _machine_cpu_seconds(),
    )
    began = time.monotonic()
    window = args.seconds - settle - 1.0
    result.freshness = await _watch(cluster, race_id, probes, who, args.poll, time.time() + window)
    result.window = time.monotonic() - began
    result.accepted = accepted() - accepted0
    result.broker_cpu = (brokers_cpu() - broker_cpu) / result.window
    result.hub_proc_cpu = (hubs_cpu() - hub_proc_cpu) / result.window
    result.hub_cpu = (_cpu_seconds(os.getpid()) - hub_cpu) / result.window + result.hub_proc_cpu
    result.machine_cpu = (_machine_cpu_seconds() - machine) / result.window
    result.swarm_cpu = (_tree_cpu_seconds(swarm.pid) - swarm_cpu) / result.window
    out = await asyncio.to_thread(swarm.communicate, timeout=args.seconds + 180)
    stats = json.loads(out[0].strip().splitlines()[-1])
    result.connected, result.published = stats["connected"], stats["samples"]
    result.dropped = dict(sum((hub.dropped for hub in hubs), Counter()))


def _table(results: list[Result], args: argparse.Namespace) -> str:
    def fresh(r: Result) -> str:
        return " / ".join(f"{_percentile(r.freshness, q):.3f}" for q in (0.5, 0.9, 0.99))

    rows = [
        ("broker shards", [str(r.brokers) for r in results]),
        ("hubs", [f"{r.hub_processes} processes" if r.hub_processes else "in this process" for r in results]),
        ("connections (incl. reconnects)", [f"{r.connected:,}" for r in results]),
        ("samples published (whole run)", [f"{r.published:,}" for r in results]),
        ("race accepted, samples/s", [f"{r.accepted / r.window:,.0f}" for r in results]),
        ("  offered, samples/s (devices × 1 Hz)", [f"{r.devices + args.probes:,}" for r in results]),
        ("  messages/s", [f"{r.accepted / r.window / args.samples_per_message:,.0f}" for r in results]),
        ("freshness p50 / p90 / p99, s", [fresh(r) for r in results]),
        ("  probe samples seen", [f"{len(r.freshness)}" for r in results]),
        ("  p99 < 1 s", ["yes" if _percentile(r.freshness, 0.99) < 1 else "NO" for r in results]),
        ("brokers' CPU, cores", [f"{r.broker_cpu:.2f}" for r in results]),
        ("hubs + Ray driver CPU, cores", [f"{r.hub_cpu:.2f}" for r in results]),
        ("  of which hub processes", [f"{r.hub_proc_cpu:.2f}" if r.hub_processes else "-" for r in results]),
        ("device swarm CPU, cores", [f"{r.swarm_cpu:.2f}" for r in results]),
        ("machine CPU, cores busy", [f"{r.machine_cpu:.2f}" for r in results]),
        ("hub drops", [str(r.dropped or "-") for r in results]),
    ]
    width = max(len(label) for label, _ in rows)
    heads = [f"{r.devices:,} dev × {args.samples_per_message}" for r in results]
    cols = [max(len(h), *(len(cells[i]) for _, cells in rows)) for i, h in enumerate(heads)]
    lines = [" " * width + " | " + " | ".join(h.rjust(w) for h, w in zip(heads, cols))]
    lines += [label.ljust(width) + " | " + " | ".join(c.rjust(w) for c, w in zip(cells, cols)) for label, cells in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[2_000, 5_000, 20_000])
    parser.add_argument("--samples-per-message", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=1, help="swarm processes (at least one per 18,000 devices)")
    parser.add_argument("--brokers", type=int, default=0, help="broker shards (0: one per 18,000 devices)")
    parser.add_argument(
        "--connect-rate", type=float, default=2_000, help="new connections per second per swarm process"
    )
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between reads of the race's view")
    parser.add_argument("--cheaters", type=float, default=0.01)
    parser.add_argument("--dropout", type=float, default=0.002)
    parser.add_argument("--hub-processes", type=int, default=0, help="hubs in processes of their own (0: here)")
    worker = parser.add_argument_group("a hub process (internal: started by the benchmark)")
    worker.add_argument("--hub-worker", action="store_true")
    worker.add_argument("--port", type=int)
    worker.add_argument("--shard", default="0,1")
    worker.add_argument("--client-id")
    worker.add_argument("--routes")
    worker.add_argument("--namespace")
    worker.add_argument("--database")
    args = parser.parse_args()
    if args.hub_worker:
        return _hub_worker(args)
    if args.seconds < 10:
        raise SystemExit("--seconds is at least 10: the devices connect, then the window is measured")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it: one descriptor per device
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results = []
    try:
        for devices in args.devices:
            result = asyncio.run(_one(devices, args))
            results.append(result)
            for note in result.notes:
                print("  broker:", note)
            print(_table(results, args), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
