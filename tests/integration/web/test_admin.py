"""Administration: users and roles in scope, tokens, DNC, scripts, QA forms, the audit log."""

import io

import pytest
import sqlalchemy as sa

from callcenter.domain import Role
from callcenter.storage.models import DoNotCall, User
from callcenter.storage.web_models import ApiToken, AuditLog, QaForm
from web.security import hash_token

pytestmark = pytest.mark.integration


def _audit(db, action):
    with db.session() as s:
        return list(s.scalars(sa.select(AuditLog).where(AuditLog.action == action)))


def test_a_store_admin_creates_users_of_their_store_only(console, client_for, csrf, db):
    app, world = console
    client = client_for("admin_s1")
    ok = client.post("/admin/users/new", data={"username": "agent_new", "password": "long-enough-1", "role": "agent",
                                               "store_id": world.stores["S1"], "csrf_token": csrf})
    assert ok.status_code == 302
    for store in ("", str(world.stores["S2"])):
        refused = client.post("/admin/users/new", data={"username": f"x{store}", "password": "long-enough-1",
                                                        "role": "admin", "store_id": store, "csrf_token": csrf})
        assert refused.status_code == 400 and "只能管理本门店的用户" in refused.get_data(as_text=True)
    weak = client.post("/admin/users/new", data={"username": "weak", "password": "short", "role": "agent",
                                                 "store_id": world.stores["S1"], "csrf_token": csrf})
    assert weak.status_code == 400
    with db.session() as s:
        assert s.scalar(sa.select(User.store_id).where(User.username == "agent_new")) == world.stores["S1"]
        assert s.scalar(sa.select(sa.func.count()).select_from(User).where(User.username.in_(["x", "weak"]))) == 0
    assert _audit(db, "user.create")[0].details["username"] == "agent_new"


def test_role_changes_are_audited_and_nobody_demotes_themselves(console, client_for, csrf, db):
    app, world = console
    client = client_for("admin")
    client.post(f"/admin/users/{world.users['agent_s1']}", data={"role": "supervisor",
                                                                 "store_id": world.stores["S1"], "active": "1",
                                                                 "csrf_token": csrf})
    change = _audit(db, "user.role_change")[0]
    assert change.details["before"]["role"] == "agent" and change.details["after"]["role"] == "supervisor"
    me = client.post(f"/admin/users/{world.users['admin']}", data={"role": "agent", "store_id": "", "active": "1",
                                                                  "csrf_token": csrf})
    assert me.status_code == 400
    with db.session() as s:
        assert s.get(User, world.users["admin"]).role is Role.ADMIN


