"""Audience rules against the real database (SQLite and PostgreSQL): who is in, who is out, and why."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.customer_base import classify_customers
from callcenter.domain import Gender, Tier, VisitType
from callcenter.domain.dates import add_months
from callcenter.storage.models import CampaignType, TaskState
from campaigns.audience import AudienceQuery, select_audience

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 2, 0)
DAY = dt.timedelta(days=1)


def run(db, ctype, params=None, *, store_id=None, cap_days=7):
    with db.session() as s:
        q = AudienceQuery(type=ctype, as_of=AS_OF, store_id=store_id, params=params or {}, now=NOW,
                          frequency_cap_days=cap_days)
        return select_audience(s, q, params or {})


def ids(audience) -> set[int]:
    return {m.customer_id for m in audience.members}


def test_post_service_window_revisits_and_exclusions(db, world):
    w = world
    inside1 = w.customer("王伟")
    v1 = w.vehicle(inside1)
    visit1 = w.visit(inside1, v1, AS_OF - DAY, advisor="陈静")
    inside3 = w.customer("李娜", gender=Gender.FEMALE)
    w.visit(inside3, w.vehicle(inside3), AS_OF - 3 * DAY)
    too_old = w.customer("张强")
    w.visit(too_old, w.vehicle(too_old), AS_OF - 4 * DAY)
    today = w.customer("刘洋")
    w.visit(today, w.vehicle(today), AS_OF)
    revisited = w.customer("陈杰")
    rv = w.vehicle(revisited)
    w.earlier_task(CampaignType.POST_SERVICE, revisited, visit_id=w.visit(revisited, rv, AS_OF - 2 * DAY))
    cancelled_before = w.customer("杨帆")
    cv = w.vehicle(cancelled_before)
    w.earlier_task(CampaignType.POST_SERVICE, cancelled_before, visit_id=w.visit(cancelled_before, cv, AS_OF - 2 * DAY),
                   state=TaskState.CANCELLED)
    no_phone = w.customer("黄磊", phone=None)
    w.visit(no_phone, None, AS_OF - 2 * DAY)
    bad_phone = w.customer("周涛", phone="12345")
    w.visit(bad_phone, None, AS_OF - 2 * DAY)
    on_dnc = w.customer("吴婷")
    w.visit(on_dnc, None, AS_OF - 2 * DAY)
    with db.session() as s:
        from callcenter.storage.models import Customer

        w.dnc(s.get(Customer, on_dnc).phone)
    capped = w.customer("孙浩")
    w.visit(capped, None, AS_OF - 2 * DAY)
    w.robot_call(capped, NOW - 3 * DAY)
    unanswered_call = w.customer("郑凯")  # an unanswered robot call does not use up the cap
    w.visit(unanswered_call, None, AS_OF - 2 * DAY)
    w.robot_call(unanswered_call, NOW - 3 * DAY, disposition="no_answer")
    old_call = w.customer("马超")  # answered 8 days ago: the 7-day cap has passed
    w.visit(old_call, None, AS_OF - 2 * DAY)
    w.robot_call(old_call, NOW - 8 * DAY)
    two_visits = w.customer("林琳")
    tv = w.vehicle(two_visits)
    w.visit(two_visits, tv, AS_OF - 3 * DAY)
    latest = w.visit(two_visits, tv, AS_OF - DAY)
    other_store = w.customer("何鹏", store="S2")
    w.visit(other_store, None, AS_OF - 2 * DAY, store="S2")

    audience = run(db, CampaignType.POST_SERVICE)
    assert ids(audience) == {inside1, inside3, cancelled_before, unanswered_call, old_call, two_visits, other_store}
    assert audience.excluded == {"no_phone": 2, "dnc": 1, "frequency_cap": 1}
    member = next(m for m in audience.members if m.customer_id == inside1)
    assert member.visit_id == visit1 and member.vehicle_id == v1 and member.store_id == w.stores["S1"]
    assert member.context == {"customer_name": "王伟", "surname": "王", "title": "先生", "store": "锦华丰田岳麓店",
                              "model": "卡罗拉", "brand": "丰田", "plate": "湘A12345",
                              "visit_date": (AS_OF - DAY).isoformat(), "visit_type": "maintenance", "advisor": "陈静"}
    assert next(m for m in audience.members if m.customer_id == inside3).context["title"] == "女士"
    assert next(m for m in audience.members if m.customer_id == two_visits).visit_id == latest

    # the store scope follows the visit's store; a wider window takes in the 4-day-old visit
    assert ids(run(db, CampaignType.POST_SERVICE, store_id=w.stores["S2"])) == {other_store}
    assert too_old in ids(run(db, CampaignType.POST_SERVICE, {"window_days": [1, 4]}))
    assert today in ids(run(db, CampaignType.POST_SERVICE, {"window_days": [0, 1]}))
    # the cap can be switched off
    assert capped in ids(run(db, CampaignType.POST_SERVICE, cap_days=0))


def test_post_service_visit_types(db, world):
    w = world
    repair = w.customer()
    w.visit(repair, None, AS_OF - DAY, kind=VisitType.REPAIR)
    bodywork = w.customer()
    w.visit(bodywork, None, AS_OF - DAY, kind=VisitType.BODYWORK)
    assert ids(run(db, CampaignType.POST_SERVICE, {"visit_types": ["repair"]})) == {repair}


def test_new_car_touch_plan(db, world):
    w = world
    day3 = w.customer()
    w.vehicle(day3, purchase=AS_OF - 4 * DAY)
    week2 = w.customer()
    w.vehicle(week2, purchase=AS_OF - 15 * DAY)
    month1 = w.customer()
    w.vehicle(month1, purchase=AS_OF - 35 * DAY)
    month1_done = w.customer()
    done_vehicle = w.vehicle(month1_done, purchase=AS_OF - 33 * DAY)
    w.earlier_task(CampaignType.NEW_CAR, month1_done, vehicle_id=done_vehicle, context={"touch": "month1"})
    week2_done_but_now_month1 = w.customer()  # touched at week 2, now due for month 1
    v = w.vehicle(week2_done_but_now_month1, purchase=AS_OF - 31 * DAY)
    w.earlier_task(CampaignType.NEW_CAR, week2_done_but_now_month1, vehicle_id=v, context={"touch": "week2"})
    between = w.customer()
    w.vehicle(between, purchase=AS_OF - 10 * DAY)
    pre_service = w.customer()  # mid tier, 3-month cycle: first service due in 10 days
    w.vehicle(pre_service, purchase=add_months(AS_OF + 10 * DAY, -3))
    pre_premium = w.customer()  # premium, 6-month cycle
    w.vehicle(pre_premium, tier=Tier.PREMIUM, purchase=add_months(AS_OF + 12 * DAY, -6))
    premium_s2 = w.customer(store="S2")  # S2: premium cycle 8 months
    w.vehicle(premium_s2, tier=Tier.PREMIUM, purchase=add_months(AS_OF + 8 * DAY, -8))
    already_serviced = w.customer()
    sv = w.vehicle(already_serviced, purchase=add_months(AS_OF + 10 * DAY, -3))
    w.visit(already_serviced, sv, AS_OF - 20 * DAY)

    audience = run(db, CampaignType.NEW_CAR)
    touches = {m.customer_id: m.context["touch"] for m in audience.members}
    assert touches == {day3: "day3", week2: "week2", month1: "month1", week2_done_but_now_month1: "month1",
                       pre_service: "pre_service", pre_premium: "pre_service", premium_s2: "pre_service"}
    assert next(m for m in audience.members if m.customer_id == day3).context["purchase_date"] == \
        (AS_OF - 4 * DAY).isoformat()
    only_day3 = run(db, CampaignType.NEW_CAR, {"touches": ["day3"]})
    assert ids(only_day3) == {day3}


def test_maintenance_due_by_tier_cycle_and_store(db, world):
    w = world
    due_now = w.customer()
    v = w.vehicle(due_now)
    w.visit(due_now, v, add_months(AS_OF, -3))
    due_soon_premium = w.customer()
    v = w.vehicle(due_soon_premium, tier=Tier.PREMIUM)
    w.visit(due_soon_premium, v, add_months(AS_OF, -6) + 5 * DAY)
    not_yet = w.customer()
    v = w.vehicle(not_yet)
    w.visit(not_yet, v, add_months(AS_OF, -3) + 10 * DAY)
    long_overdue = w.customer()
    v = w.vehicle(long_overdue)
    w.visit(long_overdue, v, add_months(AS_OF, -3) - 40 * DAY)
    s2_due = w.customer(store="S2")  # S2 mid cycle is 4 months
    v = w.vehicle(s2_due)
    w.visit(s2_due, v, add_months(AS_OF, -4), store="S2")
    s2_not_due = w.customer(store="S2")
    v = w.vehicle(s2_not_due)
    w.visit(s2_not_due, v, add_months(AS_OF, -3), store="S2")
    came_back = w.customer()  # any later visit means the customer has been in since
    v = w.vehicle(came_back)
    w.visit(came_back, v, add_months(AS_OF, -3))
    w.visit(came_back, v, AS_OF - 20 * DAY, paid=False, kind=VisitType.WARRANTY)
    reminded = w.customer()
    v = w.vehicle(reminded)
    w.visit(reminded, v, add_months(AS_OF, -3))
    w.earlier_task(CampaignType.MAINTENANCE_DUE, reminded, vehicle_id=v, created_at=NOW - 5 * DAY)
    reminded_last_cycle = w.customer()  # the reminder before the last visit does not count
    v = w.vehicle(reminded_last_cycle)
    w.visit(reminded_last_cycle, v, add_months(AS_OF, -3) - 2 * DAY)
    w.earlier_task(CampaignType.MAINTENANCE_DUE, reminded_last_cycle, vehicle_id=v, created_at=NOW - 120 * DAY)
    never_serviced = w.customer()
    w.vehicle(never_serviced, purchase=add_months(AS_OF, -3) + 2 * DAY)

    audience = run(db, CampaignType.MAINTENANCE_DUE)
    assert ids(audience) == {due_now, due_soon_premium, s2_due, reminded_last_cycle, never_serviced}
    assert long_overdue in ids(run(db, CampaignType.MAINTENANCE_DUE, {"overdue_days": 60}))
    assert not_yet in ids(run(db, CampaignType.MAINTENANCE_DUE, {"lead_days": 14}))


def test_insurance_renewal_touches(db, world):
    w = world
    expected = {}
    insured_here = set()
    for days, touch in ((60, "60d"), (45, "60d"), (30, "30d"), (10, "30d"), (7, "7d"), (0, "7d")):
        cid = w.customer()
        w.vehicle(cid, insurance_expiry=AS_OF + days * DAY, insured_here=days in (45, 10, 7))
        expected[cid] = touch
        if days in (45, 10, 7):
            insured_here.add(cid)
    expired = w.customer()
    w.vehicle(expired, insurance_expiry=AS_OF - DAY)
    far = w.customer()
    w.vehicle(far, insurance_expiry=AS_OF + 61 * DAY)
    touched = w.customer()
    tv = w.vehicle(touched, insurance_expiry=AS_OF + 20 * DAY)
    w.earlier_task(CampaignType.INSURANCE_RENEWAL, touched, vehicle_id=tv, context={"touch": "30d"})
    touched_at_60 = w.customer()  # touched at 60 days: the 30-day touch is still due
    tv = w.vehicle(touched_at_60, insurance_expiry=AS_OF + 25 * DAY)
    w.earlier_task(CampaignType.INSURANCE_RENEWAL, touched_at_60, vehicle_id=tv, context={"touch": "60d"},
                   created_at=NOW - 35 * DAY)
    expected[touched_at_60] = "30d"

    audience = run(db, CampaignType.INSURANCE_RENEWAL)
    assert {m.customer_id: m.context["touch"] for m in audience.members} == expected
    m = next(m for m in audience.members if m.context["touch"] == "7d" and m.context["days_left"] == 7)
    assert m.context["insurance_expiry"] == (AS_OF + 7 * DAY).isoformat()
    assert ids(run(db, CampaignType.INSURANCE_RENEWAL, {"insured": "here"})) == insured_here
    assert ids(run(db, CampaignType.INSURANCE_RENEWAL, {"insured": "elsewhere"})) == set(expected) - insured_here


def test_warranty_expiry(db, world):
    w = world
    soon = w.customer()
    w.vehicle(soon, warranty_end=AS_OF + 10 * DAY)
    edge = w.customer()
    w.vehicle(edge, warranty_end=AS_OF + 30 * DAY)
    late = w.customer()
    w.vehicle(late, warranty_end=AS_OF + 31 * DAY)
    ended = w.customer()
    w.vehicle(ended, warranty_end=AS_OF - DAY)
    invited = w.customer()
    iv = w.vehicle(invited, warranty_end=AS_OF + 5 * DAY)
    w.earlier_task(CampaignType.WARRANTY_EXPIRY, invited, vehicle_id=iv)
    audience = run(db, CampaignType.WARRANTY_EXPIRY)
    assert ids(audience) == {soon, edge}
    assert {m.context["days_left"] for m in audience.members} == {10, 30}


def test_winback_uses_the_customer_base_definition_and_samples_the_reason_survey(db, world):
    w = world
    lapsed = []
    for i in range(20):
        cid = w.customer(f"流失{i}")
        v = w.vehicle(cid, purchase=dt.date(2020, 3, 1))
        w.visit(cid, v, AS_OF - (200 + 5 * i) * DAY)  # mid tier: lapsed after 6 months
        lapsed.append(cid)
    active = w.customer()
    w.visit(active, w.vehicle(active), AS_OF - 60 * DAY)
    premium_still_active = w.customer()  # premium cycle 6: active for 12 months
    w.visit(premium_still_active, w.vehicle(premium_still_active, tier=Tier.PREMIUM), AS_OF - 270 * DAY)
    prospect = w.customer()
    recently_won_back = w.customer()
    w.visit(recently_won_back, w.vehicle(recently_won_back), AS_OF - 300 * DAY)
    w.earlier_task(CampaignType.WINBACK, recently_won_back, created_at=NOW - 30 * DAY)
    lapsed_premium = w.customer()
    w.visit(lapsed_premium, w.vehicle(lapsed_premium, tier=Tier.PREMIUM), AS_OF - 400 * DAY)
    lapsed.append(lapsed_premium)

    audience = run(db, CampaignType.WINBACK)
    with db.session() as s:
        statuses = classify_customers(s, AS_OF)
    truth = {cid for cid, st in statuses.items() if st.lapsed} - {recently_won_back}
    assert ids(audience) == truth == set(lapsed)
    assert active not in truth and premium_still_active not in truth and prospect not in truth
    surveyed = {m.customer_id for m in audience.members if m.context["survey_reason"]}
    assert len(surveyed) == round(0.15 * len(lapsed))  # 3 of 21
    assert surveyed == {m.customer_id for m in run(db, CampaignType.WINBACK).members if m.context["survey_reason"]}
    assert len([m for m in run(db, CampaignType.WINBACK, {"reason_sample": 0.5}).members
                if m.context["survey_reason"]]) == round(0.5 * 21)
    assert recently_won_back in ids(run(db, CampaignType.WINBACK, {"recontact_days": 0}))


def test_nps_samples_recent_customers_deterministically(db, world):
    w = world
    recent = []
    for i in range(30):
        cid = w.customer(f"近期{i}")
        w.visit(cid, w.vehicle(cid), AS_OF - (i + 1) * DAY)
        recent.append(cid)
    old = w.customer()
    w.visit(old, w.vehicle(old), AS_OF - 200 * DAY)
    unpaid_only = w.customer()
    w.visit(unpaid_only, None, AS_OF - 5 * DAY, paid=False, kind=VisitType.WARRANTY)
    surveyed = recent[0]
    w.earlier_task(CampaignType.NPS, surveyed, created_at=NOW - 20 * DAY)

    first = run(db, CampaignType.NPS, {"sample": 0.5})
    assert len(first.members) == round(0.5 * 29)
    assert ids(first) <= set(recent) - {surveyed}
    assert ids(first) == ids(run(db, CampaignType.NPS, {"sample": 0.5}))
    assert ids(first) != ids(run(db, CampaignType.NPS, {"sample": 0.5, "seed": 9}))
    assert len(run(db, CampaignType.NPS, {"sample_size": 5}).members) == 5
    assert ids(run(db, CampaignType.NPS, {"sample": 1.0, "recent_days": 10})) == set(recent[:10]) - {surveyed}


def test_custom_filter(db, world):
    w = world
    target = w.customer(city="株洲市", birthday=dt.date(1980, 5, 1))
    w.vehicle(target, tier=Tier.PREMIUM, purchase=dt.date(2021, 6, 1), model="X5")
    wrong_city = w.customer(city="长沙市")
    w.vehicle(wrong_city, tier=Tier.PREMIUM, purchase=dt.date(2021, 6, 1), model="X5")
    wrong_tier = w.customer(city="株洲市")
    w.vehicle(wrong_tier, tier=Tier.MID, purchase=dt.date(2021, 6, 1))
    too_young = w.customer(city="株洲市", birthday=dt.date(2002, 1, 1))
    w.vehicle(too_young, tier=Tier.PREMIUM, purchase=dt.date(2021, 6, 1))
    spec = {"filter": {"cities": ["株洲市"], "tiers": ["premium"], "age_min": 30}}
    assert ids(run(db, CampaignType.CUSTOM, spec)) == {target}
    lapsed_spec = {"filter": {"cities": ["株洲市"], "classes": ["lapsed"]}}
    assert ids(run(db, CampaignType.CUSTOM, lapsed_spec)) == {target, wrong_tier, too_young}
    active_spec = {"filter": {"cities": ["株洲市"], "classes": ["active"]}}
    assert ids(run(db, CampaignType.CUSTOM, active_spec)) == set()
    visit_spec = {"filter": {"last_paid_visit_before": "2026-01-01"}}
    w.visit(target, None, dt.date(2025, 12, 1))
    w.visit(wrong_city, None, dt.date(2026, 3, 1))
    assert ids(run(db, CampaignType.CUSTOM, visit_spec)) == {target}


def test_winback_equals_the_customer_base_on_the_demo_group(db):
    """The SQL bounds of the win-back rule never disagree with customer_base's classification."""
    from callcenter.demo import load_demo
    from callcenter.storage.models import Store

    load_demo(db, as_of=AS_OF, n_customers=1500, seed=11)
    with db.session() as s:  # a store with its own (longer) premium cycle widens the band
        s.scalar(sa.select(Store).where(Store.code == "JH02")).cycle_months_premium = 8
    audience = run(db, CampaignType.WINBACK, {"recontact_days": 0}, cap_days=0)
    with db.session() as s:
        lapsed = {cid for cid, st in classify_customers(s, AS_OF).items() if st.lapsed}
    assert len(lapsed) > 100
    assert ids(audience) == lapsed
    assert sum(m.context["survey_reason"] for m in audience.members) == round(0.15 * len(lapsed))


