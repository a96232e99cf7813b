"""The whole demo on one machine: ``callcenter demo run`` (what ``make run`` ends with).

It resets the demo dealer group (only a database that holds nothing but the demo), starts the
simulated customers (``callcenter simulate``), the console (``callcenter serve``) and the dialer
workers (``callcenter worker``, whose processes also elect the scheduler), creates and starts a
post-service revisit campaign of at least ``min_calls`` customers, prints each call as it becomes
visible in the console and the campaign's progress, then the figures of issue 8: calls per hour
on this machine, the share of answered calls that ended as the script prescribes for that
customer, and the time from hang-up to tags visible in the console. The figures also go to
``<data dir>/demo-figures.json``. When the campaign has nothing left to dial now it stops the
workers and the simulator and keeps the console running until Ctrl-C.

Every process it starts is the leader of its own process group (and dies with this process,
``PR_SET_PDEATHSIG``); a stop (Ctrl-C, SIGTERM, an error) sends SIGTERM to each leader in order
(workers hang up their calls first), waits, and kills whatever of each group is left.

Demo-only rules, all per campaign or per child process, none a production default: the
campaign calls around the clock and on holidays (params ``windows=00:00-24:00``,
``holidays=false``); the workers dial only the simulator (``CALLCENTER_SIP_TRUNK`` is forced to
it and any proxy, registrar or dial prefix is removed from their environment) from any free SIP
port; the console runs with ``CALLCENTER_ENV=development`` (a generated session key, cookies
without the Secure flag, since it is served over plain HTTP on 127.0.0.1).

Runs on the calling thread; the child processes' output goes to ``<data dir>/logs/demo/``.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import redis as redis_lib
import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.domain.phone import mask_phone
from callcenter.storage import Database, keys, live, upgrade_database  # keys, live: submodules
from callcenter.storage.models import (
    Call,
    Callback,
    CallTag,
    CallTask,
    CampaignStatus,
    Customer,
    DoNotCall,
    Store,
    TaskState,
    Ticket,
    Utterance,
    utcnow,
)

logger = logging.getLogger(__name__)

DEMO_MIX = "demo"  # the personas file's mix for numbers it does not list (the demo's customers)
# A pending task due later than this is a retry or a callback the customer chose (busy: 30 min,
# no answer: 2 h, "明天下午三点以后"): the demo does not wait for it.
DUE_HORIZON_SECONDS = 60
# Without a single call ending for this long while tasks are open, something is broken.
STALL_SECONDS = 300
CACHE_PREFIX = "cc:cache:"
_REDIS_PREFIXES = (keys.PREFIX, live.PREFIX, CACHE_PREFIX)
_SIP_ENV_REMOVED = ("CALLCENTER_SIP_PROXY", "CALLCENTER_SIP_REGISTRAR", "CALLCENTER_SIP_USERNAME",
                    "CALLCENTER_SIP_PASSWORD", "CALLCENTER_SIP_DIAL_PREFIX")

DISPOSITION_ZH = {"answered": "接通", "busy": "占线", "no_answer": "无人接听", "rejected": "拒接", "not_found": "空号",
                  "unavailable": "无法接通", "failed": "失败", "network_error": "网络错误", "lost": "中断"}
OUTCOME_ZH = {"completed": "完成回访", "partial": "未完成", "refused": "拒访", "callback": "约定回拨", "opt_out": "拒绝再访",
              "wrong_number": "打错", "answering_machine": "语音信箱", "transferred": "转人工", "transfer_failed": "转人工失败", "hung_up": "中途挂断",
              "not_reached": "未接通", "error": "系统错误"}
CATEGORY_ZH = {"service_process": "服务流程", "service_attitude": "服务态度", "wait_time": "等待时间",
               "repair_quality": "维修质量", "car_wash": "洗车", "parts_wait": "等配件", "price": "价格",
               "facility": "环境设施", "sales_process": "销售流程", "insurance": "保险", "praise": "表扬"}
DEPARTMENT_ZH = {"after_sales": "售后", "sales": "销售", "insurance": "保险", "crm": "客服"}


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while the demo was running."""


@dataclass(frozen=True)
class DemoOptions:
    workers: int = 2  # dialer processes (4 calls each)
    channels: int = 8  # the campaign's concurrent calls
    min_calls: int = 30  # the smallest audience the campaign may have
    console_host: str = "127.0.0.1"
    console_port: int = 8000
    trunk_host: str = "127.0.0.1"  # where the simulated customers listen (the robot's trunk)
    trunk_port: int = 5070
    simulator_processes: int = 5  # 4 calls each
    simulator_rtp_port: int = 30000
    runner: str | None = None  # module:function(phone, settings); None: the robot (campaigns.robot)
    customers: int = 5000
    seed: int = 2026
    keep_console: bool = True  # after the figures: keep the console until Ctrl-C
    start_timeout: float = 300.0  # for each service to come up (the workers load their models)
    poll_interval: float = 0.25  # console API polls while calls run
    log_dir: Path | None = None  # default <data dir>/logs/demo

    @property
    def trunk(self) -> str:
        return f"{self.trunk_host}:{self.trunk_port}"

    @property
    def console_url(self) -> str:
        return f"http://{self.console_host}:{self.console_port}"


