"""Stores (门店) for administrators: the list, adding and editing one (name, city, time zone,
maintenance cycles, calling windows) and the audio of its name.

The robot says the store's name ("我是锦华丰田岳麓店的客服专员") only when that name has
rendered audio (shipped in ``dialog/audio`` or rendered by the deployment into
``<data dir>/audio``); otherwise it says the script's fallback (我们店). Saving a store whose
name has no audio starts a background render (:mod:`web.jobs`) when the render tool is
installed; the page says what the robot says until the audio exists. A group-wide
administrator adds stores; a store's administrator edits their own store only. Runs on the
request's worker thread (the render on the job thread).
"""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.domain import Role
from callcenter.storage.models import Store
from callcenter.storage.web_models import ConsoleJob, JobStatus
from web import audit, jobs
from web.admin import visible_stores
from web.security import current_user, require, scoped_store_id
from web.services import db, settings

bp = Blueprint("stores", __name__, url_prefix="/admin/stores")

CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Offered in the form; any IANA zone is accepted.
TIMEZONES = ("Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", "Asia/Macau", "Asia/Taipei")
RENDER_KIND = "render_audio"
# What a store-name variable falls back to in the shipped scripts (dialog/scripts/*.yaml).
STORE_FALLBACK = "我们店"


def library():
    from dialog.prompts import deployment_library

    return deployment_library(settings().data_dir)


def render_available() -> bool:
    from dialog.audio_render import render_available as available

    return available(jobs.tts_python())


def store_or_404(store_id: int) -> Store:
    store = db().get(Store, store_id)
    if store is None or (scoped_store_id() is not None and store.id != scoped_store_id()):
        abort(404)
    return store


def pending_renders() -> dict[str, ConsoleJob]:
    """Texts with a render job queued or running, for the 'rendering...' badges."""
    rows = db().scalars(sa.select(ConsoleJob).where(
        ConsoleJob.kind == RENDER_KIND, ConsoleJob.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])))
    return {job.target: job for job in rows if job.target and not jobs.is_stale(job)}


def failed_renders() -> dict[str, ConsoleJob]:
    """Texts whose latest render failed (the badge says so and shows why on hover)."""
    latest = sa.select(ConsoleJob.target, sa.func.max(ConsoleJob.id).label("id")).where(
        ConsoleJob.kind == RENDER_KIND).group_by(ConsoleJob.target).subquery()
    rows = db().scalars(sa.select(ConsoleJob).join(latest, latest.c.id == ConsoleJob.id)
                        .where(ConsoleJob.status == JobStatus.FAILED))
    return {job.target: job for job in rows if job.target}


@bp.get("/")
@require(Role.ADMIN)
def index():
    return render_template("stores/index.html", stores=visible_stores(), library=library(),
                           rendering=pending_renders(), failed=failed_renders(), can_render=render_available(),
                           fallback=STORE_FALLBACK, can_add=scoped_store_id() is None)


@bp.route("/new", methods=["GET", "POST"])
@require(Role.ADMIN)
def new():
    if scoped_store_id() is not None:
        abort(403)  # a store's administrator manages their store, not the group's list
    return _form(None)


@bp.route("/<int:store_id>", methods=["GET", "POST"])
@require(Role.ADMIN)
def edit(store_id: int):
    return _form(store_or_404(store_id))


def _form(store: Store | None):
    errors: dict[str, str] = {}
    values = request.form if request.method == "POST" else _values(store)
    if request.method == "POST":
        clean, errors = validate(values, store)
        if not errors:
            created = store is None
            if store is None:
                store = Store(code=clean["code"])
                db().add(store)
            before = {k: getattr(store, k, None) for k in clean if k != "code"}
            for key, value in clean.items():
                if key != "code":
                    setattr(store, key, value)
            db().flush()
            changed = {k: v for k, v in clean.items() if k != "code" and before.get(k) != v}
            audit.record("store.create" if created else "store.update", "store", store.id, store_id=store.id,
                         code=store.code, **{k: str(v) for k, v in changed.items()})
            db().commit()
            job = ensure_name_audio(store.name)
            message = _("Store %(name)s saved.", name=store.name)
            if job is not None:
                message += " " + _("Its name is being rendered; until then the robot says \"%(fallback)s\".",
                                   fallback=STORE_FALLBACK)
            flash(message, "success")
            return redirect(url_for("stores.index"))
    lib = library()
    name = store.name if store else ""
    return render_template("stores/form.html", store=store, values=values, errors=errors,
                           timezones=TIMEZONES, default_windows=settings().dialer_windows,
                           has_audio=bool(name) and lib.has(name), can_render=render_available(),
                           rendering=name in pending_renders(), fallback=STORE_FALLBACK), 400 if errors else 200


