"""The Serve application: a FastAPI ingress in front of the engine's hosts."""

from __future__ import annotations

from fastapi import FastAPI, Response
from ray import serve

from engine.cluster import Cluster
from engine.ray_host import HostSpec
from serve.kinds import KINDS
from serve.metrics import render
from serve.settings import Settings

__all__ = ["api", "Gateway", "build"]

api = FastAPI(title="Arena", version="0.1.0", description="Real-time competitions for sports communities.")


@serve.deployment(name="gateway", num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        spec = HostSpec(
            settings.database_url,
            KINDS,
            settings.host_config(),
            hosts=settings.hosts,
            shards=settings.shards,
        )
        self.cluster = Cluster(spec, namespace=settings.namespace)

    @api.get("/health")
    async def health(self, response: Response) -> dict:
        hosts = await self.cluster.health()
        healthy = all(h["alive"] and h["store"]["ok"] for h in hosts)
        if not healthy:
            response.status_code = 503
        return {"status": "ok" if healthy else "degraded", "store": self.settings.store_name, "hosts": hosts}

    @api.get("/metrics", response_class=Response)
    async def metrics(self) -> Response:
        return Response(render(await self.cluster.metrics()), media_type="text/plain; version=0.0.4")

    async def stop_hosts(self) -> None:
        await self.cluster.stop()


def build(settings: Settings):
    return Gateway.bind(settings)
