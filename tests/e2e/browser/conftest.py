"""The console in a real browser: Debian's Chromium driven by Playwright (``playwright install``
cannot download browsers here, so the system's /usr/bin/chromium is launched directly).

One server for the module: a demo dealer group (the foundation's generator and importer) with
months of demo calls, served by ``callcenter serve`` (gunicorn) on a free port. Screenshots go to
``test-artifacts/browser/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from callcenter.accounts import upsert_user
from callcenter.config import Settings
from callcenter.demo import load_demo
from callcenter.domain import Role
from callcenter.storage import Database, upgrade_database
from web.demo_calls import generate

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "browser-pass-1"
REDIS_URL = os.environ.get("CALLCENTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_console(env: dict[str, str], threads: int = 8):
    """``callcenter serve`` (gunicorn, one worker) on a free port with ``env``; yields its base URL
    once /healthz answers, stops it after."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "callcenter", "serve", "--port", str(port), "--workers", "1",
                               "--threads", str(threads)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None:
                    pytest.fail(f"callcenter serve exited: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
        else:
            pytest.fail("the console did not answer on /healthz")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def console_process():
    """``serve_console`` for test modules (they cannot import this conftest)."""
    return serve_console


@pytest.fixture(scope="module")
def console_server(tmp_path_factory):
    """(base URL, Database) of a console serving the demo group with demo calls."""
    data = tmp_path_factory.mktemp("browser-console")
    settings = Settings(data_dir=data, env="production", secret_key="b" * 40, redis_url=REDIS_URL)
    db = Database(settings.database_url)
    upgrade_database(db)
    load_demo(db, as_of=dt.date.today(), n_customers=400, seed=11)
    with db.session() as s:
        for username, role, store in (("agent", Role.AGENT, "JH01"), ("supervisor", Role.SUPERVISOR, "JH01"),
                                      ("admin", Role.ADMIN, None), ("manager", Role.MANAGER, None)):
            upsert_user(s, username, PASSWORD, role, store_code=store)
    generate(db, calls=1500, end=dt.date.today(), months=4, seed=5, recordings=30, data_dir=data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_DATA_DIR": str(data), "CALLCENTER_ENV": "production", "CALLCENTER_SECRET_KEY": "b" * 40,
                "CALLCENTER_COOKIE_SECURE": "false", "CALLCENTER_REDIS_URL": REDIS_URL,
                "CALLCENTER_LOG_LEVEL": "warning"})
    try:
        with serve_console(env) as base:
            yield base, db
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing (apt-get install chromium; scripts/setup installs it)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context (laptop screen) whose console errors fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
    context.close()
    assert not errors, f"browser errors: {errors}"


@pytest.fixture
def login(console_server):
    base, _db = console_server

    def do(page, username: str) -> None:
        page.goto(base + "/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

    return do


@pytest.fixture
def shot():
    """``shot(page, "name")`` saves a screenshot as a test artifact."""

    def save(page, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    return save
