"""Fault tests: real worker processes (the fake runner stands in for SIP) against real Redis and the
real database, while a worker is killed with SIGKILL, Redis restarts and is flushed, and the
database goes away for 10 seconds. Every task must end exactly once and no attempt be dialled twice.

Redis faults use a throwaway ``redis-server`` started by the test (the machine's shared server is
never restarted or flushed). The PostgreSQL outage is a TCP proxy the test cuts (the machine's server
is never stopped); the SQLite outage is an exclusive lock held by the test.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Call, CallOutcome, CallTask, Campaign, CampaignStatus, TaskState
from campaigns.service import CampaignSpec, change_status, create_campaign

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
FAST = {"windows": "00:00-24:00", "holidays": False,
        "retry_seconds": {"busy": 1, "no_answer": 1, "unavailable": 1, "failed": 1, "answering_machine": 1,
                          "error": 1, "network_error": 1, "rejected": 1}}
# Personas that need several attempts (see campaigns/personas/personas.yaml): busy, no answer,
# callback, answering machine; plus an opt-out. Everyone else answers as the satisfied persona.
SPECIAL = ["13900000006", "13900000007", "13900000010", "13900000013", "13900000011"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcesses:
    """``worker_main.py`` processes configured through CALLCENTER_* variables, like production ones."""

    def __init__(self, tmp_path: Path, *, database_url: str, redis_url: str, data_dir: Path) -> None:
        self.tmp = tmp_path
        self.dial_log = tmp_path / "dials.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
        env.update({
            "CALLCENTER_DATABASE_URL": database_url, "CALLCENTER_REDIS_URL": redis_url,
            "CALLCENTER_DATA_DIR": str(data_dir), "CALLCENTER_ENV": "testing", "CALLCENTER_LOG_LEVEL": "warning",
            "CALLCENTER_DIALER_CLAIM_TIMEOUT": "2", "CALLCENTER_DIALER_WORKER_TIMEOUT": "3",
        })
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int, *, capacity: int = 4, call_seconds: float = 0.25) -> None:
        for _ in range(n):
            i = len(self.procs)
            log = open(self.tmp / f"worker-{i}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "worker_main.py"), "--dial-log", str(self.dial_log),
                 "--capacity", str(capacity), "--call-seconds", str(call_seconds)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def logs(self) -> str:
        return "\n".join((self.tmp / f"worker-{i}.log").read_text(errors="replace") for i in range(len(self.procs)))

    def dials(self) -> list[tuple[int, int, int, int]]:
        rows = []
        if self.dial_log.exists():
            for line in self.dial_log.read_text().splitlines():
                rows.append(tuple(int(x) for x in line.split()))
        return rows


class RedisServer:
    """A throwaway redis-server without persistence: a restart loses everything, like a FLUSHALL."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port} (is the redis-server package installed?)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def command(self, *args: str) -> None:
        import redis

        client = redis.Redis(port=self.port)
        client.execute_command(*args)
        client.close()


def campaign_of(db, world, settings, n: int, max_channels: int) -> int:
    today = dt.date.today()
    phones = SPECIAL + [f"1370000{i:04d}" for i in range(n - len(SPECIAL))]
    world.recent_visitors(phones, today - dt.timedelta(days=1))
    report = create_campaign(db, CampaignSpec(type="post_service", as_of=today, params=FAST,
                                              max_channels=max_channels), settings, known_scripts={"post_service"})
    assert report["audience"] == n
    change_status(db, report["id"], "start")
    return report["id"]


def wait_for(predicate, timeout: float, what: str, workers: WorkerProcesses | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    detail = f"\n--- worker logs ---\n{workers.logs()[-4000:]}" if workers else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


def completed(db, campaign_id) -> bool:
    with db.session() as s:
        return s.get(Campaign, campaign_id).status is CampaignStatus.COMPLETED


def ended_calls(db) -> int:
    with db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Call).where(Call.ended_at.is_not(None)))


def check_exactly_once(db, campaign_id: int, workers: WorkerProcesses, n: int) -> list[Call]:
    """Every task final, every attempt dialled at most once, the calls and the dials agree."""
    dials = workers.dials()
    assert len(dials) == len({(task, attempt) for task, attempt, _, _ in dials}), "an attempt was dialled twice"
    with db.session() as s:
        tasks = s.scalars(sa.select(CallTask).where(CallTask.campaign_id == campaign_id)).all()
        calls = s.scalars(sa.select(Call).where(Call.campaign_id == campaign_id)).all()
    assert len(tasks) == n
    assert {t.state for t in tasks} <= {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}
    assert all(t.finished_at is not None for t in tasks)
    assert all(c.ended_at is not None for c in calls), "an attempt was left unfinished"
    by_task: dict[int, list[int]] = {}
    for c in calls:
        by_task.setdefault(c.task_id, []).append(c.attempt)
    for t in tasks:
        assert sorted(by_task.get(t.id, [])) == list(range(1, t.attempts + 1)), f"task {t.id} attempts"
    db_calls = {(c.task_id, c.attempt, c.id) for c in calls}
    assert {(t, a, c) for t, a, c, _ in dials} <= db_calls
    return calls


# ----------------------------------------------------------------- kill -9


