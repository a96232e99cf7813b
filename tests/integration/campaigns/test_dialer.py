"""The dialer end to end in one process: scheduler, Redis stream, workers (threads) and the fake runner,
against real Redis and the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time

import pytest
import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.storage import keys, live
from callcenter.storage.db import Database
from callcenter.storage.models import (
    Call,
    CallOutcome,
    CallTask,
    Campaign,
    CampaignStatus,
    CampaignType,
    Customer,
    DoNotCall,
    TaskState,
    Ticket,
    utcnow,
)
from campaigns.queue import DialQueue
from campaigns.rules import NoHolidays, default_policy
from campaigns.scheduler import Scheduler
from campaigns.service import CampaignSpec, campaign_status, change_status, create_campaign
from campaigns.worker import Worker, WorkerOptions, redis_client

pytestmark = pytest.mark.integration

FAST = {"windows": "00:00-24:00", "holidays": False,
        "retry_seconds": {"busy": 1, "no_answer": 1, "unavailable": 1, "failed": 1, "answering_machine": 1,
                          "error": 1, "network_error": 1, "rejected": 1}}
PERSONA = {name: f"139000000{i:02d}" for i, name in enumerate(
    ("satisfied", "complains_wait", "complains_parts", "complains_price", "complains_quality", "busy", "no_answer",
     "hangs_up_early", "wrong_number", "callback", "opt_out", "asks_human", "answering_machine"), start=1)}
OPTIONS = WorkerOptions(claim_timeout=1.0, worker_timeout=2.0, scheduler_interval=0.1, block_ms=200, stop_grace=10)


def today() -> dt.date:
    return dt.date.today()


def make_campaign(db, world, settings, *, personas=(), extra=0, max_channels=4, params=None, ctype="post_service"):
    """A post-service campaign over the given personas' numbers plus ``extra`` satisfied customers."""
    for name in personas:
        cid = world.customer(name, phone=PERSONA[name])
        world.visit(cid, world.vehicle(cid), today() - dt.timedelta(days=1))
    for _ in range(extra):
        cid = world.customer("满意客户")
        world.visit(cid, world.vehicle(cid), today() - dt.timedelta(days=1))
    report = create_campaign(db, CampaignSpec(type=ctype, as_of=today(), params={**FAST, **(params or {})},
                                              max_channels=max_channels),
                             settings, known_scripts={"post_service"})
    return report["id"]


@contextlib.contextmanager
def workers(db, runner, n=2, options=OPTIONS):
    """``n`` workers (threads standing in for processes) sharing one runner."""
    defaults = default_policy(Settings())
    started = []
    for i in range(n):
        w = Worker(Database(db.url), _client(), runner, defaults, options, calendar=NoHolidays(),
                   worker=f"testhost:{os.getpid()}-w{i}")
        t = threading.Thread(target=w.run, name=f"worker-{i}", daemon=True)
        t.start()
        started.append((w, t))
    try:
        yield [w for w, _ in started]
    finally:
        for w, _ in started:
            w.request_stop()
        for w, t in started:
            t.join(timeout=30)
            assert not t.is_alive(), "a worker did not stop"
            w.db.dispose()
            w.redis.close()


_URL: list[str] = []


def _client():
    return redis_client(_URL[0])


