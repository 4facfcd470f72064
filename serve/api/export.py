"""Data export (GDPR Art. 20, docs/privacy.md): start a job that builds the archive in the background,
follow it, and download it once through a short-lived signed link.

The job's state is the athlete's ``DataExport`` entity, so any replica answers for it and a job whose
replica stopped is failed at its deadline. The archive is ``<data_dir>/exports/<user id>/<random>.zip``:
gone once downloaded, and swept once its link's lifetime is over. A link is
``.../me/export/<job>/download?user=<id>&expires=<unix s>&signature=<HMAC-SHA256>`` with a key derived
from the signing secret (like ``serve.event_tokens``): a forged, altered, expired or other athlete's link
is refused before any entity is asked, and says nothing of whether the job exists.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from actors.data_export import DataExport
from serve.addresses import client_address
from serve.audit import audit
from serve.context import Arena, ArenaDep, CallerDep, EntityId, OptionalCallerDep, new_id
from serve.export import write_archive
from serve.problems import Problem
from serve.settings import Settings

__all__ = ["BUILD_DEADLINE_S", "router", "export_folder", "link_secret"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["accounts"])

BUILD_DEADLINE_S = 600.0  # a job still preparing after this is failed: its replica stopped
_NO_SUCH = "no such export, or the link is not valid"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHOWN = ("id", "status", "created_at", "ready_at", "expires_at", "size", "downloaded_at", "error")


def link_secret(settings: Settings) -> str:
    """The key of download links: derived from the signing secret, like the other signed links."""
    return hmac.new(settings.signing_secret().encode(), b"arena export links", hashlib.sha256).hexdigest()


def export_folder(settings: Settings, user_id: str) -> Path:
    """Where an athlete's archives are written (erasure removes it whole)."""
    return settings.data_dir.resolve() / "exports" / user_id


def _mac(secret: str, user_id: str, job_id: str, expires: str) -> str:
    digest = hmac.new(secret.encode(), f"export:{user_id}:{job_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def _shown(request: Request, settings: Settings, user_id: str, job: dict) -> dict:
    shown = {key: job.get(key) for key in _SHOWN}
    if job["status"] == "ready":
        expires = str(int(job["expires_at"]))
        query = {
            "user": user_id,
            "expires": expires,
            "signature": _mac(link_secret(settings), user_id, job["id"], expires),
        }
        path = request.url_for("download_export", job_id=job["id"]).path
        shown["download_url"] = f"{path}?{urlencode(query)}"
    return shown


@router.post("/me/export", status_code=202, summary="Start building the archive of everything Arena holds about me")
async def start_export(caller: CallerDep, request: Request, response: Response, arena: ArenaDep) -> dict:
    file = f"{secrets.token_urlsafe(24)}.zip"
    entity = arena.ref(DataExport, caller.id)
    job = await entity.ask(DataExport.start, job_id=new_id(), file=file, deadline=time.time() + BUILD_DEADLINE_S)
    await asyncio.to_thread(_sweep, arena.settings, caller.id, file)
    arena.spawn(_build(arena, caller.id, job["id"], file), f"data export {job['id']}")
    await audit(arena, "account.export_requested", actor=caller.id, address=client_address(request), job=job["id"])
    response.headers["Location"] = str(request.url_for("export_status").path)
    return _shown(request, arena.settings, caller.id, job)


@router.get("/me/export", name="export_status", summary="My latest data export: its status and, once ready, its link")
async def export_status(caller: CallerDep, request: Request, arena: ArenaDep) -> dict:
    """``status``: ``none`` (never asked), ``preparing``, ``ready`` (with ``download_url``, good once until
    ``expires_at``), ``downloaded``, ``failed`` or ``expired``."""
    job = await arena.ref(DataExport, caller.id).ask(DataExport.latest)
    if job is None:
        return {key: None for key in _SHOWN} | {"status": "none"}
    return _shown(request, arena.settings, caller.id, job)


@router.get(
    "/me/export/{job_id}/download",
    name="download_export",
    response_class=FileResponse,
    summary="Download my archive, once, through the signed link of GET /me/export (no sign-in needed)",
    responses={200: {"content": {"application/zip": {}}}},
)
async def download_export(
    job_id: EntityId,
    request: Request,
    arena: ArenaDep,
    caller: OptionalCallerDep,
    user: Annotated[str, Query(max_length=64)],
    expires: Annotated[str, Query(max_length=12)],
    signature: Annotated[str, Query(max_length=64)],
) -> FileResponse:
    signed = _ID.fullmatch(user) and expires.isdigit() and signature.isascii()
    if not signed or not hmac.compare_digest(_mac(link_secret(arena.settings), user, job_id, expires), signature):
        raise Problem(404, _NO_SUCH)
    if caller is not None and caller.id != user:  # signed in as someone else: not theirs to take
        raise Problem(404, _NO_SUCH)
    if int(expires) <= time.time():
        raise Problem(403, "this download link has expired: start a new export")
    entity = arena.ref(DataExport, user)
    job = await entity.ask(DataExport.job, job_id=job_id)
    if job is None or job["status"] in ("preparing", "failed"):
        raise Problem(404, _NO_SUCH)
    path = export_folder(arena.settings, user) / job["file"]
    if job["status"] == "ready" and not path.is_file():  # not claimed: a replica that has it may answer
        raise Problem(410, "this archive is no longer available: start a new export")
    claim = await entity.ask(DataExport.claim, job_id=job_id)
    if claim["outcome"] == "missing":
        raise Problem(404, _NO_SUCH)
    if claim["outcome"] != "ok":
        raise Problem(410, "this archive was already downloaded, or its link expired: start a new export")
    await audit(arena, "account.export_downloaded", actor=user, address=client_address(request), job=job_id)
    day = datetime.fromtimestamp(claim["job"]["ready_at"], UTC).date().isoformat()
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"arena-export-{day}.zip",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


async def _build(arena: Arena, user_id: str, job_id: str, file: str) -> None:
    path = export_folder(arena.settings, user_id) / file
    entity = arena.ref(DataExport, user_id)
    try:
        size = await write_archive(arena, user_id, path)
    except Exception as error:
        log.error("data export %s of %s failed: %r", job_id, user_id, error, exc_info=error)
        await entity.ask(DataExport.fail, job_id=job_id, error="the archive could not be built: start a new export")
        return
    ttl = arena.settings.export_link_ttl
    job = await entity.ask(DataExport.finish, job_id=job_id, size=size, expires_at=time.time() + ttl)
    if job["status"] != "ready":  # past its deadline: failed, and a new job may be under way
        path.unlink(missing_ok=True)
        return
    asyncio.get_running_loop().call_later(ttl + 1, _remove, path)  # the sweep catches it if this replica stops


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _sweep(settings: Settings, user_id: str, keep: str) -> None:
    """Delete the athlete's archives but ``keep``, and anyone's older than a job can live (built by a
    replica that stopped before it could delete them)."""
    root = settings.data_dir.resolve() / "exports"
    oldest = time.time() - BUILD_DEADLINE_S - settings.export_link_ttl
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            for entry in folder.iterdir():
                if (folder.name == user_id and not entry.name.startswith(keep)) or entry.stat().st_mtime < oldest:
                    entry.unlink(missing_ok=True)
            if folder.stat().st_mtime < oldest:
                os.rmdir(folder)  # only once empty: the folder's name is the athlete's id
        except OSError:  # another replica swept it first, or the folder is in use
            continue
