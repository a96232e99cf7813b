"""The attacks of the security probe (issue 13) against the console and the API, each first
carried out as the prober did and then shown to fail. Those are marked ``attack``
(``pytest -m attack --collect-only -q`` counts them; docs/security.md lists them); the others
show that the legitimate use next to an attack still works.
"""

import datetime as dt
import io
import logging
import re

import pytest
import sqlalchemy as sa

from callcenter.domain import Tier
from callcenter.logs import setup_logging
from callcenter.storage.models import Customer, DoNotCall, ServiceVisit, User, Vehicle
from callcenter.storage.web_models import ApiToken, AuditLog, LoginAttempt, QaForm
from web import create_app
from web.security import FIRST_LOCK, MAX_FAILURES_PER_USER

pytestmark = pytest.mark.integration
attack = pytest.mark.attack

PASSWORD = "test-password-1"
VIN_S1 = "LVGBE40K18G000001"  # the seeded S1 customer's car (conftest.seed)


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _login(client, username, password, environ=None, headers=None):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_base=environ or {}, headers=headers)


# -- store boundaries in the API ----------------------------------------------------------------


@attack
def test_attack_store_b_token_cannot_change_store_a_customer(console, api_token, db):
    app, world = console
    token = api_token("sup_s2", write=True)
    body = {"customers": [
        {"customer_id": "C-S1", "name": "冒名", "phone": "13700000000"},  # store A's customer
        {"customer_id": "C-S2", "name": "王二店新名"},  # the token's own customer
    ]}
    response = app.test_client().post("/api/v1/customers", json=body, headers=_bearer(token))
    assert response.status_code == 207
    [error] = response.json["errors"]
    assert (error["index"], error["field"], error["status"]) == (0, "customer_id", 403)
    assert "another store's customer" in error["reason"]
    assert response.json["updated"] == 1
    with db.session() as s:
        a = s.get(Customer, world.customers["S1"])
        assert (a.name, a.phone, a.store_id) == ("王S1", "13812345678", world.stores["S1"])
        assert s.get(Customer, world.customers["S2"]).name == "王二店新名"


@attack
def test_attack_store_b_token_cannot_move_store_a_vehicle(console, api_token, db):
    app, world = console
    token = api_token("sup_s2", write=True)
    body = {"customers": [
        {"customer_id": "C-S2", "vehicles": [{"vin": VIN_S1, "model": "卡罗拉"}]},
        {"customer_id": "N-S2", "name": "新客户", "phone": "13900003333",
         "vehicles": [{"vin": VIN_S1.lower()}]},  # the same VIN written otherwise
        {"customer_id": "N-S2-OK", "name": "好客户", "phone": "13900004444",
         "vehicles": [{"vin": "LFV2A21K6A4000002", "tier": "中端"}]},
    ]}
    response = app.test_client().post("/api/v1/customers", json=body, headers=_bearer(token))
    assert response.status_code == 207
    errors = {e["index"]: e for e in response.json["errors"]}
    assert set(errors) == {0, 1} and all(e["field"] == "vin" and e["status"] == 403 for e in errors.values())
    assert response.json["imported"] == 1
    with db.session() as s:
        owner = s.scalar(sa.select(Vehicle.customer_id).where(Vehicle.vin == VIN_S1))
        assert owner == world.customers["S1"]
        assert s.scalar(sa.select(Customer.id).where(Customer.external_id == "N-S2")) is None
        assert s.scalar(sa.select(Customer.store_id).where(Customer.external_id == "N-S2-OK")) == world.stores["S2"]


@attack
def test_attack_store_b_token_cannot_add_visits_to_store_a_customers(console, api_token, db):
    app, world = console
    token = api_token("sup_s2", write=True)
    day = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    body = {"visits": [
        {"customer_id": "C-S1", "visit_date": day, "type": "保养", "paid": True, "ro_number": "RO-X1"},
        {"customer_id": "C-S2", "visit_date": day, "type": "保养", "paid": True, "ro_number": "RO-X2"},
    ]}
    response = app.test_client().post("/api/v1/visits", json=body, headers=_bearer(token))
    assert response.status_code == 207
    [error] = response.json["errors"]
    assert (error["index"], error["field"], error["status"]) == (0, "customer_id", 403)
    assert response.json["imported"] == 1
    with db.session() as s:
        counts = dict(s.execute(sa.select(ServiceVisit.customer_id, sa.func.count())
                                .group_by(ServiceVisit.customer_id)).all())
        assert counts == {world.customers["S1"]: 1, world.customers["S2"]: 2}


