"""The scheduler: moves due tasks from the database onto the dialer stream, and keeps Redis honest.

Exactly one scheduler runs at a time across all machines: every worker process tries to take
the Redis lock ``cc:dialer:scheduler`` once a second and the holder runs :meth:`Scheduler.tick`
(on its housekeeping thread). A tick:

1. Rebuilds the queue when Redis lost it (no ``cc:dialer:epoch`` key: a restart without
   persistence or a FLUSHALL): recreates the consumer group and re-adds every ``queued`` task.
2. For each running campaign with free channels (max_channels minus its queued and dialing
   tasks) and a healthy trunk, picks due ``pending`` tasks of stores inside their calling
   window on a non-holiday, drops those on the do-not-call list (cancelled), defers those over
   the frequency cap or on another call, and queues the rest: ``pending -> queued`` in the
   database first, then XADD. An attempt's number is fixed when it is queued.
3. Every few seconds, reconciles: re-adds ``queued`` tasks whose entry Redis lost, writes off
   attempts whose worker is dead (its liveness key expired), removes dead consumers, and marks
   campaigns with no open task completed.

A campaign whose trunk rejected its last N attempts in a row (``trunk_failure_threshold``)
is held for ``trunk_backoff_seconds``, doubling per further N failures (at most 30 min): the
tasks wait for their own retry times meanwhile; nothing loops.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis as redis_lib
import sqlalchemy as sa
from sqlalchemy.orm import Session

from callcenter.storage import keys, live
from callcenter.storage.db import Database
from callcenter.storage.models import (
    Call,
    CallTask,
    Campaign,
    CampaignStatus,
    DoNotCall,
    Store,
    TaskState,
    utcnow,
)
from campaigns.outcomes import record_lost
from campaigns.queue import DialQueue
from campaigns.rules import (
    OPEN_STATES,
    TRUNK_FAILURES,
    ChineseHolidays,
    DialPolicy,
    HolidayCalendar,
    dial_policy,
    store_callable,
    store_policy,
    trunk_backoff,
)

logger = logging.getLogger(__name__)

BUSY_ELSEWHERE_SECONDS = 600

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class SchedulerLock:
    """Who runs the scheduler: a Redis key with an owner and an expiry (renewed by its owner)."""

    def __init__(self, redis: redis_lib.Redis, owner: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.owner = owner
        self.ttl_ms = int(ttl_seconds * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        if self.redis.set(keys.SCHEDULER_LOCK, self.owner, nx=True, px=self.ttl_ms):
            return True
        return bool(self._renew(keys=[keys.SCHEDULER_LOCK], args=[self.owner, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[keys.SCHEDULER_LOCK], args=[self.owner])


@dataclass(slots=True)
class TrunkHealth:
    """Whether a campaign's trunk is failing every call, and until when it is held."""

    consecutive_failures: int = 0
    hold_seconds: int = 0
    hold_until: dt.datetime | None = None  # naive UTC
    last_code: int | None = None
    last_reason: str | None = None

    @property
    def degraded(self) -> bool:
        return self.hold_seconds > 0

    def as_dict(self) -> dict:
        return {
            "consecutive_trunk_failures": self.consecutive_failures,
            "held_until": self.hold_until.isoformat() + "Z" if self.hold_until else None,
            "last_sip": f"{self.last_code or ''} {self.last_reason or ''}".strip() or None,
        }


def trunk_health(session: Session, campaign_id: int, policy: DialPolicy) -> TrunkHealth:
    """The campaign's recent attempts, newest first, judged by :func:`campaigns.rules.trunk_backoff`."""
    limit = max(policy.trunk_failure_threshold * 6, 20)
    rows = session.execute(
        sa.select(Call.disposition, Call.ended_at, Call.sip_code, Call.sip_reason)
        .where(Call.campaign_id == campaign_id, Call.ended_at.is_not(None))
        .order_by(Call.id.desc())
        .limit(limit)
    ).all()
    health = TrunkHealth()
    for d, *_ in rows:
        if d in TRUNK_FAILURES:
            health.consecutive_failures += 1
        else:
            break
    health.hold_seconds = trunk_backoff([r[0] for r in rows], policy.trunk_failure_threshold,
                                        policy.trunk_backoff_seconds)
    if health.hold_seconds and rows:
        health.hold_until = rows[0][1] + dt.timedelta(seconds=health.hold_seconds)
        health.last_code, health.last_reason = rows[0][2], rows[0][3]
    return health


