"""Improvement plans: the seeds' monthly loop. From one of a month's top-3 problems a supervisor
creates a plan (owner, actions, a cycle of 1-6 months); during and at the end of the cycle the
problem's rate in revisit calls is compared with the cycle before the plan, and closing the plan
records whether it improved.

Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.domain import FeedbackCategory, Role
from callcenter.domain.dates import add_months
from callcenter.storage.models import Store, utcnow
from callcenter.storage.web_models import ImprovementPlan, PlanStatus
from web import audit, reporting
from web.export import Table, respond
from web.labels import choices, label
from web.security import current_user, ensure_in_scope, require, scoped_store_id, store_clause
from web.services import db, settings
from web.views import today

bp = Blueprint("improvement", __name__, url_prefix="/improvement")

CYCLES = (1, 2, 3, 4, 5, 6)


def plan_or_404(plan_id: int) -> ImprovementPlan:
    plan = db().get(ImprovementPlan, plan_id)
    if plan is None:
        abort(404)
    if scoped_store_id() is not None and plan.store_id != scoped_store_id():
        abort(404)  # a store's supervisor sees the store's plans, not the group's
    return plan


def first_measured_day(source_month: str | None, start: dt.date) -> dt.date:
    """The first day whose calls count as "during the plan": the start, but never inside the month
    whose calls raised the problem (those calls are the baseline, not the result of the plan)."""
    if source_month:
        try:
            year, month = (int(x) for x in source_month.split("-"))
            return max(start, add_months(dt.date(year, month, 1), 1))
        except ValueError:
            pass
    return start


def comparison(plan: ImprovementPlan) -> dict:
    """The problem's rate in the cycle before the plan and during it (so far, or in full). The two
    periods never overlap: the measured one starts after the source month (:func:`first_measured_day`)
    and the baseline is the cycle just before it, which holds the calls that raised the problem."""
    tz = settings().timezone
    start = first_measured_day(plan.source_month, plan.start_date)
    before_start = add_months(start, -plan.cycle_months)
    end = min(max(plan.end_date, add_months(start, plan.cycle_months)), today() + dt.timedelta(days=1))
    before = reporting.problem_rate(db(), plan.category.value, before_start, start, tz=tz,
                                    store_id=plan.store_id)
    after = (reporting.problem_rate(db(), plan.category.value, start, end, tz=tz, store_id=plan.store_id)
             if end > start else {"from": start.isoformat(), "to": None, "calls": 0, "hits": 0, "rate": None})
    return {"before": before, "after": after, **reporting.compare_rates(before, after),
            "complete": today() >= plan.end_date}


@bp.get("/")
@require(Role.SUPERVISOR, managers=True)
def index():
    query = sa.select(ImprovementPlan).order_by(ImprovementPlan.status, ImprovementPlan.end_date.desc())
    if scoped_store_id() is not None:
        query = query.where(ImprovementPlan.store_id == scoped_store_id())
    if request.args.get("status") in {s.value for s in PlanStatus}:
        query = query.where(ImprovementPlan.status == PlanStatus(request.args["status"]))
    plans = list(db().scalars(query.limit(500)))
    results = {p.id: p.result if p.status is PlanStatus.CLOSED and p.result else comparison(p) for p in plans}
    if request.args.get("format") in ("csv", "xlsx"):
        cols = [("id", "#"), ("store", _("Store")), ("department", _("Department")), ("category", _("Problem")),
                ("title", _("Title")), ("owner", _("Owner")), ("start", _("Start")), ("end", _("End")),
                ("status", _("Status")), ("before", _("Rate before")), ("after", _("Rate during")),
                ("improved", _("Improved")), ("significant", _("Significant (p < 0.05)"))]
        rows = [{"id": p.id, "store": p.store.name if p.store else _("Whole group"), "department": label(p.department),
                 "category": label(p.category), "title": p.title, "owner": p.owner, "start": p.start_date.isoformat(),
                 "end": p.end_date.isoformat(), "status": label(p.status),
                 "before": results[p.id]["before"]["rate"], "after": results[p.id]["after"]["rate"],
                 "improved": results[p.id]["improved"], "significant": results[p.id]["significant"]} for p in plans]
        audit.record("export", "report", "improvement-plans", store_id=scoped_store_id(), commit=True,
                     format=request.args["format"])
        return respond(request.args["format"], [Table(_("Improvement plans"), cols, rows)],
                       f"improvement-plans-{today().isoformat()}")
    return render_template("improvement/index.html", plans=plans, results=results, statuses=choices(PlanStatus))


@bp.route("/new", methods=["GET", "POST"])
@require(Role.SUPERVISOR)
def new():
    stores = list(db().scalars(sa.select(Store).where(store_clause(Store.id)).order_by(Store.code)))
    source = request.values
    if request.method == "POST":
        errors = []
        try:
            category = FeedbackCategory(source.get("category", ""))
        except ValueError:
            category = None
            errors.append(_("Choose the problem."))
        store_id = source.get("store_id", type=int)
        if scoped_store_id() is not None:
            store_id = scoped_store_id()
        elif store_id is not None and db().get(Store, store_id) is None:
            errors.append(_("Unknown store."))
        cycle = source.get("cycle_months", type=int)
        if cycle not in CYCLES:
            errors.append(_("The cycle is 1 to 6 months."))
        try:
            start = dt.date.fromisoformat(source.get("start_date", ""))
        except ValueError:
            start = None
            errors.append(_("Enter the start date."))
        source_month = (source.get("month") or "")[:7] or None
        if start is not None and first_measured_day(source_month, start) > start:
            errors.append(_("The plan starts after %(month)s: that month's calls raised the problem and are "
                            "the baseline it is measured against.", month=source_month))
        title, owner, actions = (source.get(k, "").strip() for k in ("title", "owner", "actions"))
        if not title or not owner or not actions:
            errors.append(_("Title, owner and actions are all needed: a plan must be executable and checkable."))
        if not errors:
            plan = ImprovementPlan(
                store_id=store_id, department=category.department, category=category,
                source_month=source_month, title=title[:200], owner=owner[:100],
                actions=actions[:5000], cycle_months=cycle, start_date=start, end_date=add_months(start, cycle),
                created_by_id=current_user().id,
            )
            db().add(plan)
            db().flush()
            audit.record("plan.create", "plan", plan.id, store_id=store_id, category=category.value)
            db().commit()
            flash(_("Improvement plan created."), "success")
            return redirect(url_for("improvement.show", plan_id=plan.id))
        for e in errors:
            flash(e, "error")
    return render_template("improvement/new.html", stores=stores, categories=choices(FeedbackCategory),
                           cycles=CYCLES, values=source,
                           default_start=first_measured_day((source.get("month") or "")[:7] or None, today()).isoformat())


@bp.get("/<int:plan_id>")
@require(Role.SUPERVISOR, managers=True)
def show(plan_id: int):
    plan = plan_or_404(plan_id)
    result = plan.result if plan.status is PlanStatus.CLOSED and plan.result else comparison(plan)
    chart = {
        "color": ["#94a3b8", "#1d6fe8"], "tooltip": {"trigger": "axis"},
        "grid": {"left": 8, "right": 16, "top": 24, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": [_("Before the plan"), _("During the plan")]},
        "yAxis": {"type": "value", "name": "%", "min": 0},
        "series": [{"type": "bar", "barWidth": "40%", "colorBy": "data", "data": [
            round(result["before"]["rate"] * 100, 2) if result["before"]["rate"] is not None else None,
            round(result["after"]["rate"] * 100, 2) if result["after"]["rate"] is not None else None]}],
    }
    return render_template("improvement/show.html", plan=plan, result=result, chart=chart)


@bp.post("/<int:plan_id>/close")
@require(Role.SUPERVISOR)
def close(plan_id: int):
    plan = plan_or_404(plan_id)
    if plan.status is not PlanStatus.ACTIVE:
        abort(400, description=_("The plan is no longer running."))
    ensure_in_scope(plan.store_id)
    if request.form.get("cancel"):
        plan.status = PlanStatus.CANCELLED
    else:
        if today() < plan.end_date:
            flash(_("The cycle ends on %(day)s; the plan can be closed from then on.", day=plan.end_date.isoformat()),
                  "error")
            return redirect(url_for("improvement.show", plan_id=plan.id))
        plan.result = comparison(plan)
        plan.status = PlanStatus.CLOSED
    plan.closed_at = utcnow()
    audit.record("plan.close", "plan", plan.id, store_id=plan.store_id, status=plan.status.value)
    db().commit()
    flash(_("Plan closed.") if plan.status is PlanStatus.CLOSED else _("Plan cancelled."), "success")
    return redirect(url_for("improvement.show", plan_id=plan.id))
