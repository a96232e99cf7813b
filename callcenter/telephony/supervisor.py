"""Media worker processes and the supervisor that keeps N of them running.

A *worker* is one process with one :class:`~callcenter.telephony.api.Phone` (its own SIP port and RTP
range, :meth:`SipConfig.for_worker`) that runs one *job*: a callable ``job(phone, stop, info)``
named as ``module:function``. The job returns when ``stop`` is set (SIGTERM) or when its work is
done; an exception, a crash or ``kill -9`` makes the supervisor start the worker again after a
backoff (1 s, 2 s, 4 s ... capped at 60 s; reset once a worker has stayed up for a minute).

Threads and processes: the supervisor runs in the parent process's calling thread (``callcenter
worker``) and never imports pjsua2. Workers are started with the ``spawn`` method (a fresh
interpreter: nothing of the parent's threads or sockets is inherited). Each worker's main thread runs
the job; a heartbeat thread stamps a shared value every second while the phone's SIP thread is
turning, and the supervisor kills a worker whose heartbeat is older than ``heartbeat_timeout`` (a
deadlocked SIP stack is restarted like a crashed one).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callcenter.config import Settings
from callcenter.telephony.api import Phone
from callcenter.telephony.config import SipConfig

logger = logging.getLogger(__name__)

# The job `callcenter worker` runs when no --job is given: the campaigns dialer (issue: campaigns).
DEFAULT_JOB = "campaigns.worker:dialer_job"
DEFAULT_PHONE_FACTORY = "callcenter.telephony:open_phone"

Job = Callable[[Phone, threading.Event, "WorkerInfo"], None]


@dataclass(frozen=True)
class WorkerInfo:
    """What a job knows about the worker it runs in."""

    index: int  # 0 .. processes-1
    processes: int
    name: str  # worker-<index>
    sip: SipConfig  # this worker's ports
    settings: Settings
    args: Mapping[str, str] = field(default_factory=dict)  # --job-arg key=value


def resolve(spec: str, what: str = "job") -> Callable[..., Any]:
    """Import ``module:function``.

    Raises:
        ValueError: malformed spec, module not importable, or attribute missing / not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".")):
        raise ValueError(f"{what} {spec!r}: expected module:function, e.g. callcenter.telephony.jobs:soak")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {spec!r}: cannot import {module_name} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:  # a module __getattr__ may say why the name is missing
            detail = str(exc) if "has no attribute" not in str(exc) else f"{module_name} has no {attr}"
            raise ValueError(f"{what} {spec!r}: {detail}") from None
    if not callable(target):
        raise ValueError(f"{what} {spec!r}: {attr} is not callable")  # noqa: TRY004 - a bad --job value
    return target


# -- inside a worker process -------------------------------------------------------------------------
def worker_main(
    index: int,
    processes: int,
    settings: Settings,
    sip: SipConfig,
    job_spec: str,
    job_args: Mapping[str, str],
    phone_factory: str,
    heartbeat: Any,
) -> None:
    """Entry point of a worker process (``spawn``): phone up, job run, phone down."""
    from callcenter.logs import setup_logging

    setup_logging(settings.log_level)
    name = f"worker-{index}"
    stop = threading.Event()
    # Ctrl-C reaches the whole process group: let the supervisor decide, via SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rc = 0
    phone = None
    try:
        job = resolve(job_spec)
        factory = resolve(phone_factory, "phone factory")
        phone = factory(sip, name=name)

        def beat() -> None:
            while not stop.is_set():
                if phone.healthy():
                    heartbeat.value = time.monotonic()
                stop.wait(1.0)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()
        info = WorkerInfo(index=index, processes=processes, name=name, sip=sip, settings=settings,
                          args=dict(job_args))
        logger.info("%s: running %s (SIP port %s, RTP from %s)", name, job_spec,
                    getattr(phone, "local_port", sip.sip_port), sip.rtp_port)
        job(phone, stop, info)
        if not stop.is_set():
            logger.info("%s: job finished", name)
    except Exception:
        logger.exception("%s: job %s failed", name, job_spec)
        rc = 1
    finally:
        stop.set()
        if phone is not None:
            phone.close()
    sys.exit(rc)


# -- the supervisor ----------------------------------------------------------------------------------
@dataclass
class _Slot:
    index: int
    process: Any = None
    heartbeat: Any = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0  # consecutive
    next_start: float = 0.0
    done: bool = False  # exited 0: its job is finished, not restarted
    last_exit: int | None = None


