"""DMS import in the browser (DMS 数据导入): upload a customers or visits export, see a dry run
with every row that would be rejected and why, then import with a progress bar; the per-row
errors download as CSV; the history says who imported what.

The import itself is the DMS importer's (:func:`callcenter.dms.importer.import_customers` /
``import_visits``: formats, encodings, validation, one transaction), run on the console's job
thread (:mod:`web.jobs`). Uploads are stored under ``<data dir>/imports`` with a random name
(the uploaded name is only shown, never used as a path) and are bounded by the console's
request limit. Administrators only; a store's administrator imports on their store's behalf
(the importer's ``acting_store``: rows of other stores are rejected with their reason). The
importer's reasons are shown in the reader's language (:func:`reason_text`). Runs on the
request's worker thread.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
import time
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.domain import Role
from callcenter.storage import Database
from callcenter.storage.models import Store
from callcenter.storage.web_models import ConsoleJob, JobStatus
from web import audit, jobs
from web.admin import visible_stores
from web.security import current_user, has_role, require, scoped_store_id
from web.services import db, settings
from web.views import Page, page_number

bp = Blueprint("imports", __name__, url_prefix="/admin/imports")

KINDS = ("customers", "visits")
# Whose customer numbers the file's are (the importer's id_scope): the group's, or the store's own
# (a store with its own DMS installation: C0001 there is not C0001 elsewhere).
ID_SCOPES = ("group", "store")
SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xls")
# Rejections kept on the job for the preview and the CSV download. A file with more bad rows
# than this is not worth importing; the counts stay exact.
MAX_KEPT_ERRORS = 20_000
PREVIEW_ERRORS = 200
FOLDER = "imports"
# An uploaded file waits this long for its import after the preview; then it is deleted.
KEEP_PREVIEWS = dt.timedelta(days=7)


def upload_dir() -> Path:
    return Path(settings().data_dir) / FOLDER


def column_labels() -> dict[str, str]:
    """Importer column -> the Chinese header a DMS export uses (客户编号 ...)."""
    from callcenter.dms.fields import CUSTOMER_COLUMNS, VISIT_COLUMNS

    out = {}
    for col in (*CUSTOMER_COLUMNS, *VISIT_COLUMNS):
        chinese = next((a for a in col.aliases if not a.isascii()), None)
        out.setdefault(col.name, chinese or col.name)
    return out


def job_or_404(job_id: int) -> ConsoleJob:
    job = db().get(ConsoleJob, job_id)
    if job is None or not job.kind.startswith("import_"):
        abort(404)
    if scoped_store_id() is not None and job.store_id != scoped_store_id():
        abort(404)
    return job


@bp.route("/", methods=["GET", "POST"])
@require(Role.ADMIN)
def index():
    errors: dict[str, str] = {}
    stores = visible_stores()
    values = request.form if request.method == "POST" else {}
    if request.method == "POST":
        kind = values.get("kind", "")
        if kind not in KINDS:
            errors["kind"] = _("Choose what the file holds: customers or visits.")
        store = _chosen_store(values.get("store", ""), stores, errors)
        id_scope = values.get("id_scope", "group")
        if id_scope not in ID_SCOPES:
            errors["id_scope"] = _("Choose how the DMS numbers customers.")
        upload = request.files.get("file")
        name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1] if upload else ""
        suffix = Path(name).suffix.lower()
        if not name:
            errors["file"] = _("Choose a file (CSV, Excel .xlsx or .xls).")
        elif suffix not in SUFFIXES:
            errors["file"] = _("Not a CSV or Excel file: %(name)s (accepted: .csv .txt .tsv .xlsx .xls).", name=name)
        if not errors:
            data = upload.read()
            if not data:
                errors["file"] = _("The file is empty.")
            else:
                # What would fail the whole file is said here, next to the field, instead of as a
                # failed preview: a broken workbook, a PDF named .csv, an unknown text encoding.
                from callcenter.dms.readers import UnreadableFile, check_readable

                try:
                    check_readable(data, name)
                except UnreadableFile as exc:
                    errors["file"] = _("This file cannot be imported: %(why)s.", why=failure_text(str(exc)))
        if not errors:
            folder = upload_dir()
            folder.mkdir(parents=True, exist_ok=True)
            prune(folder)
            stored = secrets.token_hex(16) + suffix
            (folder / stored).write_bytes(data)
            job = _start(kind, name[:255], stored, store, dry_run=True, id_scope=id_scope)
            return redirect(url_for("imports.show", job_id=job.id))
    return _index_page(stores, values, errors), 400 if errors else 200


@bp.errorhandler(413)
def too_large(exc):
    """An upload over the console's request limit, said next to the file field (nothing of it was
    read or stored); other users and pages get the plain error page."""
    from web.views import error_page

    if request.endpoint != "imports.index" or not has_role(Role.ADMIN):
        return error_page(exc)
    errors = {"file": _("The upload is too large: at most %(mb)s MB. Split the export (by store or by month) "
                        "and upload the parts.", mb=_max_mb())}
    return _index_page(visible_stores(), {}, errors), 413


def _index_page(stores: list[Store], values, errors: dict[str, str]) -> str:
    page, per_page = page_number(20)
    query = sa.select(ConsoleJob).where(ConsoleJob.kind.in_([f"import_{k}" for k in KINDS]))
    if scoped_store_id() is not None:
        query = query.where(ConsoleJob.store_id == scoped_store_id())
    total = db().scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = list(db().scalars(query.order_by(ConsoleJob.id.desc()).limit(per_page).offset((page - 1) * per_page)))
    return render_template("imports/index.html", stores=stores, values=values, errors=errors,
                           page=Page(rows, page, per_page, total), max_mb=_max_mb(), stale=jobs.is_stale)


def prune(folder: Path, keep: dt.timedelta = KEEP_PREVIEWS) -> None:
    """Delete uploads whose preview was never imported within ``keep`` (imported ones go at once)."""
    cutoff = time.time() - keep.total_seconds()
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass  # another worker pruned it first


def _max_mb() -> int:
    from flask import current_app

    return int((current_app.config.get("MAX_CONTENT_LENGTH") or 0) / (1024 * 1024))


def _chosen_store(raw: str, stores: list[Store], errors: dict[str, str]) -> Store | None:
    """The store new customers go to when the file has no store column (a store admin: theirs)."""
    if scoped_store_id() is not None:
        return stores[0] if stores else None
    if not raw:
        return None
    store = next((s for s in stores if str(s.id) == raw), None)
    if store is None:
        errors["store"] = _("Unknown store.")
    return store


def _start(kind: str, filename: str, stored: str, store: Store | None, *, dry_run: bool,
           id_scope: str) -> ConsoleJob:
    user = current_user()
    # The options ride on the row's result until the importer's report replaces it (which
    # repeats them), so that "import" after the preview runs with the same ones.
    job = ConsoleJob(kind=f"import_{kind}", dry_run=dry_run, filename=filename, stored_name=stored,
                     store_id=store.id if store else scoped_store_id(), created_by=user.id, username=user.username,
                     target=store.code if store else None, result={"id_scope": id_scope})
    db().add(job)
    db().flush()
    if not dry_run:
        audit.record("import.run", "import", job.id, store_id=job.store_id, kind=kind, file=filename)
    db().commit()
    # A store's administrator imports on their store's behalf: the importer rejects other stores'
    # rows and never changes another store's customers, cars or visits.
    acting = store.code if store is not None and scoped_store_id() is not None else None
    jobs.submit(job.id, import_body(kind, upload_dir() / stored, filename, dry_run=dry_run,
                                    store_code=job.target, acting_store=acting, id_scope=id_scope))
    return job


@bp.get("/<int:job_id>")
@require(Role.ADMIN)
def show(job_id: int):
    job = job_or_404(job_id)
    result = job.result or {}
    return render_template("imports/show.html", job=job, result=result, labels=column_labels(),
                           errors=(result.get("errors") or [])[:PREVIEW_ERRORS], stale=jobs.is_stale,
                           status=_status(job), reason=reason_text, failure=failure_text(job.error))


@bp.get("/<int:job_id>.json")
@require(Role.ADMIN)
def progress(job_id: int):
    job = job_or_404(job_id)
    return jsonify(status=_status(job), done=job.done, total=job.total)


def _status(job: ConsoleJob) -> str:
    return "interrupted" if jobs.is_stale(job) else job.status.value


@bp.post("/<int:job_id>/run")
@require(Role.ADMIN)
def run(job_id: int):
    """Import the file a finished dry run checked."""
    job = job_or_404(job_id)
    if not job.dry_run or job.status is not JobStatus.DONE or not job.stored_name:
        abort(409, description=_("Only a finished preview can be imported."))
    if not (upload_dir() / job.stored_name).is_file():
        # Imported already (the file goes with its import) or kept past KEEP_PREVIEWS.
        abort(410, description=_("The uploaded file is gone (imported already, or older than a week); upload it "
                                 "again."))
    store = db().get(Store, job.store_id) if job.store_id and job.target else None
    real = _start(job.kind.removeprefix("import_"), job.filename or "", job.stored_name, store, dry_run=False,
                  id_scope=(job.result or {}).get("id_scope", "group"))
    return redirect(url_for("imports.show", job_id=real.id))


@bp.get("/<int:job_id>/errors.csv")
@require(Role.ADMIN)
def errors_csv(job_id: int):
    job = job_or_404(job_id)
    labels = column_labels()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("Row"), _("Column"), _("Value"), _("Reason")])
    for e in (job.result or {}).get("errors") or []:
        writer.writerow([e.get("row"), labels.get(e.get("column"), e.get("column")), _cell(e.get("value")),
                         _cell(reason_text(e.get("reason") or ""))])
    audit.record("export", "import", job.id, store_id=job.store_id, what="import errors", commit=True)
    # UTF-8 with BOM: Excel on Chinese Windows opens it without garbling.
    body = "\ufeff" + out.getvalue()
    name = f"import-{job.id}-errors.csv"
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _cell(value: object) -> str:
    """A value as a CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# -- the importer's reasons in the reader's language -----------------------------------------

