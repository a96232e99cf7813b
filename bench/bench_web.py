"""Console figures (issue 7): page latency under 10 concurrent clients and transcript search, with
100,000 customers and 200,000 calls, on SQLite and PostgreSQL.

Targets: main pages and report pages p95 <= 150 ms under 10 concurrent clients; transcript
full-text search <= 300 ms.

How it measures: the data is the foundation's demo generator (customers, vehicles, visits through
the DMS importer) plus :mod:`web.demo_calls` (calls with transcripts, tags, tickets), the search
index built; the console runs as in production (``callcenter serve``: gunicorn, 2 workers x 8
threads) and 10 client threads in this process, each with its own logged-in session and
keep-alive connection, request pages in a random mix for a fixed time. Report pages are measured
warm (their figures cached, as users see them after the first view) and each report's cold
computation is timed on its own. Everything runs on the same 2-core machine, so the clients take
CPU from the server: the figures are pessimistic. The load average is recorded with each phase.

Every page as each role (issue 12): one user of each role (administrators and supervisors also
store-scoped; the manager where the role exists) walks every page it can reach, as the console
crawl test does, and each page kind is then timed (:mod:`bench.crawl`); a page kind whose p95 is
over its target, an error response, or a page of the issue's new jobs that no walk reached puts
the run's ``failures`` and makes ``python -m bench web`` exit 1.

The datasets are kept between runs (``var/bench-web/`` for SQLite, database ``cc_bench_web_*``
on PostgreSQL); ``CALLCENTER_BENCH_WEB_REBUILD=1`` rebuilds them. ``CALLCENTER_BENCH_WEB_ENGINES``
(``sqlite,postgresql``) and ``CALLCENTER_BENCH_WEB_PHASES`` (``cold,search,main,reports,crawl,cpu``)
run a part, e.g. only the crawl while fixing a page.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("CALLCENTER_BENCH_POSTGRES_URL",
                              "postgresql+psycopg://callcenter:callcenter@127.0.0.1:5432/callcenter_test")
REDIS_URL = os.environ.get("CALLCENTER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "bench-password-1"
CLIENTS = 10
SEARCH_TERMS = ("等了很久", "洗得不干净", "态度不太好", "配件", "收费有点贵", "没修好", "停车位", "手续太麻烦",
                "不太满意", "表扬一下", "时间太长", "异响", "休息区", "续保报价", "预约", "非常满意", "顾问", "脚垫",
                "没人给我讲", "不制冷")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    ms = [s * 1000 for s in samples]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(_pct(ms, 0.95), 1),
            "p99_ms": round(_pct(ms, 0.99), 1), "max_ms": round(max(ms), 1)}


# -- datasets ---------------------------------------------------------------------------------


def _dataset_urls(customers: int, calls: int) -> dict[str, str]:
    tag = f"{customers // 1000}k_{calls // 1000}k"
    sqlite_path = ROOT / "var" / "bench-web" / f"web-{tag}.db"
    pg = sa.engine.make_url(POSTGRES_URL).set(database=f"cc_bench_web_{tag}").render_as_string(hide_password=False)
    return {"sqlite": f"sqlite:///{sqlite_path}", "postgresql": pg}


def _ready(url: str) -> bool:
    from callcenter.storage import Database

    try:
        db = Database(url)
        with db.engine.connect() as conn:
            done = conn.execute(sa.text("SELECT count(*) FROM users WHERE username = 'bench_admin'")).scalar()
        db.dispose()
        return bool(done)
    except sa.exc.SQLAlchemyError:
        return False


def _build(url: str, customers: int, calls: int, log) -> dict:
    from callcenter.accounts import upsert_user
    from callcenter.demo import load_demo
    from callcenter.domain import Role
    from callcenter.storage import Database, upgrade_database
    from callcenter.storage.search import TranscriptIndex
    from web.demo_calls import generate

    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        name = sa.engine.make_url(url).database
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    db = Database(url)
    upgrade_database(db)
    timings = {}
    t0 = time.perf_counter()
    load_demo(db, as_of=dt.date.today(), n_customers=customers, seed=2026)
    timings["customers_s"] = round(time.perf_counter() - t0, 1)
    log(f"  {customers:,} customers in {timings['customers_s']} s")
    t0 = time.perf_counter()
    made = generate(db, calls=calls, end=dt.date.today(), months=12, seed=7,
                    progress=lambda n, total: log(f"  calls {n:,}/{total:,}") if n % 50_000 < 5000 else None)
    timings["calls_s"] = round(time.perf_counter() - t0, 1)
    log(f"  {made['calls']:,} calls in {timings['calls_s']} s")
    t0 = time.perf_counter()
    TranscriptIndex(db.engine).rebuild()
    timings["search_index_s"] = round(time.perf_counter() - t0, 1)
    log(f"  search index in {timings['search_index_s']} s")
    with db.session() as s:
        upsert_user(s, "bench_admin", PASSWORD, Role.ADMIN)
    if url.startswith("postgresql"):
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    db.dispose()
    return {**made, **timings}


def _counts(url: str) -> dict:
    from callcenter.storage import Database

    db = Database(url)
    with db.engine.connect() as conn:
        out = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
               for t in ("customers", "service_visits", "calls", "utterances", "call_tags", "tickets")}
    db.dispose()
    return out


def _samples(url: str) -> dict[str, list]:
    """Ids for the page mix (random but fixed by the seed)."""
    from callcenter.storage import Database

    rng = random.Random(1)
    db = Database(url)
    with db.engine.connect() as conn:
        def pick(sql: str, n: int) -> list:
            rows = [r[0] for r in conn.execute(sa.text(sql))]
            return rng.sample(rows, min(n, len(rows)))

        out = {
            "customers": pick("SELECT id FROM customers WHERE id % 97 = 0", 200),
            "calls": pick("SELECT id FROM calls WHERE outcome = 'completed' AND id % 53 = 0", 200),
            "tickets": pick("SELECT id FROM tickets WHERE id % 7 = 0", 100),
            "campaigns": pick("SELECT id FROM campaigns", 50),
            "surnames": ["王", "李", "张", "刘", "陈", "杨"],
        }
    db.dispose()
    return out


# -- the server and its clients -----------------------------------------------------------------


class Server:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_BENCH_")}
        env.update({"CALLCENTER_DATABASE_URL": url, "CALLCENTER_DATA_DIR": str(data_dir),
                    "CALLCENTER_ENV": "production", "CALLCENTER_SECRET_KEY": "bench-" + "x" * 40,
                    "CALLCENTER_COOKIE_SECURE": "false", "CALLCENTER_REDIS_URL": REDIS_URL,
                    "CALLCENTER_LOG_LEVEL": "warning"})
        self.proc = subprocess.Popen([sys.executable, "-m", "callcenter", "serve", "--port", str(self.port),
                                      "--workers", "2", "--threads", "8"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        for _ in range(600):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.1)
        raise RuntimeError("console did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Client:
    """One browser-like session: a keep-alive connection and the session cookie."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.cookie = ""
        self.headers: dict[str, str] = {}  # the last response's, names lower-cased

    def request(self, method: str, path: str, body: str | bytes | None = None,
                content_type: str = "application/x-www-form-urlencoded") -> tuple[int, str, float]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = content_type
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read().decode("utf-8", "replace")
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            raise
        elapsed = time.perf_counter() - t0
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data, elapsed

    def fetch(self, path: str) -> tuple[int, str, float, dict[str, str]]:
        """GET for :mod:`bench.crawl`: status, body, seconds and the response's headers."""
        status, body, elapsed = self.request("GET", path)
        return status, body, elapsed, self.headers

    def login(self, username: str) -> None:
        _, page, _ = self.request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrf_token": token})
        status, _, _ = self.request("POST", "/login", body)
        if status != 302:
            raise RuntimeError(f"login failed: {status}")


def _load(port: int, paths: list[tuple[str, str]], seconds: float, clients: int = CLIENTS) -> dict:
    """``clients`` sessions requesting random (kind, path) pairs for ``seconds``."""
    results: list[tuple[str, float, int]] = []
    failed: list[str] = []  # "status path" of each error response
    lock = threading.Lock()
    sessions = []
    for _ in range(clients):
        c = Client(port)
        c.login("bench_admin")
        sessions.append(c)
    stop = time.monotonic() + seconds
    load_before = os.getloadavg()

    def work(client: Client, seed: int) -> None:
        rng = random.Random(seed)
        local = []
        while time.monotonic() < stop:
            kind, path = rng.choice(paths)
            status, _, elapsed = client.request("GET", path)
            local.append((kind, elapsed, status))
            if status >= 400:
                with lock:
                    failed.append(f"{status} {path}")
        with lock:
            results.extend(local)

    threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if r[2] >= 400]
    kinds = sorted({k for k, _, _ in results})
    return {
        "clients": clients, "seconds": seconds, "requests": len(results),
        "throughput_rps": round(len(results) / seconds, 1), "errors": len(errors), "error_samples": failed[:10],
        "all": _summary([e for _, e, _ in results]),
        "by_page": {k: _summary([e for kk, e, _ in results if kk == k]) for k in kinds},
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def _main_pages(s: dict) -> list[tuple[str, str]]:
    paths = [("customers", "/customers/"), ("calls", "/calls/"), ("tickets", "/tickets/?status=all"),
             ("campaigns", "/campaigns/"), ("workspace", "/agent/"), ("calls_filtered", "/calls/?category=wait_time"),
             ("wallboard", "/campaigns/wallboard.json")]
    paths += [("customer_search", f"/customers/?q={urllib.parse.quote(n)}") for n in s["surnames"]]
    paths += [("customer", f"/customers/{i}") for i in s["customers"]]
    paths += [("call", f"/calls/{i}") for i in s["calls"]]
    paths += [("ticket", f"/tickets/{i}") for i in s["tickets"]]
    paths += [("campaign", f"/campaigns/{i}") for i in s["campaigns"]]
    return paths


REPORTS = [("reports_overview", "/reports/"), ("customer_base", "/reports/customer-base"),
           ("feedback", "/reports/feedback"), ("top_problems", "/reports/top-problems"),
           ("satisfaction", "/reports/satisfaction"), ("winback", "/reports/winback"),
           ("improvement", "/improvement/")]


def _cpu_per_page(url: str, samples: dict, repeats: int = 5) -> dict:
    """CPU time the console spends on each page, in this process without HTTP: what a request
    costs whatever else runs on the machine (wall-clock figures under load include the wait for a
    core). Reports are measured warm, as their cache serves them."""
    from callcenter.config import Settings
    from web import create_app

    settings = Settings(data_dir=ROOT / "var" / "bench-web", database_url=url, env="testing",
                        secret_key="bench-" + "x" * 40, redis_url=REDIS_URL)
    app = create_app(settings)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "bench_admin", "password": PASSWORD, "csrf_token": token})
    chosen: dict[str, str] = {}
    for kind, path in [*_main_pages(samples), *REPORTS,
                       *(("search", "/calls/?q=" + urllib.parse.quote(t)) for t in SEARCH_TERMS[:3])]:
        chosen.setdefault(kind, path)
    out = {}
    for kind, path in chosen.items():
        client.get(path)  # warm: caches, compiled statements, templates
        t0 = time.process_time()
        for _ in range(repeats):
            client.get(path)
        out[kind] = round((time.process_time() - t0) / repeats * 1000, 1)
    app.extensions["callcenter"].database.dispose()
    return out


