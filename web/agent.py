"""The agent's workspace: the next task (callbacks due, complaint tickets assigned, preview calls
of agent campaigns), the customer's file, the script with the customer's data filled in, the
live transcript of the current call, and the disposition form (outcome, score, notes, follow-up
call, ticket, do-not-call).

Phone numbers stay masked for agents except while dialing: :func:`dial` claims the task, opens
the call record and reveals the number once (audited). Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from callcenter.domain import CallDisposition, Role
from callcenter.domain.phone import dial_digits
from callcenter.storage import live
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    CallOutcome,
    CallTask,
    Campaign,
    CampaignStatus,
    Customer,
    DoNotCall,
    ServiceVisit,
    TaskState,
    Ticket,
    TicketStatus,
    utcnow,
)
from web import audit, scripts
from web.customers import customer_file
from web.security import current_user, ensure_in_scope, require, store_clause
from web.services import REDIS_ERRORS, db, redis
from web.tickets import TicketError, change_status, open_ticket, parse_local_datetime

logger = logging.getLogger(__name__)
bp = Blueprint("agent", __name__, url_prefix="/agent")

# Callbacks show up this long before they are due, so the agent can prepare.
CALLBACK_LEAD = dt.timedelta(minutes=30)
# Retry delays for agent preview calls, as the dialer uses for robot calls (issue 6).
RETRY_AFTER = {
    CallDisposition.BUSY.value: dt.timedelta(minutes=30),
    CallDisposition.NO_ANSWER.value: dt.timedelta(hours=2),
    CallDisposition.UNAVAILABLE.value: dt.timedelta(hours=1),
}
# Outcomes an agent can record, in the order of the form.
AGENT_OUTCOMES = (
    CallOutcome.COMPLETED, CallOutcome.PARTIAL, CallOutcome.REFUSED, CallOutcome.CALLBACK, CallOutcome.OPT_OUT,
    CallOutcome.WRONG_NUMBER, CallOutcome.HUNG_UP, CallOutcome.NOT_REACHED,
)
AGENT_DISPOSITIONS = (
    CallDisposition.ANSWERED, CallDisposition.NO_ANSWER, CallDisposition.BUSY, CallDisposition.UNAVAILABLE,
    CallDisposition.REJECTED, CallDisposition.NOT_FOUND,
)


def open_calls_of(agent_id: int):
    """The ids of an agent's calls still going, as a subquery.

    Nearly every call is a robot's (agent_id NULL), so SQLite's statistics make ``agent_id = ?``
    look like it matches all 200,000 calls and the planner scans instead (60 ms a query, twice per
    workspace); SQLite is told to use the agent index.
    """
    if db().get_bind().dialect.name == "sqlite":
        return sa.text("SELECT id FROM calls INDEXED BY ix_calls_agent_id WHERE agent_id = :agent "
                       "AND ended_at IS NULL").bindparams(agent=agent_id).columns(sa.column("id", sa.Integer))
    return sa.select(Call.id).where(Call.agent_id == agent_id, Call.ended_at.is_(None))


def task_list(limit: int = 30) -> list[dict]:
    """The agent's queue, most urgent first: callbacks due, tickets, then campaign preview calls."""
    me = current_user()
    now = utcnow()
    s = db()
    items: list[dict] = []
    # Robot calls handed to this agent and still going: the dialer sets calls.agent_id when it
    # bridges a call to the agent and publishes "bridged" (the page reloads on that event).
    handed = s.scalars(sa.select(Call).options(selectinload(Call.customer), selectinload(Call.campaign))
                       .where(Call.id.in_(open_calls_of(me.id)), Call.robot.is_(True),
                              Call.customer_id.is_not(None), store_clause(Call.store_id)).limit(limit))
    # Sorted here: asked to ORDER BY started_at, SQLite walked the started_at index over all
    # 200,000 calls instead of using the agent's (0.9 s against 0.1 ms).
    for call in sorted(handed, key=lambda c: c.started_at):
        items.append({"kind": "call", "id": call.id, "customer": call.customer, "due": call.started_at,
                      "title": call.campaign.name if call.campaign else _("Call handed over"), "overdue": False,
                      "live": True})
    callbacks = s.scalars(
        sa.select(Callback).options(selectinload(Callback.customer))
        .where(Callback.status == CallbackStatus.PENDING, Callback.robot.is_(False),
               Callback.due_at <= now + CALLBACK_LEAD, store_clause(Callback.store_id),
               sa.or_(Callback.assignee_id == me.id, Callback.assignee_id.is_(None)))
        .order_by(Callback.due_at).limit(limit))
    for cb in callbacks:
        items.append({"kind": "callback", "id": cb.id, "customer": cb.customer, "due": cb.due_at,
                      "title": cb.reason or _("Promised callback"), "overdue": cb.due_at < now})
    tickets = s.scalars(
        sa.select(Ticket).options(selectinload(Ticket.customer))
        .where(Ticket.assignee_id == me.id, Ticket.status.in_((TicketStatus.OPEN, TicketStatus.ASSIGNED)),
               store_clause(Ticket.store_id))
        .order_by(Ticket.due_at).limit(limit))
    for t in tickets:
        items.append({"kind": "ticket", "id": t.id, "customer": t.customer, "due": t.due_at, "title": t.title,
                      "overdue": t.due_at is not None and t.due_at < now})
    preview = (sa.select(CallTask, Campaign.name).join(Campaign, Campaign.id == CallTask.campaign_id)
               .options(selectinload(CallTask.customer))
               .where(Campaign.robot.is_(False), Campaign.status == CampaignStatus.RUNNING,
                      store_clause(CallTask.store_id)))
    # Two queries rather than one OR: with the OR, SQLite dropped the (state, next_attempt_at)
    # index and scanned every task of every campaign (seconds at 200,000 tasks).
    mine = list(s.execute(preview.where(  # calls this agent started and has not closed yet
        CallTask.state == TaskState.DIALING,
        CallTask.id.in_(sa.select(Call.task_id).where(Call.id.in_(open_calls_of(me.id)))))))
    due = list(s.execute(preview.where(
        CallTask.state.in_((TaskState.PENDING, TaskState.QUEUED)),
        sa.or_(CallTask.next_attempt_at.is_(None), CallTask.next_attempt_at <= now))
        .order_by(CallTask.next_attempt_at.is_(None), CallTask.next_attempt_at, CallTask.id).limit(limit)))
    for task, campaign_name in [*mine, *due]:
        items.append({"kind": "task", "id": task.id, "customer": task.customer, "due": task.next_attempt_at,
                      "title": campaign_name, "overdue": False})
    return items


