"""Bad input on a new form, in Chromium (issue 12): the campaign form says what is wrong in Chinese
next to each field, keeps everything that was typed, and creates nothing."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Campaign

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(300)]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "browser"


@pytest.fixture
def page(browser, request):
    """The conftest's page, except that the form's own answer 400 (what a refused form answers) is
    not a browser error; every other failed load and script error still fails the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []

    def on_console(msg) -> None:
        refused_form = msg.text.startswith("Failed to load resource") and "status of 400" in msg.text \
            and msg.location.get("url", "").endswith("/campaigns/new")
        if msg.type == "error" and not refused_form:
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", on_console)
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
    context.close()
    assert not errors, f"browser errors: {errors}"


def test_the_campaign_form_names_bad_fields_in_chinese_and_keeps_what_was_typed(console_server, page, login, shot):
    base, db = console_server
    with db.session() as s:
        campaigns = s.scalar(sa.select(sa.func.count()).select_from(Campaign))
    login(page, "supervisor")
    page.goto(base + "/campaigns/new")
    page.select_option("#type", "insurance_renewal")
    page.fill("#p_insurance_renewal_touch_days", "60，30，200")  # 200 days: past the 120 a policy is touched
    page.select_option("#p_insurance_renewal_insured", "here")
    page.fill("#windows", "9点到12点")
    page.fill("#max_channels", "0")
    page.fill("#name", "浏览器续保提醒")
    page.click("[data-testid=create]")
    page.wait_for_selector("[data-testid=error-p_insurance_renewal_touch_days]")
    shot(page, "campaign-form-bad-input")

    # Each message in Chinese, inside the field it is about.
    for field, message in (("p_insurance_renewal_touch_days", "互不相同的天数"),
                           ("windows", "09:00-12:00,14:00-20:00"), ("max_channels", "1 到 256")):
        error = page.locator(f".field:has(#{field}) [data-testid=error-{field}]")
        assert error.is_visible(), field
        assert message in error.inner_text(), (field, error.inner_text())
    assert not page.locator("[data-testid=error-name]").count()
    # What was typed is still there, and the chosen type's own fields are the ones shown.
    assert page.input_value("#type") == "insurance_renewal"
    assert page.locator("[data-testid=params-insurance_renewal]").is_visible()
    assert not page.locator("[data-testid=params-post_service]").is_visible()
    assert page.input_value("#p_insurance_renewal_touch_days") == "60，30，200"
    assert page.input_value("#p_insurance_renewal_insured") == "here"
    assert page.input_value("#windows") == "9点到12点"
    assert page.input_value("#max_channels") == "0"
    assert page.input_value("#name") == "浏览器续保提醒"
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == campaigns  # nothing created
        assert s.scalar(sa.select(Campaign.id).where(Campaign.name == "浏览器续保提醒")) is None

    # Corrected, the same form previews the audience with no message left.
    page.fill("#p_insurance_renewal_touch_days", "60,30,7")
    page.fill("#windows", "09:00-12:00,14:00-19:00")
    page.fill("#max_channels", "2")
    page.click("[data-testid=preview]")
    page.wait_for_selector("[data-testid=audience-size]")
    assert not page.locator("[data-testid^=error-]").count()
    assert page.input_value("#name") == "浏览器续保提醒"
