"""Customers: the searchable customer list and the customer's file (vehicles, visits, calls with
tags, tickets, callbacks). Agents see masked phone numbers. Runs on the request's worker thread.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from flask import Blueprint, abort, flash, render_template, request
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from callcenter.customer_base import classify_customers
from callcenter.domain import Role
from callcenter.domain.phone import PhoneError, normalize_phone
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    Customer,
    DoNotCall,
    ServiceVisit,
    Store,
    Ticket,
    Vehicle,
    customer_in_store,
)
from web import audit
from web.security import (
    current_user,
    ensure_in_scope,
    require,
    scoped_store_id,
    sees_full_phones,
    store_clause,
)
from web.services import db, settings
from web.views import Page, page_number, today

logger = logging.getLogger(__name__)
bp = Blueprint("customers", __name__, url_prefix="/customers")

_DIGITS = re.compile(r"\d{4,}")
# A plate has digits or Latin letters next to its province character (湘A12345, A1234).
_PLATE = re.compile(r"[A-Za-z0-9]{3,}")
_NAME = re.compile(r"[\u3400-\u9fffA-Za-z]")
# Counting every match of a broad search costs more than the page: beyond this, "10,000+".
COUNT_CAP = 10_000


def customer_or_404(customer_id: int) -> Customer:
    """The customer, if the user's store sees them (a group customer with a car or a visit there)."""
    customer = db().get(Customer, customer_id)
    if customer is None:
        abort(404)
    scope = scoped_store_id()
    if scope is not None and customer.store_id != scope and db().scalar(
            sa.select(Customer.id).where(Customer.id == customer_id, customer_in_store(scope))) is None:
        ensure_in_scope(customer.store_id)  # 404, as for any object of another store
    return customer


def visible_customers(store_id: int | None = None) -> sa.ColumnElement[bool]:
    """Customers the user's store sees (all for group-wide users), optionally narrowed to ``store_id``'s."""
    scope = scoped_store_id()
    conds = [customer_in_store(sid) for sid in {scope, store_id} if sid]
    return sa.and_(*conds) if conds else sa.true()


def visible_stores() -> list[Store]:
    query = sa.select(Store).order_by(Store.code)
    if scoped_store_id() is not None:
        query = query.where(Store.id == scoped_store_id())
    return list(db().scalars(query))


def statuses(customer_ids: list[int]) -> dict:
    """Active/lapsed/insured status of a page of customers (the seeds' definitions, as of today)."""
    if not customer_ids:
        return {}
    s = settings()
    scope = scoped_store_id()  # a store's users see the customer as their store does (customer_base)
    store_code = db().scalar(sa.select(Store.code).where(Store.id == scope)) if scope is not None else None
    return classify_customers(db(), today(), customer_ids=customer_ids, store_code=store_code,
                              default_cycle_mid=s.cycle_months_mid, default_cycle_premium=s.cycle_months_premium)


def search_clause(q: str):
    """Customer number (exact), phone, VIN, plate or name, each only when the text can be one:
    every alternative but the customer number and a whole phone number scans 100,000 rows, and an
    OR of all of them cost 110 ms a search.

    Part of a phone number matches only for users who see whole numbers: for an agent, searching
    digit by digit would recover a masked number in about 30 requests, so an agent's partial
    digits match no phone (:func:`_audit_phone_search` records the try and the page says why)."""
    q = q.strip()[:64]
    exact = db().scalar(sa.select(Customer.id).where(Customer.external_id == q))
    if exact is not None:
        return Customer.id == exact
    clauses = []
    compact = _compact(q)
    if _DIGITS.fullmatch(compact):
        try:  # a whole number: the phone index answers
            clauses.append(Customer.phone == normalize_phone(compact))
        except PhoneError:  # part of a number, usually its last digits
            if sees_full_phones():
                clauses.append(Customer.phone.like(f"%{compact}%"))
    elif len(compact) == 17 and compact.isalnum():
        clauses.append(Customer.id.in_(sa.select(Vehicle.customer_id).where(Vehicle.vin == compact.upper())))
    if _PLATE.search(q) and not _DIGITS.fullmatch(compact):
        # Plates are stored upper-case (湘A12345): LIKE on the stored text, no lower() per row.
        clauses.append(Customer.id.in_(sa.select(Vehicle.customer_id).where(Vehicle.plate.like(f"%{q.upper()}%"))))
    if _NAME.search(q) and not _DIGITS.fullmatch(compact):
        clauses.append(Customer.name.like(f"%{q}%"))
    return sa.or_(*clauses) if clauses else sa.false()


