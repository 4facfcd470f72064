"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Send

from engine.errors import EngineError, Forbidden, NotFound, Rejected

__all__ = ["Problem", "engine_problem", "install", "problem_response", "internal_error", "problem_json", "send_problem"]

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def problem_json(path: str, status: int, detail: str, **extra: Any) -> bytes:
    """A problem's body, for answers made outside FastAPI (ASGI middleware, ``serve.push``)."""
    title = _TITLES.get(status, "Error")
    problem = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": path, **extra}
    return json.dumps(problem).encode()


async def send_problem(send: Send, path: str, status: int, detail: str) -> None:
    """A problem answer sent from ASGI middleware, outside FastAPI's handlers."""
    body = problem_json(path, status, detail)
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def internal_error(request: Request, error: BaseException) -> JSONResponse:
    """A 500 that says nothing of the cause: the cause is logged under an id the client sees."""
    error_id = uuid.uuid4().hex
    log.error("error %s on %s %s: %r", error_id, request.method, request.url.path, error, exc_info=error)
    detail = f"something went wrong on our side; quote error id {error_id} if you report it"
    return problem_response(request, 500, detail, error_id=error_id)


def engine_problem(error: EngineError) -> Problem | None:
    """What the caller is told of an engine's error; None where it is ours to fix (a 500).

    Rejections are written for the caller. Anything else an engine says (a handler that failed,
    a message it could not read) names internals: never sent out."""
    for kind, status in ((NotFound, 404), (Forbidden, 403), (Rejected, 409)):
        if isinstance(error, kind):
            return Problem(status, error.message, code=error.code)
    if error.retryable:
        detail = "the service is busy or restarting; retry in a moment"
        return Problem(503, detail, headers={"Retry-After": "1"}, code=error.code)
    return None


async def _engine(request: Request, error: EngineError) -> JSONResponse:
    problem = engine_problem(error)
    if problem is None:
        return internal_error(request, error)
    if problem.status == 503:
        log.warning("retryable %s on %s %s: %s", error.code, request.method, request.url.path, error.message)
    return problem_response(request, problem.status, problem.detail, problem.headers, **problem.extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(request, error.status, error.detail, error.headers, **error.extra)

    app.exception_handler(EngineError)(_engine)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in error.errors()
        ]
        return problem_response(request, 422, "the request is not valid", errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code, "Error")
        return problem_response(request, error.status_code, detail, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette answers this one outside every middleware: the security headers go on here.
        from serve.headers import api_headers

        arena = getattr(request.app.state, "arena", None)
        response = internal_error(request, error)
        response.headers.update(api_headers(https=arena is not None and arena.settings.https))
        return response
