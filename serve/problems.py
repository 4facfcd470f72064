"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from engine.errors import EngineError, Forbidden, NotFound, Rejected

__all__ = ["Problem", "install", "problem_response"]

MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
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


def _engine_status(error: EngineError) -> tuple[int, dict[str, str]]:
    if isinstance(error, NotFound):
        return 404, {}
    if isinstance(error, Forbidden):
        return 403, {}
    if isinstance(error, Rejected):
        return 409, {}
    if error.retryable:
        return 503, {"Retry-After": "1"}
    return 500, {}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(request, error.status, error.detail, error.headers, **error.extra)

    @app.exception_handler(EngineError)
    async def _engine(request: Request, error: EngineError) -> JSONResponse:
        status, headers = _engine_status(error)
        return problem_response(request, status, error.message, headers, code=error.code)

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
