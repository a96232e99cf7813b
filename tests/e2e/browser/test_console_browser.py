"""The console in Chromium: an agent handles a task, a supervisor plays a call from a transcript
line and corrects its tags, a manager reads every report (issue 12)."""

import datetime as dt
import re
import time

import pytest
import sqlalchemy as sa

from callcenter.storage import live
from callcenter.storage.models import Call, Store

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(300)]


def until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression through the DevTools protocol: the console's Content-Security-
    Policy (no eval) rightly refuses Playwright's in-page wait_for_function."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)


def test_an_agent_takes_a_task_hears_the_call_live_and_saves_the_result(console_server, page, login, shot,
                                                                        redis_client):
    base, db = console_server
    login(page, "agent")
    assert page.url.endswith("/agent/")
    tasks = page.locator("[data-testid=task-list] li")
    assert tasks.count() > 0
    tasks.filter(has_text="预览外呼").first.locator("a").click()
    page.wait_for_load_state("networkidle")
    masked = page.locator("[data-testid=phone]").inner_text()
    assert re.fullmatch(r"1\d\d\*{4}\d{4}", masked)  # masked until the agent dials
    shot(page, "agent-1-task")
    page.click("#dial")
    page.wait_for_selector("#disposition-card:not(.hidden)")
    number = page.locator("[data-testid=phone] a").inner_text()
    assert re.fullmatch(r"1\d{10}", number) and number[-4:] == masked[-4:]
    # The dialer publishes what the customer says; it appears in the agent's live transcript.
    action = page.locator("#disposition-form").get_attribute("action")
    call_id = int(re.search(r"/calls/(\d+)/disposition", action).group(1))
    page.wait_for_selector("#live-dot.on")
    live.publish_transcript(redis_client, live.TranscriptLine(call_id, 0, "customer", "车洗得不太干净，别的都挺好", True, 0.5, 3.0))
    page.wait_for_selector("#live-transcript .turn.customer")
    assert "车洗得不太干净" in page.locator("#live-transcript").inner_text()
    page.select_option("#disposition", "answered")
    page.select_option("#outcome", "completed")
    page.check("input[name=score5][value='4']")
    page.fill("#notes", "客户提到洗车问题")
    shot(page, "agent-2-disposition")
    page.click("#disposition-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "通话已保存" in page.locator(".flash").first.inner_text()
    with db.session() as s:
        call = s.get(Call, call_id)
        assert call.ended_at is not None and call.score5 == 4 and call.notes == "客户提到洗车问题"


def test_a_supervisor_plays_a_call_from_a_line_of_its_transcript(console_server, page, login, shot):
    base, db = console_server
    with db.session() as s:
        store = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
        call_id = s.scalar(sa.select(Call.id).where(Call.recording.is_not(None), Call.store_id == store)
                           .order_by(Call.id.desc()))
    login(page, "supervisor")
    page.goto(f"{base}/calls/{call_id}")
    page.wait_for_selector("#player")
    until(page, "document.getElementById('player').readyState >= 1")
    turns = page.locator("#transcript .turn")
    assert turns.count() >= 4
    target = turns.nth(3)
    start = float(target.get_attribute("data-start"))
    target.locator(".bubble").click()
    until(page, f"document.getElementById('player').currentTime >= {start}")
    state = page.evaluate("() => { const p = document.getElementById('player'); return [p.paused, p.currentTime]; }")
    assert state[0] is False and start <= state[1] < start + 3
    page.wait_for_selector("#transcript .turn.current")
    assert "current" in target.get_attribute("class")
    shot(page, "supervisor-call-playing")


# The report pages a manager reads: each tab of the reports (zh-CN) and the page's title.
REPORT_TABS = {"概览": "报表", "客户基盘": "客户基盘", "客户反馈率": "客户反馈率", "前三问题": "前三问题",
               "满意度与 NPS": "满意度与 NPS", "流失召回": "流失召回"}


def read_page(page, title: str, shot, name: str) -> str:
    """The page titled ``title`` as a manager reads it: in Chinese, every chart drawn, its figures
    shown, no form to change anything (the sidebar's language switch and logout are outside main)."""
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text().strip() == title
    page.wait_for_selector("main [data-chart]:not([data-rendered='1'])", state="detached")
    charts = page.locator("main [data-chart]")
    assert all(charts.nth(i).locator("canvas").count() == 1 for i in range(charts.count()))
    assert page.locator("main form[method=post]").count() == 0
    text = page.locator("main").inner_text()
    assert re.search(r"[\u4e00-\u9fff]", text) and re.search(r"\d", text)
    shot(page, f"manager-{name}")
    return text


def test_a_manager_reads_every_report(console_server, page, login, shot):
    """The group's manager (read-only) starts on the reports, reads each tab with its figures and
    charts, downloads one, then reads the improvement plans, a campaign's progress, the wallboard, a
    call and a ticket, and is offered nothing to change on the way."""
    from callcenter.domain import Department, FeedbackCategory
    from callcenter.storage.models import Ticket, utcnow
    from callcenter.storage.web_models import ImprovementPlan

    base, db = console_server
    today = utcnow().date()
    with db.session() as s:
        store = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
        s.add(ImprovementPlan(store_id=store, department=Department.AFTER_SALES, category=FeedbackCategory.WAIT_TIME,
                              title="缩短交车等待", owner="售后经理", actions="加开快保工位", cycle_months=1,
                              start_date=today - dt.timedelta(days=45), end_date=today - dt.timedelta(days=15)))
        call_id = s.scalar(sa.select(Call.id).where(Call.store_id == store, Call.recording.is_not(None))
                           .order_by(Call.id))
        ticket_id = s.scalar(sa.select(Ticket.id).where(Ticket.store_id == store).order_by(Ticket.id))
    refused: list[str] = []
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    login(page, "manager")
    assert page.url.endswith("/reports/")
    assert page.locator(".sidebar .nav a").all_inner_texts() == ["工单", "通话", "外呼活动", "监控大屏", "报表", "改善计划"]
    assert "经理" in page.locator(".sidebar .who").inner_text()

    for n, (tab, title) in enumerate(REPORT_TABS.items()):
        page.locator("main nav.btn-row a", has_text=tab).click()
        page.wait_for_load_state("networkidle")
        if tab == "客户基盘":
            page.wait_for_selector("[data-testid=trend-chart][data-rendered='1']", timeout=120_000)
        text = read_page(page, title, shot, f"report-{n}")
        if tab == "客户反馈率":
            assert page.locator("[data-testid=feedback-table] tbody tr").count() >= 2
            box = page.locator("[data-chart=chart-feedback]").bounding_box()
            assert box["width"] > 600 and box["height"] > 200
            with page.expect_download() as download:
                page.click("[data-testid=export-xlsx]")
            assert download.value.suggested_filename.endswith(".xlsx")
        elif tab == "客户基盘":
            assert "保有客户" in text and "有效客户" in text and "流失客户" in text
        elif tab == "前三问题":
            assert page.locator("main [data-chart^=chart-top-]").count() >= 1
            assert page.locator("main a.btn", has_text=re.compile(r"^计划$")).count() == 0
        elif tab == "满意度与 NPS":
            assert page.locator("main [data-chart=chart-nps]").count() == 1
        elif tab == "流失召回":
            assert page.locator("[data-testid=new-winback]").count() == 0

    page.locator(".sidebar .nav a", has_text="改善计划").click()
    page.wait_for_load_state("networkidle")
    read_page(page, "改善计划", shot, "plans")
    page.locator("[data-testid=plans] a", has_text="缩短交车等待").click()
    page.wait_for_load_state("networkidle")
    read_page(page, "缩短交车等待", shot, "plan")
    assert page.locator("main [data-chart=chart-plan]").count() == 1

    page.locator(".sidebar .nav a", has_text="外呼活动").click()
    page.wait_for_load_state("networkidle")
    read_page(page, "外呼活动", shot, "campaigns")
    assert page.locator("[data-testid=new-campaign]").count() == 0
    page.locator("[data-testid=campaigns] tbody tr a").first.click()
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("main [data-chart=chart-hourly][data-rendered='1']")
    assert page.locator("[data-testid^=campaign-]").count() == 0  # no start, pause or cancel

    page.locator(".sidebar .nav a", has_text="监控大屏").click()
    page.wait_for_load_state("networkidle")
    read_page(page, "监控大屏", shot, "wallboard")

    page.locator(".sidebar .nav a", has_text="通话").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-testid=calls] tbody tr").count() > 0
    page.goto(f"{base}/calls/{call_id}")  # one with a transcript (the other tests add calls without)
    assert page.locator("#transcript .turn").count() >= 2
    assert page.locator("main form[method=post]").count() == 0  # no tag, QA or ticket forms
    assert re.search(r"1\d\d\*{4}\d{4}", page.locator("main .kv").first.inner_text())  # the number masked
    shot(page, "manager-call")

    page.locator(".sidebar .nav a", has_text="工单").click()
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/tickets/{ticket_id}")
    assert "工单" in page.title()
    assert page.locator("main form[method=post]").count() == 0
    shot(page, "manager-ticket")
    assert refused == []


