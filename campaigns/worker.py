"""The dialer worker process: due attempts from the stream, through a call runner, into the database.

Any number of worker processes, on any number of machines sharing the database and Redis,
form one consumer group. Threads of one worker process:

- the **main thread** reads the stream (XREADGROUP; every half claim timeout also XAUTOCLAIM,
  taking over entries a dead consumer left pending) whenever a call slot is free, and hands
  each entry to a call thread;
- **call threads**, as many as the runner's ``capacity`` (4 for pjsua2): claim the attempt in
  the database (``campaigns.attempts``), run it through the :class:`~campaigns.runner.CallRunner`,
  record the outcome (``campaigns.outcomes``), then acknowledge and delete the entry;
- the **heartbeat thread** (Redis only, never the database, so a slow database cannot make a
  live worker look dead): renews ``cc:dialer:alive:<worker>`` and the console's heartbeat;
- the **scheduler thread**: once a second, if this process holds the scheduler lock, runs
  :meth:`campaigns.scheduler.Scheduler.tick`.

Database and Redis outages are waited out: every database step is retried with backoff
(0.2 s doubling to 5 s) and a call's result stays in memory until it is stored; Redis errors
pause the reader. SIGTERM/SIGINT stop reading and let calls in progress finish (a second signal
stops at once; unfinished attempts are then written off by the scheduler as the worker's
liveness key expires).

Entry points: ``dialer_job`` (:func:`run_dialer_job`) is the job ``callcenter worker --processes N``
runs in each of the telephony supervisor's worker processes (one pjsua2 phone each); :func:`serve` runs one worker
in this process with any runner (the fault tests use it); :func:`run_pool` keeps N of them alive
for runners that need no telephony supervisor.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis as redis_lib
import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.domain import CallDisposition, Speaker
from callcenter.domain.calls import CallEnd, CallResult
from callcenter.storage import keys, live
from callcenter.storage.db import Database
from callcenter.storage.models import utcnow
from campaigns.attempts import Claim, ClaimKind, claim_attempt
from campaigns.outcomes import record_outcome
from campaigns.queue import DialQueue, Message
from campaigns.rules import ChineseHolidays, DialPolicy, HolidayCalendar, default_policy
from campaigns.runner import CallRequest, CallRunner
from campaigns.scheduler import Scheduler, SchedulerLock

logger = logging.getLogger(__name__)

DB_RETRY_FIRST = 0.2
DB_RETRY_MAX = 5.0
WARN_EVERY = 10.0  # seconds between repeated "still unavailable" warnings


def worker_id() -> str:
    """``host:pid`` (the host name reduced to characters safe in a Redis key)."""
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:60] or "host"
    return f"{host}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    claim_timeout: float = 60.0  # seconds before a pending entry of another consumer is taken over
    worker_timeout: float = 15.0  # liveness key expiry
    scheduler: bool = True  # take part in the scheduler election
    scheduler_interval: float = 1.0
    block_ms: int = 1000  # XREADGROUP wait
    stop_grace: float = 120.0  # on stop: how long calls in progress may take to finish

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> WorkerOptions:
        return cls(claim_timeout=float(settings.dialer_claim_timeout),
                   worker_timeout=float(settings.dialer_worker_timeout), **overrides)


class _RateLimitedWarning:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= WARN_EVERY:
            self._last[key] = now
            logger.warning(msg, *args)


class LiveObserver:
    """Publishes one call's progress on Redis for the console; never raises."""

    def __init__(self, redis: redis_lib.Redis, request: CallRequest, worker: str) -> None:
        self.redis = redis
        self.request = request
        self.worker = worker
        self._failed = False

    def _publish(self, fn, event) -> None:
        try:
            fn(self.redis, event)
        except redis_lib.RedisError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("call %s: live events not published (Redis: %s)", self.request.call_id, exc)

    def state(self, state: live.LiveCallState, *, agent_id: int | None = None, disposition: str | None = None,
              outcome: str | None = None) -> None:
        r = self.request
        self._publish(live.publish_call_state, live.CallStateEvent(
            call_id=r.call_id, state=state, store_id=r.store_id, campaign_id=r.campaign_id,
            customer_id=r.customer_id, agent_id=agent_id, worker=self.worker, disposition=disposition,
            outcome=outcome))

    def ringing(self) -> None:
        self.state(live.LiveCallState.RINGING)

    def answered(self) -> None:
        self.state(live.LiveCallState.ANSWERED)

    def transferred(self, agent_id: int | None) -> None:
        self.state(live.LiveCallState.BRIDGED, agent_id=agent_id)

    def transcript(self, seq: int, speaker: Speaker, text: str, *, is_final: bool, start: float,
                   end: float) -> None:
        self._publish(live.publish_transcript, live.TranscriptLine(
            call_id=self.request.call_id, seq=seq, speaker=speaker.value if isinstance(speaker, Speaker) else speaker,
            text=text, is_final=is_final, start=start, end=end, store_id=self.request.store_id))