def test_a_customer_with_a_car_at_two_stores_is_written_by_both(console, api_token, db):
    """The dealer-group case beside the attacks above: a customer whose home is store A and who
    services a car at store B is B's customer too, so B's token updates B's car and adds B's
    visits; the person's own details stay the home store's (the importer's acting-store rule)."""
    app, world = console
    vin_b = "LFV2A21K6A4000009"
    with db.session() as s:
        s.add(Vehicle(customer_id=world.customers["S1"], store_id=world.stores["S2"], vin=vin_b, model="卡罗拉", tier=Tier.MID))
    token = api_token("sup_s2", write=True)
    pushed = app.test_client().post("/api/v1/customers", headers=_bearer(token), json={"customers": [
        {"customer_id": "C-S1", "name": "王S1", "occupation": "教师", "vehicles": [{"vin": vin_b, "plate": "湘B88888"}]}]})
    assert pushed.status_code == 200 and pushed.json["updated"] == 1, pushed.json["errors"]
    day = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    visit = app.test_client().post("/api/v1/visits", headers=_bearer(token), json={"visits": [
        {"customer_id": "C-S1", "vin": vin_b, "visit_date": day, "type": "保养", "paid": True}]})
    assert visit.status_code == 200 and visit.json["imported"] == 1, visit.json
    with db.session() as s:
        customer = s.get(Customer, world.customers["S1"])
        assert (customer.occupation, customer.store_id) == (None, world.stores["S1"])  # the home store's
        assert s.scalar(sa.select(Vehicle.plate).where(Vehicle.vin == vin_b)) == "湘B88888"
        assert s.scalar(sa.select(Vehicle.store_id).where(Vehicle.vin == VIN_S1)) == world.stores["S1"]
        assert s.scalar(sa.select(ServiceVisit.store_id).where(ServiceVisit.visit_date == dt.date.fromisoformat(day))) \
            == world.stores["S2"]


def test_a_group_wide_token_still_writes_every_store(console, api_token, db):
    app, world = console
    token = api_token("admin", write=True)
    response = app.test_client().post("/api/v1/customers", json={"customers": [
        {"customer_id": "C-S1", "name": "王一店新名", "vehicles": [{"vin": VIN_S1}]}]}, headers=_bearer(token))
    assert response.status_code == 200 and response.json["updated"] == 1
    with db.session() as s:
        assert s.get(Customer, world.customers["S1"]).name == "王一店新名"


# -- store-limited administrators and group-wide objects ----------------------------------------


@attack
def test_attack_store_admin_cannot_change_the_active_qa_form(console, client_for, csrf, db):
    store_admin, group_admin = client_for("admin_s1"), client_for("admin")
    assert group_admin.get("/admin/qa").status_code == 200  # the standard form exists now
    created = store_admin.post("/admin/qa", data={"name": "一店自定", "items": "态度 | 100", "csrf_token": csrf})
    assert created.status_code == 403
    with db.session() as s:
        standard = s.scalar(sa.select(QaForm).where(QaForm.active.is_(True)))
        other = QaForm(name="备用", items=[{"key": "item1", "label": "x", "max": 10}], active=False)
        s.add(other)
        s.flush()
        other_id, standard_id = other.id, standard.id
    assert store_admin.post(f"/admin/qa/{other_id}/activate", data={"csrf_token": csrf}).status_code == 403
    page = store_admin.get("/admin/qa").get_data(as_text=True)
    assert 'name="items"' not in page and "/activate" not in page
    with db.session() as s:
        assert s.scalar(sa.select(QaForm.id).where(QaForm.active.is_(True))) == standard_id
        assert s.scalar(sa.select(sa.func.count()).select_from(QaForm)) == 2
    assert group_admin.post(f"/admin/qa/{other_id}/activate", data={"csrf_token": csrf}).status_code == 302


