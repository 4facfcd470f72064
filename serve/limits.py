"""A cap on request bodies, enforced while they arrive (Content-Length or chunked)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.problems import send_problem

__all__ = ["BodyLimit"]


class BodyLimit:
    """Refuse bodies over ``default`` bytes, or over a larger limit for the paths that take files.

    A chunked body is counted as it arrives. Past the limit the app reads a disconnect, and
    whatever it answers to that (FastAPI: a 400 for a body it could not parse) is replaced by
    the 413, which is the answer the client needs.
    """

    def __init__(self, app: ASGIApp, default: int, uploads: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope["path"], self.default)
        detail = f"the request body is over the {limit:,}-byte limit"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await send_problem(send, scope["path"], 413, detail)
            return
        seen = 0
        started = over = False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body it never got whole: the 413 below replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await send_problem(send, scope["path"], 413, detail)
