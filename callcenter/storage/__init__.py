"""Durable storage: SQLAlchemy models, engine set-up and Alembic migrations."""

from callcenter.storage.db import Database, upgrade_database

__all__ = ["Database", "upgrade_database"]
