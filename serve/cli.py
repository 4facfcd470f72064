"""The ``arena`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serve.settings import Settings

__all__ = ["main"]

log = logging.getLogger("arena")


_START_ATTEMPTS = 3
_START_ADVICE = (
    "What to do: run it again once the machine is less busy; if it keeps failing, look at Ray's logs "
    "(/tmp/ray/session_latest/logs, files serve/* and *haproxy*), check that nothing else listens on the "
    "port (arena run --port), or give a slow machine more time (RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S, "
    "RAY_SERVE_HAPROXY_STARTUP_TIMEOUT_S) or try ARENA_INGRESS=proxy."
)


def _run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from serve.ingress import prepare_local_ray, remove_folder
    from serve.settings import Settings

    overrides = {k: v for k, v in {"http_host": args.host, "http_port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    local = settings.ray_address in (None, "local")
    if local and _port_taken(settings.http_host, settings.http_port):
        print(
            f"Arena could not start: {settings.http_host}:{settings.http_port} is taken (another Arena, or "
            "another program). Stop it, or choose another port: arena run --port PORT (ARENA_HTTP_PORT).",
            file=sys.stderr,
        )
        return 1
    folder = None
    if local:
        folder = prepare_local_ray(
            settings.ingress, stats_port=settings.haproxy_stats_port, metrics_port=settings.haproxy_metrics_port
        )
    # From the start Ctrl-C means "stop cleanly", even while Ray and the app are still coming up.
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    push = None
    try:
        failure = _start(settings, args, stopping)
        if failure is not None:
            print(failure, file=sys.stderr, flush=True)
            return 0 if stopping.is_set() else 1
        url = f"http://{settings.http_host}:{settings.http_port}"
        print(
            f"Arena is running at {url}  (store: {settings.store_name}; health: {url}/health; Ctrl-C stops)",
            flush=True,
        )
        print(f"Pages: {url}/ (races)  {url}/organizer  {url}/me  {url}/login", flush=True)
        if settings.push_workers:  # ARENA_PUSH_WORKERS: live race streams outside Serve (docs/push.md)
            from serve.push import start_workers

            gcs = ray.get_runtime_context().gcs_address
            push = start_workers(settings.http_host, settings.push_port, settings.push_workers, gcs)
            live = f"http://{settings.http_host}:{settings.push_port}/api/v1/races/{{race}}/live"
            print(f"Push processes: {settings.push_workers} serving {live}", flush=True)
        demo = _start_demo(settings, url, args.demo_athletes) if args.demo else None
        _retention_loop(settings, stopping)

        stopping.wait()
        if demo is not None:
            demo()

        print("Stopping: snapshotting entities…", flush=True)
        gateway = serve.get_deployment_handle("gateway", app_name="arena")
        try:
            gateway.stop_hosts.remote().result(timeout_s=60)
        except Exception as error:  # the hosts' journal already holds every acknowledged fact
            log.warning("hosts did not stop cleanly: %s", error)
        serve.delete("arena")
    finally:
        if push is not None:  # before Ray: each worker closes its streams and leaves the cluster
            from serve.push import stop_workers

            stop_workers(push)
        if local and ray.is_initialized():  # our own local Ray: take it down with us
            try:
                serve.shutdown()
            except Exception as error:
                log.warning("Serve did not shut down cleanly: %s", _first_line(error))
            ray.shutdown()
        remove_folder(folder)
    print("Arena stopped.", flush=True)
    return 0


def _start(settings, args: argparse.Namespace, stopping: threading.Event) -> str | None:
    """Start Ray, Serve and the API, waiting for and retrying what comes up slowly; None once the API
    answers, else what failed and what to do (never a traceback)."""
    import ray
    from ray import serve

    from serve.app import build

    try:
        ray.init(
            address=settings.ray_address,
            num_cpus=settings.num_cpus,
            namespace=settings.namespace,
            include_dashboard=args.dashboard,
            configure_logging=False,
            log_to_driver=args.verbose,
        )
    except Exception as error:
        return f"Arena could not start: Ray did not start: {_first_line(error)}\n{_START_ADVICE}"
    url = f"http://{settings.http_host}:{settings.http_port}"
    for attempt in range(1, _START_ATTEMPTS + 1):
        step = "starting Ray Serve and its HTTP ingress"
        try:
            serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
            step = "deploying the API"
            serve.run(build(settings), name="arena", route_prefix="/")
            step = f"waiting for the API to answer at {url}"
            _wait_answering(f"{url}/livez", stopping, seconds=60 * attempt)
            return None
        except Exception as error:
            if stopping.is_set():
                return "Stopped while starting."
            if attempt == _START_ATTEMPTS:
                return f"Arena could not start: {step} failed: {_first_line(error)}\n{_START_ADVICE}"
            log.warning(
                "%s failed (attempt %d of %d): %s; retrying", step, attempt, _START_ATTEMPTS, _first_line(error)
            )
            try:  # start again from a clean Serve: a half-started one keeps its broken ingress
                serve.shutdown()
            except Exception as failure:
                log.warning("Serve did not shut down cleanly: %s", _first_line(failure))
            if stopping.wait(5 * attempt):
                return "Stopped while starting."
    return None


def _wait_answering(url: str, stopping: threading.Event, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer in {seconds:.0f} s: {error}") from None
        if stopping.wait(0.5):
            raise InterruptedError("stopped")


def _first_line(error: BaseException) -> str:
    """The line of an error that says what went wrong (Ray wraps causes; HAProxy says it after ALERT)."""
    error = getattr(error, "cause", None) or error
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).strip().splitlines()]
    alerts = [line for line in lines if "ALERT" in line]
    return f"{type(error).__name__}: {(alerts or lines or [''])[0]}"


def _port_taken(host: str, port: int) -> bool:
    """Whether something listens on the port; connections of a run that just stopped (TIME_WAIT)
    do not count, as they do not for the servers that will bind it (SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _start_demo(settings, url: str, athletes: int):
    """Run the demo race in a thread of its own; returns the function that stops it."""
    from serve.demo import DemoRace

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    demo = DemoRace(settings, url, athletes=athletes, announce=lambda line: print(line, flush=True))

    def run() -> None:
        try:
            loop.run_until_complete(demo.run(stop))
        except Exception as error:  # the API keeps running without its demo
            log.warning("the demo race stopped: %s", error)

    thread = threading.Thread(target=run, name="arena-demo", daemon=True)
    thread.start()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)  # the race under way is ended and made final first

    return halt


