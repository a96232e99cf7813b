"""What the console's views need from below: settings, the database, Redis.

One :class:`Services` per application, kept in ``app.extensions["callcenter"]``; each request
gets its own SQLAlchemy session (``db()``), opened on first use and closed at the end of the
request, rolled back unless the view committed. Runs on the request's worker thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis as redis_lib
from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from callcenter.config import Settings
from callcenter.storage import Database

logger = logging.getLogger(__name__)

# What a Redis outage raises: pages catch these and degrade instead of failing.
REDIS_ERRORS = (redis_lib.RedisError, OSError)


@dataclass
class Services:
    settings: Settings
    database: Database
    _redis: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def redis(self):
        """A Redis client (built on first use; connection errors surface on use, not here)."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    # Short timeouts: a page must not hang when Redis is down, it degrades.
                    self._redis = redis_lib.Redis.from_url(
                        self.settings.redis_url, socket_connect_timeout=1, socket_timeout=2,
                        health_check_interval=30,
                    )
        return self._redis


def init_app(app: Flask, settings: Settings, *, database: Database | None = None, redis_client=None) -> None:
    if database is None:
        # One connection per worker thread, plus headroom for SSE streams that finish.
        threads = max(settings.web_threads, 4)
        database = Database(settings.database_url, pool_size=threads, max_overflow=threads)
    app.extensions["callcenter"] = Services(settings=settings, database=database, _redis=redis_client)
    app.teardown_appcontext(_close_session)


def services() -> Services:
    return current_app.extensions["callcenter"]


def settings() -> Settings:
    return services().settings


def db() -> Session:
    """The request's session (no autocommit: views call ``db().commit()`` when they write)."""
    session = g.get("_db_session")
    if session is None:
        session = g._db_session = services().database.sessionmaker()
    return session


def redis():
    return services().redis


def _close_session(exc: BaseException | None) -> None:
    session = g.pop("_db_session", None)
    if session is not None:
        session.close()