# -- every page as each role (issue 12) -----------------------------------------------------------

# The pages of issue 12's new jobs and the reports: a walk that does not reach one of them fails.
REQUIRED_KINDS = (
    "/admin/stores/", "/admin/stores/new", "/admin/stores/<id>", "/admin/imports/", "/admin/imports/<id>",
    "/campaigns/new", "/scripts/", "/scripts/post_service/edit", "/scripts/post_service/versions/<id>",
    "/reports/", "/reports/customer-base", "/reports/feedback", "/reports/top-problems", "/reports/satisfaction",
    "/reports/winback", "/improvement/",
)


# Searches the walks type where the user has the search box (words are typed, not linked).
CRAWL_SEARCHES = ("/customers/?q=" + urllib.parse.quote("王"), "/calls/?q=" + urllib.parse.quote("等了很久"))


def _crawl_users() -> list[tuple[str, object, bool]]:
    """(username, role, store-scoped) of the users whose pages are walked: every role, and the
    administrators and supervisors in both scopes, which changes what their pages show."""
    from callcenter.domain import Role

    users = [("bench_admin", Role.ADMIN, False), ("bench_admin_store", Role.ADMIN, True),
             ("bench_sup_all", Role.SUPERVISOR, False), ("bench_sup_store", Role.SUPERVISOR, True),
             ("bench_agent", Role.AGENT, True)]
    manager = getattr(Role, "MANAGER", None)  # the read-only role for managers, where it exists
    if manager is not None:
        users.append(("bench_manager", manager, False))
    return users