@attack
def test_attack_store_admin_cannot_override_a_shipped_script(console, client_for, csrf, settings):
    upload = {"file": (io.BytesIO(b"id: post_service\n"), "post_service.yaml"), "csrf_token": csrf}
    response = client_for("admin_s1").post("/admin/scripts", data=upload, content_type="multipart/form-data")
    assert response.status_code == 403
    assert not (settings.data_dir / "scripts").exists()
    assert 'type="file"' not in client_for("admin_s1").get("/admin/scripts").get_data(as_text=True)


@attack
def test_attack_store_supervisor_cannot_edit_a_script_for_every_store(console, client_for, csrf, settings, db):
    form = {"csrf_token": csrf, "identity.say": "{customer}您好,我是{store}的客服,现在方便吗?"}
    assert client_for("sup_s1").post("/scripts/post_service/edit", data=form).status_code == 403
    assert client_for("admin_s1").post("/scripts/post_service/edit", data=form).status_code == 403
    assert not (settings.data_dir / "scripts").exists()
    assert client_for("sup_all").post("/scripts/post_service/edit", data=form).status_code == 302


@attack
def test_attack_store_admin_cannot_touch_or_probe_other_stores_dnc(console, client_for, csrf, db):
    _app, world = console
    store_admin, group_admin = client_for("admin_s1"), client_for("admin")

    def add(client, phone):
        client.post("/admin/dnc", data={"phone": phone, "reason": "x", "csrf_token": csrf})
        page = client.get("/admin/dnc").get_data(as_text=True)
        return re.search(r'class="flash (\w+)"[^>]*>(.*?)<', page, re.DOTALL).groups()

    # Another store's customer's number: refused, nothing listed.
    other = add(store_admin, "139-8765-4321")
    assert other[0] == "error"
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(DoNotCall)) == 0
    # A number nobody has gets the very same answer.
    assert add(store_admin, "13700001111") == other
    # Once the group lists the other store's number, the store admin's answer does not change:
    # "already listed" would tell them it is.
    assert add(group_admin, "13987654321")[0] == "success"
    assert add(store_admin, "13987654321") == other
    with db.session() as s:
        entry_id = s.scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == "13987654321"))
    assert "13987654321" not in store_admin.get("/admin/dnc").get_data(as_text=True)
    assert store_admin.post(f"/admin/dnc/{entry_id}/delete", data={"csrf_token": csrf}).status_code == 404
    # Their own customer's number works as before.
    assert add(store_admin, "13812345678")[0] == "success"
    assert "13812345678" in store_admin.get("/admin/dnc").get_data(as_text=True)
    # A customer who also has a car at S2 is S2's too: S1's administrator may not remove the entry.
    with db.session() as s:
        s.add(Vehicle(customer_id=world.customers["S1"], store_id=world.stores["S2"], vin="LFV2A21K6A4000010",
                      tier=Tier.MID))
        shared_id = s.scalar(sa.select(DoNotCall.id).where(DoNotCall.phone == "13812345678"))
    assert store_admin.post(f"/admin/dnc/{shared_id}/delete", data={"csrf_token": csrf}).status_code == 403
    assert client_for("admin").post(f"/admin/dnc/{shared_id}/delete", data={"csrf_token": csrf}).status_code == 302


# -- masked numbers -----------------------------------------------------------------------------