def _compact(q: str) -> str:
    return q.strip()[:64].replace("-", "").replace(" ", "")


def _phone_search_kind(q: str) -> str | None:
    """"whole" for a whole phone number, "partial" for 4+ digits that are not one, else None."""
    compact = _compact(q)
    if not q or not _DIGITS.fullmatch(compact):
        return None
    try:
        normalize_phone(compact)
    except PhoneError:
        return "partial"
    return "whole"


def _audit_phone_search(q: str) -> bool:
    """For users who see masked numbers: audit searches by phone (``phone.search``; a number
    found by its whole digits is known to the searcher, but who looked for whom is recorded),
    and say whether a partial-number search was refused."""
    kind = _phone_search_kind(q)
    if kind is None or sees_full_phones() or db().scalar(
            sa.select(Customer.id).where(Customer.external_id == q.strip()[:64])) is not None:
        return False
    audit.record("phone.search", "customer", None, store_id=scoped_store_id(), commit=True,
                 query=_compact(q), refused=kind == "partial")
    if kind == "partial":
        logger.warning("partial phone search refused for user %s", current_user().username)
    return kind == "partial"


@bp.get("/")
@require(Role.AGENT)
def index():
    page, per_page = page_number()
    q = request.args.get("q", "").strip()
    store_id = request.args.get("store", type=int)
    query = sa.select(Customer).where(visible_customers(store_id))
    refused = _audit_phone_search(q)
    if refused:
        flash(_("Search by the whole phone number: numbers are masked for your role."), "error")
    if q:
        query = query.where(search_clause(q))
    rows = list(db().scalars(
        query.options(selectinload(Customer.vehicles), selectinload(Customer.store))
        .order_by(Customer.id.desc()).limit(per_page).offset((page - 1) * per_page)))
    if page == 1 and len(rows) < per_page:
        total = len(rows)  # the whole answer is on this page: no second scan to count it
    else:
        counted = query.with_only_columns(Customer.id).limit(COUNT_CAP) if q else query
        total = db().scalar(sa.select(sa.func.count()).select_from(counted.subquery()))
    return render_template(
        "customers/index.html", page=Page(rows, page, per_page, total), q=q, store_id=store_id,
        stores=visible_stores(), status=statuses([c.id for c in rows]), scope_store=scoped_store_id(),
    )


@bp.get("/<int:customer_id>")
@require(Role.AGENT)
def show(customer_id: int):
    customer = customer_or_404(customer_id)
    return render_template("customers/show.html", customer=customer, **customer_file(customer))


def customer_file(customer: Customer) -> dict:
    """Everything the agent and the supervisor want to know about a customer, newest first.

    A customer belongs to the dealer group; a store's users see only their store's cars, visits,
    calls, tickets and callbacks of them (group-wide users see everything).
    """
    s = db()
    visits = list(s.scalars(
        sa.select(ServiceVisit).where(ServiceVisit.customer_id == customer.id, store_clause(ServiceVisit.store_id))
        .options(selectinload(ServiceVisit.vehicle))
        .order_by(ServiceVisit.visit_date.desc()).limit(20)))
    calls = list(s.scalars(
        sa.select(Call).where(Call.customer_id == customer.id, store_clause(Call.store_id))
        .options(selectinload(Call.tags)).order_by(Call.started_at.desc()).limit(20)))
    tickets = list(s.scalars(
        sa.select(Ticket).where(Ticket.customer_id == customer.id, store_clause(Ticket.store_id))
        .order_by(Ticket.created_at.desc()).limit(20)))
    callbacks = list(s.scalars(
        sa.select(Callback).where(Callback.customer_id == customer.id, Callback.status == CallbackStatus.PENDING,
                                  store_clause(Callback.store_id))
        .order_by(Callback.due_at)))
    scope = scoped_store_id()
    vehicles = [v for v in customer.vehicles if scope is None or v.store_id == scope]
    dnc = bool(customer.phone) and s.scalar(
        sa.select(DoNotCall.id).where(DoNotCall.phone == customer.phone)) is not None
    return {
        "visits": visits, "calls": calls, "tickets": tickets, "callbacks": callbacks, "dnc": dnc, "vehicles": vehicles,
        "status": statuses([customer.id]).get(customer.id),
    }
