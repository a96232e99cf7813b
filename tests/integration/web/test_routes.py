"""Every route, four ways: anonymous, wrong role, wrong store, right role and store.

The table below lists every endpoint of the console (a test fails when a new route is not in
it). For each: the method, a URL built from the seeded world, the least role that may use it,
the store its object belongs to (None when it has none) and form data for POSTs.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from callcenter.domain import Department, FeedbackCategory, Role
from callcenter.storage.models import Call, Customer, DoNotCall, ScriptVersion, User
from callcenter.storage.web_models import ApiToken, ConsoleJob, ImprovementPlan, JobStatus, QaForm
from web.security import session_stamp

pytestmark = pytest.mark.integration

# endpoint: (method, url(world), least role, object's store, form data(world))
ROUTES: dict[str, tuple] = {
    "auth.index": ("GET", lambda w: "/", Role.AGENT, None, None),
    "auth.account": ("GET", lambda w: "/account", Role.AGENT, None, None),
    "agent.workspace": ("GET", lambda w: "/agent/", Role.AGENT, None, None),
    "agent.dial": ("POST", lambda w: "/agent/dial", Role.AGENT, "S1",
                   lambda w: {"kind": "task", "id": w.tasks["S1-preview"]}),
    "agent.disposition": ("POST", lambda w: f"/agent/calls/{w.calls['S1']}/disposition", Role.AGENT, "S1",
                          lambda w: {"disposition": "answered", "outcome": "completed"}),
    "customers.index": ("GET", lambda w: "/customers/", Role.AGENT, None, None),
    "customers.show": ("GET", lambda w: f"/customers/{w.customers['S1']}", Role.AGENT, "S1", None),
    "tickets.index": ("GET", lambda w: "/tickets/", Role.AGENT, None, None),
    "tickets.show": ("GET", lambda w: f"/tickets/{w.tickets['S1']}", Role.AGENT, "S1", None),
    "tickets.recording": ("GET", lambda w: f"/tickets/{w.tickets['S1']}/recording", Role.AGENT, "S1", None),
    "tickets.update": ("POST", lambda w: f"/tickets/{w.tickets['S1']}", Role.AGENT, "S1",
                       lambda w: {"action": "note", "note": "已联系客户"}),
    "tickets.create": ("POST", lambda w: "/tickets/new", Role.AGENT, "S1",
                       lambda w: {"customer_id": w.customers["S1"], "title": "投诉", "department": "after_sales"}),
    "calls.index": ("GET", lambda w: "/calls/", Role.SUPERVISOR, None, None),
    "calls.show": ("GET", lambda w: f"/calls/{w.calls['S1']}", Role.SUPERVISOR, "S1", None),
    "calls.recording": ("GET", lambda w: f"/calls/{w.calls['S1']}/recording", Role.SUPERVISOR, "S1", None),
    "calls.correct_tag": ("POST", lambda w: f"/calls/{w.calls['S1']}/tags", Role.SUPERVISOR, "S1",
                          lambda w: {"action": "add", "category": "wait_time", "evidence": "等了很久"}),
    "calls.review": ("POST", lambda w: f"/calls/{w.calls['S1']}/qa", Role.SUPERVISOR, "S1",
                     lambda w: {"form_id": w.qa_form, "score_a": "8"}),
    "campaigns.index": ("GET", lambda w: "/campaigns/", Role.SUPERVISOR, None, None),
    "campaigns.show": ("GET", lambda w: f"/campaigns/{w.campaigns['S1']}", Role.SUPERVISOR, "S1", None),
    "campaigns.progress_json": ("GET", lambda w: f"/campaigns/{w.campaigns['S1']}/progress.json", Role.SUPERVISOR,
                                "S1", None),
    "campaigns.new": ("GET", lambda w: "/campaigns/new", Role.SUPERVISOR, None, None),
    "campaigns.state": ("POST", lambda w: f"/campaigns/{w.campaigns['S1']}/state", Role.SUPERVISOR, "S1",
                        lambda w: {"action": "pause"}),
    "campaigns.wallboard": ("GET", lambda w: "/campaigns/wallboard", Role.SUPERVISOR, None, None),
    "campaigns.wallboard_json": ("GET", lambda w: "/campaigns/wallboard.json", Role.SUPERVISOR, None, None),
    "live.calls_stream": ("GET", lambda w: "/live/calls", Role.SUPERVISOR, None, None),
    "live.call_stream": ("GET", lambda w: f"/live/calls/{w.calls['S1']}", Role.AGENT, "S1", None),
    "live.agent_stream": ("GET", lambda w: "/live/agent", Role.AGENT, None, None),
    "reports.index": ("GET", lambda w: "/reports/", Role.SUPERVISOR, None, None),
    "reports.customer_base": ("GET", lambda w: "/reports/customer-base", Role.SUPERVISOR, None, None),
    "reports.customer_base_trend": ("GET", lambda w: "/reports/customer-base/trend.json", Role.SUPERVISOR, None, None),
    "reports.feedback": ("GET", lambda w: "/reports/feedback", Role.SUPERVISOR, None, None),
    "reports.top_problems": ("GET", lambda w: "/reports/top-problems", Role.SUPERVISOR, None, None),
    "reports.satisfaction": ("GET", lambda w: "/reports/satisfaction", Role.SUPERVISOR, None, None),
    "reports.winback": ("GET", lambda w: "/reports/winback", Role.SUPERVISOR, None, None),
    "improvement.index": ("GET", lambda w: "/improvement/", Role.SUPERVISOR, None, None),
    "improvement.new": ("GET", lambda w: "/improvement/new", Role.SUPERVISOR, None, None),
    "improvement.show": ("GET", lambda w: f"/improvement/{w.plan}", Role.SUPERVISOR, "S1", None),
    "improvement.close": ("POST", lambda w: f"/improvement/{w.plan}/close", Role.SUPERVISOR, "S1",
                          lambda w: {"cancel": "1"}),
    "admin.index": ("GET", lambda w: "/admin/", Role.ADMIN, None, None),
    "admin.users": ("GET", lambda w: "/admin/users", Role.ADMIN, None, None),
    "admin.new_user": ("GET", lambda w: "/admin/users/new", Role.ADMIN, None, None),
    "admin.edit_user": ("GET", lambda w: f"/admin/users/{w.users['agent_s1']}", Role.ADMIN, "S1", None),
    "admin.tokens": ("GET", lambda w: "/admin/tokens", Role.ADMIN, None, None),
    "admin.revoke_token": ("POST", lambda w: f"/admin/tokens/{w.token}/revoke", Role.ADMIN, "S1", None),
    "admin.sip": ("GET", lambda w: "/admin/sip", Role.ADMIN, None, None),
    "admin.scripts_list": ("GET", lambda w: "/admin/scripts", Role.ADMIN, None, None),
    "admin.script": ("GET", lambda w: "/admin/scripts/post_service", Role.ADMIN, None, None),
    "admin.dnc": ("GET", lambda w: "/admin/dnc", Role.ADMIN, None, None),
    "admin.dnc_delete": ("POST", lambda w: f"/admin/dnc/{w.dnc}/delete", Role.ADMIN, "S1", None),
    "admin.qa_forms": ("GET", lambda w: "/admin/qa", Role.ADMIN, None, None),
    "admin.qa_activate": ("POST", lambda w: f"/admin/qa/{w.qa_form}/activate", Role.ADMIN, None, None),
    "admin.audit_log": ("GET", lambda w: "/admin/audit", Role.ADMIN, None, None),
    "stores.index": ("GET", lambda w: "/admin/stores/", Role.ADMIN, None, None),
    "stores.new": ("GET", lambda w: "/admin/stores/new", Role.ADMIN, None, None),
    "stores.edit": ("GET", lambda w: f"/admin/stores/{w.stores['S1']}", Role.ADMIN, "S1", None),
    "imports.index": ("GET", lambda w: "/admin/imports/", Role.ADMIN, None, None),
    "imports.show": ("GET", lambda w: f"/admin/imports/{w.import_job}", Role.ADMIN, "S1", None),
    "imports.progress": ("GET", lambda w: f"/admin/imports/{w.import_job}.json", Role.ADMIN, "S1", None),
    "imports.errors_csv": ("GET", lambda w: f"/admin/imports/{w.import_job}/errors.csv", Role.ADMIN, "S1", None),
    "imports.run": ("POST", lambda w: f"/admin/imports/{w.import_job}/run", Role.ADMIN, "S1", None),
    "script_editor.index": ("GET", lambda w: "/scripts/", Role.SUPERVISOR, None, None),
    "script_editor.edit": ("GET", lambda w: "/scripts/nps/edit", Role.SUPERVISOR, None, None),
    "script_editor.show_version": ("GET", lambda w: "/scripts/nps/versions/1", Role.SUPERVISOR, None, None),
    "script_editor.step_audio": ("GET", lambda w: "/scripts/nps/steps/identity/audio.wav", Role.SUPERVISOR, None,
                                 None),
}
# Routes only group-wide users get through (a store's administrator adds no stores): the right
# user is the group-wide one, and the store-scoped one of the same role is refused.
GROUP_ONLY = {"stores.new": "admin", "admin.qa_activate": "admin"}  # the QA form scores every store (issue 13)
# Open to everyone (the login page, health, language, the API's description) or token-guarded
# (the JSON API: its own matrix in test_api.py).
PUBLIC = {"auth.login", "auth.logout", "auth.language", "auth.health", "api.openapi", "api.docs"}
TOKEN = {"api.stores", "api.customers", "api.customer", "api.push_customers", "api.visits", "api.push_visits",
         "api.calls", "api.call", "api.campaigns"}

# What a manager (read-only, beside the agent < supervisor < admin ladder) opens: every report,
# the top-3 and improvement plans, calls with their transcripts and recordings, tickets, campaigns'
# progress and the wallboard, and their own account. Every other route answers them 403, and so
# does every write (test_security_probes.py: test_attack_a_manager_writes_nothing).
MANAGER_READS = {
    "auth.index", "auth.account",
    "reports.index", "reports.customer_base", "reports.customer_base_trend", "reports.feedback",
    "reports.top_problems", "reports.satisfaction", "reports.winback",
    "improvement.index", "improvement.show",
    "calls.index", "calls.show", "calls.recording", "live.calls_stream", "live.call_stream",
    "tickets.index", "tickets.show", "tickets.recording",
    "campaigns.index", "campaigns.show", "campaigns.progress_json", "campaigns.wallboard",
    "campaigns.wallboard_json",
}
# The one write a manager makes: their own password.
MANAGER_WRITES = {"auth.account"}
# Forms every page carries: the language switch and logging out.
EVERYONE_POSTS = ("/language", "/logout")

RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}
# Who plays each part: a user of the right role in the other store, and one just below the role.
OTHER_STORE = {Role.AGENT: "agent_s2", Role.SUPERVISOR: "sup_s2", Role.ADMIN: None}
RIGHT = {Role.AGENT: "agent_s1", Role.SUPERVISOR: "sup_s1", Role.ADMIN: "admin_s1"}
BELOW = {Role.SUPERVISOR: "agent_s1", Role.ADMIN: "sup_s1"}


@pytest.fixture
def world(console, db):
    """The seeded world plus objects only some routes need (plan, token, DNC entry, QA form, an
    agent's open call, a script)."""
    app, w = console
    with db.session() as s:
        plan = ImprovementPlan(store_id=w.stores["S1"], department=Department.AFTER_SALES,
                               category=FeedbackCategory.CAR_WASH, title="洗车改善", owner="售后经理", actions="培训",
                               cycle_months=1, start_date=dt.date.today(), end_date=dt.date.today())
        token = ApiToken(name="t", token_hash="0" * 64, prefix="cc_0", user_id=w.users["agent_s1"])
        # A number of an S1 customer (a store's administrator manages its customers' numbers only);
        # not the seeded customer's, whom agent.dial calls.
        listed = Customer(external_id="C-S1-DNC", store_id=w.stores["S1"], name="免打扰", phone="13700000001")
        s.add(listed)
        s.flush()
        dnc = DoNotCall(phone="13700000001", customer_id=listed.id, source="admin")
        form = QaForm(name="测试表", items=[{"key": "a", "label": "开场", "max": 10}])
        data_dir = app.extensions["callcenter"].settings.data_dir
        (data_dir / "imports").mkdir(parents=True, exist_ok=True)
        (data_dir / "imports" / "0123456789abcdef0123456789abcdef.csv").write_text(
            "客户编号,姓名,手机号,门店\nR1,路由测试,13900005555,S1\n", encoding="utf-8")
        job = ConsoleJob(kind="import_customers", dry_run=True, status=JobStatus.DONE, store_id=w.stores["S1"],
                         filename="客户.csv", stored_name="0123456789abcdef0123456789abcdef.csv", target="S1",
                         result={"rows": 1, "imported": 1, "updated": 0, "unchanged": 0, "rejected": 0, "errors": [],
                                 "errors_total": 0})
        version = ScriptVersion(script_id="nps", version=1, text="id: nps\n", sha256="0" * 64)
        s.add_all([plan, token, dnc, form, job, version])
        s.flush()
        w.plan, w.token, w.dnc, w.qa_form, w.import_job = plan.id, token.id, dnc.id, form.id, job.id
        # Each store's agent has an open call of their own, for the disposition route.
        for code in ("S1", "S2"):
            s.execute(sa.update(Call).where(Call.id == w.calls[code]).values(
                agent_id=w.users[f"agent_{code.lower()}"], robot=False, ended_at=None))
    scripts = app.extensions["callcenter"].settings.data_dir / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "post_service.yaml").write_text("id: post_service\nsteps:\n  - say: 您好\n", encoding="utf-8")
    return w