@pytest.fixture(autouse=True)
def _redis_url(dialer_redis):
    kwargs = dialer_redis.connection_pool.connection_kwargs
    _URL[:] = [f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"]
    yield


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def campaign_done(db, campaign_id) -> bool:
    with db.session() as s:
        return s.get(Campaign, campaign_id).status is CampaignStatus.COMPLETED


def tasks_by_phone(db, campaign_id) -> dict[str, CallTask]:
    with db.session() as s:
        return {t.phone: t for t in s.scalars(sa.select(CallTask).where(CallTask.campaign_id == campaign_id))}


def test_a_campaign_runs_to_completion_with_every_persona(db, world, campaign_settings, fake_runner_module,
                                                          dialer_redis, tmp_path):
    campaign_id = make_campaign(db, world, campaign_settings, personas=list(PERSONA), extra=12, max_channels=4,
                                params={"max_callbacks": 1})
    runner = fake_runner_module.FakeRunner(capacity=3, call_seconds=0.05, callback_in=0.3,
                                           dial_log=tmp_path / "dials.log")
    events = []
    pubsub = dialer_redis.pubsub()
    pubsub.subscribe(live.CALLS_CHANNEL)
    change_status(db, campaign_id, "start")
    with workers(db, runner, n=2):
        wait_for(lambda: campaign_done(db, campaign_id), what="the campaign to complete")
    while (msg := pubsub.get_message(timeout=0.2)) is not None:
        if msg["type"] == "message":
            events.append(live.decode(msg["data"]))
    pubsub.close()

    tasks = tasks_by_phone(db, campaign_id)
    assert len(tasks) == 25
    assert all(t.state in (TaskState.COMPLETED, TaskState.FAILED) for t in tasks.values())
    by_persona = {name: tasks[phone] for name, phone in PERSONA.items()}
    expected = {
        "satisfied": (TaskState.COMPLETED, CallOutcome.COMPLETED, 1),
        "complains_wait": (TaskState.COMPLETED, CallOutcome.COMPLETED, 1),
        "busy": (TaskState.FAILED, CallOutcome.NOT_REACHED, 3),
        "no_answer": (TaskState.FAILED, CallOutcome.NOT_REACHED, 3),
        "answering_machine": (TaskState.FAILED, CallOutcome.NOT_REACHED, 3),
        "hangs_up_early": (TaskState.COMPLETED, CallOutcome.HUNG_UP, 1),
        "wrong_number": (TaskState.COMPLETED, CallOutcome.WRONG_NUMBER, 1),
        "opt_out": (TaskState.COMPLETED, CallOutcome.OPT_OUT, 1),
        "asks_human": (TaskState.COMPLETED, CallOutcome.TRANSFERRED, 1),
        "callback": (TaskState.COMPLETED, CallOutcome.CALLBACK, 2),  # asked again on the callback: left to an agent
    }
    for name, (state, outcome, attempts) in expected.items():
        t = by_persona[name]
        assert (t.state, t.outcome, t.attempts) == (state, outcome, attempts), name

    # exactly once per attempt: the runner's own log of dials against the database's calls
    dials = fake_runner_module.read_dial_log(tmp_path / "dials.log")
    assert len(dials) == len({(task, attempt) for task, attempt, _, _ in dials})
    with db.session() as s:
        calls = s.execute(sa.select(Call.task_id, Call.attempt, Call.id, Call.ended_at)
                          .where(Call.campaign_id == campaign_id)).all()
        assert sorted((t, a, c) for t, a, c, _ in calls) == sorted((t, a, c) for t, a, c, _ in dials)
        assert all(ended is not None for *_, ended in calls)
        assert s.scalar(sa.select(DoNotCall.phone)) == PERSONA["opt_out"]
        departments = {d for (d,) in s.execute(sa.select(Ticket.department))}
        assert departments == {"after_sales"}
        assert s.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 4  # wait, parts, price, quality
    # the campaign's channel limit held although the workers had 6 slots between them
    assert runner.max_concurrent <= 4
    # the console saw every call start and end, and nothing is left "active"
    ended = {e.call_id for e in events if e.state is live.LiveCallState.ENDED}
    dialing = {e.call_id for e in events if e.state is live.LiveCallState.DIALING}
    assert dialing == ended == {c for _, _, c, _ in dials}
    assert live.active_calls(dialer_redis) == []
    assert dialer_redis.xlen(keys.STREAM) == 0  # every entry acknowledged and deleted

    status = campaign_status(db, campaign_id, campaign_settings)
    assert status["status"] == "completed" and status["tasks"]["completed"] == 22 and status["tasks"]["failed"] == 3
    assert status["dispositions"] == {"answered": len(dials) - 6, "busy": 3, "no_answer": 3}
    assert status["attempts"] == len(dials) and status["in_progress"] == 0


def test_pause_stops_new_dials_and_resume_finishes(db, world, campaign_settings, fake_runner_module, tmp_path):
    campaign_id = make_campaign(db, world, campaign_settings, extra=20, max_channels=2)
    runner = fake_runner_module.FakeRunner(capacity=2, call_seconds=0.15, dial_log=tmp_path / "dials.log")
    change_status(db, campaign_id, "start")
    with workers(db, runner, n=1):
        wait_for(lambda: len(runner.calls) >= 4, what="a few calls")
        change_status(db, campaign_id, "pause")
        time.sleep(0.5)  # calls in progress finish
        paused_at = len(runner.calls)
        time.sleep(1.0)
        assert len(runner.calls) == paused_at, "dialled while paused"
        with db.session() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(CallTask)
                            .where(CallTask.state.in_([TaskState.QUEUED, TaskState.DIALING]))) == 0
        change_status(db, campaign_id, "resume")
        wait_for(lambda: campaign_done(db, campaign_id), what="completion after resume")
    assert len(runner.calls) == 20


