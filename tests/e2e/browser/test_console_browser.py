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
