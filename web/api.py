"""The JSON API under ``/api/v1`` for DMS integration: push customers (with vehicles) and
service visits, read them back, read call outcomes. Token authentication
(``Authorization: Bearer cc_...``, tokens made in Administration); each token acts with its
user's role and store scope, and only tokens marked for writing may push. The OpenAPI
description is at ``/api/v1/openapi.json`` (:mod:`web.openapi`).

Pushed records go through the same importer as DMS files (:mod:`callcenter.dms.importer`), so
the rules are the same: same field names, same validation, upsert by customer_id, VIN and
repair order, a bad record rejected with its index, field, value and reason while the rest is
stored. Runs on the request's worker thread.

Store boundaries hold on writes as on reads: a store's token may change only its own store's
customers, vehicles and visits; a record of another store is rejected (status 403 in its error,
naming its index and field) and the rest of the batch is stored. Every field has a length limit
and a body nested deeper than :data:`MAX_DEPTH` is cut at that depth, so oversized or malicious
input is rejected row by row with a 400-class reason instead of failing the whole request.
Phone numbers are masked for tokens of users who see masked numbers in the console
(:func:`web.security.shown_phone`).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import tempfile
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, abort, g, jsonify, render_template, request
from sqlalchemy.orm import selectinload

from callcenter.dms.fields import CUSTOMER_FIELDS, VEHICLE_FIELDS, parse_customer_id, parse_vin
from callcenter.dms.importer import ImportFailed, import_customers, import_visits
from callcenter.domain import Role
from callcenter.storage.models import (
    Call,
    Campaign,
    Customer,
    ServiceVisit,
    Store,
    Vehicle,
    customer_in_store,
)
from web import audit, cache
from web.openapi import spec
from web.security import api_require, log_refusal, public, scoped_store_id, shown_phone
from web.services import db, services

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_BATCH = 1000
MAX_PAGE = 500
VISIT_FIELDS = ("customer_id", "vin", "visit_date", "type", "paid", "amount", "advisor", "store", "ro_number")

# A pushed record is at most 4 levels deep ({"customers": [{"vehicles": [{...}]}]}); anything
# nested deeper than this is replaced by TOO_DEEP before the batch is looked at, so a
# 100,000-level array costs one rejected row, not the request (json.loads recurses per level).
MAX_DEPTH = 16
TOO_DEEP = "\x00nested too deeply"
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _column_length(column, floor: int = 32) -> int:
    """A field's length limit: its column's, but never below ``floor`` (a phone number or a
    date arrives with separators that normalisation removes)."""
    return max(column.type.length, floor)


# Characters per field, checked before the importer sees the value (a 200,000-character cell
# made the CSV reader fail the whole batch). Fields without a column of their own (dates,
# flags, enums, amounts) get 32.
FIELD_LIMITS = {
    "customer_id": _column_length(Customer.__table__.c.external_id), "name": _column_length(Customer.__table__.c.name),
    "phone": _column_length(Customer.__table__.c.phone), "city": _column_length(Customer.__table__.c.city),
    "district": _column_length(Customer.__table__.c.district),
    "occupation": _column_length(Customer.__table__.c.occupation),
    "vin": _column_length(Vehicle.__table__.c.vin), "plate": _column_length(Vehicle.__table__.c.plate),
    "brand": _column_length(Vehicle.__table__.c.brand), "model": _column_length(Vehicle.__table__.c.model),
    "advisor": _column_length(ServiceVisit.__table__.c.advisor),
    "ro_number": _column_length(ServiceVisit.__table__.c.ro_number),
    "store": _column_length(Store.__table__.c.name),
}
DEFAULT_FIELD_LIMIT = 32


# -- helpers ---------------------------------------------------------------------------------


def _limit() -> int:
    value = request.args.get("limit", 100, type=int)
    return max(1, min(value or 100, MAX_PAGE))


def _after_id() -> int:
    return max(0, request.args.get("after_id", 0, type=int) or 0)


def _since(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        abort(400, description=f"{name}: expected an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _store_codes() -> dict[int, str]:
    return dict(db().execute(sa.select(Store.id, Store.code)).all())


def _scope_store_code() -> str | None:
    sid = scoped_store_id()
    return None if sid is None else db().scalar(sa.select(Store.code).where(Store.id == sid))


def _page(items: list[dict], rows: list, limit: int):
    return jsonify(items=items, next_after_id=rows[-1].id if len(rows) == limit else None)


# -- description -----------------------------------------------------------------------------


@bp.get("/openapi.json")
@public
def openapi():
    return jsonify(spec())


@bp.get("/docs")
@public
def docs():
    return render_template("api/docs.html", spec=spec())


# -- stores ----------------------------------------------------------------------------------


@bp.get("/stores")
@api_require(Role.AGENT)
def stores():
    query = sa.select(Store).order_by(Store.code)
    if scoped_store_id() is not None:
        query = query.where(Store.id == scoped_store_id())
    return jsonify(items=[{"code": s.code, "name": s.name, "city": s.city, "timezone": s.timezone}
                          for s in db().scalars(query)])


# -- customers -------------------------------------------------------------------------------


def customer_json(c: Customer, codes: dict[int, str]) -> dict:
    return {
        "customer_id": c.external_id, "name": c.name, "phone": shown_phone(c.phone) or None,
        "gender": c.gender.value if c.gender else None, "birthday": _iso(c.birthday), "city": c.city,
        "district": c.district, "occupation": c.occupation, "store": codes.get(c.store_id),
        "updated_at": _iso(c.updated_at),
        "vehicles": [{
            "vin": v.vin, "plate": v.plate, "brand": v.brand, "model": v.model, "tier": v.tier.value,
            "purchase_date": _iso(v.purchase_date), "warranty_end": _iso(v.warranty_end),
            "insurance_expiry": _iso(v.insurance_expiry), "insured_here": v.insured_here,
        } for v in c.vehicles],
    }


@bp.get("/customers")
@api_require(Role.AGENT)
def customers():
    limit = _limit()
    query = sa.select(Customer).where(Customer.id > _after_id()).options(selectinload(Customer.vehicles))
    if scoped_store_id() is not None:
        query = query.where(Customer.store_id == scoped_store_id())
    if store := request.args.get("store"):
        query = query.where(Customer.store_id == sa.select(Store.id).where(Store.code == store).scalar_subquery())
    if since := _since("updated_since"):
        query = query.where(Customer.updated_at >= since)
    rows = list(db().scalars(query.order_by(Customer.id).limit(limit)))
    codes = _store_codes()
    return _page([customer_json(c, codes) for c in rows], rows, limit)


@bp.get("/customers/<customer_id>")
@api_require(Role.AGENT)
def customer(customer_id: str):
    c = db().scalar(sa.select(Customer).where(Customer.external_id == customer_id)
                    .options(selectinload(Customer.vehicles)))
    if c is None or (scoped_store_id() is not None and c.store_id != scoped_store_id()):
        abort(404, description="no such customer")
    return jsonify(customer_json(c, _store_codes()))


def _cut_deep(text: str, limit: int) -> str:
    """``text`` (JSON) with every value nested deeper than ``limit`` replaced by :data:`TOO_DEEP`.

    Strings are skipped whole by the token pattern, so brackets inside them do not count.
    """
    out, depth, start, last = [], 0, None, 0
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth == limit + 1 and start is None:
                start = m.start()
        elif token in "]}":
            depth -= 1
            if depth == limit and start is not None:
                out.append(text[last:start])
                out.append(json.dumps(TOO_DEEP))
                last, start = m.end(), None
    out.append(text[last:])
    return "".join(out)


def _json_body():
    """The request body as JSON; 400 naming the problem when it is not JSON at all."""
    try:
        text = request.get_data(cache=True).decode("utf-8-sig")
    except UnicodeDecodeError:
        abort(400, description="the body is not UTF-8 JSON")
    try:
        return json.loads(text)
    except RecursionError:
        try:
            return json.loads(_cut_deep(text, MAX_DEPTH))
        except (ValueError, RecursionError):
            abort(400, description=f"the body is not valid JSON (and nested more than {MAX_DEPTH} levels deep)")
    except ValueError as exc:
        abort(400, description=f"the body is not valid JSON: {str(exc)[:120]}")


def _batch(key: str) -> list:
    body = _json_body()
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        abort(400, description=f'expected a JSON object {{"{key}": [ ... ]}}')
    items = body[key]
    if not items:
        abort(400, description=f"{key} is empty")
    if len(items) > MAX_BATCH:
        abort(413, description=f"at most {MAX_BATCH} {key} per request")
    return items


def _cell(value) -> str:
    if value is None:
        return ""
    if value == TOO_DEEP or (isinstance(value, (list, dict)) and _holds_too_deep(value)):
        raise ValueError(f"must be a string, number, boolean or null, not a value nested more than "
                         f"{MAX_DEPTH} levels deep")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError("must be a string, number, boolean or null")


def _holds_too_deep(value: list | dict) -> bool:
    """Whether :func:`_cut_deep` cut something inside ``value`` (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item == TOO_DEEP:
            return True
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


def _check_scalar(index: int, field: str, value, errors: list[dict]) -> bool:
    try:
        text = _cell(value)
    except ValueError as exc:
        # The type, never str(value): a list nested 900 levels deep would overflow repr().
        shown = f"({type(value).__name__})"
        errors.append({"index": index, "field": field, "value": shown, "reason": str(exc)})
        return False
    limit = FIELD_LIMITS.get(field, DEFAULT_FIELD_LIMIT)
    if len(text) > limit:
        errors.append({"index": index, "field": field, "value": text[:60],
                       "reason": f"longer than {limit} characters ({len(text)})"})
        return False
    if any(ord(ch) < 32 for ch in text):
        errors.append({"index": index, "field": field, "value": text[:60], "reason": "contains control characters"})
        return False
    return True


def _scope_check(index: int, item: dict, scope_code: str | None, errors: list[dict]) -> bool:
    if scope_code is not None and item.get("store") not in (None, "", scope_code):
        _forbidden(index, "store", item.get("store"), "this token may only write to its own store", errors)
        return False
    return True


def _forbidden(index: int, field: str, value, reason: str, errors: list[dict]) -> None:
    """A record outside the token's store: rejected with status 403, and the refusal logged."""
    errors.append({"index": index, "field": field, "value": str(value)[:60], "reason": reason, "status": 403})
    log_refusal(403, f"record {index}: {field} outside the token's store")


def _normalised(parse, value) -> str | None:
    try:
        return parse(_cell(value)) or None
    except ValueError:
        return None  # the importer rejects it with its reason


def _other_stores_customers(ids: set[str]) -> set[str]:
    """Of these customer numbers (group-wide ones, or the token's store's own), those of
    customers the token's store does not see: no home, car or visit in it
    (:func:`~callcenter.storage.models.customer_in_store`)."""
    scope = scoped_store_id()
    if scope is None or not ids:
        return set()
    return set(db().scalars(sa.select(Customer.external_id).where(
        Customer.external_id.in_(sorted(ids)),
        sa.or_(Customer.scope_store_id.is_(None), Customer.scope_store_id == scope),
        sa.not_(customer_in_store(scope)))))


def _other_stores_vins(vins: set[str]) -> set[str]:
    """Of these VINs, those of another store's vehicles."""
    scope = scoped_store_id()
    if scope is None or not vins:
        return set()
    return set(db().scalars(sa.select(Vehicle.vin).where(Vehicle.vin.in_(sorted(vins)), Vehicle.store_id != scope)))


def _outside_store(candidates: list[tuple[int, dict, list[dict]]], errors: list[dict]) -> set[int]:
    """Indexes of the records that would change what the token's store does not own: a customer
    it does not see (which would also let it claim that customer), or another store's vehicle
    (which would move it to this store). Each is rejected with 403; a group-wide token passes."""
    ids = {cid for _, item, _ in candidates if (cid := _normalised(parse_customer_id, item.get("customer_id")))}
    vins = {vin for _, _, vehicles in candidates for v in vehicles if (vin := _normalised(parse_vin, v.get("vin")))}
    foreign_ids, foreign_vins = _other_stores_customers(ids), _other_stores_vins(vins)
    rejected = set()
    for i, item, vehicles in candidates:
        if _normalised(parse_customer_id, item.get("customer_id")) in foreign_ids:
            _forbidden(i, "customer_id", item.get("customer_id"),
                       "another store's customer: this token may only change its own store's customers", errors)
            rejected.add(i)
            continue
        for v in vehicles:
            if _normalised(parse_vin, v.get("vin")) in foreign_vins:
                _forbidden(i, "vin", v.get("vin"),
                           "another store's vehicle: this token may only change its own store's vehicles", errors)
                rejected.add(i)
                break
    return rejected


def _run_import(kind: str, header: list[str], rows: list[tuple[int, list[str]]], errors: list[dict]) -> dict:
    """Write the accepted records as a DMS-format CSV and run the importer on it."""
    svc = services()
    with tempfile.TemporaryDirectory(prefix="callcenter-api-") as tmp:
        # The name is what the import history shows: which token pushed what, when.
        path = Path(tmp) / f"api-{kind}-token{g.api_token.id}-{dt.datetime.now():%Y%m%d-%H%M%S}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(cells for _, cells in rows)
        line_to_index = {line: index for line, (index, _) in enumerate(rows, start=2)}
        run = import_customers if kind == "customers" else import_visits
        try:
            # acting_store: the importer checks the store of every record it would change as well.
            scope_code = _scope_store_code()
            report = run(svc.database, path, store_code=scope_code, acting_store=scope_code)
        except ImportFailed as exc:
            abort(400, description=str(exc))
    for e in report.errors:
        errors.append({"index": line_to_index.get(e.row), "field": e.column, "value": e.value, "reason": e.reason})
    rejected_indexes = {e["index"] for e in errors}
    return {"imported": report.imported, "updated": report.updated, "unchanged": report.unchanged,
            "rejected": len(rejected_indexes), "errors": sorted(errors, key=lambda e: (e["index"] or 0))}


@bp.post("/customers")
@api_require(Role.SUPERVISOR, write=True)
def push_customers():
    """Upsert customers with their vehicles (the DMS customer export, as JSON)."""
    items = _batch("customers")
    scope_code = _scope_store_code()
    header = ["customer_id", *CUSTOMER_FIELDS, *VEHICLE_FIELDS, "store"]
    rows: list[tuple[int, list[str]]] = []
    errors: list[dict] = []
    candidates: list[tuple[int, dict, list[dict]]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"index": i, "field": None, "value": None, "reason": "not a JSON object"})
            continue
        vehicles = item.get("vehicles") or [{}]
        if not isinstance(vehicles, list) or not all(isinstance(v, dict) for v in vehicles):
            errors.append({"index": i, "field": "vehicles", "value": None, "reason": "must be a list of objects"})
            continue
        person_ok = all(_check_scalar(i, f, item.get(f), errors) for f in ("customer_id", *CUSTOMER_FIELDS, "store"))
        vehicles_ok = all(_check_scalar(i, f, v.get(f), errors) for v in vehicles for f in VEHICLE_FIELDS)
        if not (person_ok and vehicles_ok and _scope_check(i, item, scope_code, errors)):
            continue
        candidates.append((i, item, vehicles))
    outside = _outside_store(candidates, errors)
    for i, item, vehicles in candidates:
        if i in outside:
            continue
        for v in vehicles:
            rows.append((i, [_cell(item.get("customer_id")), *(_cell(item.get(f)) for f in CUSTOMER_FIELDS),
                             *(_cell(v.get(f)) for f in VEHICLE_FIELDS), _cell(item.get("store") or scope_code)]))
    result = _run_import("customers", header, rows, errors) if rows else _empty(errors)
    audit.record("api.write", "customers", None, store_id=scoped_store_id(), commit=True,
                 imported=result["imported"], updated=result["updated"], rejected=result["rejected"])
    if result["imported"] or result["updated"]:
        cache.invalidate_all()
    return jsonify(result), 200 if not result["rejected"] else 207


