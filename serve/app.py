"""The Serve application: a FastAPI ingress in front of the engine's hosts."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Response
from ray import serve

from connectors.workout_files import MAX_FILE_BYTES
from serve import pages, problems
from serve.api import accounts, analytics, devices, notifications, races, social, workouts
from serve.context import Arena
from serve.limits import BodyLimit
from serve.metrics import render
from serve.settings import Settings

__all__ = ["api", "Gateway", "build", "API_PREFIX"]

API_PREFIX = "/api/v1"

api = FastAPI(
    title="Arena",
    version="0.1.0",
    description="Real-time competitions for sports communities. Errors are RFC 9457 problem details.",
)
problems.install(api)
api.add_middleware(
    BodyLimit, default=1024 * 1024, uploads={f"{API_PREFIX}/workouts/import": MAX_FILE_BYTES + 64 * 1024}
)
_v1 = APIRouter(prefix=API_PREFIX)
for module in (accounts, workouts, social, notifications, analytics, races, devices):
    _v1.include_router(module.router)
api.include_router(_v1)
pages.install(api)


@serve.deployment(name="gateway", num_replicas=1, max_ongoing_requests=200, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.arena = Arena.build(settings)
        api.state.arena = self.arena

    @api.get("/health", tags=["operations"])
    async def health(self, response: Response) -> dict:
        hosts = await self.arena.cluster.health()
        healthy = all(h["alive"] and h["store"]["ok"] for h in hosts)
        if not healthy:
            response.status_code = 503
        return {"status": "ok" if healthy else "degraded", "store": self.arena.settings.store_name, "hosts": hosts}

    @api.get("/metrics", response_class=Response, tags=["operations"])
    async def metrics(self) -> Response:
        return Response(render(await self.arena.cluster.metrics()), media_type="text/plain; version=0.0.4")

    async def stop_hosts(self) -> None:
        await self.arena.drain()
        await self.arena.spectators.close()
        await self.arena.cluster.stop()


def build(settings: Settings):
    return Gateway.bind(settings)