def test_a_trunk_that_rejects_every_call_degrades_to_scheduled_retries(db, world, campaign_settings,
                                                                         fake_runner_module, tmp_path):
    params = {"trunk_failure_threshold": 5, "trunk_backoff_seconds": 120}
    campaign_id = make_campaign(db, world, campaign_settings, extra=30, max_channels=3, params=params)
    runner = fake_runner_module.FakeRunner(capacity=3, call_seconds=0.02, trunk_down=True,
                                           dial_log=tmp_path / "dials.log")
    change_status(db, campaign_id, "start")
    with workers(db, runner, n=1):
        wait_for(lambda: len(runner.calls) >= 5, what="the first failures")
        time.sleep(2.0)  # time enough for a tight loop to burn through every task
    dials = len(runner.calls)
    # at most the failure threshold plus the calls already in flight when it tripped
    assert 5 <= dials <= 5 + 3, dials
    status = campaign_status(db, campaign_id, campaign_settings)
    assert status["degraded"] is not None and status["degraded"]["last_sip"] == "403 Forbidden"
    assert status["degraded"]["consecutive_trunk_failures"] == dials
    assert status["tasks"]["failed"] == 0  # one attempt each so far: they wait for their retries
    with db.session() as s:
        failed_tasks = s.scalars(sa.select(CallTask).where(CallTask.attempts == 1)).all()
        assert len(failed_tasks) == dials
        assert all(t.state is TaskState.PENDING and t.last_disposition == "failed" for t in failed_tasks)


def test_rules_at_dial_time_frequency_cap_dnc_and_windows(db, world, campaign_settings, fake_runner_module):
    campaign_id = make_campaign(db, world, campaign_settings, extra=3, max_channels=4)
    tasks = sorted(tasks_by_phone(db, campaign_id).values(), key=lambda t: t.id)
    capped, blocked, fine = tasks
    answered_at = utcnow() - dt.timedelta(days=2)
    world.robot_call(capped.customer_id, answered_at)  # another campaign reached them 2 days ago
    world.dnc(blocked.phone)
    change_status(db, campaign_id, "start")
    redis = _client()
    try:
        # outside the calling window nothing is queued
        with db.session() as s:
            camp = s.get(Campaign, campaign_id)
            camp.params = {**camp.params, "windows": "00:00-00:01"}
        late = dt.datetime.combine(today(), dt.time(6, 0))  # 14:00 in Shanghai
        scheduler = Scheduler(db, redis, default_policy(Settings()), calendar=NoHolidays(), clock=lambda: late)
        report = scheduler.tick()
        assert report.queued == 0 and "calling window" in report.held[campaign_id]
        status = campaign_status(db, campaign_id, campaign_settings, now=late, calendar=NoHolidays())
        assert "outside the calling windows 00:00-00:01" in status["closed_stores"]["S1"]
        with db.session() as s:
            camp = s.get(Campaign, campaign_id)
            camp.params = {**camp.params, "windows": "00:00-24:00"}
        report = Scheduler(db, redis, default_policy(Settings()), calendar=NoHolidays()).tick()
        assert (report.queued, report.deferred, report.cancelled) == (1, 1, 1)
    finally:
        redis.close()
    by_id = {t.id: t for t in tasks_by_phone(db, campaign_id).values()}
    assert by_id[blocked.id].state is TaskState.CANCELLED
    assert by_id[capped.id].state is TaskState.PENDING
    assert by_id[capped.id].next_attempt_at == answered_at + dt.timedelta(days=7)
    assert by_id[fine.id].state is TaskState.QUEUED


