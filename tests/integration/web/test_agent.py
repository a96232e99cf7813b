"""The agent's workspace: the queue, dialing (claim + reveal), the disposition and what it sets off."""

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from callcenter.storage import live
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    CallTask,
    DoNotCall,
    TaskState,
    Ticket,
    TicketStatus,
    User,
    utcnow,
)
from callcenter.storage.web_models import AuditLog

pytestmark = pytest.mark.integration


def test_the_queue_lists_the_stores_callbacks_and_preview_calls_with_masked_numbers(console, client_for):
    app, world = console
    page = client_for("agent_s1").get("/agent/").get_data(as_text=True)
    assert "王S1" in page and "王S2" not in page  # store scope
    assert "138****5678" in page and "13812345678" not in page  # masked for agents


def test_dial_claims_the_task_once_reveals_the_number_and_publishes(console, client_for, csrf, db, redis_client):
    app, world = console
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(live.CALLS_CHANNEL)
    pubsub.get_message(timeout=1)
    task = world.tasks["S1-preview"]
    first = client_for("agent_s1").post("/agent/dial", data={"kind": "task", "id": task, "csrf_token": csrf},
                                        headers={"Accept": "application/json"})
    assert first.status_code == 200
    assert first.json["phone"] == "13812345678" and first.json["dial"] == "13812345678"
    call_id = first.json["call_id"]
    # A second agent (a supervisor taking calls) cannot dial the same preview call.
    again = client_for("sup_s1").post("/agent/dial", data={"kind": "task", "id": task, "csrf_token": csrf},
                                      headers={"Accept": "application/json"})
    assert again.status_code == 409 and "另一位坐席正在给这位客户打电话" in again.json["message"]
    with db.session() as s:
        t = s.get(CallTask, task)
        call = s.get(Call, call_id)
        assert t.state is TaskState.DIALING and t.attempts == 1
        assert (call.task_id, call.attempt, call.agent_id, call.robot) == (task, 1, world.users["agent_s1"], False)
        reveal = s.scalar(sa.select(AuditLog).where(AuditLog.action == "phone.reveal"))
        assert reveal.target_id == str(world.customers["S1"]) and "13812345678" not in json.dumps(reveal.details)
    message = pubsub.get_message(timeout=2)
    event = live.decode(message["data"])
    assert event.call_id == call_id and event.state is live.LiveCallState.DIALING
    pubsub.close()


def test_a_number_on_the_dnc_list_is_not_dialled(console, client_for, csrf, db):
    app, world = console
    with db.session() as s:
        s.add(DoNotCall(phone="13812345678", source="admin"))
    response = client_for("agent_s1").post("/agent/dial", data={"kind": "task", "id": world.tasks["S1-preview"],
                                                                "csrf_token": csrf})
    assert response.status_code == 409


def _dial(client, csrf, kind, item):
    return client.post("/agent/dial", data={"kind": kind, "id": item, "csrf_token": csrf}).json["call_id"]


def test_the_disposition_closes_the_call_and_schedules_ticket_dnc_and_follow_up(console, client_for, csrf, db):
    app, world = console
    client = client_for("agent_s1")
    call_id = _dial(client, csrf, "task", world.tasks["S1-preview"])
    follow_up = (dt.datetime.now() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/agent/calls/{call_id}/disposition", data={
        "kind": "task", "id": world.tasks["S1-preview"], "disposition": "answered", "outcome": "completed",
        "score5": "2", "nps": "3", "notes": "客户对洗车不满意", "follow_up_at": follow_up, "follow_up_reason": "确认洗车",
        "dnc": "1", "ticket_title": "洗车不干净", "ticket_department": "after_sales", "ticket_category": "car_wash",
        "ticket_priority": "high", "csrf_token": csrf})
    assert response.status_code == 302
    with db.session() as s:
        call = s.get(Call, call_id)
        assert call.ended_at is not None and call.outcome.value == "completed" and call.score5 == 2 and call.nps == 3
        assert call.notes == "客户对洗车不满意"
        assert s.get(CallTask, world.tasks["S1-preview"]).state is TaskState.COMPLETED
        ticket = s.scalar(sa.select(Ticket).where(Ticket.call_id == call_id))
        assert (ticket.title, ticket.category, ticket.priority) == ("洗车不干净", "car_wash", "high")
        assert ticket.due_at - utcnow() < dt.timedelta(days=1, minutes=1)  # high priority: a day
        cb = s.scalar(sa.select(Callback).where(Callback.call_id == call_id))
        assert cb.assignee_id == world.users["agent_s1"] and not cb.robot and cb.reason == "确认洗车"
        assert s.scalar(sa.select(DoNotCall.source).where(DoNotCall.phone == "13812345678")) == "agent"
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action == "dnc.add")) == 1
    # Closed calls cannot be closed twice.
    again = client.post(f"/agent/calls/{call_id}/disposition", data={"disposition": "answered", "outcome": "completed",
                                                                      "csrf_token": csrf})
    assert again.status_code == 302
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Ticket).where(Ticket.call_id == call_id)) == 1


