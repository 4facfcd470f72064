"""Cross-origin access: none unless ``ARENA_CORS_ORIGINS`` lists the origins a browser may call from.

With no origins (the default) nothing is added: browsers keep the API same-origin, and
a preflight gets no ``Access-Control-Allow-Origin``. With origins, Starlette's
``CORSMiddleware`` answers for them alone, with the methods and headers the API uses
and no credentials (the API takes bearer tokens, never cookies). The origins come from
the replica's settings, which are known only once a request arrives.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Cors", "METHODS", "HEADERS"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HEADERS = ("Authorization", "Content-Type", "Last-Event-ID")


class Cors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._built: tuple[tuple[str, ...], CORSMiddleware] | None = None

    def _for(self, origins: tuple[str, ...]) -> CORSMiddleware:
        if self._built is None or self._built[0] != origins:
            middleware = CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=METHODS,
                allow_headers=HEADERS,
                expose_headers=("Retry-After",),
                allow_credentials=False,
                max_age=600,
            )
            self._built = (origins, middleware)
        return self._built[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arena = getattr(scope["app"].state, "arena", None) if "app" in scope else None
        origins = arena.settings.cors_origins if arena is not None else ()
        if scope["type"] != "http" or not origins:
            await self.app(scope, receive, send)
            return
        await self._for(origins)(scope, receive, send)
