"""Recording a finished attempt: one transaction from a :class:`CallResult` to every row it implies.

``record_outcome`` writes the call (disposition, SIP facts, times, score, sentiment, answers,
actions), its transcript (utterances), feedback tags with their evidence, tickets routed to the
department of their category, callbacks at the customer's time, do-not-call entries, and moves
the task on (final state or a retry) by :func:`campaigns.rules.decide`. It is idempotent: the
first statement only updates a call that has not ended yet, so a worker that crashed after
committing and is redelivered the same attempt writes nothing twice. ``record_lost`` writes off
an attempt whose worker died. Both run on the caller's thread, inside the caller's session.

Tickets: one per :class:`~callcenter.domain.calls.OpenTicket` action, plus one per complaint
category the classifier found (anything but praise) that no action covered, when the call went
badly (negative sentiment or a score of 3 or less: dealers count 一般 as a problem).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

import sqlalchemy as sa
from sqlalchemy.orm import Session

from callcenter.domain import (
    CATEGORY_ZH,
    CallDisposition,
    Department,
    FeedbackCategory,
    Sentiment,
    Speaker,
)
from callcenter.domain.calls import (
    AddToDnc,
    CallResult,
    Finding,
    OpenTicket,
    RecordAnswer,
    ScheduleCallback,
    Turn,
    action_to_dict,
)
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    CallOutcome,
    CallTag,
    CallTask,
    DoNotCall,
    TaskState,
    Ticket,
    TicketEvent,
    Utterance,
    utcnow,
)
from campaigns.rules import AttemptFact, Decision, RetryPolicy, decide, derive_outcome

logger = logging.getLogger(__name__)

TICKET_DUE_HOURS = 48  # complaint follow-up SLA: the department answers within two working days
# The agents' task when the robot could not hand a customer over (the technical reason is the call's error).
TRANSFER_FAILED_TASK = "客户要求转人工,转接失败,请尽快回电"
MAX_TURN_CHARS = 4000
MAX_TURNS = 2000
CATEGORY_LABELS = CATEGORY_ZH


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :func:`record_outcome` did."""

    call_id: int
    recorded: bool  # False: the attempt had already been recorded (nothing written)
    outcome: CallOutcome | None
    task_state: TaskState | None  # the task's state afterwards (None: task not moved)
    retry_at: dt.datetime | None = None
    problems: tuple[str, ...] = ()


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"datetime without a time zone: {value.isoformat()}")
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def sanitize(result: CallResult) -> tuple[CallResult, list[str]]:
    """Drop the fields of ``result`` that cannot be stored, saying why; keep everything else."""
    problems: list[str] = []
    changes: dict = {}
    if not isinstance(result.disposition, CallDisposition):
        try:
            changes["disposition"] = CallDisposition(result.disposition)
        except ValueError:
            problems.append(f"disposition {result.disposition!r} unknown: recorded as failed")
            changes["disposition"] = CallDisposition.FAILED
    if result.score5 is not None and (isinstance(result.score5, bool) or result.score5 not in range(1, 6)):
        problems.append(f"score5={result.score5!r} is not 1-5: dropped")
        changes["score5"] = None
    if result.nps is not None and (isinstance(result.nps, bool) or result.nps not in range(11)):
        problems.append(f"nps={result.nps!r} is not 0-10: dropped")
        changes["nps"] = None
    if result.recording is not None:
        path = PurePosixPath(str(result.recording))
        if (path.is_absolute() or ".." in path.parts or "\x00" in str(result.recording)
                or len(str(result.recording)) > 255 or not str(result.recording).strip()):
            problems.append(f"recording path {str(result.recording)[:80]!r} is not relative to the data dir: dropped")
            changes["recording"] = None
    for name in ("ringing_at", "answered_at", "ended_at"):
        value = getattr(result, name)
        if value is not None and (not isinstance(value, dt.datetime) or value.tzinfo is None):
            problems.append(f"{name} has no time zone: dropped")
            changes[name] = None
    turns = []
    for i, turn in enumerate(result.turns[:MAX_TURNS]):
        if not isinstance(turn, Turn) or not isinstance(turn.text, str):
            problems.append(f"turn {i} is malformed: dropped")
            continue
        if len(turn.text) > MAX_TURN_CHARS:
            turn = replace(turn, text=turn.text[:MAX_TURN_CHARS])
            problems.append(f"turn {i} longer than {MAX_TURN_CHARS} characters: truncated")
        turns.append(turn)
    if len(result.turns) > MAX_TURNS:
        problems.append(f"{len(result.turns) - MAX_TURNS} turns beyond {MAX_TURNS}: dropped")
    if len(turns) != len(result.turns):
        changes["turns"] = tuple(turns)
    return (replace(result, **changes) if changes else result), problems