# --------------------------------------------------------------------------- child processes


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # resolved here: the child must not dlopen between fork and exec
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the demo process dies (even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One service the demo started: the leader of its own process group, output to log files."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path, *,
                 grace: float) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.grace = grace
        self.out_path = log_dir / f"{name}.out"
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.stopping = False  # set when the demo stops it: its exit is then no error

    def start(self) -> None:
        with self.out_path.open("wb") as out, self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         # The demo starts its children before any thread of its own.
                                         start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
        logger.debug("%s started: pid %s", self.name, self.proc.pid)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group_alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def terminate(self) -> None:
        """SIGTERM to the leader: each service stops its own children in order."""
        if self.running():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_stopped(self, deadline: float, abort: threading.Event | None = None) -> bool:
        """Wait until the leader and every process of its group are gone (True), the deadline or ``abort``."""
        while time.monotonic() < deadline and not (abort is not None and abort.is_set()):
            if self.proc is not None:
                self.proc.poll()
            if not self.group_alive():
                return True
            time.sleep(0.1)
        return False

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Services:
    """The demo's child processes; ``force`` (a second Ctrl-C) turns a graceful stop into kills."""

    def __init__(self, force: threading.Event | None = None) -> None:
        self.children: list[Child] = []
        self.force = force or threading.Event()

    def add(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def check(self) -> None:
        for child in self.children:
            if child.proc is not None and not child.running() and not child.stopping:
                raise DemoError(f"{child.name} exited with status {child.proc.returncode}; "
                                f"its log ({child.log_path}):\n{child.tail()}")

    def stop(self, names: tuple[str, ...]) -> None:
        """Stop the named children in that order: SIGTERM, wait their grace, kill their groups."""
        chosen = [c for name in names for c in self.children if c.name == name]
        for child in chosen:
            child.stopping = True
        for child in chosen:  # in the given order: workers hang up before the customers go
            if self.force.is_set():
                child.kill_group()
                continue
            child.terminate()
            if not child.wait_stopped(time.monotonic() + child.grace, self.force):
                logger.warning("%s did not stop in time: killing its process group", child.name)
                child.kill_group()
        for child in chosen:
            child.kill_group()  # whatever a stopped leader left behind in its group
            child.wait_stopped(time.monotonic() + 5)
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
        self.children = [c for c in self.children if c not in chosen]


# --------------------------------------------------------------------------- the demo data


def sqlite_path(settings: Settings) -> Path | None:
    url = sa.engine.make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def foreign_data(db: Database, demo_codes: tuple[str, ...]) -> str | None:
    """Why the database holds more than the demo group (None: only the demo, or empty)."""
    try:
        with db.session() as s:
            codes = set(s.scalars(sa.select(Store.code)))
            if codes - set(demo_codes):
                return f"stores {', '.join(sorted(codes - set(demo_codes)))} are not the demo's"
            demo_ids = sa.or_(*(Customer.external_id.like(f"{code}-%") for code in demo_codes))
            others = s.scalar(sa.select(sa.func.count()).select_from(Customer).where(sa.not_(demo_ids)))
            if others:
                return f"{others} customers are not the demo's"
    except sa.exc.OperationalError:
        return None  # no schema yet (or an old one): nothing a user could have entered there
    return None


def reset_redis(redis: redis_lib.Redis, *, wait_alive: float = 0.0) -> int:
    """Delete the dialer's, the live view's and the console cache's keys (rebuilt from the database).

    Liveness keys expire one worker timeout after their worker died: those of a demo that was
    killed are waited out for up to ``wait_alive`` seconds.

    Raises:
        DemoError: dialer workers are alive on this Redis database (another dialer runs).
    """
    deadline = time.monotonic() + wait_alive
    while (alive := list(redis.scan_iter(match=keys.ALIVE_PREFIX + "*", count=500))) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    if alive:
        raise DemoError(f"{len(alive)} dialer worker(s) are running on this Redis database "
                        f"({alive[0]} ...): stop them first, or point the demo at another "
                        "database (CALLCENTER_REDIS_URL)")
    removed = 0
    for prefix in _REDIS_PREFIXES:
        batch = list(redis.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(batch), 500):
            removed += redis.delete(*batch[i:i + 500])
    return removed


def reset_demo(settings: Settings, redis: redis_lib.Redis, *, customers: int, seed: int,
               as_of: dt.date) -> dict[str, Any]:
    """A fresh demo group in the embedded SQLite database, so that every run calls the same way.

    Deletes the database, the recordings and the simulator's call logs of earlier demo runs, but
    only when the database holds nothing but the demo group.

    Raises:
        DemoError: not SQLite, or the database holds other data.
    """
    from callcenter.demo import STORES, load_demo

    path = sqlite_path(settings)
    if path is None:
        raise DemoError("the demo runs on the embedded SQLite database: unset CALLCENTER_DATABASE_URL "
                        "(or point it at sqlite:///...)")
    if path.exists():
        db = Database(settings.database_url)
        try:
            why = foreign_data(db, tuple(st.code for st in STORES))
        finally:
            db.dispose()
        if why:
            raise DemoError(f"{path} holds more than the demo group ({why}); the demo starts from a fresh "
                            "database each time: run it with another CALLCENTER_DATA_DIR")
    reset_redis(redis, wait_alive=settings.dialer_worker_timeout + 1)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data_dir = Path(settings.data_dir)
    for sub in ([] if settings.recordings_dir else [data_dir / "recordings"]) + [data_dir / "simulator" / "calls"]:
        shutil.rmtree(sub, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        upgrade_database(db)
        return load_demo(db, as_of=as_of, n_customers=customers, seed=seed, settings=settings)
    finally:
        db.dispose()


def create_demo_campaign(db: Database, settings: Settings, *, min_calls: int, channels: int,
                         as_of: dt.date) -> dict[str, Any]:
    """A post-service revisit of the last days' visits, of one store or the group: of those with at
    least ``min_calls`` customers, the smallest (the demo's length grows with its calls).

    Raises:
        DemoError: even a week of the whole group's visits has fewer customers than ``min_calls``.
    """
    from callcenter.demo import STORES
    from campaigns.scripts import available_scripts
    from campaigns.service import CampaignSpec, EmptyAudience, create_campaign

    known = set(available_scripts(settings.data_dir))
    base = {"windows": "00:00-24:00", "holidays": False}  # the demo calls now, whatever the hour or day
    best: tuple[int, CampaignSpec] | None = None
    largest = 0
    for last in range(1, 8):
        for store in (None, *(st.code for st in STORES)):
            spec = CampaignSpec(type="post_service", as_of=as_of, store=store, max_channels=channels,
                                params={**base, "window_days": [1, last]},
                                name=f"演示 售后回访 {as_of.isoformat()}" + (f" {store}" if store else ""))
            try:
                size = create_campaign(db, spec, settings, known_scripts=known, dry_run=True)["audience"]
            except EmptyAudience:
                size = 0
            largest = max(largest, size)
            if size >= min_calls and (best is None or size < best[0]):
                best = (size, spec)
        if best is not None:
            break
    if best is None:
        raise DemoError(f"the demo group has only {largest} post-service visits in the last 7 days "
                        f"(at least {min_calls} wanted)")
    return create_campaign(db, best[1], settings, known_scripts=known)


def start_campaign(db: Database, campaign_id: int) -> None:
    from campaigns.service import change_status

    change_status(db, campaign_id, "start")


# --------------------------------------------------------------------------- watching the campaign


@dataclass
class SeenCall:
    id: int
    ended_at: dt.datetime  # naive UTC, as the console reports it
    seen_at: dt.datetime  # naive UTC: when the console API first returned it ended, with its tags
    disposition: str | None
    outcome: str | None
    talk_seconds: float | None
    score5: int | None
    tags: list[dict]
    customer_id: str | None
    store: str | None

    @property
    def visible_after(self) -> float:
        return (self.seen_at - self.ended_at).total_seconds()


class ConsoleApi:
    """The console's JSON API, read as a supervisor's integration would (Bearer token)."""

    def __init__(self, base_url: str, token: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.base_url + path, headers={"Authorization": f"Bearer {self.token}",
                                                                     "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def ended_calls(self, campaign_id: int, after_id: int) -> list[dict]:
        items: list[dict] = []
        while True:
            page = self.get(f"/api/v1/calls?campaign={campaign_id}&after_id={after_id}&limit=500")
            items.extend(page["items"])
            if not page.get("next_after_id"):
                return items
            after_id = page["next_after_id"]


def wait_http(url: str, deadline: float, stop: threading.Event, check: Callable[[], None]) -> None:
    while True:
        check()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"{url} did not answer in time")
        if stop.wait(0.3):
            raise Interrupted


def _parse_utc(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC).replace(tzinfo=None)


def due_open_tasks(db: Database, campaign_id: int, now: dt.datetime) -> int:
    """Tasks queued, dialling, or pending and due within the horizon: what the demo waits for."""
    horizon = now + dt.timedelta(seconds=DUE_HORIZON_SECONDS)
    with db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(CallTask).where(
            CallTask.campaign_id == campaign_id,
            sa.or_(CallTask.state.in_([TaskState.QUEUED, TaskState.DIALING]),
                   sa.and_(CallTask.state == TaskState.PENDING,
                           sa.or_(CallTask.next_attempt_at.is_(None), CallTask.next_attempt_at <= horizon))))) or 0


def customers_dialled(db: Database, campaign_id: int) -> int:
    """Tasks with at least one attempt that has ended (the customers called so far)."""
    with db.session() as s:
        return s.scalar(sa.select(sa.func.count(sa.distinct(Call.task_id))).where(
            Call.campaign_id == campaign_id, Call.ended_at.is_not(None))) or 0


def calls_in_progress(db: Database, campaign_id: int) -> int:
    with db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Call).where(Call.campaign_id == campaign_id,
                                                                           Call.ended_at.is_(None))) or 0


