"""Managers' reports, each on a page with ECharts charts and as CSV/XLSX downloads: customer base
with trend, feedback rate against the 5 % benchmark, monthly top-3 problems per department,
satisfaction and NPS, win-back returns. The figures come from :mod:`web.reporting` (calls) and
:mod:`callcenter.customer_base` (the seeds' customer classes), through :mod:`web.cache`.

Supervisors see their store; group-wide users choose a store or the whole group. Every
download is audited. Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, abort, jsonify, render_template, request
from flask_babel import gettext as _

from callcenter.customer_base import customer_base_series, customer_base_stats
from callcenter.domain import CustomerClass, Department, Role
from callcenter.domain.dates import add_months
from callcenter.storage.models import Store
from web import audit, reporting
from web.cache import cache_key, cached, peek
from web.cache import store as cache_store
from web.export import Table, respond
from web.labels import label, of
from web.security import require, scoped_store_id
from web.services import db, settings
from web.views import today

bp = Blueprint("reports", __name__, url_prefix="/reports")

# Figures of the current period may change as calls come in; five minutes old is fresh enough
# for a monthly report (the page shows the time and offers a refresh).
TTL_SECONDS = 300
# Month-end customer-base snapshots of past months change only when old data is re-imported (the
# API clears every cached figure when it stores data); each costs a full classification of the
# customer base (about 1.5-4 s at 100,000 customers), so they are kept a day.
TREND_TTL_SECONDS = 24 * 3600
CLASSES = [c.value for c in CustomerClass]


def chosen_store() -> Store | None:
    """The store the report is about: forced by the user's scope, else the ``store`` argument."""
    scope = scoped_store_id()
    requested = request.args.get("store", type=int)
    if scope is not None:
        return db().get(Store, scope)
    if requested:
        store = db().get(Store, requested)
        if store is None:
            abort(404)
        return store
    return None


def stores_for_filter() -> list[Store]:
    if scoped_store_id() is not None:
        return []
    return list(db().scalars(sa.select(Store).order_by(Store.code)))


def period() -> tuple[dt.date, dt.date]:
    """``from``/``to`` months (YYYY-MM), default the last six months up to this one."""
    this_month = today().replace(day=1)
    last = reporting.parse_month(request.args.get("to"), this_month)
    first = reporting.parse_month(request.args.get("from"), add_months(last, -5))
    if first > last:
        first, last = last, first
    if len(reporting.months_between(first, last)) > 36:
        first = add_months(last, -35)
    return first, last


def figures(name: str, params: dict, compute):
    """Cached figures plus when they were computed; ``?refresh=1`` recomputes."""
    key = cache_key(name, params)
    value, at = cached(key, TTL_SECONDS, compute, refresh=request.args.get("refresh") == "1")
    return value, dt.datetime.fromtimestamp(at, dt.UTC).replace(tzinfo=None)


def export_requested() -> str | None:
    fmt = request.args.get("format")
    return fmt if fmt in ("csv", "xlsx") else None


def export(fmt: str, report: str, tables: list[Table], store: Store | None):
    audit.record("export", "report", report, store_id=store.id if store else None, commit=True,
                 format=fmt, args=request.query_string.decode()[:300])
    suffix = store.code if store else "all"
    return respond(fmt, tables, f"{report}-{suffix}-{today().isoformat()}")


@bp.context_processor
def _report_constants() -> dict:
    return {"nps_min": reporting.NPS_MIN_ANSWERS}


def common(store: Store | None, computed_at: dt.datetime) -> dict:
    return {"store": store, "stores": stores_for_filter(), "computed_at": computed_at}


# -- overview --------------------------------------------------------------------------------


@bp.get("/")
@require(Role.SUPERVISOR, managers=True)
def index():
    store = chosen_store()
    tz = settings().timezone
    month = today().replace(day=1)
    sid = store.id if store else None

    def compute():
        fb = reporting.feedback_rate(db(), month, month, tz=tz, store_id=sid)
        sat = reporting.satisfaction(db(), add_months(month, -5), month, tz=tz, store_id=sid)
        top = reporting.top_problems(db(), month, tz=tz, store_id=sid)
        win = reporting.winback(db(), add_months(month, -11), month, tz=tz, today=today(), store_id=sid)
        completed = sum(r["completed"] for r in fb["rows"])
        feedback = sum(r["feedback"] for r in fb["rows"])
        return {"completed": completed, "feedback": feedback, "rate": feedback / completed if completed else None,
                "zero_stores": [r["store"] for r in fb["rows"] if r["flag_zero"]],
                "satisfaction": sat["total"], "sat_rows": sat["rows"], "top": top["departments"],
                "winback": win["total"]}

    data, at = figures("overview", {"store": sid, "month": reporting.month_key(month)}, compute)
    chart = _satisfaction_chart(data["sat_rows"])
    return render_template("reports/index.html", data=data, month=reporting.month_key(month), chart=chart,
                           benchmark=reporting.BENCHMARK_FEEDBACK_RATE, **common(store, at))


