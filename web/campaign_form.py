"""The campaign form without JSON: each campaign type's own parameters as labelled fields, the
calling windows and holidays, channels and attempts, the script by its name; and the audience
preview with sample customers.

:func:`spec_from_form` turns the form into a :class:`campaigns.service.CampaignSpec` and a
message per wrong field (in the reader's language, next to the field); the service validates
again, so nothing the form lets through can create a broken campaign. Runs on the request's
worker thread.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask_babel import gettext as _

from callcenter.domain import VisitType
from callcenter.storage.models import CampaignType, Customer, Store
from web.labels import label
from web.services import db, settings

SAMPLE_SIZE = 10
# How far from today the audience's "as of" day may be: a year of past work to catch up on (the
# reports' span), a year ahead for renewals and warranty ends planned early.
AS_OF_BEFORE = dt.timedelta(days=366)
AS_OF_AFTER = dt.timedelta(days=366)


@dataclass(frozen=True)
class Param:
    """One labelled field of a campaign type."""

    name: str  # form field: p_<type>_<name>
    label: str
    kind: str  # int | percent | days_list | choice | checks
    default: object
    lo: int = 0
    hi: int = 0
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""


def type_params() -> dict[str, list[Param]]:
    """The fields of each campaign type (defaults as campaigns.audience applies them)."""
    touches = (("day3", _("3-6 days after purchase")), ("week2", _("14-20 days after purchase")),
               ("month1", _("30-40 days after purchase")), ("pre_service", _("before the first maintenance")))
    return {
        CampaignType.POST_SERVICE.value: [
            Param("window_first", _("Call from this many days after the visit"), "int", 1, 0, 30),
            Param("window_last", _("until this many days after the visit"), "int", 3, 0, 30),
            Param("visit_types", _("Visit types (none ticked: all)"), "checks", [],
                  choices=tuple((v.value, label(v)) for v in VisitType)),
        ],
        CampaignType.NEW_CAR.value: [
            Param("touches", _("Touch points"), "checks", [t for t, _l in touches], choices=touches),
        ],
        CampaignType.MAINTENANCE_DUE.value: [
            Param("lead_days", _("Remind this many days before maintenance is due"), "int", 7, 0, 60),
            Param("overdue_days", _("and up to this many days overdue"), "int", 30, 0, 180),
        ],
        CampaignType.INSURANCE_RENEWAL.value: [
            Param("touch_days", _("Days before the policy expires (comma separated)"), "days_list", "60,30,7", 0, 120),
            Param("insured", _("Policies"), "choice", "all",
                  choices=(("all", _("all")), ("here", _("insured with us")), ("elsewhere", _("insured elsewhere")))),
        ],
        CampaignType.WARRANTY_EXPIRY.value: [
            Param("within_days", _("Warranty ends within this many days"), "int", 30, 1, 180),
        ],
        CampaignType.WINBACK.value: [
            Param("reason_sample", _("Ask why they left: share of customers (%)"), "percent", 15, 0, 100),
            Param("recontact_days", _("Not won back or called in the last days"), "int", 90, 0, 730),
        ],
        CampaignType.NPS.value: [
            Param("sample", _("Sample rate (%)"), "percent", 10, 0, 100),
            Param("sample_size", _("or a fixed number of customers"), "int", "", 1, 10_000_000),
            Param("recent_days", _("Paid visit within the last days"), "int", 90, 1, 730),
            Param("recontact_days", _("Not surveyed within the last days"), "int", 180, 0, 730),
        ],
        CampaignType.CUSTOM.value: [
            Param("filter", _("Saved customer filter"), "choice", "", choices=tuple((n, n) for n in saved_filters())),
        ],
    }


def saved_filters() -> list[str]:
    folder = Path(settings().data_dir) / "filters"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())


def field_name(ctype: str, name: str) -> str:
    return f"p_{ctype}_{name}"


def script_names() -> dict[str, str]:
    """Script id -> its name (售后服务回访 ...), for the script select."""
    from web.scripts import display_name, list_scripts

    return {found.id: display_name(found.id) for found in list_scripts()}


def spec_from_form(form, stores: list[Store], scoped_store: int | None, user_id: int):
    """The campaign the form asks for, and a message per wrong field (empty when all is well).

    Returns:
        ``(spec or None, errors)``: field name -> message.
    """
    from campaigns.rules import format_windows, parse_windows
    from campaigns.service import CampaignSpec

    errors: dict[str, str] = {}
    ctype = form.get("type", "")
    if ctype not in {t.value for t in CampaignType}:
        errors["type"] = _("Choose a campaign type.")
        return None, errors
    code = form.get("store") or None
    if scoped_store is not None:
        code = stores[0].code if stores else None
    elif code is not None and code not in {s.code for s in stores}:
        errors["store"] = _("Unknown store.")
    as_of = None
    if form.get("as_of"):
        try:
            as_of = dt.date.fromisoformat(form["as_of"].strip())
        except ValueError:
            errors["as_of"] = _("Not a date (YYYY-MM-DD).")
        else:
            # The audience is who is due around that day; far off it is nobody (and at year 1 the
            # date arithmetic overflowed into a 500).
            first, last = dt.date.today() - AS_OF_BEFORE, dt.date.today() + AS_OF_AFTER
            if not first <= as_of <= last:
                errors["as_of"] = _("A date from %(first)s to %(last)s.", first=first.isoformat(),
                                    last=last.isoformat())
    params: dict[str, object] = {}
    for p in type_params()[ctype]:
        key = field_name(ctype, p.name)
        raw = (form.get(key) or "").strip() if p.kind != "checks" else None
        if p.kind == "int":
            if raw == "":
                continue
            if not raw.isdecimal() or not p.lo <= int(raw) <= p.hi:  # isdigit() lets "²" through to int()
                errors[key] = _("A whole number from %(lo)s to %(hi)s.", lo=p.lo, hi=p.hi)
            else:
                params[p.name] = int(raw)
        elif p.kind == "percent":
            if raw == "":
                continue
            try:
                value = float(raw.rstrip("%"))
                if not p.lo <= value <= p.hi:
                    raise ValueError
                params[p.name] = round(value / 100, 4)
            except ValueError:
                errors[key] = _("A percentage from %(lo)s to %(hi)s.", lo=p.lo, hi=p.hi)
        elif p.kind == "days_list":
            parts = [x.strip() for x in re.split(r"[,，、\s]+", raw) if x.strip()]
            if not parts or not all(x.isdecimal() and p.lo <= int(x) <= p.hi for x in parts) \
                    or len(set(parts)) != len(parts):
                errors[key] = _("Different whole numbers of days from %(lo)s to %(hi)s, e.g. 60,30,7.",
                                lo=p.lo, hi=p.hi)
            else:
                params[p.name] = [int(x) for x in parts]
        elif p.kind == "choice":
            allowed = {c for c, _l in p.choices}
            if raw not in allowed:
                errors[key] = _("Choose one of the options.") if allowed else _("No saved filter exists yet.")
            else:
                params[p.name] = raw
        elif p.kind == "checks":
            ticked = [v for v in form.getlist(key) if v in {c for c, _l in p.choices}]
            if ticked:
                params[p.name] = ticked
            elif p.name == "touches":
                errors[key] = _("Tick at least one touch point.")
    if ctype == CampaignType.POST_SERVICE.value:
        first, last = params.pop("window_first", 1), params.pop("window_last", 3)
        if first > last:
            errors[field_name(ctype, "window_last")] = _("The last day cannot be before the first.")
        params["window_days"] = [first, last]
    if ctype == CampaignType.NPS.value and "sample_size" in params:
        params.pop("sample", None)
    if ctype == CampaignType.CUSTOM.value and "filter" in params:
        from campaigns.filters import load_filter

        try:
            params["filter"] = load_filter(str(params["filter"]), settings().data_dir)
        except (OSError, ValueError) as exc:
            errors[field_name(ctype, "filter")] = _("The saved filter cannot be used: %(why)s", why=str(exc))
    windows = (form.get("windows") or "").strip().replace("，", ",").replace("：", ":")
    if windows:
        try:
            params["windows"] = format_windows(parse_windows(windows))
        except ValueError:
            errors["windows"] = _("Write the windows as 09:00-12:00,14:00-20:00 (start before end, no overlaps).")
    if form.get("holidays_set"):
        params["holidays"] = form.get("holidays") == "1"
    channels = (form.get("max_channels") or "4").strip()
    if not channels.isdecimal() or not 1 <= int(channels) <= 256:
        errors["max_channels"] = _("A whole number from %(lo)s to %(hi)s.", lo=1, hi=256)
    attempts = (form.get("max_attempts") or "").strip()
    if attempts and (not attempts.isdecimal() or not 1 <= int(attempts) <= 10):
        errors["max_attempts"] = _("A whole number from %(lo)s to %(hi)s.", lo=1, hi=10)
    script = form.get("script") or None
    if script is not None and script not in script_names():
        errors["script"] = _("Unknown script.")
    if ctype == CampaignType.CUSTOM.value and script is None:
        errors["script"] = _("A custom campaign needs a script.")
    name = (form.get("name") or "").strip()
    if len(name) > 100:
        errors["name"] = _("At most 100 characters.")
    if errors:
        return None, errors
    return CampaignSpec(
        type=ctype, as_of=as_of, store=code, name=name or None, script=script, params=params,
        max_channels=int(channels), max_attempts=int(attempts) if attempts else None, created_by=user_id,
    ), errors


def sample_customers(spec, store_id: int | None) -> list[dict]:
    """Up to :data:`SAMPLE_SIZE` customers the campaign would call, with what the robot would use."""
    from campaigns.audience import AudienceQuery, select_audience, validate_audience_params
    from campaigns.rules import default_policy, dial_policy, validate_dial_params

    ctype = CampaignType(spec.type)
    params = {**validate_dial_params(spec.params), **validate_audience_params(ctype, spec.params)}
    policy = dial_policy(default_policy(settings()), params, max_channels=spec.max_channels, max_attempts=3)
    query = AudienceQuery(type=ctype, as_of=spec.as_of or dt.date.today(), store_id=store_id, params=params,
                          now=dt.datetime.now(dt.UTC).replace(tzinfo=None), frequency_cap_days=policy.frequency_cap_days,
                          cycle_mid=settings().cycle_months_mid, cycle_premium=settings().cycle_months_premium)
    audience = select_audience(db(), query, params, limit=SAMPLE_SIZE)
    members = audience.members[:SAMPLE_SIZE]
    db().rollback()  # select_audience tunes the session (SET LOCAL); nothing to keep
    names = dict(db().execute(sa.select(Customer.id, Customer.name)
                              .where(Customer.id.in_([m.customer_id for m in members]))).all())
    return [{"id": m.customer_id, "name": names.get(m.customer_id, ""), "phone": m.phone,
             "context": m.context} for m in members]
