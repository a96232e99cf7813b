"""The customer base as the seeds define it: 保有, 有效, 流失 and 再保 customers as of a date.

Definitions (天健汽车 talk, "客户分类"), applied exactly:

- **base** (保有客户): every customer, prospects included.
- **active** (有效客户): the customer's *last touch* - the latest of their paid visits (any type) and
  vehicle purchase dates, on or before D - is on or after D minus two maintenance cycles.
  The cycle is 3 months for mid-tier and 6 for premium (per store, configurable); a customer
  with vehicles of both tiers uses the shorter cycle; a customer with visits but no vehicle on
  file uses the mid-tier cycle. Calendar months, clamped to month ends; the boundary day is active.
- **lapsed** (流失客户): has a last touch, older than two cycles.
- **insured** (再保客户): at least one vehicle insured with the store whose policy expires on or after D.
- Prospects (no vehicle, no visit) count in base only.

Per group and per store (dealer groups; docs/import-format.md): the group's classes (no store
given) use all of a customer's cars and paid visits, with their home store's cycles, and count
each customer once. A store's classes count the customers it sees (its home customers and those
with a car or a visit there, :func:`~callcenter.storage.models.customer_in_store`) on that store's
own cars and paid visits, with that store's cycles: a customer who services one car in store A and
stopped coming to store B is active in A and lapsed in B (and in the group, active). The stores'
counts therefore add up to more than the group's when customers use several stores.

Everything is computed from three indexed scans and one pass in Python, so that 100,000
customers and 500,000 visits take well under the 2 s budget (see docs/benchmarks.md).
:func:`classes_query` is the same definition as one SQL query, for callers that select customers
by class over the whole base (win-back campaigns over a million customers) and must not pull every
customer into Python. Runs on whatever thread calls it; it only reads.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from callcenter.domain import CustomerClass, Tier
from callcenter.domain.dates import add_months, age_on
from callcenter.storage.models import (
    Customer,
    CustomerStoreTouch,
    CustomerTouch,
    ServiceVisit,
    Store,
    Vehicle,
    customer_in_store,
)

AGE_BANDS: tuple[tuple[int, str], ...] = ((25, "<25"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (200, "55+"))
CLASSES = (CustomerClass.BASE, CustomerClass.ACTIVE, CustomerClass.LAPSED, CustomerClass.INSURED)
UNKNOWN = "unknown"
NO_VEHICLE = "none"


@dataclass(frozen=True, slots=True)
class CustomerStatus:
    """One customer's classes as of a date."""

    customer_id: int
    last_touch: dt.date | None
    cycle_months: int | None
    active: bool
    lapsed: bool
    insured: bool


def age_band(birthday: dt.date | None, as_of: dt.date) -> str:
    if birthday is None or birthday > as_of:
        return UNKNOWN
    age = age_on(birthday, as_of)
    for limit, label in AGE_BANDS:
        if age < limit:
            return label
    return AGE_BANDS[-1][1]


def _breakdown(pairs: Iterable[tuple[str, int]]) -> dict[str, dict[str, int]]:
    """(value, flags) pairs -> value -> class counts; flags: bit 0 active, 1 lapsed, 2 insured.

    Counting (value, flags) pairs with collections.Counter runs in C; adding up per customer
    in Python cost 0.3 s per 100,000 customers.
    """
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (value, flags), n in Counter(pairs).items():
        row = table[value]
        row[0] += n
        if flags & 1:
            row[1] += n
        if flags & 2:
            row[2] += n
        if flags & 4:
            row[3] += n
    ordered = sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {k: dict(zip((c.value for c in CLASSES), v)) for k, v in ordered}


def classify_customers(
    session: Session,
    as_of: dt.date,
    *,
    store_code: str | None = None,
    default_cycle_mid: int = 3,
    default_cycle_premium: int = 6,
    customer_ids: Iterable[int] | None = None,
) -> dict[int, CustomerStatus]:
    """Each customer's status as of ``as_of`` (optionally one store's or a given set)."""
    rows = _load(session, as_of, store_code, default_cycle_mid, default_cycle_premium, customer_ids)
    return {r[0].customer_id: r[0] for r in rows}