def test_queue_is_rebuilt_after_redis_loses_it_and_dead_workers_entries_are_taken_over(
        db, world, campaign_settings, fake_runner_module, dialer_redis, tmp_path):
    campaign_id = make_campaign(db, world, campaign_settings, extra=8, max_channels=8)
    change_status(db, campaign_id, "start")
    redis = _client()
    scheduler = Scheduler(db, redis, default_policy(Settings()), calendar=NoHolidays(), claim_timeout=1,
                          worker_timeout=2)
    assert scheduler.tick().queued == 8
    queue = DialQueue(redis)
    # a worker that read two entries and died before claiming them (kill -9 right after XREADGROUP)
    ghost = queue.read("ghosthost:1", 2, 100)
    assert len(ghost) == 2
    # a worker that claimed an attempt in the database and died during the call
    with db.session() as s:
        task = s.scalar(sa.select(CallTask).where(CallTask.id == ghost[0].task_id))
        task.state = TaskState.DIALING
        task.attempts = 1
        s.add(Call(task_id=task.id, attempt=1, campaign_id=campaign_id, customer_id=task.customer_id,
                   store_id=task.store_id, phone=task.phone, worker="ghosthost:2",
                   started_at=utcnow() - dt.timedelta(seconds=30)))
    # and then Redis forgot everything (FLUSHDB on the test database: FLUSHALL's effect on our keys)
    dialer_redis.flushdb()
    assert not dialer_redis.exists(keys.EPOCH)
    runner = fake_runner_module.FakeRunner(capacity=4, call_seconds=0.05, dial_log=tmp_path / "dials.log")
    with workers(db, runner, n=2):
        wait_for(lambda: campaign_done(db, campaign_id), what="completion after the flush")
    redis.close()
    tasks = tasks_by_phone(db, campaign_id)
    assert all(t.state is TaskState.COMPLETED for t in tasks.values())
    with db.session() as s:
        lost = s.scalar(sa.select(Call).where(Call.worker == "ghosthost:2"))
        assert lost.outcome is CallOutcome.ERROR and "died" in lost.error
        assert s.get(CallTask, ghost[0].task_id).attempts == 2  # written off, then dialled as attempt 2
    dials = fake_runner_module.read_dial_log(tmp_path / "dials.log")
    assert len(dials) == 8 and len({(t, a) for t, a, _, _ in dials}) == 8
    assert dialer_redis.exists(keys.EPOCH)


def test_campaign_status_json_through_the_cli(db, world, campaign_settings, run_cli, cli_env):
    campaign_id = make_campaign(db, world, campaign_settings, extra=2)
    env = {"CALLCENTER_DATA_DIR": str(campaign_settings.data_dir), "CALLCENTER_DATABASE_URL": db.url}
    result = run_cli("campaign", "status", str(campaign_id), "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tasks"] == {"pending": 2, "queued": 0, "dialing": 0, "completed": 0, "failed": 0, "cancelled": 0,
                             "total": 2}
    assert data["dispositions"] == {} and data["status"] == "draft" and data["audience"] == 2
    assert data["excluded"] == {"dnc": 0, "frequency_cap": 0, "no_phone": 0}
    with db.session() as s:
        assert s.get(Customer, tasks_by_phone(db, campaign_id)[next(iter(tasks_by_phone(db, campaign_id)))]
                     .customer_id) is not None
    assert CampaignType.POST_SERVICE.value == data["type"]


def test_dialer_job_runs_inside_a_telephony_worker(db, world, campaign_settings, fake_runner_module):
    """``callcenter worker`` runs ``campaigns.worker:dialer_job(phone, stop, info)`` in each worker process."""
    from types import SimpleNamespace

    import campaigns.worker
    from campaigns.worker import run_dialer_job as dialer_job

    # The default job resolves once the robot runner (campaigns.robot) is installed; without it
    # `callcenter worker` would fail once in the parent instead of crash-looping its workers.
    assert campaigns.worker.dialer_job is dialer_job

    campaign_id = make_campaign(db, world, campaign_settings, extra=6)
    change_status(db, campaign_id, "start")
    settings = campaign_settings.replace(redis_url=_URL[0], dialer_claim_timeout=1, dialer_worker_timeout=2)
    info = SimpleNamespace(settings=settings, args={"runner": "fake_runner:make_runner"}, name="worker-0", index=0)
    stop = threading.Event()
    thread = threading.Thread(target=dialer_job, args=(object(), stop, info), daemon=True)
    thread.start()
    try:
        wait_for(lambda: campaign_done(db, campaign_id), what="the campaign run by dialer_job")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    with pytest.raises(ValueError, match="needs a call runner"):
        dialer_job(object(), threading.Event(), SimpleNamespace(settings=settings, args={"runner": "nope:none"}))
