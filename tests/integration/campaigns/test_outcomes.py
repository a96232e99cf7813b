"""Claiming attempts and recording outcomes against the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from callcenter.domain import CallDisposition, Department, FeedbackCategory, Intent, Sentiment, Speaker
from callcenter.domain.calls import (
    AddToDnc,
    CallEnd,
    CallResult,
    Evidence,
    Finding,
    OpenTicket,
    RecordAnswer,
    ScheduleCallback,
    Turn,
)
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    CallOutcome,
    CallTag,
    CallTask,
    Campaign,
    CampaignStatus,
    DoNotCall,
    TaskState,
    Ticket,
    TicketEvent,
    Utterance,
)
from campaigns.attempts import ClaimKind, claim_attempt
from campaigns.outcomes import record_lost, record_outcome
from campaigns.queue import Message
from campaigns.rules import DialPolicy, NoHolidays, RetryPolicy, parse_windows
from campaigns.service import CampaignSpec, change_status, create_campaign

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 2, 0)  # 10:00 in Shanghai
OPEN_ALL_DAY = {"windows": "00:00-24:00", "holidays": False}
DEFAULTS = DialPolicy(windows=parse_windows("09:00-12:00,14:00-20:00"))
UTC = dt.UTC


def post_service_campaign(db, world, settings, n=1, **params) -> tuple[int, list[int]]:
    customers = []
    for i in range(n):
        cid = world.customer(f"客户{i}")
        world.visit(cid, world.vehicle(cid), AS_OF - dt.timedelta(days=1))
        customers.append(cid)
    report = create_campaign(db, CampaignSpec(type="post_service", as_of=AS_OF, params={**OPEN_ALL_DAY, **params}),
                             settings, known_scripts={"post_service"}, now=NOW)
    change_status(db, report["id"], "start", now=NOW)
    with db.session() as s:
        tasks = s.scalars(sa.select(CallTask.id).where(CallTask.campaign_id == report["id"]).order_by(CallTask.id))
        return report["id"], list(tasks)


def queue_task(db, task_id) -> Message:
    """What the scheduler does: pending -> queued, and the entry it would add."""
    with db.session() as s:
        task = s.get(CallTask, task_id)
        task.state = TaskState.QUEUED
        return Message("0-1", task.id, task.attempts + 1, task.campaign_id)


def claim(db, msg, now=NOW, worker="test-host:1"):
    with db.session() as s:
        return claim_attempt(s, msg, now=now, worker=worker, defaults=DEFAULTS, calendar=NoHolidays())


def dial(db, task_id, now=NOW) -> int:
    c = claim(db, queue_task(db, task_id), now)
    assert c.kind is ClaimKind.DIAL, c.reason
    return c.request.call_id


def record(db, call_id, result, policy=None, now=NOW):
    with db.session() as s:
        return record_outcome(s, call_id, result, policy or RetryPolicy(), now)


def task_of(db, task_id) -> CallTask:
    with db.session() as s:
        return s.get(CallTask, task_id)


def at(minutes: float) -> dt.datetime:
    return (NOW + dt.timedelta(minutes=minutes)).replace(tzinfo=UTC)


# ----------------------------------------------------------------- claiming


def test_an_attempt_is_claimed_exactly_once_even_by_racing_workers(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    msg = queue_task(db, task_id)
    kinds = []

    def worker(i):
        try:
            kinds.append(claim(db, msg, worker=f"host:{100 + i}").kind)
        except sa.exc.IntegrityError:  # lost the race at the UNIQUE(task_id, attempt) insert
            kinds.append("integrity")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kinds.count(ClaimKind.DIAL) == 1 and len(kinds) == 6
    with db.session() as s:
        calls = s.scalars(sa.select(Call).where(Call.task_id == task_id)).all()
        assert len(calls) == 1 and calls[0].attempt == 1 and calls[0].ended_at is None
        task = s.get(CallTask, task_id)
        assert task.state is TaskState.DIALING and task.attempts == 1
    # the same entry delivered again (a redelivery after a crash) is never dialled again
    assert claim(db, msg).kind is ClaimKind.STALE
    assert claim(db, Message("9-9", 999999, 1, 1)).kind is ClaimKind.MISSING


def test_a_worker_resumes_its_own_claim_whose_commit_it_did_not_see(db, world, campaign_settings):
    """The database went away during the claim's COMMIT: the commit happened but the worker got an
    error and retries. Its retry must dial (it owns the attempt); anyone else's must not."""
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    msg = queue_task(db, task_id)
    first = claim(db, msg, worker="host-a:1")
    assert first.kind is ClaimKind.DIAL
    assert claim(db, msg, worker="host-b:2").kind is ClaimKind.STALE
    again = claim(db, msg, worker="host-a:1")
    assert again.kind is ClaimKind.DIAL and again.request.call_id == first.request.call_id
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Call).where(Call.task_id == task_id)) == 1
    # once the attempt is recorded, not even its owner dials it again
    record(db, first.request.call_id, CallResult(disposition=CallDisposition.BUSY, ended_at=at(0)))
    assert claim(db, msg, worker="host-a:1").kind is ClaimKind.STALE


