"""Background jobs (import, train, pre-label): one worker thread, progress readable at GET /api/jobs/{id}."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, HTTPException, Request

from pixclass.errors import PixclassError
from pixclass.server.auth import Principal, require

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["jobs"])
Progress = Callable[[str, int, int], None]
KEEP = 200  # finished jobs remembered


class JobCancelled(Exception):
    """Raised from a cancelled job's next progress report: the job stops there (a training between two steps)."""


@dataclass
class Job:
    id: str
    kind: str
    user: str
    params: dict
    status: str = "queued"  # queued | running | done | failed | cancelled
    stage: str = ""
    done: int = 0
    total: int = 0
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancelled_by: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "user": self.user, "params": self.params, "status": self.status,
                "stage": self.stage, "done": self.done, "total": self.total, "result": self.result,
                "error": self.error, "created": self.created, "finished": self.finished,
                "cancelled_by": self.cancelled_by}


class JobManager:
    """Runs job functions ``fn(progress) -> dict`` one at a time (training uses every core anyway)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, kind: str, user: str, params: dict, fn: Callable[[Progress], dict]) -> Job:
        job = self.submit_if_idle(kind, user, params, fn, only_if_idle=False)
        assert job is not None
        return job

    def submit_if_idle(self, kind: str, user: str, params: dict, fn: Callable[[Progress], dict], *,
                       only_if_idle: bool = True, same: tuple[str, ...] = ()) -> Job | None:
        """Like submit, but returns None instead when a job of this kind (with the same ``same`` params, e.g. the
        same dataset) is queued or running.

        The check and the submission happen under one lock, so two requests racing (two annotators' Nth label)
        start one job, not two.
        """
        job = Job(uuid.uuid4().hex[:12], kind, user, params)
        with self._lock:
            if only_if_idle and self._active(kind, {k: params.get(k) for k in same}):
                return None
            if self._pool is None:  # started on first use, never at import
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixclass-job")
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished]
            for old in sorted(finished, key=lambda j: j.created)[: max(0, len(finished) - KEEP)]:
                del self._jobs[old.id]
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: Callable[[Progress], dict]) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            if job.cancelled_by:
                raise JobCancelled
            job.stage, job.done, job.total = stage, done, total

        with self._lock:
            if job.status == "cancelled":  # before it started
                return
            job.status = "running"
        try:
            job.result = fn(progress)
            job.status = "done"
        except JobCancelled:
            job.status, job.error = "cancelled", f"Cancelled by {job.cancelled_by} at {job.stage or 'the start'}."
        except PixclassError as e:
            job.status, job.error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a job must never take the worker down; the error is shown
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        job.finished = time.time()

    def cancel(self, job_id: str, by: str) -> Job | None:
        """Stop a job: a queued one never starts, a running one stops at its next progress report (training: the
        next step; what it stored so far stays). None: no such job. A finished job is left as it is."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return job
            job.cancelled_by = by
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
                job.error = f"Cancelled by {by} before it started."
            return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def active(self, kind: str, **params) -> Job | None:
        """A queued or running job of this kind whose params include ``params``, if any."""
        with self._lock:
            return self._active(kind, params)

    def _active(self, kind: str, params: dict) -> Job | None:
        return next((j for j in self._jobs.values() if j.kind == kind and j.status in ("queued", "running")
                     and all(j.params.get(k) == v for k, v in params.items())), None)

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job finishes (tests and scripts)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.get(job_id)
            if job is None or job.finished:
                return job  # type: ignore[return-value]
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still running after {timeout}s")

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


@router.get("/jobs")
def list_jobs(request: Request, _: Principal = Depends(require("viewer"))) -> list[dict]:
    return [j.to_dict() for j in request.app.state.jobs.list()[:50]]


def _job(request: Request, job_id: str) -> Job:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"No job {job_id!r}. GET /api/jobs lists recent jobs.")
    return job


@router.get("/jobs/{job_id}")
def get_job(job_id: str, request: Request, _: Principal = Depends(require("viewer"))) -> dict:
    return _job(request, job_id).to_dict()


@router.delete("/jobs/{job_id}")
def cancel_job(job_id: str, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Cancel a job: your own, or anyone's as an admin. A queued job never starts; a running one stops at its next
    step and ends "cancelled". A finished job is a 409."""
    job = _job(request, job_id)
    if user.role != "admin" and job.user != user.name:
        raise HTTPException(403, f"Job {job_id} is {job.user}'s; only they or an admin can cancel it.")
    if job.finished:
        raise HTTPException(409, f"Job {job_id} already ended ({job.status}).")
    return request.app.state.jobs.cancel(job_id, user.name).to_dict()
