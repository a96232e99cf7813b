"""DMS import in the browser (DMS 数据导入): upload a customers or visits export, see a dry run
with every row that would be rejected and why, then import with a progress bar; the per-row
errors download as CSV; the history says who imported what.

The import itself is the DMS importer's (:func:`callcenter.dms.importer.import_customers` /
``import_visits``: formats, encodings, validation, one transaction), run on the console's job
thread (:mod:`web.jobs`). Uploads are stored under ``<data dir>/imports`` with a random name
(the uploaded name is only shown, never used as a path) and are bounded by the console's
request limit. Administrators only; a store's administrator imports into their own store, and
a file that names another store or another store's customers is refused as a whole. Runs on
the request's worker thread.
"""

from __future__ import annotations

import csv
import io
import secrets
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.domain import Role
from callcenter.storage import Database
from callcenter.storage.models import Customer, Store
from callcenter.storage.web_models import ConsoleJob, JobStatus
from web import audit, jobs
from web.security import current_user, require, scoped_store_id
from web.services import db, settings
from web.views import Page, page_number

bp = Blueprint("imports", __name__, url_prefix="/admin/imports")

KINDS = ("customers", "visits")
SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xls")
# Rejections kept on the job for the preview and the CSV download. A file with more bad rows
# than this is not worth importing; the counts stay exact.
MAX_KEPT_ERRORS = 20_000
PREVIEW_ERRORS = 200
FOLDER = "imports"
SCOPE_ERROR = "other-store rows:\n"


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


def visible_stores() -> list[Store]:
    query = sa.select(Store).order_by(Store.code)
    if scoped_store_id() is not None:
        query = query.where(Store.id == scoped_store_id())
    return list(db().scalars(query))


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
        if not errors:
            folder = upload_dir()
            folder.mkdir(parents=True, exist_ok=True)
            stored = secrets.token_hex(16) + suffix
            (folder / stored).write_bytes(data)
            job = _start(kind, name[:255], stored, store, dry_run=True)
            return redirect(url_for("imports.show", job_id=job.id))
    page, per_page = page_number(20)
    query = sa.select(ConsoleJob).where(ConsoleJob.kind.in_([f"import_{k}" for k in KINDS]))
    if scoped_store_id() is not None:
        query = query.where(ConsoleJob.store_id == scoped_store_id())
    total = db().scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = list(db().scalars(query.order_by(ConsoleJob.id.desc()).limit(per_page).offset((page - 1) * per_page)))
    return render_template("imports/index.html", stores=stores, values=values, errors=errors,
                           page=Page(rows, page, per_page, total), max_mb=_max_mb(),
                           stale=jobs.is_stale), 400 if errors else 200


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


def _start(kind: str, filename: str, stored: str, store: Store | None, *, dry_run: bool) -> ConsoleJob:
    user = current_user()
    job = ConsoleJob(kind=f"import_{kind}", dry_run=dry_run, filename=filename, stored_name=stored,
                     store_id=store.id if store else scoped_store_id(), created_by=user.id, username=user.username,
                     target=store.code if store else None)
    db().add(job)
    db().flush()
    if not dry_run:
        audit.record("import.run", "import", job.id, store_id=job.store_id, kind=kind, file=filename)
    db().commit()
    jobs.submit(job.id, import_body(kind, upload_dir() / stored, filename, dry_run=dry_run,
                                    store_code=job.target, scope=scoped_store_id()))
    return job


@bp.get("/<int:job_id>")
@require(Role.ADMIN)
def show(job_id: int):
    job = job_or_404(job_id)
    result = job.result or {}
    return render_template("imports/show.html", job=job, result=result, labels=column_labels(),
                           errors=(result.get("errors") or [])[:PREVIEW_ERRORS], stale=jobs.is_stale,
                           status=_status(job), scope=scope_problems(job.error))


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
        abort(410, description=_("The uploaded file is gone; upload it again."))
    store = db().get(Store, job.store_id) if job.store_id and job.target else None
    real = _start(job.kind.removeprefix("import_"), job.filename or "", job.stored_name, store, dry_run=False)
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
                         e.get("reason")])
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