def load_task(kind: str, item_id: int) -> tuple[object, Customer]:
    """The callback, ticket or campaign task an agent opened, checked against their scope."""
    s = db()
    me = current_user()
    if kind == "callback":
        obj = s.get(Callback, item_id)
        if obj is None or obj.robot or obj.assignee_id not in (None, me.id):
            abort(404)
    elif kind == "ticket":
        obj = s.get(Ticket, item_id)
        if obj is None or obj.assignee_id != me.id:
            abort(404)
    elif kind == "task":
        obj = s.get(CallTask, item_id)
        if obj is None or obj.campaign.robot:
            abort(404)
    elif kind == "call":
        obj = s.get(Call, item_id)
        if obj is None or obj.agent_id != me.id or not obj.robot or obj.customer_id is None:
            abort(404)
    else:
        abort(404)
    ensure_in_scope(obj.store_id)
    customer = s.get(Customer, obj.customer_id)
    if customer is None:
        abort(404)
    return obj, customer


@bp.get("/")
@require(Role.AGENT)
def workspace():
    items = task_list()
    kind, item_id = request.args.get("kind"), request.args.get("id", type=int)
    if not kind and items:
        kind, item_id = items[0]["kind"], items[0]["id"]
    context: dict = {"items": items, "kind": kind, "item_id": item_id}
    if kind and item_id:
        obj, customer = load_task(kind, item_id)
        if kind == "call":
            active = obj if obj.ended_at is None else None
        else:
            active = db().scalar(
                sa.select(Call).where(Call.agent_id == current_user().id, Call.customer_id == customer.id,
                                      Call.robot.is_(False), Call.ended_at.is_(None)).order_by(Call.id.desc()))
        campaign = obj.campaign if kind in ("task", "call") else None
        context.update(
            task=obj, customer=customer, active_call=active, campaign=campaign,
            script=scripts.agent_script(campaign.script if campaign else None, script_variables(customer, obj)),
            outcomes=[(o.value, o) for o in AGENT_OUTCOMES], dispositions=[(d.value, d) for d in AGENT_DISPOSITIONS],
            **customer_file(customer),
        )
    return render_template("agent/workspace.html", **context)


