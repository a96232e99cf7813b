"""Stores in the console: list, add, edit, bad input next to the field, scope, the name's audio."""

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Store
from callcenter.storage.web_models import AuditLog, ConsoleJob, JobStatus
from web import jobs

pytestmark = pytest.mark.integration


def test_admin_adds_a_store_and_its_name_is_rendered(console, client_for, csrf, db, settings):
    client = client_for("admin")
    listing = client.get("/admin/stores/").get_data(as_text=True)
    assert "一店" in listing and "二店" in listing and "未渲染" in listing
    response = client.post("/admin/stores/new", data={
        "csrf_token": csrf, "code": "JH03", "name": "锦华丰田河西店", "city": "长沙市", "timezone": "Asia/Shanghai",
        "cycle_months_mid": "4", "cycle_months_premium": "", "calling_windows": "09:30-12:00，14:00-19:00"})
    assert response.status_code == 302
    with db.session() as s:
        store = s.scalar(sa.select(Store).where(Store.code == "JH03"))
        assert (store.name, store.city, store.cycle_months_mid, store.cycle_months_premium) == \
            ("锦华丰田河西店", "长沙市", 4, None)
        assert store.calling_windows == "09:30-12:00,14:00-19:00"
        assert s.scalar(sa.select(AuditLog.action).where(AuditLog.target_id == str(store.id))) == "store.create"
        job_id = s.scalar(sa.select(ConsoleJob.id).where(ConsoleJob.target == "锦华丰田河西店"))
    page = client.get("/admin/stores/").get_data(as_text=True)
    assert "锦华丰田河西店" in page
    if job_id is None:
        # The render tool (tools/tts/setup.sh, 1.5 GB, not part of a default install) is absent: no job,
        # the store is listed as not rendered and the robot says the fallback until someone renders it.
        from web.stores import render_available

        assert not render_available()
        assert "未渲染" in page.split('data-testid="audio-JH03"')[1].split("</td>")[0]
        return
    # The render tool is installed: the name is rendered into the deployment's audio folder, and the
    # robot's library finds it.
    job = jobs.wait(job_id, db, timeout=120)
    assert job.status is JobStatus.DONE, job.error
    from dialog.prompts import deployment_library, read_wav

    library = deployment_library(settings.data_dir)
    assert library.has("锦华丰田河西店")
    assert len(read_wav(library.path("锦华丰田河西店"))) > 8000 * 0.5
    page = client.get("/admin/stores/").get_data(as_text=True)
    assert "锦华丰田河西店" in page and "已渲染" in page


def test_without_the_render_tool_a_new_store_says_so_and_queues_nothing(console, client_for, csrf, db, monkeypatch,
                                                                       tmp_path):
    from web import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "tts_python", lambda: tmp_path / "no-venv" / "bin" / "python")
    client = client_for("admin")
    response = client.post("/admin/stores/new", data={
        "csrf_token": csrf, "code": "JH04", "name": "锦华丰田河东店", "timezone": "Asia/Shanghai"})
    assert response.status_code == 302
    page = client.get("/admin/stores/").get_data(as_text=True)
    assert "未渲染" in page.split('data-testid="audio-JH04"')[1].split("</td>")[0]
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0

