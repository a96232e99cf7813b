"""Managers' reports on a known set of calls: the numbers, the flags, scope, cache, exports."""

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from callcenter.customer_base import customer_base_stats
from callcenter.domain import VisitType
from callcenter.domain.dates import add_months
from callcenter.storage.models import (
    Call,
    CallOutcome,
    CallTag,
    Campaign,
    CampaignStatus,
    CampaignType,
    Customer,
    ServiceVisit,
)
from callcenter.storage.web_models import AuditLog

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def _month(offset: int) -> dt.date:
    return add_months(dt.date.today().replace(day=1), offset)


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(10), tzinfo=TZ).astimezone(dt.UTC).replace(tzinfo=None)


def _call(s, store_id, customer_id, day, *, tags=(), score=None, nps=None, outcome=CallOutcome.COMPLETED,
          campaign_id=None):
    call = Call(store_id=store_id, customer_id=customer_id, campaign_id=campaign_id, started_at=_at(day),
                ended_at=_at(day), outcome=outcome, disposition="answered", score5=score, nps=nps)
    s.add(call)
    s.flush()
    for category, department in tags:
        s.add(CallTag(call_id=call.id, category=category, department=department))
    return call


@pytest.fixture
def figures(console, db):
    """Last month (M) and the month before (P): S1 gets feedback, S2 none (a 0 % store); win-back
    calls in P."""
    app, world = console
    m, p = _month(-1).replace(day=15), _month(-2).replace(day=15)
    s1, s2 = world.stores["S1"], world.stores["S2"]
    c1, c2 = world.customers["S1"], world.customers["S2"]
    with db.session() as s:
        for i in range(10):
            tags = []
            if i < 2:
                tags = [("car_wash", "after_sales")]
            elif i == 2:
                tags = [("sales_process", "sales")]
            elif i == 3:
                tags = [("praise", "crm")]
            _call(s, s1, c1, m, tags=tags, score=[5, 5, 4, 3, 1, 5, 4, 4, 2, 5][i], nps=[10, 9, 2] [i] if i < 3 else None)
        _call(s, s1, c1, m, outcome=CallOutcome.NOT_REACHED)  # not a completed revisit call
        for i in range(10):
            _call(s, s1, c1, p, tags=[("car_wash", "after_sales")] if i < 4 else [])
        for _ in range(25):
            _call(s, s2, c2, m, score=5)
        winback = Campaign(name="召回", type=CampaignType.WINBACK, script="winback", store_id=s1,
                           status=CampaignStatus.COMPLETED, as_of=p)
        s.add(winback)
        s.flush()
        for n, later in (("A", 30), ("B", 150), ("C", None)):
            cust = Customer(external_id=f"W{n}", store_id=s1, name=f"流失{n}", phone=None)
            s.add(cust)
            s.flush()
            _call(s, s1, cust.id, p, campaign_id=winback.id)
            if later is not None:
                s.add(ServiceVisit(dedup_key=f"w-{n}", customer_id=cust.id, store_id=s1, visit_type=VisitType.REPAIR,
                                   visit_date=p + dt.timedelta(days=later), paid=True))
    return world, m, p


