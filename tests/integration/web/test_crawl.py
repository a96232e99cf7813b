"""Every page as each role, in zh-CN: no English words outside a short allow-list, no raw codes
shown as labels, no response >= 400 (issue 12).

The Flask test client walks the links of each role's pages from its start page over the seeded
group (tests/integration/web/conftest.py) plus the objects that carry codes (DNC entries of every
source, audit entries, ticket history, an improvement plan, a token). Pages of one kind
(``/customers/<id>``) are opened at most twice; downloads are requested for their status only.
A few bad inputs (a one-character search, a wrong phone number, a broken script upload) check that
their messages are Chinese too. Page timing is not measured here: bench/bench_web.py checks the
console's p95 target on the benchmark data.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import deque
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa

from bench.crawl import DOWNLOAD_ARGS, SKIP_PREFIXES, kind_of
from callcenter.domain import Role
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    CallOutcome,
    Customer,
    DoNotCall,
    Store,
    Ticket,
    TicketEvent,
    User,
    Vehicle,
    utcnow,
)
from callcenter.storage.web_models import ApiToken, AuditLog, ImprovementPlan
from campaigns.outcomes import TRANSFER_FAILED_TASK

pytestmark = pytest.mark.integration

# Words a Chinese user meets in Chinese software: standards, file formats, product names.
ALLOWED = {
    "SIP", "NPS", "CSV", "Excel", "VIN", "API", "XLSX", "XLS", "YAML", "UTF", "DMS", "CRM", "ID", "OpenAPI",
    "UTF-8", "UTF-16", "GBK", "GB18030", "JSON", "Bearer", "URL", "HTTP", "HTTPS", "TLS", "UDP", "TCP", "PCMU", "PCMA", "Opus", "RTP", "SRTP", "DTMF",
    "ECharts", "Redis", "PostgreSQL", "SQLite", "VIP", "SHA", "WAV", "MP3", "IP", "TOP",
    "KB", "MB", "GB", "ms", "km", "min", "s", "h", "G", "kHz", "Hz",
    "English",  # the language switch offers English by its own name
}
# File types, also as extensions (".xlsx").
FILE_TYPES = {"CSV", "TSV", "TXT", "XLSX", "XLS", "YAML", "YML", "WAV", "MP3", "JSON"}
# Environment variable names on the administrator's settings pages are what they type into files.
ENV_NAME = re.compile(r"CALLCENTER_[A-Z0-9_]+")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.\-']*")
# Each role is walked once (administrator group-wide, supervisor, agent and manager of a store);
# administrators, supervisors and managers also in the other scope, which changes what their pages
# show (users, filters).
EXTRA_USERS = {"admin_s1": "store administrator", "sup_all": "group-wide supervisor", "mgr_all": "group-wide manager"}
PER_KIND = 2
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Which pages are walked and what a page type is: the same rules as the page-time walk of
# `python -m bench web` (bench/crawl.py). /api/ is for the DMS integrators' programmers: its
# reference is generated from the OpenAPI description, whose field names and texts are the
# interface (a known gap: not translated).


class _Page(HTMLParser):
    """Visible text, user-facing attributes, links and JSON page data of one HTML page."""

    VISIBLE_ATTRS = ("title", "placeholder", "aria-label", "alt", "data-confirm", "data-empty", "data-handed-text")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.links: list[str] = []
        self.json_blocks: list[str] = []
        self._skip = 0
        self._json = False
        self._untranslated = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        # A textarea's text is a form value, like an input's: what the user edits, not the interface.
        if tag in ("style", "textarea") or (tag == "script" and a.get("type") != "application/json"):
            self._skip += 1
        elif tag == "script":
            self._json = True
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for name in self.VISIBLE_ATTRS:
            if a.get(name) and not self._untranslated:
                self.texts.append(a[name])
        if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
            self.texts.append(a["value"])
        if self._untranslated:
            if tag not in VOID:
                self._untranslated += 1
        elif a.get("translate") == "no" and tag not in VOID:
            # HTML's own mark for text that is not to be translated (its attributes still are):
            # YAML source, environment variable names, technical ids beside their names.
            self._untranslated = 1

    def handle_endtag(self, tag):
        if self._untranslated and tag not in VOID:
            self._untranslated -= 1
        if tag in ("style", "textarea") or (tag == "script" and not self._json):
            self._skip = max(0, self._skip - 1)
        elif tag == "script":
            self._json = False

    def handle_data(self, data):
        if self._json:
            self.json_blocks.append(data)
        elif not self._skip and not self._untranslated and data.strip():
            self.texts.append(data)


def _display_strings(value, key: str | None = None):
    """Strings of a page-data block that reach the screen: names, texts, labels, axis categories."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _display_strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _display_strings(v, key)
    elif isinstance(value, str) and key in ("name", "text", "title", "label", "data", "formatter", "subtext"):
        yield value