def _values(store: Store | None) -> dict[str, str]:
    if store is None:
        return {"timezone": settings().timezone}
    return {"code": store.code, "name": store.name, "city": store.city or "", "timezone": store.timezone,
            "cycle_months_mid": str(store.cycle_months_mid or ""),
            "cycle_months_premium": str(store.cycle_months_premium or ""),
            "calling_windows": store.calling_windows or ""}


def validate(form, store: Store | None) -> tuple[dict, dict[str, str]]:
    """The form's values, cleaned, and a message per field that is wrong (nothing is saved then)."""
    from campaigns.rules import format_windows, parse_windows

    errors: dict[str, str] = {}
    clean: dict[str, object] = {}
    if store is None:
        code = (form.get("code") or "").strip()
        if not code:
            errors["code"] = _("Enter the store code (the DMS's code, e.g. JH03).")
        elif not CODE_RE.fullmatch(code):
            errors["code"] = _("The code may hold letters, digits, - and _ only (at most 32).")
        elif db().scalar(sa.select(Store.id).where(Store.code == code)) is not None:
            errors["code"] = _("A store with this code exists.")
        clean["code"] = code
    name = (form.get("name") or "").strip()
    if not name:
        errors["name"] = _("Enter the store's name as the robot should say it.")
    elif len(name) > 100:
        errors["name"] = _("At most 100 characters.")
    elif re.search(r"[A-Za-z]", name):
        errors["name"] = _("Write the name in Chinese characters: the robot cannot say Latin letters.")
    elif db().scalar(sa.select(Store.id).where(Store.name == name, Store.id != (store.id if store else -1))):
        errors["name"] = _("Another store has this name: DMS files name stores by code or name.")
    clean["name"] = name
    city = (form.get("city") or "").strip()
    if len(city) > 50:
        errors["city"] = _("At most 50 characters.")
    clean["city"] = city or None
    tz = (form.get("timezone") or "").strip()
    try:
        ZoneInfo(tz)
        if not tz:
            raise ValueError
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = _("Not a known time zone (e.g. Asia/Shanghai).")
    clean["timezone"] = tz
    for key in ("cycle_months_mid", "cycle_months_premium"):
        raw = (form.get(key) or "").strip()
        if not raw:
            clean[key] = None
        elif not raw.isdecimal() or not 1 <= int(raw) <= 24:  # isdigit() lets "²" through to int()
            errors[key] = _("A whole number of months from 1 to 24, or empty for the group's default.")
        else:
            clean[key] = int(raw)
    windows = (form.get("calling_windows") or "").strip()
    if windows:
        try:
            clean["calling_windows"] = format_windows(parse_windows(windows.replace("，", ",").replace("：", ":")))
        except ValueError:
            errors["calling_windows"] = _("Write the windows as 09:00-12:00,14:00-20:00 (start before end, "
                                          "no overlaps).")
    else:
        clean["calling_windows"] = None
    return clean, errors


def ensure_name_audio(text: str) -> ConsoleJob | None:
    """Queue a render of ``text`` into ``<data dir>/audio`` unless it has audio, is being rendered,
    or the render tool is not installed. Returns the queued job."""
    if not text or library().has(text) or not render_available() or text in pending_renders():
        return None
    user = current_user()
    job = ConsoleJob(kind=RENDER_KIND, target=text[:200], created_by=user.id if user else None,
                     username=user.username if user else None, store_id=scoped_store_id())
    db().add(job)
    db().commit()
    folder = Path(settings().data_dir)
    jobs.submit(job.id, lambda _db, _id, _progress: render_job([text], folder))
    return job


def render_job(texts: list[str], data_dir: Path) -> dict:
    """Render ``texts`` into the deployment's audio folder (on the job thread)."""
    from dialog.audio_render import RenderError, render_texts
    from dialog.prompts import OVERLAY_DIR

    try:
        rendered = render_texts(texts, jobs.tts_python(), data_dir / OVERLAY_DIR)
    except RenderError as exc:
        raise jobs.JobError(str(exc)) from None
    return {"rendered": rendered, "texts": texts}
