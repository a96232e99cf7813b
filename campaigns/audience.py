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

Runs on the caller's thread; only reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from callcenter.domain import Gender, Tier
from callcenter.domain.dates import add_months
from callcenter.domain.phone import PhoneError, normalize_phone
from callcenter.storage.models import (
    Call,
    CallTask,
    Campaign,
    CampaignType,
    Customer,
    DoNotCall,
    ServiceVisit,
    Store,
    TaskState,
    Vehicle,
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
# Customer classes computed by customer_base are chunked so that no IN list exceeds
# SQLite's 32,766 bound parameters.
CLASSIFY_CHUNK = 20_000

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
    members: list[Member] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=lambda: {"dnc": 0, "frequency_cap": 0, "no_phone": 0})

    @property
    def size(self) -> int:
        return len(self.members)


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


def sample_key(seed: int, customer_id: int) -> bytes:
    """A stable pseudo-random sort key: the same sample on every run, engine and machine."""
    return hashlib.blake2b(f"{seed}:{customer_id}".encode(), digest_size=8).digest()


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _task_exists(ctype: CampaignType, *conds: sa.ColumnElement[bool]) -> sa.Exists:
    """EXISTS a not-cancelled task of a campaign of ``ctype`` matching ``conds``."""
    return (
        sa.select(sa.literal(1))
        .select_from(CallTask)
        .join(Campaign, Campaign.id == CallTask.campaign_id)
        .where(Campaign.type == ctype, CallTask.state != TaskState.CANCELLED, *conds)
        .exists()
    )


def _cycle_expr(default_mid: int, default_premium: int) -> sa.ColumnElement[int]:
    """The vehicle's maintenance cycle in months: its store's setting for its tier, or the default."""
    return sa.case(
        (Vehicle.tier == Tier.PREMIUM, sa.func.coalesce(Store.cycle_months_premium, default_premium)),
        else_=sa.func.coalesce(Store.cycle_months_mid, default_mid),
    )


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


_NULL_TYPES = {"vehicle_id": sa.Integer, "visit_id": sa.Integer, "visit_date": sa.Date, "days_left": sa.Integer,
               "sort_date": sa.Date}
# Which of a customer's matching rows to keep: the latest sort_date (True) or the earliest.
PREFER_LATEST = {CampaignType.POST_SERVICE: True, CampaignType.NEW_CAR: True}


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


