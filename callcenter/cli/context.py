"""What every command needs: settings, logging, the database; errors as clean messages."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from callcenter.config import ConfigError, Settings
from callcenter.logs import setup_logging


def load_settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    setup_logging(settings.log_level)
    return settings


def open_database(settings: Settings, *, migrate: bool = False):
    """The database, checked to be at the schema head (or migrated when asked)."""
    import sqlalchemy as sa

    from callcenter.storage import Database, upgrade_database
    from callcenter.storage.db import current_revision, head_revision

    db = Database(settings.database_url)
    try:
        if migrate:
            upgrade_database(db)
        elif current_revision(db) != head_revision():
            raise click.ClickException("the database is not initialised or not up to date: run `callcenter init`")
    except sa.exc.OperationalError as exc:
        raise click.ClickException(f"cannot open the database: {exc.orig}") from None
    return db


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def clean_errors(func: Callable) -> Callable:
    """Turn expected failures into one-line errors (exit 1) instead of tracebacks."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (OSError, ValueError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper
