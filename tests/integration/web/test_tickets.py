"""The ticket workflow: open -> assigned -> resolved -> verified, with its rules and history."""

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Callback, Ticket, TicketEvent, TicketStatus

pytestmark = pytest.mark.integration


def _post(client, ticket, csrf, **data):
    return client.post(f"/tickets/{ticket}", data={**data, "csrf_token": csrf}, follow_redirects=True)


def test_the_whole_workflow_with_its_history(console, client_for, csrf, db):
    app, world = console
    t = world.tickets["S1"]
    sup, agent = client_for("sup_s1"), client_for("agent_s1")
    _post(sup, t, csrf, action="assign", assignee_id=world.users["agent_s1"])
    page = _post(agent, t, csrf, action="status", status="resolved", note="").get_data(as_text=True)
    assert "请说明问题是如何解决的" in page  # resolving needs a resolution
    _post(agent, t, csrf, action="status", status="resolved", note="已重新洗车并致歉")
    _post(agent, t, csrf, action="verify_callback", due_at="2030-01-02T10:00")
    # Verifying is the customer's confirmation, recorded by someone other than the resolver.
    refused = _post(agent, t, csrf, action="status", status="verified", note="客户说好了").get_data(as_text=True)
    assert "验证回访电话" in refused
    assert "请说明客户是如何确认" in _post(sup, t, csrf, action="status", status="verified").get_data(as_text=True)
    _post(sup, t, csrf, action="status", status="verified", note="回访确认：客户满意")
    with db.session() as s:
        ticket = s.get(Ticket, t)
        assert ticket.status is TicketStatus.VERIFIED and ticket.resolution == "已重新洗车并致歉"
        assert ticket.resolved_at and ticket.verified_at
        actions = [e.action for e in s.scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id == t)
                                               .order_by(TicketEvent.id))]
        assert actions == ["assigned", "status", "callback", "status"]
        events = list(s.scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id == t).order_by(TicketEvent.id)))
        assert [e.data for e in events] == [
            {"assignee_id": world.users["agent_s1"], "assignee": "agent_s1"}, {"status": "resolved"},
            {"due_at": "2030-01-02T02:00:00", "robot": False}, {"status": "verified"}]
        assert events[1].note == "已重新洗车并致歉" and events[3].note == "回访确认：客户满意"
        assert s.scalar(sa.select(Callback.ticket_id).where(Callback.ticket_id == t)) == t
    # Final states stay final.
    page = _post(sup, t, csrf, action="status", status="open").get_data(as_text=True)
    assert "不能变为" in page


def test_agents_cannot_close_reassign_or_move_due_dates(console, client_for, csrf):
    app, world = console
    agent = client_for("agent_s1")
    t = world.tickets["S1"]
    assert "只有主管可以关闭" in _post(agent, t, csrf, action="status", status="closed").get_data(as_text=True)
    assert agent.post(f"/tickets/{t}", data={"action": "assign", "assignee_id": world.users["agent_s1"],
                                              "csrf_token": csrf}).status_code == 403
    assert agent.post(f"/tickets/{t}", data={"action": "due", "due_at": "2030-01-01T10:00",
                                              "csrf_token": csrf}).status_code == 403


def test_another_agents_ticket_is_invisible_to_an_agent(console, client_for, db):
    app, world = console
    with db.session() as s:
        s.get(Ticket, world.tickets["S1"]).assignee_id = world.users["sup_s1"]
    assert client_for("agent_s1").get(f"/tickets/{world.tickets['S1']}").status_code == 404
    assert client_for("sup_s1").get(f"/tickets/{world.tickets['S1']}").status_code == 200


def test_overdue_tickets_are_flagged_and_filterable(console, client_for):
    page = client_for("sup_all").get("/tickets/?overdue=1").get_data(as_text=True)
    assert page.count('class="overdue"') == 2 and "已超期" in page


def test_assigning_to_someone_of_another_store_is_refused(console, client_for, csrf, db):
    app, world = console
    page = _post(client_for("sup_s1"), world.tickets["S1"], csrf, action="assign",
                 assignee_id=world.users["agent_s2"]).get_data(as_text=True)
    assert "请选择该工单门店的有效用户" in page
    with db.session() as s:
        assert s.get(Ticket, world.tickets["S1"]).assignee_id is None