@attack
def test_attack_agent_cannot_recover_a_masked_number_digit_by_digit(console, client_for, db):
    agent = client_for("agent_s1")
    # The probe: a known masked number 138****5678, then the hidden digits one at a time.
    found = ""
    for position in range(4):
        for digit in "0123456789":
            page = agent.get("/customers/", query_string={"q": f"138{found}{digit}"}).get_data(as_text=True)
            if "王S1" in page:
                found += digit
                break
    assert found == ""  # not one hidden digit came out
    page = agent.get("/customers/", query_string={"q": "5678"}).get_data(as_text=True)
    assert "王S1" not in page and "请输入完整手机号搜索" in page
    # The whole number still finds the customer, and the page shows it masked.
    whole = agent.get("/customers/", query_string={"q": "138 1234 5678"}).get_data(as_text=True)
    assert "王S1" in whole and "13812345678" not in whole and "138****5678" in whole
    with db.session() as s:
        searches = s.scalars(sa.select(AuditLog).where(AuditLog.action == "phone.search")).all()
        assert len(searches) == 42 and sum(1 for a in searches if a.details["refused"]) == 41
        assert all("13812345678" not in str(a.details) for a in searches)
    # A supervisor sees whole numbers anyway: their partial search works.
    assert "王S1" in client_for("sup_s1").get("/customers/", query_string={"q": "5678"}).get_data(as_text=True)


@attack
def test_attack_agent_api_token_gets_the_masked_numbers_the_console_shows(console, api_token, client_for):
    app, world = console
    agent = app.test_client().get("/api/v1/customers", headers=_bearer(api_token("agent_s1"))).json["items"]
    assert [c["phone"] for c in agent] == ["138****5678"]
    one = app.test_client().get("/api/v1/customers/C-S1", headers=_bearer(api_token("agent_s1"))).json
    assert one["phone"] == "138****5678"
    console_page = client_for("agent_s1").get(f"/customers/{world.customers['S1']}").get_data(as_text=True)
    assert "138****5678" in console_page and "13812345678" not in console_page
    supervisor = app.test_client().get("/api/v1/customers", headers=_bearer(api_token("sup_s1"))).json["items"]
    assert [c["phone"] for c in supervisor] == ["13812345678"]


def test_a_manager_reads_calls_and_tickets_with_masked_numbers(console, client_for):
    """Managers read and never dial: the call and ticket pages show them the masked number."""
    _app, world = console
    for url in (f"/calls/{world.calls['S1']}", f"/tickets/{world.tickets['S1']}"):
        page = client_for("mgr_s1").get(url).get_data(as_text=True)
        assert "138****5678" in page and "13812345678" not in page, url


# -- a read-only manager (issue 12) -------------------------------------------------------------


def _every_row(db) -> dict[str, list[str]]:
    """Every row of every table as text: a write anywhere changes it."""
    from callcenter.storage.models import Base

    with db.engine.connect() as conn:
        return {t.name: sorted(repr(tuple(row)) for row in conn.execute(t.select()))
                for t in Base.metadata.sorted_tables}


@attack
def test_attack_a_manager_writes_nothing(console, client_for, csrf, db):
    """A manager with a valid session and CSRF token posts to every route that takes a write (each
    URL method of the console, not a list kept by hand): 403 each, and no row of any table changes.
    Their own password (/account) is the one write they make."""
    app, world = console
    ids = {"call_id": world.calls["S1"], "ticket_id": world.tickets["S1"], "campaign_id": world.campaigns["S1"],
           "user_id": world.users["agent_s1"], "store_id": world.stores["S1"]}
    urls = app.url_map.bind("localhost")
    before = _every_row(db)
    writes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not rule.methods & {"POST", "PUT", "PATCH", "DELETE"} or view._access.public or view._access.api:
            continue
        if rule.endpoint == "auth.account":
            continue
        values = {arg: ids.get(arg, 1) if type(rule._converters[arg]).__name__ == "IntegerConverter" else "nps"
                  for arg in rule.arguments}
        path = urls.build(rule.endpoint, values)
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            response = client_for("mgr_all").open(path, method=method, data={
                "csrf_token": csrf, "action": "add", "category": "wait_time", "note": "经理改的", "status": "closed"})
            writes.append((method, path, response.status_code))
    assert len(writes) >= 20, writes  # 24 when this was written
    assert [w for w in writes if w[2] != 403] == []
    assert _every_row(db) == before
    changed = client_for("mgr_s1").post("/account", data={
        "current_password": PASSWORD, "new_password": "Jingli-mima-2026", "confirm_password": "Jingli-mima-2026",
        "csrf_token": csrf})
    assert changed.status_code == 302


