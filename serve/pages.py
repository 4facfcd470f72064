"""The web pages: plain HTML, CSS and JS from ``serve/web``, served by the API itself.

No build step, no inline script and nothing fetched from elsewhere at run time, so the
Content-Security-Policy that ``serve.headers`` gives every page (this origin only, no
inline script) holds: a name that smuggles markup into a page cannot run. The pages call
the public API under ``/api/v1`` like any client; none of these routes is in the OpenAPI
document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

__all__ = ["install", "PAGES"]

WEB = Path(__file__).parent / "web"
PAGES = {
    "/": "index.html",
    "/login": "login.html",
    "/me": "me.html",
    "/organizer": "organizer.html",
    "/gear": "gear.html",
    "/offers": "offers.html",
    "/me/training": "training.html",
}
_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_ASSETS = {p.name: p for p in WEB.iterdir() if p.suffix in (".css", ".js", ".svg")}
_HEADERS = {"Cache-Control": "no-cache"}  # the security headers are serve.headers' (every answer)


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=_TYPES[path.suffix] + "; charset=utf-8", headers=_HEADERS)


def _page(name: str):
    async def page() -> FileResponse:
        return _file(WEB / name)

    return page


async def _race_page(race_id: Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]) -> FileResponse:
    return _file(WEB / "race.html")  # the script reads the race id from the address


async def _group_page(group_id: Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]) -> FileResponse:
    return _file(WEB / "group.html")  # the script reads the group's id from the address


async def _challenge_page(
    challenge_id: Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
) -> FileResponse:
    return _file(WEB / "challenge.html")  # the script reads the challenge's id from the address


async def _route_page(route_id: Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]) -> FileResponse:
    return _file(WEB / "route.html")  # the script reads the route's id from the address


async def _segment_page(
    segment_id: Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
) -> FileResponse:
    return _file(WEB / "segment.html")  # the script reads the segment's id from the address


async def _event_page(
    sport_event_id: Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
) -> FileResponse:
    return _file(WEB / "event.html")  # the script reads the event's id from the address


async def _asset(name: str) -> Response:
    path = _ASSETS.get(name)  # only the files that were there at start: no path ever reaches the disk
    if path is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return _file(path)


def install(app: FastAPI) -> None:
    """Add the pages to ``app``, outside the API's schema."""
    for route, name in PAGES.items():
        app.add_api_route(route, _page(name), methods=["GET"], include_in_schema=False)
    app.add_api_route("/races/{race_id}", _race_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/groups/{group_id}", _group_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/challenges/{challenge_id}", _challenge_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/routes/{route_id}", _route_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/segments/{segment_id}", _segment_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/events/{sport_event_id}", _event_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/static/{name}", _asset, methods=["GET"], include_in_schema=False)
