"""Administration: users, roles and store scope; API tokens; the SIP trunk settings (read-only);
scripts (view, upload with validation); the do-not-call list; QA forms; the audit log.

Only administrators come here. A store's administrator manages that store's users and cannot
create group-wide accounts; role and store changes, token changes, DNC changes and uploads are
audited. Runs on the request's worker thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.accounts import AccountError, hash_password, upsert_user
from callcenter.domain import Role
from callcenter.domain.phone import PhoneError, normalize_phone
from callcenter.storage.models import (
    Call,
    CallOutcome,
    Customer,
    DoNotCall,
    ServiceVisit,
    Store,
    User,
    Vehicle,
    customer_in_store,
    utcnow,
)
from callcenter.storage.web_models import ApiToken, AuditLog, QaForm
from web import audit, scripts
from web.auth import password_policy_error
from web.calls import qa_form
from web.i18n import N_
from web.labels import phone_problem
from web.security import (
    current_user,
    new_api_token,
    refuse,
    require,
    scoped_store_id,
    store_clause,
)
from web.services import db, settings
from web.views import Page, page_number

bp = Blueprint("admin", __name__, url_prefix="/admin")

_SECRET_NAME = re.compile(r"password|secret|token|key", re.IGNORECASE)
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # callcenter.accounts' rule, checked here to say it in Chinese


def visible_stores() -> list[Store]:
    query = sa.select(Store).order_by(Store.code)
    if scoped_store_id() is not None:
        query = query.where(Store.id == scoped_store_id())
    return list(db().scalars(query))


def user_or_404(user_id: int) -> User:
    user = db().get(User, user_id)
    if user is None or (scoped_store_id() is not None and user.store_id != scoped_store_id()):
        abort(404)
    return user


def require_group_wide() -> None:
    """403 for a store's administrator: the object applies to every store of the group."""
    if scoped_store_id() is not None:
        refuse(403, _("Only a group-wide administrator can change this: it applies to every store."))


def _store_choice(raw: str | None) -> int | None:
    """The store a new or edited user gets; a store admin can only give their own store.

    Raises:
        AccountError: an unknown store, or a scope the current admin cannot give.
    """
    raw = (raw or "").strip()
    # Junk is an unknown store, not "group-wide"; isdigit() let "²" through to int().
    if raw and not (raw.isdecimal() and len(raw) <= 9):
        raise AccountError(_("Unknown store."))
    store_id = int(raw) if raw else None
    scope = scoped_store_id()
    if scope is not None and store_id != scope:
        raise AccountError(_("You can only manage users of your own store."))
    if store_id is not None and db().get(Store, store_id) is None:
        raise AccountError(_("Unknown store."))
    return store_id


@bp.get("/")
@require(Role.ADMIN)
def index():
    counts = {
        "users": db().scalar(sa.select(sa.func.count()).select_from(User)),
        "tokens": db().scalar(sa.select(sa.func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))),
        "dnc": db().scalar(sa.select(sa.func.count()).select_from(DoNotCall)),
        "scripts": len(scripts.list_scripts()),
    }
    return render_template("admin/index.html", counts=counts, transfers=transfer_failures(),
                           transfer_target=bool(settings().transfer_target))


# Days of failed hand-overs the administration page lists.
TRANSFER_PROBLEM_DAYS = 7


def transfer_failures() -> list[dict]:
    """Calls of the last week whose hand-over to an agent failed, by technical reason (the robot
    writes it to the call's error and the log; staff only see a callback task)."""
    since = utcnow() - dt.timedelta(days=TRANSFER_PROBLEM_DAYS)
    rows = db().execute(
        sa.select(Call.error, sa.func.count(), sa.func.max(Call.started_at))
        .where(Call.outcome == CallOutcome.TRANSFER_FAILED, Call.started_at >= since, store_clause(Call.store_id))
        .group_by(Call.error)).all()
    out = []
    for error, n, last in sorted(rows, key=lambda r: -r[1]):
        text = error or ""
        if "CALLCENTER_TRANSFER_TARGET" in text:
            why = _("No agent extension is configured: set CALLCENTER_TRANSFER_TARGET for the dialer and restart it.")
        elif "refused" in text:
            why = _("The agents' extension refused the call: check the extension and the agents' phones.")
        else:
            why = _("Another technical problem (see the dialer's log).")
        out.append({"why": why, "detail": text, "calls": n, "last": last})
    return out