def script_variables(customer: Customer, task: object) -> dict[str, str]:
    """What a script may say about this customer (surname and title, store, car, last visit...)."""
    from callcenter.domain import Gender

    vehicle = customer.vehicles[0] if customer.vehicles else None
    visit = None
    if isinstance(task, CallTask) and task.visit_id:
        visit = db().get(ServiceVisit, task.visit_id)
    if visit is None:
        visit = db().scalar(sa.select(ServiceVisit).where(ServiceVisit.customer_id == customer.id)
                            .order_by(ServiceVisit.visit_date.desc()).limit(1))
    title = {Gender.MALE: "先生", Gender.FEMALE: "女士"}.get(customer.gender, "")
    return {
        "name": customer.name, "surname": customer.name[:1], "title": title,
        "store": customer.store.name, "model": (vehicle.model or vehicle.brand or "") if vehicle else "",
        "plate": (vehicle.plate or "") if vehicle else "",
        "visit_date": visit.visit_date.isoformat() if visit else "",
        "advisor": (visit.advisor or "") if visit else "",
        "insurance_expiry": vehicle.insurance_expiry.isoformat() if vehicle and vehicle.insurance_expiry else "",
        "warranty_end": vehicle.warranty_end.isoformat() if vehicle and vehicle.warranty_end else "",
    }


@bp.post("/dial")
@require(Role.AGENT)
def dial():
    """Claim the task, open the call record and reveal the number for dialing (audited)."""
    kind, item_id = request.form.get("kind", ""), request.form.get("id", type=int) or 0
    obj, customer = load_task(kind, item_id)
    me = current_user()
    if not customer.phone:
        abort(400, description=_("The customer has no phone number."))
    if db().scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == customer.phone)) is not None:
        abort(409, description=_("This number is on the do-not-call list."))
    # The task's store: a group customer's call about another store's car is that store's call.
    call = Call(customer_id=customer.id, store_id=obj.store_id, agent_id=me.id, robot=False,
                phone=customer.phone, started_at=utcnow())
    if isinstance(obj, CallTask):
        # Claim atomically: of two agents opening the same preview call, one gets it.
        claimed = db().execute(
            sa.update(CallTask).where(CallTask.id == obj.id, CallTask.state.in_((TaskState.PENDING, TaskState.QUEUED)))
            .values(state=TaskState.DIALING, attempts=CallTask.attempts + 1, updated_at=utcnow()))
        if claimed.rowcount != 1:
            db().rollback()
            abort(409, description=_("Another agent is already calling this customer."))
        db().refresh(obj)
        call.task_id, call.attempt, call.campaign_id = obj.id, obj.attempts, obj.campaign_id
        call.script = obj.campaign.script
    elif isinstance(obj, Callback):
        claimed = db().execute(sa.update(Callback).where(
            Callback.id == obj.id, Callback.status == CallbackStatus.PENDING,
            sa.or_(Callback.assignee_id.is_(None), Callback.assignee_id == me.id)).values(assignee_id=me.id))
        if claimed.rowcount != 1:
            db().rollback()
            abort(409, description=_("Another agent has taken this callback."))
    db().add(call)
    db().flush()
    audit.record("phone.reveal", "customer", customer.id, store_id=customer.store_id, call_id=call.id)
    db().commit()
    try:
        live.publish_call_state(redis(), live.CallStateEvent(
            call_id=call.id, state=live.LiveCallState.DIALING, store_id=call.store_id,
            campaign_id=call.campaign_id, customer_id=customer.id, agent_id=me.id))
    except REDIS_ERRORS as exc:  # the call goes on without the wallboard knowing
        logger.warning("call %s: live event not published: %s", call.id, exc)
    return jsonify(call_id=call.id, phone=customer.phone, dial=dial_digits(customer.phone),
                   transcript_url=url_for("live.call_stream", call_id=call.id))


