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
    _post(sup, t, csrf, action="status", status="verified")
    with db.session() as s:
        ticket = s.get(Ticket, t)
        assert ticket.status is TicketStatus.VERIFIED and ticket.resolution == "已重新洗车并致歉"
        assert ticket.resolved_at and ticket.verified_at
        actions = [e.action for e in s.scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id == t)
                                               .order_by(TicketEvent.id))]
        assert actions == ["assigned", "status", "callback", "status"]
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
