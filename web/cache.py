"""A small read-through cache for report figures, on Redis, with single-flight computing.

Reports aggregate months of calls; recomputing them for every page view would cost more than
the 150 ms a page may take under load. Figures are cached for a few minutes (the page says when
they were computed and offers a refresh); when many requests miss at once, one computes while
the others wait for its result instead of all loading the database. Without Redis the figures
are simply computed. Runs on the request's worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from web.services import REDIS_ERRORS, redis, services

logger = logging.getLogger(__name__)

PREFIX = "cc:cache:"
# How long a waiting request waits for another one's computation before computing itself.
WAIT_SECONDS = 20.0


def cache_key(*parts: object) -> str:
    """A key for these parts of this database: several databases may share one Redis."""
    from sqlalchemy.engine import make_url

    url = make_url(services().database.url).render_as_string(hide_password=True)
    raw = json.dumps([url, *parts], ensure_ascii=False, sort_keys=True, default=str)
    return PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:32]


def cached(key: str, ttl: int, compute: Callable[[], Any], *, refresh: bool = False) -> tuple[Any, float]:
    """``(value, computed_at unix time)``, from the cache or freshly computed.

    ``compute`` must return JSON-serialisable data. ``refresh`` recomputes whatever is cached.
    """
    try:
        client = redis()
        if not refresh:
            hit = client.get(key)
            if hit is not None:
                record = json.loads(hit)
                return record["value"], record["at"]
        lock = key + ":lock"
        if client.set(lock, "1", nx=True, ex=int(WAIT_SECONDS) + 10):
            try:
                return _compute_and_store(client, key, ttl, compute)
            finally:
                client.delete(lock)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
            hit = client.get(key)
            if hit is not None:
                record = json.loads(hit)
                return record["value"], record["at"]
            if not client.exists(lock):
                break
    except (*REDIS_ERRORS, ValueError) as exc:  # Redis down or slow: the report still works, uncached
        logger.warning("report cache unavailable (%s); computing directly", exc)
    return compute(), time.time()


def peek(key: str) -> Any | None:
    """The cached value, or None when absent (or Redis is unavailable)."""
    try:
        hit = redis().get(key)
    except REDIS_ERRORS:
        return None
    return None if hit is None else json.loads(hit)["value"]


def store(key: str, ttl: int, value: Any) -> None:
    """Cache a value computed elsewhere (several figures computed in one pass)."""
    try:
        _compute_and_store(redis(), key, ttl, lambda: value)
    except REDIS_ERRORS as exc:
        logger.warning("report cache unavailable (%s); not stored", exc)


def _compute_and_store(client, key: str, ttl: int, compute: Callable[[], Any]) -> tuple[Any, float]:
    value = compute()
    at = time.time()
    client.set(key, json.dumps({"value": value, "at": at}, ensure_ascii=False, default=str), ex=ttl)
    return value, at


def invalidate_all() -> int:
    """Drop every cached figure (after data imports through the API)."""
    try:
        client = redis()
        keys = list(client.scan_iter(match=PREFIX + "*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    except REDIS_ERRORS as exc:
        logger.warning("report cache not cleared: %s", exc)
        return 0
