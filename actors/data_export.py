"""An athlete's data exports (docs/privacy.md), addressed by the athlete's account id: the jobs that
build their archive, and whether its one download is still to come.

    preparing ─finish─▶ ready ─claim─▶ downloaded
        │                 └─the link's lifetime is over (timer)─▶ expired
        └─fail, or its deadline passes (timer: the replica building it stopped)─▶ failed

One job is preparing at a time; a new one expires a ready one (its link stops working). The archive
is a file the API writes and deletes: this entity only decides, so a replica that restarts, or
another one, answers the same. Bounded: the last ``KEPT`` jobs.
"""

from __future__ import annotations

from engine.entity import Entity, query, update
from engine.errors import Rejected

__all__ = ["DataExport", "KEPT", "STATUSES"]

KEPT = 10
STATUSES = ("preparing", "ready", "downloaded", "failed", "expired")


class DataExport(Entity):
    kind = "data_export"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.jobs: list[dict] = []  # oldest first; the last is the one shown

    def _job(self, job_id: str) -> dict | None:
        return next((job for job in self.jobs if job["id"] == job_id), None)

    @update
    def start(self, job_id: str, file: str, deadline: float) -> dict:
        """A new job, whose archive is written to ``file`` (a random name under the athlete's folder);
        failed unless finished by ``deadline``."""
        if self.jobs and self.jobs[-1]["status"] == "preparing":
            raise Rejected("an export is already being prepared: wait until it is ready")
        if self._job(job_id) is not None:
            raise Rejected(f"export {job_id} already exists")
        for job in self.jobs:
            if job["status"] == "ready":
                job["status"] = "expired"
        job = {"id": job_id, "status": "preparing", "created_at": self.now, "deadline": deadline, "file": file,
               "ready_at": None, "expires_at": None, "size": None, "downloaded_at": None, "error": None}  # fmt: skip
        self.jobs = [*self.jobs, job][-KEPT:]
        self.cancel_timer("expiry")
        self.set_timer("deadline", deadline, "give_up", {"job_id": job_id})
        return dict(job)

    @update
    def finish(self, job_id: str, size: int, expires_at: float) -> dict:
        """The archive is written: downloadable until ``expires_at``. A job that is no longer preparing
        (its deadline passed) stays as it is, and its file is the caller's to delete."""
        job = self._job(job_id)
        if job is None or job["status"] != "preparing":
            return {"id": job_id, "status": job["status"] if job else "failed"}
        job.update(status="ready", ready_at=self.now, expires_at=expires_at, size=size)
        self.cancel_timer("deadline")
        self.set_timer("expiry", expires_at, "expire", {"job_id": job_id})
        return dict(job)

    @update
    def fail(self, job_id: str, error: str) -> None:
        self._end(job_id, "preparing", "failed", error=error[:200])

    @update
    def give_up(self, job_id: str) -> None:
        """The deadline's timer: a job still preparing was lost with its replica; the athlete may start again."""
        self._end(job_id, "preparing", "failed", error="interrupted: start a new export")

    @update
    def expire(self, job_id: str) -> None:
        """The link's lifetime is over."""
        self._end(job_id, "ready", "expired")

    def _end(self, job_id: str, was: str, status: str, **fields: str) -> None:
        job = self._job(job_id)
        if job is not None and job["status"] == was:
            job.update(status=status, **fields)
            self.cancel_timer("deadline" if was == "preparing" else "expiry")

    @update
    def claim(self, job_id: str) -> dict:
        """The one download: ``{"outcome": "ok", "job"}`` the first time before the link's end, then
        ``gone``; ``missing`` for a job that never became ready (or is not this athlete's)."""
        job = self._job(job_id)
        if job is None or job["status"] in ("preparing", "failed"):
            return {"outcome": "missing"}
        if job["status"] == "ready" and self.now < job["expires_at"]:
            job.update(status="downloaded", downloaded_at=self.now)
            self.cancel_timer("expiry")
            return {"outcome": "ok", "job": dict(job)}
        self._end(job_id, "ready", "expired")
        return {"outcome": "gone"}

    @query
    def latest(self) -> dict | None:
        return dict(self.jobs[-1]) if self.jobs else None

    @query
    def job(self, job_id: str) -> dict | None:
        job = self._job(job_id)
        return dict(job) if job is not None else None
