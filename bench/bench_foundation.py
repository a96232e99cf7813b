"""Foundation figures: DMS import speed and customer-base statistics (issue 2).

- import of 100,000+ customer rows (CSV, one row per vehicle) on SQLite and PostgreSQL: target <= 30 s;
- `customers stats` over 100,000 customers and 500,000+ visits: target <= 2 s.

The data is the demo generator's (deterministic), written as DMS exports and imported
through the same code path as `callcenter import`.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from callcenter.customer_base import customer_base_stats
from callcenter.demo import STORES, DemoGenerator
from callcenter.dms.importer import import_customers, import_visits
from callcenter.storage import Database, upgrade_database
from callcenter.storage.models import Store

POSTGRES_URL = os.environ.get("CALLCENTER_BENCH_POSTGRES_URL",
                              "postgresql+psycopg://callcenter:callcenter@127.0.0.1:5432/callcenter_test")


def _fresh_postgres() -> tuple[str, callable]:
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"cc_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def _prepare(url: str) -> Database:
    db = Database(url)
    upgrade_database(db)
    with db.session() as s:
        for st in STORES:
            s.add(Store(code=st.code, name=st.name, city="长沙市"))
    return db


def _bench_engine(label: str, url: str, cpath: Path, vpath: Path, as_of: dt.date, repeats: int) -> dict:
    db = _prepare(url)
    try:
        t0 = time.perf_counter()
        rc = import_customers(db, cpath)
        t_customers = time.perf_counter() - t0
        t0 = time.perf_counter()
        rv = import_visits(db, vpath)
        t_visits = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = import_customers(db, cpath)
        t_reimport = time.perf_counter() - t0
        assert again.imported == again.updated == 0, "re-import changed data"
        times = []
        for _ in range(repeats):
            with db.session() as s:
                t0 = time.perf_counter()
                stats = customer_base_stats(s, as_of)
                times.append(time.perf_counter() - t0)
        return {
            "engine": label,
            "customer_rows": rc.rows,
            "import_customers_s": round(t_customers, 2),
            "customer_rows_per_s": round(rc.rows / t_customers),
            "visit_rows": rv.rows,
            "import_visits_s": round(t_visits, 2),
            "reimport_customers_unchanged_s": round(t_reimport, 2),
            "stats_customers": stats["base"],
            "stats_median_s": round(statistics.median(times), 3),
            "stats_max_s": round(max(times), 3),
            "targets": {"import_customers_s": 30, "stats_s": 2},
        }
    finally:
        db.dispose()


def run(args) -> dict:
    n = 10_000 if args.quick else 100_000
    as_of = dt.date.today()
    results = {}
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp:
        t0 = time.perf_counter()
        cpath, vpath, counts = DemoGenerator(as_of, n, seed=11).write_csv(Path(tmp) / "csv")
        results["generated"] = {**counts, "csv_mb": round(cpath.stat().st_size / 2**20, 1),
                                "seconds": round(time.perf_counter() - t0, 1)}
        results["sqlite"] = _bench_engine("sqlite", f"sqlite:///{tmp}/bench.db", cpath, vpath, as_of, 5)
        url, drop = _fresh_postgres()
        try:
            results["postgresql"] = _bench_engine("postgresql", url, cpath, vpath, as_of, 5)
        finally:
            drop()
    return results