class Supervisor:
    """Runs ``processes`` workers and restarts the ones that die.

    Args:
        settings: passed to every worker (pickled).
        sip: base SIP config; worker i gets ``sip.for_worker(i)``.
        processes: number of workers.
        job: ``module:function`` each worker runs.
        job_args: ``key=value`` arguments handed to the job as ``info.args``.
        phone_factory: ``module:function(sip, name=...) -> Phone`` (the fake phone in unit tests).
    """

    def __init__(
        self,
        settings: Settings,
        sip: SipConfig,
        *,
        processes: int,
        job: str,
        job_args: Mapping[str, str] | None = None,
        phone_factory: str = DEFAULT_PHONE_FACTORY,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        stable_after: float = 60.0,
        heartbeat_timeout: float = 30.0,
        stop_grace: float = 15.0,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.settings = settings
        self.sip = sip
        self.processes = processes
        self.job = job
        self.job_args = dict(job_args or {})
        self.phone_factory = phone_factory
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.heartbeat_timeout = heartbeat_timeout
        self.stop_grace = stop_grace
        self._ctx = multiprocessing.get_context("spawn")
        self.slots = [_Slot(i) for i in range(processes)]
        self._started = False

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        for slot in self.slots:
            self._spawn(slot)

    def run(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Start the workers and supervise them until ``stop`` is set or every job has finished."""
        if not self._started:
            self.start()
        try:
            while not stop.wait(poll_interval):
                self.poll()
                if all(slot.done for slot in self.slots):
                    logger.info("every worker finished its job")
                    break
        finally:
            self.shutdown()

    def poll(self) -> None:
        """Reap dead workers, kill hung ones, start the ones whose backoff has passed."""
        now = time.monotonic()
        for slot in self.slots:
            proc = slot.process
            if proc is not None and not proc.is_alive():
                proc.join(0)
                self._exited(slot, proc.exitcode, now)
            elif proc is not None:
                last = max(slot.heartbeat.value, slot.started_at)
                if now - last > self.heartbeat_timeout:
                    logger.error("worker-%d (pid %s): no heartbeat for %.0f s, killing it", slot.index, proc.pid,
                                 now - last)
                    os.kill(proc.pid, signal.SIGKILL)
            elif not slot.done and now >= slot.next_start:
                self._spawn(slot)

    def shutdown(self) -> None:
        """SIGTERM every worker, wait ``stop_grace`` for their jobs to return, then SIGKILL."""
        live = [s for s in self.slots if s.process is not None and s.process.is_alive()]
        for slot in live:
            try:
                os.kill(slot.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_grace
        for slot in live:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                logger.error("worker-%d (pid %s) ignored SIGTERM for %g s: killing it", slot.index,
                             slot.process.pid, self.stop_grace)
                slot.process.kill()
                slot.process.join(5)
        for slot in self.slots:
            if slot.process is not None:
                slot.last_exit = slot.process.exitcode
                slot.process.close()
                slot.process = None

    # -- internals ----------------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        slot.heartbeat = self._ctx.Value("d", 0.0, lock=False)
        proc = self._ctx.Process(
            target=worker_main,
            name=f"worker-{slot.index}",
            args=(slot.index, self.processes, self.settings, self.sip.for_worker(slot.index), self.job,
                  self.job_args, self.phone_factory, slot.heartbeat),
            daemon=False,
        )
        proc.start()
        slot.process = proc
        slot.started_at = time.monotonic()
        logger.info("worker-%d started (pid %d)", slot.index, proc.pid)

    def _exited(self, slot: _Slot, code: int | None, now: float) -> None:
        slot.process.close()
        slot.process = None
        slot.last_exit = code
        if code == 0:
            slot.done = True
            logger.info("worker-%d finished its job", slot.index)
            return
        uptime = now - slot.started_at
        slot.failures = 1 if uptime >= self.stable_after else slot.failures + 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (slot.failures - 1))
        slot.next_start = now + delay
        slot.restarts += 1
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        logger.error("worker-%d died (%s) after %.1f s; restarting in %.0f s", slot.index, how, uptime, delay)

    def status(self) -> list[dict]:
        """One line per worker (pid, restarts, state) for logs and tests."""
        out = []
        for slot in self.slots:
            proc = slot.process
            state = "done" if slot.done else "running" if proc is not None else "waiting"
            out.append({"worker": slot.index, "pid": proc.pid if proc is not None else None, "state": state,
                        "restarts": slot.restarts, "last_exit": slot.last_exit})
        return out
