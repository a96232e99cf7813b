"""Who a campaign calls: one audience rule per campaign type, plus the exclusions every campaign applies.

Each rule is set-based SQL over the customer base (one query, indexed ranges, no per-customer
Python loops in the database), returning at most one row per customer; Python then only builds
each task's script variables. Exclusions, counted in this order so every customer counts once:
``no_phone`` (missing or not a dialable number), ``dnc`` (on the do-not-call list),
``frequency_cap`` (answered a robot call in the last N days, any campaign).

The rules, as of a date D (the campaign's ``as_of``):

``post_service``
    A service visit D-3 .. D-1 days ago (``window_days``, default [1, 3]) whose visit has no
    post-service task yet (a cancelled one does not count). The visit's store runs the call.
``new_car``
    The first three months after purchase (the seeds' touch plan): ``day3`` delivery follow-up
    (3-6 days after purchase), ``week2`` (14-20 days), ``month1`` (30-40 days) and
    ``pre_service`` (14 to 7 days before the first maintenance falls due, one tier cycle after
    purchase, while none has been done). Each touch once per vehicle.
``maintenance_due``
    The vehicle's last paid visit (or its purchase, if it never had one) was one maintenance
    cycle ago (3 months mid-tier, 6 premium; per store): due within ``lead_days`` (7) or overdue
    by at most ``overdue_days`` (30), no later visit, and no reminder since that visit.
``insurance_renewal``
    A policy expiring in 60, 30 or 7 days (``touch_days``): each touch when the days left fall
    in its range ((30, 60], (7, 30], [0, 7]), once per vehicle per touch within 90 days.
    ``insured``: ``all`` (default), ``here`` (retention) or ``elsewhere`` (conquest).
``warranty_expiry``
    Warranty ending within ``within_days`` (30): a free-check invitation, once per vehicle.
``winback``
    Lapsed customers (流失客户) exactly as :mod:`callcenter.customer_base` defines them, not
    called by a win-back campaign in the last ``recontact_days`` (90). A deterministic
    ``reason_sample`` share (15 %, the seeds' 10-15 %) gets the reason-for-leaving survey.
``nps``
    A deterministic random sample (``sample``: a share, default 0.1, or ``sample_size``) of
    customers with a paid visit in the last ``recent_days`` (90), not surveyed in 180 days.
``custom``
    A saved filter (:mod:`campaigns.filters`).

Stores (dealer groups): a campaign of one store selects that store's cars (their ``store_id``),
visits, and customers classified on that store's own cars and visits
(:mod:`callcenter.customer_base`); the store calls. A group-wide campaign selects over the group:
a car's or visit's task is its store's, a customer-level task (win-back, NPS, custom) the
customer's home store's, and win-back's lapsed customers are the group's (lapsed in every store
they use).

Runs on the caller's thread; only reads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from callcenter.domain import Gender, Tier
from callcenter.domain.dates import add_months
from callcenter.storage.models import (
    Call,
    CallTask,
    Campaign,
    CampaignType,
    Customer,
    CustomerStoreTouch,
    CustomerTouch,
    DoNotCall,
    ServiceVisit,
    Store,
    TaskState,
    Vehicle,
    customer_in_store,
)

logger = logging.getLogger(__name__)

NEW_CAR_TOUCHES: dict[str, tuple[int, int]] = {  # touch -> (first, last) day after purchase
    "day3": (3, 6),
    "week2": (14, 20),
    "month1": (30, 40),
}
PRE_SERVICE = "pre_service"
PRE_SERVICE_DAYS = (14, 7)  # from 14 to 7 days before the first maintenance falls due
ALL_TOUCHES = (*NEW_CAR_TOUCHES, PRE_SERVICE)
INSURANCE_TOUCHES = (60, 30, 7)

# Compound surnames common enough to get right when addressing a customer (欧阳先生).
_COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文",
                      "司徒", "夏侯", "轩辕", "端木", "独孤", "南宫", "西门", "百里")


class AudienceError(ValueError):
    """A campaign's audience parameters are wrong; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class Member:
    """One customer the campaign will call, with the script's variables."""

    customer_id: int
    store_id: int
    phone: str
    vehicle_id: int | None
    visit_id: int | None
    context: dict[str, Any]


@dataclass(slots=True)
class Audience:
    members: list[Member] = field(default_factory=list)  # loaded by select_audience only
    excluded: dict[str, int] = field(default_factory=lambda: {"dnc": 0, "frequency_cap": 0, "no_phone": 0})
    count: int | None = None  # from count_audience

    @property
    def size(self) -> int:
        return self.count if self.count is not None else len(self.members)


@dataclass(frozen=True, slots=True)
class AudienceQuery:
    """Everything a rule needs, resolved: type, date, scope, parameters, cycles, the clock."""

    type: CampaignType
    as_of: dt.date
    store_id: int | None
    params: Mapping[str, Any]
    now: dt.datetime  # naive UTC, for the frequency cap
    frequency_cap_days: int = 7
    cycle_mid: int = 3
    cycle_premium: int = 6


# --------------------------------------------------------------------------- parameters