@pytest.mark.parametrize("field, value, message", [
    ("code", "", "门店编码"),
    ("code", "S1", "已有"),
    ("name", "", "门店名称"),
    ("name", "Jinhua 4S", "拉丁字母"),
    ("name", "二店", "同名"),
    ("timezone", "Mars/Base", "时区"),
    ("cycle_months_mid", "30", "1 到 24"),
    ("calling_windows", "20:00-09:00", "09:00-12:00,14:00-20:00"),
    ("code", "JH 03", "字母、数字"),
    ("code", "锦华03", "字母、数字"),
    ("code", "J" * 33, "最多 32 位"),
    ("name", "锦" * 101, "最多 100 个字"),
    ("city", "长" * 51, "最多 50 个字"),
    ("timezone", "", "时区"),
    ("timezone", "../../etc/passwd", "时区"),
    ("cycle_months_mid", "0", "1 到 24"),
    ("cycle_months_mid", "三", "1 到 24"),
    ("cycle_months_mid", "²", "1 到 24"),  # a digit to str.isdigit(), not to int()
    ("cycle_months_premium", "-6", "1 到 24"),
    ("calling_windows", "09:00-12:00,11:00-13:00", "不重叠"),
    ("calling_windows", "上午", "09:00-12:00,14:00-20:00"),
    ("calling_windows", "25:00-26:00", "09:00-12:00,14:00-20:00"),
])
def test_bad_input_is_named_next_to_its_field_and_nothing_is_saved(console, client_for, csrf, db, field, value,
                                                                    message):
    form = {"csrf_token": csrf, "code": "JH09", "name": "新店", "timezone": "Asia/Shanghai", field: value}
    response = client_for("admin").post("/admin/stores/new", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-testid="error-{field}"' in page and message in page
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Store)) == 2


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "门店名称"),
    ("name", "二店", "同名"),
    ("timezone", "Asia/Nowhere", "时区"),
    ("cycle_months_premium", "1.5", "1 到 24"),
    ("calling_windows", "9-12", "09:00-12:00,14:00-20:00"),
])
def test_a_bad_edit_keeps_the_store_as_it_was_and_what_was_typed(console, client_for, csrf, db, field, value,
                                                                  message):
    _app, world = console
    form = {"csrf_token": csrf, "name": "一店改名", "city": "株洲市", "timezone": "Asia/Urumqi",
            "cycle_months_mid": "5", "cycle_months_premium": "7", "calling_windows": "10:00-12:00", field: value}
    response = client_for("admin").post(f"/admin/stores/{world.stores['S1']}", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-testid="error-{field}"' in page and message in page
    assert f'value="{value}"' in page and 'value="株洲市"' in page  # what was typed is kept
    with db.session() as s:
        store = s.get(Store, world.stores["S1"])
        assert (store.name, store.city, store.timezone, store.cycle_months_mid, store.calling_windows) == \
            ("一店", "长沙市", "Asia/Shanghai", None, None)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog)) == 0


def test_store_admin_edits_only_their_store(console, client_for, csrf, db):
    _app, world = console
    client = client_for("admin_s1")
    page = client.get("/admin/stores/").get_data(as_text=True)
    assert "一店" in page and "二店" not in page
    assert client.get("/admin/stores/new").status_code == 403
    assert client.get(f"/admin/stores/{world.stores['S2']}").status_code == 404
    response = client.post(f"/admin/stores/{world.stores['S1']}", data={
        "csrf_token": csrf, "name": "一店", "timezone": "Asia/Urumqi", "calling_windows": ""})
    assert response.status_code == 302
    with db.session() as s:
        assert s.get(Store, world.stores["S1"]).timezone == "Asia/Urumqi"
    assert client_for("sup_all").get("/admin/stores/").status_code == 403
    assert client.post(f"/admin/stores/{world.stores['S1']}", data={"name": "x"}).status_code == 400  # no CSRF


def test_store_windows_decide_when_the_dialer_calls(db):
    import datetime as dt

    from campaigns.rules import DialPolicy, NoHolidays, parse_windows, store_callable, store_policy

    policy = DialPolicy(windows=parse_windows("09:00-12:00,14:00-20:00"))
    evening = dt.datetime(2026, 11, 20, 12, 30)  # 20:30 in Shanghai
    assert not store_callable(evening, "Asia/Shanghai", policy, NoHolidays())[0]
    late = store_policy(policy, {}, "09:00-21:00")
    assert store_callable(evening, "Asia/Shanghai", late, NoHolidays())[0]
    # A campaign's own windows win over the store's.
    assert store_policy(policy, {"windows": "09:00-12:00"}, "09:00-21:00") is policy


def test_without_the_render_tool_the_page_says_what_the_robot_says(console, client_for, csrf, db, monkeypatch,
                                                                    tmp_path):
    from web import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "tts_python", lambda: tmp_path / "no-venv" / "bin" / "python")
    client = client_for("admin")
    response = client.post("/admin/stores/new", data={"csrf_token": csrf, "code": "JH08", "name": "锦华丰田星沙店",
                                                      "timezone": "Asia/Shanghai"})
    assert response.status_code == 302
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ConsoleJob)) == 0  # nothing to render with
        store_id = s.scalar(sa.select(Store.id).where(Store.code == "JH08"))
    page = client.get(f"/admin/stores/{store_id}").get_data(as_text=True)
    assert 'data-testid="no-render-tool"' in page and "我们店" in page and "未渲染" in page
