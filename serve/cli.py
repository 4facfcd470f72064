"""The ``arena`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
import urllib.request

__all__ = ["main"]

log = logging.getLogger("arena")


def _run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from serve.app import build
    from serve.ingress import prepare_local_ray
    from serve.settings import Settings

    overrides = {k: v for k, v in {"http_host": args.host, "http_port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    if settings.ray_address in (None, "local"):
        prepare_local_ray(settings.ingress)
    ray.init(
        address=settings.ray_address,
        num_cpus=settings.num_cpus,
        namespace=settings.namespace,
        include_dashboard=args.dashboard,
        configure_logging=False,
        log_to_driver=args.verbose,
    )
    # From here on Ctrl-C means "stop cleanly", even while the app is still deploying.
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
    serve.run(build(settings), name="arena", route_prefix="/")
    url = f"http://{settings.http_host}:{settings.http_port}"
    print(f"Arena is running at {url}  (store: {settings.store_name}; health: {url}/health; Ctrl-C stops)", flush=True)
    print(f"Pages: {url}/ (races)  {url}/organizer  {url}/me  {url}/login", flush=True)
    demo = _start_demo(settings, url, args.demo_athletes) if args.demo else None

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
    if settings.ray_address in (None, "local"):  # our own local Ray: take it down with us
        serve.shutdown()
        ray.shutdown()
    print("Arena stopped.", flush=True)
    return 0


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
        thread.join(timeout=10)

    return halt


def _hub(args: argparse.Namespace) -> int:
    """Ingest device telemetry from the MQTT broker into live races (several hubs share the stream)."""
    from urllib.parse import urlsplit

    import ray

    from connectors.mqtt_hub import Hub
    from serve.context import connect
    from serve.settings import Settings

    settings = Settings()
    url = urlsplit(settings.mqtt_url or "mqtt://127.0.0.1:1883")
    if url.scheme != "mqtt" or not url.hostname:
        print(f"ARENA_MQTT_URL is mqtt://[user:password@]host[:port], not {settings.mqtt_url}", file=sys.stderr)
        return 2
    password = settings.mqtt_hub_password.get_secret_value() if settings.mqtt_hub_password else url.password

    async def run() -> None:
        ray.init(address=settings.ray_address or "auto", namespace=settings.namespace, configure_logging=False)
        hub = Hub(
            connect(settings),
            host=url.hostname,
            port=url.port or 1883,
            client_id=args.client_id,
            username=url.username,
            password=password,
        )
        await hub.start()
        print(f"MQTT hub {hub.client_id} on {hub.host}:{hub.port} (Ctrl-C stops)", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        await hub.stop()

    asyncio.run(run())
    return 0


def _health(args: argparse.Namespace) -> int:
    try:
        with urllib.request.urlopen(f"{args.url.rstrip('/')}/health", timeout=10) as answer:
            body = json.load(answer)
    except OSError as error:
        print(f"Arena does not answer at {args.url}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0 if body.get("status") == "ok" else 1


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
        "hub", help="run an MQTT hub against a running Arena (ARENA_MQTT_URL, ARENA_MQTT_HUB_PASSWORD)"
    )
    hub.add_argument("--client-id", help="stable id of this hub's persistent session (default arena-hub-HOSTNAME)")
    hub.set_defaults(handler=_hub)
    health = commands.add_parser("health", help="ask a running Arena for its health")
    health.add_argument("--url", default="http://127.0.0.1:8000", help="where Arena answers")
    health.set_defaults(handler=_health)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