LOCAL_BROKER = "mqtt://127.0.0.1:1883"  # the hubs' broker when ARENA_MQTT_URL is unset


_MEMBER_NEEDS_SHARE = "--member needs --share: the hubs of a lane split it through a shared subscription"


def _member(text: str) -> tuple[int, int]:
    """``J/K``: hub process J (0-based) of the K that share each broker."""
    j, slash, k = text.partition("/")
    try:
        member = (int(j), int(k))
    except ValueError:
        member = (-1, 0)
    if not slash or not 0 <= member[0] < member[1]:
        raise argparse.ArgumentTypeError(f"J/K with 0 <= J < K (hub J of K), not {text!r}")
    return member


def _no_such_broker(broker: int, brokers: int) -> str:
    return f"--broker is 0 to {brokers - 1} (ARENA_MQTT_URL lists {brokers} brokers), not {broker}"


def build_hubs(
    settings,
    cluster,
    *,
    broker: int | None = None,
    client_id: str | None = None,
    share: str | None = None,
    member: tuple[int, int] | None = None,
    hubs_per_race: int = 2,
) -> list:
    """The MQTT hubs of ``settings``: one per broker in ``ARENA_MQTT_URL`` (or only broker ``broker``).

    Hub ``i`` has ``shard=(i, n)`` and client id ``{client_id}-{i}`` (the persistent session
    on that broker); with a single broker the id has no suffix, as before shards.
    ``ARENA_MQTT_HUB_PASSWORD`` is the password of user ``arena-hub`` unless a URL names another user.
    ``share``: the shared-subscription group of several hub processes per broker; None: each hub
    holds a plain subscription, which the broker keeps across its own restarts.
    ``member``: ``(j, k)``, this process is hub ``j`` of the ``k`` hub processes of ``share`` on each
    broker, and hears only the race lanes ``lanes_of(j, k, hubs_per_race)``; None: every lane.
    """
    import socket

    from pydantic import TypeAdapter

    from actors.race_client import RaceClient
    from connectors.mosquitto import HUB_USER, lanes_of
    from connectors.mqtt import Hub
    from serve.settings import MqttUrl

    brokers = settings.mqtt_url or (TypeAdapter(MqttUrl).validate_python(LOCAL_BROKER),)
    n = len(brokers)
    if broker is not None and not 0 <= broker < n:
        raise ValueError(_no_such_broker(broker, n))
    if member is not None and share is None:
        raise ValueError(_MEMBER_NEEDS_SHARE)  # plain subscriptions would give each lane to every member, twice
    lanes = None if member is None else lanes_of(*member, hubs_per_race)
    base = client_id or f"arena-hub-{socket.gethostname()}" + ("" if member is None else f"-m{member[0]}")
    hub_password = settings.mqtt_hub_password.get_secret_value() if settings.mqtt_hub_password else None
    races = RaceClient(cluster, host_idle=settings.race_host_idle)  # one per process: what it learned holds for all
    hubs = []
    for i, url in enumerate(brokers):
        if broker is not None and i != broker:
            continue
        hubs.append(
            Hub(
                cluster,
                races=races,
                host=url.host,
                port=url.port,
                client_id=base if n == 1 else f"{base}-{i}",
                username=url.username or (HUB_USER if hub_password else None),
                password=hub_password if hub_password is not None else url.password,
                shard=(i, n),
                group=share,
                lanes=lanes,
            )
        )
    return hubs


