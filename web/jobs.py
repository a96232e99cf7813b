"""Background jobs of the console: DMS imports (dry run and real) and prompt-audio rendering.

A job is a ``console_jobs`` row (status, progress, result) written by the thread that runs it,
so whichever console worker process serves the next request shows its progress. Each console
process runs its jobs one at a time on one daemon thread (a ``ThreadPoolExecutor`` of one):
an import is one database transaction and a render is a TensorFlow child process, and running
them side by side would only slow the pages down. A process that dies mid-job leaves its row
``running`` with an old ``updated_at``: :func:`is_stale` says so and the pages show the job as
interrupted (an import's transaction was rolled back with the process, so nothing half-done
remains).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app

from callcenter.storage import Database
from callcenter.storage.models import utcnow
from callcenter.storage.web_models import ConsoleJob, JobStatus

logger = logging.getLogger(__name__)

# A running job writes its progress at least this often (imports report every 1,000 rows, about
# 0.1 s; a render reports when it ends, under a minute for a script): silent for longer, it died.
STALE_AFTER = dt.timedelta(minutes=10)
# Progress writes are throttled so that a 100,000-row import does not commit 100 times a second.
PROGRESS_EVERY = dt.timedelta(seconds=0.5)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()

# A job body: (database, job id, progress(done, total)) -> result stored on the row.
JobBody = Callable[[Database, int, Callable[[int, int | None], None]], dict]


class JobError(Exception):
    """A job failed in a way its user can act on; the message (already translated) is shown."""


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-job")
        return _executor


def submit(job_id: int, body: JobBody) -> Future:
    """Run ``body`` for the (committed) job ``job_id`` on the process's job thread."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return _pool().submit(_run, app, job_id, body)


def drain(timeout: float = 120.0) -> None:
    """Wait until every job submitted so far has finished (the pool runs them one at a time, in
    order, so a no-op queued now runs last). For shutdown and for tests that empty the database."""
    with _executor_lock:
        pool = _executor
    if pool is not None:
        pool.submit(lambda: None).result(timeout=timeout)


def _run(app: Flask, job_id: int, body: JobBody) -> None:
    database: Database = app.extensions["callcenter"].database
    with app.app_context():
        _update(database, job_id, status=JobStatus.RUNNING, started_at=utcnow())
        last = [utcnow() - PROGRESS_EVERY]

        def progress(done: int, total: int | None) -> None:
            now = utcnow()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                _update(database, job_id, done=done, total=total)

        try:
            result = body(database, job_id, progress)
        except JobError as exc:
            _update(database, job_id, status=JobStatus.FAILED, error=str(exc), finished_at=utcnow())
            logger.info("job %s failed: %s", job_id, exc)
            return
        except Exception as exc:  # any failure: the row must say the job ended
            logger.exception("job %s crashed", job_id)
            _update(database, job_id, status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                    finished_at=utcnow())
            return
        _update(database, job_id, status=JobStatus.DONE, result=result, finished_at=utcnow())


def _update(database: Database, job_id: int, **values) -> None:
    values["updated_at"] = utcnow()
    with database.session() as s:
        s.execute(sa.update(ConsoleJob).where(ConsoleJob.id == job_id).values(**values))


def is_stale(job: ConsoleJob, now: dt.datetime | None = None) -> bool:
    """A queued or running job whose process stopped reporting (it will never finish)."""
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return False
    seen = job.updated_at or job.started_at or job.created_at
    return (now or utcnow()) - seen > STALE_AFTER


def wait(job_id: int, database: Database, timeout: float = 60.0) -> ConsoleJob:
    """Block until the job has ended or ``timeout`` passed (for the tests); returns the row."""
    deadline = time.monotonic() + timeout
    while True:
        with database.session() as s:
            job = s.get(ConsoleJob, job_id)
            s.expunge(job)
        if job.status in (JobStatus.DONE, JobStatus.FAILED) or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def tts_python() -> Path:
    """The render venv's Python: ``.venv-tts`` beside the code (tools/tts/setup.sh makes it)."""
    from dialog.audio_render import RENDER_TOOL

    return RENDER_TOOL.parent.parent.parent / ".venv-tts" / "bin" / "python"