def _empty(errors: list[dict]) -> dict:
    return {"imported": 0, "updated": 0, "unchanged": 0, "rejected": len({e["index"] for e in errors}),
            "errors": errors}


# -- visits ----------------------------------------------------------------------------------


@bp.get("/visits")
@api_require(Role.AGENT)
def visits():
    limit = _limit()
    query = (sa.select(ServiceVisit, Customer.external_id).join(Customer, Customer.id == ServiceVisit.customer_id)
             .where(ServiceVisit.id > _after_id()).options(selectinload(ServiceVisit.vehicle)))
    if scoped_store_id() is not None:
        query = query.where(ServiceVisit.store_id == scoped_store_id())
    if cid := request.args.get("customer_id"):
        query = query.where(Customer.external_id == cid)
    if since := request.args.get("since"):
        try:
            query = query.where(ServiceVisit.visit_date >= dt.date.fromisoformat(since))
        except ValueError:
            abort(400, description="since: expected a date, e.g. 2026-11-01")
    rows = db().execute(query.order_by(ServiceVisit.id).limit(limit)).all()
    codes = _store_codes()
    items = [{
        "id": v.id, "customer_id": ext, "vin": v.vehicle.vin if v.vehicle else None, "visit_date": _iso(v.visit_date),
        "type": v.visit_type.value, "paid": v.paid, "amount": str(v.amount) if v.amount is not None else None,
        "advisor": v.advisor, "store": codes.get(v.store_id), "ro_number": v.ro_number,
    } for v, ext in rows]
    return jsonify(items=items, next_after_id=rows[-1][0].id if len(rows) == limit else None)


