"""Improvement plans: created from a top-3 problem, compared before/during, closed with a result."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from callcenter.domain.dates import add_months
from callcenter.storage.models import Call, CallOutcome, CallTag
from callcenter.storage.web_models import AuditLog, ImprovementPlan, PlanStatus

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def _calls(s, store_id, customer_id, day, n, tagged):
    at = dt.datetime.combine(day, dt.time(11), tzinfo=TZ).astimezone(dt.UTC).replace(tzinfo=None)
    for i in range(n):
        call = Call(store_id=store_id, customer_id=customer_id, started_at=at, ended_at=at,
                    outcome=CallOutcome.COMPLETED, disposition="answered")
        s.add(call)
        s.flush()
        if i < tagged:
            s.add(CallTag(call_id=call.id, category="wait_time", department="after_sales"))


def test_a_plan_from_the_top_three_compares_before_and_during_and_closes(console, client_for, csrf, db):
    app, world = console
    start = add_months(dt.date.today().replace(day=1), -2)
    source = add_months(start, -1)  # the month whose top-3 raised the problem: the baseline
    with db.session() as s:
        _calls(s, world.stores["S1"], world.customers["S1"], start - dt.timedelta(days=10), 200, 40)  # before: 20 %
        _calls(s, world.stores["S1"], world.customers["S1"], start + dt.timedelta(days=10), 200, 10)  # during: 5 %
    client = client_for("sup_s1")
    form = client.get(f"/improvement/new?category=wait_time&month={source:%Y-%m}").get_data(as_text=True)
    assert 'value="wait_time" selected' in form
    fields = {"category": "wait_time", "title": "缩短交车时间", "owner": "售后经理",
              "actions": "增加快保工位；交车前电话告知", "cycle_months": "1", "month": f"{source:%Y-%m}", "csrf_token": csrf}
    # The calls that raised the problem cannot count as "during the plan".
    inside = client.post("/improvement/new", data={**fields, "start_date": (source + dt.timedelta(days=5)).isoformat()})
    assert inside.status_code == 200 and "基线" in inside.get_data(as_text=True)
    response = client.post("/improvement/new", data={**fields, "start_date": start.isoformat()})
    assert response.status_code == 302
    plan_url = response.headers["Location"]
    page = client.get(plan_url).get_data(as_text=True)
    assert "20.0%" in page and "5.0%" in page and "已改善" in page
    client.post(plan_url + "/close", data={"csrf_token": csrf})
    with db.session() as s:
        plan = s.scalar(sa.select(ImprovementPlan))
        assert plan.store_id == world.stores["S1"] and plan.department.value == "after_sales"
        assert plan.status is PlanStatus.CLOSED and plan.result["improved"] and plan.result["significant"]
        assert plan.result["before"]["calls"] == 200 and plan.result["after"]["hits"] == 10
        assert plan.end_date == add_months(start, 1)
        assert {a for (a,) in s.execute(sa.select(AuditLog.action))} >= {"plan.create", "plan.close"}
    listing = client.get("/improvement/?format=csv").get_data().decode("utf-8-sig")
    assert "缩短交车时间" in listing and ",Y,Y" in listing


def test_a_running_plan_cannot_be_closed_before_its_cycle_ends(console, client_for, csrf, db):
    client = client_for("sup_s1")
    response = client.post("/improvement/new", data={
        "category": "price", "title": "收费透明", "owner": "服务经理", "actions": "结算前逐项解释", "cycle_months": "3",
        "start_date": dt.date.today().isoformat(), "csrf_token": csrf})
    page = client.post(response.headers["Location"] + "/close", data={"csrf_token": csrf},
                       follow_redirects=True).get_data(as_text=True)
    assert "届时才能结束计划" in page
    with db.session() as s:
        assert s.scalar(sa.select(ImprovementPlan.status)) is PlanStatus.ACTIVE


def test_an_older_plan_started_inside_its_source_month_is_measured_after_that_month(console, client_for, db):
    """Plans created before the rule: the baseline and the measured period still do not overlap."""
    app, world = console
    source = add_months(dt.date.today().replace(day=1), -3)
    with db.session() as s:
        _calls(s, world.stores["S1"], world.customers["S1"], source + dt.timedelta(days=20), 100, 30)  # raised it
        _calls(s, world.stores["S1"], world.customers["S1"], add_months(source, 1) + dt.timedelta(days=3), 100, 5)
        s.add(ImprovementPlan(store_id=world.stores["S1"], department="after_sales", category="wait_time",
                              source_month=f"{source:%Y-%m}", title="缩短交车时间", owner="售后经理", actions="增加工位",
                              cycle_months=1, start_date=source + dt.timedelta(days=10),
                              end_date=add_months(source + dt.timedelta(days=10), 1)))
    with db.session() as s:
        plan_id = s.scalar(sa.select(ImprovementPlan.id))
    page = client_for("sup_s1").get(f"/improvement/{plan_id}").get_data(as_text=True)
    assert "30.0%" in page and "5.0%" in page  # the source month's calls are all "before"


def test_a_plan_needs_owner_actions_and_a_cycle_of_one_to_six_months(console, client_for, csrf, db):
    page = client_for("sup_s1").post("/improvement/new", data={
        "category": "price", "title": "x", "owner": "", "actions": "", "cycle_months": "9",
        "start_date": "", "csrf_token": csrf}).get_data(as_text=True)
    assert "周期为 1 到 6 个月" in page and "可执行、可检核" in page and "请输入开始日期" in page
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ImprovementPlan)) == 0