def test_a_customer_of_two_stores_is_classified_and_called_per_store(db, world):
    """Dealer groups (issue 13): one customer, a car serviced at S1 last month and a car last serviced
    at S2 ten months ago. The group and S1 see an active customer, S2 a lapsed one (its own cycle:
    4 months, two cycles = 8); each store's campaigns call about its own cars only."""
    from callcenter.customer_base import classes_query, customer_base_stats

    w = world
    x = w.customer("欧阳娜娜")
    car_a = w.vehicle(x, store="S1")
    car_b = w.vehicle(x, store="S2", insurance_expiry=AS_OF + 25 * DAY, insured_here=True)
    w.visit(x, car_a, AS_OF - 30 * DAY, store="S1")
    w.visit(x, car_b, AS_OF - 300 * DAY, store="S2")
    s1, s2 = w.stores["S1"], w.stores["S2"]
    with db.session() as s:
        def classes(store_id):
            q = classes_query(s, AS_OF, store_id=store_id)
            row = s.execute(sa.select(q.c.active, q.c.lapsed, q.c.latest_vehicle_id)
                            .where(q.c.customer_id == x)).one()
            return bool(row[0]), bool(row[1]), row[2]

        assert classes(None) == (True, False, car_b)
        assert classes(s1) == (True, False, car_a)
        assert classes(s2) == (False, True, car_b)
        assert classify_customers(s, AS_OF, store_code="S2")[x].lapsed  # the Python twin agrees
        assert classify_customers(s, AS_OF, store_code="S1")[x].active
        assert classify_customers(s, AS_OF)[x].active
        totals = {code: {k: customer_base_stats(s, AS_OF, store_code=code)[k] for k in ("base", "active", "lapsed")}
                  for code in (None, "S1", "S2")}
    assert totals == {None: {"base": 1, "active": 1, "lapsed": 0}, "S1": {"base": 1, "active": 1, "lapsed": 0},
                      "S2": {"base": 1, "active": 0, "lapsed": 1}}

    winback = {store: run(db, CampaignType.WINBACK, store_id=store).members for store in (None, s1, s2)}
    assert winback[None] == [] and winback[s1] == []
    assert [(m.customer_id, m.store_id, m.vehicle_id) for m in winback[s2]] == [(x, s2, car_b)]

    # Before: S1's insurance campaign (the customer's store) called about S2's car.
    renewal = {store: run(db, CampaignType.INSURANCE_RENEWAL, store_id=store).members for store in (None, s1, s2)}
    assert renewal[s1] == []
    assert [(m.store_id, m.vehicle_id) for m in renewal[s2]] == [(s2, car_b)]
    assert [(m.store_id, m.vehicle_id) for m in renewal[None]] == [(s2, car_b)]  # the car's store calls
