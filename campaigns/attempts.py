"""Claiming an attempt: the database step that makes dialing exactly-once per attempt.

A worker that receives "attempt N of task T" from the stream calls :func:`claim_attempt`
before it dials. In one transaction it re-checks the rules that may have changed since the
task was queued (campaign paused or cancelled, number put on the do-not-call list, calling
window closed, the customer on another call), moves the task ``queued -> dialing`` on
condition that it is still queued on attempt N-1, and inserts the attempt's ``calls`` row,
which UNIQUE(task_id, attempt) makes impossible twice. Only a committed claim is dialled; a
redelivered, duplicated or stale entry finds the task elsewhere and is dropped. Runs on the
worker's call thread inside the caller's session.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from callcenter.storage.models import (
    Call,
    CallTask,
    Campaign,
    CampaignStatus,
    DoNotCall,
    ScriptVersion,
    Store,
    TaskState,
)
from campaigns.queue import Message
from campaigns.rules import DialPolicy, HolidayCalendar, dial_policy, store_callable, store_policy
from campaigns.runner import CallRequest

# A customer already on a call with another campaign is tried again this much later.
BUSY_ELSEWHERE_SECONDS = 600


class ClaimKind(str, enum.Enum):
    DIAL = "dial"  # claimed: dial it
    STALE = "stale"  # the entry is outdated (attempt already started, task moved on)
    DEFERRED = "deferred"  # back to pending: paused campaign, closed window, customer busy
    CANCELLED = "cancelled"  # the task ended without a call (DNC, cancelled campaign)
    MISSING = "missing"  # no such task


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    reason: str = ""
    request: CallRequest | None = None
    policy: DialPolicy | None = None


def _back_to_pending(session: Session, task_id: int, attempts: int, now: dt.datetime,
                     next_at: dt.datetime | None = None) -> None:
    values: dict = {"state": TaskState.PENDING, "updated_at": now}
    if next_at is not None:
        values["next_attempt_at"] = next_at
    session.execute(
        sa.update(CallTask)
        .where(CallTask.id == task_id, CallTask.state == TaskState.QUEUED, CallTask.attempts == attempts)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _cancel(session: Session, task_id: int, attempts: int, now: dt.datetime) -> None:
    session.execute(
        sa.update(CallTask)
        .where(CallTask.id == task_id, CallTask.state == TaskState.QUEUED, CallTask.attempts == attempts)
        .values(state=TaskState.CANCELLED, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def claim_attempt(session: Session, msg: Message, *, now: dt.datetime, worker: str, defaults: DialPolicy,
                  calendar: HolidayCalendar) -> Claim:
    """Claim attempt ``msg.attempt`` of task ``msg.task_id`` for ``worker`` (see the module docstring).

    Raises:
        sqlalchemy.exc.IntegrityError: the attempt's call row exists already (a concurrent claim
            won); the caller rolls back and treats the entry as stale.
    """
    row = session.execute(
        sa.select(CallTask, Campaign, Store.timezone, Store.calling_windows)
        .join(Campaign, Campaign.id == CallTask.campaign_id)
        .join(Store, Store.id == CallTask.store_id)
        .where(CallTask.id == msg.task_id)
    ).first()
    if row is None:
        return Claim(ClaimKind.MISSING, f"task {msg.task_id} does not exist")
    task, campaign, timezone, store_windows = row
    previous = msg.attempt - 1
    if task.state is TaskState.DIALING and task.attempts == msg.attempt:
        own = session.execute(
            sa.select(Call.id, Call.worker, Call.ended_at).where(Call.task_id == task.id, Call.attempt == msg.attempt)
        ).first()
        if own is not None and own.worker == worker[:100] and own.ended_at is None:
            # Our own claim committed although the commit reported an error (the database went
            # away mid-commit): this process owns the attempt and has not dialled it; it does now.
            # The worker never asks for an attempt it is already running.
            policy = dial_policy(defaults, campaign.params, max_channels=campaign.max_channels,
                                 max_attempts=campaign.max_attempts)
            return Claim(ClaimKind.DIAL, "resumed own claim", _request(own.id, task, campaign, msg, timezone), policy)
    if task.state is not TaskState.QUEUED or task.attempts != previous:
        return Claim(ClaimKind.STALE, f"task {task.id} is {task.state.value} after {task.attempts} attempt(s)")
    if campaign.status is CampaignStatus.CANCELLED:
        _cancel(session, task.id, previous, now)
        return Claim(ClaimKind.CANCELLED, "campaign cancelled")
    if campaign.status is not CampaignStatus.RUNNING:
        _back_to_pending(session, task.id, previous, now)
        return Claim(ClaimKind.DEFERRED, f"campaign {campaign.status.value}")
    if session.scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == task.phone)) is not None:
        _cancel(session, task.id, previous, now)
        return Claim(ClaimKind.CANCELLED, "number on the do-not-call list")
    policy = dial_policy(defaults, campaign.params, max_channels=campaign.max_channels,
                         max_attempts=campaign.max_attempts)
    ok, why = store_callable(now, timezone, store_policy(policy, campaign.params, store_windows), calendar)
    if not ok:
        _back_to_pending(session, task.id, previous, now)
        return Claim(ClaimKind.DEFERRED, why or "not callable now")
    busy = session.scalar(
        sa.select(CallTask.id).where(CallTask.customer_id == task.customer_id, CallTask.id != task.id,
                                     CallTask.state == TaskState.DIALING).limit(1)
    )
    if busy is not None:
        _back_to_pending(session, task.id, previous, now, now + dt.timedelta(seconds=BUSY_ELSEWHERE_SECONDS))
        return Claim(ClaimKind.DEFERRED, f"the customer is on another call (task {busy})")
    moved = session.execute(
        sa.update(CallTask)
        .where(CallTask.id == task.id, CallTask.state == TaskState.QUEUED, CallTask.attempts == previous)
        .values(state=TaskState.DIALING, attempts=msg.attempt, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        return Claim(ClaimKind.STALE, f"task {task.id} was claimed concurrently")
    call = Call(task_id=task.id, attempt=msg.attempt, campaign_id=campaign.id, customer_id=task.customer_id,
                store_id=task.store_id, robot=campaign.robot, script=campaign.script, phone=task.phone,
                worker=worker[:100], started_at=now, created_at=now)
    session.add(call)
    session.flush()  # the INSERT: UNIQUE(task_id, attempt) raises here if the attempt exists
    return Claim(ClaimKind.DIAL, request=_request(call.id, task, campaign, msg, timezone), policy=policy)


def _request(call_id: int, task: CallTask, campaign: Campaign, msg: Message, timezone: str) -> CallRequest:
    script_text = None
    if campaign.script_version_id is not None:
        session = object_session(campaign)
        script_text = session.scalar(sa.select(ScriptVersion.text).where(ScriptVersion.id == campaign.script_version_id))
    return CallRequest(
        call_id=call_id, task_id=task.id, attempt=msg.attempt, campaign_id=campaign.id,
        customer_id=task.customer_id, store_id=task.store_id, phone=task.phone, script=campaign.script,
        context=dict(task.context or {}), store_timezone=timezone, script_text=script_text,
    )