def test_feedback_rate_per_store_and_department_flags_the_zero_store(figures, client_for):
    world, m, p = figures
    month = m.strftime("%Y-%m")
    response = client_for("sup_all").get(f"/reports/feedback?from={month}&to={month}&format=csv")
    rows = {r["门店"]: r for r in csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig")))}
    assert rows["一店"]["完成回访数"] == "10" and rows["一店"]["反馈通话数"] == "3"
    assert rows["一店"]["客户反馈率"] == "0.3" and rows["一店"]["售后反馈率"] == "0.2" and rows["一店"]["销售反馈率"] == "0.1"
    assert rows["二店"]["客户反馈率"] == "0.0" and rows["二店"]["0% - 可疑"] == "Y"
    page = client_for("sup_all").get(f"/reports/feedback?from={month}&to={month}").get_data(as_text=True)
    assert 'class="flagged"' in page and "0% - 可疑" in page


def test_top_three_problems_with_share_and_change(figures, client_for):
    world, m, p = figures
    response = client_for("sup_s1").get(f"/reports/top-problems?month={m:%Y-%m}&format=xlsx")
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    rows = [dict(zip([c.value for c in sheet[1]], [c.value for c in row])) for row in sheet.iter_rows(min_row=2)]
    wash = next(r for r in rows if r["问题"] == "洗车/清洁")
    assert (wash["部门"], wash["排名"], wash["通话"], wash["占比"], wash["上月"], wash["变化"]) == \
        ("售后", 1, 2, 1.0, 4, -2)
    sales = next(r for r in rows if r["部门"] == "销售")
    assert sales["问题"] == "销售/交车/手续" and sales["通话"] == 1
    assert all(r["问题"] != "表扬" for r in rows)  # praise is not a problem


def test_satisfaction_distribution_average_and_nps(figures, client_for):
    world, m, p = figures
    month = m.strftime("%Y-%m")
    response = client_for("sup_s1").get(f"/reports/satisfaction?from={month}&to={month}&format=csv")
    row = next(csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig"))))
    assert [row[f"{n} 分"] for n in range(1, 6)] == ["1", "1", "1", "3", "4"]
    assert float(row["平均分"]) == pytest.approx(3.8)
    assert (row["推荐者"], row["贬损者"], row["NPS 回答数"]) == ("2", "1", "3")
    assert float(row["NPS"]) == pytest.approx(33.3333, abs=0.001)


def test_winback_counts_returns_within_four_months_only(figures, client_for):
    world, m, p = figures
    month = p.strftime("%Y-%m")
    response = client_for("sup_s1").get(f"/reports/winback?from={month}&to={month}&format=csv")
    row = next(csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig"))))
    assert (row["接通流失客户"], row["4 个月内回厂"]) == ("3", "1")


def test_a_store_supervisor_always_sees_their_own_store(figures, client_for):
    world, m, p = figures
    month = m.strftime("%Y-%m")
    response = client_for("sup_s2").get(f"/reports/feedback?from={month}&to={month}&store={world.stores['S1']}"
                                        "&format=csv")
    stores = {r["门店"] for r in csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig")))}
    assert stores == {"二店"}


def test_figures_are_cached_until_refreshed_and_exports_are_audited(figures, client_for, db):
    world, m, p = figures
    month = m.strftime("%Y-%m")
    client = client_for("sup_s1")
    url = f"/reports/feedback?from={month}&to={month}&format=csv"
    before = client.get(url).get_data()
    with db.session() as s:
        _call(s, world.stores["S1"], world.customers["S1"], m, tags=[("price", "after_sales")])
    assert client.get(url).get_data() == before
    after = client.get(url + "&refresh=1").get_data().decode("utf-8-sig")
    assert "11,4," in after  # 11 completed calls, 4 with feedback
    with db.session() as s:
        exports = list(s.scalars(sa.select(AuditLog).where(AuditLog.action == "export")))
    assert len(exports) == 3 and exports[0].target_id == "feedback-rate" and exports[0].details["format"] == "csv"


def test_customer_base_is_the_foundations_definition(console, client_for, db):
    app, world = console
    from web.views import today

    with app.app_context():
        day = today()  # the store's date (Asia/Shanghai), which is not the machine's from 16:00 UTC
    with db.session() as s:
        expected = customer_base_stats(s, day)
    response = client_for("sup_all").get("/reports/customer-base?format=csv")
    text = response.get_data().decode("utf-8-sig")
    assert f"{day.isoformat()},{expected['base']},{expected['active']},{expected['lapsed']}," in text
    trend = client_for("sup_all").get("/reports/customer-base/trend.json").json
    assert len(trend["points"]) == 12 and trend["points"][-1]["base"] == expected["base"]
    assert trend["chart"]["series"][0]["data"][-1] == expected["base"]


def test_every_report_page_renders_its_chart_data(figures, client_for):
    client = client_for("sup_all")
    for url in ("/reports/", "/reports/customer-base", "/reports/feedback", "/reports/top-problems",
                "/reports/satisfaction", "/reports/winback"):
        page = client.get(url).get_data(as_text=True)
        assert 'type="application/json" id="chart-' in page and "vendor/echarts.min.js" in page, url