def _history(session: Session, task_id: int) -> list[AttemptFact]:
    rows = session.execute(
        sa.select(Call.disposition, Call.outcome).where(Call.task_id == task_id).order_by(Call.attempt)
    ).all()
    return [AttemptFact(d, o) for d, o in rows]


def _apply_decision(session: Session, call: Call, decision: Decision, now: dt.datetime) -> TaskState | None:
    """Move the task of ``call`` on, if it is still on this attempt (conditional update)."""
    values: dict = {"state": decision.state, "outcome": decision.outcome,
                    "last_disposition": call.disposition, "updated_at": now}
    if decision.state is TaskState.PENDING:
        values["next_attempt_at"] = decision.retry_at
    else:
        values["finished_at"] = now
    moved = session.execute(
        sa.update(CallTask)
        .where(CallTask.id == call.task_id, CallTask.state == TaskState.DIALING, CallTask.attempts == call.attempt)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        logger.warning("call %s: task %s is no longer on attempt %s; its state is left as it is",
                       call.id, call.task_id, call.attempt)
        return None
    return decision.state


def record_outcome(session: Session, call_id: int, result: CallResult, policy: RetryPolicy,
                   now: dt.datetime | None = None) -> Recorded:
    """Write everything ``result`` implies for call ``call_id`` (see the module docstring).

    Raises:
        LookupError: no such call.
    """
    now = now or utcnow()
    call = session.get(Call, call_id)
    if call is None:
        raise LookupError(f"call {call_id} does not exist")
    if call.ended_at is not None:
        return Recorded(call_id, False, call.outcome, None)
    result, problems = sanitize(result)
    outcome = derive_outcome(result)
    answered_at = naive_utc(result.answered_at)
    ended_at = naive_utc(result.ended_at) or now
    talk = round((ended_at - answered_at).total_seconds(), 2) if answered_at and ended_at >= answered_at else None
    answers = {a.question: a.value for a in result.actions if isinstance(a, RecordAnswer)}
    error = "; ".join(filter(None, [result.error, *problems])) or None
    claimed = session.execute(
        sa.update(Call)
        .where(Call.id == call_id, Call.ended_at.is_(None))
        .values(
            disposition=result.disposition.value, sip_code=result.sip_code,
            sip_reason=(result.sip_reason or None) and result.sip_reason[:200],
            sip_call_id=(result.sip_call_id or None) and result.sip_call_id[:128],
            outcome=outcome, hangup_by=result.hangup_by if result.hangup_by in ("local", "remote") else None,
            ringing_at=naive_utc(result.ringing_at), answered_at=answered_at, ended_at=ended_at,
            talk_seconds=talk, recording=result.recording, score5=result.score5, nps=result.nps,
            sentiment=result.sentiment.value if isinstance(result.sentiment, Sentiment) else None,
            answers=answers or None, actions=[action_to_dict(a) for a in result.actions] or None, error=error,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:  # recorded meanwhile by someone else
        return Recorded(call_id, False, None, None)
    session.refresh(call)

    _utterances(session, call, result.turns)
    _tags(session, call, result)
    _tickets(session, call, result, now, problems)
    robot_callback_at, agent_callback = _callbacks(session, call, result, now)
    for action in result.actions:
        if isinstance(action, AddToDnc):
            _add_to_dnc(session, call, action, now)
            break

    state = None
    decision = None
    if call.task_id is not None:
        history = _history(session, call.task_id)
        if outcome is CallOutcome.CALLBACK and agent_callback and robot_callback_at is None:
            decision = Decision(TaskState.COMPLETED, outcome, reason="an agent will call back")
        else:
            decision = decide(history, policy, now, callback_at=robot_callback_at)
        state = _apply_decision(session, call, decision, now)
        # This attempt fulfilled any robot callback promised earlier on the task.
        session.execute(
            sa.update(Callback)
            .where(Callback.task_id == call.task_id, Callback.robot.is_(True),
                   Callback.status.in_([CallbackStatus.PENDING, CallbackStatus.QUEUED]),
                   sa.or_(Callback.call_id.is_(None), Callback.call_id != call.id))
            .values(status=CallbackStatus.DONE, done_call_id=call.id, done_at=now)
            .execution_options(synchronize_session=False)
        )
    logger.info("call %s recorded: %s / %s -> task %s", call.id, result.disposition.value, outcome.value,
                state.value if state else "unchanged")
    return Recorded(call_id, True, outcome, state,
                    decision.retry_at if decision and state is TaskState.PENDING else None, tuple(problems))


def record_lost(session: Session, call_id: int, reason: str, policy: RetryPolicy,
                now: dt.datetime | None = None) -> Recorded:
    """Write off an attempt whose worker died: outcome ``error`` with ``reason``; retry or fail the task."""
    now = now or utcnow()
    claimed = session.execute(
        sa.update(Call)
        .where(Call.id == call_id, Call.ended_at.is_(None))
        .values(ended_at=now, outcome=CallOutcome.ERROR, error=reason[:2000])
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        return Recorded(call_id, False, None, None)
    call = session.get(Call, call_id)
    session.refresh(call)
    state = None
    decision = None
    if call.task_id is not None:
        decision = decide(_history(session, call.task_id), policy, now)
        state = _apply_decision(session, call, decision, now)
    logger.warning("call %s written off: %s -> task %s", call_id, reason, state.value if state else "unchanged")
    return Recorded(call_id, True, CallOutcome.ERROR, state,
                    decision.retry_at if decision and state is TaskState.PENDING else None)


# --------------------------------------------------------------------------- the parts


def _utterances(session: Session, call: Call, turns: tuple[Turn, ...]) -> None:
    rows = []
    for seq, t in enumerate(turns):
        speaker = t.speaker.value if isinstance(t.speaker, Speaker) else str(t.speaker)
        rows.append({
            "call_id": call.id, "seq": seq, "speaker": speaker[:10], "text": t.text,
            "start": float(t.start), "end": float(t.end), "confidence": t.confidence,
            "intent": t.intent.value if t.intent is not None else None,
            "prompt_id": (t.prompt_id or None) and t.prompt_id[:64],
        })
    if rows:
        session.execute(sa.insert(Utterance), rows)


def _tags(session: Session, call: Call, result: CallResult) -> None:
    merged: dict[FeedbackCategory, Finding] = {}
    for f in result.findings:
        if not isinstance(f.category, FeedbackCategory):
            continue
        if f.category in merged:  # one tag per category: keep the best confidence, all evidence
            prev = merged[f.category]
            conf = max(c for c in (prev.confidence, f.confidence, -1.0) if c is not None)
            merged[f.category] = Finding(f.category, conf if conf >= 0 else None, prev.evidence + f.evidence)
        else:
            merged[f.category] = f
    rows = []
    for category, f in merged.items():
        evidence = [
            {"utterance": e.turn, "text": e.text, "start": e.start, "end": e.end}
            for e in f.evidence if 0 <= e.turn < len(result.turns)
        ]
        rows.append({"call_id": call.id, "category": category.value, "department": category.department.value,
                     "confidence": f.confidence, "evidence": evidence or None, "source": "model"})
    if rows:
        session.execute(sa.insert(CallTag), rows)


def _customer_words(result: CallResult, limit: int = 2000) -> str:
    text = " / ".join(t.text for t in result.turns if t.speaker is Speaker.CUSTOMER and t.text.strip())
    return text[:limit]


def _department(action: OpenTicket) -> Department:
    return action.department or (action.category.department if action.category else Department.CRM)


def _tickets(session: Session, call: Call, result: CallResult, now: dt.datetime, problems: list[str]) -> None:
    # One ticket per department per call: the robot already merges its problems so; a runner that
    # asked twice for one department (or an agent's call) gets the first, the rest's words appended.
    wanted: dict[Department, OpenTicket] = {}
    for action in (a for a in result.actions if isinstance(a, OpenTicket)):
        dept = _department(action)
        if dept in wanted:
            first = wanted[dept]
            more = "\n".join(x for x in (first.description, action.title, action.description) if x)
            wanted[dept] = replace(first, description=more or None,
                                               priority="high" if "high" in (first.priority, action.priority)
                                               else first.priority)
        else:
            wanted[dept] = action
    went_badly = result.sentiment is Sentiment.NEGATIVE or (result.score5 is not None and result.score5 <= 3)
    if went_badly:
        # Problems the classifier found that no ticket covers (a runner without the robot's ledger):
        # one ticket for each department left out, naming its categories.
        extra: dict[Department, list] = {}
        for f in result.findings:
            if (isinstance(f.category, FeedbackCategory) and f.category is not FeedbackCategory.PRAISE
                    and f.category.department not in wanted):
                extra.setdefault(f.category.department, []).append(f)
        for dept, findings in extra.items():
            labels = dict.fromkeys(CATEGORY_LABELS[f.category] for f in findings)
            wanted[dept] = OpenTicket(title="客户反馈:" + "、".join(labels), category=findings[0].category,
                                      department=dept)  # the description: the customer's words
    if not wanted:
        return
    if call.customer_id is None or call.store_id is None:
        problems.append("tickets requested for a call without a customer or store: not opened")
        return
    high = result.score5 is not None and result.score5 <= 2
    description = _customer_words(result) or None
    for department, action in wanted.items():
        ticket = Ticket(
            call_id=call.id, customer_id=call.customer_id, store_id=call.store_id,
            department=department.value, category=action.category.value if action.category else None,
            kind=action.ticket_kind if action.ticket_kind in ("complaint", "follow_up") else "complaint",
            title=(action.title or "客户反馈")[:200], description=action.description or description,
            priority=action.priority if action.priority in ("low", "normal", "high") else "normal",
            due_at=now + dt.timedelta(hours=TICKET_DUE_HOURS),
        )
        if high and ticket.priority == "normal":
            ticket.priority = "high"
        session.add(ticket)
        session.flush()
        session.add(TicketEvent(ticket_id=ticket.id, at=now, action="created",  # the console words it
                                data={"call_id": call.id, "department": department.value}))


def _callbacks(session: Session, call: Call, result: CallResult,
               now: dt.datetime) -> tuple[dt.datetime | None, bool]:
    """Insert the callbacks asked for; return (the robot's callback time, whether an agent's was asked)."""
    robot_at: dt.datetime | None = None
    agent = False
    for action in result.actions:
        if not isinstance(action, ScheduleCallback):
            continue
        try:
            due = naive_utc(action.at)
        except (ValueError, AttributeError):
            logger.warning("call %s: callback without a time zone ignored", call.id)
            continue
        due = max(due, now)
        if call.customer_id is None or call.store_id is None:
            continue
        reason = action.reason
        if call.outcome is CallOutcome.TRANSFER_FAILED and not action.robot:
            reason = TRANSFER_FAILED_TASK
        session.add(Callback(customer_id=call.customer_id, store_id=call.store_id, call_id=call.id,
                             task_id=call.task_id, due_at=due, reason=(reason or None) and reason[:200],
                             robot=bool(action.robot), status=CallbackStatus.PENDING, created_at=now))
        if action.robot:
            robot_at = due if robot_at is None else min(robot_at, due)
        else:
            agent = True
    return robot_at, agent


def _add_to_dnc(session: Session, call: Call, action: AddToDnc, now: dt.datetime) -> None:
    if not call.phone:
        return
    exists = session.scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == call.phone))
    if exists is None:
        try:
            with session.begin_nested():  # another call may add the same number at the same moment
                session.add(DoNotCall(phone=call.phone, customer_id=call.customer_id,
                                      reason=(action.reason or "客户要求不再来电")[:200], source="robot",
                                      call_id=call.id, created_at=now))
        except sa.exc.IntegrityError:
            pass
    if call.customer_id is not None:
        # Other campaigns' open tasks for this customer end here; the one on the line is decided above.
        session.execute(
            sa.update(CallTask)
            .where(CallTask.customer_id == call.customer_id, CallTask.id != call.task_id,
                   CallTask.state.in_([TaskState.PENDING, TaskState.QUEUED]))
            .values(state=TaskState.CANCELLED, finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