@bp.post("/calls/<int:call_id>/disposition")
@require(Role.AGENT)
def disposition(call_id: int):
    """Close the agent's call: disposition, outcome, score, notes, follow-up, ticket, DNC."""
    me = current_user()
    call = db().get(Call, call_id)
    if call is None or call.agent_id != me.id:
        abort(404)
    ensure_in_scope(call.store_id)
    if call.robot:
        return _handed_over_result(call)
    if call.ended_at is not None:
        flash(_("This call was already closed."), "info")
        return redirect(url_for("agent.workspace"))
    form = request.form
    errors = []
    try:
        disp = CallDisposition(form.get("disposition", ""))
        outcome = CallOutcome(form.get("outcome", ""))
    except ValueError:
        abort(400, description=_("Choose whether the customer was reached and the outcome."))
    if disp is not CallDisposition.ANSWERED:
        outcome = CallOutcome.NOT_REACHED
    score = _optional_int(form.get("score5"), 1, 5, _("Satisfaction"), errors)
    nps = _optional_int(form.get("nps"), 0, 10, "NPS", errors)
    follow_up = None
    if form.get("follow_up_at"):
        try:
            follow_up = parse_local_datetime(form["follow_up_at"])
        except TicketError as exc:
            errors.append(str(exc))
        else:
            if follow_up <= utcnow():
                errors.append(_("The follow-up call must be in the future."))
    if errors:
        for e in errors:
            flash(e, "error")
        return redirect(request.referrer or url_for("agent.workspace"))
    now = utcnow()
    customer = db().get(Customer, call.customer_id)
    call.disposition, call.outcome = disp.value, outcome
    call.ended_at = now
    call.answered_at = call.answered_at or (call.started_at if disp is CallDisposition.ANSWERED else None)
    call.talk_seconds = (now - call.answered_at).total_seconds() if call.answered_at else 0.0
    call.score5, call.nps = score, nps
    call.notes = (form.get("notes") or "").strip()[:4000] or None
    kind, item_id = form.get("kind"), form.get("id", type=int)
    if call.task_id:  # whichever item the form was opened from, the call's own task is settled
        _finish_task(db().get(CallTask, call.task_id), disp, outcome, now)
    if kind == "callback" and item_id:
        cb = db().get(Callback, item_id)
        if cb is not None and cb.customer_id == call.customer_id and disp is CallDisposition.ANSWERED:
            cb.status, cb.done_call_id, cb.done_at = CallbackStatus.DONE, call.id, now
            if cb.ticket_id and form.get("verified"):
                ticket = db().get(Ticket, cb.ticket_id)
                if ticket is not None and ticket.status is TicketStatus.RESOLVED:
                    change_status(ticket, TicketStatus.VERIFIED, note=_("Confirmed by the customer"),
                                  verify_call_id=call.id)
    if follow_up is not None:
        db().add(Callback(customer_id=call.customer_id, store_id=call.store_id, call_id=call.id, due_at=follow_up,
                          robot=False, assignee_id=me.id,
                          reason=(form.get("follow_up_reason") or "").strip()[:200] or _("Follow-up call")))
    if form.get("dnc") and customer is not None and customer.phone:
        if db().scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == customer.phone)) is None:
            db().add(DoNotCall(phone=customer.phone, customer_id=customer.id, source="agent", call_id=call.id,
                               created_by=me.id, reason=_("Asked on a call not to be called again")))
            audit.record("dnc.add", "customer", customer.id, store_id=customer.store_id, call_id=call.id)
    if (form.get("ticket_title") or "").strip() and customer is not None:
        try:
            open_ticket(customer=customer, title=form["ticket_title"], department=form.get("ticket_department", ""),
                        category=form.get("ticket_category") or None, description=form.get("ticket_description"),
                        priority=form.get("ticket_priority", "normal"), call_id=call.id)
        except TicketError as exc:
            db().rollback()
            flash(str(exc), "error")
            return redirect(request.referrer or url_for("agent.workspace"))
    db().commit()
    try:
        live.publish_call_state(redis(), live.CallStateEvent(
            call_id=call.id, state=live.LiveCallState.ENDED, store_id=call.store_id, campaign_id=call.campaign_id,
            customer_id=call.customer_id, agent_id=me.id, disposition=disp.value, outcome=outcome.value))
    except REDIS_ERRORS as exc:
        logger.warning("call %s: live event not published: %s", call.id, exc)
    flash(_("Call saved."), "success")
    return redirect(url_for("agent.workspace"))


