"""Dealer-group customers in the console (issue 13): a customer of the group with a car at each of
two stores; each store's staff find the customer and see only their store's cars, visits, calls
and tickets."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.domain import Gender, Tier, VisitType
from callcenter.storage.models import Call, Customer, ServiceVisit, Ticket, TicketStatus, Vehicle

pytestmark = pytest.mark.integration


@pytest.fixture
def group_customer(console, db):
    _app, world = console
    with db.session() as s:
        c = Customer(external_id="G-1", store_id=world.stores["S1"], name="欧阳娜娜", phone="13700001111",
                     gender=Gender.FEMALE)
        s.add(c)
        s.flush()
        for code, model, advisor in (("S1", "卡罗拉", "张三"), ("S2", "宝马X5", "李四")):
            sid = world.stores[code]
            car = Vehicle(customer_id=c.id, store_id=sid, vin=f"LVGBE40K{code[1]}8G000777", model=model, tier=Tier.MID)
            s.add(car)
            s.flush()
            s.add(ServiceVisit(dedup_key=f"g-{code}", customer_id=c.id, vehicle_id=car.id, store_id=sid,
                               visit_date=dt.date.today() - dt.timedelta(days=5), visit_type=VisitType.REPAIR,
                               paid=True, advisor=advisor))
            call = Call(customer_id=c.id, store_id=sid, robot=True, phone=c.phone, sip_reason=f"{code}-call")
            s.add(call)
            s.flush()
            s.add(Ticket(call_id=call.id, customer_id=c.id, store_id=sid, department="after_sales",
                         title=f"{code} 的工单", status=TicketStatus.OPEN))
        return c.id


@pytest.mark.attack
def test_each_store_sees_the_group_customer_through_its_own_cars_only(console, client_for, group_customer):
    own = {"S1": ("卡罗拉", "张三", "S1 的工单"), "S2": ("宝马X5", "李四", "S2 的工单")}
    for user, store in (("agent_s2", "S2"), ("sup_s1", "S1")):
        client = client_for(user)
        # Before: store S2 did not find the customer at all (their home store is S1).
        assert "欧阳娜娜" in client.get("/customers/?q=欧阳").get_data(as_text=True)
        page = client.get(f"/customers/{group_customer}").get_data(as_text=True)
        other = "S1" if store == "S2" else "S2"
        for text in own[store]:
            assert text in page, (user, text)
        for text in own[other]:  # before: the whole file, the other store's cars and visits included
            assert text not in page, (user, text)
    page = client_for("sup_all").get(f"/customers/{group_customer}").get_data(as_text=True)
    assert all(text in page for texts in own.values() for text in texts)


def test_a_store_without_a_tie_to_the_customer_still_gets_404(console, client_for):
    _app, world = console
    assert client_for("agent_s2").get(f"/customers/{world.customers['S1']}").status_code == 404


def test_a_ticket_opened_in_a_store_for_a_group_customer_is_that_stores(console, client_for, csrf, db,
                                                                         group_customer):
    # Before: store S2's agent got 404 for the customer (home store S1), and a ticket was always the
    # home store's, out of S2's sight.
    client = client_for("agent_s2")
    response = client.post("/tickets/new", data={"customer_id": group_customer, "title": "二店的投诉",
                                                  "department": "after_sales", "csrf_token": csrf})
    assert response.status_code == 302
    with db.session() as s:
        ticket = s.scalar(sa.select(Ticket).where(Ticket.title == "二店的投诉"))
        s1_call = s.scalar(sa.select(Call.id).where(Call.customer_id == group_customer, Call.sip_reason == "S1-call"))
    _app, world = console
    assert ticket.store_id == world.stores["S2"]
    # another store's call of the same customer cannot be used to file a ticket into that store
    response = client.post("/tickets/new", data={"customer_id": group_customer, "title": "借一店的通话",
                                                  "department": "after_sales", "call_id": s1_call,
                                                  "csrf_token": csrf})
    assert response.status_code == 404


def test_an_unpaid_visit_in_a_store_is_enough_for_the_store_to_see_the_customer(console, client_for, db):
    _app, world = console
    with db.session() as s:
        c = Customer(external_id="G-2", store_id=world.stores["S1"], name="司马光", phone="13700002222")
        s.add(c)
        s.flush()
        s.add(ServiceVisit(dedup_key="g2", customer_id=c.id, store_id=world.stores["S2"], paid=False,
                           visit_date=dt.date.today() - dt.timedelta(days=3), visit_type=VisitType.WARRANTY))
        customer_id = c.id
    assert client_for("agent_s2").get(f"/customers/{customer_id}").status_code == 200
    assert "司马光" in client_for("agent_s2").get("/customers/?q=司马").get_data(as_text=True)
