"""Shared fixtures: real services (PostgreSQL, Redis, Mosquitto) and one Ray cluster.

With ``CI=true`` a test whose service is unreachable fails; elsewhere it skips
with the reason, so a laptop without PostgreSQL still runs the rest.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import uuid
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_ADMIN_URL = os.environ.get("ARENA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A database per xdist worker (15, 14, ...): each test empties its own, never the other worker's.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...
_REDIS_DB = 15 - int(_WORKER[2:]) % 8 if _WORKER[2:].isdigit() else 15
REDIS_URL = os.environ.get("ARENA_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_REDIS_DB}")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: services are required; .ci/run starts them)")
    pytest.skip(f"{reason}; start it to run this test")


def require_program(name: str, path: str | None, install: str) -> None:
    """A program a test runs (a browser, a broker): skipped without it, failed under CI=true."""
    if path is not None and os.path.exists(path):
        return
    reason = f"{name} is not installed ({install})"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true needs it")
    pytest.skip(reason)


# The suite runs on two pytest-xdist workers (`make test`: -n 2 --dist loadgroup), each with its own Ray
# cluster. A module stays on one worker (its module-scoped app starts once); the modules that share one
# fixed thing of a real service (Redis's test database, which each test empties; the Mosquitto on 1883)
# are one group, run one after the other. The longest modules go first, so no worker is left with one at
# the end.
SHARED_SERVICES = {"test_bus", "test_erasure", "test_ratelimit", "test_throttle", "test_redis_erasure",
                   "test_devices", "test_mqtt_shards"}  # fmt: skip
LONGEST_FIRST = ["test_load_scenarios", "test_fuzz_openapi", "test_restart", "test_replica_chaos",
                 "test_hostile_input", "test_race_lifecycle", "test_api_surface", "test_demo",
                 "test_events_chaos", "test_multinode"]  # fmt: skip


def pytest_collection_modifyitems(config, items):
    def module(item) -> str:
        return item.path.stem

    def group(item) -> str:
        return "shared-services" if module(item) in SHARED_SERVICES else module(item)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: collection order otherwise


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A fresh database for this test session, dropped at the end."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import asyncpg

    name = f"arena_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(ROOT) / "reports" / "screenshots"  # the page tests' screenshots


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's, never a downloaded one) for a module's page tests. Not one for the
    session: Playwright's sync API marks an event loop running in the main thread while it is open, and
    every asyncio test after it would then fail to start its own."""
    require_program("Chromium", CHROMIUM, "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (2 CPUs, like the CI machine)."""
    import ray

    # Ray workers import tests.entities: give them the checkout on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    # As `arena run` does (serve.ingress): Serve's uvicorn must not rewrite client addresses.
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _named_actors() -> set[tuple[str, str]]:
    ray = sys.modules.get("ray")  # a module that never imported Ray has started none
    if ray is None or not ray.is_initialized():
        return set()
    return {(a["namespace"], a["name"]) for a in ray.util.list_named_actors(all_namespaces=True)}


@pytest.fixture(scope="module", autouse=True)
def module_leaves_no_actors():
    """The hosts, relays, event logs and counters a module's apps started go with the module. They are
    detached (they outlive a Serve app, as in production), so without this every module's stayed: 140 idle
    host processes by the end of the suite, and the machine's memory with them."""
    before = _named_actors()
    yield
    left = sorted((namespace, name) for namespace, name in _named_actors() - before if namespace != "serve")
    if not left:  # Serve's own (namespace "serve"): its controller and proxies serve the next module
        return
    import ray

    for namespace, name in left:
        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:  # gone already
            pass


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/arena.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def redis_url() -> str:
    """The test database of the local Redis, emptied before each test."""
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()
    return REDIS_URL


T0 = 1_800_000_000.0  # where the tests' clock starts: a multiple of every rate-limit window


class Clock:
    """A clock the tests move by hand (``clock.now += 10``)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def module_settings(tmp_path_factory, name: str, **overrides):
    """Settings of a module's API on the shared Ray: its own store, folder and namespace (``name``), fast
    argon2, a fixed key and the two admins, as a module's ``settings`` fixture starts from."""
    from serve.settings import Settings

    folder = tmp_path_factory.mktemp(name)
    defaults = {
        "database_url": f"sqlite:///{folder}/arena.db",
        "namespace": f"{name}-{uuid.uuid4().hex[:8]}",
        "hosts": 2,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "jwt_secret": "x" * 48,
        "admin_emails": ["boss@example.com", "chief@example.com"],
        "data_dir": folder,
        "rate_limit_scale": 1000,  # counted as in production, but tests post far faster than people (test_throttle: 1)
    }
    return Settings(**(defaults | overrides))


@pytest.fixture(scope="module")
def settings(ray_cluster, tmp_path_factory):
    """Settings of an API on the shared Ray: its own store, namespace and fast argon2."""
    settings = module_settings(tmp_path_factory, "api", spectator_tick=0.1)
    yield settings
    stop_cluster_services(settings.namespace)


def stop_cluster_services(namespace: str) -> None:
    """The module's relay and notice log go with it: each is a Ray process of its own, and the
    relay looks for events every few seconds."""
    import ray

    from engine.notices import NOTICE_LOG
    from engine.relay import RELAY_NAME

    for name in (RELAY_NAME, NOTICE_LOG):
        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:  # never started in this namespace
            pass


@pytest.fixture
async def client(settings):
    """The real FastAPI app in-process (httpx's ASGI transport) over real hosts and store."""
    import httpx
    import ray

    from serve.app import api
    from serve.context import Arena

    arena = Arena.build(settings)
    api.state.arena = arena
    transport = httpx.ASGITransport(app=api, client=("10.1.2.3", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://arena/api/v1") as http:
        http.arena = arena
        yield http
    await arena.drain()
    await arena.spectators.close()
    for handle in arena.cluster.hosts[settings.hosts :]:  # dedicated hosts (races) this test woke
        ray.kill(handle, no_restart=True)
    forget_login_failures(settings.namespace)


def forget_login_failures(namespace: str) -> None:
    """Each test starts with no failed sign-ins counted: the replicas' shared counts are an actor."""
    import ray

    try:
        ray.kill(ray.get_actor("arena-login-limits", namespace=namespace), no_restart=True)
    except ValueError:  # no sign-in failed in this namespace
        pass