def test_claim_rechecks_what_may_have_changed_since_queueing(db, world, campaign_settings):
    campaign_id, tasks = post_service_campaign(db, world, campaign_settings, n=4)
    a, b, c, d = tasks
    # paused campaign: back to pending, no attempt used
    change_status(db, campaign_id, "pause", now=NOW)
    result = claim(db, queue_task(db, a))
    assert result.kind is ClaimKind.DEFERRED and "paused" in result.reason
    assert task_of(db, a).state is TaskState.PENDING and task_of(db, a).attempts == 0
    change_status(db, campaign_id, "resume", now=NOW)
    # the number went onto the do-not-call list meanwhile
    world.dnc(task_of(db, b).phone)
    assert claim(db, queue_task(db, b)).kind is ClaimKind.CANCELLED
    assert task_of(db, b).state is TaskState.CANCELLED
    # outside the calling window (campaign windows 00:00-24:00, so narrow them in its params)
    with db.session() as s:
        camp = s.get(Campaign, campaign_id)
        camp.params = {**camp.params, "windows": "09:00-12:00"}
    late = claim(db, queue_task(db, c), now=NOW + dt.timedelta(hours=11))  # 21:00 local
    assert late.kind is ClaimKind.DEFERRED and "outside the calling windows" in late.reason
    assert task_of(db, c).state is TaskState.PENDING
    # the customer is on another campaign's call right now
    other = world.earlier_task(campaign_type(), customer_of(db, d), state=TaskState.DIALING)
    busy = claim(db, queue_task(db, d))
    assert busy.kind is ClaimKind.DEFERRED and f"task {other}" in busy.reason
    assert task_of(db, d).next_attempt_at == NOW + dt.timedelta(minutes=10)
    # a cancelled campaign ends the tasks it still had queued
    change_status(db, campaign_id, "cancel", now=NOW)
    with db.session() as s:
        s.get(CallTask, a).state = TaskState.QUEUED
    assert claim(db, Message("0-2", a, 1, campaign_id)).kind is ClaimKind.CANCELLED


def campaign_type():
    from callcenter.storage.models import CampaignType

    return CampaignType.NPS


def customer_of(db, task_id) -> int:
    return task_of(db, task_id).customer_id


# ----------------------------------------------------------------- recording


def complaint_result() -> CallResult:
    turns = (
        Turn(Speaker.ROBOT, "请问您对这次的保养服务满意吗？", 0.0, 3.0, prompt_id="satisfaction"),
        Turn(Speaker.CUSTOMER, "不太满意，两分。等的时间太长了。", 3.5, 6.0, intent=Intent.COMPLAINT, confidence=0.91),
        Turn(Speaker.ROBOT, "还有其他意见吗？", 6.5, 8.0, prompt_id="anything_else"),
        Turn(Speaker.CUSTOMER, "保险理赔的手续也太麻烦了。不过顾问小刘人很好。", 8.5, 12.0, intent=Intent.COMPLAINT),
    )
    return CallResult(
        disposition=CallDisposition.ANSWERED, sip_code=200, sip_reason="OK", sip_call_id="abc@127.0.0.1",
        hangup_by="local", ringing_at=at(0), answered_at=at(0.1), ended_at=at(1.1), end=CallEnd.COMPLETED,
        turns=turns,
        actions=(RecordAnswer("satisfaction", 2, "不太满意，两分"),
                 OpenTicket("理赔手续繁琐", category=FeedbackCategory.INSURANCE, department=Department.INSURANCE)),
        findings=(Finding(FeedbackCategory.WAIT_TIME, 0.88, (Evidence(1, "等的时间太长了", 9, 16),)),
                  Finding(FeedbackCategory.INSURANCE, 0.7, (Evidence(3, "保险理赔的手续也太麻烦了", 0, 12),)),
                  Finding(FeedbackCategory.PRAISE, 0.6, (Evidence(3, "顾问小刘人很好", 16, 23),)),
                  Finding(FeedbackCategory.WAIT_TIME, 0.95, (Evidence(7, "out of range", 0, 3),))),
        sentiment=Sentiment.NEGATIVE, score5=2, recording="recordings/2026/11/20/1.wav",
    )


