"""Tickets: the complaint and follow-up workflow (open -> assigned -> resolved -> verified by a
callback), due dates and overdue highlighting, with the ticket's history.

Agents work the tickets assigned to them; supervisors assign, close and reopen within their
store scope. Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from callcenter.domain import Department, FeedbackCategory, Role
from callcenter.storage.models import (
    Call,
    Callback,
    Customer,
    Ticket,
    TicketEvent,
    TicketStatus,
    User,
    Utterance,
    utcnow,
)
from web import audit
from web.calls import recording_path, send_recording
from web.customers import customer_or_404
from web.labels import choices
from web.labels import of as label_of
from web.security import (
    current_user,
    ensure_in_scope,
    has_role,
    may,
    oversees,
    require,
    scoped_store_id,
    store_clause,
)
from web.services import db, settings
from web.views import Page, fmt_datetime, page_number

bp = Blueprint("tickets", __name__, url_prefix="/tickets")

# Default time to resolve by priority; the seeds want complaints handled within days, not weeks.
DUE_BY_PRIORITY = {"high": dt.timedelta(days=1), "normal": dt.timedelta(days=3), "low": dt.timedelta(days=7)}
PRIORITIES = ("high", "normal", "low")
OPEN_STATES = (TicketStatus.OPEN, TicketStatus.ASSIGNED)

# status -> statuses it may move to (closed and verified are final).
TRANSITIONS: dict[TicketStatus, tuple[TicketStatus, ...]] = {
    TicketStatus.OPEN: (TicketStatus.ASSIGNED, TicketStatus.CLOSED),
    TicketStatus.ASSIGNED: (TicketStatus.RESOLVED, TicketStatus.OPEN, TicketStatus.CLOSED),
    TicketStatus.RESOLVED: (TicketStatus.VERIFIED, TicketStatus.ASSIGNED, TicketStatus.CLOSED),
    TicketStatus.VERIFIED: (),
    TicketStatus.CLOSED: (),
}


class TicketError(ValueError):
    """A change the workflow does not allow; the message is shown to the user."""


def ticket_or_404(ticket_id: int) -> Ticket:
    ticket = db().get(Ticket, ticket_id)
    if ticket is None:
        abort(404)
    ensure_in_scope(ticket.store_id)
    if not oversees() and ticket.assignee_id not in (None, current_user().id):
        abort(404)  # an agent sees the tickets of their store that are theirs or nobody's
    return ticket


def assignable_users(store_id: int | None) -> list[User]:
    """Who may work a ticket of ``store_id``: its store's and the group's staff (managers only read)."""
    query = (sa.select(User).where(User.active.is_(True), User.role != Role.MANAGER)
             .order_by(User.display_name, User.username))
    if store_id is not None:
        query = query.where(sa.or_(User.store_id == store_id, User.store_id.is_(None)))
    return list(db().scalars(query))


def is_overdue(ticket: Ticket, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return ticket.due_at is not None and ticket.due_at < now and ticket.status in OPEN_STATES


def open_ticket(*, customer: Customer, title: str, department: str, category: str | None = None,
                kind: str = "complaint", priority: str = "normal", description: str | None = None,
                call_id: int | None = None, assignee_id: int | None = None,
                due_at: dt.datetime | None = None) -> Ticket:
    """Create a ticket (the caller commits).

    Raises:
        TicketError: unknown department, category or priority, or an empty title.
    """
    title = (title or "").strip()
    if not title:
        raise TicketError(_("A ticket needs a title."))
    if department not in {d.value for d in Department}:
        raise TicketError(_("Unknown department."))
    if category and category not in {c.value for c in FeedbackCategory}:
        raise TicketError(_("Unknown category."))
    if priority not in PRIORITIES:
        raise TicketError(_("Unknown priority."))
    # The store whose matter it is: the call's, else the user's (a group customer's ticket opened in
    # store B is store B's), else the customer's home store.
    call_store = db().scalar(sa.select(Call.store_id).where(Call.id == call_id)) if call_id else None
    store_id = call_store or scoped_store_id() or customer.store_id
    ticket = Ticket(
        customer_id=customer.id, store_id=store_id, call_id=call_id, department=department,
        category=category or None, kind=kind if kind in ("complaint", "follow_up") else "complaint",
        title=title[:200], description=(description or "").strip() or None, priority=priority,
        status=TicketStatus.ASSIGNED if assignee_id else TicketStatus.OPEN, assignee_id=assignee_id,
        due_at=due_at or utcnow() + DUE_BY_PRIORITY[priority],
    )
    db().add(ticket)
    db().flush()
    db().add(TicketEvent(ticket_id=ticket.id, user_id=current_user().id, action="created",
                         data={"call_id": call_id, "department": department}))
    return ticket


def change_status(ticket: Ticket, new: TicketStatus, *, note: str | None = None,
                  verify_call_id: int | None = None) -> None:
    """Move a ticket along the workflow (the caller commits).

    Raises:
        TicketError: the transition is not allowed, or its required information is missing.
    """
    if new not in TRANSITIONS[ticket.status]:
        raise TicketError(_("A %(old)s ticket cannot become %(new)s.", old=_status_label(ticket.status),
                            new=_status_label(new)))
    supervisor = has_role(Role.SUPERVISOR)
    if new in (TicketStatus.CLOSED, TicketStatus.OPEN) and not supervisor:
        raise TicketError(_("Only a supervisor can close or reopen a ticket."))
    now = utcnow()
    if new is TicketStatus.ASSIGNED and ticket.assignee_id is None:
        raise TicketError(_("Choose whom to assign the ticket to."))
    if new is TicketStatus.OPEN:
        ticket.assignee_id = None
    if new is TicketStatus.RESOLVED:
        if not (note or "").strip():
            raise TicketError(_("Say how the problem was resolved."))
        ticket.resolution = note.strip()
        ticket.resolved_at = now
    if new is TicketStatus.VERIFIED:
        problem = verification_problem(ticket, verify_call_id, note)
        if problem:
            raise TicketError(problem)
        ticket.verified_at = now
        ticket.verify_call_id = verify_call_id
    ticket.status = new
    db().add(TicketEvent(ticket_id=ticket.id, user_id=current_user().id, action="status",
                         note=(note or "").strip()[:2000] or None, data={"status": new.value}))


def resolver_id(ticket: Ticket) -> int | None:
    """Who marked the ticket resolved (the latest time)."""
    events = db().scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id, TicketEvent.action == "status")
                          .order_by(TicketEvent.at.desc(), TicketEvent.id.desc()))
    return next((e.user_id for e in events if (e.data or {}).get("status") == TicketStatus.RESOLVED.value), None)


def verification_problem(ticket: Ticket, verify_call_id: int | None, note: str | None) -> str | None:
    """Why the current user cannot mark ``ticket`` verified now, or None.

    After-sales practice (the CRM department's 回访确认): the fix is verified with the customer, by
    someone other than whoever fixed it, as a step of its own. Either the customer confirms on a
    verification callback (``verify_call_id``: the recorded call is the evidence), or a supervisor
    who did not resolve the ticket records how the customer confirmed (a note is required).
    """
    if verify_call_id is not None:
        return None
    if not has_role(Role.SUPERVISOR):
        return _("An agent verifies a ticket on the verification callback, when the customer confirms.")
    if resolver_id(ticket) == current_user().id:
        return _("Whoever resolved the ticket cannot verify it: another supervisor confirms with the customer.")
    if not (note or "").strip():
        return _("Say how the customer confirmed that the problem is solved.")
    return None


def _status_label(status: TicketStatus) -> str:
    from web.labels import label

    return label(status)


@bp.get("/")
@require(Role.AGENT, managers=True)
def index():
    page, per_page = page_number()
    args = request.args
    status = args.get("status", "active")
    query = sa.select(Ticket).where(store_clause(Ticket.store_id))
    if not oversees():
        query = query.where(sa.or_(Ticket.assignee_id == current_user().id, Ticket.assignee_id.is_(None)))
    if status == "active":
        query = query.where(Ticket.status.in_(OPEN_STATES))
    elif status in {s.value for s in TicketStatus}:
        query = query.where(Ticket.status == TicketStatus(status))
    if args.get("department") in {d.value for d in Department}:
        query = query.where(Ticket.department == args["department"])
    if args.get("mine"):
        query = query.where(Ticket.assignee_id == current_user().id)
    if args.get("overdue"):
        query = query.where(Ticket.status.in_(OPEN_STATES), Ticket.due_at < utcnow())
    total = db().scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = list(db().scalars(
        query.options(selectinload(Ticket.customer))
        .order_by(Ticket.due_at.is_(None), Ticket.due_at, Ticket.id.desc())
        .limit(per_page).offset((page - 1) * per_page)))
    users = {u.id: u for u in db().scalars(sa.select(User).where(User.id.in_({t.assignee_id for t in rows})))}
    return render_template("tickets/index.html", page=Page(rows, page, per_page, total), users=users,
                           status=status, departments=choices(Department), statuses=choices(TicketStatus),
                           overdue=is_overdue)


@bp.get("/<int:ticket_id>")
@require(Role.AGENT, managers=True)
def show(ticket_id: int):
    ticket = ticket_or_404(ticket_id)
    events = list(db().scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                               .order_by(TicketEvent.at, TicketEvent.id)))
    users = {u.id: u for u in db().scalars(sa.select(User).where(
        User.id.in_({e.user_id for e in events} | {ticket.assignee_id})))}
    callbacks = list(db().scalars(sa.select(Callback).where(Callback.ticket_id == ticket.id)
                                  .order_by(Callback.due_at)))
    call = db().get(Call, ticket.call_id) if ticket.call_id else None
    turns = list(db().scalars(sa.select(Utterance).where(Utterance.call_id == call.id)
                              .order_by(Utterance.seq))) if call else []
    next_states = [st for st in TRANSITIONS[ticket.status]
                   if st is not TicketStatus.VERIFIED or verification_problem(ticket, None, "-") is None
                   ] if may("tickets.update", "POST") else []
    return render_template(
        "tickets/show.html", ticket=ticket, history=[describe(e, users) for e in events], users=users,
        callbacks=callbacks, next_states=next_states, assignees=assignable_users(ticket.store_id),
        overdue=is_overdue(ticket), priorities=PRIORITIES, call=call, turns=turns,
        has_recording=call is not None and recording_path(call) is not None,
    )


@bp.get("/<int:ticket_id>/recording")
@require(Role.AGENT, managers=True)
def recording(ticket_id: int):
    """The recording of the call the ticket came from, for whoever may work the ticket (an agent
    cannot open the call pages; the ticket is their way to hear what the customer said)."""
    ticket = ticket_or_404(ticket_id)
    call = db().get(Call, ticket.call_id) if ticket.call_id else None
    if call is None:
        abort(404)
    return send_recording(call)


def describe(event: TicketEvent, users: dict[int, User]) -> dict:
    """One history entry in the reader's language: ``at``, ``who``, ``what`` and the person's ``note``."""
    data = event.data or {}
    action = event.action
    user = users.get(event.user_id) if event.user_id else None
    if action == "created":
        department = label_of(Department, data.get("department"))
        if data.get("call_id") and user is None:
            what = _("Opened by the robot on revisit call #%(call)s, routed to %(department)s",
                     call=data["call_id"], department=department)
        elif data.get("call_id"):
            what = _("Opened from call #%(call)s, routed to %(department)s", call=data["call_id"],
                     department=department)
        else:
            what = _("Opened, routed to %(department)s", department=department)
    elif action == "assigned":
        what = _("Assigned to %(name)s", name=data.get("assignee") or "")
    elif action == "status" and data.get("status") in {st.value for st in TicketStatus}:
        what = _("Status: %(status)s", status=label_of(TicketStatus, data["status"]))
    elif action == "due":
        what = _("Due date set to %(when)s", when=_when(data))
    elif action == "callback":
        what = (_("Verification callback by the robot at %(when)s", when=_when(data)) if data.get("robot")
                else _("Verification callback at %(when)s", when=_when(data)))
    elif action == "note":
        what = _("Note")
    else:
        what = _("Changed")
    if user is not None:
        who = user.display_name or user.username
    else:
        who = _("Robot") if action == "created" and data.get("call_id") else _("System")
    return {"at": event.at, "who": who, "what": what, "note": event.note}


def _when(data: dict) -> str:
    if data.get("due_at"):
        try:
            return fmt_datetime(dt.datetime.fromisoformat(data["due_at"]))
        except ValueError:
            pass
    return str(data.get("due_local") or "").replace("T", " ")


@bp.post("/<int:ticket_id>")
@require(Role.AGENT)
def update(ticket_id: int):
    ticket = ticket_or_404(ticket_id)
    form = request.form
    action = form.get("action")
    try:
        if action == "assign":
            if not has_role(Role.SUPERVISOR):
                abort(403)
            assignee = db().get(User, form.get("assignee_id", type=int) or 0)
            if (assignee is None or not assignee.active or assignee.role is Role.MANAGER
                    or assignee.store_id not in (None, ticket.store_id)):
                raise TicketError(_("Choose an active user of the ticket's store."))
            ticket.assignee_id = assignee.id
            db().add(TicketEvent(ticket_id=ticket.id, user_id=current_user().id, action="assigned",
                                 data={"assignee_id": assignee.id,
                                       "assignee": assignee.display_name or assignee.username}))
            if ticket.status is TicketStatus.OPEN:
                ticket.status = TicketStatus.ASSIGNED
        elif action == "status":
            try:
                new = TicketStatus(form.get("status", ""))
            except ValueError:
                raise TicketError(_("Unknown status.")) from None
            change_status(ticket, new, note=form.get("note"))
        elif action == "note":
            note = (form.get("note") or "").strip()
            if not note:
                raise TicketError(_("The note is empty."))
            db().add(TicketEvent(ticket_id=ticket.id, user_id=current_user().id, action="note", note=note[:2000]))
        elif action == "due":
            if not has_role(Role.SUPERVISOR):
                abort(403)
            ticket.due_at = parse_local_datetime(form.get("due_at", ""))
            db().add(TicketEvent(ticket_id=ticket.id, user_id=current_user().id, action="due",
                                 data={"due_at": ticket.due_at.isoformat()}))
        elif action == "verify_callback":
            due = parse_local_datetime(form.get("due_at", ""))
            if ticket.status is not TicketStatus.RESOLVED:
                raise TicketError(_("Only a resolved ticket is verified by a callback."))
            db().add(Callback(customer_id=ticket.customer_id, store_id=ticket.store_id, ticket_id=ticket.id,
                              due_at=due, robot=form.get("robot") == "1", assignee_id=current_user().id,
                              reason=_("Verify ticket #%(id)s: %(title)s", id=ticket.id, title=ticket.title)[:200]))
            db().add(TicketEvent(ticket_id=ticket.id, user_id=current_user().id, action="callback",
                                 data={"due_at": due.isoformat(), "robot": form.get("robot") == "1"}))
        else:
            abort(400, description=_("Unknown change."))
    except TicketError as exc:
        db().rollback()
        flash(str(exc), "error")
        return redirect(url_for("tickets.show", ticket_id=ticket_id))
    audit.record("ticket.update", "ticket", ticket.id, store_id=ticket.store_id, action=action)
    db().commit()
    flash(_("Ticket updated."), "success")
    return redirect(url_for("tickets.show", ticket_id=ticket.id))


@bp.post("/new")
@require(Role.AGENT)
def create():
    form = request.form
    customer = customer_or_404(form.get("customer_id", type=int) or 0)  # the user's store sees them
    call_id = form.get("call_id", type=int)
    if call_id:
        call = db().get(Call, call_id)
        if call is None or call.customer_id != customer.id:
            abort(400, description=_("The call is not this customer's."))
        ensure_in_scope(call.store_id)  # a group customer's call in another store is that store's
    try:
        ticket = open_ticket(
            customer=customer, title=form.get("title", ""), department=form.get("department", ""),
            category=form.get("category") or None, kind=form.get("kind", "complaint"),
            priority=form.get("priority", "normal"), description=form.get("description"), call_id=call_id,
            assignee_id=current_user().id if form.get("assign_me") else None,
        )
    except TicketError as exc:
        db().rollback()
        flash(str(exc), "error")
        return redirect(request.referrer or url_for("customers.show", customer_id=customer.id))
    db().commit()
    flash(_("Ticket #%(id)s opened.", id=ticket.id), "success")
    return redirect(url_for("tickets.show", ticket_id=ticket.id))


def parse_local_datetime(raw: str) -> dt.datetime:
    """A ``datetime-local`` form value in the group's time zone -> naive UTC as stored.

    Raises:
        TicketError: not a date and time.
    """
    try:
        local = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise TicketError(_("Enter a date and time.")) from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=ZoneInfo(settings().timezone))
    return local.astimezone(dt.UTC).replace(tzinfo=None)
