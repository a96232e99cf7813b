"""Fixtures shared by every test layer.

Services are real: PostgreSQL at ``CALLCENTER_TEST_POSTGRES_URL`` (a fresh database
per test session, dropped afterwards) and Redis at ``CALLCENTER_TEST_REDIS_URL``
(its database flushed before and after each test that asks for it). ``scripts/test``
starts both; a test that needs one that is not reachable fails with a message saying
so instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.storage import Database, upgrade_database

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
POSTGRES_URL = os.environ.get(
    "CALLCENTER_TEST_POSTGRES_URL",
    "postgresql+psycopg://callcenter:callcenter@127.0.0.1:5432/callcenter_test",
)
REDIS_URL = os.environ.get("CALLCENTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a fresh PostgreSQL database for this test session."""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"cc_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {POSTGRES_URL} (run scripts/services): {exc.orig}")
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A migrated, empty database: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callcenter.db'}"
    url = request.getfixturevalue("postgres_server_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url)
    upgrade_database(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path) -> Database:
    """A migrated SQLite database, for tests that need storage but not both engines."""
    database = Database(f"sqlite:///{tmp_path / 'callcenter.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=db_url, redis_url=REDIS_URL, env="testing")


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis not reachable at {REDIS_URL} (run scripts/services): {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def cli_env(tmp_path, db_url) -> dict[str, str]:
    """Environment for running the ``callcenter`` CLI against the test database."""
    return {
        "CALLCENTER_DATA_DIR": str(tmp_path / "var"),
        "CALLCENTER_DATABASE_URL": db_url,
        "CALLCENTER_REDIS_URL": REDIS_URL,
        "CALLCENTER_ENV": "testing",
        "CALLCENTER_LOG_LEVEL": "warning",
    }


@pytest.fixture
def run_cli(cli_env):
    """Invoke the CLI in-process: ``run_cli("init", "--json")`` -> click Result."""
    from click.testing import CliRunner

    from callcenter.cli import main

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None):
        runner = CliRunner()
        # Unset the developer's own CALLCENTER_* variables, keep the test-suite's.
        merged: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith("CALLCENTER_") and not k.startswith("CALLCENTER_TEST_")
        }
        merged.update(cli_env)
        merged.update(env or {})
        return runner.invoke(main, list(args), input=input, env=merged, catch_exceptions=False)

    return run