def test_a_complaint_is_recorded_with_transcript_tags_and_routed_tickets(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    done = record(db, call_id, complaint_result())
    assert done.recorded and done.outcome is CallOutcome.COMPLETED and done.task_state is TaskState.COMPLETED
    with db.session() as s:
        call = s.get(Call, call_id)
        assert (call.disposition, call.sip_code, call.hangup_by, call.score5, call.sentiment) == \
            ("answered", 200, "local", 2, "negative")
        assert call.answers == {"satisfaction": 2} and call.talk_seconds == 60.0
        assert [a["kind"] for a in call.actions] == ["record_answer", "open_ticket"]
        assert call.ended_at == NOW + dt.timedelta(minutes=1.1) and call.recording.endswith("1.wav")
        lines = s.scalars(sa.select(Utterance).where(Utterance.call_id == call_id).order_by(Utterance.seq)).all()
        assert [(u.seq, u.speaker, u.intent) for u in lines] == \
            [(0, "robot", None), (1, "customer", "complaint"), (2, "robot", None), (3, "customer", "complaint")]
        assert lines[0].prompt_id == "satisfaction" and lines[1].confidence == pytest.approx(0.91)
        tags = {t.category: t for t in s.scalars(sa.select(CallTag).where(CallTag.call_id == call_id))}
        assert set(tags) == {"wait_time", "insurance", "praise"}
        assert tags["wait_time"].department == "after_sales" and tags["insurance"].department == "insurance"
        assert tags["praise"].department == "crm"
        assert tags["wait_time"].confidence == pytest.approx(0.95)  # duplicates merged, best confidence
        assert tags["wait_time"].evidence == [{"utterance": 1, "text": "等的时间太长了", "start": 9, "end": 16}]
        tickets = s.scalars(sa.select(Ticket).where(Ticket.call_id == call_id).order_by(Ticket.id)).all()
        # the dialog's insurance ticket, plus one for the wait-time complaint; none for praise
        assert [(t.department, t.category) for t in tickets] == [("insurance", "insurance"),
                                                                 ("after_sales", "wait_time")]
        assert all(t.priority == "high" for t in tickets)  # score 2
        assert tickets[1].title == "客户反馈:等待/交车时间"  # plain Chinese, never raw recognizer text
        assert "等的时间太长了" in tickets[1].description and "保险理赔" in tickets[1].description
        assert tickets[0].due_at == NOW + dt.timedelta(hours=48)
        events = s.scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id.in_([t.id for t in tickets]))).all()
        assert len(events) == 2 and all(e.action == "created" for e in events)
        task = s.get(CallTask, task_id)
        assert (task.state, task.outcome, task.last_disposition) == \
            (TaskState.COMPLETED, CallOutcome.COMPLETED, "answered")
        assert task.finished_at == NOW

    # recording the same attempt again (a redelivered entry after a crash) writes nothing twice
    again = record(db, call_id, complaint_result())
    assert not again.recorded
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Utterance).where(Utterance.call_id == call_id)) == 4
        assert s.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 2
        assert s.scalar(sa.select(sa.func.count()).select_from(CallTag)) == 3


