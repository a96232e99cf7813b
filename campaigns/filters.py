"""Saved filters over the customer base, for ``custom`` campaigns.

A filter is a small JSON/YAML mapping; every key narrows the audience (keys combine with AND,
list values with OR). It is validated strictly (an unknown key or a malformed value is an
error that names it) and stored in the campaign's params, so a campaign always shows what it
selected. Saved filters are files ``<data dir>/filters/<name>.yaml``. Turning a filter into SQL
is :func:`filter_conditions`; the customer-base classes (active, lapsed, insured) are applied
afterwards by ``campaigns.audience`` with :mod:`callcenter.customer_base`. Runs on the
caller's thread.

Example::

    cities: [长沙市]
    tiers: [premium]
    purchased_before: 2023-01-01
    last_paid_visit_before: 2026-05-01   # no paid visit since
    classes: [lapsed]
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from callcenter.domain import CustomerClass, Gender, Tier, VisitType
from callcenter.domain.dates import add_months
from callcenter.storage.models import Customer, ServiceVisit, Vehicle

FILTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_IDS = 10_000

_LIST_STR = ("cities", "districts", "occupations", "brands", "models")
_DATES = ("purchased_after", "purchased_before", "last_paid_visit_after", "last_paid_visit_before",
          "visited_after", "visited_before", "insurance_expiry_after", "insurance_expiry_before",
          "warranty_end_after", "warranty_end_before")
KEYS = (*_LIST_STR, *_DATES, "classes", "gender", "age_min", "age_max", "tiers", "visit_types",
        "insured_here", "customer_ids")


def _date(key: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"filter {key}: {value!r} is not a date (YYYY-MM-DD)") from None


def _str_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"filter {key}: expected a non-empty list of names")
    return [v.strip() for v in value]


def _choices(key: str, value: Any, enum_cls) -> list[str]:
    items = _str_list(key, value)
    allowed = [m.value for m in enum_cls]
    for item in items:
        if item not in allowed:
            raise ValueError(f"filter {key}: {item!r} is not one of {', '.join(allowed)}")
    return items


def validate_filter(spec: Any) -> dict[str, Any]:
    """A normalised copy of ``spec`` (JSON-ready: dates as ISO strings).

    Raises:
        TypeError: ``spec`` is not a mapping.
        ValueError: empty, an unknown key, or a malformed value (named).
    """
    if not isinstance(spec, Mapping):
        raise TypeError("a filter is a mapping of conditions, e.g. {\"cities\": [\"长沙市\"]}")
    if not spec:
        raise ValueError("the filter is empty: it would select every customer; name at least one condition")
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in KEYS:
            raise ValueError(f"filter: unknown key {key!r} (known: {', '.join(KEYS)})")
        if key in _LIST_STR:
            out[key] = _str_list(key, value)
        elif key in _DATES:
            out[key] = _date(key, value).isoformat()
        elif key == "classes":
            out[key] = _choices(key, value, CustomerClass)
            if CustomerClass.BASE.value in out[key]:
                out[key].remove(CustomerClass.BASE.value)  # every customer is in the base
        elif key == "gender":
            if value not in ("M", "F"):
                raise ValueError("filter gender: expected M or F")
            out[key] = value
        elif key in ("age_min", "age_max"):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 120:
                raise ValueError(f"filter {key}: expected a whole number of years between 0 and 120")
            out[key] = value
        elif key == "tiers":
            out[key] = _choices(key, value, Tier)
        elif key == "visit_types":
            out[key] = _choices(key, value, VisitType)
        elif key == "insured_here":
            if not isinstance(value, bool):
                raise ValueError("filter insured_here: expected true or false")
            out[key] = value
        elif key == "customer_ids":
            if (not isinstance(value, list) or not value or len(value) > MAX_IDS
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                raise ValueError(f"filter customer_ids: expected a list of 1 to {MAX_IDS} customer ids")
            out[key] = sorted(set(value))
    if "age_min" in out and "age_max" in out and out["age_min"] > out["age_max"]:
        raise ValueError("filter: age_min is greater than age_max")
    for a, b in (("purchased_after", "purchased_before"), ("visited_after", "visited_before"),
                 ("last_paid_visit_after", "last_paid_visit_before"),
                 ("insurance_expiry_after", "insurance_expiry_before"), ("warranty_end_after", "warranty_end_before")):
        if a in out and b in out and out[a] > out[b]:
            raise ValueError(f"filter: {a} is after {b}")
    return out


def load_filter(ref: str, data_dir: Path | None) -> dict[str, Any]:
    """A filter from inline JSON (``{...}``), a saved name (``<data dir>/filters/<name>.yaml``) or a file.

    Raises:
        ValueError: unreadable, not YAML/JSON, or invalid (see :func:`validate_filter`).
    """
    import yaml

    text: str
    if ref.lstrip().startswith("{"):
        text, where = ref, "inline filter"
    else:
        if FILTER_NAME_RE.match(ref) and data_dir is not None:
            path = None
            for suffix in (".yaml", ".yml", ".json"):
                candidate = Path(data_dir) / "filters" / f"{ref}{suffix}"
                if candidate.is_file():
                    path = candidate
                    break
            if path is None and not Path(ref).is_file():
                raise ValueError(f"no saved filter {ref!r} in {Path(data_dir) / 'filters'} and no such file")
            path = path or Path(ref)
        else:
            path = Path(ref)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read filter {ref!r}: {exc}") from None
        where = str(path)
    try:
        spec = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{where}: not valid JSON/YAML: {exc}") from None
    try:
        return validate_filter(spec)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def filter_conditions(spec: Mapping[str, Any], as_of: dt.date) -> list[sa.ColumnElement[bool]]:
    """SQL conditions on :class:`Customer` for a validated filter (classes excepted)."""
    conds: list[sa.ColumnElement[bool]] = []
    d = {k: dt.date.fromisoformat(v) for k, v in spec.items() if k in _DATES}
    if "cities" in spec:
        conds.append(Customer.city.in_(spec["cities"]))
    if "districts" in spec:
        conds.append(Customer.district.in_(spec["districts"]))
    if "occupations" in spec:
        conds.append(Customer.occupation.in_(spec["occupations"]))
    if "gender" in spec:
        conds.append(Customer.gender == Gender(spec["gender"]))
    if "age_min" in spec:  # at least N years old: born on or before as_of minus N years
        conds.append(Customer.birthday <= add_months(as_of, -12 * spec["age_min"]))
    if "age_max" in spec:  # at most N years old: born after as_of minus N+1 years
        conds.append(Customer.birthday > add_months(as_of, -12 * (spec["age_max"] + 1)))
    if "customer_ids" in spec:
        conds.append(Customer.id.in_(spec["customer_ids"]))

    vehicle: list[sa.ColumnElement[bool]] = []
    if "brands" in spec:
        vehicle.append(Vehicle.brand.in_(spec["brands"]))
    if "models" in spec:
        vehicle.append(Vehicle.model.in_(spec["models"]))
    if "tiers" in spec:
        vehicle.append(Vehicle.tier.in_([Tier(t) for t in spec["tiers"]]))
    if "insured_here" in spec:
        vehicle.append(Vehicle.insured_here.is_(spec["insured_here"]))
    for key, column, op in (("purchased_after", Vehicle.purchase_date, ">="),
                            ("purchased_before", Vehicle.purchase_date, "<="),
                            ("insurance_expiry_after", Vehicle.insurance_expiry, ">="),
                            ("insurance_expiry_before", Vehicle.insurance_expiry, "<="),
                            ("warranty_end_after", Vehicle.warranty_end, ">="),
                            ("warranty_end_before", Vehicle.warranty_end, "<=")):
        if key in d:
            vehicle.append(column >= d[key] if op == ">=" else column <= d[key])
    if vehicle:
        conds.append(sa.exists().where(Vehicle.customer_id == Customer.id, *vehicle))

    visit: list[sa.ColumnElement[bool]] = []
    if "visited_after" in d:
        visit.append(ServiceVisit.visit_date >= d["visited_after"])
    if "visited_before" in d:
        visit.append(ServiceVisit.visit_date <= d["visited_before"])
    if "visit_types" in spec:
        visit.append(ServiceVisit.visit_type.in_([VisitType(t) for t in spec["visit_types"]]))
    if visit:
        conds.append(sa.exists().where(ServiceVisit.customer_id == Customer.id, *visit))
    if "last_paid_visit_after" in d:  # a paid visit on or after the date
        conds.append(sa.exists().where(ServiceVisit.customer_id == Customer.id, ServiceVisit.paid.is_(True),
                                       ServiceVisit.visit_date >= d["last_paid_visit_after"]))
    if "last_paid_visit_before" in d:  # no paid visit after the date (but at least one before)
        conds.append(sa.exists().where(ServiceVisit.customer_id == Customer.id, ServiceVisit.paid.is_(True),
                                       ServiceVisit.visit_date <= d["last_paid_visit_before"]))
        conds.append(~sa.exists().where(ServiceVisit.customer_id == Customer.id, ServiceVisit.paid.is_(True),
                                        ServiceVisit.visit_date > d["last_paid_visit_before"]))
    return conds
