"""Customers: the searchable customer list and the customer's file (vehicles, visits, calls with
tags, tickets, callbacks). Agents see masked phone numbers. Runs on the request's worker thread.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Blueprint, abort, render_template, request
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
)
from web.security import ensure_in_scope, require, scoped_store_id, store_clause
from web.services import db, settings
from web.views import Page, page_number, today

bp = Blueprint("customers", __name__, url_prefix="/customers")

_DIGITS = re.compile(r"\d{4,}")
# A plate has digits or Latin letters next to its province character (湘A12345, A1234).
_PLATE = re.compile(r"[A-Za-z0-9]{3,}")
_NAME = re.compile(r"[\u3400-\u9fffA-Za-z]")
# Counting every match of a broad search costs more than the page: beyond this, "10,000+".
COUNT_CAP = 10_000


def customer_or_404(customer_id: int) -> Customer:
    customer = db().get(Customer, customer_id)
    if customer is None:
        abort(404)
    ensure_in_scope(customer.store_id)
    return customer


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
    return classify_customers(db(), today(), customer_ids=customer_ids,
                              default_cycle_mid=s.cycle_months_mid, default_cycle_premium=s.cycle_months_premium)


def search_clause(q: str):
    """Customer number (exact), phone, VIN, plate or name, each only when the text can be one:
    every alternative but the customer number and a whole phone number scans 100,000 rows, and an
    OR of all of them cost 110 ms a search."""
    q = q.strip()[:64]
    exact = db().scalar(sa.select(Customer.id).where(Customer.external_id == q))
    if exact is not None:
        return Customer.id == exact
    clauses = []
    compact = q.replace("-", "").replace(" ", "")
    if _DIGITS.fullmatch(compact):
        try:  # a whole number: the phone index answers
            clauses.append(Customer.phone == normalize_phone(compact))
        except PhoneError:  # part of a number, usually its last digits
            clauses.append(Customer.phone.like(f"%{compact}%"))
    elif len(compact) == 17 and compact.isalnum():
        clauses.append(Customer.id.in_(sa.select(Vehicle.customer_id).where(Vehicle.vin == compact.upper())))
    if _PLATE.search(q) and not _DIGITS.fullmatch(compact):
        # Plates are stored upper-case (湘A12345): LIKE on the stored text, no lower() per row.
        clauses.append(Customer.id.in_(sa.select(Vehicle.customer_id).where(Vehicle.plate.like(f"%{q.upper()}%"))))
    if _NAME.search(q) and not _DIGITS.fullmatch(compact):
        clauses.append(Customer.name.like(f"%{q}%"))
    return sa.or_(*clauses) if clauses else sa.false()


@bp.get("/")
@require(Role.AGENT)
def index():
    page, per_page = page_number()
    q = request.args.get("q", "").strip()
    store_id = request.args.get("store", type=int)
    query = sa.select(Customer).where(store_clause(Customer.store_id))
    if store_id:
        query = query.where(Customer.store_id == store_id)
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
        stores=visible_stores(), status=statuses([c.id for c in rows]),
    )


@bp.get("/<int:customer_id>")
@require(Role.AGENT)
def show(customer_id: int):
    customer = customer_or_404(customer_id)
    return render_template("customers/show.html", customer=customer, **customer_file(customer))


def customer_file(customer: Customer) -> dict:
    """Everything the agent and the supervisor want to know about a customer, newest first."""
    s = db()
    visits = list(s.scalars(
        sa.select(ServiceVisit).where(ServiceVisit.customer_id == customer.id)
        .options(selectinload(ServiceVisit.vehicle))
        .order_by(ServiceVisit.visit_date.desc()).limit(20)))
    calls = list(s.scalars(
        sa.select(Call).where(Call.customer_id == customer.id).options(selectinload(Call.tags))
        .order_by(Call.started_at.desc()).limit(20)))
    tickets = list(s.scalars(
        sa.select(Ticket).where(Ticket.customer_id == customer.id).order_by(Ticket.created_at.desc()).limit(20)))
    callbacks = list(s.scalars(
        sa.select(Callback).where(Callback.customer_id == customer.id, Callback.status == CallbackStatus.PENDING)
        .order_by(Callback.due_at)))
    dnc = bool(customer.phone) and s.scalar(
        sa.select(DoNotCall.id).where(DoNotCall.phone == customer.phone)) is not None
    return {
        "visits": visits, "calls": calls, "tickets": tickets, "callbacks": callbacks, "dnc": dnc,
        "status": statuses([customer.id]).get(customer.id),
    }