def customer_base_stats(
    session: Session,
    as_of: dt.date,
    *,
    store_code: str | None = None,
    default_cycle_mid: int = 3,
    default_cycle_premium: int = 6,
) -> dict:
    """The ``customers stats`` report: totals plus breakdowns by city, model, tier, gender, age band.

    Each breakdown maps a value to ``{"base", "active", "lapsed", "insured"}``. A customer with
    several vehicles counts once under each distinct model and tier they own; customers without
    a vehicle are under ``"none"`` there, and missing city/gender/birthday under ``"unknown"``.

    Raises:
        LookupError: ``store_code`` names no store.
    """
    flags, cities, genders, bands = [], [], [], []
    model_pairs: list[tuple[str, int]] = []
    tier_pairs: list[tuple[str, int]] = []
    for status, city, gender, birthday, models, tiers in _load(
        session, as_of, store_code, default_cycle_mid, default_cycle_premium, None
    ):
        f = status.active | (status.lapsed << 1) | (status.insured << 2)
        flags.append(f)
        cities.append(city or UNKNOWN)
        genders.append(gender or UNKNOWN)
        bands.append(age_band(birthday, as_of))
        model_pairs.extend((m, f) for m in models or (NO_VEHICLE,))
        tier_pairs.extend((t, f) for t in tiers or (NO_VEHICLE,))
    totals = [len(flags), sum(f & 1 for f in flags), sum(f >> 1 & 1 for f in flags), sum(f >> 2 & 1 for f in flags)]
    return {
        "as_of": as_of.isoformat(),
        "store": store_code,
        **dict(zip((c.value for c in CLASSES), totals)),
        "by_city": _breakdown(zip(cities, flags)),
        "by_model": _breakdown(model_pairs),
        "by_tier": _breakdown(tier_pairs),
        "by_gender": _breakdown(zip(genders, flags)),
        "by_age_band": _breakdown(zip(bands, flags)),
    }


def _load(session, as_of, store_code, default_mid, default_premium, customer_ids):
    """Yield (status, city, gender, birthday, models, tiers) per customer.

    Plain Core rows with enums read as their stored strings: the ORM's row and enum
    processing cost 1.5 s of a 2.1 s run over 100,000 customers (profiled).
    """
    raw = sa.String
    conn = session.connection()
    store_id = _store_id(conn, store_code)
    cust_q = sa.select(
        Customer.id, Customer.city, sa.type_coerce(Customer.gender, raw), Customer.birthday,
        Store.cycle_months_mid, Store.cycle_months_premium,
    ).join(Store, Store.id == (Customer.store_id if store_id is None else store_id))
    veh_q = sa.select(
        Vehicle.customer_id, Vehicle.model, sa.type_coerce(Vehicle.tier, raw), Vehicle.purchase_date,
        Vehicle.insured_here, Vehicle.insurance_expiry,
    )
    visit_q = (
        sa.select(ServiceVisit.customer_id, sa.func.max(ServiceVisit.visit_date))
        .where(ServiceVisit.paid.is_(True), ServiceVisit.visit_date <= as_of)
        .group_by(ServiceVisit.customer_id)
    )
    if store_id is not None:  # the store's customers, on the store's own cars and visits
        cust_q = cust_q.where(customer_in_store(store_id))
        veh_q = veh_q.where(Vehicle.store_id == store_id)
        visit_q = visit_q.where(ServiceVisit.store_id == store_id)
    if customer_ids is not None:
        ids = list(customer_ids)
        cust_q = cust_q.where(Customer.id.in_(ids))
        veh_q = veh_q.where(Vehicle.customer_id.in_(ids))
        visit_q = visit_q.where(ServiceVisit.customer_id.in_(ids))

    last_paid: dict[int, dt.date] = dict(conn.execute(visit_q).all())
    vehicles: dict[int, list] = defaultdict(list)
    for row in conn.execute(veh_q):
        vehicles[row[0]].append(row)
    thresholds: dict[int, dt.date] = {}  # months -> as_of minus two cycles (memoised)
    premium = Tier.PREMIUM.value

    for cid, city, gender, birthday, store_mid, store_premium in conn.execute(cust_q):
        cycle_mid = store_mid or default_mid
        cycle_premium = store_premium or default_premium
        last_touch = last_paid.get(cid)
        cycle: int | None = None
        insured = False
        models: list[str] = []
        tiers: list[str] = []
        for _cid, model, tier, purchase, insured_here, expiry in vehicles.get(cid, ()):
            months = cycle_premium if tier == premium else cycle_mid
            if cycle is None or months < cycle:
                cycle = months
            if purchase is not None and purchase <= as_of and (last_touch is None or purchase > last_touch):
                last_touch = purchase
            if insured_here and expiry is not None and expiry >= as_of:
                insured = True
            label = model or UNKNOWN
            if label not in models:
                models.append(label)
            if tier not in tiers:
                tiers.append(tier)
        active = lapsed = False
        if last_touch is not None:
            if cycle is None:
                cycle = cycle_mid
            threshold = thresholds.get(cycle)
            if threshold is None:
                threshold = thresholds[cycle] = add_months(as_of, -2 * cycle)
            active = last_touch >= threshold
            lapsed = not active
        yield CustomerStatus(cid, last_touch, cycle, active, lapsed, insured), city, gender, birthday, models, tiers


