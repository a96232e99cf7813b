"""The figures behind the managers' reports, as plain data (JSON-serialisable, cacheable,
exportable). Pure functions of a session and their parameters; no Flask.

Definitions (shown to users on each report page and in docs/console.md):

- A **completed revisit call** is a call whose outcome is ``completed`` or ``partial``: the
  customer was reached and answered at least part of the script.
- A **feedback call** for a department is a completed revisit call with at least one tag of a
  problem category (any category but ``praise``) owned by that department. The **feedback rate**
  is feedback calls / completed revisit calls, per store and month; the seeds' benchmark is
  5 %, and a store at 0 % (with at least :data:`MIN_CALLS_FOR_FLAG` calls) is flagged: "a 0 %
  store is not the best store, its CRM did not get the customers' opinions".
- **Top-3 problems** per department and month rank problem categories by the number of completed
  revisit calls tagged with them; the share is of all problem tags of that department in the
  month; the change compares with the month before.
- **NPS** = % promoters (9-10) - % detractors (0-6) of the calls that recorded an NPS answer;
  shown with its number of answers and marked as a small sample below :data:`NPS_MIN_ANSWERS`.
- **Win-back return**: a customer reached by a ``winback`` campaign call who then had a paid visit
  within 4 calendar months after the call (first win-back call per customer in the period).
- An **improvement plan's problem rate** is the share of completed revisit calls tagged with its
  category, in the cycle before the plan and during the plan.

Months are calendar months in the group's time zone; calls store UTC times. Runs on the caller's
thread.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from callcenter.domain import Department, FeedbackCategory
from callcenter.domain.dates import add_months
from callcenter.storage.models import Call, CallOutcome, CallTag, Campaign, CampaignType, ServiceVisit, Store

BENCHMARK_FEEDBACK_RATE = 0.05
MIN_CALLS_FOR_FLAG = 20
COMPLETED = (CallOutcome.COMPLETED, CallOutcome.PARTIAL)
# Below this many answers an NPS is marked as a small sample: with 30 answers its 95 % margin is
# still about +-30 points (a single answer moves it by 3), so months and stores are not compared.
NPS_MIN_ANSWERS = 30
PRAISE = FeedbackCategory.PRAISE.value
WINBACK_MONTHS = 4


# -- months ----------------------------------------------------------------------------------


def parse_month(text: str | None, default: dt.date) -> dt.date:
    """``YYYY-MM`` -> the first day of that month (``default``'s month when junk or missing)."""
    try:
        year, month = (int(p) for p in (text or "").split("-"))
        return dt.date(year, month, 1)
    except (ValueError, TypeError):
        return default.replace(day=1)


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of the months from ``first``'s to ``last``'s, inclusive."""
    out, day = [], first.replace(day=1)
    while day <= last:
        out.append(day)
        day = add_months(day, 1)
    return out


def utc_bounds(first_day: dt.date, end_day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """[first_day 00:00, end_day 00:00) local -> naive UTC, as calls store their times."""
    zone = ZoneInfo(tz)

    def conv(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)

    return conv(first_day), conv(end_day)


def month_case(column, months: list[dt.date], tz: str):
    """A SQL expression naming the month (``YYYY-MM``) a UTC timestamp falls in (local time)."""
    whens = []
    for first in months:
        start, end = utc_bounds(first, add_months(first, 1), tz)
        whens.append((sa.and_(column >= start, column < end), month_key(first)))
    return sa.case(*whens, else_=None)


def _scope(query, column, store_id: int | None):
    return query if store_id is None else query.where(column == store_id)


def _stores(session: Session, store_id: int | None) -> dict[int, dict]:
    query = _scope(sa.select(Store.id, Store.code, Store.name), Store.id, store_id).order_by(Store.code)
    return {sid: {"id": sid, "code": code, "name": name} for sid, code, name in session.execute(query)}


# -- feedback rate ---------------------------------------------------------------------------


def feedback_rate(session: Session, first: dt.date, last: dt.date, *, tz: str, store_id: int | None = None) -> dict:
    """Feedback rate per store, department and month between two months (inclusive)."""
    months = months_between(first, last)
    start, end = utc_bounds(months[0], add_months(months[-1], 1), tz)
    mcase = month_case(Call.started_at, months, tz).label("month")
    base = sa.and_(Call.started_at >= start, Call.started_at < end, Call.outcome.in_(COMPLETED))
    completed: dict[tuple[str, int], int] = {}
    for month, sid, n in session.execute(_scope(
            sa.select(mcase, Call.store_id, sa.func.count()).where(base), Call.store_id, store_id)
            .group_by(mcase, Call.store_id)):
        completed[(month, sid)] = n
    by_dept: dict[tuple[str, int, str], int] = {}
    for month, sid, dept, n in session.execute(_scope(
            sa.select(mcase, Call.store_id, CallTag.department, sa.func.count(sa.distinct(Call.id)))
            .join(CallTag, CallTag.call_id == Call.id).where(base, CallTag.category != PRAISE),
            Call.store_id, store_id).group_by(mcase, Call.store_id, CallTag.department)):
        by_dept[(month, sid, dept)] = n
    any_dept: dict[tuple[str, int], int] = {}
    for month, sid, n in session.execute(_scope(
            sa.select(mcase, Call.store_id, sa.func.count(sa.distinct(Call.id)))
            .join(CallTag, CallTag.call_id == Call.id).where(base, CallTag.category != PRAISE),
            Call.store_id, store_id).group_by(mcase, Call.store_id)):
        any_dept[(month, sid)] = n
    stores = _stores(session, store_id)
    rows = []
    for month in (month_key(m) for m in months):
        for sid, store in stores.items():
            n = completed.get((month, sid), 0)
            fb = any_dept.get((month, sid), 0)
            row = {
                "month": month, "store": store["name"], "store_code": store["code"], "completed": n,
                "feedback": fb, "rate": fb / n if n else None,
                "departments": {d.value: {"feedback": by_dept.get((month, sid, d.value), 0),
                                          "rate": by_dept.get((month, sid, d.value), 0) / n if n else None}
                                for d in Department},
            }
            row["flag_zero"] = n >= MIN_CALLS_FOR_FLAG and fb == 0
            row["below_benchmark"] = row["rate"] is not None and row["rate"] < BENCHMARK_FEEDBACK_RATE
            rows.append(row)
    return {"months": [month_key(m) for m in months], "rows": rows, "benchmark": BENCHMARK_FEEDBACK_RATE,
            "min_calls_for_flag": MIN_CALLS_FOR_FLAG}


# -- top-3 problems --------------------------------------------------------------------------


def top_problems(session: Session, month: dt.date, *, tz: str, store_id: int | None = None, top: int = 3) -> dict:
    """Per department: the month's most frequent problem categories, share and change."""
    prev = add_months(month, -1)
    counts: dict[str, dict[tuple[str, str], int]] = {}
    completed: dict[str, int] = {}
    for label, first in (("this", month), ("prev", prev)):
        start, end = utc_bounds(first, add_months(first, 1), tz)
        base = sa.and_(Call.started_at >= start, Call.started_at < end, Call.outcome.in_(COMPLETED))
        query = (sa.select(CallTag.department, CallTag.category, sa.func.count(sa.distinct(Call.id)))
                 .join(Call, Call.id == CallTag.call_id).where(base, CallTag.category != PRAISE)
                 .group_by(CallTag.department, CallTag.category))
        counts[label] = {(d, c): n for d, c, n in session.execute(_scope(query, Call.store_id, store_id))}
        completed[label] = session.scalar(_scope(sa.select(sa.func.count()).select_from(Call).where(base),
                                                 Call.store_id, store_id)) or 0
    departments = []
    for dept in Department:
        this = {c: n for (d, c), n in counts["this"].items() if d == dept.value}
        prev_counts = {c: n for (d, c), n in counts["prev"].items() if d == dept.value}
        total = sum(this.values())
        ranked = sorted(this.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        items = []
        for rank, (category, n) in enumerate(ranked, start=1):
            before = prev_counts.get(category, 0)
            items.append({
                "rank": rank, "category": category, "count": n, "share": n / total if total else None,
                "rate": n / completed["this"] if completed["this"] else None,
                "previous": before, "change": n - before, "change_pct": (n - before) / before if before else None,
            })
        departments.append({"department": dept.value, "total": total, "items": items})
    return {"month": month_key(month), "previous_month": month_key(prev), "completed": completed["this"],
            "completed_previous": completed["prev"], "departments": departments}


# -- satisfaction and NPS --------------------------------------------------------------------


def satisfaction(session: Session, first: dt.date, last: dt.date, *, tz: str, store_id: int | None = None) -> dict:
    months = months_between(first, last)
    start, end = utc_bounds(months[0], add_months(months[-1], 1), tz)
    mcase = month_case(Call.started_at, months, tz).label("month")
    window = sa.and_(Call.started_at >= start, Call.started_at < end)
    dist: dict[str, dict[int, int]] = defaultdict(dict)
    for month, score, n in session.execute(_scope(
            sa.select(mcase, Call.score5, sa.func.count()).where(window, Call.score5.is_not(None)),
            Call.store_id, store_id).group_by(mcase, Call.score5)):
        dist[month][int(score)] = n
    nps_rows: dict[str, tuple[int, int, int]] = {}
    promoter = sa.func.sum(sa.case((Call.nps >= 9, 1), else_=0))
    detractor = sa.func.sum(sa.case((Call.nps <= 6, 1), else_=0))
    for month, p, d, n in session.execute(_scope(
            sa.select(mcase, promoter, detractor, sa.func.count()).where(window, Call.nps.is_not(None)),
            Call.store_id, store_id).group_by(mcase)):
        nps_rows[month] = (int(p or 0), int(d or 0), n)
    rows = []
    totals = {s: 0 for s in range(1, 6)}
    tp = td = tn = 0
    for month in (month_key(m) for m in months):
        scores = {s: dist.get(month, {}).get(s, 0) for s in range(1, 6)}
        n = sum(scores.values())
        p, d, k = nps_rows.get(month, (0, 0, 0))
        for s in scores:
            totals[s] += scores[s]
        tp, td, tn = tp + p, td + d, tn + k
        rows.append({
            # String keys: the figures go through JSON (cache, export) and must read the same after.
            "month": month, "answers": n, "distribution": {str(s): c for s, c in scores.items()},
            "average": sum(s * c for s, c in scores.items()) / n if n else None,
            "satisfied": (scores[4] + scores[5]) / n if n else None,
            "nps_answers": k, "promoters": p, "detractors": d, "nps": (p - d) * 100 / k if k else None,
        })
    n = sum(totals.values())
    return {
        "months": [month_key(m) for m in months], "rows": rows,
        "total": {"answers": n, "distribution": {str(s): c for s, c in totals.items()},
                  "average": sum(s * c for s, c in totals.items()) / n if n else None,
                  "satisfied": (totals[4] + totals[5]) / n if n else None,
                  "nps_answers": tn, "nps": (tp - td) * 100 / tn if tn else None},
    }


# -- win-back --------------------------------------------------------------------------------


def winback(session: Session, first: dt.date, last: dt.date, *, tz: str, today: dt.date,
            store_id: int | None = None) -> dict:
    """Lapsed customers reached by a win-back call, and how many came back within 4 months."""
    months = months_between(first, last)
    start, end = utc_bounds(months[0], add_months(months[-1], 1), tz)
    zone = ZoneInfo(tz)
    query = (sa.select(Call.customer_id, sa.func.min(Call.started_at))
             .join(Campaign, Campaign.id == Call.campaign_id)
             .where(Campaign.type == CampaignType.WINBACK, Call.outcome.in_(COMPLETED),
                    Call.started_at >= start, Call.started_at < end, Call.customer_id.is_not(None))
             .group_by(Call.customer_id))
    first_call: dict[int, dt.date] = {}
    for customer_id, at in session.execute(_scope(query, Call.store_id, store_id)):
        first_call[customer_id] = at.replace(tzinfo=dt.UTC).astimezone(zone).date()
    returned: dict[int, dt.date] = {}
    ids = list(first_call)
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        for customer_id, day in session.execute(
                sa.select(ServiceVisit.customer_id, ServiceVisit.visit_date)
                .where(ServiceVisit.customer_id.in_(chunk), ServiceVisit.paid.is_(True),
                       ServiceVisit.visit_date > min(first_call[c] for c in chunk))
                .order_by(ServiceVisit.visit_date)):
            called = first_call[customer_id]
            if called < day <= add_months(called, WINBACK_MONTHS) and customer_id not in returned:
                returned[customer_id] = day
    per_month: dict[str, dict] = {month_key(m): {"month": month_key(m), "reached": 0, "returned": 0, "open": 0}
                                  for m in months}
    for customer_id, called in first_call.items():
        row = per_month.get(month_key(called))
        if row is None:
            continue
        row["reached"] += 1
        if customer_id in returned:
            row["returned"] += 1
        elif add_months(called, WINBACK_MONTHS) >= today:
            row["open"] += 1  # the 4-month window is still running
    rows = list(per_month.values())
    for row in rows:
        row["rate"] = row["returned"] / row["reached"] if row["reached"] else None
    reached, back = sum(r["reached"] for r in rows), sum(r["returned"] for r in rows)
    return {"months": [month_key(m) for m in months], "rows": rows, "window_months": WINBACK_MONTHS,
            "total": {"reached": reached, "returned": back, "open": sum(r["open"] for r in rows),
                      "rate": back / reached if reached else None}}


# -- problem rate (improvement plans) --------------------------------------------------------


def problem_rate(session: Session, category: str, first_day: dt.date, end_day: dt.date, *, tz: str,
                 store_id: int | None = None) -> dict:
    """Share of completed revisit calls in [first_day, end_day) tagged with ``category``."""
    start, end = utc_bounds(first_day, end_day, tz)
    base = sa.and_(Call.started_at >= start, Call.started_at < end, Call.outcome.in_(COMPLETED))
    calls = session.scalar(_scope(sa.select(sa.func.count()).select_from(Call).where(base), Call.store_id, store_id))
    hits = session.scalar(_scope(
        sa.select(sa.func.count(sa.distinct(Call.id))).join(CallTag, CallTag.call_id == Call.id)
        .where(base, CallTag.category == category), Call.store_id, store_id))
    return {"from": first_day.isoformat(), "to": (end_day - dt.timedelta(days=1)).isoformat(),
            "calls": calls or 0, "hits": hits or 0, "rate": (hits / calls) if calls else None}


def compare_rates(before: dict, after: dict) -> dict:
    """Did the problem's rate fall? With a two-proportion z-test so that noise is not a success."""
    p1, p2, n1, n2 = before["rate"], after["rate"], before["calls"], after["calls"]
    if p1 is None or p2 is None:
        return {"improved": None, "change": None, "p_value": None, "significant": False}
    pooled = (before["hits"] + after["hits"]) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2)) if 0 < pooled < 1 else 0.0
    z = (p1 - p2) / se if se else 0.0
    p_value = 0.5 * math.erfc(z / math.sqrt(2))  # one-sided: the rate fell
    return {"improved": p2 < p1, "change": p2 - p1, "relative": (p2 - p1) / p1 if p1 else None,
            "p_value": p_value, "significant": p2 < p1 and p_value < 0.05}
