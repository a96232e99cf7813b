"""Alembic environment: uses the connection handed in by ``upgrade_database`` or,
for ``alembic`` on the command line, ``CALLCENTER_DATABASE_URL`` via Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from callcenter.storage.db import include_object
from callcenter.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from callcenter.config import Settings

    return Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
        return
    from callcenter.storage.db import make_engine

    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