# -- customer base ---------------------------------------------------------------------------


def _base_stats(store: Store | None, as_of: dt.date) -> dict:
    s = settings()
    stats = customer_base_stats(db(), as_of, store_code=store.code if store else None,
                                default_cycle_mid=s.cycle_months_mid, default_cycle_premium=s.cycle_months_premium)
    stats.pop("store", None)
    return stats


@bp.get("/customer-base")
@require(Role.SUPERVISOR, managers=True)
def customer_base():
    store = chosen_store()
    try:
        as_of = dt.date.fromisoformat(request.args.get("as_of", ""))
    except ValueError:
        as_of = today()
    as_of = min(as_of, today())
    stats, at = figures("customer_base", {"store": store.id if store else None, "as_of": as_of.isoformat()},
                        lambda: _base_stats(store, as_of))
    breakdowns = [("by_city", _("City")), ("by_model", _("Model")), ("by_tier", _("Tier")),
                  ("by_gender", _("Gender")), ("by_age_band", _("Age band"))]
    if fmt := export_requested():
        cols = [("value", _("Value"))] + [(c, label(CustomerClass(c))) for c in CLASSES]
        tables = [Table(_("Totals"), [("as_of", _("As of"))] + cols[1:], [{"as_of": as_of.isoformat(), **{
            c: stats[c] for c in CLASSES}}])]
        for key, title in breakdowns:
            tables.append(Table(title, cols, [{"value": label(v), **counts} for v, counts in stats[key].items()]))
        return export(fmt, "customer-base", tables, store)
    charts = {key: _breakdown_chart(stats[key], limit=12) for key, _t in breakdowns}
    return render_template("reports/customer_base.html", stats=stats, as_of=as_of, breakdowns=breakdowns,
                           charts=charts, classes=CLASSES, **common(store, at))


@bp.get("/customer-base/trend.json")
@require(Role.SUPERVISOR, managers=True)
def customer_base_trend():
    """Month-end counts over the last 12 months (loaded after the page: each point is a full
    classification of the customer base, cached for hours once computed)."""
    store = chosen_store()
    end = today()
    month_ends = [add_months(end.replace(day=1), -i) - dt.timedelta(days=1) for i in range(11, 0, -1)] + [end]
    sid = store.id if store else None
    found: dict[dt.date, dict] = {}
    for day in month_ends:
        hit = peek(cache_key("customer_base_totals", sid, day.isoformat()))
        if hit is not None:
            found[day] = hit
    missing = [d for d in month_ends if d not in found]
    if missing:  # one pass over the database for every missing point
        s = settings()
        for point in customer_base_series(db(), missing, store_code=store.code if store else None,
                                          default_cycle_mid=s.cycle_months_mid,
                                          default_cycle_premium=s.cycle_months_premium):
            day = dt.date.fromisoformat(point["as_of"])
            found[day] = {c: point[c] for c in CLASSES}
            ttl = TTL_SECONDS if day == end else TREND_TTL_SECONDS  # today's point moves with today's data
            cache_store(cache_key("customer_base_totals", sid, day.isoformat()), ttl, found[day])
    points = [{"as_of": d.isoformat(), **found[d]} for d in month_ends]
    return jsonify(points=points, chart=_trend_chart(points))


# -- feedback rate ---------------------------------------------------------------------------


@bp.get("/feedback")
@require(Role.SUPERVISOR, managers=True)
def feedback():
    store = chosen_store()
    first, last = period()
    sid = store.id if store else None
    data, at = figures("feedback", {"store": sid, "from": first.isoformat(), "to": last.isoformat()},
                       lambda: reporting.feedback_rate(db(), first, last, tz=settings().timezone, store_id=sid))
    if fmt := export_requested():
        cols = [("month", _("Month")), ("store", _("Store")), ("completed", _("Completed revisit calls")),
                ("feedback", _("Feedback calls")), ("rate", _("Feedback rate")),
                ("flag_zero", _("0 % - suspicious"))]
        cols += [(f"dept_{d.value}", _("%(dept)s feedback rate", dept=label(d))) for d in Department]
        rows = [{**r, **{f"dept_{d}": v["rate"] for d, v in r["departments"].items()}} for r in data["rows"]]
        return export(fmt, "feedback-rate", [Table(_("Feedback rate"), cols, rows)], store)
    return render_template("reports/feedback.html", data=data, first=first, last=last,
                           chart=_feedback_chart(data), departments=[d.value for d in Department], **common(store, at))