@bp.post("/visits")
@api_require(Role.SUPERVISOR, write=True)
def push_visits():
    """Upsert service visits (the DMS visit export, as JSON); customers must exist first."""
    items = _batch("visits")
    scope_code = _scope_store_code()
    rows: list[tuple[int, list[str]]] = []
    errors: list[dict] = []
    candidates: list[tuple[int, dict, list[dict]]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"index": i, "field": None, "value": None, "reason": "not a JSON object"})
            continue
        if not all(_check_scalar(i, f, item.get(f), errors) for f in VISIT_FIELDS):
            continue
        if not _scope_check(i, item, scope_code, errors):
            continue
        # A visit may be of a car another store sold: only the customer must be this store's.
        candidates.append((i, item, []))
    outside = _outside_store(candidates, errors)
    for i, item, _ in candidates:
        if i not in outside:
            rows.append((i, [_cell(item.get(f) if f != "store" else (item.get("store") or scope_code))
                             for f in VISIT_FIELDS]))
    result = _run_import("visits", list(VISIT_FIELDS), rows, errors) if rows else _empty(errors)
    audit.record("api.write", "visits", None, store_id=scoped_store_id(), commit=True,
                 imported=result["imported"], updated=result["updated"], rejected=result["rejected"])
    if result["imported"] or result["updated"]:
        cache.invalidate_all()
    return jsonify(result), 200 if not result["rejected"] else 207


