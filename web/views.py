"""Shared view plumbing: template filters, the navigation, error pages, pagination.

Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from flask import Flask, g, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from callcenter.domain import (
    CallDisposition,
    CustomerClass,
    Department,
    FeedbackCategory,
    Intent,
    Sentiment,
    Speaker,
)
from callcenter.storage.models import CallOutcome, utcnow
from web import labels, scripts
from web.i18n import N_
from web.i18n import gettext as translate
from web.security import current_user, may, shown_phone
from web.services import settings

logger = logging.getLogger("web.requests")

# (endpoint, label, icon). The sidebar shows what the user may open (each view's access rule).
NAVIGATION: tuple[tuple[str, object, str], ...] = (
    ("agent.workspace", N_("Workspace"), "headset"),
    ("customers.index", N_("Customers"), "users"),
    ("tickets.index", N_("Tickets"), "ticket"),
    ("calls.index", N_("Calls"), "phone"),
    ("campaigns.index", N_("Campaigns"), "megaphone"),
    ("campaigns.wallboard", N_("Wallboard"), "monitor"),
    ("reports.index", N_("Reports"), "chart"),
    ("improvement.index", N_("Improvement plans"), "target"),
    ("script_editor.index", N_("Scripts"), "file"),
    ("admin.index", N_("Administration"), "settings"),
)


def localtime(value: dt.datetime | None) -> dt.datetime | None:
    """A naive UTC datetime (as stored) in the group's time zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(ZoneInfo(settings().timezone))


def fmt_datetime(value: dt.datetime | None, seconds: bool = False) -> str:
    local = localtime(value)
    if local is None:
        return ""
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_date(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def fmt_pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.{digits}f}%"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def show_phone(phone: str | None) -> str:
    """Agents see masked numbers (the full one only while dialing); supervisors see them whole
    (:func:`web.security.shown_phone`, the rule the API applies too)."""
    return shown_phone(phone)


def json_script(data: object, element_id: str) -> Markup:
    """Page data for scripts, as a non-executable JSON block (CSP forbids inline script).

    ``<``, ``>`` and ``&`` are escaped so that text such as ``</script>`` inside the data
    cannot end the block.
    """
    text = (json.dumps(data, ensure_ascii=False, default=str)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    return Markup(f'<script type="application/json" id="{element_id}">{text}</script>')


def quoted_code(text: str) -> Markup:
    """Text whose 'quoted' parts are code (YAML keys, step ids), shown as code and marked as not
    to be translated; everything is escaped."""
    parts = str(text).split("'")
    if len(parts) % 2 == 0:  # an odd quote: nothing is code
        return Markup.escape(text)
    return Markup("").join(Markup('<code translate="no">{}</code>').format(p) if i % 2 else Markup.escape(p)
                           for i, p in enumerate(parts))


def today() -> dt.date:
    return dt.datetime.now(ZoneInfo(settings().timezone)).date()


@dataclass
class Page:
    """One page of a list: ``items``, ``page`` (1-based), ``per_page``, ``total``."""

    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def url(self, page: int) -> str:
        args = request.args.to_dict()
        args["page"] = str(page)
        return url_for(request.endpoint, **(request.view_args or {}), **args)


def page_number(default_per_page: int = 25) -> tuple[int, int]:
    """(page, per_page) from the query string, clamped (junk reads as 1)."""
    try:
        page = max(1, min(int(request.args.get("page", 1)), 10_000))
    except ValueError:
        page = 1
    return page, default_per_page


def error_page(exc: HTTPException):
    titles = {
        400: _("The request was not understood"),
        401: _("Please log in"),
        403: _("You are not allowed to open this page"),
        404: _("Not found"),
        405: _("Not allowed"),
        409: _("This cannot be done now"),
        413: _("The upload is too large"),
        429: _("Too many attempts"),
    }
    title = titles.get(exc.code or 500, _("Something went wrong"))
    # Werkzeug's own descriptions are English; only a description the console wrote is shown.
    message = exc.description if exc.description != type(exc).description else None
    return render_template("error.html", code=exc.code, title=title, message=message), exc.code


def _nav():
    user = current_user()
    if user is None:
        return []
    endpoints = {item[0] for item in NAVIGATION}
    here = request.endpoint or ""
    return [
        (ep, translate(lbl), icon, here == ep or (here not in endpoints and here.split(".")[0] == ep.split(".")[0]))
        for ep, lbl, icon in NAVIGATION if may(ep)
    ]


def _start_timer() -> None:
    g._started = time.perf_counter()


def _log_request(response):
    started = g.pop("_started", None)
    if started is not None and request.endpoint != "static":
        user = current_user()
        # The path only: query strings may carry phone digits from a search box.
        logger.info("%s %s %s %.0fms user=%s", request.method, request.path, response.status_code,
                    (time.perf_counter() - started) * 1000, user.username if user else "-")
    return response


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_log_request)
    app.jinja_env.filters.update(
        localdt=fmt_datetime, date=fmt_date, pct=fmt_pct, duration=fmt_duration, phone=show_phone,
        label=labels.label, quoted_code=quoted_code,
    )
    app.jinja_env.globals.update(
        json_script=json_script, nav=_nav, script_name=scripts.display_name, today=today, label=labels.label, now_utc=utcnow,
        label_category=lambda code: labels.of(FeedbackCategory, code),
        audit_action=labels.audit_action, audit_target=labels.audit_target, audit_details=labels.audit_details,
        dnc_source=labels.dnc_source,
        label_department=lambda code: labels.of(Department, code),
        label_disposition=lambda code: labels.of(CallDisposition, code),
        label_speaker=lambda code: labels.of(Speaker, code),
        label_sentiment=lambda code: labels.of(Sentiment, code),
        label_class=lambda code: labels.of(CustomerClass, code),
        label_outcome=lambda code: labels.of(CallOutcome, code),
        label_intent=lambda code: labels.of(Intent, code),
        ticket_departments=lambda: labels.choices(Department),
        ticket_categories=lambda: labels.choices(FeedbackCategory),
    )