def _handed_over_result(call: Call):
    """What the agent learnt on a robot call handed to them: score, notes, follow-up, ticket, DNC.
    The dialer, which holds the call, records how it ended (disposition, outcome, times)."""
    form = request.form
    errors: list[str] = []
    score = _optional_int(form.get("score5"), 1, 5, _("Satisfaction"), errors)
    nps = _optional_int(form.get("nps"), 0, 10, "NPS", errors)
    follow_up = None
    if form.get("follow_up_at"):
        try:
            follow_up = parse_local_datetime(form["follow_up_at"])
        except TicketError as exc:
            errors.append(str(exc))
    if errors:
        for e in errors:
            flash(e, "error")
        return redirect(request.referrer or url_for("agent.workspace"))
    me = current_user()
    customer = db().get(Customer, call.customer_id)
    if score is not None:
        call.score5 = score
    if nps is not None:
        call.nps = nps
    notes = (form.get("notes") or "").strip()[:4000]
    if notes:
        call.notes = notes
    if follow_up is not None:
        db().add(Callback(customer_id=call.customer_id, store_id=call.store_id, call_id=call.id, due_at=follow_up,
                          robot=False, assignee_id=me.id,
                          reason=(form.get("follow_up_reason") or "").strip()[:200] or _("Follow-up call")))
    if form.get("dnc") and customer is not None and customer.phone and db().scalar(
            sa.select(DoNotCall.id).where(DoNotCall.phone == customer.phone)) is None:
        db().add(DoNotCall(phone=customer.phone, customer_id=customer.id, source="agent", call_id=call.id,
                           created_by=me.id, reason=_("Asked on a call not to be called again")))
        audit.record("dnc.add", "customer", customer.id, store_id=customer.store_id, call_id=call.id)
    if (form.get("ticket_title") or "").strip() and customer is not None:
        try:
            open_ticket(customer=customer, title=form["ticket_title"], department=form.get("ticket_department", ""),
                        category=form.get("ticket_category") or None, description=form.get("ticket_description"),
                        priority=form.get("ticket_priority", "normal"), call_id=call.id)
        except TicketError as exc:
            db().rollback()
            flash(str(exc), "error")
            return redirect(request.referrer or url_for("agent.workspace"))
    db().commit()
    flash(_("Saved. The call stays on your list until it ends."), "success")
    return redirect(url_for("agent.workspace", kind="call", id=call.id))


def _finish_task(task: CallTask | None, disp: CallDisposition, outcome: CallOutcome, now: dt.datetime) -> None:
    if task is None:
        return
    task.last_disposition, task.outcome = disp.value, outcome
    retry = RETRY_AFTER.get(disp.value)
    if outcome is CallOutcome.NOT_REACHED and retry is not None and task.attempts < task.campaign.max_attempts:
        task.state, task.next_attempt_at = TaskState.PENDING, now + retry
    else:
        task.state = TaskState.FAILED if outcome is CallOutcome.NOT_REACHED else TaskState.COMPLETED
        task.finished_at = now


def _optional_int(raw: str | None, lo: int, hi: int, name: str, errors: list[str]) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        errors.append(_("%(name)s must be a whole number.", name=name))
        return None
    if not lo <= value <= hi:
        errors.append(_("%(name)s must be between %(lo)d and %(hi)d.", name=name, lo=lo, hi=hi))
        return None
    return value

