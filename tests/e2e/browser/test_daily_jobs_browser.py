"""The console's daily jobs in Chromium: an administrator adds a store, imports a DMS file with a bad
row (preview, the error list, the import), creates and starts a campaign from the form; a
supervisor edits a script step."""

import pytest
import sqlalchemy as sa

from callcenter.accounts import upsert_user
from callcenter.domain import Role
from callcenter.storage.models import Campaign, CampaignStatus, Customer

# The browser conftest's password for every user (conftest modules cannot be imported).
PASSWORD = "browser-pass-1"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(300)]

CSV = ("客户编号,姓名,手机号,VIN,车型,门店\n"
       "B900,浏览器测试甲,13900009001,LVGBE40K38G009001,卡罗拉,JH01\n"
       "B901,浏览器测试乙,1234,,,JH01\n")


def test_admin_store_import_campaign_and_supervisor_script_edit(console_server, page, login, shot, tmp_path):
    base, db = console_server
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, "admin")

    # A store (bad input per field: tests/integration/web/test_stores.py; a 400 page would count
    # as a browser error here).
    page.goto(base + "/admin/stores/new")
    page.fill("#code", "JH07")
    page.fill("#name", "锦华丰田梅溪湖店")
    page.fill("#city", "长沙市")
    page.fill("#timezone", "Asia/Shanghai")
    page.fill("#calling_windows", "09:00-12:00,14:00-19:00")
    page.click("[data-testid=store-form] button[type=submit]")
    page.wait_for_selector("[data-testid=stores]")
    assert "锦华丰田梅溪湖店" in page.inner_text("[data-testid=stores]")
    shot(page, "admin-stores")

    # A DMS export with a bad row: the preview lists it, the error list downloads, the import runs.
    export = tmp_path / "客户导出.csv"
    export.write_bytes(CSV.encode("gb18030"))
    page.goto(base + "/admin/imports/")
    page.select_option("#kind", "customers")
    page.set_input_files("#file", str(export))
    page.click("[data-testid=import-form] button[type=submit]")
    page.wait_for_selector("[data-testid=import-errors]", timeout=60_000)
    assert "1234" in page.inner_text("[data-testid=import-errors]")
    assert page.inner_text("[data-testid=rejected-count]").strip() == "1"
    with page.expect_download() as download:
        page.click("[data-testid=errors-csv]")
    assert "1234" in download.value.path().read_text(encoding="utf-8-sig")
    shot(page, "admin-import-preview")
    page.click("[data-testid=import-run]")
    page.wait_for_selector("[data-testid=import-summary]", timeout=60_000)
    assert "已导入" in page.inner_text("[data-testid=import-job]")
    with db.session() as s:
        assert s.scalar(sa.select(Customer.name).where(Customer.external_id == "B900")) == "浏览器测试甲"
        assert s.scalar(sa.select(Customer.id).where(Customer.external_id == "B901")) is None

    # A campaign from the form: preview with sample customers, create, start.
    page.goto(base + "/campaigns/new")
    page.select_option("#type", "nps")
    assert page.locator("[data-testid=params-nps]").is_visible()
    assert not page.locator("[data-testid=params-post_service]").is_visible()
    page.fill("#p_nps_sample", "100")
    page.select_option("#store", "JH01")
    page.fill("#name", "浏览器NPS调研")
    page.click("[data-testid=preview]")
    page.wait_for_selector("[data-testid=audience-sample]")
    shot(page, "admin-campaign-preview")
    page.click("[data-testid=create]")
    page.wait_for_selector("[data-testid=campaign-start]")
    page.click("[data-testid=campaign-start]")
    page.wait_for_load_state("networkidle")
    with db.session() as s:
        campaign = s.scalar(sa.select(Campaign).where(Campaign.name == "浏览器NPS调研"))
        status = campaign.status
    if status is not CampaignStatus.RUNNING and page.locator("[name=without_worker]").count():
        # No dialer worker runs in this test: the page asks to start anyway.
        page.locator("form:has([name=without_worker]) button[type=submit]").first.click()
        page.wait_for_load_state("networkidle")
    with db.session() as s:
        assert s.get(Campaign, campaign.id).status is CampaignStatus.RUNNING
        assert s.get(Campaign, campaign.id).script_version_id is not None

    # A group-wide supervisor edits a step (one script serves every store; refusals naming the
    # step: tests/integration/web/test_script_editor.py).
    with db.session() as s:
        upsert_user(s, "group_supervisor", PASSWORD, Role.SUPERVISOR)
    page.click("[data-testid=logout]")
    login(page, "group_supervisor")
    page.goto(base + "/scripts/nps/edit")
    original = page.locator("textarea").first.input_value()
    page.locator("textarea").first.fill(original.replace("您好", "您好呀", 1))
    page.click("[data-testid=save-script]")
    page.wait_for_selector(".flash.success")
    assert "第 2 版" in page.inner_text(".flash.success") or "第 1 版" in page.inner_text(".flash.success")
    shot(page, "supervisor-script-edit")
    with db.session() as s:
        # The running campaign keeps the version it was created with.
        assert s.get(Campaign, campaign.id).script_version_id is not None