def _request(client, method, url, data, csrf):
    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, data={**(data or {}), "csrf_token": csrf})
    response.close()  # streams (SSE) are not read here
    return response


def test_every_route_is_in_the_matrix(console):
    app, _ = console
    endpoints = {ep for ep in app.view_functions if ep != "static"}
    assert endpoints == set(ROUTES) | PUBLIC | TOKEN, (
        f"not in the matrix: {sorted(endpoints - set(ROUTES) - PUBLIC - TOKEN)}; "
        f"gone: {sorted((set(ROUTES) | PUBLIC | TOKEN) - endpoints)}")


@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_route(endpoint, world, client_for, csrf):
    """Anonymous -> login; a lower role -> 403; the other store's user -> 404; the right user in
    the right store -> through. The right user goes last: some routes change what they touch."""
    method, url, role, store, data = ROUTES[endpoint]
    path = url(world)
    form = data(world) if data else None

    response = _request(client_for(None), method, path, form, csrf)
    assert response.status_code == 302 and "/login" in response.headers["Location"], "anonymous"

    if role in BELOW:
        assert _request(client_for(BELOW[role]), method, path, form, csrf).status_code == 403, "lower role"

    if store and OTHER_STORE[role]:
        assert _request(client_for(OTHER_STORE[role]), method, path, form, csrf).status_code == 404, "other store"

    if endpoint in GROUP_ONLY:
        assert _request(client_for(RIGHT[role]), method, path, form, csrf).status_code == 403, "store-scoped"
    response = _request(client_for(GROUP_ONLY.get(endpoint, RIGHT[role])), method, path, form, csrf)
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:500]