# The importer (callcenter.dms) words its reasons in English for the CLI and the API; the page
# and the error list say them in the reader's language. A reason not listed here is shown as is.
_REASONS: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(r"^(\w+) is empty$|^empty phone number$|^empty date$"), lambda m: _("required, but empty")),
    (re.compile(r"^not a valid mainland mobile number"),
     lambda m: _("not a valid mobile number (11 digits starting with 13 to 19)")),
    (re.compile(r"^not a valid landline"), lambda m: _("not a valid landline number (area code and 7 or 8 digits)")),
    (re.compile(r"^not a mobile number and has no area code"),
     lambda m: _("not a mobile number, and a landline number needs its area code")),
    (re.compile(r"^contains characters other than digits"), lambda m: _("holds characters other than digits")),
    (re.compile(r"^not a mainland China number"), lambda m: _("not a mainland China number (country code +86)")),
    (re.compile(r"^VIN must have 17 characters, not (\d+)"),
     lambda m: _("a VIN has 17 characters, this one has %(n)s", n=m.group(1))),
    (re.compile(r"^VIN cannot contain (.+)$"), lambda m: _("a VIN cannot contain %(chars)s", chars=m.group(1))),
    (re.compile(r"^VIN may hold only"), lambda m: _("a VIN holds digits and the letters A to Z except I, O and Q")),
    (re.compile(r"^date (\S+) is in the future"), lambda m: _("the date %(date)s is in the future", date=m.group(1))),
    (re.compile(r"^date (\S+) is before (\S+)"),
     lambda m: _("the date %(date)s is before %(earliest)s", date=m.group(1), earliest=m.group(2))),
    (re.compile(r"^impossible date (\S+)"), lambda m: _("the date %(date)s does not exist", date=m.group(1))),
    (re.compile(r"^not a date"), lambda m: _("not a date (write 2026-03-05, 2026/3/5 or 2026年3月5日)")),
    (re.compile(r"^number (\S+) is not an Excel date"), lambda m: _("not a date")),
    (re.compile(r"^expected 男/女"), lambda m: _("expected 男 or 女")),
    (re.compile(r"^expected mid/premium"), lambda m: _("expected 中端 or 高端")),
    (re.compile(r"^expected 是/否"), lambda m: _("expected 是 or 否")),
    (re.compile(r"^expected maintenance/"), lambda m: _("not a known visit type (保养, 维修, 钣喷, 索赔, 理赔, 检查)")),
    (re.compile(r"^not a number$"), lambda m: _("not a number")),
    (re.compile(r"^must be a number of at least 0"), lambda m: _("must not be negative")),
    (re.compile(r"^too large$"), lambda m: _("too large")),
    (re.compile(r"^longer than (\d+) characters"), lambda m: _("longer than %(n)s characters", n=m.group(1))),
    (re.compile(r"^contains control characters"), lambda m: _("holds control characters")),
    (re.compile(r"^unknown store"), lambda m: _("unknown store: add it on the stores page first")),
    (re.compile(r"^another store's row"), lambda m: _("a row of another store: this import is for your store only")),
    (re.compile(r"^unknown customer"), lambda m: _("unknown customer: import the customers first")),
    (re.compile(r"^VIN is not a vehicle of customer (\S+)"),
     lambda m: _("the VIN is not a car of customer %(id)s", id=m.group(1))),
    (re.compile(r"^paid is empty and there is no amount"),
     lambda m: _("paid is empty and there is no amount to tell from")),
    (re.compile(r"^store is empty"), lambda m: _("the store is empty: fill the store column or choose a store")),
    (re.compile(r"^vin is empty but the row has vehicle data"),
     lambda m: _("the VIN is empty but the row has vehicle data")),
    (re.compile(r"^the row has (\d+) cells but the header has (\d+) columns"),
     lambda m: _("the row has %(n)s cells but the header %(w)s columns: probably a comma inside a value "
                 "(put the value in quotes or remove the comma)", n=m.group(1), w=m.group(2))),
)


