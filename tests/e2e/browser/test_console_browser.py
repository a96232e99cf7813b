"""The console in Chromium: an agent handles a task, a supervisor plays a call from a transcript
line, a manager reads a report with its chart drawn."""

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


def test_a_manager_reads_a_report_with_its_chart_drawn(console_server, page, login, shot):
    base, db = console_server
    login(page, "admin")
    page.goto(base + "/reports/feedback")
    chart = page.locator("[data-chart=chart-feedback]")
    page.wait_for_selector("[data-chart=chart-feedback][data-rendered='1']")
    assert chart.locator("canvas").count() == 1
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 200
    assert page.locator("[data-testid=feedback-table] tbody tr").count() >= 2
    shot(page, "manager-feedback-report")
    with page.expect_download() as download:
        page.click("[data-testid=export-xlsx]")
    assert download.value.suggested_filename.endswith(".xlsx")
    page.goto(base + "/reports/customer-base")
    page.wait_for_selector("[data-testid=trend-chart][data-rendered='1']", timeout=120_000)
    shot(page, "manager-customer-base")


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