def test_managers_are_not_offered_or_taken_as_assignees(console, client_for, csrf, db):
    """Managers read tickets; they do not work them (issue 12)."""
    _app, world = console
    sup = client_for("sup_s1")
    page = sup.get(f"/tickets/{world.tickets['S1']}").get_data(as_text=True)
    assert f'value="{world.users["mgr_s1"]}"' not in page and f'value="{world.users["agent_s1"]}"' in page
    page = _post(sup, world.tickets["S1"], csrf, action="assign",
                 assignee_id=world.users["mgr_s1"]).get_data(as_text=True)
    assert "请选择该工单门店的有效用户" in page
    with db.session() as s:
        assert s.get(Ticket, world.tickets["S1"]).assignee_id is None


def test_a_ticket_from_the_call_page_belongs_to_the_customer_of_the_call(console, client_for, csrf, db):
    app, world = console
    client = client_for("sup_s1")
    response = client.post("/tickets/new", data={"customer_id": world.customers["S1"], "call_id": world.calls["S2"],
                                                 "title": "x", "department": "sales", "csrf_token": csrf})
    assert response.status_code == 400  # S2's call is not this customer's
    response = client.post("/tickets/new", data={"customer_id": world.customers["S1"], "call_id": world.calls["S1"],
                                                 "title": "交车手续问题", "department": "sales", "priority": "low",
                                                 "csrf_token": csrf})
    assert response.status_code == 302
    with db.session() as s:
        ticket = s.scalar(sa.select(Ticket).where(Ticket.title == "交车手续问题"))
        assert ticket.store_id == world.stores["S1"] and ticket.status is TicketStatus.OPEN


def test_the_history_reads_in_chinese_and_agents_reach_the_source_call(console, client_for, csrf, db):
    """Structured history rendered through the catalog; an agent hears the call the ticket came from."""
    from callcenter.storage.models import Call

    app, world = console
    t = world.tickets["S1"]
    with db.session() as s:
        s.add(TicketEvent(ticket_id=t, action="created", data={"call_id": world.calls["S1"], "department": "after_sales"}))
    _post(client_for("sup_s1"), t, csrf, action="assign", assignee_id=world.users["agent_s1"])
    agent = client_for("agent_s1")
    page = agent.get(f"/tickets/{t}").get_data(as_text=True)
    assert f"机器人在回访通话 #{world.calls['S1']} 中创建，转售后处理" in page and "分派给 agent_s1" in page
    assert "opened by" not in page and "after_sales" not in page
    assert 'data-testid="source-call"' in page and "车洗得不干净" in page  # the transcript
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a transcript is text, never markup
    recording = agent.get(f"/tickets/{t}/recording")
    assert recording.status_code == 200 and recording.mimetype == "audio/wav"
    assert client_for("agent_s2").get(f"/tickets/{t}/recording").status_code == 404
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Call)) >= 1
        from callcenter.storage.web_models import AuditLog

        assert s.scalar(sa.select(AuditLog.target_id).where(AuditLog.action == "recording.play")) == str(world.calls["S1"])


def test_whoever_resolved_a_ticket_cannot_verify_it(console, client_for, csrf, db):
    app, world = console
    t = world.tickets["S1"]
    sup, other = client_for("sup_s1"), client_for("sup_all")
    _post(sup, t, csrf, action="assign", assignee_id=world.users["sup_s1"])
    _post(sup, t, csrf, action="status", status="resolved", note="已重新洗车")
    page = _post(sup, t, csrf, action="status", status="verified", note="客户满意").get_data(as_text=True)
    assert "解决工单的人不能验证该工单" in page
    assert 'value="verified"' not in sup.get(f"/tickets/{t}").get_data(as_text=True)  # not offered either
    _post(other, t, csrf, action="status", status="verified", note="回访确认：客户满意")
    with db.session() as s:
        assert s.get(Ticket, t).status is TicketStatus.VERIFIED