# -- users -----------------------------------------------------------------------------------


@bp.get("/users")
@require(Role.ADMIN)
def users():
    query = sa.select(User).order_by(User.username)
    if scoped_store_id() is not None:
        query = query.where(User.store_id == scoped_store_id())
    return render_template("admin/users.html", users=list(db().scalars(query)))


@bp.route("/users/new", methods=["GET", "POST"])
@require(Role.ADMIN)
def new_user():
    if request.method == "POST":
        values, errors = _check_user_form(request.form, None)
        if errors:
            return _user_form_again(None, errors)
        store = db().get(Store, values["store_id"]) if values["store_id"] else None
        user, _created = upsert_user(db(), values["username"], values["password"], values["role"],
                                     store_code=store.code if store else None,
                                     display_name=values["display_name"] or None)
        audit.record("user.create", "user", user.id, store_id=user.store_id, username=user.username,
                     role=values["role"].value)
        db().commit()
        flash(_("User %(name)s created.", name=user.username), "success")
        return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", user=None, stores=visible_stores(), roles=list(Role), values={},
                           errors={})


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@require(Role.ADMIN)
def edit_user(user_id: int):
    user = user_or_404(user_id)
    if request.method == "POST":
        values, errors = _check_user_form(request.form, user)
        if errors:
            return _user_form_again(user, errors)
        role, store_id, active, password = values["role"], values["store_id"], values["active"], values["password"]
        before = {"role": user.role.value, "store_id": user.store_id, "active": user.active}
        user.role, user.store_id, user.active = role, store_id, active
        user.display_name = values["display_name"] or user.display_name
        if password:
            user.password_hash = hash_password(password)
        after = {"role": user.role.value, "store_id": user.store_id, "active": user.active}
        if before["role"] != after["role"] or before["store_id"] != after["store_id"]:
            audit.record("user.role_change", "user", user.id, store_id=user.store_id, username=user.username,
                         before=before, after=after)
        audit.record("user.update", "user", user.id, store_id=user.store_id, username=user.username,
                     active=active, password_reset=bool(password))
        db().commit()
        flash(_("User %(name)s saved.", name=user.username), "success")
        return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", user=user, stores=visible_stores(), roles=list(Role), values={},
                           errors={})


def _check_user_form(form, user: User | None) -> tuple[dict, dict[str, str]]:
    """The user form's values and its problems by field (in the user's language); ``user`` is
    the edited account, None for a new one. Nothing is saved here."""
    errors: dict[str, str] = {}
    values: dict = {"display_name": (form.get("display_name") or "").strip()[:100],
                    "password": form.get("password", ""), "active": form.get("active") == "1"}
    if user is None:
        username = values["username"] = (form.get("username") or "").strip()
        if not username:
            errors["username"] = _("Enter a user name.")
        elif not USERNAME.fullmatch(username):
            errors["username"] = _("User name: at most 64 letters, digits and . _ - @ (no spaces or Chinese).")
        elif db().scalar(sa.select(User.id).where(User.username == username)):
            errors["username"] = _("This user name is taken.")
    try:
        values["role"] = Role(form.get("role", ""))
    except ValueError:
        errors["role"] = _("Choose a role.")
    try:
        values["store_id"] = _store_choice(form.get("store_id"))
    except AccountError as exc:
        errors["store_id"] = str(exc)
    if values["password"] or user is None:
        problem = password_policy_error(values["password"], user.username if user else values["username"])
        if problem:
            errors["password"] = problem
    if user is not None and user.id == current_user().id and not errors and (
            values["role"] is not user.role or values["store_id"] != user.store_id or not values["active"]):
        errors["role"] = _("You cannot change your own role, store or access; ask another administrator.")
    return values, errors


def _user_form_again(user: User | None, errors: dict[str, str]):
    """The user form with what was typed and each problem next to its field (400)."""
    flash(_("The user was not saved: see the marked fields."), "error")
    return render_template("admin/user_form.html", user=user, stores=visible_stores(), roles=list(Role),
                           values=request.form, errors=errors), 400


# -- API tokens ------------------------------------------------------------------------------