_FAILURES: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(r"missing required column\(s\): ([^;(]+?)(?: \(.*\))?; found: (.*)$"),
     lambda m: _("required columns are missing: %(missing)s (the file's columns: %(found)s)",
                 missing="、".join(column_labels().get(c.strip(), c.strip()) for c in m.group(1).split(",")),
                 found=m.group(2))),
    (re.compile(r"the same column appears twice: (.+)$"), lambda m: _("a column appears twice: %(cols)s",
                                                                      cols=m.group(1))),
    (re.compile(r"no data rows"), lambda m: _("the file has a header but no data rows")),
    (re.compile(r"the file is empty|the first sheet is empty"), lambda m: _("the file is empty")),
    (re.compile(r"unknown text encoding|the text looks like|byte-order mark but invalid"),
     lambda m: _("unknown text encoding: save the file as UTF-8 or GBK (in Excel: CSV UTF-8)")),
    (re.compile(r"not a text file|not a CSV file"), lambda m: _("not a CSV or Excel file")),
    (re.compile(r"broken CSV after row (\d+)"),
     lambda m: _("the CSV breaks off after row %(row)s (a quotation mark without its pair?)", row=m.group(1))),
    (re.compile(r"not a readable Excel workbook"), lambda m: _("not a readable Excel workbook")),
    (re.compile(r"the workbook has no sheets|the workbook's first sheet is missing"),
     lambda m: _("the workbook has no sheet to import")),
    (re.compile(r"not a DMS export"), lambda m: _("the workbook is far larger than a DMS export")),
    (re.compile(r"the first sheet (?:reaches [^:]*: |spans )([\d,]+) rows x ([\d,]+) columns"),
     lambda m: _("the first sheet reaches %(rows)s rows and %(cols)s columns, more than is read: is there a stray "
                 "cell far outside the table? Delete it, or copy the table into a new workbook",
                 rows=m.group(1), cols=m.group(2))),
    (re.compile(r"no store defined yet"), lambda m: _("no store exists yet: add one on the stores page first")),
    (re.compile(r"unknown store '"), lambda m: _("unknown store: add it on the stores page first")),
)