# -- the job (on the job thread) ------------------------------------------------------------


def import_body(kind: str, path: Path, filename: str, *, dry_run: bool, store_code: str | None, scope: int | None):
    """The job that runs the importer on ``path`` and keeps its report on the job row."""

    def body(database: Database, job_id: int, progress) -> dict:
        from callcenter.dms.importer import ImportFailed, import_customers, import_visits

        if scope is not None:
            _check_scope(database, kind, path, scope)
        state = {"done": 0, "total": None}

        def on_total(total: int | None) -> None:
            state["total"] = total
            progress(0, total)

        def step(n: int) -> None:
            state["done"] += n
            progress(state["done"], state["total"])

        run = import_customers if kind == "customers" else import_visits
        try:
            report = run(database, path, dry_run=dry_run, store_code=store_code, progress=step, on_total=on_total)
        except ImportFailed as exc:
            raise jobs.JobError(str(exc).replace(path.name, filename)) from None
        result = report.as_dict()
        result["errors_total"] = len(report.errors)
        result["errors"] = result["errors"][:MAX_KEPT_ERRORS]
        result["rows_rejected"] = sorted({e["row"] for e in result["errors"]})[:MAX_KEPT_ERRORS]
        return result

    return body


def _check_scope(database: Database, kind: str, path: Path, store_id: int) -> None:
    """A store's administrator may import their store's rows only: a file naming another store,
    or customers that belong to another store, is refused whole (a partial import would hide
    which rows were skipped for scope rather than for their data).

    Raises:
        JobError: naming the first offending rows.
    """
    from callcenter.dms.fields import CUSTOMER_COLUMNS, VISIT_COLUMNS, map_header, parse_customer_id
    from callcenter.dms.readers import UnreadableFile, open_table

    try:
        table = open_table(path)
    except UnreadableFile:
        return  # the importer says why
    index, missing, duplicates = map_header(table.header, CUSTOMER_COLUMNS if kind == "customers" else VISIT_COLUMNS)
    if missing or duplicates:
        return
    with database.session() as s:
        store = s.get(Store, store_id)
        own = {store.code, store.name}
        by_customer: dict[str, list[int]] = {}
        bad: list[tuple[int, str, str]] = []
        for number, cells in table.rows:
            if "store" in index and index["store"] < len(cells):
                value = str(cells[index["store"]] or "").strip()
                if value and value not in own:
                    bad.append((number, "store", value))
            if "customer_id" in index and index["customer_id"] < len(cells):
                try:
                    cid = parse_customer_id(cells[index["customer_id"]])
                except ValueError:
                    continue
                by_customer.setdefault(cid, []).append(number)
        ids = list(by_customer)
        for i in range(0, len(ids), 500):
            for ext in s.scalars(sa.select(Customer.external_id).where(
                    Customer.external_id.in_(ids[i:i + 500]), Customer.store_id != store_id)):
                bad.append((by_customer[ext][0], "customer_id", ext))
    if bad:
        # Stored as data, worded by the page in the reader's language (this thread has none).
        raise jobs.JobError(SCOPE_ERROR + "\n".join(f"{n}\t{col}\t{value}" for n, col, value in sorted(bad)[:10]))


def scope_problems(error: str | None) -> list[dict] | None:
    """The rows a scope refusal named (see :func:`_check_scope`), or None for other errors."""
    if not error or not error.startswith(SCOPE_ERROR):
        return None
    out = []
    for line in error[len(SCOPE_ERROR):].splitlines():
        row, _sep, rest = line.partition("\t")
        column, _sep, value = rest.partition("\t")
        out.append({"row": row, "column": column, "value": value})
    return out
