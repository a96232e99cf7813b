"""The whole revisit flow, end to end: a 10-call post-service campaign of real SIP calls.

Real everything on 127.0.0.1: ``callcenter simulate`` answers as ten personas (docs/simulator.md),
``callcenter worker`` dials them through the Redis dialer with the robot (pjsua2 + Whisper + the
dialog engine and classifier), the outcomes land in a SQLite database, and ``callcenter serve``
shows one of the calls in Chromium. Asserted: every call's disposition, the customers' words in
the transcripts, tickets of the complaint calls for the right department, the callback scheduled,
the opt-out on the do-not-call list.

Takes a few minutes: ten calls of up to 80 s, four at a time, on two cores.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from callcenter.accounts import upsert_user
from callcenter.config import Settings
from callcenter.domain import Gender, Role, Tier, VisitType
from callcenter.storage import Database, upgrade_database
from callcenter.storage.models import (
    Call,
    Callback,
    CallTask,
    Customer,
    DoNotCall,
    ServiceVisit,
    Store,
    TaskState,
    Ticket,
    Utterance,
    Vehicle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.sip, pytest.mark.models, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
PERSONAS_FILE = ROOT / "campaigns" / "personas" / "personas.yaml"
MODELS_DIR = Path(os.environ.get("CALLCENTER_TEST_MODELS_DIR", ROOT / "var" / "models"))
REDIS_URL = "redis://127.0.0.1:6379/5"  # this test's own database: it is flushed first
TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "e2e-pass-123"
# The ten customers: number -> persona (campaigns/personas/personas.yaml).
CUSTOMERS = {
    "13900000001": "satisfied", "13900000002": "complains_wait", "13900000003": "complains_parts",
    "13900000005": "complains_quality", "13900000006": "busy", "13900000008": "hangs_up_early",
    "13900000009": "wrong_number", "13900000010": "callback", "13900000011": "opt_out",
    "13900000013": "answering_machine",
}
SURNAMES = "王李张刘陈杨赵黄周吴"


def _simulator_helpers():
    """The simulator tests' process helpers (start/stop ``callcenter simulate``), loaded by path."""
    name = "simulator_conftest_for_e2e"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests/integration/simulator/conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _seed(db: Database, today: dt.date) -> None:
    """One store, the ten customers, each with a paid service visit yesterday."""
    with db.session() as s:
        store = Store(code="E2E", name="锦华丰田岳麓店", city="长沙市", timezone="Asia/Shanghai")
        s.add(store)
        s.flush()
        for i, (phone, _persona) in enumerate(CUSTOMERS.items()):
            c = Customer(external_id=f"E2E{i:03d}", store_id=store.id, name=SURNAMES[i] + "先生", phone=phone,
                         gender=Gender.MALE, city="长沙市")
            s.add(c)
            s.flush()
            v = Vehicle(customer_id=c.id, vin=f"LVGE2E{i:011d}", tier=Tier.MID, purchase_date=dt.date(2022, 3, 1),
                        brand="丰田", model="卡罗拉", plate=f"湘A{10000 + i}")
            s.add(v)
            s.flush()
            s.add(ServiceVisit(dedup_key=f"E2E-V{i}", customer_id=c.id, vehicle_id=v.id, store_id=store.id,
                               visit_date=today - dt.timedelta(days=1), visit_type=VisitType.MAINTENANCE, paid=True,
                               advisor="刘洋"))
        upsert_user(s, "supervisor", PASSWORD, Role.SUPERVISOR, store_code="E2E")


def _settled(db: Database, campaign_id: int) -> bool:
    """Every task is final, or waits for a callback more than an hour away."""
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)
    with db.session() as s:
        tasks = s.scalars(sa.select(CallTask).where(CallTask.campaign_id == campaign_id)).all()
        return bool(tasks) and all(
            t.state in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)
            or (t.state is TaskState.PENDING and t.next_attempt_at is not None and t.next_attempt_at > later)
            for t in tasks)


