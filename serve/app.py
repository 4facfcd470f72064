"""The Serve application: a FastAPI ingress in front of the engine's hosts."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from ray import serve

from connectors.workout_files import MAX_FILE_BYTES
from engine.gc_tuning import tune_gc
from serve import operations, pages, problems
from serve.api import (
    accounts,
    achievements,
    admin,
    analytics,
    campaigns,
    challenges,
    devices,
    export,
    gear,
    group_events,
    groups,
    notifications,
    outbound_webhooks,
    premium,
    privacy,
    races,
    recommendations,
    routes,
    segments,
    shop,
    social,
    sport_events,
    training,
    workouts,
)
from serve.context import Arena
from serve.cors import Cors
from serve.headers import SecurityHeaders
from serve.limits import BodyLimit
from serve.recommender import Recommender, registry_root
from serve.settings import Settings
from serve.strict_json import StrictJson
from serve.throttle import throttled

__all__ = ["api", "Gateway", "build", "stop", "API_PREFIX"]

API_PREFIX = "/api/v1"

api = FastAPI(
    title="Arena",
    version="0.1.0",
    description="Real-time competitions for sports communities. Errors are RFC 9457 problem details.",
)
problems.install(api)
api.add_middleware(StrictJson)  # inside BodyLimit (added after it: outer), which caps what it reads
api.add_middleware(
    BodyLimit,
    default=1024 * 1024,
    uploads={
        f"{API_PREFIX}/workouts/import": MAX_FILE_BYTES + 64 * 1024,
        f"{API_PREFIX}/routes": MAX_FILE_BYTES + 64 * 1024,
        f"{API_PREFIX}{shop.WEBHOOK_PATH}": shop.WEBHOOK_MAX_BYTES,  # smaller: nobody signed in sends it
        f"{API_PREFIX}{premium.WEBHOOK_PATH}": premium.WEBHOOK_MAX_BYTES,
    },
)
api.add_middleware(Cors)  # preflights are answered before any body is read
api.add_middleware(
    SecurityHeaders,
    documents=[url for url in (api.docs_url, api.redoc_url, api.swagger_ui_oauth2_redirect_url) if url is not None],
)


# Routes are matched in turn (each failed match costs FastAPI about 2 µs), so the
# race-day paths come first; workouts' /users/{id}/workouts (and achievements') before social's /users/{id}/{which}.
for module in (
    races,
    accounts,
    export,
    notifications,
    workouts,
    achievements,
    social,
    analytics,
    training,
    devices,
    groups,
    group_events,
    challenges,
    recommendations,
    gear,
    shop,
    premium,
    campaigns,
    segments,
    routes,
    sport_events,
    admin,
    outbound_webhooks,
    privacy,
):
    api.include_router(module.router, prefix=API_PREFIX, dependencies=[Depends(throttled)])  # docs/security.md
api.include_router(operations.router)
pages.install(api)


async def stop(arena: Arena) -> None:
    """Finish background work, then snapshot and stop the hosts."""
    await arena.drain()
    await arena.spectators.close()
    await arena.cluster.stop()


def _serving(arena: Arena, recommender=None) -> FastAPI:
    api.state.arena = arena
    api.state.recommender = recommender  # the Recommender deployment's handle (serve/recommender.py)
    return api


@serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Gateway:
    """The API as a Serve deployment: each replica builds its own ``Arena`` context."""

    def __init__(self, settings: Settings, recommender=None) -> None:
        tune_gc(settings.gc_young)  # the replica owns its process (engine.gc_tuning)
        self.arena = Arena.build(settings)
        self.recommender = recommender

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Late-bound, so the replica serves the module's own ``api`` with this replica's
        # ``Arena`` in its state; given the object, Serve would serve a pickled copy.
        return _serving(self.arena, self.recommender)

    async def stop_hosts(self) -> None:
        await stop(self.arena)


def build(settings: Settings):
    # mypy keeps a decorated class's own type: serve.deployment made Gateway a Deployment.
    return Gateway.options(  # type: ignore[attr-defined]
        num_replicas=settings.replicas,
        # Live streams hold a request each for as long as they watch; the hosts' bounded
        # mailboxes, not this count, push back on work (Overloaded: 503 + Retry-After).
        max_ongoing_requests=settings.replica_requests,
        logging_config={"enable_access_log": settings.access_log},
        # A stopping replica waits at most this long for its requests: API calls take
        # milliseconds, an upload seconds; live streams are cut (their clients reconnect).
        graceful_shutdown_wait_loop_s=0.5,
        graceful_shutdown_timeout_s=10,
    ).bind(settings, Recommender.bind(str(registry_root(settings))))  # type: ignore[attr-defined]