class Worker:
    """One worker process's dialer loop (see the module docstring for its threads)."""

    def __init__(self, db: Database, redis: redis_lib.Redis, runner: CallRunner, defaults: DialPolicy,
                 options: WorkerOptions | None = None, *, calendar: HolidayCalendar | None = None,
                 worker: str | None = None, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db = db
        self.redis = redis
        self.runner = runner
        self.defaults = defaults
        self.options = options or WorkerOptions()
        self.calendar = calendar or ChineseHolidays()
        self.id = worker or worker_id()
        keys.alive_key(self.id)  # validates the id
        self.clock = clock
        self.queue = DialQueue(redis)
        self.capacity = max(1, int(runner.capacity))
        self._stop = threading.Event()  # stop reading
        self._hard_stop = threading.Event()  # give up waiting for the database too
        self._slots = threading.Condition()
        self._active: dict[int, int] = {}  # call id -> campaign id
        self._tasks: set[int] = set()  # tasks whose entry a call thread is handling
        self._busy = 0
        self._warn = _RateLimitedWarning()
        self.handled = 0  # entries processed (for tests and the heartbeat)

    # ----------------------------------------------------------------- lifecycle

    def request_stop(self, *, hard: bool = False) -> None:
        self._stop.set()
        if hard:
            self._hard_stop.set()
        with self._slots:
            self._slots.notify_all()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish calls in progress and exit; a second one: exit now."""

        def handler(signum, _frame):
            hard = self._stop.is_set()
            logger.info("worker %s: %s, %s", self.id, signal.Signals(signum).name,
                        "stopping now" if hard else "finishing calls in progress")
            self.request_stop(hard=hard)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Serve until :meth:`request_stop`; returns once calls in progress have finished."""
        logger.info("worker %s: starting, %d call slot(s)", self.id, self.capacity)
        threads = [threading.Thread(target=self._heartbeat_loop, name="dialer-heartbeat", daemon=True)]
        if self.options.scheduler:
            threads.append(threading.Thread(target=self._scheduler_loop, name="dialer-scheduler", daemon=True))
        pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="dialer-call")
        try:
            try:
                self._beat()  # announce liveness before taking any entry
            except redis_lib.RedisError as exc:
                logger.warning("worker %s: Redis unavailable at start (%s); waiting for it", self.id, exc)
            for t in threads:
                t.start()
            self._read_loop(pool)
        finally:
            deadline = time.monotonic() + self.options.stop_grace
            with self._slots:
                while self._busy and time.monotonic() < deadline and not self._hard_stop.is_set():
                    self._slots.wait(0.5)
            if self._busy:
                logger.warning("worker %s: exiting with %d call(s) unfinished; they will be written off",
                               self.id, self._busy)
                self._hard_stop.set()
            pool.shutdown(wait=not self._busy, cancel_futures=True)
            self._stop.set()
            for t in threads:
                t.join(timeout=5)
            try:
                self.redis.delete(keys.alive_key(self.id))
                live.remove_worker(self.redis, self.id)
            except redis_lib.RedisError:
                pass
            logger.info("worker %s: stopped after %d entries", self.id, self.handled)

    # ----------------------------------------------------------------- reading

    def _free_slots(self) -> int:
        with self._slots:
            if self._busy >= self.capacity and not self._stop.is_set():
                self._slots.wait(0.5)
            return self.capacity - self._busy

    def _read_loop(self, pool: ThreadPoolExecutor) -> None:
        backoff = 0.2
        last_autoclaim = 0.0
        group_ready = False
        while not self._stop.is_set():
            free = self._free_slots()
            if free <= 0 or self._stop.is_set():
                continue
            try:
                if not group_ready:
                    self.queue.ensure_group()
                    group_ready = True
                messages: list[Message] = []
                if time.monotonic() - last_autoclaim >= self.options.claim_timeout / 2:
                    last_autoclaim = time.monotonic()
                    messages = self.queue.autoclaim(self.id, int(self.options.claim_timeout * 1000), free)
                    if messages:
                        logger.info("worker %s: took over %d entr%s left by another worker", self.id,
                                    len(messages), "y" if len(messages) == 1 else "ies")
                if not messages:
                    messages = self.queue.read(self.id, free, self.options.block_ms)
                backoff = 0.2
            except redis_lib.RedisError as exc:
                self._warn("redis-read", "worker %s: Redis unavailable (%s); retrying", self.id, exc)
                group_ready = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, DB_RETRY_MAX)
                continue
            for msg in messages:
                with self._slots:
                    if msg.task_id in self._tasks:
                        # Our own entry of a call still in progress, idle past the claim timeout and
                        # taken back by XAUTOCLAIM: the call is running here; leave the entry be.
                        continue
                    self._tasks.add(msg.task_id)
                    self._busy += 1
                pool.submit(self._handle, msg)

    # ----------------------------------------------------------------- one entry

    def _with_db(self, what: str, fn):
        """Run ``fn(session)`` in a transaction, retrying while the database is unreachable or locked."""
        delay = DB_RETRY_FIRST
        while True:
            try:
                with self.db.session() as s:
                    return fn(s)
            except sa.exc.IntegrityError:
                raise
            except sa.exc.DBAPIError as exc:
                transient = isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) \
                    or exc.connection_invalidated
                if not transient or self._hard_stop.is_set():
                    raise
                self._warn(f"db-{what}", "worker %s: database unavailable while %s (%s); retrying",
                           self.id, what, str(exc.orig).strip().splitlines()[0] if exc.orig else exc)
                if self._hard_stop.wait(delay):
                    raise
                delay = min(delay * 2, DB_RETRY_MAX)

    def _with_redis(self, what: str, fn) -> None:
        delay = DB_RETRY_FIRST
        while True:
            try:
                fn()
                return
            except redis_lib.RedisError as exc:
                if self._hard_stop.is_set():
                    raise
                self._warn(f"redis-{what}", "worker %s: Redis unavailable while %s (%s); retrying",
                           self.id, what, exc)
                if self._hard_stop.wait(delay):
                    raise
                delay = min(delay * 2, DB_RETRY_MAX)

    def _handle(self, msg: Message) -> None:
        try:
            try:
                claim = self._with_db(
                    f"claiming task {msg.task_id}",
                    lambda s: claim_attempt(s, msg, now=self.clock(), worker=self.id, defaults=self.defaults,
                                            calendar=self.calendar))
            except sa.exc.IntegrityError:
                claim = Claim(ClaimKind.STALE, "the attempt was claimed concurrently")
            if claim.kind is ClaimKind.DIAL:
                self._run_call(claim)
            else:
                logger.debug("worker %s: entry %s (task %s attempt %s) not dialled: %s %s", self.id, msg.id,
                             msg.task_id, msg.attempt, claim.kind.value, claim.reason)
            self._with_redis("acknowledging", lambda: self.queue.done(msg.id))
            self.handled += 1
        except Exception:  # the entry stays pending and is taken over after the claim timeout
            logger.exception("worker %s: entry %s (task %s attempt %s) failed", self.id, msg.id, msg.task_id,
                             msg.attempt)
        finally:
            with self._slots:
                self._tasks.discard(msg.task_id)
                self._busy -= 1
                self._slots.notify_all()

    def _run_call(self, claim: Claim) -> None:
        request = claim.request
        assert request is not None and claim.policy is not None
        observer = LiveObserver(self.redis, request, self.id)
        with self._slots:
            self._active[request.call_id] = request.campaign_id
        try:
            logger.info("call %s: dialling task %s attempt %s (campaign %s)", request.call_id, request.task_id,
                        request.attempt, request.campaign_id)
            observer.state(live.LiveCallState.DIALING)
            try:
                result = self.runner.run(request, observer)
                if not isinstance(result, CallResult):
                    raise TypeError(f"the runner returned {type(result).__name__}, not a CallResult")
            except Exception as exc:
                logger.exception("call %s: the runner failed", request.call_id)
                now = dt.datetime.now(dt.UTC)
                result = CallResult(disposition=CallDisposition.FAILED, end=CallEnd.ERROR, ended_at=now,
                                    error=f"runner failed: {type(exc).__name__}: {exc}"[:2000])
            recorded = self._with_db(
                f"recording call {request.call_id}",
                lambda s: record_outcome(s, request.call_id, result, claim.policy.retry, self.clock()))
            observer.state(live.LiveCallState.ENDED, disposition=result.disposition.value,
                           outcome=recorded.outcome.value if recorded.outcome else None)
        finally:
            with self._slots:
                self._active.pop(request.call_id, None)

    # ----------------------------------------------------------------- background threads

    def _beat(self) -> None:
        with self._slots:
            active = len(self._active)
            campaigns = tuple(sorted(set(self._active.values())))
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.alive_key(self.id), int(time.time()), ex=max(2, int(self.options.worker_timeout)))
        pipe.execute()
        live.publish_heartbeat(self.redis, live.WorkerHeartbeat(
            worker=self.id, active_calls=active, capacity=self.capacity, campaigns=campaigns))

    def _heartbeat_loop(self) -> None:
        # Beats go on after a stop while calls are finishing: until then the worker is alive.
        interval = max(0.5, self.options.worker_timeout / 3)
        while not self._hard_stop.wait(interval):
            if self._stop.is_set() and not self._busy:
                return
            try:
                self._beat()
            except redis_lib.RedisError as exc:
                self._warn("redis-beat", "worker %s: heartbeat failed (Redis: %s)", self.id, exc)

    def _scheduler_loop(self) -> None:
        lock = SchedulerLock(self.redis, self.id, ttl_seconds=max(5.0, self.options.scheduler_interval * 10))
        scheduler = Scheduler(self.db, self.redis, self.defaults, claim_timeout=self.options.claim_timeout,
                              worker_timeout=self.options.worker_timeout, calendar=self.calendar, clock=self.clock)
        try:
            while not self._stop.is_set():
                try:
                    if lock.acquire():
                        scheduler.tick()
                except redis_lib.RedisError as exc:
                    self._warn("redis-scheduler", "worker %s: scheduler paused (Redis: %s)", self.id, exc)
                except sa.exc.DBAPIError as exc:
                    self._warn("db-scheduler", "worker %s: scheduler paused (database: %s)", self.id,
                               str(exc.orig).strip().splitlines()[0] if exc.orig else exc)
                except Exception:
                    logger.exception("worker %s: scheduler tick failed", self.id)
                self._stop.wait(self.options.scheduler_interval)
        finally:
            try:
                lock.release()
            except redis_lib.RedisError:
                pass