def test_kill_9_of_a_worker_mid_campaign(db, world, campaign_settings, dialer_redis, tmp_path):
    n = 100
    campaign_id = campaign_of(db, world, campaign_settings, n, max_channels=12)
    kwargs = dialer_redis.connection_pool.connection_kwargs
    workers = WorkerProcesses(tmp_path, database_url=db.url, data_dir=campaign_settings.data_dir,
                              redis_url=f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")
    workers.start(3, capacity=4, call_seconds=0.3)
    try:
        wait_for(lambda: len(workers.dials()) >= 25, 60, "the first 25 dials", workers)
        # the victim: the worker with the most calls in progress right now
        with db.session() as s:
            busy = s.execute(sa.select(Call.worker, sa.func.count()).where(Call.ended_at.is_(None))
                             .group_by(Call.worker).order_by(sa.func.count().desc())).first()
        assert busy is not None, "no call in progress to interrupt"
        victim = int(busy[0].rsplit(":", 1)[1])
        assert victim in {p.pid for p in workers.procs}
        os.kill(victim, signal.SIGKILL)
        with db.session() as s:
            interrupted = set(s.scalars(sa.select(Call.id).where(Call.worker == busy[0], Call.ended_at.is_(None))))
        wait_for(lambda: completed(db, campaign_id), 120, "the campaign to complete after the kill", workers)
    finally:
        workers.stop()
    calls = check_exactly_once(db, campaign_id, workers, n)
    written_off = {c.id for c in calls if c.outcome is CallOutcome.ERROR}
    assert interrupted and interrupted <= written_off, "the killed worker's calls were not written off"
    assert all("died during the attempt" in c.error for c in calls if c.id in written_off)
    with db.session() as s:
        # each written-off attempt was followed by a new attempt of its task
        for c in calls:
            if c.id in interrupted:
                assert s.get(CallTask, c.task_id).attempts > c.attempt
        assert s.scalar(sa.select(sa.func.count()).select_from(CallTask)
                        .where(CallTask.campaign_id == campaign_id, CallTask.state == TaskState.COMPLETED)) >= n - 5


# ----------------------------------------------------------------- Redis restart and FLUSHALL


# A Redis fault is the same whatever the database: SQLite only, to keep the suite's time down.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_redis_restart_and_flushall_mid_campaign(db, world, campaign_settings, tmp_path):
    n = 60
    campaign_id = campaign_of(db, world, campaign_settings, n, max_channels=8)
    server = RedisServer(tmp_path)
    server.start()
    workers = WorkerProcesses(tmp_path, database_url=db.url, redis_url=server.url,
                              data_dir=campaign_settings.data_dir)
    workers.start(2, capacity=4, call_seconds=0.2)
    try:
        wait_for(lambda: len(workers.dials()) >= 12, 60, "the first dials", workers)
        server.stop()  # Redis goes down with entries queued and in flight ...
        time.sleep(1.5)
        server.start()  # ... and comes back empty (no persistence)
        wait_for(lambda: len(workers.dials()) >= 35, 60, "dialling to resume after the restart", workers)
        server.command("FLUSHALL")
        wait_for(lambda: completed(db, campaign_id), 120, "the campaign to complete", workers)
    finally:
        workers.stop()
        server.stop()
    calls = check_exactly_once(db, campaign_id, workers, n)
    # live workers were never mistaken for dead ones
    assert not [c for c in calls if c.outcome is CallOutcome.ERROR]
    assert "rebuilt" in workers.logs() or "Redis unavailable" in workers.logs()


# ----------------------------------------------------------------- the database goes away for 10 s


def _lock_sqlite(path: str, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    started.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def test_database_unavailable_for_10_seconds(db, world, campaign_settings, dialer_redis, tmp_path, tcpproxy_module):
    n = 60
    campaign_id = campaign_of(db, world, campaign_settings, n, max_channels=8)
    kwargs = dialer_redis.connection_pool.connection_kwargs
    redis_url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"
    proxy = None
    if db.dialect == "sqlite":
        worker_url = db.url
    else:
        url = sa.engine.make_url(db.url)
        proxy = tcpproxy_module.TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
        worker_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    workers = WorkerProcesses(tmp_path, database_url=worker_url, redis_url=redis_url,
                              data_dir=campaign_settings.data_dir)
    workers.start(3, capacity=4, call_seconds=0.2)
    try:
        wait_for(lambda: len(workers.dials()) >= 12, 60, "the first dials", workers)
        locker = None
        if proxy is None:
            started = threading.Event()
            locker = threading.Thread(target=_lock_sqlite, args=(db.url.split("///", 1)[1], 10.0, started))
            locker.start()
            assert started.wait(30), "could not lock the SQLite database"
        else:
            proxy.cut()
        outage_began = time.monotonic()
        # A COMMIT already on its way when the line was cut may still land: on a loaded machine the
        # server took more than a second for one. Count from 2.5 s into the outage.
        time.sleep(2.5)
        frozen = ended_calls(db)  # read directly (PostgreSQL: not through the proxy)
        time.sleep(6.5)
        assert ended_calls(db) == frozen, "calls were recorded while the database was unavailable"
        if locker is not None:
            locker.join()
        else:
            time.sleep(max(0.0, 10.0 - (time.monotonic() - outage_began)))
            proxy.restore()
        wait_for(lambda: completed(db, campaign_id), 120, "the campaign to complete after the outage", workers)
    finally:
        workers.stop()
        if proxy is not None:
            proxy.close()
    calls = check_exactly_once(db, campaign_id, workers, n)
    # the workers waited: nobody was written off as dead, no result was lost
    assert not [c for c in calls if c.outcome is CallOutcome.ERROR]
    if proxy is not None:
        assert "database unavailable" in workers.logs()
