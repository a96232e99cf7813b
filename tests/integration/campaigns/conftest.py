"""Fixtures for the campaigns tests: a data builder over the real database, the fake call runner,
the dialer's Redis client, and settings/scripts for the CLI.

Dates are fixed: the audience date is Friday 2026-11-20 and the clock 10:00 in Shanghai that day
(02:00 UTC), inside the default calling windows and not a holiday.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.domain import Gender, Tier, VisitType
from callcenter.storage.models import (
    Call,
    CallTask,
    Campaign,
    CampaignStatus,
    CampaignType,
    Customer,
    DoNotCall,
    ServiceVisit,
    Store,
    TaskState,
    Vehicle,
)

HERE = Path(__file__).resolve().parent
AS_OF = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 2, 0)  # naive UTC = 10:00 Asia/Shanghai
SCRIPTS = ("post_service", "new_car", "maintenance_due", "insurance_renewal", "warranty_expiry", "winback", "nps")


def _load(name: str):
    """Import a helper module of this folder by path (pytest runs with --import-mode=importlib)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fake_runner_module():
    return _load("fake_runner")


@pytest.fixture(scope="session")
def tcpproxy_module():
    return _load("tcpproxy")


class World:
    """Builds customers, vehicles, visits, earlier campaigns and calls: exactly what a test needs."""

    def __init__(self, db) -> None:
        self.db = db
        self._phones = itertools.count(1)
        self._seq = itertools.count(1)
        with db.session() as s:
            s.add_all([Store(code="S1", name="锦华丰田岳麓店", city="长沙市", timezone="Asia/Shanghai"),
                       Store(code="S2", name="锦华宝马星沙店", city="长沙市", timezone="Asia/Shanghai",
                             cycle_months_mid=4, cycle_months_premium=8)])
        with db.session() as s:
            self.stores = dict(s.execute(sa.select(Store.code, Store.id)).all())

    def phone(self) -> str:
        return f"1380000{next(self._phones):04d}"

    def customer(self, name: str = "王伟", *, phone: str | None = "auto", store: str = "S1",
                 gender: Gender | None = Gender.MALE, city: str = "长沙市", birthday: dt.date | None = None) -> int:
        with self.db.session() as s:
            c = Customer(external_id=f"C{next(self._seq):06d}", store_id=self.stores[store], name=name,
                         phone=self.phone() if phone == "auto" else phone, gender=gender, city=city, birthday=birthday)
            s.add(c)
            s.flush()
            return c.id

    def vehicle(self, customer_id: int, *, tier: Tier = Tier.MID, purchase: dt.date | None = dt.date(2022, 1, 10),
                warranty_end: dt.date | None = None, insurance_expiry: dt.date | None = None,
                insured_here: bool = False, model: str = "卡罗拉", plate: str | None = "湘A12345",
                store: str | None = None) -> int:
        """A car; its store is the owner's home store unless ``store`` names another."""
        with self.db.session() as s:
            v = Vehicle(customer_id=customer_id, vin=f"LVGTEST{next(self._seq):010d}", tier=tier, purchase_date=purchase,
                        warranty_end=warranty_end, insurance_expiry=insurance_expiry, insured_here=insured_here,
                        brand="丰田", model=model, plate=plate, store_id=self.stores[store] if store else None)
            s.add(v)
            s.flush()
            return v.id

    def visit(self, customer_id: int, vehicle_id: int | None, day: dt.date, *, paid: bool = True,
              kind: VisitType = VisitType.MAINTENANCE, store: str = "S1", advisor: str = "刘洋") -> int:
        with self.db.session() as s:
            v = ServiceVisit(dedup_key=f"V{next(self._seq)}", customer_id=customer_id, vehicle_id=vehicle_id,
                             store_id=self.stores[store], visit_date=day, visit_type=kind, paid=paid, advisor=advisor)
            s.add(v)
            s.flush()
            return v.id

    def earlier_task(self, ctype: CampaignType, customer_id: int, *, vehicle_id: int | None = None,
                     visit_id: int | None = None, context: dict | None = None, state: TaskState = TaskState.COMPLETED,
                     created_at: dt.datetime = NOW - dt.timedelta(days=1)) -> int:
        """A task of an earlier campaign of ``ctype`` (for the "not yet contacted" rules)."""
        with self.db.session() as s:
            c = Campaign(name="earlier", type=ctype, script=ctype.value, status=CampaignStatus.COMPLETED,
                         as_of=AS_OF, created_at=created_at)
            s.add(c)
            s.flush()
            phone = s.scalar(sa.select(Customer.phone).where(Customer.id == customer_id)) or "13800000000"
            store_id = s.scalar(sa.select(Customer.store_id).where(Customer.id == customer_id))
            t = CallTask(campaign_id=c.id, customer_id=customer_id, vehicle_id=vehicle_id, visit_id=visit_id,
                         store_id=store_id, phone=phone, state=state, context=context, created_at=created_at,
                         updated_at=created_at, next_attempt_at=created_at)
            s.add(t)
            s.flush()
            return t.id

    def recent_visitors(self, phones: list[str], day: dt.date, store: str = "S1") -> list[int]:
        """One customer per phone, each with a car and a paid visit on ``day`` (in one transaction)."""
        ids = []
        with self.db.session() as s:
            for phone in phones:
                n = next(self._seq)
                c = Customer(external_id=f"C{n:06d}", store_id=self.stores[store], name=f"客户{n}", phone=phone,
                             gender=Gender.MALE)
                s.add(c)
                s.flush()
                v = Vehicle(customer_id=c.id, vin=f"LVGBULK{n:010d}", tier=Tier.MID, purchase_date=dt.date(2022, 1, 1),
                            brand="丰田", model="凯美瑞")
                s.add(v)
                s.flush()
                s.add(ServiceVisit(dedup_key=f"B{n}", customer_id=c.id, vehicle_id=v.id, store_id=self.stores[store],
                                   visit_date=day, visit_type=VisitType.MAINTENANCE, paid=True, advisor="刘洋"))
                ids.append(c.id)
        return ids

    def robot_call(self, customer_id: int, started_at: dt.datetime, disposition: str = "answered") -> int:
        with self.db.session() as s:
            call = Call(customer_id=customer_id, robot=True, disposition=disposition, started_at=started_at,
                        ended_at=started_at + dt.timedelta(minutes=2))
            s.add(call)
            s.flush()
            return call.id

    def dnc(self, phone: str) -> None:
        with self.db.session() as s:
            s.add(DoNotCall(phone=phone, source="admin", reason="test"))


