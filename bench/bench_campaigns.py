"""Campaign figures (issue 6): audience selection over 1,000,000 customers, SQLite and PostgreSQL.

Targets: every campaign type's audience selection (the rule and the exclusions, counted as
``campaign create --dry-run`` does) in 5 s or less on SQLite and 2 s or less on PostgreSQL over
1,000,000 customers; beside it, the whole ``campaign create`` (the task rows written by INSERT ...
SELECT). Phase 2 adds the concurrency figures (calls per machine, turn latency).

The data is synthetic but shaped like the demo dealer group: two stores (mid-tier 3-month and
premium 6-month cycles), 8 % prospects, 10 % two-car households, 4 % cars bought in the last 90
days, paid visits every cycle for loyal owners over the last 18 months while a quarter stop
coming, insurance renewing on the purchase anniversary, 1 % of numbers on the do-not-call list,
2 % of customers reached by a robot in the last week, 0.5 % without a phone, and earlier
post-service tasks for half of last week's visits. It is generated with numpy and bulk-loaded
(SQLite executemany, PostgreSQL COPY) into a migrated database (so customer_touch's triggers
run during the load), then ANALYZEd (PostgreSQL: VACUUM ANALYZE, as autovacuum would after a bulk
load) as a production database would be.
``--quick`` uses 100,000 customers.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.storage import Database, upgrade_database
from callcenter.storage.models import CampaignType
from campaigns.audience import AudienceQuery, count_audience
from campaigns.service import CampaignSpec, create_campaign

POSTGRES_URL = os.environ.get("CALLCENTER_BENCH_POSTGRES_URL",
                              "postgresql+psycopg://callcenter:callcenter@127.0.0.1:5432/callcenter_test")
AS_OF = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 2, 0)
EPOCH = dt.date(1970, 1, 1)
TYPES = [
    (CampaignType.POST_SERVICE, {}),
    (CampaignType.NEW_CAR, {}),
    (CampaignType.MAINTENANCE_DUE, {}),
    (CampaignType.INSURANCE_RENEWAL, {}),
    (CampaignType.WARRANTY_EXPIRY, {}),
    (CampaignType.WINBACK, {}),
    (CampaignType.NPS, {"sample": 0.1}),
    (CampaignType.CUSTOM, {"filter": {"cities": ["株洲市"], "tiers": ["premium"], "purchased_before": "2023-01-01"}}),
]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕")
CITIES = ["长沙市", "长沙市", "长沙市", "长沙市", "株洲市", "湘潭市", "岳阳市"]


def _days(d: dt.date) -> int:
    return (d - EPOCH).days


def _date(n: int) -> str:
    return (EPOCH + dt.timedelta(days=int(n))).isoformat()


def generate(n: int, seed: int = 6):
    """Yield table -> rows batches (tuples in the column order of ``COLUMNS``)."""
    rng = np.random.default_rng(seed)
    today = _days(AS_OF)
    chunk = 100_000
    vehicle_id = visit_id = 0
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ids = np.arange(start + 1, start + m + 1)
        store = np.where(rng.random(m) < 0.6, 1, 2)
        phone_null = rng.random(m) < 0.005
        gender = np.where(rng.random(m) < 0.62, "M", "F")
        city = rng.integers(0, len(CITIES), m)
        birth = today - rng.integers(22 * 365, 68 * 365, m)
        customers = []
        for i in range(m):
            cid = int(ids[i])
            customers.append((cid, f"B{cid:08d}", int(store[i]), SURNAMES[cid % len(SURNAMES)] + "先生",
                              None if phone_null[i] else f"13{cid:09d}", str(gender[i]), _date(birth[i]),
                              CITIES[city[i]], NOW, NOW))
        yield "customers", customers

        prospect = rng.random(m) < 0.08
        owners = ids[~prospect]
        owner_store = store[~prospect]
        second = rng.random(len(owners)) < 0.10
        v_owner = np.concatenate([owners, owners[second]])
        v_store = np.concatenate([owner_store, owner_store[second]])
        k = len(v_owner)
        recent = rng.random(k) < 0.04
        purchase = np.where(recent, today - rng.integers(2, 91, k), today - rng.integers(91, 6 * 365, k))
        premium = v_store == 2
        behaviour = rng.choice(3, size=k, p=[0.62, 0.26, 0.12])  # loyal, lapsing, erratic
        vehicles, visits = [], []
        cycle_days = np.where(premium, 182, 91)
        for j in range(k):
            vehicle_id += 1
            p = int(purchase[j])
            anniversary = dt.date.fromordinal((EPOCH + dt.timedelta(days=p)).toordinal())
            try:
                expiry = anniversary.replace(year=AS_OF.year)
            except ValueError:
                expiry = anniversary.replace(year=AS_OF.year, day=28)
            if expiry < AS_OF:
                expiry = expiry.replace(year=AS_OF.year + 1)
            if behaviour[j] == 1 and rng.random() < 0.6:
                expiry = expiry.replace(year=expiry.year - 1)
            vehicles.append((vehicle_id, int(v_owner[j]), f"LBENCH{vehicle_id:011d}", "丰田" if not premium[j] else "宝马",
                             ("卡罗拉", "凯美瑞", "RAV4荣放")[vehicle_id % 3] if not premium[j] else ("3系", "5系", "X3")[vehicle_id % 3],
                             "premium" if premium[j] else "mid", _date(p), _date(p + 3 * 365), expiry.isoformat(),
                             bool(rng.random() < 0.45), NOW, NOW, int(v_store[j])))
            # Visits over the last 18 months (older ones change no rule here but the last-touch date).
            cycle = int(cycle_days[j])
            first = max(p + cycle, today - 548)
            stop = today if behaviour[j] != 1 else today - int(rng.integers(200, 700))
            day = first + int(rng.integers(0, cycle))
            if behaviour[j] == 1 and stop < first:  # lapsed before the window: one old visit
                day = stop
            step_scale = 1.8 if behaviour[j] == 2 else 1.0
            while day <= stop and day <= today:
                visit_id += 1
                paid = rng.random() < 0.86
                kind = "maintenance" if paid and rng.random() < 0.8 else ("repair" if paid else "warranty")
                visits.append((visit_id, f"v{visit_id}", int(v_owner[j]), vehicle_id, int(v_store[j]), _date(day),
                               kind, paid, "刘洋", NOW))
                day += int(cycle * step_scale * rng.uniform(0.85, 1.25))
        yield "vehicles", vehicles
        yield "service_visits", visits


COLUMNS = {
    "customers": ("id", "external_id", "store_id", "name", "phone", "gender", "birthday", "city", "created_at",
                  "updated_at"),
    "vehicles": ("id", "customer_id", "vin", "brand", "model", "tier", "purchase_date", "warranty_end",
                 "insurance_expiry", "insured_here", "created_at", "updated_at", "store_id"),
    "service_visits": ("id", "dedup_key", "customer_id", "vehicle_id", "store_id", "visit_date", "visit_type", "paid",
                       "advisor", "created_at"),
}


def _load_sqlite(db: Database, n: int) -> dict:
    counts: dict[str, int] = {}
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        for table, rows in generate(n):
            cols = COLUMNS[table]
            cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            [tuple(str(v) if isinstance(v, dt.datetime) else v for v in r) for r in rows])
            counts[table] = counts.get(table, 0) + len(rows)
            raw.commit()
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        raw.close()
    return counts


def _load_postgres(db: Database, n: int) -> dict:
    counts: dict[str, int] = {}
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, rows in generate(n):
            cols = COLUMNS[table]
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            counts[table] = counts.get(table, 0) + len(rows)
            raw.commit()
    finally:
        raw.close()
    return counts


def _sync_sequences(db: Database) -> None:
    """PostgreSQL: rows were loaded with explicit ids; move each id sequence past them."""
    with db.engine.begin() as conn:
        for table in ("stores", "customers", "vehicles", "service_visits", "campaigns", "call_tasks", "calls",
                      "do_not_call"):
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"))


def _extras(db: Database, n: int) -> dict:
    """Do-not-call numbers, recent robot calls, earlier post-service tasks: the exclusions' inputs."""
    rng = np.random.default_rng(7)
    dnc = sorted(set(rng.integers(1, n + 1, n // 100).tolist()))
    called = sorted(set(rng.integers(1, n + 1, n // 50).tolist()))
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO do_not_call (phone, source, created_at) VALUES (:phone, 'admin', :at)"),
                     [{"phone": f"13{c:09d}", "at": NOW} for c in dnc])
        conn.execute(sa.text("INSERT INTO calls (customer_id, attempt, robot, disposition, started_at, created_at) "
                             "VALUES (:c, 1, :t, 'answered', :at, :at)"),
                     [{"c": c, "t": True, "at": NOW - dt.timedelta(days=int(i % 6) + 1)} for i, c in enumerate(called)])
        conn.execute(sa.text("INSERT INTO stores (id, code, name, city, timezone, created_at) VALUES "
                             "(3, 'OLD', 'earlier campaigns', '长沙市', 'Asia/Shanghai', :at)"), {"at": NOW})
        conn.execute(sa.text("INSERT INTO campaigns (id, name, type, script, status, as_of, max_channels, max_attempts,"
                             " robot, created_at) VALUES (1, 'earlier', 'post_service', 'post_service', 'completed',"
                             " :d, 4, 3, :t, :at)"), {"d": AS_OF, "t": True, "at": NOW})
        week = conn.execute(sa.text("SELECT id, customer_id, vehicle_id, store_id FROM service_visits "
                                    "WHERE visit_date >= :d"), {"d": AS_OF - dt.timedelta(days=7)}).all()
        seen: set[int] = set()
        earlier = []
        for v, c, car, s in week[::2]:
            if c not in seen:  # one task per customer and campaign
                seen.add(c)
                earlier.append({"v": v, "c": c, "car": car, "s": s, "at": NOW})
        conn.execute(sa.text("INSERT INTO call_tasks (campaign_id, customer_id, vehicle_id, visit_id, store_id, phone,"
                             " state, attempts, created_at, updated_at) VALUES (1, :c, :car, :v, :s, '13800000000',"
                             " 'completed', 1, :at, :at)"), earlier)
    return {"dnc": len(dnc), "robot_calls_last_week": len(called), "earlier_post_service_tasks": len(earlier)}


def _prepare(url: str, n: int, engine: str) -> tuple[Database, dict]:
    db = Database(url)
    upgrade_database(db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO stores (id, code, name, city, timezone, created_at) VALUES "
                             "(1, 'JH01', '锦华丰田岳麓店', '长沙市', 'Asia/Shanghai', :at), "
                             "(2, 'JH02', '锦华宝马星沙店', '长沙市', 'Asia/Shanghai', :at)"), {"at": NOW})
    t0 = time.perf_counter()
    counts = _load_sqlite(db, n) if engine == "sqlite" else _load_postgres(db, n)
    counts.update(_extras(db, n))
    if engine == "postgresql":
        _sync_sequences(db)
    if engine == "postgresql":
        # What autovacuum does after a bulk load (inserts past its threshold): statistics, and the
        # visibility map that lets index-only scans skip the heap.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with db.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    counts["load_s"] = round(time.perf_counter() - t0, 1)
    return db, counts


def _measure(db: Database, repeats: int) -> dict:
    """Wall time, and this process's CPU time: on the shared 2-core machine the wall time mostly
    measures the other engineers' load; for SQLite (in-process) the CPU time is the query's cost."""
    out = {}
    for ctype, params in TYPES:
        times, cpu = [], []
        audience = None
        load = os.getloadavg()[0]
        for _ in range(repeats):
            with db.session() as s:
                t0, c0 = time.perf_counter(), time.process_time()
                audience = count_audience(s, AudienceQuery(type=ctype, as_of=AS_OF, store_id=None, params=params,
                                                           now=NOW), params)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        out[ctype.value] = {"audience": audience.size, "excluded": audience.excluded,
                            "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                            "cpu_median_s": round(statistics.median(cpu), 3),
                            "load_avg": round((load + os.getloadavg()[0]) / 2, 1)}
    return out


def _create(db: Database, data_dir) -> dict:
    """A whole ``campaign create`` (counts, then the task rows by INSERT ... SELECT) for every type,
    after all the selections above (each creation hides its customers from the next of its type)."""
    settings = Settings(data_dir=Path(data_dir), database_url=db.url)
    out = {}
    for ctype, params in TYPES:
        t0 = time.perf_counter()
        report = create_campaign(db, CampaignSpec(type=ctype.value, as_of=AS_OF, params=params,
                                                  script=None if ctype is not CampaignType.CUSTOM else "nps"),
                                 settings, known_scripts={ctype.value, "nps"}, now=NOW)
        out[ctype.value] = {"tasks": report["audience"], "seconds": round(time.perf_counter() - t0, 2)}
    return out


def _bench(engine: str, url: str, n: int, repeats: int, data_dir) -> dict:
    db, counts = _prepare(url, n, engine)
    try:
        rules = _measure(db, repeats)
        slowest = max(rules.values(), key=lambda r: r["median_s"])
        return {"engine": engine, "data": counts, "audience": rules,
                "slowest_median_s": slowest["median_s"], "create": _create(db, data_dir),
                "target_s": 5 if engine == "sqlite" else 2}
    finally:
        db.dispose()


def run(args) -> dict:
    n = 100_000 if args.quick else 1_000_000
    results: dict = {"customers": n, "as_of": AS_OF.isoformat()}
    with tempfile.TemporaryDirectory(prefix="cc-bench-campaigns-") as tmp:
        results["sqlite"] = _bench("sqlite", f"sqlite:///{tmp}/bench.db", n, 3, tmp)
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        name = f"cc_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            results["postgresql"] = _bench("postgresql", url, n, 3, tmp)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return results