@bp.route("/tokens", methods=["GET", "POST"])
@require(Role.ADMIN)
def tokens():
    created = None
    if request.method == "POST":
        form = request.form
        user = db().get(User, form.get("user_id", type=int) or 0)
        name = form.get("name", "").strip()[:100]
        days = form.get("expires_days", type=int)
        if (user is None or (scoped_store_id() is not None and user.store_id != scoped_store_id())
                or not user.active or user.role is Role.MANAGER):  # the API has nothing for managers
            flash(_("Choose an active user of your scope."), "error")
        elif not name:
            flash(_("Give the token a name (which system uses it)."), "error")
        else:
            token, digest = new_api_token()
            row = ApiToken(name=name, token_hash=digest, prefix=token[:10], user_id=user.id,
                           can_write=form.get("can_write") == "1", created_by_id=current_user().id,
                           expires_at=utcnow() + dt.timedelta(days=days) if days and days > 0 else None)
            db().add(row)
            db().flush()
            audit.record("token.create", "token", row.id, store_id=user.store_id, name=name, user=user.username,
                         can_write=row.can_write)
            db().commit()
            created = token
    query = sa.select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc())
    user_query = sa.select(User).where(User.active.is_(True), User.role != Role.MANAGER).order_by(User.username)
    if scoped_store_id() is not None:
        query = query.join(User, User.id == ApiToken.user_id).where(User.store_id == scoped_store_id())
        user_query = user_query.where(User.store_id == scoped_store_id())
    return render_template("admin/tokens.html", tokens=list(db().scalars(query)), users=list(db().scalars(user_query)),
                           created=created)


@bp.post("/tokens/<int:token_id>/revoke")
@require(Role.ADMIN)
def revoke_token(token_id: int):
    row = db().get(ApiToken, token_id)
    if row is None:
        abort(404)
    user_or_404(row.user_id)  # scope check through the token's user
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record("token.revoke", "token", row.id, name=row.name)
        db().commit()
    flash(_("Token revoked."), "success")
    return redirect(url_for("admin.tokens"))


# -- SIP trunk -------------------------------------------------------------------------------


@bp.get("/sip")
@require(Role.ADMIN)
def sip():
    """The SIP settings in force (from CALLCENTER_SIP_* variables); secrets never shown."""
    rows = []
    for f in dataclasses.fields(settings()):
        if not f.name.startswith("sip_"):
            continue
        value = getattr(settings(), f.name)
        if _SECRET_NAME.search(f.name):
            value = _("(set)") if value else _("(not set)")
        rows.append((f"CALLCENTER_{f.name.upper()}", SIP_SETTING_LABELS.get(f.name, ""), _setting_text(value)))
    return render_template("admin/sip.html", rows=rows)


# What each trunk setting means, beside its variable name (the name is what goes in the file).
SIP_SETTING_LABELS = {
    "sip_trunk": N_("The operator's trunk (host[:port])"), "sip_transport": N_("Transport"),
    "sip_username": N_("Account"), "sip_password": N_("Password"), "sip_registrar": N_("Registrar"),
    "sip_proxy": N_("Outbound proxy"), "sip_caller_id": N_("Caller number shown to customers"),
    "sip_display_name": N_("Caller name"), "sip_codecs": N_("Audio codecs, in order of preference"),
    "sip_bind": N_("Local address"), "sip_port": N_("Local SIP port of the first worker"),
    "sip_dial_prefix": N_("Dial prefix"), "sip_ring_timeout": N_("Ringing time before giving up (s)"),
    "sip_max_calls": N_("Calls per worker at most"),
}


def _setting_text(value) -> str:
    """A setting as it is written in the environment file: lists comma-separated, nothing for unset."""
    if value is None:
        return _("(not set)")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


# -- scripts ---------------------------------------------------------------------------------