AUDIENCE_PARAMS: dict[CampaignType, tuple[str, ...]] = {
    CampaignType.POST_SERVICE: ("window_days", "visit_types"),
    CampaignType.NEW_CAR: ("touches",),
    CampaignType.MAINTENANCE_DUE: ("lead_days", "overdue_days"),
    CampaignType.INSURANCE_RENEWAL: ("touch_days", "insured"),
    CampaignType.WARRANTY_EXPIRY: ("within_days",),
    CampaignType.WINBACK: ("reason_sample", "recontact_days", "seed"),
    CampaignType.NPS: ("sample", "sample_size", "recent_days", "recontact_days", "seed"),
    CampaignType.CUSTOM: ("filter",),
}


def _int(params: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise AudienceError(f"{key}: expected a whole number between {lo} and {hi}, got {value!r}")
    return value


def _share(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise AudienceError(f"{key}: expected a share between 0 and 1 (0.15 = 15 %), got {value!r}")
    return float(value)


def validate_audience_params(ctype: CampaignType, params: Mapping[str, Any]) -> dict[str, Any]:
    """The audience keys of ``params`` for ``ctype``, checked and with defaults filled in.

    Raises:
        AudienceError: a key that does not belong to this type, or a malformed value.
    """
    from campaigns.filters import validate_filter
    from campaigns.rules import DIAL_PARAMS

    allowed = AUDIENCE_PARAMS[ctype]
    for key in params:
        if key not in allowed and key not in DIAL_PARAMS:
            raise AudienceError(f"parameter {key!r} does not apply to {ctype.value} campaigns "
                                f"(audience: {', '.join(allowed)}; dialing: {', '.join(DIAL_PARAMS)})")
    out: dict[str, Any] = {}
    if ctype is CampaignType.POST_SERVICE:
        window = params.get("window_days", [1, 3])
        if (not isinstance(window, (list, tuple)) or len(window) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in window)
                or not 0 <= window[0] <= window[1] <= 30):
            raise AudienceError(f"window_days: expected [first, last] days after the visit, 0-30, got {window!r}")
        out["window_days"] = [window[0], window[1]]
        if params.get("visit_types") is not None:
            from callcenter.domain import VisitType

            types = params["visit_types"]
            if not isinstance(types, list) or not types or any(t not in [v.value for v in VisitType] for t in types):
                raise AudienceError(f"visit_types: expected a list of {', '.join(v.value for v in VisitType)}")
            out["visit_types"] = list(types)
    elif ctype is CampaignType.NEW_CAR:
        touches = params.get("touches", list(ALL_TOUCHES))
        if not isinstance(touches, list) or not touches or any(t not in ALL_TOUCHES for t in touches):
            raise AudienceError(f"touches: expected a list of {', '.join(ALL_TOUCHES)}, got {touches!r}")
        out["touches"] = [t for t in ALL_TOUCHES if t in touches]
    elif ctype is CampaignType.MAINTENANCE_DUE:
        out["lead_days"] = _int(params, "lead_days", 7, 0, 60)
        out["overdue_days"] = _int(params, "overdue_days", 30, 0, 180)
    elif ctype is CampaignType.INSURANCE_RENEWAL:
        days = params.get("touch_days", list(INSURANCE_TOUCHES))
        if (not isinstance(days, list) or not days
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 120 for v in days)
                or len(set(days)) != len(days)):
            raise AudienceError(f"touch_days: expected distinct days before expiry (0-120), got {days!r}")
        out["touch_days"] = sorted(days, reverse=True)
        insured = params.get("insured", "all")
        if insured not in ("all", "here", "elsewhere"):
            raise AudienceError(f"insured: expected all, here or elsewhere, got {insured!r}")
        out["insured"] = insured
    elif ctype is CampaignType.WARRANTY_EXPIRY:
        out["within_days"] = _int(params, "within_days", 30, 1, 180)
    elif ctype is CampaignType.WINBACK:
        out["reason_sample"] = _share(params, "reason_sample", 0.15)
        out["recontact_days"] = _int(params, "recontact_days", 90, 0, 730)
        out["seed"] = _int(params, "seed", 0, 0, 2**31)
    elif ctype is CampaignType.NPS:
        if "sample" in params and "sample_size" in params:
            raise AudienceError("give either sample (a share) or sample_size (a count), not both")
        if "sample_size" in params:
            out["sample_size"] = _int(params, "sample_size", 0, 1, 10_000_000)
        else:
            out["sample"] = _share(params, "sample", 0.1)
        out["recent_days"] = _int(params, "recent_days", 90, 1, 730)
        out["recontact_days"] = _int(params, "recontact_days", 180, 0, 730)
        out["seed"] = _int(params, "seed", 0, 0, 2**31)
    elif ctype is CampaignType.CUSTOM:
        if "filter" not in params:
            raise AudienceError("custom campaigns need a filter (--filter NAME|FILE|JSON)")
        try:
            out["filter"] = validate_filter(params["filter"])
        except (TypeError, ValueError) as exc:
            raise AudienceError(str(exc)) from None
    return out


# --------------------------------------------------------------------------- helpers