def _store_id(conn, store_code: str | None) -> int | None:
    if store_code is None:
        return None
    store_id = conn.scalar(sa.select(Store.id).where(Store.code == store_code))
    if store_id is None:
        raise LookupError(f"unknown store {store_code!r}")
    return store_id


def classes_query(
    session: Session,
    as_of: dt.date,
    *,
    store_id: int | None = None,
    default_cycle_mid: int = 3,
    default_cycle_premium: int = 6,
) -> sa.Subquery:
    """The customers' classes as of ``as_of`` in SQL: the twin of :func:`classify_customers`.

    One row per customer who has a car or a paid visit (with ``store_id``: a car or a visit in
    that store, classified on that store's own, as the module says; prospects, in no class but the
    base, have no row or one in no class): ``customer_id``, ``last_touch``,
    ``latest_vehicle_id`` (the highest vehicle id, NULL without one) and the booleans ``active``,
    ``lapsed`` and ``insured``. Works on SQLite and PostgreSQL.

    It reads :class:`~callcenter.storage.models.CustomerTouch` (one row per customer, kept by
    triggers) rather than aggregating every visit and car. Its dates are the latest overall; for a
    customer with a visit or purchase after ``as_of`` the latest one on or before ``as_of`` is
    looked up from the customer's own rows (an index range), so any date gives the exact answer.

    A customer's cycle is the shortest among their cars' tiers, and a shorter cycle means a later
    two-cycle threshold, so "last touch before the threshold of the shortest cycle" is "before the
    threshold of at least one tier they own" (the mid tier when they own no car). The
    thresholds are calendar-month dates computed here per store with :func:`add_months`; the
    database only compares dates.
    """
    # A store's classes read the per-store summary (kept by the same kind of triggers, dms0001).
    t = CustomerTouch if store_id is None else CustomerStoreTouch
    visit_scope = [] if store_id is None else [ServiceVisit.store_id == store_id]
    car_scope = [] if store_id is None else [Vehicle.store_id == store_id]
    paid = sa.case(
        (sa.or_(t.last_paid_visit.is_(None), t.last_paid_visit <= as_of), t.last_paid_visit),
        else_=sa.select(sa.func.max(ServiceVisit.visit_date))
        .where(ServiceVisit.customer_id == t.customer_id, ServiceVisit.paid.is_(True),
               ServiceVisit.visit_date <= as_of, *visit_scope)
        .correlate(t).scalar_subquery(),
    )
    bought = sa.case(
        (sa.or_(t.last_purchase.is_(None), t.last_purchase <= as_of), t.last_purchase),
        else_=sa.select(sa.func.max(Vehicle.purchase_date))
        .where(Vehicle.customer_id == t.customer_id, Vehicle.purchase_date <= as_of, *car_scope)
        .correlate(t).scalar_subquery(),
    )
    stores = session.execute(sa.select(Store.id, Store.cycle_months_mid, Store.cycle_months_premium)).all()
    by_threshold: dict[tuple[dt.date, dt.date], list[int]] = defaultdict(list)
    for sid, mid, prem in stores:
        if store_id is None or sid == store_id:
            by_threshold[(add_months(as_of, -2 * (mid or default_cycle_mid)),
                          add_months(as_of, -2 * (prem or default_cycle_premium)))].append(sid)
    # Customers are joined only for a store condition: when every store has the same cycles (the
    # usual case) the classes need customer_touch alone, and PostgreSQL looked up 200,000 win-back
    # customers by primary key for nothing (0.3 s).
    inner = sa.select(t.customer_id, paid.label("paid"), bought.label("bought"), t.latest_vehicle_id, t.cars_mid,
                      t.cars_premium, t.insured_until)
    if store_id is not None:
        inner = inner.where(CustomerStoreTouch.store_id == store_id)
    elif len(by_threshold) > 1:
        inner = inner.add_columns(Customer.store_id).join(Customer, Customer.id == t.customer_id)
    inner = inner.subquery("touch")
    # The later of the two dates; either may be NULL (SQLite's two-argument max() is NULL then).
    last_touch = sa.case((inner.c.paid.is_(None), inner.c.bought), (inner.c.bought.is_(None), inner.c.paid),
                         (inner.c.paid > inner.c.bought, inner.c.paid), else_=inner.c.bought)
    owns_mid = sa.or_(inner.c.cars_mid > 0, inner.c.cars_premium == 0)  # no car on file: the mid-tier cycle
    owns_premium = inner.c.cars_premium > 0
    lapsed_in = [
        sa.and_(inner.c.store_id.in_(sids) if len(by_threshold) > 1 else sa.true(),
                sa.or_(sa.and_(owns_mid, last_touch < mid_threshold),
                       sa.and_(owns_premium, last_touch < premium_threshold)))
        for (mid_threshold, premium_threshold), sids in sorted(by_threshold.items())
    ]
    lapsed = sa.and_(last_touch.is_not(None), sa.or_(*lapsed_in) if lapsed_in else sa.false())
    return sa.select(
        inner.c.customer_id, last_touch.label("last_touch"), inner.c.latest_vehicle_id,
        sa.and_(last_touch.is_not(None), ~lapsed).label("active"), lapsed.label("lapsed"),
        sa.and_(inner.c.insured_until.is_not(None), inner.c.insured_until >= as_of).label("insured"),
    ).subquery("classes")