@pytest.fixture(scope="module")
def revisit(tmp_path_factory):
    """Runs the campaign once for the module; yields (settings, db, campaign_id)."""
    import redis

    from campaigns.scripts import available_scripts
    from campaigns.service import CampaignSpec, change_status, create_campaign

    tmp = tmp_path_factory.mktemp("revisit")
    data = tmp / "var"
    data.mkdir()
    settings = Settings(data_dir=data, redis_url=REDIS_URL, models_dir=MODELS_DIR, env="testing")
    db = Database(settings.database_url)
    upgrade_database(db)
    today = dt.datetime.now(TZ).date()
    _seed(db, today)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    # Calls now, whatever the hour or day; quick retries so busy and voicemail finish within the test.
    params = {"windows": "00:00-24:00", "holidays": False,
              "retry_seconds": {"busy": 5, "answering_machine": 5, "no_answer": 5}}
    spec = CampaignSpec(type="post_service", as_of=today, params=params, max_channels=4, max_attempts=2,
                        name="端到端测试")
    report = create_campaign(db, spec, settings, known_scripts=set(available_scripts(data)))
    assert report["audience"] == 10, report
    campaign_id = report["id"]

    sim_helpers = _simulator_helpers()
    (tmp / "sim").mkdir()
    sim = sim_helpers.start_simulator(tmp / "sim", processes=2, extra=("--personas", str(PERSONAS_FILE)))
    sip_port = sim_helpers.free_ports(2)
    rtp_port = sim_helpers.free_ports(200)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_DATA_DIR": str(data), "CALLCENTER_DATABASE_URL": settings.database_url,
                "CALLCENTER_REDIS_URL": REDIS_URL, "CALLCENTER_MODELS_DIR": str(MODELS_DIR),
                "CALLCENTER_SIP_TRUNK": sim.trunk, "CALLCENTER_SIP_BIND": "127.0.0.1",
                "CALLCENTER_SIP_PORT": str(sip_port), "CALLCENTER_RTP_PORT": str(rtp_port),
                "CALLCENTER_LOG_LEVEL": "info", "CALLCENTER_ENV": "testing"})
    log = open(tmp / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([sys.executable, "-m", "callcenter", "worker", "--processes", "1"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        change_status(db, campaign_id, "start")
        deadline = time.monotonic() + 480  # within pytest's --timeout=600 for setup and test
        while not _settled(db, campaign_id):
            if worker.poll() is not None:
                pytest.fail(f"callcenter worker exited {worker.returncode}: "
                            f"{(tmp / 'worker.log').read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the campaign did not settle in 480 s; worker log tail: "
                            f"{(tmp / 'worker.log').read_text(errors='replace')[-3000:]}")
            time.sleep(1)
        yield settings, db, campaign_id, sim.log_dir
    finally:
        _stop(worker)
        log.close()
        sim_helpers.stop_simulator(sim)
        db.dispose()


def _said(log_dir: Path, sip_call_id: str) -> list[str]:
    """What the simulated customer answered on the call with this SIP Call-ID (its own call log;
    the pick-up "喂" is left out: a two-character hello is no test of the transcript)."""
    from campaigns.simulator.customer import read_call_logs

    (log,) = read_call_logs(log_dir, sip_call_id=sip_call_id)
    return [a["text"] for a in log["answers"] if a.get("text") and a.get("key") != "hello"]


def _similar(a: str, b: str) -> float:
    strip = str.maketrans("", "", "，。？！,.?! ")
    return difflib.SequenceMatcher(None, a.translate(strip), b.translate(strip)).ratio()


def test_every_call_of_the_campaign_ends_as_the_customer_behaved(revisit):
    _settings, db, campaign_id, log_dir = revisit
    with db.session() as s:
        tasks = {t.phone: t for t in s.scalars(sa.select(CallTask).where(CallTask.campaign_id == campaign_id))}
        phone_of_task = {t.id: phone for phone, t in tasks.items()}
        calls: dict[str, list[Call]] = {}
        for call in s.scalars(sa.select(Call).where(Call.campaign_id == campaign_id).order_by(Call.id)):
            calls.setdefault(phone_of_task[call.task_id], []).append(call)
        heard = {phone: [u.text for c in cs for u in s.scalars(sa.select(Utterance).where(
            Utterance.call_id == c.id, Utterance.speaker == "customer"))] for phone, cs in calls.items()}
        tickets = {phone: sorted(t.department for c in cs for t in s.scalars(sa.select(Ticket).where(Ticket.call_id == c.id)))
                   for phone, cs in calls.items()}
        dnc = set(s.scalars(sa.select(DoNotCall.phone)))
        callbacks = {c.customer_id: c for c in s.scalars(sa.select(Callback))}
        customer_of = {phone: t.customer_id for phone, t in tasks.items()}

    assert set(tasks) == set(CUSTOMERS)
    summary = {CUSTOMERS[p]: [(c.disposition,
                               c.outcome.value if c.outcome else None) for c in cs] for p, cs in calls.items()}
    # Every call ended, with a disposition; nothing on our side failed.
    for phone, cs in calls.items():
        for c in cs:
            assert c.ended_at is not None and c.disposition is not None, (CUSTOMERS[phone], summary)
            assert not c.error, (CUSTOMERS[phone], c.error)

    def only(persona: str) -> Call:
        phone = next(p for p, n in CUSTOMERS.items() if n == persona)
        assert phone in calls, (persona, summary)
        return calls[phone][-1]

    # Unreached customers: busy twice (max 2 attempts), the answering machine recognised.
    busy = calls[next(p for p, n in CUSTOMERS.items() if n == "busy")]
    assert [c.disposition for c in busy] == ["busy", "busy"], summary
    machine = only("answering_machine")
    assert machine.disposition == "answered" and machine.outcome.value in ("not_reached", "answering_machine"), \
        summary
    # Conversations that ended on the customer's word.
    for persona, outcome in (("satisfied", "completed"), ("complains_wait", "completed"),
                             ("complains_parts", "completed"), ("complains_quality", "completed"),
                             ("hangs_up_early", "hung_up"), ("wrong_number", "wrong_number"),
                             ("callback", "callback"), ("opt_out", "opt_out")):
        call = only(persona)
        assert (call.disposition, call.outcome.value) == ("answered", outcome), (persona, summary)

    # The transcripts hold what the customers said (as Whisper heard it through G.711): at least
    # 70 % of their lines, by the simulator's own log of the call, each at half the characters.
    for persona in ("satisfied", "complains_wait", "complains_parts", "complains_quality", "callback"):
        call = only(persona)
        said = _said(log_dir, call.sip_call_id)
        phone = next(p for p, n in CUSTOMERS.items() if n == persona)
        matched = [a for a in said if any(_similar(a, h) >= 0.5 for h in heard[phone])]
        assert said and len(matched) >= 0.7 * len(said), (persona, said, heard[phone])

    # Complaints opened tickets for after-sales; the satisfied customer none.
    assert tickets[next(p for p, n in CUSTOMERS.items() if n == "satisfied")] == []
    for persona in ("complains_wait", "complains_parts", "complains_quality"):
        phone = next(p for p, n in CUSTOMERS.items() if n == persona)
        assert tickets[phone] and set(tickets[phone]) <= {"after_sales", "crm"}, (persona, tickets[phone])
        assert "after_sales" in tickets[phone], (persona, tickets[phone])

    # "明天下午三点以后": a callback tomorrow afternoon, store time.
    phone = next(p for p, n in CUSTOMERS.items() if n == "callback")
    callback = callbacks.get(customer_of[phone])
    assert callback is not None, summary
    due = callback.due_at.replace(tzinfo=dt.UTC).astimezone(TZ)
    assert due.date() == dt.datetime.now(TZ).date() + dt.timedelta(days=1) and 15 <= due.hour < 18, due

    # The opt-out is on the do-not-call list; the others are not.
    assert dnc == {next(p for p, n in CUSTOMERS.items() if n == "opt_out")}


@pytest.fixture(scope="module")
def revisit_console(revisit, console_process):
    settings, _db, _, _ = revisit
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_DATA_DIR": str(settings.data_dir), "CALLCENTER_DATABASE_URL": settings.database_url,
                "CALLCENTER_ENV": "production", "CALLCENTER_SECRET_KEY": "e" * 40, "CALLCENTER_COOKIE_SECURE": "false",
                "CALLCENTER_REDIS_URL": REDIS_URL, "CALLCENTER_LOG_LEVEL": "warning"})
    with console_process(env, threads=4) as base:
        yield base


def test_a_supervisor_opens_a_complaint_call_of_the_campaign(revisit, revisit_console, page, shot):
    _settings, db, campaign_id, _ = revisit
    with db.session() as s:
        call_id = s.scalar(sa.select(Call.id).join(CallTask, CallTask.id == Call.task_id)
                           .where(Call.campaign_id == campaign_id, CallTask.phone == "13900000002")
                           .order_by(Call.id.desc()))
        robot_lines = s.scalar(sa.select(sa.func.count()).select_from(Utterance)
                               .where(Utterance.call_id == call_id, Utterance.speaker == "robot"))
    page.goto(revisit_console + "/login")
    page.fill("input[name=username]", "supervisor")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.goto(f"{revisit_console}/calls/{call_id}")
    page.wait_for_selector("#transcript .turn")
    turns = page.locator("#transcript .turn")
    assert turns.count() >= robot_lines + 3
    text = page.locator("#transcript").inner_text()
    assert "满意度" in text  # the robot's question, as the customer heard it
    page.wait_for_selector("#player")
    body = page.locator("body").inner_text()
    assert "after_sales" in body or "售后" in body  # the ticket's department
    shot(page, "e2e-revisit-complaint-call")
