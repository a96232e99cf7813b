"""The campaign form without JSON: labelled fields per type, sample customers, bad input per field,
and the script version the campaign keeps."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.domain import VisitType
from callcenter.storage.models import Campaign, Customer, ScriptVersion, ServiceVisit

pytestmark = pytest.mark.integration


@pytest.fixture
def recent_visit(console, db):
    _app, world = console
    with db.session() as s:
        new = Customer(external_id="C-NEW", store_id=world.stores["S1"], name="新客户", phone="13600000001")
        s.add(new)
        s.flush()
        s.add(ServiceVisit(dedup_key="recent", customer_id=new.id, store_id=world.stores["S1"],
                           visit_date=dt.date.today() - dt.timedelta(days=2), visit_type=VisitType.MAINTENANCE,
                           paid=True))
    return world


def _form(csrf, **fields):
    return {"csrf_token": csrf, "type": "post_service", "as_of": dt.date.today().isoformat(), "max_channels": "2",
            "p_post_service_window_first": "1", "p_post_service_window_last": "3",
            "windows": "09:00-12:00，14:00-19:30", "holidays_set": "1", "holidays": "1", **fields}


def test_preview_lists_sample_customers_with_masked_phones_then_creates(console, recent_visit, client_for, csrf, db):
    page = client_for("sup_s1").get("/campaigns/new").get_data(as_text=True)
    assert "进店后第几天开始回访" in page and "售后服务回访" in page and "JSON" not in page
    dry = client_for("admin_s1").post("/campaigns/new", data=_form(csrf, dry_run="1")).get_data(as_text=True)
    assert 'data-testid="audience-sample"' in dry and "新客户" in dry and "13600000001" in dry
    created = client_for("sup_s1").post("/campaigns/new", data=_form(csrf, name="表单创建的活动",
                                                                       p_post_service_visit_types="maintenance"))
    assert created.status_code == 302
    with db.session() as s:
        c = s.scalar(sa.select(Campaign).where(Campaign.name == "表单创建的活动"))
        assert c.max_channels == 2 and c.params["window_days"] == [1, 3]
        assert c.params["windows"] == "09:00-12:00,14:00-19:30" and c.params["holidays"] is True
        assert c.params["visit_types"] == ["maintenance"]
        version = s.get(ScriptVersion, c.script_version_id)
        assert version.script_id == "post_service" and "steps:" in version.text
    page = client_for("sup_s1").get(created.headers["Location"]).get_data(as_text=True)
    assert f'data-testid="script-version">第 {version.version} 版' in page


def test_agents_cannot_open_the_form(console, client_for):
    assert client_for("agent_s1").get("/campaigns/new").status_code == 403


@pytest.mark.parametrize("field, value, message", [
    ("p_post_service_window_first", "x", "0 到 30 之间的整数"),
    ("p_post_service_window_last", "0", "结束天数不能早于开始天数"),
    ("windows", "9点到12点", "09:00-12:00,14:00-20:00"),
    ("max_channels", "0", "1 到 256"),
    ("max_attempts", "11", "1 到 10"),
    ("script", "no_such", "话术不存在"),
    ("as_of", "2026-13-01", "日期格式不对"),
    ("as_of", "明天", "日期格式不对"),
    ("as_of", "2026/12/01", "日期格式不对"),
    ("as_of", "0001-01-01", "之间的日期"),  # the audience's date arithmetic overflowed: a 500
    ("as_of", "9999-12-31", "之间的日期"),
    ("p_post_service_window_first", "²", "0 到 30 之间的整数"),  # a digit to str.isdigit(), not to int()
    ("p_post_service_window_first", "-1", "0 到 30 之间的整数"),
    ("p_post_service_window_last", "31", "0 到 30 之间的整数"),
    ("p_post_service_window_last", "2.5", "0 到 30 之间的整数"),
    ("windows", "09:00-12:00,11:00-13:00", "时段不重叠"),
    ("windows", "12:00-09:00", "开始早于结束"),
    ("windows", "08:00-24:30", "09:00-12:00,14:00-20:00"),
    ("max_channels", "四", "1 到 256"),
    ("max_channels", "257", "1 到 256"),
    ("max_channels", "1e2", "1 到 256"),
    ("max_attempts", "0", "1 到 10"),
    ("max_attempts", "３.", "1 到 10"),
    ("type", "robocall", "请选择活动类型"),
    ("name", "活" * 101, "最多 100 个字"),
])
def test_bad_fields_are_named_and_nothing_is_created(console, recent_visit, client_for, csrf, db, field, value,
                                                      message):
    response = client_for("sup_s1").post("/campaigns/new", data=_form(csrf, **{field: value}))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-testid="error-{field}"' in page and message in page
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 4  # the seeded ones


@pytest.mark.parametrize("ctype, field, value, message", [
    ("insurance_renewal", "p_insurance_renewal_touch_days", "", "互不相同的天数"),
    ("insurance_renewal", "p_insurance_renewal_touch_days", "60,121", "互不相同的天数"),
    ("insurance_renewal", "p_insurance_renewal_touch_days", "三十", "互不相同的天数"),
    ("insurance_renewal", "p_insurance_renewal_insured", "sometimes", "请从选项中选择一项"),
    ("maintenance_due", "p_maintenance_due_lead_days", "61", "0 到 60 之间的整数"),
    ("maintenance_due", "p_maintenance_due_overdue_days", "一百", "0 到 180 之间的整数"),
    ("warranty_expiry", "p_warranty_expiry_within_days", "0", "1 到 180 之间的整数"),
    ("winback", "p_winback_reason_sample", "150", "0 到 100 之间的百分比"),
    ("winback", "p_winback_reason_sample", "十五%", "0 到 100 之间的百分比"),
    ("nps", "p_nps_sample", "nan", "0 到 100 之间的百分比"),
    ("nps", "p_nps_sample_size", "0", "1 到 10000000 之间的整数"),
    ("nps", "p_nps_recent_days", "731", "1 到 730 之间的整数"),
    ("new_car", "p_new_car_touches", None, "请至少勾选一个触点"),
    ("custom", "p_custom_filter", "", "还没有保存的客户筛选条件"),
    ("custom", "script", "", "自定义活动必须选择话术"),
    ("post_service", "store", "NOPE", "未知门店"),  # a group-wide supervisor's choice (a store's is fixed)
    ("post_service", "script", "no_such", "话术不存在"),
])
def test_each_types_own_fields_say_what_is_wrong_in_chinese(console, recent_visit, client_for, csrf, db, ctype,
                                                             field, value, message):
    form = {"csrf_token": csrf, "type": ctype, "max_channels": "4", "script": "post_service", "name": "新活动",
            field: value}
    if value is None:
        del form[field]  # nothing ticked
    for dry_run in ("1", ""):  # the preview and the creation say the same
        response = client_for("sup_all").post("/campaigns/new", data={**form, "dry_run": dry_run})
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert f'data-testid="error-{field}"' in page and message in page
        assert 'value="新活动"' in page  # what was typed is kept
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 4
        assert s.scalar(sa.select(sa.func.count()).select_from(ScriptVersion)) == 0


def test_a_campaign_nobody_to_call_leaves_no_script_version_behind(console, recent_visit, client_for, csrf, db):
    """Creating stores the script version first (the campaign calls with it); when the audience
    then turns out empty, nothing of it stays."""
    response = client_for("sup_all").post("/campaigns/new", data=_form(csrf, store="S2", name="无人可呼"))
    assert response.status_code == 400 and "没有可呼叫的客户" in response.get_data(as_text=True)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 4
        assert s.scalar(sa.select(sa.func.count()).select_from(ScriptVersion)) == 0
    # A version some campaign already calls with is kept, of course.
    assert client_for("sup_all").post("/campaigns/new", data=_form(csrf, store="S1")).status_code == 302
    client_for("sup_all").post("/campaigns/new", data=_form(csrf, store="S2"))
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ScriptVersion)) == 1


def test_type_specific_fields(console, recent_visit, client_for, csrf, db):
    form = {"csrf_token": csrf, "type": "insurance_renewal", "p_insurance_renewal_touch_days": "60，30, 60",
            "p_insurance_renewal_insured": "here", "max_channels": "4", "dry_run": "1"}
    page = client_for("sup_all").post("/campaigns/new", data=form).get_data(as_text=True)
    assert 'data-testid="error-p_insurance_renewal_touch_days"' in page
    form["p_insurance_renewal_touch_days"] = "60，30、7"
    response = client_for("sup_all").post("/campaigns/new", data=form)
    assert 'data-testid="error-' not in response.get_data(as_text=True)


def test_the_dialer_calls_with_the_version_the_campaign_was_created_with(console, recent_visit, client_for, csrf,
                                                                        db, settings):
    """An edit after the campaign was created does not reach its calls (CallRequest.script_text)."""
    from callcenter.storage.models import CallTask, TaskState
    from campaigns.attempts import ClaimKind, claim_attempt
    from campaigns.queue import Message
    from campaigns.rules import NoHolidays, default_policy
    from campaigns.service import change_status

    assert client_for("sup_s1").post("/campaigns/new", data=_form(csrf, name="版本测试")).status_code == 302
    with db.session() as s:
        campaign = s.scalar(sa.select(Campaign).where(Campaign.name == "版本测试"))
        created_with = s.get(ScriptVersion, campaign.script_version_id).text
        task = s.scalar(sa.select(CallTask).where(CallTask.campaign_id == campaign.id))
        task.state = TaskState.QUEUED
        campaign_id, task_id = campaign.id, task.id
    change_status(db, campaign_id, "start")
    edited = client_for("sup_all").post("/scripts/post_service/edit", data={
        "csrf_token": csrf, "identity.say": "{customer}您好,我是{store}的回访专员,现在方便吗?"})
    assert edited.status_code == 302
    ten_am = dt.datetime.combine(dt.date.today(), dt.time(2, 0))  # 10:00 in Shanghai, inside the windows
    with db.session() as s:
        claim = claim_attempt(s, Message("1-0", task_id, 1, campaign_id), now=ten_am, worker="test",
                              defaults=default_policy(settings), calendar=NoHolidays())
    assert claim.kind is ClaimKind.DIAL, claim.reason
    assert claim.request.script_text == created_with and "回访专员" not in claim.request.script_text
    from callcenter.storage.web_models import ConsoleJob
    from web import jobs

    with db.session() as s:
        render = s.scalar(sa.select(ConsoleJob.id).where(ConsoleJob.target == "script:post_service"))
    if render is not None:  # the new sentence is rendered in the background: let it finish here
        jobs.wait(render, db, timeout=120)