def lowest_unseen_call(db: Database, campaign_id: int, seen: Collection[int]) -> int | None:
    """The campaign's lowest call id not yet seen ended: the console API is read from there on."""
    with db.session() as s:
        query = sa.select(sa.func.min(Call.id)).where(Call.campaign_id == campaign_id)
        if seen:
            query = query.where(Call.id.not_in(list(seen)))
        return s.scalar(query)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "median": _round(statistics.median(values)) if values else None,
            "p95": _round(_percentile(values, 0.95)), "max": _round(max(values)) if values else None}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def compute_figures(db: Database, campaign_id: int, seen: Mapping[int, SeenCall], *, started_at: dt.datetime,
                    options: DemoOptions, expected: Callable[[str], str | None],
                    expect: Callable[[str], Mapping[str, Any] | None] | None = None) -> dict[str, Any]:
    """The figures of issue 8 from the database and what the console API showed.

    ``expected(phone)`` is the outcome the persona answering ``phone`` should lead to; ``expect(phone)``
    its whole ``expect`` (score, complaint categories, tickets ...), for the tag and ticket figures
    of issue 11 (:mod:`campaigns.personas.scoring`).
    """
    with db.session() as s:
        calls = s.execute(sa.select(Call.id, Call.phone, Call.disposition, Call.outcome, Call.started_at,
                                    Call.answered_at, Call.ended_at, Call.talk_seconds)
                          .where(Call.campaign_id == campaign_id, Call.ended_at.is_not(None))
                          .order_by(Call.id)).all()
        tag_rows = s.execute(sa.select(CallTag.call_id, sa.func.max(CallTag.created_at))
                             .join(Call, Call.id == CallTag.call_id)
                             .where(Call.campaign_id == campaign_id).group_by(CallTag.call_id)).all()
        tickets = dict(s.execute(sa.select(Ticket.department, sa.func.count()).join(Call, Call.id == Ticket.call_id)
                                 .where(Call.campaign_id == campaign_id).group_by(Ticket.department)).all())
        callbacks = s.scalar(sa.select(sa.func.count()).select_from(Callback).join(Call, Call.id == Callback.call_id)
                             .where(Call.campaign_id == campaign_id)) or 0
        opt_outs = s.scalar(sa.select(sa.func.count()).select_from(DoNotCall).join(Call, Call.id == DoNotCall.call_id)
                            .where(Call.campaign_id == campaign_id)) or 0
        with_transcript = s.scalar(sa.select(sa.func.count(sa.distinct(Utterance.call_id)))
                                   .join(Call, Call.id == Utterance.call_id)
                                   .where(Call.campaign_id == campaign_id, Utterance.speaker == "customer")) or 0
        recordings = s.scalar(sa.select(sa.func.count()).select_from(Call)
                              .where(Call.campaign_id == campaign_id, Call.recording.is_not(None))) or 0
        tasks = dict(s.execute(sa.select(CallTask.state, sa.func.count()).where(CallTask.campaign_id == campaign_id)
                               .group_by(CallTask.state)).all())
    ended = [c for c in calls if c.ended_at is not None]
    answered = [c for c in ended if c.disposition == "answered"]
    last_end = max((c.ended_at for c in ended), default=started_at)
    elapsed = max(1e-6, (last_end - started_at).total_seconds())
    as_scripted = [c for c in answered if c.outcome is not None and expected(c.phone or "") == c.outcome.value]
    completed = [c for c in answered if c.outcome is not None and c.outcome.value == "completed"]
    ended_by_id = {c.id: c.ended_at for c in ended}
    stored = [(at - ended_by_id[cid]).total_seconds() for cid, at in tag_rows if cid in ended_by_id]
    tagged_ids = {cid for cid, _ in tag_rows}
    visible_all = [c.visible_after for c in seen.values()]
    visible_tagged = [c.visible_after for c in seen.values() if c.id in tagged_ids]
    dispositions: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for c in ended:
        dispositions[c.disposition or "lost"] = dispositions.get(c.disposition or "lost", 0) + 1
        if c.outcome is not None:
            outcomes[c.outcome.value] = outcomes.get(c.outcome.value, 0) + 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    judged = _judge_calls(db, [(c.id, c.phone) for c in answered], expect) if expect is not None else None
    return {
        "date": utcnow().replace(microsecond=0).isoformat() + "Z",
        "machine": {"host": socket.gethostname(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 2) for x in load] if load[0] is not None else None},
        "campaign": {"id": campaign_id, "tasks": {k.value: v for k, v in tasks.items()},
                     "workers": options.workers, "channels": options.channels,
                     "runner": options.runner or "campaigns.robot:make_runner"},
        "calls": len(ended), "answered": len(answered), "elapsed_seconds": round(elapsed, 1),
        "calls_per_hour": round(len(ended) * 3600 / elapsed, 1),
        "answered_calls_per_hour": round(len(answered) * 3600 / elapsed, 1),
        "talk_seconds_median": _round(statistics.median([c.talk_seconds for c in answered if c.talk_seconds])
                                      if any(c.talk_seconds for c in answered) else None, 1),
        "answered_as_scripted": {"n": len(as_scripted), "of": len(answered),
                                 "share": _round(len(as_scripted) / len(answered), 3) if answered else None,
                                 "definition": "answered calls whose outcome is the one the simulated customer's "
                                               "persona expects (personas.yaml expect.outcome)"},
        "tags_and_tickets": judged,
        "answered_completed": {"n": len(completed), "of": len(answered),
                               "share": _round(len(completed) / len(answered), 3) if answered else None},
        "hangup_to_visible_seconds": {
            **_summary(visible_all), "tagged": _summary(visible_tagged),
            "definition": f"first time the console API (/api/v1/calls, polled every {options.poll_interval} s) "
                          "returned the call ended with its outcome and tags, minus the call's ended_at"},
        "hangup_to_tags_stored_seconds": {**_summary(stored),
                                          "definition": "call_tags.created_at minus the call's ended_at"},
        "dispositions": dispositions, "outcomes": outcomes,
        "tickets_by_department": tickets, "callbacks": callbacks, "opt_outs": opt_outs,
        "calls_with_customer_transcript": with_transcript, "recordings": recordings,
    }