@bp.route("/scripts", methods=["GET", "POST"])
@require(Role.ADMIN)
def scripts_list():
    problems: list[str] = []
    if request.method == "POST":
        require_group_wide()  # an uploaded script replaces the shipped one for every store
        upload = request.files.get("file")
        script_id = (request.form.get("script_id") or "").strip().lower()
        if upload is None or not upload.filename:
            problems.append(_("Choose a YAML file."))
        else:
            if not script_id:
                script_id = re.sub(r"\.ya?ml$", "", upload.filename.rsplit("/", 1)[-1].lower())
            raw = upload.read(scripts.MAX_SCRIPT_BYTES + 1)
            if len(raw) > scripts.MAX_SCRIPT_BYTES:
                problems.append(_("The script is larger than 256 KB."))
            elif not scripts.SCRIPT_ID.fullmatch(script_id):
                problems.append(_("Script id: a lower-case letter, then lower-case letters, digits and _ (at most 64)."))
            else:
                try:
                    text = raw.decode("utf-8-sig")
                except UnicodeDecodeError:
                    problems.append(_("The file is not UTF-8 text."))
                else:
                    problems.extend(scripts.problems_for_people(text, f"{script_id}.yaml"))
                    if not problems:
                        scripts.save_upload(script_id, text)
                        audit.record("script.upload", "script", script_id, size=len(raw))
                        db().commit()
                        flash(_("Script %(id)s uploaded and valid.", id=script_id), "success")
                        return redirect(url_for("admin.script", script_id=script_id))
    return render_template("admin/scripts.html", scripts=scripts.list_scripts(), problems=problems), (
        400 if problems else 200)


@bp.get("/scripts/<script_id>")
@require(Role.ADMIN)
def script(script_id: str):
    found = scripts.find(script_id)
    if found is None:
        abort(404)
    text = found.path.read_text(encoding="utf-8")
    return render_template("admin/script.html", script=found, text=text,
                           problems=scripts.problems_for_people(text, found.path.name))


# -- do-not-call list ------------------------------------------------------------------------


# The do-not-call list is one list of numbers for the group (the dialer checks a number, whoever
# it belongs to). A store's administrator manages the numbers of the store's own customers only
# (those it sees: home, car or visit there): they see, add and remove those; a number that is not
# one of their customers' is refused with one message, whether it is listed, another store's
# customer's or nobody's, so that nothing about other stores' numbers can be learnt from the answers.


def _store_phones(store_id: int):
    return sa.select(Customer.phone).where(customer_in_store(store_id), Customer.phone.is_not(None))


def _dnc_visible(entry: DoNotCall) -> bool:
    if scoped_store_id() is None:
        return True
    return db().scalar(_store_phones(scoped_store_id()).where(Customer.phone == entry.phone).limit(1)) is not None


def _dnc_shared_with_other_stores(phone: str) -> bool:
    """Whether a customer with ``phone`` is also another store's (home, car or visit there)."""
    scope = scoped_store_id()
    elsewhere = sa.or_(
        Customer.store_id != scope,
        sa.exists().where(Vehicle.customer_id == Customer.id, Vehicle.store_id != scope),
        sa.exists().where(ServiceVisit.customer_id == Customer.id, ServiceVisit.store_id != scope),
    )
    return db().scalar(sa.select(Customer.id).where(Customer.phone == phone, elsewhere).limit(1)) is not None


@bp.route("/dnc", methods=["GET", "POST"])
@require(Role.ADMIN)
def dnc():
    if request.method == "POST":
        try:
            phone = normalize_phone(request.form.get("phone", ""))
        except PhoneError as exc:
            flash(_("Not a valid phone number: %(why)s", why=phone_problem(exc)), "error")
            return redirect(url_for("admin.dnc"))
        customer_query = sa.select(Customer).where(Customer.phone == phone)
        if scoped_store_id() is not None:
            customer_query = customer_query.where(customer_in_store(scoped_store_id()))
            if db().scalar(customer_query.limit(1)) is None:
                flash(_("You can only list numbers of your store's customers."), "error")
                return redirect(url_for("admin.dnc"))
        if db().scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == phone)) is not None:
            flash(_("The number is already on the list."), "info")
            return redirect(url_for("admin.dnc"))
        customer = db().scalar(customer_query.order_by(Customer.id).limit(1))
        entry = DoNotCall(phone=phone, customer_id=customer.id if customer else None, source="admin",
                          reason=(request.form.get("reason") or "").strip()[:200] or None, created_by=current_user().id)
        db().add(entry)
        db().flush()
        audit.record("dnc.add", "dnc", entry.id, store_id=customer.store_id if customer else None, phone=phone)
        db().commit()
        flash(_("Number added to the do-not-call list."), "success")
        return redirect(url_for("admin.dnc"))
    page, per_page = page_number(50)
    query = sa.select(DoNotCall)
    if scoped_store_id() is not None:
        # From each entry to its customers by the phone index: "phone IN (the store's phones)" built
        # the list of every phone of the store first (150-200 ms per query on 100,000 customers).
        query = query.where(sa.exists().where(Customer.phone == DoNotCall.phone,
                                              customer_in_store(scoped_store_id())))
    q = re.sub(r"\D", "", request.args.get("q", ""))
    if q:
        query = query.where(DoNotCall.phone.like(f"%{q}%"))
    total = db().scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = list(db().scalars(query.order_by(DoNotCall.created_at.desc()).limit(per_page).offset((page - 1) * per_page)))
    return render_template("admin/dnc.html", page=Page(rows, page, per_page, total), q=q)


