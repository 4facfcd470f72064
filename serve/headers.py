"""Security headers on every answer: pages, API JSON, problems, 404s, CORS preflights.

Pages get a Content-Security-Policy that allows scripts, styles and connections to this
origin only and no inline script, so a name that smuggles markup into a page cannot run;
everything else (JSON, CSV, event streams, assets) gets one that allows nothing, as OWASP
advises for APIs. FastAPI's own /docs and /redoc bootstrap from a CDN with an inline
script: they get a policy that names that CDN and allows their inline scripts by hash,
never any inline script. A route that sets a header itself keeps its own value.
Strict-Transport-Security is sent only when the settings say clients come over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "PAGE_POLICY", "API_POLICY"]

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_DOCS_POLICY = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net {hashes}; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (
        b"permissions-policy",
        b"accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
        b"payment=(), usb=(), interest-cohort=()",
    ),
    (b"cache-control", b"no-store"),  # personal data stays out of shared caches; pages and streams set their own
]
_FOR_PAGES = [(b"content-security-policy", PAGE_POLICY.encode()), *_ALWAYS]
_FOR_THE_REST = [(b"content-security-policy", API_POLICY.encode()), *_ALWAYS]
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _hashes(html: bytes) -> str:
    digests = (base64.b64encode(hashlib.sha256(script).digest()).decode() for script in _INLINE_SCRIPT.findall(html))
    return " ".join(f"'sha256-{digest}'" for digest in digests)


class SecurityHeaders:
    """Adds the headers an answer lacks; ``documents`` are the paths of FastAPI's own docs pages."""

    def __init__(self, app: ASGIApp, documents: Iterable[str] = ()) -> None:
        self.app = app
        self.documents = frozenset(documents)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arena = getattr(scope["app"].state, "arena", None) if "app" in scope else None
        https = arena is not None and arena.settings.https
        if scope["path"] in self.documents:
            await self._document(scope, receive, send, https)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                message["headers"] = _merged(headers, _FOR_PAGES if html else _FOR_THE_REST, https)
            await send(message)

        await self.app(scope, receive, secured)

    async def _document(self, scope: Scope, receive: Receive, send: Send, https: bool) -> None:
        """A docs page, held whole (a few kB) so its inline scripts can be allowed by their hashes."""
        held: list[Message] = []

        async def holding(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, holding)
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        start = next(m for m in held if m["type"] == "http.response.start")
        policy = _DOCS_POLICY.format(hashes=_hashes(body)).encode()
        headers = _merged(list(start.get("headers", ())), [(b"content-security-policy", policy), *_ALWAYS], https)
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _merged(headers: list[tuple[bytes, bytes]], defaults: list[tuple[bytes, bytes]], https: bool) -> list:
    present = {name.lower() for name, _ in headers}
    extra = [(name, value) for name, value in defaults if name not in present]
    if https and _HSTS[0] not in present:
        extra.append(_HSTS)
    return headers + extra


def api_headers(https: bool = False) -> dict[str, str]:
    """The headers of a non-page answer, for answers made outside this middleware (a 500 from
    Starlette's outermost error handler)."""
    return {name.decode(): value.decode() for name, value in _merged([], _FOR_THE_REST, https)}