# ----------------------------------------------------------------- databases
# The root ``db`` fixture migrates a fresh schema for every test (1-2 s each, most of this folder's
# time). Here the schema is migrated once per session and engine: SQLite tests get a copy of a
# migrated file, PostgreSQL tests an emptied schema (TRUNCATE ... RESTART IDENTITY), migrated again
# only if another folder's tests dropped it meanwhile. Same engines, same schema, same isolation.


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    from callcenter.storage import Database, upgrade_database

    path = tmp_path_factory.mktemp("campaigns-db") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade_database(database)
    database.dispose()
    return path


def _empty_postgres(url: str):
    from callcenter.storage import Database, upgrade_database
    from callcenter.storage.db import current_revision, head_revision
    from callcenter.storage.models import Base

    database = Database(url)
    if current_revision(database) != head_revision():
        with database.engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        upgrade_database(database)
    else:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with database.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE TABLE {tables} RESTART IDENTITY CASCADE"))
    return database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path, _sqlite_template):
    """A migrated, empty database: each test runs once on SQLite and once on PostgreSQL."""
    import shutil

    from callcenter.storage import Database

    if request.param == "sqlite":
        path = tmp_path / "callcenter.db"
        shutil.copyfile(_sqlite_template, path)
        database = Database(f"sqlite:///{path}")
    else:
        database = _empty_postgres(request.getfixturevalue("postgres_server_url"))
    yield database
    database.dispose()


@pytest.fixture
def db_url(db) -> str:
    """The test's database for the CLI fixtures (``cli_env``, ``settings``), without resetting it."""
    return db.url


@pytest.fixture
def world(db) -> World:
    return World(db)


@pytest.fixture
def campaign_settings(tmp_path, db) -> Settings:
    """Settings for service calls: the test database, a data dir with the scripts installed."""
    data = tmp_path / "var"
    (data / "scripts").mkdir(parents=True)
    for name in SCRIPTS:
        (data / "scripts" / f"{name}.yaml").write_text(f"id: {name}\n", encoding="utf-8")
    return Settings(data_dir=data, database_url=db.url, env="testing")


@pytest.fixture
def dialer_redis(redis_client):
    """The dialer's own client (text replies) on the test Redis database, flushed before and after."""
    from campaigns.worker import redis_client as make_client

    kwargs = redis_client.connection_pool.connection_kwargs
    client = make_client(f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}")
    yield client
    client.close()