def _judge_calls(db: Database, calls: list[tuple[int, str | None]],
                 expect: Callable[[str], Mapping[str, Any] | None]) -> dict[str, Any]:
    """Tag and ticket correctness of the answered calls whose persona says what to expect."""
    from campaigns.personas.scoring import Expected, concluded, judge, summarize

    wanted = {cid: e for cid, phone in calls if (e := expect(phone or "")) is not None}
    with db.session() as s:
        got = concluded(s, wanted)
    pairs = []
    for cid, e in wanted.items():
        exp = Expected.from_expect(e)
        pairs.append((exp, got[cid], judge(exp, got[cid])))
    total = summarize(pairs)
    return {"calls": total["calls"], "tags_exact": total["tags"]["calls_exact"],
            "tickets_exact": sum(1 for *_x, j in pairs if j.tickets_ok), "tags": total["tags"],
            "tickets": total["tickets"],
            "definition": "answered calls; complaint tags (praise aside) against the persona's expect.categories "
                          "(allowed extras not counted), tickets by department against expect.tickets "
                          "(campaigns/personas/scoring.py)"}


# --------------------------------------------------------------------------- the run


class Printer:
    """Lines on the terminal, each with the time since the demo started."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.t0)
        self.out.write(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}\n")
        self.out.flush()


def _child_env(settings: Settings, options: DemoOptions, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SIP_ENV_REMOVED}
    env["CALLCENTER_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    env["CALLCENTER_MODELS_DIR"] = str(Path(settings.models_dir).resolve())
    env["CALLCENTER_SIP_TRUNK"] = options.trunk
    env["CALLCENTER_SIP_TRANSPORT"] = "udp"  # the simulator's front is UDP only
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def check_ports(options: DemoOptions, settings: Settings) -> None:
    """Fail early, naming the port, instead of a child failing obscurely."""

    def free(kind: int, port: int, host: str) -> bool:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:  # as gunicorn binds: connections in TIME_WAIT do not count
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return True
            except OSError:
                return False

    if not free(socket.SOCK_STREAM, options.console_port, options.console_host):
        raise DemoError(f"TCP port {options.console_port} is in use: stop what uses it or pass --port")
    for port in range(options.trunk_port, options.trunk_port + options.simulator_processes + 1):
        if not free(socket.SOCK_DGRAM, port, options.trunk_host):
            raise DemoError(f"UDP port {port} (simulated customers) is in use: another `callcenter simulate`? "
                            "Stop it or pass --trunk-port")
    robot_rtp = (settings.rtp_port, settings.rtp_port + 200 * options.workers)
    sim_rtp = (options.simulator_rtp_port, options.simulator_rtp_port + 200 * options.simulator_processes)
    if robot_rtp[0] < sim_rtp[1] and sim_rtp[0] < robot_rtp[1]:
        raise DemoError(f"the robot's RTP ports {robot_rtp[0]}-{robot_rtp[1] - 1} overlap the simulated customers' "
                        f"{sim_rtp[0]}-{sim_rtp[1] - 1}: change CALLCENTER_RTP_PORT")


def _personas() -> Callable[[str], Any]:
    """phone -> the simulated customer (persona) who answers it, or None."""
    from campaigns.personas import load_personas

    book = load_personas().with_default(DEMO_MIX)
    cache: dict[str, Any] = {}

    def persona(phone: str):
        if phone not in cache:
            try:
                cache[phone] = book.for_number(phone)
            except KeyError:
                cache[phone] = None
        return cache[phone]

    return persona


def scripted_outcome(expected: str | None, agents: bool) -> str | None:
    """What the script prescribes for a persona on this demo: asking for a person ends
    ``transfer_failed`` (the robot says nobody is free and leaves the agents a callback task) when
    no agent extension is configured (CALLCENTER_TRANSFER_TARGET), as in the default demo."""
    return "transfer_failed" if expected == "transferred" and not agents else expected


def _expected_outcomes(agents: bool) -> Callable[[str], str | None]:
    persona = _personas()
    return lambda phone: scripted_outcome(p.expect.get("outcome") if (p := persona(phone)) is not None else None,
                                          agents)


def _expectations() -> Callable[[str], Mapping[str, Any] | None]:
    persona = _personas()
    return lambda phone: (p.expect if (p := persona(phone)) is not None and p.expect.get("outcome") else None)


def _call_line(call: SeenCall, phone: str | None, persona: Any, agents: bool = False) -> str:
    """One ended call as the console shows it; for answered calls, who the simulated customer was
    and whether the robot ended the call as the script prescribes for them (✓/✗)."""
    disposition = call.disposition or "lost"
    answered = disposition == "answered"
    expected = scripted_outcome(persona.expect.get("outcome"), agents) if answered and persona is not None else None
    parts = [f"通话 #{call.id} {call.customer_id or '?'} {mask_phone(phone) if phone else ''}".rstrip()]
    if answered and persona is not None:
        parts.append(f"模拟客户: {persona.description}")
    parts.append(DISPOSITION_ZH.get(disposition, disposition))
    if disposition == "answered" and call.talk_seconds is not None:
        parts[-1] += f" {call.talk_seconds:.0f}s"
    if call.outcome:
        mark = "" if expected is None else (" ✓" if expected == call.outcome else f" ✗(应为 {OUTCOME_ZH.get(expected, expected)})")
        parts.append(f"→ {OUTCOME_ZH.get(call.outcome, call.outcome)}{mark}")
    if call.score5 is not None:
        parts.append(f"评分 {call.score5}")
    if call.tags:
        parts.append("标签 " + ", ".join(
            f"{CATEGORY_ZH.get(t['category'], t['category'])}({DEPARTMENT_ZH.get(t['department'], t['department'])})"
            for t in call.tags))
    parts.append(f"挂机后 {call.visible_after:.1f}s 可见")
    return " · ".join(parts)


def _progress_line(status: dict[str, Any], reached: int) -> str:
    t = status["tasks"]
    disp = ", ".join(f"{DISPOSITION_ZH.get(k, k)} {v}" for k, v in sorted(status["dispositions"].items(),
                                                                        key=lambda kv: -kv[1]))
    outc = ", ".join(f"{OUTCOME_ZH.get(k, k)} {v}" for k, v in sorted(status["call_outcomes"].items(),
                                                                     key=lambda kv: -kv[1]))
    ended = sum(status["dispositions"].values())
    return (f"进度 progress: 已拨客户 {reached}/{t['total']}, 通话中 {status['in_progress']} | "
            f"已结束通话 {ended}: {disp or '-'} | 结果: {outc or '-'}")


def run_demo(settings: Settings, options: DemoOptions, *, make_token: Callable[[Database], str],
             out: TextIO = sys.stdout, stop: threading.Event | None = None,
             force: threading.Event | None = None,
             history: Callable[[Database, dt.date], str] | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the figures.

    ``make_token(db)`` creates a read token of the demo's administrator for the console API.
    ``history(db, today)``, when given, adds the demo group's past months of work once the live
    campaign's audience is chosen (so that it cannot change who the live campaign calls) and
    returns the line to print about it (the CLI passes :func:`demo.history.seed_history`).
    ``stop`` is set by the caller's signal handler (Ctrl-C); the demo then stops everything it
    started and raises :class:`Interrupted`. ``force`` (a second Ctrl-C) kills instead of waiting.

    Raises:
        DemoError: a service did not start, a port is taken, the database is not the demo's ...
        Interrupted: ``stop`` was set before the end.
    """
    from campaigns.service import campaign_status

    stop = stop or threading.Event()
    run_t0 = time.monotonic()
    say = Printer(out)
    data_dir = Path(settings.data_dir).resolve()
    log_dir = options.log_dir or data_dir / "logs" / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=3,
                                     socket_timeout=10)
    try:
        redis.ping()
    except redis_lib.RedisError as exc:
        raise DemoError(f"Redis at {settings.redis_url} does not answer ({exc}): run scripts/setup") from None
    check_ports(options, settings)
    services = Services(force)
    db: Database | None = None
    try:
        today = dt.date.today()
        t = time.monotonic()
        loaded = reset_demo(settings, redis, customers=options.customers, seed=options.seed, as_of=today)
        say(f"演示经销商集团已创建 demo dealer group: {loaded['stores']} 家门店, {loaded['customers']:,} 位客户, "
            f"{loaded['visits']:,} 次进厂 ({time.monotonic() - t:.1f} s)")
        if stop.is_set():
            raise Interrupted
        db = Database(settings.database_url)
        say(_customer_base_line(db, settings, today))
        campaign = create_demo_campaign(db, settings, min_calls=options.min_calls, channels=options.channels,
                                        as_of=today)
        window = campaign["params"]["window_days"]
        say(f"回访活动已创建 campaign #{campaign['id']} {campaign['name']}: {campaign['audience']} 位客户 "
            f"({campaign['store'] or '全部门店'}, 近 {window[1]} 天进厂), 最多 {options.channels} 路并发")
        if history is not None:
            t = time.monotonic()
            line = history(db, today)
            say(f"{line} ({time.monotonic() - t:.1f} s)")
            if stop.is_set():
                raise Interrupted

        python = sys.executable
        sim = services.add(Child("simulator", [
            python, "-m", "callcenter", "simulate", "--listen", options.trunk, "--default", DEMO_MIX,
            "--processes", str(options.simulator_processes), "--rtp-port", str(options.simulator_rtp_port)],
            _child_env(settings, options), log_dir, grace=15))
        console = services.add(Child("console", [
            python, "-m", "callcenter", "serve", "--host", options.console_host, "--port", str(options.console_port)],
            _child_env(settings, options, CALLCENTER_ENV="development"), log_dir, grace=25))
        worker_argv = [python, "-m", "callcenter", "worker", "--processes", str(options.workers)]
        if options.runner:
            worker_argv += ["--job", "campaigns.worker:run_dialer_job", "--job-arg", f"runner={options.runner}"]
        workers = services.add(Child("workers", worker_argv,
                                     _child_env(settings, options, CALLCENTER_SIP_PORT="0"), log_dir, grace=25))
        say(f"启动中 starting: 模拟客户 simulator (pid {sim.pid}), 控制台 console (pid {console.pid}), "
            f"外呼进程 {options.workers} workers (pid {workers.pid}); 日志 logs: {log_dir}")

        deadline = time.monotonic() + options.start_timeout
        ready = _wait_simulator(sim, deadline, stop, services.check)
        say(f"模拟客户已就绪 simulated customers ready on {ready['trunk']} ({ready['capacity']} 路)")
        wait_http(f"{options.console_url}/healthz", deadline, stop, services.check)
        say(f"控制台已就绪 console ready: {options.console_url}")
        _wait_workers(redis, options.workers, deadline, stop, services.check)
        say(f"外呼进程已就绪 {options.workers} dialer workers ready (模型已加载 models loaded)")

        api = ConsoleApi(options.console_url, make_token(db))
        start_campaign(db, campaign["id"])
        started_at = utcnow()
        startup = time.monotonic() - run_t0
        say(f"回访活动开始 campaign #{campaign['id']} started")
        seen = _watch(db, api, campaign["id"], settings, options, say, stop, services.check, campaign_status)
        figures = compute_figures(db, campaign["id"], seen, started_at=started_at, options=options,
                                  expected=_expected_outcomes(bool(settings.transfer_target)), expect=_expectations())
        figures["run"] = {"startup_seconds": round(startup, 1), "total_seconds": round(time.monotonic() - run_t0, 1)}
        path = data_dir / "demo-figures.json"
        path.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _print_figures(say, figures, path)
        credentials = _credentials(data_dir / "demo-credentials.txt")
        say(f"控制台 console: {options.console_url}/  登录 login: {credentials}")
        if options.keep_console:
            services.stop(("workers", "simulator"))  # nothing left to dial now: give the CPU back
            say("外呼进程与模拟客户已停止 workers and simulated customers stopped")
            say("控制台保持运行, 按 Ctrl-C 停止 (the console keeps running; Ctrl-C stops it)")
            while not stop.wait(1.0):
                services.check()
        return figures
    finally:
        if services.children:
            say("正在停止 stopping what the demo started (Ctrl-C again: kill at once) ...")
            services.stop(("workers", "simulator", "console"))
            say("已停止 stopped")
        if db is not None:
            db.dispose()
        redis.close()