# -- calls -----------------------------------------------------------------------------------


def call_json(c: Call, codes: dict[int, str], *, transcript: bool = False) -> dict:
    out = {
        "id": c.id, "customer_id": c.customer.external_id if c.customer else None, "store": codes.get(c.store_id),
        "campaign": {"id": c.campaign.id, "name": c.campaign.name, "type": c.campaign.type.value} if c.campaign else None,
        "robot": c.robot, "started_at": _iso(c.started_at), "answered_at": _iso(c.answered_at),
        "ended_at": _iso(c.ended_at), "talk_seconds": c.talk_seconds, "disposition": c.disposition,
        "sip_code": c.sip_code, "outcome": c.outcome.value if c.outcome else None, "score5": c.score5, "nps": c.nps,
        "sentiment": c.sentiment,
        "tags": [{"category": t.category, "department": t.department, "confidence": t.confidence, "source": t.source}
                 for t in c.tags],
    }
    if transcript:
        out["transcript"] = [{"seq": u.seq, "speaker": u.speaker, "text": u.text, "start": u.start, "end": u.end}
                             for u in c.utterances]
    return out


@bp.get("/calls")
@api_require(Role.SUPERVISOR)
def calls():
    limit = _limit()
    query = (sa.select(Call).where(Call.id > _after_id(), Call.ended_at.is_not(None))
             .options(selectinload(Call.tags), selectinload(Call.customer), selectinload(Call.campaign)))
    if scoped_store_id() is not None:
        query = query.where(Call.store_id == scoped_store_id())
    if since := _since("ended_since"):
        query = query.where(Call.ended_at >= since)
    if campaign := request.args.get("campaign", type=int):
        query = query.where(Call.campaign_id == campaign)
    if cid := request.args.get("customer_id"):
        query = query.where(Call.customer_id == sa.select(Customer.id).where(Customer.external_id == cid)
                            .scalar_subquery())
    rows = list(db().scalars(query.order_by(Call.id).limit(limit)))
    codes = _store_codes()
    return _page([call_json(c, codes) for c in rows], rows, limit)


@bp.get("/calls/<int:call_id>")
@api_require(Role.SUPERVISOR)
def call(call_id: int):
    c = db().scalar(sa.select(Call).where(Call.id == call_id).options(
        selectinload(Call.tags), selectinload(Call.utterances), selectinload(Call.customer),
        selectinload(Call.campaign)))
    if c is None or (scoped_store_id() is not None and c.store_id != scoped_store_id()):
        abort(404, description="no such call")
    return jsonify(call_json(c, _store_codes(), transcript=True))


@bp.get("/campaigns")
@api_require(Role.SUPERVISOR)
def campaigns():
    query = sa.select(Campaign).order_by(Campaign.id.desc()).limit(_limit())
    if scoped_store_id() is not None:
        query = query.where(Campaign.store_id == scoped_store_id())
    codes = _store_codes()
    return jsonify(items=[{
        "id": c.id, "name": c.name, "type": c.type.value, "status": c.status.value, "store": codes.get(c.store_id),
        "script": c.script, "created_at": _iso(c.created_at), "started_at": _iso(c.started_at),
        "finished_at": _iso(c.finished_at)} for c in db().scalars(query)])