def failure_text(error: str | None) -> str:
    """Why a whole file failed, in the reader's language (the importer's text when not known)."""
    for pattern, say in _FAILURES:
        match = pattern.search(error or "")
        if match:
            return say(match)
    return error or ""


def reason_text(reason: str) -> str:
    """An importer's reason in the reader's language (the English text when it is not known)."""
    for pattern, say in _REASONS:
        match = pattern.search(reason)
        if match:
            return say(match)
    return reason


# -- the job (on the job thread) ------------------------------------------------------------


def import_body(kind: str, path: Path, filename: str, *, dry_run: bool, store_code: str | None,
                acting_store: str | None, id_scope: str = "group"):
    """The job that runs the importer on ``path`` and keeps its report on the job row."""

    def body(database: Database, job_id: int, progress) -> dict:
        from callcenter.dms.importer import ImportFailed, import_customers, import_visits

        state = {"done": 0, "total": None}

        def on_total(total: int | None) -> None:
            state["total"] = total
            progress(0, total)

        def step(n: int) -> None:
            state["done"] += n
            progress(state["done"], state["total"])

        run = import_customers if kind == "customers" else import_visits
        try:
            report = run(database, path, dry_run=dry_run, store_code=store_code, acting_store=acting_store,
                         id_scope=id_scope, progress=step, on_total=on_total)
        except ImportFailed as exc:
            raise jobs.JobError(str(exc).replace(path.name, filename)) from None
        if not dry_run:
            path.unlink(missing_ok=True)  # imported: the history keeps the counts and the errors
        result = report.as_dict()
        result["errors_total"] = len(report.errors)
        result["errors"] = result["errors"][:MAX_KEPT_ERRORS]
        result["rows_rejected"] = sorted({e["row"] for e in result["errors"]})[:MAX_KEPT_ERRORS]
        result["id_scope"] = id_scope
        return result

    return body