def _new_car(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    parts = []
    scope = [Customer.store_id == q.store_id] if q.store_id is not None else []
    for touch in p["touches"]:
        done = ~_task_exists(CampaignType.NEW_CAR, CallTask.vehicle_id == Vehicle.id,
                             CallTask.context["touch"].as_string() == touch)
        if touch in NEW_CAR_TOUCHES:
            lo, hi = NEW_CAR_TOUCHES[touch]
            window = [Vehicle.purchase_date >= q.as_of - dt.timedelta(days=hi),
                      Vehicle.purchase_date <= q.as_of - dt.timedelta(days=lo)]
        else:
            # First maintenance due one cycle after purchase; touch 14..7 days before it, i.e. the
            # purchase date lies between (as_of + 7 days) and (as_of + 14 days) minus the cycle.
            cycle = _cycle_expr(q.cycle_mid, q.cycle_premium)
            alternatives = []
            for months in sorted(_cycles_in_use(session, q.store_id, q.cycle_mid, q.cycle_premium)):
                alternatives.append(sa.and_(
                    cycle == months,
                    Vehicle.purchase_date >= add_months(q.as_of + dt.timedelta(days=PRE_SERVICE_DAYS[1]), -months),
                    Vehicle.purchase_date <= add_months(q.as_of + dt.timedelta(days=PRE_SERVICE_DAYS[0]), -months),
                ))
            window = [sa.or_(*alternatives),
                      ~sa.exists().where(ServiceVisit.vehicle_id == Vehicle.id, ServiceVisit.paid.is_(True))]
        parts.append(
            sa.select(*_row(Vehicle.customer_id, Customer.store_id, Vehicle.id, touch=sa.literal(touch),
                            sort_date=Vehicle.purchase_date))
            .join(Customer, Customer.id == Vehicle.customer_id)
            .join(Store, Store.id == Customer.store_id)
            .where(Vehicle.purchase_date <= q.as_of, *window, done, *scope)
        )
    union = sa.union_all(*parts).subquery()
    return sa.select(*[union.c[c] for c in _COLUMNS])


def _maintenance_due(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    lead, overdue = p["lead_days"], p["overdue_days"]
    cycle = _cycle_expr(q.cycle_mid, q.cycle_premium)
    months_in_use = sorted(_cycles_in_use(session, q.store_id, q.cycle_mid, q.cycle_premium))
    scope = [Customer.store_id == q.store_id] if q.store_id is not None else []

    def due(column) -> sa.ColumnElement[bool]:
        # due date = last service + cycle months, within [as_of - overdue, as_of + lead]
        return sa.or_(*[
            sa.and_(cycle == m,
                    column >= add_months(q.as_of - dt.timedelta(days=overdue), -m),
                    column <= add_months(q.as_of + dt.timedelta(days=lead), -m))
            for m in months_in_use
        ])

    lo = add_months(q.as_of - dt.timedelta(days=overdue), -max(months_in_use))
    hi = add_months(q.as_of + dt.timedelta(days=lead), -min(months_in_use))
    later = aliased(ServiceVisit)

    def reminded_since(since) -> sa.Exists:
        return _task_exists(CampaignType.MAINTENANCE_DUE, CallTask.vehicle_id == Vehicle.id,
                            CallTask.created_at >= since)

    by_visit = (
        sa.select(*_row(Vehicle.customer_id, Customer.store_id, Vehicle.id, ServiceVisit.id, ServiceVisit.visit_date,
                        sa.cast(ServiceVisit.visit_type, sa.String), ServiceVisit.advisor,
                        sort_date=ServiceVisit.visit_date))
        .select_from(ServiceVisit)
        .join(Vehicle, Vehicle.id == ServiceVisit.vehicle_id)
        .join(Customer, Customer.id == Vehicle.customer_id)
        .join(Store, Store.id == Customer.store_id)
        .where(ServiceVisit.paid.is_(True), ServiceVisit.visit_date >= lo, ServiceVisit.visit_date <= hi,
               due(ServiceVisit.visit_date),
               ~sa.exists().where(later.vehicle_id == ServiceVisit.vehicle_id, later.visit_date > ServiceVisit.visit_date),
               ~reminded_since(ServiceVisit.visit_date), *scope)
    )
    # Never serviced: the purchase starts the cycle (the new-car plan's pre-service touch covers
    # the days before; this catches the ones who did not come).
    by_purchase = (
        sa.select(*_row(Vehicle.customer_id, Customer.store_id, Vehicle.id, sort_date=Vehicle.purchase_date))
        .join(Customer, Customer.id == Vehicle.customer_id)
        .join(Store, Store.id == Customer.store_id)
        .where(Vehicle.purchase_date >= lo, Vehicle.purchase_date <= hi, due(Vehicle.purchase_date),
               ~sa.exists().where(ServiceVisit.vehicle_id == Vehicle.id),
               ~reminded_since(Vehicle.purchase_date), *scope)
    )
    union = sa.union_all(by_visit, by_purchase).subquery()
    return sa.select(*[union.c[c] for c in _COLUMNS])  # the most overdue vehicle of a customer first


def _insurance_renewal(q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    touches = p["touch_days"]  # descending, e.g. 60, 30, 7
    parts = []
    scope = [Customer.store_id == q.store_id] if q.store_id is not None else []
    if p["insured"] == "here":
        scope.append(Vehicle.insured_here.is_(True))
    elif p["insured"] == "elsewhere":
        scope.append(Vehicle.insured_here.is_(False))
    recent = q.now - dt.timedelta(days=90)
    for i, days in enumerate(touches):
        floor = touches[i + 1] + 1 if i + 1 < len(touches) else 0  # (next touch, days]
        touch = f"{days}d"
        parts.append(
            sa.select(*_row(Vehicle.customer_id, Customer.store_id, Vehicle.id, touch=sa.literal(touch),
                            sort_date=Vehicle.insurance_expiry))
            .join(Customer, Customer.id == Vehicle.customer_id)
            .where(Vehicle.insurance_expiry >= q.as_of + dt.timedelta(days=floor),
                   Vehicle.insurance_expiry <= q.as_of + dt.timedelta(days=days),
                   ~_task_exists(CampaignType.INSURANCE_RENEWAL, CallTask.vehicle_id == Vehicle.id,
                                 CallTask.context["touch"].as_string() == touch, CallTask.created_at >= recent),
                   *scope)
        )
    union = sa.union_all(*parts).subquery()
    return sa.select(*[union.c[c] for c in _COLUMNS])


def _warranty_expiry(q: AudienceQuery, p: Mapping[str, Any]) -> sa.Select:
    scope = [Customer.store_id == q.store_id] if q.store_id is not None else []
    return (
        sa.select(*_row(Vehicle.customer_id, Customer.store_id, Vehicle.id, sort_date=Vehicle.warranty_end))
        .join(Customer, Customer.id == Vehicle.customer_id)
        .where(Vehicle.warranty_end >= q.as_of, Vehicle.warranty_end <= q.as_of + dt.timedelta(days=p["within_days"]),
               ~_task_exists(CampaignType.WARRANTY_EXPIRY, CallTask.vehicle_id == Vehicle.id), *scope)
    )


def _lapsed_ids(session: Session, q: AudienceQuery, recontact_days: int) -> set[int]:
    """Lapsed customers in scope, by customer_base's own classification.

    A customer with a paid visit or a purchase within two of the shortest cycle in use is
    active whatever their tier, so only the others are handed to the classifier (that
    pre-filter is sound: it never drops a lapsed customer; the classification is customer_base's).
    """
    from callcenter.customer_base import classify_customers

    shortest = min(_cycles_in_use(session, q.store_id, q.cycle_mid, q.cycle_premium))
    recent = add_months(q.as_of, -2 * shortest)
    conds = [
        ~sa.exists().where(ServiceVisit.customer_id == Customer.id, ServiceVisit.paid.is_(True),
                           ServiceVisit.visit_date >= recent, ServiceVisit.visit_date <= q.as_of),
        ~sa.exists().where(Vehicle.customer_id == Customer.id, Vehicle.purchase_date >= recent,
                           Vehicle.purchase_date <= q.as_of),
    ]
    if q.store_id is not None:
        conds.append(Customer.store_id == q.store_id)
    if recontact_days:
        since = q.now - dt.timedelta(days=recontact_days)
        conds.append(~_task_exists(CampaignType.WINBACK, CallTask.customer_id == Customer.id,
                                   CallTask.created_at >= since))
    candidates = session.scalars(sa.select(Customer.id).where(*conds).order_by(Customer.id)).all()
    lapsed: set[int] = set()
    for i in range(0, len(candidates), CLASSIFY_CHUNK):
        chunk = candidates[i:i + CLASSIFY_CHUNK]
        statuses = classify_customers(session, q.as_of, customer_ids=chunk,
                                      default_cycle_mid=q.cycle_mid, default_cycle_premium=q.cycle_premium)
        lapsed.update(cid for cid, st in statuses.items() if st.lapsed)
    return lapsed


def _classes_ids(session: Session, q: AudienceQuery, classes: Sequence[str],
                 candidates: Sequence[int]) -> set[int]:
    from callcenter.customer_base import classify_customers

    keep: set[int] = set()
    for i in range(0, len(candidates), CLASSIFY_CHUNK):
        chunk = candidates[i:i + CLASSIFY_CHUNK]
        statuses = classify_customers(session, q.as_of, customer_ids=chunk,
                                      default_cycle_mid=q.cycle_mid, default_cycle_premium=q.cycle_premium)
        keep.update(cid for cid, st in statuses.items() if any(getattr(st, c) for c in classes))
    return keep


def _recent_ids(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> list[int]:
    since = q.as_of - dt.timedelta(days=p["recent_days"])
    conds = [sa.exists().where(ServiceVisit.customer_id == Customer.id, ServiceVisit.paid.is_(True),
                               ServiceVisit.visit_date >= since, ServiceVisit.visit_date <= q.as_of)]
    if q.store_id is not None:
        conds.append(Customer.store_id == q.store_id)
    if p["recontact_days"]:
        conds.append(~_task_exists(CampaignType.NPS, CallTask.customer_id == Customer.id,
                                   CallTask.created_at >= q.now - dt.timedelta(days=p["recontact_days"])))
    return list(session.scalars(sa.select(Customer.id).where(*conds)))


def _sample(ids: Iterable[int], seed: int, *, share: float | None = None, size: int | None = None) -> list[int]:
    ordered = sorted(ids, key=lambda cid: sample_key(seed, cid))
    k = size if size is not None else round(len(ordered) * (share or 0.0))
    return sorted(ordered[:k])


# --------------------------------------------------------------------------- selection


def _candidates(session: Session, q: AudienceQuery, p: Mapping[str, Any]) -> tuple[sa.Select | None, dict]:
    """The rule's SELECT, or (None, {customer ids -> extra context}) for the rules decided in Python."""
    t = q.type
    if t is CampaignType.POST_SERVICE:
        return _post_service(q, p), {}
    if t is CampaignType.NEW_CAR:
        return _new_car(session, q, p), {}
    if t is CampaignType.MAINTENANCE_DUE:
        return _maintenance_due(session, q, p), {}
    if t is CampaignType.INSURANCE_RENEWAL:
        return _insurance_renewal(q, p), {}
    if t is CampaignType.WARRANTY_EXPIRY:
        return _warranty_expiry(q, p), {}
    if t is CampaignType.WINBACK:
        lapsed = _lapsed_ids(session, q, p["recontact_days"])
        surveyed = set(_sample(lapsed, p["seed"], share=p["reason_sample"]))
        return None, {cid: {"survey_reason": cid in surveyed} for cid in lapsed}
    if t is CampaignType.NPS:
        recent = _recent_ids(session, q, p)
        chosen = _sample(recent, p["seed"], share=p.get("sample"), size=p.get("sample_size"))
        return None, {cid: {} for cid in chosen}
    if t is CampaignType.CUSTOM:
        from campaigns.filters import filter_conditions

        spec = p["filter"]
        conds = filter_conditions(spec, q.as_of)
        if q.store_id is not None:
            conds.append(Customer.store_id == q.store_id)
        ids = list(session.scalars(sa.select(Customer.id).where(*conds).order_by(Customer.id)))
        if spec.get("classes"):
            keep = _classes_ids(session, q, spec["classes"], ids)
            ids = [cid for cid in ids if cid in keep]
        return None, {cid: {} for cid in ids}
    raise AudienceError(f"unknown campaign type {t!r}")


def _exclusion_columns(q: AudienceQuery, customer_id) -> list:
    dnc = sa.exists().where(DoNotCall.phone == Customer.phone).label("is_dnc")
    if q.frequency_cap_days > 0:
        since = q.now - dt.timedelta(days=q.frequency_cap_days)
        capped = sa.exists().where(Call.customer_id == customer_id, Call.robot.is_(True),
                                   Call.disposition == "answered", Call.started_at >= since).label("is_capped")
    else:
        capped = sa.false().label("is_capped")
    return [dnc, capped]


def select_audience(session: Session, q: AudienceQuery, params: Mapping[str, Any]) -> Audience:
    """Run the audience rule of ``q.type`` with validated ``params``; apply the exclusions.

    Raises:
        AudienceError: malformed parameters.
    """
    p = validate_audience_params(q.type, params)
    rule, extra = _candidates(session, q, p)
    audience = Audience()
    store_names = dict(session.execute(sa.select(Store.id, Store.name)).all())

    if rule is not None:
        sub = rule.subquery()
        stmt = (
            sa.select(sub, Customer.phone, Customer.name, Customer.gender,
                      Vehicle.model, Vehicle.brand, Vehicle.plate, Vehicle.purchase_date, Vehicle.warranty_end,
                      Vehicle.insurance_expiry, *_exclusion_columns(q, sub.c.customer_id))
            .join(Customer, Customer.id == sub.c.customer_id)
            .outerjoin(Vehicle, Vehicle.id == sub.c.vehicle_id)
            .order_by(sub.c.customer_id,
                      sub.c.sort_date.desc() if PREFER_LATEST.get(q.type) else sub.c.sort_date,
                      sub.c.visit_id.desc(), sub.c.vehicle_id)
        )
        rows = session.execute(stmt)
    else:
        rows = _rows_for_ids(session, q, sorted(extra))

    seen: set[int] = set()
    for row in rows:
        m = row._mapping
        cid = m["customer_id"]
        if cid in seen:
            continue
        seen.add(cid)
        try:
            phone = normalize_phone(m["phone"]) if m["phone"] else None
        except PhoneError:
            phone = None
        if phone is None:
            audience.excluded["no_phone"] += 1
            continue
        if m["is_dnc"]:
            audience.excluded["dnc"] += 1
            continue
        if m["is_capped"]:
            audience.excluded["frequency_cap"] += 1
            continue
        context = _context(m, store_names, q)
        if extra:
            context.update(extra.get(cid, {}))
        audience.members.append(Member(cid, m["store_id"], phone, m["vehicle_id"], m["visit_id"], context))
    return audience


def _rows_for_ids(session: Session, q: AudienceQuery, ids: list[int]) -> Iterable:
    """Rows shaped like a rule's for customers chosen in Python (their most recent vehicle)."""
    other = aliased(Vehicle)
    latest_vehicle = (
        sa.select(sa.func.max(other.id)).where(other.customer_id == Customer.id).correlate(Customer)
        .scalar_subquery()
    )
    for i in range(0, len(ids), CLASSIFY_CHUNK):
        chunk = ids[i:i + CLASSIFY_CHUNK]
        stmt = (
            sa.select(Customer.id.label("customer_id"), Customer.store_id.label("store_id"),
                      Vehicle.id.label("vehicle_id"), sa.null().label("visit_id"), sa.null().label("visit_date"),
                      sa.null().label("visit_type"), sa.null().label("advisor"), sa.null().label("touch"),
                      sa.null().label("days_left"), sa.null().label("sort_date"), Customer.phone, Customer.name, Customer.gender,
                      Vehicle.model, Vehicle.brand, Vehicle.plate, Vehicle.purchase_date, Vehicle.warranty_end,
                      Vehicle.insurance_expiry, *_exclusion_columns(q, Customer.id))
            .outerjoin(Vehicle, Vehicle.id == latest_vehicle)
            .where(Customer.id.in_(chunk))
            .order_by(Customer.id)
        )
        yield from session.execute(stmt)


def _context(m: Mapping[str, Any], store_names: Mapping[int, str], q: AudienceQuery) -> dict[str, Any]:
    """The script's variables for one task (what the dialog fills into its prompts)."""
    ctx: dict[str, Any] = {
        "customer_name": m["name"],
        "surname": surname_of(m["name"]),
        "title": title_of(m["gender"]),
        "store": store_names.get(m["store_id"], ""),
    }
    for key in ("model", "brand", "plate"):
        if m[key]:
            ctx[key] = m[key]
    if m["visit_date"] is not None:
        visit_date = m["visit_date"]
        if isinstance(visit_date, str):
            visit_date = dt.date.fromisoformat(visit_date)
        ctx["visit_date"] = visit_date.isoformat()
        ctx["visit_type"] = m["visit_type"]
        if m["advisor"]:
            ctx["advisor"] = m["advisor"]
    if m["touch"]:
        ctx["touch"] = m["touch"]
    if q.type is CampaignType.NEW_CAR and m["purchase_date"] is not None:
        ctx["purchase_date"] = _iso(m["purchase_date"])
    if q.type is CampaignType.INSURANCE_RENEWAL and m["insurance_expiry"] is not None:
        ctx["insurance_expiry"] = _iso(m["insurance_expiry"])
        ctx["days_left"] = (m["insurance_expiry"] - q.as_of).days
    if q.type is CampaignType.WARRANTY_EXPIRY and m["warranty_end"] is not None:
        ctx["warranty_end"] = _iso(m["warranty_end"])
        ctx["days_left"] = (m["warranty_end"] - q.as_of).days
    return ctx