def test_tokens_are_shown_once_stored_hashed_and_revocable(console, client_for, csrf, db):
    app, world = console
    client = client_for("admin")
    page = client.post("/admin/tokens", data={"name": "DMS 同步", "user_id": world.users["sup_s1"], "can_write": "1",
                                              "expires_days": "30", "csrf_token": csrf}).get_data(as_text=True)
    token = page.split('data-testid="new-token">')[1].split("<")[0]
    assert token.startswith("cc_")
    with db.session() as s:
        row = s.scalar(sa.select(ApiToken).where(ApiToken.name == "DMS 同步"))
        assert row.token_hash == hash_token(token) and row.can_write and row.expires_at is not None
    assert token not in client.get("/admin/tokens").get_data(as_text=True)
    api = app.test_client()
    assert api.get("/api/v1/stores", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    client.post(f"/admin/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert api.get("/api/v1/stores", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert [a.action for a in _audit(db, "token.create") + _audit(db, "token.revoke")] == ["token.create",
                                                                                          "token.revoke"]


def test_dnc_entries_are_normalised_and_audited(console, client_for, csrf, db):
    client = client_for("admin")
    client.post("/admin/dnc", data={"phone": "+86 138-1234-5678", "reason": "投诉后要求", "csrf_token": csrf})
    bad = client.post("/admin/dnc", data={"phone": "12345", "csrf_token": csrf}, follow_redirects=True)
    assert "无效电话号码" in bad.get_data(as_text=True)
    with db.session() as s:
        entry = s.scalar(sa.select(DoNotCall))
        assert entry.phone == "13812345678" and entry.source == "admin"
    client.post(f"/admin/dnc/{entry.id}/delete", data={"csrf_token": csrf})
    added, removed = _audit(db, "dnc.add")[0], _audit(db, "dnc.remove")[0]
    assert added.details["phone"] == "138****5678"  # the audit log never holds a whole number
    assert removed.target_id == str(entry.id)


def test_script_uploads_are_validated_and_named_by_line(console, client_for, csrf):
    client = client_for("admin")
    broken = client.post("/admin/scripts", data={"script_id": "post_service", "csrf_token": csrf,
                                                 "file": (io.BytesIO("id: post_service\nsteps: [\n".encode()), "x.yaml")},
                         content_type="multipart/form-data")
    assert broken.status_code == 400 and "第 3 行：YAML 格式错误" in broken.get_data(as_text=True)
    traversal = client.post("/admin/scripts", data={"script_id": "../../evil", "csrf_token": csrf,
                                                    "file": (io.BytesIO(b"id: x\n"), "evil.yaml")},
                            content_type="multipart/form-data")
    assert traversal.status_code == 400
    assert client.get("/admin/scripts/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_qa_forms_from_lines(console, client_for, csrf, db):
    client = client_for("admin")
    page = client.post("/admin/qa", data={"name": "坐席质检", "items": "开场白 | 10\n坏行\n解决问题 | 90",
                                          "csrf_token": csrf}).get_data(as_text=True)
    assert "第 2 行" in page
    client.post("/admin/qa", data={"name": "坐席质检", "items": "开场白 | 10\n解决问题 | 90", "csrf_token": csrf})
    with db.session() as s:
        form = s.scalar(sa.select(QaForm).where(QaForm.name == "坐席质检"))
        assert form.active and form.max_total == 100
        assert s.scalar(sa.select(sa.func.count()).select_from(QaForm).where(QaForm.active.is_(True))) == 1


def test_the_sip_page_never_shows_a_password(console, client_for):
    app, world = console
    app.extensions["callcenter"].settings = app.extensions["callcenter"].settings.replace(
        sip_password="trunk-secret-9", sip_trunk="10.0.0.1:5060")
    page = client_for("admin").get("/admin/sip").get_data(as_text=True)
    assert "trunk-secret-9" not in page and "CALLCENTER_SIP_PASSWORD" in page and "10.0.0.1:5060" in page


def test_store_admins_see_their_stores_audit_entries_only(console, client_for, csrf, db):
    app, world = console
    client_for("sup_s1").get("/reports/feedback?format=csv")
    client_for("sup_s2").get("/reports/feedback?format=csv")
    page = client_for("admin_s1").get("/admin/audit?action=export").get_data(as_text=True)
    assert page.count("报表 · 客户反馈率") == 1 and "sup_s1" in page and "sup_s2" not in page


def test_the_user_form_is_the_new_users_and_says_what_is_wrong_next_to_the_field(console, client_for, csrf, db):
    """Issue 12: the form was pre-filled with the logged-in admin (a template variable shadowed it)."""
    app, world = console
    client = client_for("admin_s1")
    form = client.get("/admin/users/new").get_data(as_text=True)
    assert 'name="username" required maxlength="64" value=""' in form and 'value="admin_s1"' not in form
    bad = client.post("/admin/users/new", data={"username": "王 五", "password": "short", "role": "agent",
                                                "store_id": world.stores["S1"], "csrf_token": csrf})
    page = bad.get_data(as_text=True)
    assert bad.status_code == 400 and 'data-testid="error-username"' in page and 'data-testid="error-password"' in page
    assert "用户名" in page and "王 五" in page  # Chinese, next to the field, what was typed kept
    created = client.post("/admin/users/new", data={"username": "wang.wu", "display_name": "王五",
                                                    "password": "Wang-wu-2026!", "role": "agent",
                                                    "store_id": world.stores["S1"], "csrf_token": csrf})
    assert created.status_code == 302
    with db.session() as s:
        uid = s.scalar(sa.select(User.id).where(User.username == "wang.wu"))
    # Edit: the form shows the edited user, not the admin; disabling keeps the account and its name.
    edit = client.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert 'value="王五"' in edit and 'value="admin_s1"' not in edit
    client.post(f"/admin/users/{uid}", data={"display_name": "王五", "role": "agent", "store_id": world.stores["S1"],
                                             "csrf_token": csrf})  # "active" unchecked
    with db.session() as s:
        assert s.get(User, uid).active is False
    assert client.get(f"/admin/users/{world.users['agent_s2']}").status_code == 404  # another store's user


GOOD_USER = {"username": "new.agent", "display_name": "新坐席", "password": "Lan-hua-2026!", "role": "agent"}


@pytest.mark.parametrize("field, value, message", [
    ("username", "", "请输入用户名"),
    ("username", "wang wu", "不能有空格或汉字"),
    ("username", "王五", "不能有空格或汉字"),
    ("username", "a" * 65, "最多 64 个"),
    ("username", "sup_s1", "已被使用"),  # a duplicate
    ("password", "", "至少需要 8 个字符"),
    ("password", "short1!", "至少需要 8 个字符"),
    ("password", "x" * 129, "最多 128 个字符"),
    ("password", "Woaini1314", "太常见"),
    ("password", "new.agent-2026!", "不能包含用户名"),
    ("role", "owner", "请选择角色"),
    ("role", "", "请选择角色"),
    ("store_id", "999999", "未知门店"),
    ("store_id", "²", "未知门店"),  # a digit to str.isdigit(), not to int()
    ("store_id", "9" * 30, "未知门店"),  # past PostgreSQL's integer
    ("store_id", "S1", "未知门店"),  # junk is not "group-wide"
])
def test_a_bad_new_user_is_named_next_to_the_field_and_nothing_is_saved(console, client_for, csrf, db, field,
                                                                         value, message):
    _app, world = console
    with db.session() as s:
        users = s.scalar(sa.select(sa.func.count()).select_from(User))
    form = {**GOOD_USER, "store_id": str(world.stores["S1"]), "csrf_token": csrf, field: value}
    response = client_for("admin").post("/admin/users/new", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and f'data-testid="error-{field}"' in page and message in page
    assert 'value="新坐席"' in page  # what was typed is kept
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == users
    assert not _audit(db, "user.create")


@pytest.mark.parametrize("field, value, message", [
    ("password", "short1!", "至少需要 8 个字符"),
    ("password", "Woaini1314", "太常见"),
    ("password", "agent_s1-Lanhua!", "不能包含用户名"),
    ("role", "root", "请选择角色"),
    ("store_id", "999999", "未知门店"),
])
def test_a_bad_edit_of_a_user_changes_nothing(console, client_for, csrf, db, field, value, message):
    _app, world = console
    uid = world.users["agent_s1"]
    with db.session() as s:
        before = s.get(User, uid)
        before = (before.role, before.store_id, before.active, before.display_name, before.password_hash)
    form = {"display_name": "周坐席", "role": "supervisor", "store_id": str(world.stores["S2"]), "active": "",
            "password": "Lan-hua-2026!", "csrf_token": csrf, field: value}
    response = client_for("admin").post(f"/admin/users/{uid}", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and f'data-testid="error-{field}"' in page and message in page
    with db.session() as s:
        after = s.get(User, uid)
        assert (after.role, after.store_id, after.active, after.display_name, after.password_hash) == before
    assert not _audit(db, "user.update") and not _audit(db, "user.role_change")
