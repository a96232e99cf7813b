"""Engine and session set-up for SQLite (embedded default) and PostgreSQL.

``Database`` is built once per process from :class:`~callcenter.config.Settings` and
passed to whatever needs sessions; nothing here keeps global state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001 - DBAPI objects
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode (power loss may
            # drop the last transactions); FULL costs ~2x on bulk import.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """An engine plus a session factory."""

    def __init__(self, url: str, **engine_kwargs) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic filter: leave derived tables alone.

    The console's transcript search index (``search_*``) is rebuilt at run time from the
    utterances (callcenter/storage/search.py); autogenerate must not propose dropping it.
    """
    return not (type_ == "table" and reflected and compare_to is None and name.startswith("search_"))


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Create or migrate the schema to ``revision``; harmless when already there.

    Returns:
        (revision before, revision after).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
    _migrate(db, command.upgrade, revision)
    with db.engine.connect() as conn:
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        logger.info("database migrated from %s to %s", before or "empty", after)
    return before, after


def downgrade_database(db: Database, revision: str) -> None:
    """Migrate the schema back to ``revision`` (tests of migrations; operators restore backups)."""
    from alembic import command

    _migrate(db, command.downgrade, revision)


def _migrate(db: Database, step, revision: str) -> None:
    """Run an Alembic command in one transaction; on SQLite with foreign keys off, then checked.

    SQLite's table-rebuild procedure (batch "move and copy") requires it: with foreign keys on,
    dropping the old table deletes its children's rows (ON DELETE CASCADE) or fails. The pragma
    is a no-op inside a transaction, so it is set before one begins.
    """
    cfg = alembic_config(db.url)
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                step(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