@bp.post("/dnc/<int:entry_id>/delete")
@require(Role.ADMIN)
def dnc_delete(entry_id: int):
    entry = db().get(DoNotCall, entry_id)
    if entry is None or not _dnc_visible(entry):
        abort(404)
    if scoped_store_id() is not None and _dnc_shared_with_other_stores(entry.phone):
        # Removing it would let the dialer call another store's customer again.
        refuse(403, _("This number is also another store's customer's: ask a group-wide administrator."))
    audit.record("dnc.remove", "dnc", entry.id, store_id=scoped_store_id(), phone=entry.phone,
                 reason=request.form.get("reason", "")[:200])
    db().delete(entry)
    db().commit()
    flash(_("Number removed from the do-not-call list."), "success")
    return redirect(url_for("admin.dnc"))


# -- QA forms --------------------------------------------------------------------------------


@bp.route("/qa", methods=["GET", "POST"])
@require(Role.ADMIN)
def qa_forms():
    qa_form()  # make sure the standard form exists
    if request.method == "POST":
        require_group_wide()  # the active form scores every store's calls
        name = (request.form.get("name") or "").strip()[:100]
        items, problems = parse_qa_items(request.form.get("items", ""))
        if not name:
            problems.append(_("Give the form a name."))
        if db().scalar(sa.select(QaForm.id).where(QaForm.name == name)):
            problems.append(_("A form with this name exists."))
        if problems:
            for p in problems:
                flash(p, "error")
        else:
            db().execute(sa.update(QaForm).values(active=False))
            db().add(QaForm(name=name, items=items, active=True, created_by_id=current_user().id))
            db().commit()
            flash(_("QA form created and made the active one."), "success")
            return redirect(url_for("admin.qa_forms"))
    forms = list(db().scalars(sa.select(QaForm).order_by(QaForm.active.desc(), QaForm.id.desc())))
    return render_template("admin/qa.html", forms=forms)


@bp.post("/qa/<int:form_id>/activate")
@require(Role.ADMIN)
def qa_activate(form_id: int):
    require_group_wide()
    form = db().get(QaForm, form_id)
    if form is None:
        abort(404)
    db().execute(sa.update(QaForm).values(active=False))
    form.active = True
    db().commit()
    return redirect(url_for("admin.qa_forms"))


def parse_qa_items(text: str) -> tuple[list[dict], list[str]]:
    """``label | max points`` per line -> form items, with problems named by line."""
    items, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, _sep, points = line.rpartition("|")
        try:
            value = int(points.strip())
        except ValueError:
            problems.append(_("Line %(n)d: write \"label | points\".", n=n))
            continue
        if not label.strip() or not 1 <= value <= 100:
            problems.append(_("Line %(n)d: a label and 1-100 points.", n=n))
            continue
        items.append({"key": f"item{len(items) + 1}", "label": label.strip()[:100], "max": value})
    if not items and not problems:
        problems.append(_("Add at least one item."))
    return items, problems


# -- audit log -------------------------------------------------------------------------------


@bp.get("/audit")
@require(Role.ADMIN)
def audit_log():
    page, per_page = page_number(50)
    query = sa.select(AuditLog)
    if scoped_store_id() is not None:
        query = query.where(AuditLog.store_id == scoped_store_id())
    if request.args.get("action") in audit.ACTIONS:
        query = query.where(AuditLog.action == request.args["action"])
    if request.args.get("user"):
        query = query.where(AuditLog.username == request.args["user"].strip())
    total = db().scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = list(db().scalars(query.order_by(AuditLog.at.desc(), AuditLog.id.desc())
                             .limit(per_page).offset((page - 1) * per_page)))
    store_names = {st.id: st.name for st in visible_stores()}
    return render_template("admin/audit.html", page=Page(rows, page, per_page, total), actions=audit.ACTIONS,
                           store_names=store_names)