@dataclass(slots=True)
class TickReport:
    queued: int = 0
    deferred: int = 0
    cancelled: int = 0
    rebuilt: int | None = None  # entries re-added after Redis lost the queue
    requeued: int = 0
    written_off: int = 0
    completed: list[int] = field(default_factory=list)
    held: dict[int, str] = field(default_factory=dict)  # campaign -> why nothing was queued


class Scheduler:
    """Runs on the housekeeping thread of whichever worker holds the lock (or in a test)."""

    def __init__(self, db: Database, redis: redis_lib.Redis, defaults: DialPolicy, *,
                 claim_timeout: float = 60.0, worker_timeout: float = 15.0,
                 calendar: HolidayCalendar | None = None, clock: Callable[[], dt.datetime] = utcnow,
                 reconcile_every: float | None = None) -> None:
        self.db = db
        self.redis = redis
        self.queue = DialQueue(redis)
        self.defaults = defaults
        self.claim_timeout = claim_timeout
        self.worker_timeout = worker_timeout
        self.calendar = calendar or ChineseHolidays()
        self.clock = clock
        self.reconcile_every = reconcile_every if reconcile_every is not None else max(1.0, worker_timeout / 3)
        self._last_reconcile = 0.0

    # ----------------------------------------------------------------- the tick

    def tick(self, *, reconcile: bool | None = None) -> TickReport:
        report = TickReport()
        self._ensure_epoch(report)
        now = self.clock()
        self._dispatch_all(now, report)
        due = time.monotonic() - self._last_reconcile >= self.reconcile_every
        if reconcile or (reconcile is None and due):
            self._last_reconcile = time.monotonic()
            self.reconcile(now, report)
        return report

    def _ensure_epoch(self, report: TickReport) -> None:
        if self.redis.exists(keys.EPOCH):
            return
        report.rebuilt = self.rebuild()

    def rebuild(self) -> int:
        """Recreate the group and re-add every queued task; returns how many entries were added."""
        self.queue.ensure_group()
        with self.db.session() as s:
            rows = s.execute(
                sa.select(CallTask.id, CallTask.attempts, CallTask.campaign_id)
                .where(CallTask.state == TaskState.QUEUED).order_by(CallTask.id)
            ).all()
        for task_id, attempts, campaign_id in rows:
            self.queue.add(task_id, attempts + 1, campaign_id)
        self.redis.set(keys.EPOCH, int(self.redis.time()[0]))
        if rows:
            logger.warning("dialer queue rebuilt from the database: %d queued task(s) re-added", len(rows))
        else:
            logger.info("dialer queue initialised")
        return len(rows)

    def _policy(self, c: Campaign) -> DialPolicy:
        return dial_policy(self.defaults, c.params, max_channels=c.max_channels, max_attempts=c.max_attempts)

    def _dispatch_all(self, now: dt.datetime, report: TickReport) -> None:
        with self.db.session() as s:
            campaigns = s.scalars(
                sa.select(Campaign).where(Campaign.status == CampaignStatus.RUNNING, Campaign.robot.is_(True))
                .order_by(Campaign.id)
            ).all()
            if not campaigns:
                return
            inflight = dict(s.execute(
                sa.select(CallTask.campaign_id, sa.func.count())
                .where(CallTask.state.in_([TaskState.QUEUED, TaskState.DIALING]))
                .group_by(CallTask.campaign_id)
            ).all())
            stores = s.execute(sa.select(Store.id, Store.timezone, Store.calling_windows)).all()
        open_cache: dict[tuple, list[int]] = {}
        for c in campaigns:
            policy = self._policy(c)
            capacity = policy.max_channels - inflight.get(c.id, 0)
            if capacity <= 0:
                continue
            # Checked before every dispatch (one LIMIT scan on the calls' primary key): with short
            # calls a cached verdict would let hundreds of doomed attempts through in a second.
            with self.db.session() as s:
                health = trunk_health(s, c.id, policy)
            if health.degraded and health.hold_until and health.hold_until > now:
                report.held[c.id] = (f"trunk failing ({health.consecutive_failures} attempts in a row, last "
                                     f"{health.last_code} {health.last_reason or ''}): held until {health.hold_until}Z")
                continue
            key = (policy.windows, policy.holidays, bool((c.params or {}).get("windows")))
            if key not in open_cache:
                open_cache[key] = [sid for sid, tz, windows in stores
                                   if store_callable(now, tz, store_policy(policy, c.params, windows), self.calendar)[0]]
            open_stores = open_cache[key]
            if not open_stores:
                report.held[c.id] = "no store is inside its calling window now"
                continue
            self._dispatch(c, policy, capacity, open_stores, now, report)

    def _dispatch(self, c: Campaign, policy: DialPolicy, capacity: int, open_stores: list[int],
                  now: dt.datetime, report: TickReport) -> None:
        to_add: list[tuple[int, int]] = []
        with self.db.session() as s:
            rows = s.execute(
                sa.select(CallTask.id, CallTask.attempts, CallTask.customer_id, CallTask.phone)
                .where(CallTask.campaign_id == c.id, CallTask.state == TaskState.PENDING,
                       CallTask.next_attempt_at <= now, CallTask.store_id.in_(open_stores))
                .order_by(CallTask.next_attempt_at, CallTask.id)
                .limit(capacity * 2 + 8)
            ).all()
            if not rows:
                return
            ids = [r.id for r in rows]
            dnc = set(s.scalars(sa.select(DoNotCall.phone).where(DoNotCall.phone.in_({r.phone for r in rows}))))
            capped: dict[int, dt.datetime] = {}
            if policy.frequency_cap_days > 0:
                window = dt.timedelta(days=policy.frequency_cap_days)
                capped = {tid: last + window for tid, last in s.execute(
                    sa.select(CallTask.id, sa.func.max(Call.started_at))
                    .join(Call, sa.and_(Call.customer_id == CallTask.customer_id,
                                        sa.or_(Call.task_id.is_(None), Call.task_id != CallTask.id)))
                    .where(CallTask.id.in_(ids), Call.robot.is_(True), Call.disposition == "answered",
                           Call.started_at >= now - window)
                    .group_by(CallTask.id)
                )}
            busy = set(s.scalars(
                sa.select(CallTask.customer_id)
                .where(CallTask.customer_id.in_({r.customer_id for r in rows}), CallTask.campaign_id != c.id,
                       CallTask.state.in_([TaskState.QUEUED, TaskState.DIALING]))
            ))
            for r in rows:
                pending = sa.update(CallTask).where(CallTask.id == r.id, CallTask.state == TaskState.PENDING) \
                    .execution_options(synchronize_session=False)
                if r.phone in dnc:
                    s.execute(pending.values(state=TaskState.CANCELLED, finished_at=now, updated_at=now))
                    report.cancelled += 1
                elif r.id in capped:
                    s.execute(pending.values(next_attempt_at=capped[r.id], updated_at=now))
                    report.deferred += 1
                elif r.customer_id in busy:
                    s.execute(pending.values(next_attempt_at=now + dt.timedelta(seconds=BUSY_ELSEWHERE_SECONDS),
                                             updated_at=now))
                    report.deferred += 1
                elif len(to_add) < capacity and s.execute(
                        pending.values(state=TaskState.QUEUED, updated_at=now)).rowcount:
                    to_add.append((r.id, r.attempts + 1))
                    busy.add(r.customer_id)
        # Committed: the tasks are queued in the database. If Redis fails now, reconcile re-adds them.
        for task_id, attempt in to_add:
            self.queue.add(task_id, attempt, c.id)
        report.queued += len(to_add)

    # ----------------------------------------------------------------- reconciliation

    def reconcile(self, now: dt.datetime | None = None, report: TickReport | None = None) -> TickReport:
        now = now or self.clock()
        report = report or TickReport()
        self._requeue_lost_entries(now, report)
        self._write_off_dead_workers(now, report)
        self._remove_dead_consumers()
        self._complete_campaigns(now, report)
        return report

    def _requeue_lost_entries(self, now: dt.datetime, report: TickReport) -> None:
        with self.db.session() as s:
            rows = s.execute(
                sa.select(CallTask.id, CallTask.attempts, CallTask.campaign_id)
                .where(CallTask.state == TaskState.QUEUED,
                       CallTask.updated_at < now - dt.timedelta(seconds=self.claim_timeout))
            ).all()
        if not rows:
            return
        present = self.queue.task_ids()
        for task_id, attempts, campaign_id in rows:
            if task_id not in present:
                self.queue.add(task_id, attempts + 1, campaign_id)
                report.requeued += 1
        if report.requeued:
            logger.warning("dialer: %d queued task(s) had no stream entry; re-added", report.requeued)

    def _epoch_age(self) -> float:
        epoch = self.redis.get(keys.EPOCH)
        if epoch is None:
            return 0.0
        return float(self.redis.time()[0]) - float(epoch)

    def _write_off_dead_workers(self, now: dt.datetime, report: TickReport) -> None:
        # After Redis lost its data, live workers need a heartbeat period to re-announce themselves.
        if self._epoch_age() < self.worker_timeout:
            return
        with self.db.session() as s:
            rows = s.execute(
                sa.select(Call.id, Call.worker, Call.started_at, Call.store_id, Call.campaign_id, Call.customer_id)
                .join(CallTask, sa.and_(CallTask.id == Call.task_id, CallTask.attempts == Call.attempt))
                .where(CallTask.state == TaskState.DIALING, Call.ended_at.is_(None))
            ).all()
        for call_id, worker, started_at, store_id, campaign_id, customer_id in rows:
            if started_at > now - dt.timedelta(seconds=self.worker_timeout):
                continue
            try:
                alive = bool(worker) and bool(self.redis.exists(keys.alive_key(worker)))
            except ValueError:
                alive = False
            if alive:
                continue
            with self.db.session() as s:
                campaign = s.get(Campaign, campaign_id) if campaign_id else None
                policy = self._policy(campaign) if campaign else self.defaults
                done = record_lost(s, call_id, f"worker {worker} died during the attempt", policy.retry, now)
            if done.recorded:
                report.written_off += 1
                try:
                    live.publish_call_state(self.redis, live.CallStateEvent(
                        call_id=call_id, state=live.LiveCallState.ENDED, store_id=store_id,
                        campaign_id=campaign_id, customer_id=customer_id, worker=worker, outcome="error"))
                except redis_lib.RedisError:
                    pass

    def _remove_dead_consumers(self) -> None:
        for consumer in self.queue.consumers():
            if consumer["pending"] or consumer["idle"] < 60_000:
                continue
            try:
                alive = bool(self.redis.exists(keys.alive_key(consumer["name"])))
            except ValueError:
                alive = False
            if not alive:
                self.queue.remove_consumer(consumer["name"])

    def _complete_campaigns(self, now: dt.datetime, report: TickReport) -> None:
        with self.db.session() as s:
            running = s.scalars(sa.select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING)).all()
            for cid in running:
                open_task = s.scalar(
                    sa.select(CallTask.id).where(CallTask.campaign_id == cid, CallTask.state.in_(list(OPEN_STATES)))
                    .limit(1)
                )
                if open_task is None:
                    done = s.execute(
                        sa.update(Campaign).where(Campaign.id == cid, Campaign.status == CampaignStatus.RUNNING)
                        .values(status=CampaignStatus.COMPLETED, finished_at=now)
                        .execution_options(synchronize_session=False)
                    ).rowcount
                    if done:
                        report.completed.append(cid)
                        logger.info("campaign %s completed", cid)