@attack
def test_attack_a_managers_api_token_reads_and_writes_nothing(console, api_token, client_for, csrf, db):
    """The API serves the DMS and its integrators; a manager's token (made behind the token page's
    back: the page offers no manager) gets 403 on every call, reads and writes alike."""
    app, world = console
    headers = _bearer(api_token("mgr_all", write=True))
    client = app.test_client()
    for path in ("/api/v1/stores", "/api/v1/customers", "/api/v1/customers/C-S1", "/api/v1/visits",
                 "/api/v1/calls", f"/api/v1/calls/{world.calls['S1']}", "/api/v1/campaigns"):
        assert client.get(path, headers=headers).status_code == 403, path
    pushed = client.post("/api/v1/customers", headers=headers,
                         json={"customers": [{"customer_id": "C-S1", "name": "经理改名"}]})
    assert pushed.status_code == 403
    with db.session() as s:
        assert s.get(Customer, world.customers["S1"]).name == "王S1"
    page = client_for("admin").get("/admin/tokens").get_data(as_text=True)
    assert f'value="{world.users["mgr_all"]}"' not in page
    refused = client_for("admin").post("/admin/tokens", data={
        "user_id": world.users["mgr_all"], "name": "经理的令牌", "csrf_token": csrf})
    assert refused.status_code == 200
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ApiToken).where(ApiToken.name == "经理的令牌")) == 0


# -- sessions -----------------------------------------------------------------------------------


def _cookie(client):
    return client.get_cookie("cc_session").value


def _with_cookie(app, value):
    client = app.test_client()
    client.set_cookie("cc_session", value)
    return client


@attack
def test_attack_a_cookie_kept_after_logout_is_refused(console, client_for, csrf):
    app, _world = console
    client = client_for("sup_s1")
    assert client.get("/calls/").status_code == 200
    kept = _cookie(client)
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 302
    replay = _with_cookie(app, kept).get("/calls/")
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]


@attack
def test_attack_a_password_reset_or_disabling_ends_the_users_sessions(console, client_for, csrf, db):
    app, world = console
    victim = client_for("agent_s1")
    kept = _cookie(victim)
    assert victim.get("/agent/").status_code == 200
    reset = client_for("admin").post(f"/admin/users/{world.users['agent_s1']}", data={
        "role": "agent", "store_id": str(world.stores["S1"]), "active": "1", "password": "Fresh-Start-2026",
        "csrf_token": csrf})
    assert reset.status_code == 302
    assert _with_cookie(app, kept).get("/agent/").status_code == 302
    second = client_for("agent_s2")
    client_for("admin").post(f"/admin/users/{world.users['agent_s2']}", data={
        "role": "agent", "store_id": str(world.stores["S2"]), "csrf_token": csrf})  # no "active": disabled
    assert second.get("/agent/").status_code == 302


# -- one password policy ------------------------------------------------------------------------


@attack
@pytest.mark.parametrize("weak", ["woaini1314", "qq123456", "a1234567", "Password1", "88888888", "agent_s1-pass"])
def test_attack_weak_passwords_are_refused_on_every_console_path(console, client_for, csrf, db, weak):
    _app, world = console
    own = client_for("agent_s1").post("/account", data={
        "current_password": PASSWORD, "new_password": weak, "confirm_password": weak, "csrf_token": csrf})
    assert own.status_code == 200  # the form again, with the reason
    reset = client_for("admin").post(f"/admin/users/{world.users['agent_s1']}", data={
        "role": "agent", "store_id": str(world.stores["S1"]), "active": "1", "password": weak, "csrf_token": csrf})
    assert reset.status_code == 400
    new = client_for("admin").post("/admin/users/new", data={
        "username": "agent" if "agent" in weak else "newbie", "role": "agent", "password": weak,
        "store_id": str(world.stores["S1"]), "csrf_token": csrf})
    assert new.status_code == 400
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == len(world.users)
        assert s.scalar(sa.select(AuditLog.id).where(AuditLog.action == "user.password_change")) is None