def _customer_base_line(db: Database, settings: Settings, day: dt.date) -> str:
    from callcenter.customer_base import customer_base_stats

    with db.session() as s:
        st = customer_base_stats(s, day, default_cycle_mid=settings.cycle_months_mid,
                                 default_cycle_premium=settings.cycle_months_premium)
    base = st["base"] or 1
    return (f"客户基盘 customer base: 保有 {st['base']:,} · 有效 {st['active']:,} ({st['active'] / base:.0%}) · "
            f"流失 {st['lapsed']:,} ({st['lapsed'] / base:.0%}) · 再保 {st['insured']:,} ({st['insured'] / base:.0%}) "
            "(callcenter customers stats)")


def _wait_simulator(sim: Child, deadline: float, stop: threading.Event, check: Callable[[], None]) -> dict:
    while True:
        check()
        try:
            for line in sim.out_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("{") and '"ready"' in line:
                    return json.loads(line)
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"the simulated customers did not report ready; log:\n{sim.tail()}")
        if stop.wait(0.2):
            raise Interrupted


def _wait_workers(redis: redis_lib.Redis, n: int, deadline: float, stop: threading.Event,
                  check: Callable[[], None]) -> None:
    while True:
        check()
        if len(list(redis.scan_iter(match=keys.ALIVE_PREFIX + "*", count=500))) >= n:
            return
        if time.monotonic() > deadline:
            raise DemoError("the dialer workers did not come up in time (see workers.log)")
        if stop.wait(0.5):
            raise Interrupted