def test_one_call_opens_one_ticket_per_department(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    result = dataclasses.replace(complaint_result(), actions=(
        OpenTicket("等待或交车时间过长", category=FeedbackCategory.WAIT_TIME, department=Department.AFTER_SALES,
                   description="问:车辆是在约定的时间交给您的吗? 答:“晚了两个小时”"),
        OpenTicket("维修质量有问题", category=FeedbackCategory.REPAIR_QUALITY, priority="high",
                   description="答:“异响没修好”")))
    record(db, call_id, result)
    with db.session() as s:
        tickets = s.scalars(sa.select(Ticket).where(Ticket.call_id == call_id).order_by(Ticket.id)).all()
        # after-sales once (its two problems merged), insurance for the classifier's finding
        assert [(t.department, t.category) for t in tickets] == [("after_sales", "wait_time"),
                                                                 ("insurance", "insurance")]
        assert "晚了两个小时" in tickets[0].description and "异响没修好" in tickets[0].description
        assert tickets[0].priority == "high"


def test_a_refused_survey_is_not_a_completed_revisit(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(0.5),
                        end=CallEnd.REFUSED, actions=(RecordAnswer("consent", False, "不方便,不用了"),))
    done = record(db, call_id, result)
    assert done.outcome is CallOutcome.REFUSED and done.task_state is TaskState.COMPLETED
    with db.session() as s:
        assert s.get(Call, call_id).outcome is CallOutcome.REFUSED


def test_a_happy_customer_gets_no_ticket(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(1),
                        end=CallEnd.COMPLETED, score5=5, sentiment=Sentiment.POSITIVE,
                        findings=(Finding(FeedbackCategory.CAR_WASH, 0.6), Finding(FeedbackCategory.PRAISE, 0.9)))
    record(db, call_id, result)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(CallTag)) == 2


def test_an_opt_out_adds_the_number_to_dnc_and_ends_the_customers_other_tasks(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    customer = customer_of(db, task_id)
    other_campaign_task = world.earlier_task(campaign_type(), customer, state=TaskState.PENDING)
    call_id = dial(db, task_id)
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(0.5),
                        end=CallEnd.OPT_OUT, actions=(AddToDnc("客户要求不再来电"),))
    done = record(db, call_id, result)
    assert done.outcome is CallOutcome.OPT_OUT and done.task_state is TaskState.COMPLETED
    with db.session() as s:
        entry = s.scalar(sa.select(DoNotCall).where(DoNotCall.phone == task_of(db, task_id).phone))
        assert entry is not None and (entry.source, entry.call_id, entry.customer_id) == ("robot", call_id, customer)
        assert s.get(CallTask, other_campaign_task).state is TaskState.CANCELLED
    # the number being on the list already is not an error
    _, (second,) = post_service_campaign(db, world, campaign_settings)
    call2 = dial(db, second)
    with db.session() as s:
        s.get(Call, call2).phone = task_of(db, task_id).phone
    assert record(db, call2, result).recorded


def test_a_robot_callback_brings_the_task_back_at_the_customers_time(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    when = NOW + dt.timedelta(days=1, hours=5)  # 明天下午三点
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(0.3),
                        end=CallEnd.CALLBACK, actions=(ScheduleCallback(when.replace(tzinfo=UTC), "明天下午三点以后"),))
    done = record(db, call_id, result)
    assert done.outcome is CallOutcome.CALLBACK and done.task_state is TaskState.PENDING and done.retry_at == when
    with db.session() as s:
        cb = s.scalar(sa.select(Callback).where(Callback.call_id == call_id))
        assert (cb.due_at, cb.robot, cb.status, cb.task_id) == (when, True, CallbackStatus.PENDING, task_id)
    assert task_of(db, task_id).next_attempt_at == when and task_of(db, task_id).attempts == 1
    # the callback call happens and completes: the promise is kept
    second = dial(db, task_id, now=when)
    record(db, second, CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(1),
                                  end=CallEnd.COMPLETED, score5=4), now=when + dt.timedelta(minutes=2))
    with db.session() as s:
        cb = s.scalar(sa.select(Callback).where(Callback.call_id == call_id))
        assert cb.status is CallbackStatus.DONE and cb.done_call_id == second
    assert task_of(db, task_id).state is TaskState.COMPLETED


def test_an_agent_callback_completes_the_robot_task(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    when = (NOW + dt.timedelta(hours=3)).replace(tzinfo=UTC)
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(0.3),
                        end=CallEnd.CALLBACK, actions=(ScheduleCallback(when, "要找真人", robot=False),))
    assert record(db, call_id, result).task_state is TaskState.COMPLETED
    with db.session() as s:
        assert s.scalar(sa.select(Callback.robot).where(Callback.call_id == call_id)) is False