@attack
def test_attack_weak_passwords_are_refused_by_the_cli(run_cli):
    assert run_cli("init").exit_code == 0
    for weak, reason in (("woaini1314", "too common"), ("short", "at least 8"), ("wang-2026-x", "user name")):
        result = run_cli("users", "create", "wang", "--role", "admin", "--password-stdin", input=weak + "\n")
        assert result.exit_code == 1 and reason in result.output, result.output
    assert run_cli("users", "create", "wang", "--role", "admin", "--password-stdin",
                   input="Lantern-Mosaic-47\n").exit_code == 0


# -- login lockout ------------------------------------------------------------------------------


def _age_attempts(db, username, by: dt.timedelta):
    with db.session() as s:  # in Python: SQLite has no date-time arithmetic on its text column
        for attempt in s.scalars(sa.select(LoginAttempt).where(LoginAttempt.username == username)):
            attempt.at -= by


@attack
def test_attack_password_guessing_locks_the_account_with_growing_waits(console, db):
    app, world = console
    client = app.test_client()
    for _ in range(MAX_FAILURES_PER_USER):
        assert _login(client, "sup_s1", "guess-guess-1").status_code == 401
    assert _login(client, "sup_s1", PASSWORD).status_code == 429  # locked, even for the right password
    _age_attempts(db, "sup_s1", FIRST_LOCK)
    assert _login(client, "sup_s1", "guess-guess-2").status_code == 401  # one more try after the lock...
    _age_attempts(db, "sup_s1", FIRST_LOCK)
    assert _login(client, "sup_s1", PASSWORD).status_code == 429  # ...doubled the lock
    _age_attempts(db, "sup_s1", FIRST_LOCK)
    assert _login(client, "sup_s1", PASSWORD).status_code == 302
    with db.session() as s:
        locks = s.scalars(sa.select(AuditLog.target_id).where(AuditLog.action == "login.locked")).all()
        assert locks == [str(world.users["sup_s1"])] * 2


@attack
def test_one_office_behind_one_address_is_not_locked_out(console, db):
    app, _world = console
    # 60 typos by 20 colleagues from the office's one NAT address (the old limit was 30).
    with db.session() as s:
        s.add_all([LoginAttempt(username=f"colleague{n % 20}", ip="127.0.0.1", success=False) for n in range(60)])
    assert _login(app.test_client(), "agent_s1", PASSWORD).status_code == 302


@attack
def test_attack_a_forged_forwarded_for_does_not_choose_the_client_address(console, db, settings, redis_client):
    app = create_app(settings.replace(trusted_proxies=1, trusted_proxy_addresses=("10.0.0.2/32",)),
                     database=db, redis_client=redis_client)
    # A client that reaches the console directly claims another address: ignored.
    _login(app.test_client(), "agent_s1", "wrong-pass-1", environ={"REMOTE_ADDR": "198.51.100.7"},
           headers={"X-Forwarded-For": "203.0.113.50"})
    # Through the trusted proxy, its X-Forwarded-For is the client.
    _login(app.test_client(), "agent_s1", "wrong-pass-2", environ={"REMOTE_ADDR": "10.0.0.2"},
           headers={"X-Forwarded-For": "192.0.2.33"})
    with db.session() as s:
        ips = s.scalars(sa.select(LoginAttempt.ip).order_by(LoginAttempt.id)).all()
    assert ips == ["198.51.100.7", "192.0.2.33"]


# -- logs ---------------------------------------------------------------------------------------