def _data_words(db) -> set[str]:
    """Latin words that are data (names people typed, plates, VINs, worker ids), not interface."""
    words: set[str] = set()
    with db.session() as s:
        columns = [User.username, User.display_name, Customer.external_id, Customer.name, Vehicle.vin,
                   Vehicle.plate, Vehicle.brand, Vehicle.model, Store.code, ApiToken.name, ApiToken.prefix,
                   Ticket.title, Ticket.description, AuditLog.username]
        for column in columns:
            for (value,) in s.execute(sa.select(column).where(column.is_not(None)).distinct()):
                words.update(WORD.findall(str(value)))
        # Transcripts are what people said (the seeded one holds a <script> tag on purpose).
        from callcenter.storage.models import Utterance

        for (text,) in s.execute(sa.select(Utterance.text)):
            words.update(WORD.findall(text))
    return words


def _english(texts: list[str], data: set[str]) -> list[str]:
    found = []
    for text in texts:
        text = ENV_NAME.sub(" ", text)
        for word in WORD.findall(text):
            word = word.strip(".-'_")
            if (not word or word in ALLOWED or word.upper() in FILE_TYPES or word in data
                    or not re.search(r"[A-Za-z]{2}", word)):
                continue
            if re.fullmatch(r"[A-Z]{1,3}\d*", word):  # a plate's or model's letters: 湘A, X5, ID
                continue
            found.append(word)
    return found


def _seed_codes(db, world) -> None:
    """Objects whose codes the pages must show as labels: DNC entries of every source, audit
    entries, ticket history (a robot-opened ticket), a plan, a token."""
    now = utcnow()
    with db.session() as s:
        # Usernames are data, and must not collide with the codes under test ("admin", "agent").
        for username, uid in world.users.items():
            user = s.get(User, uid)
            user.username = "zh" + re.sub(r"[^a-z0-9]", "", username) + "x"
            user.display_name = {"admin": "王总", "admin_s1": "李店长", "sup_all": "赵主管", "sup_s1": "钱主管",
                                 "sup_s2": "孙主管", "agent_s1": "周坐席", "agent_s2": "吴坐席", "mgr_s1": "郑经理",
                                 "mgr_all": "冯总经理"}[username]
        for n, (source, code) in enumerate((("robot", "S1"), ("admin", "S1"), ("agent", "S1"), ("api", "S2"))):
            customer = s.get(Customer, world.customers[code])
            s.add(DoNotCall(phone=f"1390000{n:04d}", customer_id=customer.id, source=source,
                            reason="客户要求不再来电", created_at=now))
        for action in ("user.create", "recording.play", "campaign.state", "dnc.add", "export", "ticket.update"):
            s.add(AuditLog(user_id=world.users["admin"], username=s.get(User, world.users["admin"]).username,
                           action=action, target_type="call", target_id="1", store_id=world.stores["S1"],
                           details={"status": "running", "format": "csv"}, at=now))
        ticket = s.get(Ticket, world.tickets["S1"])
        s.add(TicketEvent(ticket_id=ticket.id, at=now, action="created",
                          data={"call_id": world.calls["S1"], "department": "after_sales"}))
        s.add(TicketEvent(ticket_id=ticket.id, at=now, user_id=world.users["sup_s1"], action="assigned",
                          data={"assignee_id": world.users["agent_s1"], "assignee": "周坐席"}))
        s.add(TicketEvent(ticket_id=ticket.id, at=now, user_id=world.users["agent_s1"], action="status",
                          note="已重新洗车", data={"status": "resolved"}))
        s.add(ApiToken(name="DMS 对接", token_hash="0" * 64, prefix="cc_abcdef", user_id=world.users["admin"]))
        s.add(ImprovementPlan(store_id=world.stores["S1"], department="after_sales", category="car_wash",
                              source_month=(now.date() - dt.timedelta(days=40)).strftime("%Y-%m"),
                              title="洗车质量改进", owner="售后经理", actions="洗车后检查", cycle_months=1,
                              start_date=now.date() - dt.timedelta(days=10),
                              end_date=now.date() + dt.timedelta(days=20), created_by_id=world.users["sup_s1"]))
        ticket.assignee_id = world.users["agent_s1"]
        call = s.get(Call, world.calls["S1"])
        call.script = "post_service"
        # A hand-over that failed for want of configuration: the agents see a callback task, the
        # administrators the reason.
        failed = s.get(Call, world.calls["S2"])
        failed.outcome = CallOutcome.TRANSFER_FAILED
        failed.error = "transfer failed: no agent extension configured (CALLCENTER_TRANSFER_TARGET)"
        s.add(Callback(customer_id=failed.customer_id, store_id=failed.store_id, call_id=failed.id,
                       due_at=now, reason=TRANSFER_FAILED_TASK, robot=False, status=CallbackStatus.PENDING))


@pytest.fixture
def crawl_world(console, db, redis_client):
    from callcenter.storage import live

    app, world = console
    _seed_codes(db, world)
    # A dialer worker online (its name is a host name: data) and one gone silent.
    live.publish_heartbeat(redis_client, live.WorkerHeartbeat(worker="dialer-host:4242", active_calls=1, capacity=4))
    live.publish_heartbeat(redis_client, live.WorkerHeartbeat(worker="old-host:7", active_calls=0, capacity=4, at=0.0))
    yield app, world, _data_words(db)
    live.remove_worker(redis_client, "dialer-host:4242")
    live.remove_worker(redis_client, "old-host:7")