def test_a_supervisor_corrects_a_calls_tags(console_server, page, login, shot):
    """On a call page the supervisor adds a tag the model missed, with the customer's words as
    evidence, and removes one it got wrong; both are saved and kept for retraining."""
    from callcenter.storage.models import CallTag, Utterance
    from callcenter.storage.web_models import TagCorrection

    base, db = console_server
    with db.session() as s:
        store = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
        tagged = sa.select(CallTag.call_id).where(CallTag.source == "model")
        call_id = s.scalar(sa.select(Call.id).where(Call.store_id == store, Call.id.in_(tagged)).order_by(Call.id))
        wrong = s.scalar(sa.select(CallTag.category).where(CallTag.call_id == call_id, CallTag.source == "model"))
        has = set(s.scalars(sa.select(CallTag.category).where(CallTag.call_id == call_id)))
        words = s.scalar(sa.select(Utterance.text).where(Utterance.call_id == call_id, Utterance.speaker == "customer")
                         .order_by(Utterance.seq))[:6]
        missed = next(c for c in ("parts_wait", "price", "car_wash", "wait_time", "service_attitude") if c not in has)
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, "supervisor")
    page.goto(f"{base}/calls/{call_id}")
    tags = page.locator("[data-testid=tags]")
    missed_label = page.locator(f"#category option[value={missed}]").inner_text().strip()
    wrong_label = page.locator(f"#category option[value={wrong}]").inner_text().strip()
    page.select_option("#category", missed)
    page.fill("#evidence", words)
    page.click("[data-testid=add-tag] button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "标签已纠正" in page.locator(".flash.success").inner_text()
    added = tags.locator(".btn-row", has_text=missed_label)
    assert "主管标注" in added.inner_text()
    assert page.locator(f"#transcript mark.evidence[title='{missed_label}']").count() >= 1
    tags.locator(".btn-row", has_text=wrong_label).locator("button", has_text="标错了").click()
    page.wait_for_load_state("networkidle")
    shot(page, "supervisor-tags-corrected")
    with db.session() as s:
        categories = dict(s.execute(sa.select(CallTag.category, CallTag.source).where(CallTag.call_id == call_id)).all())
        assert categories.get(missed) == "supervisor" and wrong not in categories
        actions = sorted(s.scalars(sa.select(TagCorrection.action).where(TagCorrection.call_id == call_id)))
        assert actions == ["add", "remove"]


# -- issue 12: the jobs that were broken --------------------------------------------------------


def test_an_admin_creates_a_user_and_disables_it(console_server, page, login, shot):
    base, db = console_server
    with db.session() as s:
        store_id = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
    login(page, "admin")
    page.goto(base + "/admin/users/new")
    assert page.input_value("#username") == ""  # the form is the new user's, not the admin's own
    assert "<" not in page.title()
    page.fill("#username", "liu.fang")
    page.fill("#display_name", "刘芳")
    page.select_option("#role", "agent")
    page.select_option("#store_id", str(store_id))
    page.fill("#password", "Liu-fang-2026!")
    page.click("[data-testid=user-form] button[type=submit]")
    page.wait_for_load_state("networkidle")
    row = page.locator("[data-testid=users] tr", has_text="liu.fang")
    assert "刘芳" in row.inner_text() and "坐席" in row.inner_text()
    row.locator("a").click()
    page.uncheck("[data-testid=user-active]")
    shot(page, "admin-user-disable")
    page.click("[data-testid=user-form] button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "已停用" in page.locator("[data-testid=users] tr", has_text="liu.fang").inner_text()
    with db.session() as s:
        from callcenter.storage.models import User

        user = s.scalar(sa.select(User).where(User.username == "liu.fang"))
        assert user.active is False and user.store_id == store_id and user.display_name == "刘芳"


def test_an_agent_calls_back_a_customer_whose_transfer_failed(console_server, page, login, shot):
    from callcenter.domain import CallDisposition
    from callcenter.storage.models import Callback, CallbackStatus, CallOutcome, Customer, DoNotCall, utcnow
    from campaigns.outcomes import TRANSFER_FAILED_TASK

    _base, db = console_server
    with db.session() as s:
        store = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
        customer = s.scalar(sa.select(Customer).where(
            Customer.store_id == store, Customer.phone.is_not(None),
            Customer.phone.not_in(sa.select(DoNotCall.phone))).order_by(Customer.id.desc()).limit(1))
        now = utcnow()
        call = Call(customer_id=customer.id, store_id=store, robot=True, phone=customer.phone, started_at=now,
                    ended_at=now, disposition=CallDisposition.ANSWERED.value, outcome=CallOutcome.TRANSFER_FAILED,
                    error="transfer failed: no agent extension configured (CALLCENTER_TRANSFER_TARGET)")
        s.add(call)
        s.flush()
        callback = Callback(customer_id=customer.id, store_id=store, call_id=call.id, due_at=now,
                            reason=TRANSFER_FAILED_TASK, robot=False, status=CallbackStatus.PENDING)
        s.add(callback)
        s.flush()
        callback_id = callback.id
    login(page, "agent")
    task = page.locator("[data-testid=task-list] li", has_text="客户要求转人工,转接失败,请尽快回电")
    assert "CALLCENTER_TRANSFER_TARGET" not in page.locator("[data-testid=task-list]").inner_text()
    task.locator("a").click()
    page.wait_for_load_state("networkidle")
    assert "<" not in page.title()
    shot(page, "agent-transfer-failed-task")
    page.click("#dial")
    page.wait_for_selector("#disposition-card:not(.hidden)")
    page.select_option("#disposition", "answered")
    page.select_option("#outcome", "completed")
    page.fill("#notes", "已回电，客户的问题已解答")
    page.click("#disposition-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "通话已保存" in page.locator(".flash").first.inner_text()
    with db.session() as s:
        assert s.get(Callback, callback_id).status is CallbackStatus.DONE


def test_a_supervisor_works_a_ticket_to_verified(console_server, page, login, shot):
    from callcenter.storage.models import Customer, Ticket, TicketEvent, TicketStatus, User

    base, db = console_server
    with db.session() as s:
        store = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
        call = s.scalar(sa.select(Call).where(Call.store_id == store, Call.recording.is_not(None),
                                              Call.customer_id.is_not(None)).order_by(Call.id))
        ticket = Ticket(call_id=call.id, customer_id=call.customer_id, store_id=store, department="after_sales",
                        category="wait_time", title="交车等待时间太长", status=TicketStatus.OPEN)
        s.add(ticket)
        s.flush()
        s.add(TicketEvent(ticket_id=ticket.id, action="created",
                          data={"call_id": call.id, "department": "after_sales"}))
        ticket_id, call_id = ticket.id, call.id
        agent_id = s.scalar(sa.select(User.id).where(User.username == "agent"))
        assert s.get(Customer, call.customer_id) is not None
    url = f"{base}/tickets/{ticket_id}"
    login(page, "supervisor")
    page.goto(url)
    history = page.locator("text=机器人在回访通话")
    assert f"#{call_id}" in history.first.inner_text()
    page.select_option("select[name=assignee_id]", str(agent_id))
    page.click("form:has(input[value=assign]) button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.click("[data-testid=logout]")
    # The agent hears the call the ticket came from and resolves it.
    login(page, "agent")
    page.goto(url)
    page.wait_for_selector("[data-testid=source-recording]")
    until(page, "document.querySelector('[data-testid=source-recording]').readyState >= 0")
    page.select_option("#status", "resolved")
    page.fill("#note", "已与车间确认，加开快保工位")
    page.click("form:has(input[value=status]) button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert 'value="verified"' not in page.content()  # the resolver is not offered "verified"
    page.click("[data-testid=logout]")
    # The supervisor confirms with the customer and marks it verified.
    login(page, "supervisor")
    page.goto(url)
    page.select_option("#status", "verified")
    page.fill("#note", "回访确认：客户对处理结果满意")
    page.click("form:has(input[value=status]) button[type=submit]")
    page.wait_for_load_state("networkidle")
    shot(page, "supervisor-ticket-verified")
    text = page.locator("main").inner_text()
    assert "状态：已验证" in text and "状态：已解决" in text and "分派给" in text
    with db.session() as s:
        assert s.get(Ticket, ticket_id).status is TicketStatus.VERIFIED