@pytest.mark.parametrize("endpoint", sorted(e for e, r in ROUTES.items() if r[3] and r[2] is Role.ADMIN))
def test_a_store_admin_does_not_reach_another_stores_objects(endpoint, world, client_for, csrf, db):
    """Admin objects of S1 seen by an S2-only administrator."""
    client = _logged_in_new_user(db, client_for, "admin_s2", Role.ADMIN, world.stores["S2"])
    method, url, _role, _store, data = ROUTES[endpoint]
    assert _request(client, method, url(world), data(world) if data else None, csrf).status_code == 404


def test_an_agent_sees_only_their_own_calls_live(world, client_for, db):
    """The live transcript of a call is its agent's (and supervisors'), not another agent's."""
    with db.session() as s:
        s.execute(sa.update(Call).where(Call.id == world.calls["S1"]).values(agent_id=None))
    response = client_for("agent_s1").get(f"/live/calls/{world.calls['S1']}")
    response.close()
    assert response.status_code == 404


def test_every_form_post_needs_the_csrf_token(world, client_for):
    for endpoint, (method, url, role, _store, data) in ROUTES.items():
        if method != "POST":
            continue
        response = client_for(RIGHT[role]).post(url(world), data=data(world) if data else {})
        assert response.status_code == 400, endpoint
        assert "CSRF" in response.get_data(as_text=True), endpoint


