"""The console: a Flask application for agents, supervisors and managers.

``create_app(settings)`` is the application factory (Flask tutorial style): it checks the
secret key, wires the database and Redis (see :mod:`web.services`), security
(:mod:`web.security`), translations (:mod:`web.i18n`) and registers the blueprints.
Requests run on gunicorn's worker threads (``callcenter serve``); nothing here starts a
thread of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from flask import Flask

from callcenter.config import ConfigError, Settings

BLUEPRINTS = (
    "auth", "agent", "customers", "calls", "tickets", "campaigns", "live", "reports", "improvement",
    "admin", "api", "stores", "imports", "script_editor",
)


def create_app(settings: Settings, *, database=None, redis_client=None) -> Flask:
    """Build the console for ``settings``.

    Args:
        settings: process settings (``Settings.from_env()`` in production).
        database: an existing :class:`~callcenter.storage.Database` to share; by default one
            is built from ``settings.database_url`` with a pool sized to the worker threads.
        redis_client: an existing Redis client; by default one is built lazily from
            ``settings.redis_url``.

    Raises:
        ConfigError: no ``CALLCENTER_SECRET_KEY`` outside development.
    """
    from web import i18n, security, services, views

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key(settings),
        SESSION_COOKIE_NAME="cc_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production if settings.cookie_secure is None else settings.cookie_secure,
        # A working day plus overtime; the session ends sooner on logout or password/role change.
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        # Script uploads and API batches; recordings are streamed out, never uploaded here.
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=dt.timedelta(days=7) if settings.is_production else 0,
        TEMPLATES_AUTO_RELOAD=settings.env == "development",
        TESTING=settings.env == "testing",
    )
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    services.init_app(app, settings, database=database, redis_client=redis_client)
    i18n.init_app(app)
    security.init_app(app)
    views.init_app(app)
    for name in BLUEPRINTS:
        module = __import__(f"web.{name}", fromlist=["bp"])
        app.register_blueprint(module.bp)
    security.check_every_view_has_a_rule(app)
    if settings.trusted_proxies:
        app.wsgi_app = security.TrustedProxies(app.wsgi_app, settings.trusted_proxies,
                                               settings.trusted_proxy_addresses)
    return app


def secret_key(settings: Settings) -> str:
    """The session-signing key: ``CALLCENTER_SECRET_KEY``, or in development a random key kept
    in the data directory so that restarts and several workers agree on it.

    Raises:
        ConfigError: production or testing without ``CALLCENTER_SECRET_KEY``.
    """
    if settings.secret_key:
        return settings.secret_key
    if settings.env != "development":
        raise ConfigError(
            "CALLCENTER_SECRET_KEY is required (at least 16 characters; e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`); "
            "only CALLCENTER_ENV=development runs without it"
        )
    path = Path(settings.data_dir) / ".dev-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        # O_EXCL: of two workers starting together, one writes and both then read the same key.
        try:
            with open(path, "x", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
                fh.write(key)
        except FileExistsError:
            pass
        return path.read_text().strip()