def surname_of(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        return ""
    for compound in _COMPOUND_SURNAMES:
        if name.startswith(compound) and len(name) > 2:
            return compound
    return name[0]


def title_of(gender: Gender | str | None) -> str:
    value = gender.value if isinstance(gender, Gender) else gender
    return {"M": "先生", "F": "女士"}.get(value or "", "")


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _task_exists(ctype: CampaignType, *conds: sa.ColumnElement[bool]) -> sa.Exists:
    """EXISTS a not-cancelled task of a campaign of ``ctype`` matching ``conds``."""
    # Driven from call_tasks by the caller's indexed condition (vehicle, visit or customer); the
    # campaign type is an IN over the small campaigns table. As a join, SQLite started from
    # campaigns and scanned call_tasks for every candidate row.
    return (
        sa.select(sa.literal(1))
        .select_from(CallTask)
        .where(*conds, CallTask.state != TaskState.CANCELLED,
               CallTask.campaign_id.in_(sa.select(Campaign.id).where(Campaign.type == ctype)))
        .exists()
    )


def _same_car() -> tuple[sa.ColumnElement[bool], ...]:
    """A task for the current ``Vehicle`` row. The customer condition gives the planner an index
    that is selective however the statistics look (tasks without a car have NULL vehicle_id)."""
    return (CallTask.customer_id == Vehicle.customer_id, CallTask.vehicle_id == Vehicle.id)


def _cycle_filter(session: Session, q: AudienceQuery, months: int) -> sa.ColumnElement[bool]:
    """Cars whose maintenance cycle is ``months``: the stores (the car's) and tiers that have it.

    Spelled out per store rather than as a CASE over a join with stores: PostgreSQL cannot estimate
    the CASE and hash-joined every car and customer for it (0.68 s over 100,000 customers). When
    every store has the tier's cycle (the usual case) the condition is the tier alone, so the rules
    need not join customers at all; PostgreSQL hashed all million customers for it (0.4 s).
    """
    conds = []
    rows = session.execute(sa.select(Store.id, Store.cycle_months_mid, Store.cycle_months_premium)).all()
    for tier, pick in ((Tier.MID, lambda mid, premium: mid or q.cycle_mid),
                       (Tier.PREMIUM, lambda mid, premium: premium or q.cycle_premium)):
        stores = [sid for sid, mid, premium in rows if pick(mid, premium) == months
                  and (q.store_id is None or sid == q.store_id)]
        if stores and q.store_id is None and len(stores) == len(rows):
            conds.append(Vehicle.tier == tier)
        elif stores:
            conds.append(sa.and_(Vehicle.tier == tier, Vehicle.store_id.in_(stores)))
    return sa.or_(*conds) if conds else sa.false()


def _cycles_in_use(session: Session, store_id: int | None, default_mid: int, default_premium: int) -> set[int]:
    q = sa.select(Store.cycle_months_mid, Store.cycle_months_premium)
    if store_id is not None:
        q = q.where(Store.id == store_id)
    cycles: set[int] = set()
    for mid, premium in session.execute(q):
        cycles.add(mid or default_mid)
        cycles.add(premium or default_premium)
    return cycles or {default_mid, default_premium}


# --------------------------------------------------------------------------- rules
# Each returns a SELECT with the labelled columns below (NULL where a rule has none). A customer
# may match several times (two visits, two cars); ``sort_date`` and PREFER_LATEST say which row
# to keep: the outer query orders by them (an ORDER BY inside a subquery means nothing in SQL).

_COLUMNS = ("customer_id", "store_id", "vehicle_id", "visit_id", "visit_date", "visit_type", "advisor",
            "touch", "days_left", "sort_date")


_NULL_TYPES = {"store_id": sa.Integer, "vehicle_id": sa.Integer, "visit_id": sa.Integer, "visit_date": sa.Date,
               "days_left": sa.Integer, "sort_date": sa.Date}
# Which of a customer's matching rows to keep: the latest sort_date (True) or the earliest.
PREFER_LATEST = {CampaignType.POST_SERVICE: True, CampaignType.NEW_CAR: True}
# Rules that select customers (one row each), so there is nothing to rank.
ONE_ROW_PER_CUSTOMER = frozenset({CampaignType.WINBACK, CampaignType.NPS, CampaignType.CUSTOM})


def _row(customer_id, store_id, vehicle_id=None, visit_id=None, visit_date=None, visit_type=None, advisor=None,
         touch=None, days_left=None, sort_date=None) -> list:
    values = (customer_id, store_id, vehicle_id, visit_id, visit_date, visit_type, advisor, touch, days_left,
              sort_date)
    return [
        (value if value is not None else sa.cast(sa.null(), _NULL_TYPES.get(name, sa.String))).label(name)
        for name, value in zip(_COLUMNS, values)
    ]


def _post_service(q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    first, last = p["window_days"]
    conds = [ServiceVisit.visit_date >= q.as_of - dt.timedelta(days=last),
             ServiceVisit.visit_date <= q.as_of - dt.timedelta(days=first),
             ~_task_exists(CampaignType.POST_SERVICE, CallTask.visit_id == ServiceVisit.id)]
    if p.get("visit_types"):
        from callcenter.domain import VisitType

        conds.append(ServiceVisit.visit_type.in_([VisitType(t) for t in p["visit_types"]]))
    if q.store_id is not None:
        conds.append(ServiceVisit.store_id == q.store_id)
    return (
        sa.select(*_row(ServiceVisit.customer_id, ServiceVisit.store_id, ServiceVisit.vehicle_id, ServiceVisit.id,
                        ServiceVisit.visit_date, sa.cast(ServiceVisit.visit_type, sa.String), ServiceVisit.advisor,
                        sort_date=ServiceVisit.visit_date))
        .where(*conds)
    )


def _car_scope(q: AudienceQuery) -> list[sa.ColumnElement[bool]]:
    """A store's campaign: its own cars (a customer's car of another store is that store's to call about)."""
    return [Vehicle.store_id == q.store_id] if q.store_id is not None else []


def _new_car(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    scope = _car_scope(q)
    windows: list[tuple[str, list[sa.ColumnElement[bool]]]] = []
    for touch in p["touches"]:
        if touch in NEW_CAR_TOUCHES:
            lo, hi = NEW_CAR_TOUCHES[touch]
            windows.append((touch, [Vehicle.purchase_date >= q.as_of - dt.timedelta(days=hi),
                                    Vehicle.purchase_date <= q.as_of - dt.timedelta(days=lo)]))
            continue
        # First maintenance due one cycle after purchase; touch 14..7 days before it, i.e. the
        # purchase date lies between (as_of + 7 days) and (as_of + 14 days) minus the cycle. One
        # narrow range per cycle length in use, so each is an index range on purchase_date.
        for months in sorted(_cycles_in_use(session, q.store_id, q.cycle_mid, q.cycle_premium)):
            windows.append((touch, [
                _cycle_filter(session, q, months),
                Vehicle.purchase_date >= add_months(q.as_of + dt.timedelta(days=PRE_SERVICE_DAYS[1]), -months),
                Vehicle.purchase_date <= add_months(q.as_of + dt.timedelta(days=PRE_SERVICE_DAYS[0]), -months),
                ~sa.exists().where(ServiceVisit.vehicle_id == Vehicle.id, ServiceVisit.paid.is_(True)),
            ]))
    parts = [
        sa.select(*_row(Vehicle.customer_id, Vehicle.store_id, Vehicle.id, touch=sa.literal(touch),
                        sort_date=Vehicle.purchase_date))
        .where(*window, Vehicle.purchase_date <= q.as_of, *scope,
               ~_task_exists(CampaignType.NEW_CAR, *_same_car(), CallTask.context["touch"].as_string() == touch))
        for touch, window in windows
    ]
    union = sa.union_all(*parts).subquery()
    return sa.select(*[union.c[c] for c in _COLUMNS])


def _maintenance_due(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    lead, overdue = p["lead_days"], p["overdue_days"]
    # No join with customers: the car carries its store.
    later = aliased(ServiceVisit)
    scope = _car_scope(q)

    def reminded_since(since) -> sa.Exists:
        return _task_exists(CampaignType.MAINTENANCE_DUE, *_same_car(), CallTask.created_at >= since)

    parts = []
    # One narrow range per cycle length in use (due date = last service + cycle, within
    # [as_of - overdue, as_of + lead]): a single range spanning all cycles read 3x the visits.
    for months in sorted(_cycles_in_use(session, q.store_id, q.cycle_mid, q.cycle_premium)):
        lo = add_months(q.as_of - dt.timedelta(days=overdue), -months)
        hi = add_months(q.as_of + dt.timedelta(days=lead), -months)
        parts.append(
            sa.select(*_row(Vehicle.customer_id, Vehicle.store_id, Vehicle.id, ServiceVisit.id,
                            ServiceVisit.visit_date, sa.cast(ServiceVisit.visit_type, sa.String), ServiceVisit.advisor,
                            sort_date=ServiceVisit.visit_date))
            .select_from(ServiceVisit)
            .join(Vehicle, Vehicle.id == ServiceVisit.vehicle_id)
            .where(ServiceVisit.visit_date >= lo, ServiceVisit.visit_date <= hi, ServiceVisit.paid.is_(True),
                   _cycle_filter(session, q, months), *scope,
                   ~sa.exists().where(later.vehicle_id == ServiceVisit.vehicle_id,
                                      later.visit_date > ServiceVisit.visit_date),
                   ~reminded_since(ServiceVisit.visit_date))
        )
        # Never serviced: the purchase starts the cycle (the new-car plan's pre-service touch
        # covers the days before; this catches the ones who did not come).
        parts.append(
            sa.select(*_row(Vehicle.customer_id, Vehicle.store_id, Vehicle.id, sort_date=Vehicle.purchase_date))
            .where(Vehicle.purchase_date >= lo, Vehicle.purchase_date <= hi, _cycle_filter(session, q, months), *scope,
                   ~sa.exists().where(ServiceVisit.vehicle_id == Vehicle.id),
                   ~reminded_since(Vehicle.purchase_date))
        )
    union = sa.union_all(*parts).subquery()
    return sa.select(*[union.c[c] for c in _COLUMNS])  # the most overdue car of a customer is kept


def _insurance_renewal(q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    touches = p["touch_days"]  # descending, e.g. 60, 30, 7
    parts = []
    scope = _car_scope(q)
    if p["insured"] == "here":
        scope.append(Vehicle.insured_here.is_(True))
    elif p["insured"] == "elsewhere":
        scope.append(Vehicle.insured_here.is_(False))
    recent = q.now - dt.timedelta(days=90)
    for i, days in enumerate(touches):
        floor = touches[i + 1] + 1 if i + 1 < len(touches) else 0  # (next touch, days]
        touch = f"{days}d"
        parts.append(
            sa.select(*_row(Vehicle.customer_id, Vehicle.store_id, Vehicle.id, touch=sa.literal(touch),
                            sort_date=Vehicle.insurance_expiry))
            .where(Vehicle.insurance_expiry >= q.as_of + dt.timedelta(days=floor),
                   Vehicle.insurance_expiry <= q.as_of + dt.timedelta(days=days),
                   ~_task_exists(CampaignType.INSURANCE_RENEWAL, *_same_car(),
                                 CallTask.context["touch"].as_string() == touch, CallTask.created_at >= recent),
                   *scope)
        )
    union = sa.union_all(*parts).subquery()
    return sa.select(*[union.c[c] for c in _COLUMNS])


def _warranty_expiry(q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    return (
        sa.select(*_row(Vehicle.customer_id, Vehicle.store_id, Vehicle.id, sort_date=Vehicle.warranty_end))
        .where(Vehicle.warranty_end >= q.as_of, Vehicle.warranty_end <= q.as_of + dt.timedelta(days=p["within_days"]),
               ~_task_exists(CampaignType.WARRANTY_EXPIRY, *_same_car()), *_car_scope(q))
    )


# --------------------------------------------------------------------------- customer-level rules
# winback, nps and custom choose customers, not visits or cars; the script gets the customer's
# most recent car. Everything stays in SQL: the customer-base classes come from
# callcenter.customer_base.classes_query, the NPS sample from a hash of the id. Classifying the
# candidates in Python (and sending 200,000 ids back in a temporary table) cost 8 s of CPU over a
# million customers.


def _customer_rule(q: AudienceQuery, *conds: sa.ColumnElement[bool]) -> sa.Select:
    """Customers matching ``conds``; a store's campaign calls about the customer's latest car there."""
    other = aliased(Vehicle)
    car_scope = [other.store_id == q.store_id] if q.store_id is not None else []
    latest_car = (sa.select(sa.func.max(other.id)).where(other.customer_id == Customer.id, *car_scope)
                  .correlate(Customer).scalar_subquery())
    return sa.select(*_row(Customer.id, _store_of(q), latest_car)).where(*conds)


def _store_of(q: AudienceQuery):
    """The calling store of a customer-level rule: the campaign's store, else the customer's home store."""
    return sa.literal(q.store_id, sa.Integer) if q.store_id is not None else Customer.store_id


def _classes(session: Session, q: AudienceQuery) -> sa.Subquery:
    from callcenter.customer_base import classes_query

    return classes_query(session, q.as_of, store_id=q.store_id, default_cycle_mid=q.cycle_mid,
                         default_cycle_premium=q.cycle_premium)


def _winback(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    """Lapsed customers (流失客户), exactly as :mod:`callcenter.customer_base` classifies them (its
    SQL twin, :func:`~callcenter.customer_base.classes_query`); tests/integration/campaigns checks
    that the result equals classify_customers' on the demo group."""
    classes = _classes(session, q)
    conds: list[sa.ColumnElement[bool]] = [classes.c.lapsed]
    if p["recontact_days"]:
        since = q.now - dt.timedelta(days=p["recontact_days"])
        conds.append(~_task_exists(CampaignType.WINBACK, CallTask.customer_id == classes.c.customer_id,
                                   CallTask.created_at >= since))
    # A store's campaign: lapsed in that store (on its own cars and visits); the group's: the
    # customer's home store calls (_source fills it in).
    store = sa.literal(q.store_id, sa.Integer) if q.store_id is not None else None
    return sa.select(*_row(classes.c.customer_id, store, classes.c.latest_vehicle_id)).where(*conds)


def _nps(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    since = q.as_of - dt.timedelta(days=p["recent_days"])
    # "A paid visit between since and as_of", read from customer_touch's latest paid visit (an
    # index range over it, ~390,000 of a million customers) rather than probing every customer's
    # visits: a latest visit on or before as_of answers alone; a later one (as_of in the past)
    # sends the check to the customer's own visits. Driving from customer_touch (not customers)
    # lets PostgreSQL sort only the candidates for the sample instead of all customers by key.
    # A store's survey: a paid visit in that store (its per-store summary, dms0001).
    t = CustomerTouch if q.store_id is None else CustomerStoreTouch
    in_store = [] if q.store_id is None else [ServiceVisit.store_id == q.store_id]
    conds = [t.last_paid_visit >= since,
             sa.or_(t.last_paid_visit <= q.as_of,
                    sa.exists().where(ServiceVisit.customer_id == t.customer_id, ServiceVisit.paid.is_(True),
                                      ServiceVisit.visit_date >= since, ServiceVisit.visit_date <= q.as_of,
                                      *in_store))]
    if q.store_id is not None:
        conds.append(CustomerStoreTouch.store_id == q.store_id)
    if p["recontact_days"]:
        conds.append(~_task_exists(CampaignType.NPS, CallTask.customer_id == t.customer_id,
                                   CallTask.created_at >= q.now - dt.timedelta(days=p["recontact_days"])))
    # The sample is drawn in SQL (first k by a hash of the id): fetching 390,000 candidate ids to
    # sort them in Python cost 1.5 s over a million customers.
    k = p.get("sample_size")
    if k is None:
        k = round(p["sample"] * session.scalar(sa.select(sa.func.count()).select_from(t).where(*conds)))
    chosen = (sa.select(t.customer_id.label("id")).where(*conds)
              .order_by(sample_key_sql(t.customer_id, p["seed"]), t.customer_id).limit(k).subquery("sample"))
    return _customer_rule(q, Customer.id.in_(sa.select(chosen.c.id)))


def _custom(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    from campaigns.filters import filter_conditions

    spec = p["filter"]
    conds = filter_conditions(spec, q.as_of)
    if q.store_id is not None:
        conds.append(customer_in_store(q.store_id))
    if spec.get("classes"):
        classes = _classes(session, q)
        keep = sa.or_(*[classes.c[c] for c in spec["classes"]])
        conds.append(Customer.id.in_(sa.select(classes.c.customer_id).where(keep)))
    return _customer_rule(q, *conds)


# --------------------------------------------------------------------------- selection


def _rule(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    t = q.type
    if t is CampaignType.POST_SERVICE:
        return _post_service(q, p)
    if t is CampaignType.NEW_CAR:
        return _new_car(session, q, p)
    if t is CampaignType.MAINTENANCE_DUE:
        return _maintenance_due(session, q, p)
    if t is CampaignType.INSURANCE_RENEWAL:
        return _insurance_renewal(q, p)
    if t is CampaignType.WARRANTY_EXPIRY:
        return _warranty_expiry(q, p)
    if t is CampaignType.WINBACK:
        return _winback(session, q, p)
    if t is CampaignType.NPS:
        return _nps(session, q, p)
    if t is CampaignType.CUSTOM:
        return _custom(session, q, p)
    raise AudienceError(f"unknown campaign type {t!r}")


def _exclusion_columns(q: AudienceQuery, customer_id) -> list:
    dnc = sa.exists().where(DoNotCall.phone == Customer.phone)
    if q.frequency_cap_days > 0:
        since = q.now - dt.timedelta(days=q.frequency_cap_days)
        capped = sa.exists().where(Call.customer_id == customer_id, Call.robot.is_(True),
                                   Call.disposition == "answered", Call.started_at >= since)
    else:
        capped = sa.false()
    return [dnc, capped]


# --------------------------------------------------------------------------- the audience in SQL
# Everything from here runs in the database: one row per customer (the rule's preferred row, by
# ROW_NUMBER), its exclusion category, and the script's variables built as JSON by the database
# (json_build_object on PostgreSQL, json_object on SQLite). Counting the audience is one GROUP BY;
# creating the tasks is one INSERT ... SELECT. A Python loop over 136,000 members cost 2.5 s of CPU.

OK = "ok"
# Numbers as the importer stores them (callcenter.domain.phone.normalize_phone's output).
_PHONE_RE = r"^(1[3-9][0-9]{9}|0[0-9]{2,3}-[2-9][0-9]{6,7})$"
_D = "[0-9]"
_PHONE_GLOBS = ("1[3-9]" + _D * 9, "0" + _D * 2 + "-[2-9]" + _D * 6, "0" + _D * 2 + "-[2-9]" + _D * 7,
                "0" + _D * 3 + "-[2-9]" + _D * 6, "0" + _D * 3 + "-[2-9]" + _D * 7)


def _dialable(phone, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return phone.op("~", return_type=sa.Boolean)(_PHONE_RE)
    return sa.or_(*[phone.op("GLOB", return_type=sa.Boolean)(g) for g in _PHONE_GLOBS])


def _iso_sql(column, dialect: str):
    """A date as 'YYYY-MM-DD' text (SQLite stores it so already)."""
    return sa.func.to_char(column, "YYYY-MM-DD") if dialect == "postgresql" else column


def _days_sql(column, as_of: dt.date, dialect: str):
    if dialect == "postgresql":
        return column - sa.cast(sa.literal(as_of.isoformat()), sa.Date)
    return sa.cast(sa.func.julianday(column) - sa.func.julianday(as_of.isoformat()), sa.Integer)


def _surname_sql(name):
    whens = [(sa.and_(name.like(f"{c}%"), sa.func.length(name) > 2), c) for c in _COMPOUND_SURNAMES]
    return sa.case(*whens, else_=sa.func.coalesce(sa.func.substr(name, 1, 1), ""))


def _json_sql(pairs: list[tuple[str, Any]], dialect: str):
    """A JSON object of ``pairs`` without the keys whose value is NULL (as the dialog expects)."""
    flat = [x for k, v in pairs for x in (sa.literal(k), v)]
    if dialect == "postgresql":
        return sa.func.json_strip_nulls(sa.func.json_build_object(*flat))
    # RFC 7396 merge patch: a null member removes the key.
    return sa.func.json_patch("{}", sa.func.json_object(*flat))


def _bool_sql(condition, dialect: str):
    if dialect == "postgresql":
        return condition
    return sa.case((condition, sa.func.json("true")), else_=sa.func.json("false"))


_PRIME = 4294967291  # the largest prime below 2**32


def _multiplier(seed: int) -> int:
    # Each seed its own multiplier, an odd multiple of Knuth's golden-ratio constant: adding the
    # seed would only rotate one ordering, and a nearby multiplier keeps small ids in the same order.
    m = 2654435761 * (2 * seed + 1) % _PRIME
    return m or 2654435761


def sample_key_sql(customer_id, seed: int):
    """A stable pseudo-random sort key in SQL: the same sample on every run, engine and machine
    (a multiplicative hash modulo a prime, in 64-bit integers; :func:`sample_key_int` is its twin)."""
    big = sa.BigInteger
    return (sa.cast(customer_id, big) * sa.literal(_multiplier(seed), big)) % sa.literal(_PRIME, big)


def sample_key_int(customer_id: int, seed: int) -> int:
    return customer_id * _multiplier(seed) % _PRIME


def _source(session: Session, q: AudienceQuery, p: Mapping[str, Any], rule_select: sa.Select, *,
            survey_k: int | None = None):
    """One row per customer: ids, store, phone, ``category`` (ok or an exclusion), ``context`` JSON."""
    dialect = session.get_bind().dialect.name
    rule = rule_select.subquery("rule")
    if q.type in ONE_ROW_PER_CUSTOMER:
        ranked = rule  # nothing to choose: ranking 200,000 win-back rows cost a sort for nothing
    else:
        latest = PREFER_LATEST.get(q.type)
        rank = sa.func.row_number().over(
            partition_by=rule.c.customer_id,
            order_by=[rule.c.sort_date.desc() if latest else rule.c.sort_date, rule.c.visit_id.desc(),
                      rule.c.vehicle_id],
        ).label("rank")
        ranked = sa.select(rule, rank).subquery("ranked")
    store_id = sa.func.coalesce(ranked.c.store_id, Customer.store_id)
    dnc, capped = _exclusion_columns(q, ranked.c.customer_id)
    category = sa.case(
        (sa.or_(Customer.phone.is_(None), ~_dialable(Customer.phone, dialect)), "no_phone"),
        (dnc, "dnc"),
        (capped, "frequency_cap"),
        else_=OK,
    )
    gender = sa.type_coerce(Customer.gender, sa.String)
    pairs: list[tuple[str, Any]] = [
        ("customer_name", Customer.name), ("surname", _surname_sql(Customer.name)),
        ("title", sa.case((gender == "M", "先生"), (gender == "F", "女士"), else_="")),
        ("store", sa.func.coalesce(Store.name, "")),
        ("model", sa.func.nullif(Vehicle.model, "")), ("brand", sa.func.nullif(Vehicle.brand, "")),
        ("plate", sa.func.nullif(Vehicle.plate, "")),
        ("visit_date", _iso_sql(ranked.c.visit_date, dialect)), ("visit_type", ranked.c.visit_type),
        ("advisor", sa.func.nullif(ranked.c.advisor, "")), ("touch", ranked.c.touch),
    ]
    if q.type is CampaignType.NEW_CAR:
        pairs.append(("purchase_date", _iso_sql(Vehicle.purchase_date, dialect)))
    elif q.type is CampaignType.INSURANCE_RENEWAL:
        pairs += [("insurance_expiry", _iso_sql(Vehicle.insurance_expiry, dialect)),
                  ("days_left", _days_sql(Vehicle.insurance_expiry, q.as_of, dialect))]
    elif q.type is CampaignType.WARRANTY_EXPIRY:
        pairs += [("warranty_end", _iso_sql(Vehicle.warranty_end, dialect)),
                  ("days_left", _days_sql(Vehicle.warranty_end, q.as_of, dialect))]
    stmt = (
        sa.select(ranked.c.customer_id, store_id.label("store_id"), ranked.c.vehicle_id, ranked.c.visit_id,
                  Customer.phone.label("phone"), category.label("category"),
                  sample_key_sql(ranked.c.customer_id, p.get("seed", 0)).label("key"),
                  *[v.label(f"v_{i}") for i, (_k, v) in enumerate(pairs)])
        .select_from(ranked)
        .join(Customer, Customer.id == ranked.c.customer_id)
        .outerjoin(Vehicle, Vehicle.id == ranked.c.vehicle_id)
        .outerjoin(Store, Store.id == store_id)
    )
    if ranked is not rule:
        stmt = stmt.where(ranked.c.rank == 1)
    # A store's campaign: each rule keeps to the store's own cars, visits and customers itself, before
    # a customer's rows are ranked (a customer may have cars in several stores).
    base = stmt.subquery("base")
    values = [(k, base.c[f"v_{i}"]) for i, (k, _v) in enumerate(pairs)]
    if survey_k is not None:  # win-back: the first k members by sample key get the reason survey
        order = sa.func.row_number().over(partition_by=base.c.category == OK, order_by=[base.c.key,
                                                                                     base.c.customer_id])
        values.append(("survey_reason", _bool_sql(sa.and_(base.c.category == OK, order <= survey_k), dialect)))
    return sa.select(base.c.customer_id, base.c.store_id, base.c.vehicle_id, base.c.visit_id, base.c.phone,
                     base.c.category, _json_sql(values, dialect).label("context")).subquery("audience")


def _tune(session: Session) -> None:
    """PostgreSQL settings for the selection, for the rest of the caller's transaction (SET LOCAL).

    JIT compilation of these wide CASE expressions cost 1.7 s of a 4.5 s win-back selection over a
    million customers (EXPLAIN ANALYZE) and saves nothing on queries this size; with the default
    4 MB of work_mem the hash joins over a million customers spilled to disk in 8 batches.
    """
    if session.get_bind().dialect.name == "postgresql":
        conn = session.connection()
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def _counts(session: Session, src) -> Audience:
    audience = Audience(count=0)
    for category, n in session.execute(sa.select(src.c.category, sa.func.count()).group_by(src.c.category)):
        if category == OK:
            audience.count = n
        else:
            audience.excluded[category] += n
    return audience


def count_audience(session: Session, q: AudienceQuery, params: Mapping[str, Any]) -> Audience:
    """The audience's size and exclusions, without loading its members (one GROUP BY).

    Raises:
        AudienceError: malformed parameters.
    """
    p = validate_audience_params(q.type, params)
    _tune(session)
    return _counts(session, _source(session, q, p, _rule(session, q, p)))


def select_audience(session: Session, q: AudienceQuery, params: Mapping[str, Any], *,
                    limit: int | None = None) -> Audience:
    """The audience with its members and their script variables (for previews and tests; campaigns
    use :func:`create_tasks`, which writes the same rows straight into ``call_tasks``). ``limit``
    loads only the first members (the console's preview); the counts are always whole.

    Raises:
        AudienceError: malformed parameters.
    """
    p = validate_audience_params(q.type, params)
    _tune(session)
    rule = _rule(session, q, p)
    audience = _counts(session, _source(session, q, p, rule))
    src = _source(session, q, p, rule, survey_k=_survey_k(q, p, audience.size))
    context = src.c.context
    if session.get_bind().dialect.name == "postgresql":
        context = sa.cast(context, sa.Text)
    rows = session.execute(
        sa.select(src.c.customer_id, src.c.store_id, src.c.phone, src.c.vehicle_id, src.c.visit_id, context)
        .where(src.c.category == OK).order_by(src.c.customer_id).limit(limit)
    )
    audience.members = [Member(cid, store, phone, car, visit, json.loads(ctx))
                        for cid, store, phone, car, visit, ctx in rows]
    return audience


def create_tasks(session: Session, q: AudienceQuery, params: Mapping[str, Any], campaign_id: int | None,
                 now: dt.datetime) -> Audience:
    """Count the audience and, when ``campaign_id`` is given and anyone is left, INSERT ... SELECT its
    members as ``pending`` tasks of that campaign. Returns the counts.

    Raises:
        AudienceError: malformed parameters.
    """
    p = validate_audience_params(q.type, params)
    _tune(session)
    rule = _rule(session, q, p)
    audience = _counts(session, _source(session, q, p, rule))
    if campaign_id is None or not audience.size:
        return audience
    src = _source(session, q, p, rule, survey_k=_survey_k(q, p, audience.size))
    columns = ["campaign_id", "customer_id", "vehicle_id", "visit_id", "store_id", "phone", "state", "attempts",
               "next_attempt_at", "context", "created_at", "updated_at"]
    select = sa.select(
        sa.literal(campaign_id), src.c.customer_id, src.c.vehicle_id, src.c.visit_id, src.c.store_id,
        src.c.phone, sa.literal(TaskState.PENDING.value), sa.literal(0), sa.literal(now, sa.DateTime),
        src.c.context, sa.literal(now, sa.DateTime), sa.literal(now, sa.DateTime),
    ).where(src.c.category == OK)
    inserted = session.connection().execute(sa.insert(CallTask.__table__).from_select(columns, select)).rowcount
    if inserted < 0:  # the driver did not say
        inserted = session.scalar(sa.select(sa.func.count()).select_from(CallTask)
                                  .where(CallTask.campaign_id == campaign_id))
    if inserted != audience.size:
        raise RuntimeError(f"inserted {inserted} tasks for an audience of {audience.size}")
    return audience


def _survey_k(q: AudienceQuery, p: Mapping[str, Any], size: int) -> int | None:
    return round(size * p["reason_sample"]) if q.type is CampaignType.WINBACK else None
