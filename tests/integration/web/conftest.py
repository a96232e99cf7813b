"""A small dealer group for the console's tests, on SQLite and PostgreSQL (the ``db`` fixture),
with Redis at ``CALLCENTER_TEST_REDIS_URL`` (flushed by ``redis_client``).

Two stores; per store an agent and a supervisor, plus a store administrator and a store manager
for S1 and a group-wide administrator, supervisor and manager. Each store has customers, a robot campaign with calls
(transcripts, tags, a recording), a ticket, a callback and an agent preview campaign.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from callcenter.config import Settings
from callcenter.domain import CallDisposition, Gender, Role, Tier, VisitType
from callcenter.storage import Database, upgrade_database
from callcenter.storage.models import (
    Base,
    Call,
    Callback,
    CallbackStatus,
    CallOutcome,
    CallTag,
    CallTask,
    Campaign,
    CampaignStatus,
    CampaignType,
    Customer,
    ServiceVisit,
    Store,
    TaskState,
    Ticket,
    TicketStatus,
    User,
    Utterance,
    Vehicle,
    utcnow,
)
from web import create_app
from web.security import session_stamp

PASSWORD = "test-password-1"
SECRET = "s" * 40


@pytest.fixture(scope="session")
def password_hash() -> str:
    return generate_password_hash(PASSWORD, method="scrypt")


@dataclass
class World:
    stores: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    tickets: dict[str, int] = field(default_factory=dict)
    callbacks: dict[str, int] = field(default_factory=dict)
    campaigns: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)


USERS = {
    # name: (role, store code or None)
    "admin": (Role.ADMIN, None),
    "admin_s1": (Role.ADMIN, "S1"),
    "sup_all": (Role.SUPERVISOR, None),
    "sup_s1": (Role.SUPERVISOR, "S1"),
    "sup_s2": (Role.SUPERVISOR, "S2"),
    "agent_s1": (Role.AGENT, "S1"),
    "agent_s2": (Role.AGENT, "S2"),
    "mgr_s1": (Role.MANAGER, "S1"),
    "mgr_all": (Role.MANAGER, None),
}


def _wav(path, seconds: float = 12.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * int(8000 * seconds))


def seed(db, data_dir, password_hash: str) -> World:
    world = World()
    now = utcnow()
    with db.session() as s:
        for code, name in (("S1", "一店"), ("S2", "二店")):
            store = Store(code=code, name=name, city="长沙市")
            s.add(store)
            s.flush()
            world.stores[code] = store.id
        for username, (role, code) in USERS.items():
            user = User(username=username, display_name=username, password_hash=password_hash, role=role,
                        store_id=world.stores[code] if code else None)
            s.add(user)
            s.flush()
            world.users[username] = user.id
        for code in ("S1", "S2"):
            sid = world.stores[code]
            c = Customer(external_id=f"C-{code}", store_id=sid, name=f"王{code}", phone="13812345678" if code == "S1"
                         else "13987654321", gender=Gender.MALE, city="长沙市")
            s.add(c)
            s.flush()
            world.customers[code] = c.id
            v = Vehicle(customer_id=c.id, vin=f"LVGBE40K{'1' if code == 'S1' else '2'}8G000001"[:17],
                        plate="湘A12345" if code == "S1" else "湘B54321",
                        brand="丰田", model="凯美瑞", tier=Tier.MID, purchase_date=dt.date(2024, 5, 1))
            s.add(v)
            s.flush()
            s.add(ServiceVisit(dedup_key=f"v-{code}", customer_id=c.id, vehicle_id=v.id, store_id=sid,
                               visit_date=dt.date.today() - dt.timedelta(days=20), visit_type=VisitType.MAINTENANCE,
                               paid=True, advisor="刘洋"))
            camp = Campaign(name=f"{code} 售后回访", type=CampaignType.POST_SERVICE, script="post_service", store_id=sid,
                            status=CampaignStatus.RUNNING, as_of=dt.date.today(), robot=True)
            preview = Campaign(name=f"{code} 人工回访", type=CampaignType.POST_SERVICE, script="post_service",
                               store_id=sid, status=CampaignStatus.RUNNING, as_of=dt.date.today(), robot=False)
            s.add_all([camp, preview])
            s.flush()
            world.campaigns[code] = camp.id
            world.campaigns[f"{code}-preview"] = preview.id
            task = CallTask(campaign_id=camp.id, customer_id=c.id, store_id=sid, phone=c.phone,
                            state=TaskState.COMPLETED, attempts=1)
            ptask = CallTask(campaign_id=preview.id, customer_id=c.id, store_id=sid, phone=c.phone,
                             state=TaskState.PENDING)
            s.add_all([task, ptask])
            s.flush()
            world.tasks[f"{code}-preview"] = ptask.id
            rec = f"recordings/test/{code}.wav"
            _wav(data_dir / rec)
            call = Call(task_id=task.id, attempt=1, campaign_id=camp.id, customer_id=c.id, store_id=sid, robot=True,
                        script="post_service", phone=c.phone, disposition=CallDisposition.ANSWERED.value, sip_code=200,
                        outcome=CallOutcome.COMPLETED, started_at=now - dt.timedelta(hours=2),
                        answered_at=now - dt.timedelta(hours=2), ended_at=now - dt.timedelta(hours=2) + dt.timedelta(seconds=12),
                        talk_seconds=12.0, recording=rec, score5=2, sentiment="negative")
            s.add(call)
            s.flush()
            world.calls[code] = call.id
            lines = [("robot", "您对这次服务满意吗？"), ("customer", "不满意，车洗得不干净，等了很久"),
                     ("robot", "还有别的吗？"), ("customer", "<script>alert(1)</script> 没了")]
            for seq, (speaker, text) in enumerate(lines):
                s.add(Utterance(call_id=call.id, seq=seq, speaker=speaker, text=text, start=seq * 3.0,
                                end=seq * 3.0 + 2.5))
            s.add(CallTag(call_id=call.id, category="car_wash", department="after_sales", confidence=0.9,
                          evidence=[{"utterance": 1, "text": "车洗得不干净", "start": 4, "end": 10}]))
            ticket = Ticket(call_id=call.id, customer_id=c.id, store_id=sid, department="after_sales",
                            category="car_wash", title=f"{code} 洗车投诉", status=TicketStatus.OPEN,
                            due_at=now - dt.timedelta(days=1))
            s.add(ticket)
            s.flush()
            world.tickets[code] = ticket.id
            cb = Callback(customer_id=c.id, store_id=sid, call_id=call.id, due_at=now - dt.timedelta(minutes=10),
                          reason="客户要求回电", robot=False, status=CallbackStatus.PENDING)
            s.add(cb)
            s.flush()
            world.callbacks[code] = cb.id
    return world


CSRF = "csrf-test-token-0123456789abcdefghijklmnop"


# The console's tests use their own databases, migrated once per session: a SQLite template
# file copied per test, and a PostgreSQL database emptied per test (DELETE). Migrating afresh
# for each of a few hundred tests cost about 2 s each on PostgreSQL on this 2-core machine.
POSTGRES_URL = os.environ.get(
    "CALLCENTER_TEST_POSTGRES_URL", "postgresql+psycopg://callcenter:callcenter@127.0.0.1:5432/callcenter_test")
REDIS_URL = os.environ.get("CALLCENTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web-template") / "callcenter.db"
    database = Database(f"sqlite:///{path}")
    upgrade_database(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def _web_postgres() -> str:
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"cc_web_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {POSTGRES_URL} (run scripts/services): {exc.orig}")
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    upgrade_database(database)
    database.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    """A migrated, empty database (overrides the root fixture for the console's tests)."""
    if request.param == "sqlite":
        path = tmp_path / "callcenter.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
    else:
        from web import jobs

        jobs.drain()  # an import a previous test started on the console's job thread still writes
        database = Database(request.getfixturevalue("_web_postgres"))
        # DELETE, children first: on a few dozen rows it takes milliseconds where TRUNCATE of 25
        # tables took ~1.5 s (a new file for each table).
        with database.engine.begin() as conn:
            for derived in ("search_calls", "search_state"):  # the transcript index (outside Alembic)
                if _has(conn, derived):
                    conn.exec_driver_sql(f"DELETE FROM {derived}")
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    yield database
    from web import jobs

    jobs.drain()
    database.dispose()


def _has(conn, table: str) -> bool:
    return conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None


@pytest.fixture
def settings(db, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=db.url, redis_url=REDIS_URL, env="testing",
                    secret_key=SECRET)


@pytest.fixture
def console(db, settings, password_hash, redis_client):
    """(app, world): the console on the test database (SQLite or PostgreSQL) and a seeded group."""
    world = seed(db, settings.data_dir, password_hash)
    app = create_app(settings, database=db, redis_client=redis_client)
    return app, world


@pytest.fixture
def client_for(console, db):
    """``client_for("sup_s1")`` -> a test client logged in as that user (no password check:
    the login itself is tested in test_auth); ``client_for(None)`` -> anonymous."""
    app, world = console

    def make(username: str | None):
        client = app.test_client()
        with client.session_transaction() as sess:
            sess["csrf_token"] = CSRF
            if username:
                with db.session() as s:
                    user = s.get(User, world.users[username])
                    sess["uid"] = user.id
                    sess["stamp"] = session_stamp(user)
        return client

    return make



@pytest.fixture
def csrf() -> str:
    """The CSRF token of every ``client_for`` session."""
    return CSRF


@pytest.fixture
def api_token(console, db):
    """``api_token("sup_s1", write=False)`` -> a bearer token acting as that user."""
    from callcenter.storage.web_models import ApiToken
    from web.security import new_api_token

    _app, world = console

    def make(username: str, *, write: bool = False, **fields) -> str:
        token, digest = new_api_token()
        with db.session() as s:
            s.add(ApiToken(name=f"{username}-token", token_hash=digest, prefix=token[:10],
                           user_id=world.users[username], can_write=write, **fields))
        return token

    return make
