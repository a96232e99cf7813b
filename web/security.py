"""Who may do what: login sessions, API tokens, roles, store scope, CSRF, login rate limits and
response headers.

Every view declares its rule with :func:`public`, :func:`require` or :func:`api_require`; a
view without one is refused (and :func:`check_every_view_has_a_rule` stops the application
from starting), so a new route can never be open by omission. The check runs in
``before_request`` on the request's worker thread.

Roles are ordered agent < supervisor < admin: a view for supervisors admits admins. Managers
stand beside that ladder and only read: a view admits them when it says so
(``require(..., managers=True)``), and then for GET only, so no write opens to them by a rank.
A user with a store sees that store only; a user without one sees the whole group. Objects of
another store answer 404, not 403, so that their existence does not leak.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import sqlalchemy as sa
from flask import Flask, abort, current_app, g, jsonify, redirect, request, session, url_for
from werkzeug.exceptions import HTTPException

from callcenter.domain import Role
from callcenter.domain.phone import mask_phone
from callcenter.storage.models import User, utcnow
from callcenter.storage.web_models import ApiToken, LoginAttempt
from web.services import db

logger = logging.getLogger(__name__)

# The ladder. Role.MANAGER is not on it: managers get exactly the views marked for them.
ROLE_RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "cc_"

# Login throttling, per account with backoff: 5 failed passwords in a row (since the last
# success, within a day) lock the account for 1 minute, and each further failure doubles the
# lock up to an hour, so a guesser gets about 30 tries a day while a typist waits a minute.
# Per address only far above what one office behind one NAT produces (an office of 100 agents
# each mistyping 3 times at the start of a shift is 300): it stops a spray over many accounts.
LOGIN_MEMORY = dt.timedelta(days=1)
MAX_FAILURES_PER_USER = 5
FIRST_LOCK = dt.timedelta(minutes=1)
LONGEST_LOCK = dt.timedelta(hours=1)
IP_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_IP = 300

# Content-Security-Policy: scripts only from our own origin (no inline script anywhere: page
# data travels in <script type="application/json"> blocks). Inline styles are allowed because
# ECharts writes style attributes into its tooltips.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Rule:
    public: bool = False
    min_role: Role | None = None  # None (not public): every logged-in user, whatever the role
    api: bool = False
    write: bool = False
    managers: bool = False  # managers may read it too (GET and HEAD only)


def _mark(rule: Rule) -> Callable:
    def decorate(view: Callable) -> Callable:
        view._access = rule  # type: ignore[attr-defined]
        return view

    return decorate


def public(view: Callable) -> Callable:
    """No login needed (the login page, health check)."""
    return _mark(Rule(public=True))(view)


def signed_in(view: Callable) -> Callable:
    """Every logged-in user, whatever the role (the start page, one's own password)."""
    return _mark(Rule())(view)


def require(role: Role, *, managers: bool = False) -> Callable:
    """A logged-in user of ``role`` or higher; with ``managers``, managers too, to read only
    (their POST, PUT, PATCH and DELETE are refused with 403 whatever the view does)."""
    if role not in ROLE_RANK:
        raise ValueError(f"require() takes a role of the ladder, not {role}")
    return _mark(Rule(min_role=role, managers=managers))


def api_require(role: Role, *, write: bool = False) -> Callable:
    """A valid API token whose user has ``role`` or higher (and write permission when ``write``)."""
    return _mark(Rule(min_role=role, api=True, write=write))


def check_every_view_has_a_rule(app: Flask) -> None:
    missing = [ep for ep, view in app.view_functions.items()
               if ep != "static" and not isinstance(getattr(view, "_access", None), Rule)]
    if missing:
        raise RuntimeError(f"views without an access rule: {', '.join(sorted(missing))}")


# -- current user and scope ------------------------------------------------------------------


def current_user() -> User | None:
    return g.get("user")


def has_role(role: Role) -> bool:
    """The current user has ``role`` or one above it on the ladder (a manager: only Role.MANAGER)."""
    user = current_user()
    if user is None:
        return False
    if role not in ROLE_RANK or user.role not in ROLE_RANK:
        return user.role is role
    return ROLE_RANK[user.role] >= ROLE_RANK[role]


def admits(rule: Rule, user: User | None, method: str) -> bool:
    """Whether ``rule`` lets ``user`` (None: anonymous) make a ``method`` request."""
    if rule.public:
        return True
    if user is None:
        return False
    if rule.min_role is None:
        return True
    if user.role in ROLE_RANK:
        return ROLE_RANK[user.role] >= ROLE_RANK[rule.min_role]
    return user.role is Role.MANAGER and rule.managers and method not in UNSAFE_METHODS


def may(endpoint: str, method: str = "GET") -> bool:
    """Whether the current user may open ``endpoint`` (with ``method``): the pages show a link, a
    button or a form only where it leads somewhere (the sidebar, "New plan", the tag forms)."""
    view = current_app.view_functions.get(endpoint)
    rule = getattr(view, "_access", None)
    return isinstance(rule, Rule) and not rule.api and admits(rule, current_user(), method)


def oversees() -> bool:
    """Supervisors, administrators and managers see every call and ticket of their scope; an
    agent sees their own (and the tickets nobody has yet)."""
    return has_role(Role.SUPERVISOR) or has_role(Role.MANAGER)


def scoped_store_id() -> int | None:
    """The store the current user is confined to, or None for group-wide users."""
    user = current_user()
    return None if user is None else user.store_id


def store_clause(column) -> sa.ColumnElement[bool]:
    """A WHERE clause confining ``column`` (a store id column) to the user's scope."""
    store_id = scoped_store_id()
    return sa.true() if store_id is None else column == store_id


def sees_full_phones() -> bool:
    """The one masking rule, for every path (pages, exports, the API): supervisors and
    administrators see whole numbers; agents see them masked (the whole number only while
    dialing, audited as ``phone.reveal``), and may find a customer by a whole number only;
    managers, who read and never dial, see them masked."""
    return has_role(Role.SUPERVISOR)


def shown_phone(phone: str | None) -> str:
    """``phone`` as the current user (or API token's user) may see it (:func:`sees_full_phones`)."""
    if not phone:
        return ""
    return phone if sees_full_phones() else mask_phone(phone)


def in_scope(store_id: int | None) -> bool:
    scope = scoped_store_id()
    return scope is None or store_id == scope


def ensure_in_scope(store_id: int | None) -> None:
    """404 for an object of another store (its existence is none of this user's business)."""
    if not in_scope(store_id):
        abort(404)


def session_stamp(user: User) -> str:
    """Changes whenever the password, role, store, active flag or session generation change:
    every session opened before then ends on its next request."""
    raw = (f"{user.id}|{user.password_hash}|{user.role.value}|{user.store_id}|{user.active}"
           f"|{user.session_generation or 0}")
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def end_sessions(user: User) -> None:
    """End every console session of ``user`` (logout): a kept cookie is refused from now on.
    The caller commits."""
    user.session_generation = (user.session_generation or 0) + 1


def log_in(user: User) -> None:
    session.clear()  # a fresh session: nothing from before the login survives (fixation)
    session.permanent = True
    session["uid"] = user.id
    session["stamp"] = session_stamp(user)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


# -- CSRF -------------------------------------------------------------------------------------


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def _csrf_ok() -> bool:
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    return bool(expected and sent) and hmac.compare_digest(str(expected), str(sent))


# -- API tokens -------------------------------------------------------------------------------


def new_api_token() -> tuple[str, str]:
    """(token shown once to the user, its SHA-256 kept in the database)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _api_user(rule: Rule) -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip().startswith(TOKEN_PREFIX):
        refuse(401, "missing or malformed 'Authorization: Bearer <token>' header")
    now = utcnow()
    row = db().scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip())))
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        refuse(401, "invalid, revoked or expired token")
    user = db().get(User, row.user_id)
    if user is None or not user.active:
        refuse(401, "the token's user is disabled")
    if rule.write and not row.can_write:
        refuse(403, "this token is read-only")
    # Write the last-use time at most once a minute per token: API clients poll often.
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
        row.last_used_at = now
        db().commit()
    g.api_token = row
    return user


# -- login rate limiting ----------------------------------------------------------------------


def client_ip() -> str:
    """The client's address: the peer's, or what a trusted proxy said (:class:`TrustedProxies`)."""
    return (request.remote_addr or "unknown")[:45]


class TrustedProxies:
    """WSGI middleware: ``X-Forwarded-For/-Proto/-Host`` are believed only when the request comes
    from one of ``CALLCENTER_TRUSTED_PROXY_ADDRESSES``, through ``hops`` proxies; from any other
    peer they are ignored (a client reaching the console directly cannot pick its address)."""

    def __init__(self, app, hops: int, networks: tuple[str, ...]) -> None:
        from werkzeug.middleware.proxy_fix import ProxyFix

        self.direct = app
        self.proxied = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops)
        self.networks = [ipaddress.ip_network(n) for n in networks]

    def trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, environ, start_response):
        app = self.proxied if self.trusted(environ.get("REMOTE_ADDR", "")) else self.direct
        return app(environ, start_response)


def login_lock(username: str, ip: str) -> dt.timedelta | None:
    """How long logins for ``username`` from ``ip`` stay refused, or None when they may try.

    The account: :data:`MAX_FAILURES_PER_USER` failures since its last success lock it for
    :data:`FIRST_LOCK` from the last failure, doubled for each failure beyond, at most
    :data:`LONGEST_LOCK`. The address: :data:`MAX_FAILURES_PER_IP` failures within
    :data:`IP_WINDOW`, whoever they were for.
    """
    now = utcnow()
    s = db()
    since = now - LOGIN_MEMORY
    last_ok = s.scalar(sa.select(sa.func.max(LoginAttempt.at)).where(
        LoginAttempt.username == username, LoginAttempt.success.is_(True), LoginAttempt.at >= since))
    failures, last_failure = s.execute(sa.select(sa.func.count(), sa.func.max(LoginAttempt.at)).where(
        LoginAttempt.username == username, LoginAttempt.success.is_(False),
        LoginAttempt.at >= (last_ok or since))).one()
    if failures >= MAX_FAILURES_PER_USER:
        lock = min(FIRST_LOCK * 2 ** (failures - MAX_FAILURES_PER_USER), LONGEST_LOCK)
        if last_failure + lock > now:
            return last_failure + lock - now
    ip_failures = s.scalar(sa.select(sa.func.count()).where(
        LoginAttempt.ip == ip, LoginAttempt.success.is_(False), LoginAttempt.at >= now - IP_WINDOW))
    return IP_WINDOW if ip_failures >= MAX_FAILURES_PER_IP else None


def login_blocked(username: str, ip: str) -> bool:
    """Too many recent failures for this account or this address (see :func:`login_lock`)."""
    return login_lock(username, ip) is not None


def record_login_attempt(username: str, ip: str, success: bool) -> None:
    s = db()
    s.add(LoginAttempt(username=username[:64], ip=ip, success=success))
    if success:
        # Keep a month of attempts; older ones serve no limit and no inquiry.
        s.execute(sa.delete(LoginAttempt).where(LoginAttempt.at < utcnow() - dt.timedelta(days=30)))


_dummy_hash: str | None = None


def check_password(user: User | None, password: str) -> bool:
    """Verify a password; an unknown user costs the same time as a known one."""
    from werkzeug.security import check_password_hash

    from callcenter.accounts import hash_password, verify_password

    global _dummy_hash
    if user is None or not user.active:
        if _dummy_hash is None:
            _dummy_hash = hash_password(secrets.token_urlsafe(16))
        check_password_hash(_dummy_hash, password)
        return False
    return verify_password(user, password)


# -- the request hooks ------------------------------------------------------------------------


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _before_request():
    if request.endpoint is None or request.endpoint == "static":
        return None
    view = current_app.view_functions.get(request.endpoint)
    rule = getattr(view, "_access", None)
    if not isinstance(rule, Rule):
        refuse(403, "no access rule")
    if rule.api:
        g.user = _api_user(rule)
    else:
        g.user = _session_user()
        if request.method in UNSAFE_METHODS and not _csrf_ok():
            refuse(400, "CSRF token missing or wrong: reload the page and try again")
    if rule.public:
        return None
    if g.user is None:
        if wants_json():
            refuse(401, None)
        log_refusal(302, "not logged in")
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if not admits(rule, g.user, request.method):
        if g.user.role is Role.MANAGER and request.method in UNSAFE_METHODS:
            log_refusal(403, "managers only read")
            abort(403)
        refuse(403, None)
    return None


def log_refusal(code: int, reason: str | None) -> None:
    """One WARNING line per refused request: status, method, path, client address, user, why.
    (The log filter escapes control characters and masks phone numbers in it.)"""
    user = g.get("user")
    logger.warning("refused %d %s %s from %s user=%s: %s", code, request.method, request.path, client_ip(),
                   user.username if user is not None else "-", reason or ("role too low" if code == 403 else "-"))


def refuse(code: int, description: str | None) -> NoReturn:
    """Log the refusal (:func:`log_refusal`), then abort with ``code``."""
    log_refusal(code, description or ("not logged in" if code == 401 else None))
    if description is None:
        abort(code)
    abort(code, description=description)


def _session_user() -> User | None:
    uid = session.get("uid")
    if uid is None:
        return None
    user = db().get(User, uid)
    if user is None or not user.active or not hmac.compare_digest(session.get("stamp", ""), session_stamp(user)):
        log_out()
        return None
    return user


def _after_request(response):
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.endpoint != "static":
        # Customer data must not linger in shared browser caches or proxies.
        h.setdefault("Cache-Control", "no-store")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _json_error(exc: HTTPException):
    """API clients and the pages' own fetch() calls get JSON errors."""
    response = jsonify(error=exc.name, status=exc.code, message=exc.description)
    response.status_code = exc.code or 500
    if exc.code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="callcenter"'
    return response


def init_app(app: Flask) -> None:
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.register_error_handler(HTTPException, _http_error)
    app.jinja_env.globals.update(csrf_token=csrf_token, current_user=current_user, has_role=has_role,
                                 may=may, Role=Role)


def _http_error(exc: HTTPException):
    if wants_json():
        return _json_error(exc)
    from web.views import error_page

    return error_page(exc)


def role_required_for(view: Callable) -> Rule | None:
    """The access rule of a view function (for the route-by-route tests and the docs)."""
    return getattr(view, "_access", None)