def _hub(args: argparse.Namespace) -> int:
    """Ingest device telemetry from the MQTT brokers into live races: by default one hub per broker
    (shard) in this process, or only the hub of ``--broker I``; with ``--share``, several hub processes of one broker split its stream."""
    import ray
    from pydantic import ValidationError

    from serve.context import connect
    from serve.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        print(error, file=sys.stderr)
        return 2
    brokers = len(settings.mqtt_url) or 1
    if args.broker is not None and not 0 <= args.broker < brokers:
        print(_no_such_broker(args.broker, brokers), file=sys.stderr)
        return 2
    if args.member is not None and args.share is None:
        print(_MEMBER_NEEDS_SHARE, file=sys.stderr)
        return 2

    async def run() -> int:
        ray.init(address=settings.ray_address or "auto", namespace=settings.namespace, configure_logging=False)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        hubs = build_hubs(
            settings,
            connect(settings),
            broker=args.broker,
            client_id=args.client_id,
            share=args.share,
            member=args.member,
            hubs_per_race=args.hubs_per_race,
        )
        started = await asyncio.gather(*(hub.start() for hub in hubs), return_exceptions=True)
        failed = [(hub, error) for hub, error in zip(hubs, started, strict=True) if isinstance(error, BaseException)]
        for hub, error in failed:
            print(f"MQTT hub {hub.client_id} could not start on {hub.host}:{hub.port}: {error}", file=sys.stderr)
        running = [hub for hub, error in zip(hubs, started, strict=True) if not isinstance(error, BaseException)]
        if not failed:
            for hub in running:
                index, n = hub.shard
                heard = "every race lane" if hub.lanes is None else f"race lanes {', '.join(map(str, hub.lanes))}"
                print(f"MQTT hub {hub.client_id} on {hub.host}:{hub.port}, broker {index} of {n}, {heard}", flush=True)
            print("Ctrl-C stops", flush=True)
            await stopping.wait()
        stopped = await asyncio.gather(*(hub.stop() for hub in running), return_exceptions=True)
        for hub, error in zip(running, stopped, strict=True):
            if isinstance(error, BaseException):
                log.warning("MQTT hub %s did not stop cleanly: %s", hub.client_id, error)
        return 1 if failed else 0

    return asyncio.run(run())


