"""Login, logout, language choice, own password, the landing page and the health check.

Runs on the request's worker thread.
"""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from callcenter.domain import Role
from callcenter.storage.models import User, utcnow
from web import audit
from web.i18n import LANGUAGES
from web.security import (
    MAX_FAILURES_PER_USER,
    check_password,
    client_ip,
    current_user,
    end_sessions,
    has_role,
    log_in,
    log_out,
    login_lock,
    public,
    record_login_attempt,
    signed_in,
)
from web.services import db

logger = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: ``next=//evil.example`` or ``https://...`` is ignored (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


def home_url() -> str:
    if has_role(Role.MANAGER):
        return url_for("reports.index")
    if has_role(Role.SUPERVISOR):
        return url_for("reports.index") if has_role(Role.ADMIN) else url_for("calls.index")
    return url_for("agent.workspace")


@bp.get("/")
@signed_in
def index():
    return redirect(home_url())


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if request.method == "GET":
        if current_user() is not None:
            return redirect(home_url())
        return render_template("auth/login.html", username="")
    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    ip = client_ip()
    if not username or not password:
        flash(_("Enter your user name and password."), "error")
        return render_template("auth/login.html", username=username), 400
    lock = login_lock(username, ip)
    if lock is not None:
        logger.warning("login throttled for user %s from %s (%ds left)", username, ip, lock.total_seconds())
        flash(_("Too many failed logins. Please try again in %(n)d minutes.",
                n=max(1, math.ceil(lock.total_seconds() / 60))), "error")
        return render_template("auth/login.html", username=username), 429
    user = db().scalar(sa.select(User).where(User.username == username))
    ok = check_password(user, password)
    record_login_attempt(username, ip, ok)
    if not ok:
        logger.warning("login failed for user %s from %s", username, ip)
        db().flush()
        if user is not None and login_lock(username, ip) is not None:
            audit.record("login.locked", "user", user.id, store_id=user.store_id, username=username,
                         failures_at_least=MAX_FAILURES_PER_USER)
        db().commit()
        flash(_("Wrong user name or password."), "error")
        return render_template("auth/login.html", username=username), 401
    user.last_login_at = utcnow()
    db().commit()
    lang = session.get("lang")
    log_in(user)
    if lang:
        session["lang"] = lang
    g.user = user
    logger.info("user %s logged in from %s", user.username, ip)
    return redirect(_safe_next(request.args.get("next")) or home_url())


@bp.post("/logout")
@public
def logout():
    """Ends the session on the server too: the user's session generation moves on, so a copy
    of the cookie kept from before is refused (and so are the user's other sessions)."""
    user = current_user()
    if user is not None:
        end_sessions(user)
        db().commit()
        logger.info("user %s logged out", user.username)
    log_out()
    return redirect(url_for("auth.login"))


@bp.post("/language")
@public
def language():
    lang = request.form.get("lang", "")
    if lang not in LANGUAGES:
        abort(400, description="unknown language")
    session["lang"] = lang
    return redirect(_safe_next(request.form.get("next")) or url_for("auth.index"))


@bp.route("/account", methods=["GET", "POST"])
@signed_in  # managers too: everybody changes their own password
def account():
    from callcenter.accounts import hash_password, verify_password

    user = current_user()
    if request.method == "POST":
        current = request.form.get("current_password") or ""
        new = request.form.get("new_password") or ""
        problem = password_policy_error(new, user.username)
        if not verify_password(user, current):
            flash(_("The current password is wrong."), "error")
        elif problem:
            flash(problem, "error")
        elif new != request.form.get("confirm_password"):
            flash(_("The two new passwords differ."), "error")
        else:
            user.password_hash = hash_password(new)
            audit.record("user.password_change", "user", user.id)
            db().commit()
            log_in(user)  # the stamp changed: keep this session, end all others
            flash(_("Password changed."), "success")
            return redirect(url_for("auth.account"))
    return render_template("auth/account.html", user=user)


def password_policy_error(password: str, username: str) -> str | None:
    """The password policy (:func:`callcenter.accounts.password_problem`) in the user's language."""
    from callcenter.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, password_problem

    problem = password_problem(password, username)
    messages = {
        "short": lambda: _("The password needs at least %(n)d characters.", n=MIN_PASSWORD_LENGTH),
        "long": lambda: _("The password may have at most %(n)d characters.", n=MAX_PASSWORD_LENGTH),
        "common": lambda: _("This password is too common: it is among the first that attackers try."),
        "username": lambda: _("The password must not contain the user name."),
    }
    return None if problem is None else messages[problem]()


@bp.get("/healthz")
@public
def health():
    """For load balancers and ``callcenter serve``'s start-up check: the database answers."""
    db().execute(sa.text("SELECT 1"))
    return jsonify(status="ok")
