"""Background jobs: a job whose process stopped reporting is shown as interrupted, never as running."""

import datetime as dt

from callcenter.storage.web_models import ConsoleJob, JobStatus
from web.jobs import STALE_AFTER, is_stale

NOW = dt.datetime(2026, 12, 6, 3, 0)


def test_a_job_is_stale_only_while_unfinished_and_silent():
    running = ConsoleJob(status=JobStatus.RUNNING, created_at=NOW - dt.timedelta(hours=1),
                         updated_at=NOW - STALE_AFTER + dt.timedelta(seconds=5))
    assert not is_stale(running, NOW)
    running.updated_at = NOW - STALE_AFTER - dt.timedelta(seconds=5)
    assert is_stale(running, NOW)
    queued = ConsoleJob(status=JobStatus.QUEUED, created_at=NOW - STALE_AFTER - dt.timedelta(minutes=1))
    assert is_stale(queued, NOW)  # no worker ever took it (its process went away)
    done = ConsoleJob(status=JobStatus.DONE, created_at=NOW - dt.timedelta(days=3), updated_at=NOW - dt.timedelta(days=3))
    assert not is_stale(done, NOW)