def _ask_operator(
    url: str, path: str, *, method: str = "GET", timeout: float = 10, retry_for: float = 0
) -> tuple[int, dict]:
    """An operators' route of a running Arena (``ARENA_OPERATOR_TOKEN`` when set): its status and its
    JSON answer. OSError when nothing answers. ``retry_for``: seconds to keep asking again while it
    answers 503 with ``Retry-After`` (a part restarting), as that header says."""
    deadline = time.monotonic() + retry_for
    while True:
        request = urllib.request.Request(f"{url.rstrip('/')}{path}", method=method)
        token = os.environ.get("ARENA_OPERATOR_TOKEN")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            wait = _retry_after(error) if error.code == 503 else None
            if wait is not None and time.monotonic() + wait < deadline:
                time.sleep(wait)
                continue
            try:
                return error.code, json.load(error)
            except ValueError:
                return error.code, {"status": f"HTTP {error.code}"}


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    """The seconds a 503's ``Retry-After`` asks for (1 to 30), or None without one."""
    try:
        return min(max(float(error.headers.get("Retry-After", "")), 1.0), 30.0)
    except ValueError:
        return None


def _health(args: argparse.Namespace) -> int:
    try:
        code, body = _ask_operator(args.url, "/health/details", timeout=30)  # it asks every host and the store
    except OSError as error:
        print(f"Arena does not answer at {args.url}: {error}", file=sys.stderr)
        return 1
    if code not in (200, 503):
        print(f"Arena at {args.url} refused: {body.get('detail', body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0 if body.get("status") == "ok" else 1


def _events(args: argparse.Namespace) -> int:
    """The operator's view of the domain events (serve/operations.py /ops/events)."""
    path = {
        "status": "/ops/events",
        "dead-letters": "/ops/events/dead-letters",
        "replay": "/ops/events/dead-letters/replay",
    }[args.action]
    query = urllib.parse.urlencode({"subscription": args.subscription} if args.subscription else {})
    try:
        replay = args.action == "replay"  # a POST is not asked twice
        code, body = _ask_operator(
            args.url, path + (f"?{query}" if query else ""), method="POST" if replay else "GET",
            timeout=120, retry_for=0 if replay else 60,
        )  # fmt: skip
    except OSError as error:
        print(f"Arena does not answer at {args.url}: {error}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"Arena at {args.url} refused: {body.get('detail', body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


def _segments(args: argparse.Namespace) -> int:
    """``arena segments backfill SEGMENT_ID``: the segment matched against every stored workout, through the running
    Arena (serve/operations.py), its progress shown until it is done."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.segment_id):
        print(f"a segment id is 1 to 64 letters, digits, _ or -, not {args.segment_id!r}", file=sys.stderr)
        return 2
    path = f"/ops/segments/{args.segment_id}/backfill"
    try:
        code, state = _ask_operator(args.url, path, method="POST", timeout=30)
        while code in (200, 202) and state["state"] in ("listing", "running"):
            print(f"{state['state']}: {state['checked']:,} of {state['workouts'] or 0:,} workouts checked, "
                  f"{state['efforts']:,} efforts found", flush=True)  # fmt: skip
            time.sleep(2)
            code, state = _ask_operator(args.url, path, timeout=30)
    except OSError as error:
        print(f"Arena does not answer at {args.url}: {error}", file=sys.stderr)
        return 1
    if code not in (200, 202):
        print(f"Arena at {args.url} refused: {state.get('detail', state)}", file=sys.stderr)
        return 1
    print(f"{state['state']}: {state['checked']:,} workouts checked, {state['efforts']:,} efforts found"
          + (f" ({state['error']})" if state.get("error") else ""))  # fmt: skip
    return 0 if state["state"] == "done" else 1


def _lake_consumers(url: str) -> str:
    """The lake's consumers of the outbox (and the other streams), with their lag, as the running
    Arena's relay reports them; a line saying why not when nothing answers."""
    try:
        code, body = _ask_operator(url, "/ops/events", timeout=30, retry_for=60)  # the relay may be restarting
    except OSError as error:
        return f"\nconsumers: no Arena answers at {url} ({error}); their lag is unknown"
    if code != 200:
        return f"\nconsumers: Arena at {url} refused: {body.get('detail', body)}"
    streams = {name: c for name, c in body.get("consumers", {}).items() if name.startswith("stream:")}
    lines = [f"\nconsumers of the outbox (newest position {body.get('last_position', 0):,})"]
    for name, consumer in sorted(streams.items()):
        failing = f"  last error: {consumer['last_error']}" if consumer.get("last_error") else ""
        lines.append(f"  {name[7:]:<14} position {consumer['position']:>12,}  lag {consumer['lag']:>10,}{failing}")
    return "\n".join(lines if streams else [*lines, "  none: the relay publishes to no stream"])


def _lake(args: argparse.Namespace) -> int:
    from connectors.lake import lake_status, render_status
    from serve.settings import Settings

    settings = Settings()
    root = args.root or str(settings.lake_root)
    if not os.path.isdir(root):
        print(f"No lake at {root}: it appears with the first domain event (ARENA_LAKE_DIR moves it).", file=sys.stderr)
        return 1
    if args.action == "status":
        print(render_status(lake_status(root)))
        print(_lake_consumers(args.url))
        return 0
    import ray

    from connectors.lake.daily import run_daily

    try:
        day = date.fromisoformat(args.day) if args.day else (datetime.now(UTC) - timedelta(days=1)).date()
    except ValueError:
        print(f"--day is a date, YYYY-MM-DD, not {args.day!r}", file=sys.stderr)
        return 2
    # The running Arena's Ray when there is one (ARENA_RAY_ADDRESS, else this machine's), else a local one.
    address = None if settings.ray_address in (None, "local") else settings.ray_address
    try:
        ray.init(address=address or "auto", namespace=settings.namespace, log_to_driver=False, configure_logging=False)
    except ConnectionError:
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if args.action == "backfill":
            return _backfill(root, settings, args.rule, args.user)
        if args.action == "training":
            return _training(root, settings, args.user)
        rows = run_daily(root, day)
    finally:
        ray.shutdown()
    print(
        f"daily aggregates of {day} written under {root}/aggregates: "
        + ", ".join(f"{k} {v:,} rows" for k, v in rows.items())
    )
    return 0


def _backfill(root: str, settings: Settings, rules: list[str] | None, users: list[str] | None) -> int:
    """Award the badges the lake's history earns and the athletes lack, through the running Arena's hosts."""
    from connectors.lake.backfill import backfill
    from engine.gamification.badges import RULES
    from serve.context import connect

    unknown = set(rules or ()) - {rule.id for rule in RULES}
    if unknown:
        print(f"no badge rule {', '.join(sorted(unknown))}; one of {', '.join(r.id for r in RULES)}", file=sys.stderr)
        return 2
    cluster = connect(settings)
    done = asyncio.run(backfill(root, cluster.ask, rules, users))
    awarded = ", ".join(f"{rule} {count:,}" for rule, count in sorted(done["awarded"].items())) or "none missing"
    print(f"back-filled {done['users']:,} athletes' histories from {root}: {awarded}")
    return 0


def _training(root: str, settings: Settings, users: list[str] | None) -> int:
    """Recompute the athletes' training loads from the lake's workouts, through the running Arena's hosts."""
    from connectors.lake.training import recompute
    from serve.context import connect

    cluster = connect(settings)
    done = asyncio.run(recompute(root, cluster.ask, users))
    print(
        f"recomputed {done['users']:,} athletes' training loads from {done['workouts']:,} workouts in {root} "
        f"({done['skipped']:,} skipped) in {done['seconds']} s"
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    """The recommendation models' registry: train (a Ray job over the lake), list, promote, roll back."""
    from engine.recommend import Registry
    from serve.recommender import registry_root
    from serve.settings import Settings

    settings = Settings()
    registry = Registry(args.registry or registry_root(settings))
    try:
        if args.action == "list":
            for meta in registry.versions():
                model = meta["metrics"].get("model", {})
                scores = ", ".join(f"{k} recall@20 {v['recall@20']:.3f}" for k, v in model.items()) or "no hold-out"
                mark = "*" if meta["current"] else " "
                print(f"{mark} {meta['version']}  {meta['counts'].get('pairs', 0):,} pairs  {scores}")
            return 0
        if args.action == "promote":
            if not args.version:
                print("promote needs the version: arena models promote v000002", file=sys.stderr)
                return 2
            print(f"current: {registry.promote(args.version)} (replicas take it within a second)")
            return 0
        if args.action == "rollback":
            print(f"current: {registry.rollback()} (replicas take it within a second)")
            return 0
    except LookupError as error:
        print(str(error).strip("'\""), file=sys.stderr)
        return 1
    import ray

    from serve.recommender import train_from_lake

    address = None if settings.ray_address in (None, "local") else settings.ray_address
    try:
        ray.init(address=address or "auto", namespace=settings.namespace, log_to_driver=False, configure_logging=False)
    except ConnectionError:
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        made = train_from_lake(settings.lake_root, registry.root, epochs=args.epochs, promote=not args.keep)
    except LookupError as error:
        print(str(error).strip("'\""), file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    print(f"trained {made['version']} on {made['counts']['pairs']:,} pairs in {made['counts']['seconds']} s"
          + (", promoted" if made["promoted"] else " (not promoted: arena models promote)"))  # fmt: skip
    return 0


def _retention_now(settings: Settings) -> dict[str, int]:
    """Retention through this process's Ray (``serve/retention.py``): the store read directly, the
    engine asked through the running hosts."""
    from persistence import open_store
    from serve.context import connect
    from serve.retention import run_retention

    cluster = connect(settings)

    async def run() -> dict[str, int]:
        store = open_store(settings.database_url)
        await store.open()
        try:
            return await run_retention(store, cluster.ask, settings.lake_root if settings.lake else None,
                                       telemetry_days=settings.telemetry_retention_days,
                                       audit_days=settings.audit_retention_days)  # fmt: skip
        finally:
            await store.close()

    return asyncio.run(run())


def _retention_loop(settings: Settings, stopping: threading.Event) -> threading.Thread:
    """``arena run``'s retention: once at the start, then every ``retention_interval`` seconds."""

    def loop() -> None:
        while not stopping.is_set():
            try:
                _retention_now(settings)
            except Exception as error:  # the next run tries again
                log.warning("retention did not run: %s", _first_line(error))
            stopping.wait(settings.retention_interval)

    thread = threading.Thread(target=loop, name="arena-retention", daemon=True)
    thread.start()
    return thread


def _privacy(args: argparse.Namespace) -> int:
    """``arena privacy verify USER_ID``: every store, the lake, the stream, the models and Redis scanned
    for anything that still names the person (docs/privacy.md). Exit 0 when clean, 1 when not.
    ``arena privacy retention``: delete what is past its retention now, through the running Arena."""
    from urllib.parse import parse_qsl

    from connectors.erasure import StorePart
    from persistence import open_store
    from serve.erasure import parts
    from serve.settings import Settings

    settings = Settings()
    if args.action == "retention":
        import ray

        address = None if settings.ray_address in (None, "local") else settings.ray_address
        ray.init(address=address or "auto", namespace=settings.namespace, log_to_driver=False, configure_logging=False)
        try:
            report = _retention_now(settings)
        finally:
            ray.shutdown()
        print("retention: " + ", ".join(f"{name} {count:,}" for name, count in report.items()))
        return 0
    if not args.user_id:
        print("arena privacy verify USER_ID: the erased account's id", file=sys.stderr)
        return 2

    async def scan() -> tuple[dict[str, list[str]], list[str]]:
        store = open_store(settings.database_url)
        await store.open()
        try:
            part = StorePart(store, ask=_no_ask)
            found, notices = {"store": await part.remnants(args.user_id)}, await part.notices(args.user_id)
            for other in parts(dict(parse_qsl(settings.eraser_spec()))):
                bind = getattr(other, "bind", None)
                if bind is not None:
                    bind(store, _no_ask)
                try:
                    found[other.name] = await other.remnants(args.user_id)
                finally:
                    close = getattr(other, "close", None)
                    if close is not None:
                        await close()
            return found, notices
        finally:
            await store.close()

    found, notices = asyncio.run(scan())
    dirty = {name: lines for name, lines in found.items() if lines}
    for name in found:
        print(f"{name:<8} {'clean' if name not in dirty else f'{len(dirty[name])} remnant(s)'}")
        for line in dirty.get(name, [])[:50]:
            print(f"  {line}")
    for notice in notices:
        print(f"kept: the erasure notice {notice} (docs/privacy.md)")
    print("clean: nothing names this person" if not dirty else "NOT clean")
    return 1 if dirty else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _push(args: argparse.Namespace) -> int:
    """Serve live race streams from push processes on one port (docs/push.md); with ``--workers N``
    this process starts N of them (``SO_REUSEPORT``) and stops them when it stops."""
    from pydantic import ValidationError

    from serve.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        print(error, file=sys.stderr)
        return 2
    if args.workers == 1:
        from serve.push import run

        asyncio.run(run(settings, args.host, args.port))
        return 0
    one = [sys.executable, "-m", "serve.cli", "push", "--host", args.host, "--port", str(args.port), "--workers", "1"]
    workers = [subprocess.Popen(one) for _ in range(args.workers)]

    def stop(*_: object) -> None:
        for worker in workers:
            worker.terminate()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    codes = [worker.wait() for worker in workers]
    # A worker stopped while it was still starting exits by Ray's own SIGTERM handler (15) or the signal's
    # default (-15): stopped as asked, not failed.
    return max((0 if code in (signal.SIGTERM, -signal.SIGTERM) else code) for code in codes)


async def _no_ask(*_: object) -> None:
    raise RuntimeError("verify only reads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arena", description="Arena: real-time competitions for sports communities.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a local Ray and the Arena API (configured by ARENA_* variables)")
    run.add_argument("--host", help="address to listen on (ARENA_HTTP_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (ARENA_HTTP_PORT, default 8000)")
    run.add_argument("--dashboard", action="store_true", help="also start the Ray dashboard")
    run.add_argument("--verbose", action="store_true", help="print the Ray workers' logs")
    run.add_argument(
        "--demo", action="store_true", help="keep a demo race with simulated athletes running (accounts in data/)"
    )
    run.add_argument("--demo-athletes", type=int, default=300, help="athletes in each demo race (default 300)")
    run.set_defaults(handler=_run)
    hub = commands.add_parser(
        "hub",
        help="run the MQTT hubs against a running Arena, one per broker (ARENA_MQTT_URL, ARENA_MQTT_HUB_PASSWORD)",
    )
    hub.add_argument(
        "--client-id",
        help="stable id of the hubs' persistent sessions (default arena-hub-HOSTNAME; with several brokers, "
        "the hub of broker I adds -I)",
    )
    hub.add_argument(
        "--broker",
        type=int,
        metavar="I",
        help="run only the hub of broker I (0-based, in ARENA_MQTT_URL's order): one hub process per broker",
    )
    hub.add_argument(
        "--share",
        nargs="?",
        const="arena-hub",
        metavar="GROUP",
        help="split each broker's stream with the other hub processes of GROUP (default arena-hub; an MQTT "
        "shared subscription). Without it, each broker has one hub with a plain subscription: Mosquitto 2.0 "
        "restores only those after a restart of its own",
    )
    hub.add_argument(
        "--member",
        type=_member,
        metavar="J/K",
        help="with --share: this process is hub J of the K hub processes on each broker, and hears only its "
        'race lanes, so each race\'s devices reach --hubs-per-race hubs, not K (docs/mqtt.md, "Race lanes")',
    )
    hub.add_argument(
        "--hubs-per-race", type=_positive, default=2, help="with --member: the hubs that hear each lane (default 2)"
    )
    hub.set_defaults(handler=_hub)
    push = commands.add_parser(
        "push", help="serve live race streams outside Serve, joined to a running Arena's Ray (docs/push.md)"
    )
    push.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    push.add_argument("--port", type=int, default=8100, help="port to listen on, shared by the workers (default 8100)")
    push.add_argument("--workers", type=_positive, default=1, help="push processes on the port (default 1)")
    push.set_defaults(handler=_push)
    health = commands.add_parser("health", help="ask a running Arena for its health")
    health.add_argument("--url", default="http://127.0.0.1:8000", help="where Arena answers")
    health.set_defaults(handler=_health)
    events = commands.add_parser(
        "events", help="the domain events' consumers, dead letters, and their replay (ARENA_OPERATOR_TOKEN)"
    )
    events.add_argument("action", choices=("status", "dead-letters", "replay"))
    events.add_argument("--subscription", help="one subscription, 'kind.handler' (default: all)")
    events.add_argument("--url", default="http://127.0.0.1:8000", help="where Arena answers")
    events.set_defaults(handler=_events)
    lake = commands.add_parser(
        "lake",
        help="the data lake: status (freshness, rows per day, versions, null rates), the daily aggregates of a day, "
        "a back-fill of badges from the athletes' history (docs/gamification.md), or the athletes' training loads "
        "recomputed from their workouts (docs/training.md)",
    )
    lake.add_argument("action", choices=("status", "aggregate", "backfill", "training"))
    lake.add_argument("--day", help="aggregate: the day, YYYY-MM-DD (UTC; default yesterday)")
    lake.add_argument(
        "--rule", action="append", help="backfill: a badge rule to replay the history into (repeat; default all)"
    )
    lake.add_argument(
        "--user", action="append", help="backfill, training: one athlete's id (repeat; default everybody)"
    )
    lake.add_argument("--root", help="the lake's folder (default: ARENA_LAKE_DIR, else data/lake)")
    lake.add_argument(
        "--url", default="http://127.0.0.1:8000", help="status: the running Arena whose relay lag to show"
    )
    lake.set_defaults(handler=_lake)
    models = commands.add_parser(
        "models",
        help="recommendation models: train from the lake (a Ray job), list, promote, rollback (docs/models.md)",
    )
    models.add_argument("action", choices=("train", "list", "promote", "rollback"))
    models.add_argument("version", nargs="?", help="promote: the version, e.g. v000002")
    models.add_argument("--epochs", type=int, default=30, help="train: passes over the interactions (default 30)")
    models.add_argument("--keep", action="store_true", help="train: keep the new version without promoting it")
    models.add_argument("--registry", help="the registry's folder (default: models/recommend under ARENA_DATA_DIR)")
    models.set_defaults(handler=_models)
    segments = commands.add_parser(
        "segments",
        help="segments: backfill one, matching every stored workout against it (docs/segments.md; ARENA_OPERATOR_TOKEN)",
    )
    segments.add_argument("action", choices=("backfill",))
    segments.add_argument("segment_id", help="the segment's id")
    segments.add_argument("--url", default="http://127.0.0.1:8000", help="where Arena answers")
    segments.set_defaults(handler=_segments)
    privacy = commands.add_parser(
        "privacy", help="data rights: verify that an erased person is gone from every store (docs/privacy.md)"
    )
    privacy.add_argument("action", choices=("verify", "retention"))
    privacy.add_argument("user_id", nargs="?", help="verify: the erased account's id")
    privacy.set_defaults(handler=_privacy)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo's every request is no news
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