def test_no_answer_puts_the_preview_call_back_for_a_retry(console, client_for, csrf, db):
    app, world = console
    client = client_for("agent_s1")
    call_id = _dial(client, csrf, "task", world.tasks["S1-preview"])
    client.post(f"/agent/calls/{call_id}/disposition", data={
        "kind": "task", "id": world.tasks["S1-preview"], "disposition": "no_answer", "outcome": "completed",
        "csrf_token": csrf})
    with db.session() as s:
        task = s.get(CallTask, world.tasks["S1-preview"])
        call = s.get(Call, call_id)
        assert call.outcome.value == "not_reached" and call.talk_seconds == 0
        assert task.state is TaskState.PENDING
        assert dt.timedelta(hours=1, minutes=59) < task.next_attempt_at - utcnow() <= dt.timedelta(hours=2)


def test_bad_scores_and_past_follow_ups_are_refused_and_nothing_is_saved(console, client_for, csrf, db):
    app, world = console
    client = client_for("agent_s1")
    call_id = _dial(client, csrf, "callback", world.callbacks["S1"])
    response = client.post(f"/agent/calls/{call_id}/disposition", data={
        "kind": "callback", "id": world.callbacks["S1"], "disposition": "answered", "outcome": "completed",
        "score5": "9", "follow_up_at": "2001-01-01T10:00", "csrf_token": csrf}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "满意度必须在 1 到 5 之间" in page and "跟进回电时间必须晚于现在" in page
    with db.session() as s:
        assert s.get(Call, call_id).ended_at is None


def test_a_verification_callback_verifies_the_resolved_ticket(console, client_for, csrf, db):
    app, world = console
    with db.session() as s:
        ticket = s.get(Ticket, world.tickets["S1"])
        ticket.status = TicketStatus.RESOLVED
        ticket.resolution = "重新洗车"
        s.get(Callback, world.callbacks["S1"]).ticket_id = ticket.id
    client = client_for("agent_s1")
    call_id = _dial(client, csrf, "callback", world.callbacks["S1"])
    client.post(f"/agent/calls/{call_id}/disposition", data={
        "kind": "callback", "id": world.callbacks["S1"], "disposition": "answered", "outcome": "completed",
        "verified": "1", "csrf_token": csrf})
    with db.session() as s:
        ticket = s.get(Ticket, world.tickets["S1"])
        assert ticket.status is TicketStatus.VERIFIED and ticket.verify_call_id == call_id
        assert s.get(Callback, world.callbacks["S1"]).status is CallbackStatus.DONE


def test_an_agent_cannot_close_another_agents_call(console, client_for, csrf, db):
    app, world = console
    call_id = _dial(client_for("agent_s1"), csrf, "task", world.tasks["S1-preview"])
    with db.session() as s:
        other = User(username="agent_s1b", password_hash="x", role=s.get(User, world.users["agent_s1"]).role,
                     store_id=world.stores["S1"])
        s.add(other)
        s.flush()
        from web.security import session_stamp

        stamp, uid = session_stamp(other), other.id
    client = client_for(None)
    with client.session_transaction() as sess:
        sess["uid"], sess["stamp"] = uid, stamp
    response = client.post(f"/agent/calls/{call_id}/disposition", data={"disposition": "answered",
                                                                         "outcome": "completed", "csrf_token": csrf})
    assert response.status_code == 404


def test_a_call_left_open_stays_on_the_agents_list_with_its_form(console, client_for, csrf, db):
    app, world = console
    client = client_for("agent_s1")
    call_id = _dial(client, csrf, "task", world.tasks["S1-preview"])
    page = client.get("/agent/").get_data(as_text=True)  # the agent reloads the page
    assert f'/agent/calls/{call_id}/disposition' in page and "13812345678" in page


def test_a_robot_call_handed_to_the_agent_is_on_their_list_and_the_dialer_keeps_its_end(console, client_for,
                                                                                        csrf, db):
    app, world = console
    with db.session() as s:
        call = s.get(Call, world.calls["S1"])
        call.agent_id, call.ended_at, call.outcome = world.users["agent_s1"], None, None
    client = client_for("agent_s1")
    page = client.get(f"/agent/?kind=call&id={world.calls['S1']}").get_data(as_text=True)
    assert "机器人转接" in page and f"/live/calls/{world.calls['S1']}" in page
    assert "13812345678" not in page  # nothing to dial: the number stays masked
    response = client.post(f"/agent/calls/{world.calls['S1']}/disposition", data={
        "kind": "call", "id": world.calls["S1"], "score5": "3", "notes": "客户对洗车仍有意见",
        "ticket_title": "洗车复查", "ticket_department": "after_sales", "csrf_token": csrf})
    assert response.status_code == 302
    with db.session() as s:
        call = s.get(Call, world.calls["S1"])
        assert call.ended_at is None and call.outcome is None  # the dialer ends it
        assert call.score5 == 3 and call.notes == "客户对洗车仍有意见"
        assert s.scalar(sa.select(Ticket.title).where(Ticket.title == "洗车复查")) == "洗车复查"
    other = client_for("agent_s2").get(f"/agent/?kind=call&id={world.calls['S1']}")
    assert other.status_code == 404