# -- top-3 problems --------------------------------------------------------------------------


@bp.get("/top-problems")
@require(Role.SUPERVISOR, managers=True)
def top_problems():
    store = chosen_store()
    month = reporting.parse_month(request.args.get("month"), today())
    sid = store.id if store else None
    data, at = figures("top", {"store": sid, "month": month.isoformat()},
                       lambda: reporting.top_problems(db(), month, tz=settings().timezone, store_id=sid))
    if fmt := export_requested():
        cols = [("department", _("Department")), ("rank", _("Rank")), ("category", _("Problem")),
                ("count", _("Calls")), ("share", _("Share")), ("previous", _("Last month")), ("change", _("Change"))]
        rows = [{**item, "department": of(Department, d["department"]),
                 "category": _category(item["category"])} for d in data["departments"] for item in d["items"]]
        return export(fmt, "top-problems", [Table(_("Top-3 problems"), cols, rows)], store)
    charts = {d["department"]: _top_chart(d) for d in data["departments"] if d["items"]}
    return render_template("reports/top_problems.html", data=data, month=month, charts=charts,
                           **common(store, at))


# -- satisfaction and NPS --------------------------------------------------------------------


@bp.get("/satisfaction")
@require(Role.SUPERVISOR, managers=True)
def satisfaction():
    store = chosen_store()
    first, last = period()
    sid = store.id if store else None
    data, at = figures("satisfaction", {"store": sid, "from": first.isoformat(), "to": last.isoformat()},
                       lambda: reporting.satisfaction(db(), first, last, tz=settings().timezone, store_id=sid))
    if fmt := export_requested():
        cols = [("month", _("Month")), ("answers", _("Scores"))] + [(f"s{s}", _("%(n)d points", n=s)) for s in range(1, 6)]
        cols += [("average", _("Average")), ("satisfied", _("Satisfied (4-5)")), ("nps_answers", _("NPS answers")),
                 ("promoters", _("Promoters")), ("detractors", _("Detractors")), ("nps", "NPS")]
        rows = [{**r, **{f"s{s}": r["distribution"][str(s)] for s in range(1, 6)}} for r in data["rows"]]
        return export(fmt, "satisfaction", [Table(_("Satisfaction and NPS"), cols, rows)], store)
    return render_template("reports/satisfaction.html", data=data, first=first, last=last,
                           chart=_satisfaction_chart(data["rows"]), nps_chart=_nps_chart(data["rows"]),
                           **common(store, at))


# -- win-back --------------------------------------------------------------------------------


@bp.get("/winback")
@require(Role.SUPERVISOR, managers=True)
def winback():
    store = chosen_store()
    first, last = period()
    sid = store.id if store else None
    data, at = figures("winback", {"store": sid, "from": first.isoformat(), "to": last.isoformat()},
                       lambda: reporting.winback(db(), first, last, tz=settings().timezone, today=today(),
                                                 store_id=sid))
    if fmt := export_requested():
        cols = [("month", _("Month of the call")), ("reached", _("Lapsed customers reached")),
                ("returned", _("Came back within 4 months")), ("rate", _("Return rate")),
                ("open", _("Window still open"))]
        return export(fmt, "winback", [Table(_("Win-back"), cols, data["rows"])], store)
    return render_template("reports/winback.html", data=data, first=first, last=last,
                           chart=_winback_chart(data), **common(store, at))


# -- charts (ECharts options) ----------------------------------------------------------------

PALETTE = ["#1d6fe8", "#15a34a", "#e5484d", "#f59e0b", "#8b5cf6", "#0ea5e9", "#64748b"]
# One colour per customer class wherever it is drawn: active green, lapsed red.
CLASS_COLORS = {"base": "#64748b", "active": "#15a34a", "lapsed": "#e5484d", "insured": "#1d6fe8"}


def _category(code: str) -> str:
    from callcenter.domain import FeedbackCategory

    return of(FeedbackCategory, code)