def _logged_in_new_user(db, client_for, username: str, role: Role, store_id: int):
    """A client logged in as a user who is not in the seed."""
    with db.session() as s:
        user = User(username=username, password_hash="x", role=role, store_id=store_id)
        s.add(user)
        s.flush()
        uid, stamp = user.id, session_stamp(user)
    client = client_for(None)
    with client.session_transaction() as sess:
        sess["uid"], sess["stamp"] = uid, stamp
    return client


def _store_manager(db, store_id: int, client_for):
    """A client logged in as a manager of ``store_id`` who is not in the seed."""
    return _logged_in_new_user(db, client_for, f"mgr_{store_id}", Role.MANAGER, store_id)


@pytest.mark.parametrize("endpoint", sorted(e for e, r in ROUTES.items() if r[0] == "GET"))
def test_a_manager_reads_what_is_theirs_and_nothing_else(endpoint, world, client_for, csrf, db):
    """A store's manager opens the reading pages of their store (no form on them but the language
    switch and logout: nothing offered that would be refused) and gets 403 on every other page; a
    manager of the other store gets 404 on the store's objects; a group-wide manager opens them."""
    _method, url, _role, store, _data = ROUTES[endpoint]
    path = url(world)
    response = client_for("mgr_s1").get(path)
    response.close()
    if endpoint not in MANAGER_READS:
        assert response.status_code == 403
        return
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:500]
    if response.mimetype == "text/html" and response.status_code == 200 and endpoint not in MANAGER_WRITES:
        html = response.get_data(as_text=True)
        actions = re.findall(r'<form[^>]*method="post"[^>]*>', html)
        assert all(any(f'action="{a}' in f for a in EVERYONE_POSTS) for f in actions), actions
    if store:
        assert _request(_store_manager(db, world.stores["S2"], client_for), "GET", path, None, csrf
                        ).status_code == 404, "other store"
    assert _request(client_for("mgr_all"), "GET", path, None, csrf).status_code in (200, 302), "group-wide"


def test_a_manager_starts_on_the_reports_and_sees_them_in_the_sidebar(world, client_for):
    client = client_for("mgr_s1")
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/reports/")
    html = client.get("/reports/").get_data(as_text=True)
    sidebar = html.split('<ul class="nav">', 1)[1].split("</ul>", 1)[0]
    links = set(re.findall(r'<a href="([^"]+)"', sidebar))
    assert links == {"/tickets/", "/calls/", "/campaigns/", "/campaigns/wallboard", "/reports/", "/improvement/"}