def crawl(client, data: set[str], start: str = "/") -> tuple[dict[str, list[str]], int]:
    """Walk the pages reachable from ``start``; returns (problems by URL, pages opened)."""
    problems: dict[str, list[str]] = {}
    seen_kinds: dict[str, int] = {}
    visited: set[str] = set()
    queue = deque([start])
    opened = 0
    while queue:
        url = queue.popleft()
        if url in visited:
            continue
        visited.add(url)
        kind = kind_of(url)
        if seen_kinds.get(kind, 0) >= PER_KIND:
            continue
        seen_kinds[kind] = seen_kinds.get(kind, 0) + 1
        response = client.get(url)
        opened += 1
        while response.status_code in (301, 302, 303) and opened < 2000:
            location = urlsplit(response.headers["Location"])
            url = location.path + ("?" + location.query if location.query else "")
            response = client.get(url)
        if response.status_code >= 400:
            problems.setdefault(url, []).append(f"HTTP {response.status_code}")
            continue
        if DOWNLOAD_ARGS & {k for k, _v in parse_qsl(urlsplit(url).query)}:
            continue
        if response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        title = re.search(r"<title>(.*?)</title>", html, re.DOTALL)
        if title is None or "<" in title.group(1) or not title.group(1).strip(" ·"):
            problems.setdefault(url, []).append(f"browser-tab title: {title.group(1) if title else None!r}")
        page = _Page()
        page.feed(html)
        texts = list(page.texts)
        for block in page.json_blocks:
            try:
                texts.extend(_display_strings(json.loads(block)))
            except json.JSONDecodeError:
                problems.setdefault(url, []).append("page data is not JSON")
        english = _english(texts, data)
        if english:
            problems.setdefault(url, []).append("English/codes: " + ", ".join(sorted(set(english))))
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or not parts.path.startswith("/") or href.startswith(SKIP_PREFIXES):
                continue
            target = parts.path + ("?" + parts.query if parts.query else "")
            if target not in visited:
                queue.append(target)
    return problems, opened


def _client_zh(client_for, username):
    client = client_for(username)
    with client.session_transaction() as sess:
        sess["lang"] = "zh_CN"
    return client


CRAWLERS = {
    Role.ADMIN: "admin", Role.SUPERVISOR: "sup_s1", Role.AGENT: "agent_s1", Role.MANAGER: "mgr_s1",
}


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("username", [*CRAWLERS.values(), *EXTRA_USERS])
def test_every_page_is_chinese_and_answers(crawl_world, client_for, username):
    _app, _world, data = crawl_world
    problems, opened = crawl(_client_zh(client_for, username), data)
    assert opened >= 5, f"{username}: only {opened} pages reached"
    assert not problems, f"{username}: " + json.dumps(problems, ensure_ascii=False, indent=1)


def test_every_role_is_crawled():
    """A new role (a manager, say) gets its own walk: add its user to the seed and to CRAWLERS."""
    assert set(CRAWLERS) == set(Role)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_bad_input_messages_are_chinese(crawl_world, client_for, csrf):
    """The messages of rejected input: one-character search, a wrong phone number, a broken script."""
    _app, _world, data = crawl_world
    admin = _client_zh(client_for, "admin")
    missing = admin.get("/customers/999999")  # Werkzeug's English description is not shown
    assert missing.status_code == 404 and "未找到" in missing.get_data(as_text=True)
    pages = [
        missing,
        admin.get("/calls/?q=" + "好"),
        admin.get("/customers/?q=" + "王"),
        admin.post("/admin/dnc", data={"csrf_token": csrf, "phone": "12345"}, follow_redirects=True),
        admin.post("/admin/scripts", data={"csrf_token": csrf, "script_id": "bad_one",
                                           "file": (io.BytesIO(b"steps: [\n  - id: x\n"), "bad_one.yaml")},
                   content_type="multipart/form-data"),
        admin.post("/admin/scripts", data={"csrf_token": csrf, "script_id": "Bad Id",
                                           "file": (io.BytesIO(b"x: 1\n"), "x.yaml")},
                   content_type="multipart/form-data"),
        admin.post("/admin/scripts", data={"csrf_token": csrf, "script_id": "semantic",
                                           "file": (io.BytesIO("id: semantic\nname: 测试\nsteps:\n  - id: a\n    say: 你好\n"
                                                               "    next: nowhere\n".encode()), "semantic.yaml")},
                   content_type="multipart/form-data"),
    ]
    problems = {}
    for response in pages:
        page = _Page()
        page.feed(response.get_data(as_text=True))
        english = _english(page.texts, data)
        if english:
            problems[response.request.path] = sorted(set(english))
    assert not problems, json.dumps(problems, ensure_ascii=False)
    # The messages are there at all (the pages did not just drop the input).
    assert any("两个" in p.get_data(as_text=True) or "至少" in p.get_data(as_text=True) for p in pages[1:3])