def customer_base_series(
    session: Session,
    dates: Iterable[dt.date],
    *,
    store_code: str | None = None,
    default_cycle_mid: int = 3,
    default_cycle_premium: int = 6,
) -> list[dict]:
    """Totals (base/active/lapsed/insured) at several dates, reading the database once.

    Same definitions as :func:`customer_base_stats`; for a 12-point trend this is one scan
    instead of twelve (the console's cold trend took 28-50 s point by point).

    Raises:
        LookupError: ``store_code`` names no store.
    """
    days = sorted(set(dates))
    if not days:
        return []
    last = days[-1]
    conn = session.connection()
    store_id = _store_id(conn, store_code)
    cust_q = sa.select(Customer.id, Store.cycle_months_mid, Store.cycle_months_premium).join(
        Store, Store.id == (Customer.store_id if store_id is None else store_id))
    veh_q = sa.select(Vehicle.customer_id, sa.type_coerce(Vehicle.tier, sa.String), Vehicle.purchase_date,
                      Vehicle.insured_here, Vehicle.insurance_expiry)
    visit_q = (sa.select(ServiceVisit.customer_id, ServiceVisit.visit_date)
               .where(ServiceVisit.paid.is_(True), ServiceVisit.visit_date <= last)
               .order_by(ServiceVisit.customer_id, ServiceVisit.visit_date))
    if store_id is not None:  # as in customer_base_stats: the store's customers on its own cars and visits
        cust_q = cust_q.where(customer_in_store(store_id))
        veh_q = veh_q.where(Vehicle.store_id == store_id)
        visit_q = visit_q.where(ServiceVisit.store_id == store_id)
    visits: dict[int, list[dt.date]] = defaultdict(list)
    for cid, day in conn.execute(visit_q):
        visits[cid].append(day)
    vehicles: dict[int, list] = defaultdict(list)
    for row in conn.execute(veh_q):
        vehicles[row[0]].append(row)
    totals = {d: [0, 0, 0, 0] for d in days}
    thresholds: dict[tuple[dt.date, int], dt.date] = {}
    premium = Tier.PREMIUM.value
    for cid, store_mid, store_premium in conn.execute(cust_q):
        cycle_mid = store_mid or default_cycle_mid
        cycle_premium = store_premium or default_cycle_premium
        owned = vehicles.get(cid, ())
        paid = visits.get(cid, ())
        for day in days:
            last_touch = None
            i = bisect_right(paid, day)
            if i:
                last_touch = paid[i - 1]
            cycle = None
            insured = False
            for _cid, tier, purchase, insured_here, expiry in owned:
                months = cycle_premium if tier == premium else cycle_mid
                if cycle is None or months < cycle:
                    cycle = months
                if purchase is not None and purchase <= day and (last_touch is None or purchase > last_touch):
                    last_touch = purchase
                if insured_here and expiry is not None and expiry >= day:
                    insured = True
            row = totals[day]
            row[0] += 1
            if last_touch is not None:
                key = (day, cycle or cycle_mid)
                threshold = thresholds.get(key)
                if threshold is None:
                    threshold = thresholds[key] = add_months(day, -2 * key[1])
                if last_touch >= threshold:
                    row[1] += 1
                else:
                    row[2] += 1
            row[3] += insured
    return [{"as_of": d.isoformat(), **dict(zip((c.value for c in CLASSES), totals[d]))} for d in days]
