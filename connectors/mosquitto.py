"""Mosquitto as Arena's MQTT broker: its password file, its ACL, its config, and a broker for tests.

Devices sign in with username = device id and a generated password; one static
ACL of ``%u`` patterns confines each device to its own topics (docs/mqtt.md).
Mosquitto re-reads the password and ACL files on SIGHUP.
"""

from __future__ import annotations

import builtins
import fcntl
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "DEVICE_TOPICS",
    "HUB_USER",
    "LANES",
    "PasswordFile",
    "acl_text",
    "broker_of",
    "device_topics",
    "lane_of",
    "lanes_of",
    "reload",
    "reload_brokers",
    "running_broker",
    "write_config",
]

log = logging.getLogger(__name__)

HUB_USER = "arena-hub"
DEVICE_TOPICS = "arena/v1/devices"
_TIMEOUT = 10.0


# The race lanes of the race-keyed telemetry topic. Part of the topic contract (a device is told
# its topic when it is bound to a race), so it does not follow the number of hubs: hubs split lanes.
LANES = 64


def device_topics(device_id: str, race_id: str | None = None) -> dict[str, str]:
    """The v1 topics of one device: what it publishes and what it subscribes to.

    Bound to a race, a device's telemetry goes to ``.../telemetry/{lane_of(race)}``, which
    only the hubs of that lane hear (docs/mqtt.md, "Race lanes"); unbound, or from a device
    that predates lanes, ``.../telemetry`` reaches every hub of its broker and works the same.
    """
    base = f"{DEVICE_TOPICS}/{device_id}"
    telemetry = f"{base}/telemetry" if race_id is None else f"{base}/telemetry/{lane_of(race_id)}"
    return {"telemetry": telemetry, "status": f"{base}/status", "downlink": f"{base}/downlink"}


def lane_of(race_id: str) -> int:
    """The lane of a race's telemetry topic (stable: crc32 of its id, modulo ``LANES``)."""
    return zlib.crc32(race_id.encode()) % LANES


def lanes_of(member: int, members: int, per_race: int = 2) -> list[int]:
    """The lanes that hub process ``member`` of a broker's ``members`` subscribes to.

    Lane ``l`` is heard by ``per_race`` hubs, members ``l``, ``l + 1``, ... (mod ``members``),
    which split it (a shared subscription per lane): each race's samples reach that many hubs
    of a broker instead of all of them, so a race gets that many ingest messages (journal
    rows) per batch window, whatever the number of hubs. A hub that dies leaves its share of
    its lanes queued in its session until it is back; the others carry on (docs/mqtt.md).
    """
    if not 0 <= member < members:
        raise ValueError(f"member is 0 to {members - 1}, not {member}")
    if per_race < 1:
        raise ValueError(f"per_race must be at least 1, got {per_race}")
    reach = min(per_race, members)
    return [lane for lane in range(LANES) if (member - lane) % members < reach]


def broker_of(device_id: str, brokers: int) -> int:
    """Which of ``brokers`` broker shards a device connects to (stable: crc32 of its id).

    One Mosquitto holds as many devices as it may open files; past that, devices
    are spread over several brokers and each broker has its hub (docs/mqtt.md).
    """
    if brokers < 1:
        raise ValueError(f"brokers must be at least 1, got {brokers}")
    return zlib.crc32(device_id.encode()) % brokers


def _mosquitto_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH: install Mosquitto 2 (apt-get install mosquitto)")
    return path