def _watch(db: Database, api: ConsoleApi, campaign_id: int, settings: Settings, options: DemoOptions,
           say: Printer, stop: threading.Event, check: Callable[[], None], campaign_status) -> dict[int, SeenCall]:
    """Print each call as the console shows it and the progress, until nothing is left to dial now."""
    persona = _personas()
    seen: dict[int, SeenCall] = {}
    last_status_at = last_said = 0.0
    last_line = ""
    last_progress = time.monotonic()
    while True:
        check()
        lowest = lowest_unseen_call(db, campaign_id, seen)
        try:
            items = [] if lowest is None else api.ended_calls(campaign_id, lowest - 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.warning("console API: %s", exc)
            items = []
        now = utcnow()
        new = []
        for item in items:
            if item["id"] in seen or item.get("ended_at") is None:
                continue
            call = SeenCall(id=item["id"], ended_at=_parse_utc(item["ended_at"]), seen_at=now,
                            disposition=item.get("disposition"), outcome=item.get("outcome"),
                            talk_seconds=item.get("talk_seconds"), score5=item.get("score5"),
                            tags=item.get("tags") or [], customer_id=item.get("customer_id"), store=item.get("store"))
            seen[call.id] = call
            new.append(call)
        if new:
            last_progress = time.monotonic()
            with db.session() as s:
                phones = dict(s.execute(sa.select(Call.id, Call.phone).where(Call.id.in_([c.id for c in new]))).all())
            for call in new:
                phone = phones.get(call.id)
                say(_call_line(call, phone, persona(phone) if phone else None, bool(settings.transfer_target)))
        if time.monotonic() - last_status_at >= 1.0:
            last_status_at = time.monotonic()
            status = campaign_status(db, campaign_id, settings)
            line = _progress_line(status, customers_dialled(db, campaign_id))
            if line != last_line or time.monotonic() - last_said >= 15.0:
                say(line)
                last_line, last_said = line, time.monotonic()
            if status["status"] != CampaignStatus.RUNNING.value and status["status"] != "completed":
                raise DemoError(f"campaign {campaign_id} is {status['status']}")
            if status["in_progress"] == 0 and due_open_tasks(db, campaign_id, utcnow()) == 0 \
                    and calls_in_progress(db, campaign_id) == 0 and lowest_unseen_call(db, campaign_id, seen) is None:
                later = status["tasks"]["pending"]
                if later:
                    say(f"首轮拨打完成 first pass done; {later} 个任务按规则稍后重拨或按客户约定回拨 "
                        f"(next at {status['next_attempt_at']} UTC)")
                else:
                    say("回访活动完成 campaign completed")
                return seen
        if time.monotonic() - last_progress > STALL_SECONDS:
            raise DemoError(f"no call ended for {STALL_SECONDS} s while tasks are open: see the workers' log")
        if stop.wait(options.poll_interval):
            raise Interrupted



def _credentials(path: Path) -> str:
    try:
        rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return f"(see {path})"
    users = {r[0]: r[1] for r in rows if len(r) == 2}
    if "admin" in users:
        others = ", ".join(u for u in users if u != "admin")
        return f"admin / {users['admin']}  (其他账号 other users: {others}, 见 see {path})"
    return f"(see {path})"


def _print_figures(say: Printer, f: dict[str, Any], path: Path) -> None:
    vis = f["hangup_to_visible_seconds"]
    scripted = f["answered_as_scripted"]
    say("—— 演示结果 figures ——")
    say(f"通话 calls: {f['calls']} 次拨打, {f['answered']} 次接通, 用时 {f['elapsed_seconds']:.0f} s "
        f"({f['campaign']['workers']} workers, {f['campaign']['channels']} 路并发, {f['machine']['cpus']} 核)")
    say(f"每小时通话 calls per hour on this machine: {f['calls_per_hour']:.0f} "
        f"(接通 answered {f['answered_calls_per_hour']:.0f}/h)")
    if scripted["share"] is not None:
        say(f"按话术完成 answered calls ending as scripted: {scripted['share'] * 100:.0f}% "
            f"({scripted['n']}/{scripted['of']}); 完成全部问题 completed: "
            f"{f['answered_completed']['n']}/{f['answered_completed']['of']}")
    judged = f.get("tags_and_tickets")
    if judged and judged["calls"]:
        tags, tickets = judged["tags"], judged["tickets"]
        say(f"标签与工单 tags and tickets: 标签正确 tags right {judged['tags_exact']}/{judged['calls']} "
            f"(precision {tags['precision']}, recall {tags['recall']}); 工单正确 tickets right "
            f"{judged['tickets_exact']}/{judged['calls']} (多开 false {tickets['false']}, 重复 duplicate "
            f"{tickets['duplicates']}, 漏开 missed {tickets['missed']})")
    if vis["n"]:
        say(f"挂机到标签可见 hang-up to tags visible in the console: 中位 median {vis['median']:.2f} s, "
            f"p95 {vis['p95']:.2f} s, max {vis['max']:.2f} s ({vis['n']} calls; target ≤ 3 s)")
    tickets = ", ".join(f"{DEPARTMENT_ZH.get(k, k)} {v}" for k, v in f["tickets_by_department"].items()) or "0"
    say(f"工单 tickets: {tickets}; 回拨 callbacks: {f['callbacks']}; 拒绝再访 opt-outs: {f['opt_outs']}; "
        f"有客户原话的通话 calls with the customer's words: {f['calls_with_customer_transcript']}; "
        f"录音 recordings: {f['recordings']}")
    say(f"结果已写入 figures written to {path}")