# --------------------------------------------------------------------------- processes


def redis_client(url: str) -> redis_lib.Redis:
    """A client for the dialer: replies as text, timeouts longer than the stream's blocking read."""
    return redis_lib.Redis.from_url(url, decode_responses=True, socket_connect_timeout=3, socket_timeout=10,
                                    health_check_interval=15)


def load_factory(spec: str) -> Callable[[Settings], CallRunner]:
    """``"package.module:function"`` -> the function that builds a runner from the settings.

    Raises:
        ValueError: malformed spec, or the module or attribute does not exist.
        TypeError: the attribute is not callable.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not re.fullmatch(r"[A-Za-z_][\w.]*", module_name) \
            or not re.fullmatch(r"[A-Za-z_]\w*", attr):
        raise ValueError(f"runner factory {spec!r}: expected package.module:function")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"runner factory {spec!r}: {exc}") from None
    if not callable(factory):
        raise TypeError(f"runner factory {spec!r} is not callable")
    return factory


def serve(settings: Settings, runner: CallRunner, *, options: WorkerOptions | None = None,
          signals: bool = True) -> Worker:
    """Run one worker in this process until it is stopped; closes the runner at the end."""
    db = Database(settings.database_url)
    redis = redis_client(settings.redis_url)
    worker = Worker(db, redis, runner, default_policy(settings), options or WorkerOptions.from_settings(settings))
    if signals:
        worker.install_signal_handlers()
    try:
        worker.run()
    finally:
        try:
            runner.close()
        finally:
            redis.close()
            db.dispose()
    return worker


# The phase-2 robot runner (telephony + recognizer + dialog engine); ``runner=`` overrides it.
DEFAULT_RUNNER = "campaigns.robot:make_runner"


def __getattr__(name: str):
    """``dialer_job`` exists once the default runner is installed (phase 2's ``campaigns.robot``).

    ``callcenter worker`` runs ``campaigns.worker:dialer_job`` by default and checks, in the
    parent, that it resolves: without a runner it must fail there, once, with a hint, rather
    than start N workers that fail and are restarted forever. With another runner, name the job
    explicitly: ``--job campaigns.worker:run_dialer_job --job-arg runner=module:function``.
    """
    if name == "dialer_job":
        module = DEFAULT_RUNNER.partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            return run_dialer_job
        raise AttributeError(f"campaigns.worker.dialer_job needs the robot call runner ({DEFAULT_RUNNER}), "
                             f"which this build does not have")
    raise AttributeError(f"module 'campaigns.worker' has no attribute {name!r}")


def run_dialer_job(phone, stop: threading.Event, info) -> None:
    """The dialer as a telephony worker job (``callcenter worker``; see ``dialer_job`` above).

    ``callcenter.telephony.supervisor`` starts N worker processes, each with its own
    :class:`~callcenter.telephony.api.Phone`, and calls ``job(phone, stop, info)`` on the worker's
    main thread. The call runner is built by ``info.args["runner"]`` (``module:function``,
    default :data:`DEFAULT_RUNNER`), called as ``factory(phone, settings)``; it owns the phone's
    calls, the dialer owns everything else. Returns when ``stop`` is set (SIGTERM to the worker),
    after the calls in progress have finished.

    Raises:
        ValueError: the runner factory cannot be imported (the message says which).
    """
    settings: Settings = info.settings
    spec = info.args.get("runner", DEFAULT_RUNNER)
    try:
        factory = load_factory(spec)
    except ValueError as exc:
        raise ValueError(f"{exc}. The dialer needs a call runner: --job-arg runner=module:function "
                         f"(function(phone, settings) -> campaigns.runner.CallRunner)") from None
    runner = factory(phone, settings)
    options = WorkerOptions.from_settings(settings)
    db = Database(settings.database_url)
    redis = redis_client(settings.redis_url)
    worker = Worker(db, redis, runner, default_policy(settings), options)
    watcher = threading.Thread(target=lambda: (stop.wait(), worker.request_stop()), name="dialer-stop",
                               daemon=True)
    watcher.start()
    try:
        worker.run()
    finally:
        try:
            runner.close()
        finally:
            redis.close()
            db.dispose()


def _child(settings: Settings, factory_spec: str, options: WorkerOptions | None) -> None:
    from callcenter.logs import setup_logging

    setup_logging(settings.log_level)
    runner = load_factory(factory_spec)(settings)
    serve(settings, runner, options=options)


def run_pool(settings: Settings, factory_spec: str, processes: int, *, options: WorkerOptions | None = None,
             restart_delay: float = 2.0) -> None:
    """Keep ``processes`` worker processes running until SIGTERM/SIGINT; restart any that dies.

    Each child builds its own runner with ``factory_spec`` (``module:function(settings)``), so
    every process has its own SIP endpoint and models. A child that dies is restarted after
    ``restart_delay`` seconds (doubling up to a minute while children keep dying at once).
    """
    import multiprocessing as mp

    load_factory(factory_spec)  # fail early, in the parent, on a wrong spec
    ctx = mp.get_context("spawn")  # fresh interpreters: pjsua2 and model state must not be forked
    stopping = threading.Event()

    def handler(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    children: list = [None] * processes
    delay = restart_delay
    try:
        while not stopping.is_set():
            died = False
            for i, child in enumerate(children):
                if child is not None and child.is_alive():
                    continue
                if child is not None:
                    died = True
                    logger.warning("worker process %d (pid %s) exited with %s; restarting", i, child.pid,
                                   child.exitcode)
                proc = ctx.Process(target=_child, args=(settings, factory_spec, options), name=f"dialer-{i}")
                proc.start()
                children[i] = proc
            delay = min(delay * 2, 60.0) if died else restart_delay
            stopping.wait(delay if died else 1.0)
    finally:
        for child in children:
            if child is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)
        for child in children:
            if child is not None:
                child.join(timeout=(options or WorkerOptions()).stop_grace + 10)