class PasswordFile:
    """Mosquitto's password file, changed through ``mosquitto_passwd``.

    Changes are serialised with an exclusive ``flock`` on a lock file beside it,
    which holds across threads and API replicas on one machine alike.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def set(self, username: str, password: str) -> None:
        if not username or ":" in username:
            raise ValueError(f"an MQTT username is not empty and has no ':', not {username!r}")
        with self._locked():
            create = [] if self.path.exists() else ["-c"]
            self._run(*create, "-b", str(self.path), username, password)

    def set_many(self, credentials: dict[str, str]) -> None:
        """Many users at once (a seeded crowd of devices): one ``mosquitto_passwd -U`` hashes a
        plain file of them, which then replaces their lines (or joins) the password file."""
        for username in credentials:
            if not username or ":" in username:
                raise ValueError(f"an MQTT username is not empty and has no ':', not {username!r}")
        if not credentials:
            return
        with self._locked():
            plain = self.path.with_name(self.path.name + ".new")
            plain.touch(mode=0o600)
            plain.write_text("".join(f"{user}:{password}\n" for user, password in credentials.items()))
            try:
                self._run("-U", str(plain), timeout=max(_TIMEOUT, len(credentials) / 100))
                hashed = plain.read_text()
            finally:
                plain.unlink(missing_ok=True)
            kept = [
                line
                for line in (self.path.read_text().splitlines() if self.path.exists() else [])
                if line.split(":", 1)[0] not in credentials
            ]
            staged = self.path.with_name(self.path.name + ".tmp")
            staged.write_text("".join(f"{line}\n" for line in kept) + hashed)
            staged.chmod(self.path.stat().st_mode if self.path.exists() else 0o600)
            staged.replace(self.path)

    def remove(self, username: str) -> None:
        with self._locked():
            if self.path.exists():
                self._run("-D", str(self.path), username)

    def usernames(self) -> builtins.set[str]:  # `set` here is the method above
        if not self.path.exists():
            return set()
        return {line.split(":", 1)[0] for line in self.path.read_text().splitlines() if ":" in line}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _run(*args: str, timeout: float = _TIMEOUT) -> None:
        done = subprocess.run(
            [_mosquitto_tool("mosquitto_passwd"), *args], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd failed: {(done.stderr or done.stdout).strip()}")


def acl_text(hub_user: str = HUB_USER) -> str:
    """The one static ACL: each device its own topics (``%u`` is its username), the hub everything.

    Mosquitto authorises a shared subscription (``$share/group/filter``) against
    its filter, so the hub's ``arena/v1/#`` covers ``$share/hub/arena/v1/devices/+/telemetry``.
    Each race lane is a line of its own: the broker itself refuses a lane that does not exist
    (MQTT 5's "not authorized"), which no hub would hear.
    """
    return (
        f"pattern write {DEVICE_TOPICS}/%u/telemetry\n"
        + "".join(f"pattern write {DEVICE_TOPICS}/%u/telemetry/{lane}\n" for lane in range(LANES))
        + f"pattern write {DEVICE_TOPICS}/%u/status\n"
        f"pattern read {DEVICE_TOPICS}/%u/downlink\n"
        "\n"
        f"user {hub_user}\n"
        "topic readwrite arena/v1/#\n"
    )


def write_config(
    directory: Path | str,
    port: int,
    password_file: Path | str | None,
    acl_file: Path | str | None,
    persistence: bool = True,
    *,
    pid_file: Path | str | None = None,
    user: str | None = None,
    max_inflight: int = 1_000,
    max_queued: int = 10_000,
) -> Path:
    """A mosquitto.conf for one local listener, with sessions kept for QoS 1 devices that reconnect.

    Without a password file the listener is anonymous (benchmarks and tests of the hub alone).
    ``user`` is whom a broker started as root runs as (Mosquitto's default: ``mosquitto``).
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        *(
            ["allow_anonymous true"]
            if password_file is None
            else ["allow_anonymous false", f"password_file {Path(password_file).resolve()}"]
        ),
        *([f"acl_file {Path(acl_file).resolve()}"] if acl_file is not None else []),
        # A device on a flaky link keeps its session and up to 10k queued QoS 1 messages for a day.
        # The in-flight window is also the hub's (MQTT 3.1.1): it acks after the journal commit.
        f"max_inflight_messages {max_inflight}",
        f"max_queued_messages {max_queued}",
        "queue_qos0_messages false",
        "persistent_client_expiration 1d",
        "max_keepalive 300",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if pid_file is not None:
        lines.append(f"pid_file {Path(pid_file).resolve()}")
    if user is not None:
        lines.append(f"user {user}")
    if persistence:
        store = directory / "persistence"
        store.mkdir(exist_ok=True)
        lines += ["persistence true", f"persistence_location {store}/", "autosave_interval 30"]
    else:
        lines.append("persistence false")
    path = directory / "mosquitto.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def reload(pid: int) -> None:
    """Make the broker re-read its password and ACL files."""
    os.kill(pid, signal.SIGHUP)


def reload_brokers(pid_files: Iterable[Path]) -> None:
    """``reload`` every broker on this machine that runs as the pid one of ``pid_files`` holds."""
    for pid_file in pid_files:
        if not pid_file.exists():  # a broker elsewhere, or one not started: it reads the file when it starts
            continue
        pid = int(pid_file.read_text().strip())
        try:
            reload(pid)
        except ProcessLookupError:  # a stale pid file: that broker is down and reads the file when it starts
            log.warning("no broker runs as pid %d of %s: not reloaded", pid, pid_file)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running_broker(
    directory: Path | str,
    port: int,
    password_file: Path | str | None,
    acl_file: Path | str | None,
    *,
    persistence: bool = True,
    timeout: float = _TIMEOUT,
    max_inflight: int = 1_000,
    max_queued: int = 10_000,
) -> Iterator[subprocess.Popen]:
    """A Mosquitto of its own on 127.0.0.1:port, stopped on exit.

    It runs as the current user, writes its pid to ``directory/mosquitto.pid`` and
    its log to ``directory/mosquitto.log``.
    """
    directory = Path(directory)
    pid_file = directory / "mosquitto.pid"
    config = write_config(
        directory,
        port,
        password_file,
        acl_file,
        persistence,
        pid_file=pid_file,
        user=getpass.getuser(),
        max_inflight=max_inflight,
        max_queued=max_queued,
    )
    with open(directory / "mosquitto.log", "ab") as log:
        broker = subprocess.Popen([_mosquitto_tool("mosquitto"), "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if broker.poll() is not None or time.monotonic() > deadline:
                log_text = (directory / "mosquitto.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto did not start on port {port}:\n{log_text}")
            time.sleep(0.05)
        yield broker
    finally:
        broker.terminate()
        try:
            broker.wait(timeout)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(timeout)