def _prepare_crawl(url: str, data_dir: Path) -> str:
    """The walkers' accounts (store-scoped ones in the store with the most customers) and a saved
    version of a script (the script editor's version page); returns that store's code."""
    import hashlib

    from callcenter.accounts import upsert_user
    from callcenter.storage import Database, upgrade_database
    from callcenter.storage.models import Customer, ScriptVersion, Store
    from campaigns.scripts import available_scripts

    db = Database(url)
    upgrade_database(db)  # a dataset kept from before a migration
    with db.session() as s:
        code = s.execute(sa.select(Store.code).join(Customer, Customer.store_id == Store.id).group_by(Store.code)
                         .order_by(sa.func.count().desc()).limit(1)).scalar()
        for username, role, scoped in _crawl_users():
            upsert_user(s, username, PASSWORD, role, store_code=code if scoped else None)
        if s.scalar(sa.select(ScriptVersion.id).where(ScriptVersion.script_id == "post_service").limit(1)) is None:
            text = available_scripts(data_dir)["post_service"].read_text(encoding="utf-8")
            s.add(ScriptVersion(script_id="post_service", version=1, text=text, note="基准数据",
                                sha256=hashlib.sha256(text.encode()).hexdigest()))
    db.dispose()
    return code


def _import_preview(url: str, client: Client, log) -> None:
    """A DMS customers export with bad rows, uploaded and previewed as an administrator does it
    (the import pages need one); once per dataset, never imported."""
    from callcenter.storage import Database
    from callcenter.storage.web_models import ConsoleJob

    db = Database(url)
    with db.engine.connect() as conn:
        done = conn.execute(sa.select(sa.func.count()).select_from(ConsoleJob)
                            .where(ConsoleJob.kind.like("import_%"))).scalar()
    db.dispose()
    if done:
        return
    rows = ["客户编号,姓名,手机号,VIN,车型"]
    for i in range(500):
        phone = "12345" if i % 50 == 7 else f"139{i:08d}"
        rows.append(f"BENCH{i:05d},测试客户{i},{phone},,卡罗拉")
    _, page, _ = client.request("GET", "/admin/imports/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    boundary = f"bench{random.getrandbits(128):032x}"
    fields = {"csrf_token": token, "kind": "customers", "id_scope": "group", "store": ""}
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="客户导出.csv"\r\n'
             f"Content-Type: text/csv\r\n\r\n").encode() + "\n".join(rows).encode("gb18030") + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    status, _, _ = client.request("POST", "/admin/imports/", body, f"multipart/form-data; boundary={boundary}")
    job = re.search(r"/admin/imports/(\d+)$", client.headers.get("location", ""))
    if status != 302 or job is None:
        raise RuntimeError(f"the import preview upload answered {status}")
    for _ in range(600):
        _, data, _ = client.request("GET", f"/admin/imports/{job.group(1)}.json")
        if json.loads(data)["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    log(f"  import preview {job.group(1)}: {data.strip()}")


def _keep_report_cache() -> None:
    """Keep the report figures the walk computed for the timed views (they live 5 minutes): the
    views are timed warm, as every viewer after the first in 5 minutes sees them; the first view
    of each is reported apart and cold computation is timed by its own phase."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match="cc:cache:*", count=500):
        if not key.endswith(b":lock"):
            client.expire(key, 3600)


def _crawl_figures(port: int, log, quick: bool) -> dict:
    """Every page as each user of :func:`_crawl_users`, walked then timed (:mod:`bench.crawl`)."""
    from bench import crawl

    per_kind, samples = (2, 6) if quick else (crawl.PER_KIND, crawl.SAMPLES_PER_KIND)
    out: dict = {"method": f"one client at a time; up to {per_kind} URLs per page kind, {samples} timed GETs per "
                           "kind after an untimed first view; p95 by nearest rank",
                 "target_p95_ms": crawl.TARGET_P95_MS, "users": {}}
    failures: list[str] = []
    reached: set[str] = set()
    for username, role, scoped in _crawl_users():
        client = Client(port)
        client.login(username)
        load_before = os.getloadavg()
        started = time.monotonic()
        found = crawl.walk(client.fetch, "/", CRAWL_SEARCHES, per_kind=per_kind)
        _keep_report_cache()
        errors = list(found.errors)
        times = crawl.time_pages(client.fetch, found.pages, samples, errors)
        pages = crawl.summary(times)
        reached |= set(pages)
        every = [t for values in times.values() for t in values]
        over = {k: v for k, v in pages.items() if v["over_target"]}
        out["users"][username] = {
            "role": role.value, "store_scoped": scoped, "opened_while_walking": found.opened, "kinds": len(pages),
            "all": _summary(every), "over_target": sorted(over), "errors": errors[:20],
            "pages": pages, "first_view_ms": found.first_view_ms, "downloads_and_refresh_ms": found.other_ms,
            "seconds": round(time.monotonic() - started, 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        failures += [f"{username}: {k} p95 {v['p95_ms']} ms > {v['target_ms']:.0f} ms" for k, v in over.items()]
        failures += [f"{username}: HTTP {e}" for e in errors]
        slowest = sorted(pages.items(), key=lambda kv: -kv[1]["p95_ms"])[:5]
        log(f"  {username} ({role.value}{', one store' if scoped else ''}): {len(pages)} page kinds, "
            f"{len(every)} timed views, p50/p95 {out['users'][username]['all'].get('p50_ms')}/"
            f"{out['users'][username]['all'].get('p95_ms')} ms, over {crawl.TARGET_P95_MS:.0f} ms: {len(over)}, "
            f"errors: {len(errors)}; slowest p95: " + ", ".join(f"{k} {v['p95_ms']}" for k, v in slowest))
    missing = [k for k in REQUIRED_KINDS if k not in reached]
    failures += [f"page not reached by any walk: {k}" for k in missing]
    # Each page's worst p95 over the users who see it.
    worst: dict[str, dict] = {}
    for username, result in out["users"].items():
        for kind, figures in result["pages"].items():
            if kind not in worst or figures["p95_ms"] > worst[kind]["p95_ms"]:
                worst[kind] = {**figures, "user": username}
    out["pages_worst_p95"] = dict(sorted(worst.items(), key=lambda kv: -kv[1]["p95_ms"]))
    out["failures"] = failures
    out["verdict"] = "FAIL" if failures else "PASS"
    log(f"  crawl: {len(worst)} page kinds over {len(out['users'])} users: {out['verdict']}"
        + "".join(f"\n    FAIL {f}" for f in failures))
    return out


def _phases() -> set[str]:
    """``CALLCENTER_BENCH_WEB_PHASES`` (comma separated) picks phases; all by default."""
    known = {"cold", "search", "main", "reports", "crawl", "cpu"}
    raw = os.environ.get("CALLCENTER_BENCH_WEB_PHASES", "")
    chosen = {p.strip() for p in raw.split(",") if p.strip()} or known
    if chosen - known:
        raise ValueError(f"CALLCENTER_BENCH_WEB_PHASES: unknown {sorted(chosen - known)} (known: {sorted(known)})")
    return chosen


def _engine_figures(label: str, url: str, seconds: float, log, quick: bool = False) -> dict:
    import redis

    phases = _phases()
    redis.Redis.from_url(REDIS_URL).flushdb()  # cold caches
    samples = _samples(url)
    data_dir = ROOT / "var" / "bench-web"
    if "crawl" in phases:
        _prepare_crawl(url, data_dir)
    server = Server(url, data_dir)
    out: dict = {"engine": label}
    try:
        client = Client(server.port)
        client.login("bench_admin")
        if "cold" in phases:
            # Cold report computations, one at a time (what the first viewer of a period waits for).
            cold = {}
            for kind, path in [*REPORTS, ("customer_base_trend_12_months", "/reports/customer-base/trend.json")]:
                status, _, elapsed = client.request("GET", path + ("&" if "?" in path else "?") + "refresh=1")
                if status != 200:
                    raise RuntimeError(f"{label}: {path} answered {status}")
                cold[kind] = round(elapsed * 1000, 1)
            out["reports_cold_ms"] = cold
            log(f"  {label}: cold reports {cold}")
        if "search" in phases:
            # Search, one client: the first query of each term (index catch-up already done at build).
            single = []
            for term in SEARCH_TERMS:
                _, _, elapsed = client.request("GET", "/calls/?q=" + urllib.parse.quote(term))
                single.append(elapsed)
            out["search_single_client"] = _summary(single)
        if "main" in phases:
            out["main_pages"] = _load(server.port, _main_pages(samples), seconds)
            log(f"  {label}: main pages {out['main_pages']['all']}")
        if "reports" in phases:
            out["report_pages_warm"] = _load(server.port, REPORTS, seconds)
            log(f"  {label}: report pages {out['report_pages_warm']['all']}")
        if "search" in phases:
            out["search_10_clients"] = _load(server.port, [("search", "/calls/?q=" + urllib.parse.quote(t))
                                                           for t in SEARCH_TERMS], seconds)
            log(f"  {label}: search {out['search_10_clients']['all']}")
        if "crawl" in phases:
            _import_preview(url, client, log)
            out["every_page_by_role"] = _crawl_figures(server.port, lambda m: log(f"  {label}:{m}"), quick)
    finally:
        server.stop()
    if "cpu" in phases:
        out["cpu_ms_per_page"] = _cpu_per_page(url, samples)
        log(f"  {label}: CPU per page {out['cpu_ms_per_page']}")
    return out


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    customers, calls = (3000, 6000) if quick else (100_000, 200_000)
    seconds = 15.0 if quick else 45.0
    rebuild = os.environ.get("CALLCENTER_BENCH_WEB_REBUILD") == "1"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result: dict = {"customers_target": customers, "calls_target": calls, "clients": CLIENTS,
                    "server": "callcenter serve: gunicorn gthread, 2 workers x 8 threads",
                    "targets": {"pages_p95_ms": 150, "search_ms": 300}}
    engines = {e.strip() for e in os.environ.get("CALLCENTER_BENCH_WEB_ENGINES", "sqlite,postgresql").split(",")}
    for label, url in _dataset_urls(customers, calls).items():
        if label not in engines:
            continue
        if rebuild or not _ready(url):
            log(f"building the {label} dataset ({customers:,} customers, {calls:,} calls)")
            result[f"{label}_build"] = _build(url, customers, calls, log)
        result[f"{label}_rows"] = _counts(url)
        result[label] = _engine_figures(label, url, seconds, log, quick)
        crawl = result[label].get("every_page_by_role")
        if crawl:
            result.setdefault("failures", []).extend(f"{label}: {f}" for f in crawl["failures"])
    return result