def _breakdown_chart(breakdown: dict, limit: int) -> dict:
    items = list(breakdown.items())[:limit]
    names = [label(k) for k, _v in items]
    return {
        "color": PALETTE, "tooltip": {"trigger": "axis"}, "legend": {"top": 0},
        "grid": {"left": 8, "right": 16, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": names, "axisLabel": {"interval": 0, "rotate": 30 if len(names) > 6 else 0}},
        "yAxis": {"type": "value"},
        "series": [{"name": label(CustomerClass(c)), "type": "bar", "data": [v[c] for _k, v in items],
                    "itemStyle": {"color": CLASS_COLORS[c]}} for c in ("active", "lapsed", "insured")],
    }


def _trend_chart(points: list[dict]) -> dict:
    return {
        "color": PALETTE, "tooltip": {"trigger": "axis"}, "legend": {"top": 0},
        "grid": {"left": 8, "right": 16, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": [p["as_of"] for p in points]},
        "yAxis": {"type": "value"},
        "series": [{"name": label(CustomerClass(c)), "type": "line", "smooth": True, "data": [p[c] for p in points],
                    "itemStyle": {"color": CLASS_COLORS[c]}, "lineStyle": {"color": CLASS_COLORS[c]}} for c in CLASSES],
    }


def _feedback_chart(data: dict) -> dict:
    stores = sorted({r["store"] for r in data["rows"]})
    series = []
    for name in stores:
        rows = {r["month"]: r for r in data["rows"] if r["store"] == name}
        series.append({"name": name, "type": "line", "connectNulls": False,
                       "data": [round(rows[m]["rate"] * 100, 2) if rows[m]["rate"] is not None else None
                                for m in data["months"]]})
    if series:
        series[0]["markLine"] = {"symbol": "none", "lineStyle": {"type": "dashed", "color": "#e5484d"},
                                 "label": {"formatter": _("Benchmark 5%")},
                                 "data": [{"yAxis": data["benchmark"] * 100}]}
    return {
        "color": PALETTE, "tooltip": {"trigger": "axis", "valueFormatter": "percent"}, "legend": {"top": 0},
        "grid": {"left": 8, "right": 24, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": data["months"]},
        "yAxis": {"type": "value", "name": "%", "min": 0},
        "series": series,
    }


def _top_chart(dept: dict) -> dict:
    items = list(reversed(dept["items"]))
    return {
        "color": PALETTE, "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 8, "right": 24, "top": 30, "bottom": 4, "containLabel": True},
        "yAxis": {"type": "category", "data": [_category(i["category"]) for i in items]},
        "xAxis": {"type": "value", "minInterval": 1},
        "series": [{"name": _("This month"), "type": "bar", "data": [i["count"] for i in items]},
                   {"name": _("Last month"), "type": "bar", "data": [i["previous"] for i in items],
                    "itemStyle": {"color": "#cbd5e1"}}],
    }


def _satisfaction_chart(rows: list[dict]) -> dict:
    colors = {1: "#e5484d", 2: "#f97316", 3: "#facc15", 4: "#4ade80", 5: "#15a34a"}
    return {
        "tooltip": {"trigger": "axis"}, "legend": {"top": 0},
        "grid": {"left": 8, "right": 8, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": [r["month"] for r in rows]},
        "yAxis": [{"type": "value", "name": _("Scores")}, {"type": "value", "name": _("Average"), "min": 1, "max": 5}],
        "series": [{"name": _("%(n)d points", n=s), "type": "bar", "stack": "scores", "itemStyle": {"color": colors[s]},
                    "data": [r["distribution"][str(s)] for r in rows]} for s in range(1, 6)]
        + [{"name": _("Average"), "type": "line", "yAxisIndex": 1, "itemStyle": {"color": "#1d6fe8"},
            "data": [round(r["average"], 2) if r["average"] is not None else None for r in rows]}],
    }


def _nps_chart(rows: list[dict]) -> dict:
    return {
        "color": ["#8b5cf6"], "tooltip": {"trigger": "axis"},
        "grid": {"left": 8, "right": 16, "top": 24, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": [r["month"] for r in rows]},
        "yAxis": {"type": "value", "min": -100, "max": 100},
        "series": [{"name": "NPS", "type": "line", "data": [round(r["nps"], 1) if r["nps"] is not None else None
                                                            for r in rows],
                    "markLine": {"symbol": "none", "data": [{"yAxis": 0}], "lineStyle": {"color": "#94a3b8"}}}],
    }


def _winback_chart(data: dict) -> dict:
    rows = data["rows"]
    return {
        "color": PALETTE, "tooltip": {"trigger": "axis"}, "legend": {"top": 0},
        "grid": {"left": 8, "right": 8, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": [r["month"] for r in rows]},
        "yAxis": [{"type": "value", "name": _("Customers")}, {"type": "value", "name": "%", "min": 0, "max": 100}],
        "series": [{"name": _("Reached"), "type": "bar", "data": [r["reached"] for r in rows]},
                   {"name": _("Came back"), "type": "bar", "data": [r["returned"] for r in rows]},
                   {"name": _("Return rate"), "type": "line", "yAxisIndex": 1,
                    "data": [round(r["rate"] * 100, 1) if r["rate"] is not None else None for r in rows]}],
    }