@pytest.fixture
def log_lines():
    """The lines the product's log handler writes (callcenter.logs.setup_logging), as a list."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    setup_logging("INFO", stream=buffer)
    yield lambda: buffer.getvalue().splitlines()
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


@attack
def test_attack_a_url_with_a_line_feed_cannot_forge_a_log_line(console, log_lines):
    app, _world = console
    forged = "/calls/x%0a2026-12-06 03:00:00,000 INFO MainProcess web.auth: user admin logged in from 10.0.0.1"
    app.test_client().get(forged)
    lines = log_lines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line) for line in lines)
    assert not any(line.startswith("2026-12-06 03:00:00,000") for line in lines)
    assert any("x\\x0a2026-12-06" in line for line in lines)


@attack
def test_attack_refused_requests_are_logged_with_path_and_address(console, log_lines, api_token):
    app, _world = console
    client = app.test_client()
    client.get("/calls/")  # not logged in
    client.get("/api/v1/customers")  # no token
    client.get("/api/v1/customers", headers=_bearer("cc_forged"))  # a made-up token
    client.post("/tickets/1", data={"status": "closed"})  # no CSRF token
    client.post("/api/v1/customers", json={"customers": [{"customer_id": "X"}]},
                headers=_bearer(api_token("sup_s1")))  # read-only token
    refusals = [line for line in log_lines() if " refused " in line]
    assert any("refused 302 GET /calls/ from 127.0.0.1" in line for line in refusals)
    assert sum("refused 401 GET /api/v1/customers from 127.0.0.1" in line for line in refusals) == 2
    assert any("refused 400 POST /tickets/1 from 127.0.0.1" in line and "CSRF" in line for line in refusals)
    assert any("refused 403 POST /api/v1/customers" in line and "read-only" in line for line in refusals)


@attack
def test_attack_phone_numbers_in_any_format_are_masked_in_logs(console, log_lines):
    app, _world = console
    client = app.test_client()
    for written in ("138-1234-5678", "138 1234 5678", "+86 138 1234 5678", "86-13812345678", "0731-84567890"):
        client.get(f"/customers/{written}")
    text = "\n".join(log_lines())
    assert "/customers/138****5678" in text and "/customers/0731-****7890" in text
    for digits in ("1234-5678", "1234 5678", "12345678", "84567890"):
        assert digits not in text


# -- bad input to the API -----------------------------------------------------------------------


@attack
def test_attack_a_huge_field_and_deep_nesting_reject_their_rows_only(console, api_token, db):
    app, _world = console
    token = api_token("admin", write=True)
    deep = "[" * 100_000 + "]" * 100_000
    body = ('{"customers": ['
            '{"customer_id": "BIG", "name": "' + "名" * 200_000 + '", "phone": "13900005555", "store": "S1"},'
            '{"customer_id": "DEEP", "name": ' + deep + ', "store": "S1"},'
            + deep + ','
            '{"customer_id": "GOOD", "name": "好客户", "phone": "13900006666", "store": "S1"}]}')
    response = app.test_client().post("/api/v1/customers", data=body, content_type="application/json",
                                      headers=_bearer(token))
    assert response.status_code == 207
    errors = {e["index"]: e for e in response.json["errors"]}
    assert errors[0]["field"] == "name" and "longer than 100 characters (200000)" in errors[0]["reason"]
    assert errors[1]["field"] == "name" and "nested more than 16 levels deep" in errors[1]["reason"]
    assert errors[2]["reason"] == "not a JSON object"
    assert response.json["imported"] == 1 and 3 not in errors
    with db.session() as s:
        assert s.scalars(sa.select(Customer.external_id).where(Customer.external_id.in_(
            ["BIG", "DEEP", "GOOD"]))).all() == ["GOOD"]


@attack
def test_attack_nesting_the_json_parser_can_take_is_still_a_row_error(console, api_token):
    app, _world = console
    token = api_token("admin", write=True)
    nested = {"customer_id": "N1", "name": "x", "store": "S1"}
    value: object = "x"
    for _ in range(900):  # below json's own recursion limit: parsed, then refused as a value
        value = [value]
    nested["city"] = value
    response = app.test_client().post("/api/v1/customers", headers=_bearer(token), json={"customers": [nested]})
    assert response.status_code == 207
    assert response.json["errors"] == [{"index": 0, "field": "city", "value": "(list)",
                                        "reason": "must be a string, number, boolean or null"}]


@attack
def test_attack_field_limits_apply_to_visits_too(console, api_token):
    app, _world = console
    response = app.test_client().post("/api/v1/visits", headers=_bearer(api_token("admin", write=True)), json={
        "visits": [{"customer_id": "C-S1", "visit_date": "2026-01-01", "type": "保养", "paid": True,
                    "advisor": "刘" * 51}]})
    assert response.status_code == 207
    [error] = response.json["errors"]
    assert error["field"] == "advisor" and "longer than 50 characters" in error["reason"]
