"""The peer of the Serve ingress: Arena's own FastAPI app under plain uvicorn.

The same ``serve.app.api`` object, the same ``Arena`` context and the same engine
hosts; only the HTTP path differs (one uvicorn process, no Serve proxy or router).
``loadtest.bench_ingress`` starts it; by hand:
``.venv/bin/python -m loadtest.ingress_peer --port 8200``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import ray
import uvicorn

from serve.app import api, stop
from serve.context import Arena
from serve.ingress import prepare_local_ray
from serve.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args()

    settings = Settings(http_host=args.host, http_port=args.port)
    prepare_local_ray("uvicorn")  # the engine's hosts as Arena runs them, no Serve switches
    ray.init(
        address=settings.ray_address,
        num_cpus=settings.num_cpus,
        namespace=settings.namespace,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    # Serve's replicas run uvicorn with these options (ray/serve/_private/http_util.py).
    server = uvicorn.Server(
        uvicorn.Config(api, host=args.host, port=args.port, lifespan="off", access_log=False, log_level="warning")
    )

    async def serve_until_stopped() -> None:
        arena = Arena.build(settings)
        api.state.arena = arena
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
        await server.serve()
        await stop(arena)

    asyncio.run(serve_until_stopped())
    ray.shutdown()


if __name__ == "__main__":
    main()