def test_a_failed_transfer_is_not_transferred_and_gives_the_agents_a_task_in_their_words(db, world,
                                                                                       campaign_settings):
    """Issue 12: the robot told the customer nobody was free; the technical reason stays with the call."""
    from callcenter.domain.calls import Transfer
    from campaigns.outcomes import TRANSFER_FAILED_TASK

    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    when = (NOW + dt.timedelta(minutes=30)).replace(tzinfo=UTC)
    reason = "transfer failed: no agent extension configured (CALLCENTER_TRANSFER_TARGET)"
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(0.5),
                        end=CallEnd.CALLBACK, error=reason,
                        actions=(Transfer("agents"), ScheduleCallback(when, reason, robot=False)))
    recorded = record(db, call_id, result)
    assert recorded.outcome is CallOutcome.TRANSFER_FAILED and recorded.task_state is TaskState.COMPLETED
    with db.session() as s:
        call = s.get(Call, call_id)
        assert call.outcome is CallOutcome.TRANSFER_FAILED and "CALLCENTER_TRANSFER_TARGET" in call.error
        cb = s.scalar(sa.select(Callback).where(Callback.call_id == call_id))
        assert cb.reason == TRANSFER_FAILED_TASK and cb.robot is False


def test_unreached_attempts_are_retried_by_disposition_then_fail(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    policy = RetryPolicy(max_attempts=3)
    now = NOW
    for i, (disposition, delay) in enumerate((("busy", 30), ("no_answer", 120), ("unavailable", None))):
        call_id = dial(db, task_id, now=now)
        done = record(db, call_id, CallResult(disposition=CallDisposition(disposition), sip_code=486,
                                              ended_at=now.replace(tzinfo=UTC)), policy, now=now)
        task = task_of(db, task_id)
        assert task.attempts == i + 1 and task.last_disposition == disposition
        if delay is not None:
            assert task.state is TaskState.PENDING and task.next_attempt_at == now + dt.timedelta(minutes=delay)
            now = task.next_attempt_at
        else:
            assert done.task_state is TaskState.FAILED
            assert (task.state, task.outcome) == (TaskState.FAILED, CallOutcome.NOT_REACHED)


def test_a_lost_attempt_is_written_off_and_retried(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    with db.session() as s:
        done = record_lost(s, call_id, "worker test-host:1 died during the attempt", RetryPolicy(), NOW)
    assert done.recorded and done.task_state is TaskState.PENDING
    with db.session() as s:
        call = s.get(Call, call_id)
        assert call.outcome is CallOutcome.ERROR and "died" in call.error and call.ended_at == NOW
    assert task_of(db, task_id).next_attempt_at == NOW + dt.timedelta(minutes=15)
    # the late result of a worker that was only slow is not written over the write-off
    assert not record(db, call_id, complaint_result()).recorded
    with db.session() as s:
        assert not record_lost(s, call_id, "again", RetryPolicy(), NOW).recorded


def test_what_cannot_be_stored_is_dropped_and_said_the_rest_is_kept(db, world, campaign_settings):
    _, (task_id,) = post_service_campaign(db, world, campaign_settings)
    call_id = dial(db, task_id)
    result = CallResult(disposition=CallDisposition.ANSWERED, answered_at=at(0), ended_at=at(1),
                        end=CallEnd.COMPLETED, score5=9, recording="/etc/passwd",
                        turns=(Turn(Speaker.CUSTOMER, "满意", 0, 1),))
    record(db, call_id, result)
    with db.session() as s:
        call = s.get(Call, call_id)
        assert call.score5 is None and call.recording is None
        assert "score5=9" in call.error and "recording path" in call.error
        assert s.scalar(sa.select(sa.func.count()).select_from(Utterance)) == 1
        assert call.outcome is CallOutcome.COMPLETED
    with pytest.raises(LookupError):
        record(db, 999999, result)


def test_campaign_status_transitions(db, world, campaign_settings):
    from campaigns.service import CampaignError

    campaign_id, _ = post_service_campaign(db, world, campaign_settings)
    assert change_status(db, campaign_id, "pause") == {"id": campaign_id, "status": "paused", "previous": "running"}
    assert change_status(db, campaign_id, "pause")["previous"] == "paused"  # again: harmless
    assert change_status(db, campaign_id, "resume")["status"] == "running"
    assert change_status(db, campaign_id, "cancel")["status"] == "cancelled"
    for action, verb in (("start", "started"), ("pause", "paused"), ("resume", "resumed")):
        with pytest.raises(CampaignError, match=f"is cancelled: it cannot be {verb}"):
            change_status(db, campaign_id, action)
    with pytest.raises(CampaignError, match="does not exist"):
        change_status(db, 424242, "start")
    with db.session() as s:
        assert s.get(Campaign, campaign_id).status is CampaignStatus.CANCELLED
        assert s.get(Campaign, campaign_id).finished_at is not None
        states = set(s.scalars(sa.select(CallTask.state).where(CallTask.campaign_id == campaign_id)))
        assert states == {TaskState.CANCELLED}
