"""Every console page as one user, timed (issue 12: "pages slower than the console targets").

Pages are found the way tests/integration/web/test_crawl.py finds them, so that the two walk the
same console: from ``/``, every same-site ``<a href>`` of every HTML page, redirects followed,
nothing under :data:`SKIP_PREFIXES`; URLs are grouped into page kinds (``/customers/<id>``,
``/reports/feedback?store``: the path with numbers as ``<id>`` and the query's keys but the page
number). Beyond the test's walk, the filter forms (``method="get"``) of unfiltered pages are
submitted as shown and once per select with its first other choice (one filter at a time: a
store, a category, a status), and searches given by the caller are typed where the user has the
search box. The test checks the pages' language on a small seeded group; this walk times them on the
benchmark data. Each kind is opened for up to :data:`PER_KIND` URLs while walking (the first,
untimed view, which also fills the report cache), then timed: :data:`SAMPLES_PER_KIND` GETs per
kind spread over its URLs, in rounds over all kinds so that a burst of load elsewhere on the
machine does not land on one page. Downloads (``?format=``) and the reports' Refresh links
(``?refresh=``: a deliberate recomputation, timed cold by bench_web's own phase) are opened once and
reported apart; they are not pages.

Runs in the benchmark process, one request at a time, over the client's keep-alive connection.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit

# As tests/integration/web/test_crawl.py: live event streams, logging out, and the API reference
# (for the DMS integrators' programmers) are not walked.
SKIP_PREFIXES = ("/static/", "/live/", "/logout", "/api/")
DOWNLOAD_ARGS = {"format"}
RECOMPUTE_ARGS = {"refresh"}
PER_KIND = 5
SAMPLES_PER_KIND = 20
TARGET_P95_MS = 150.0
# Transcript search (the call list with words to find) has its own target (docs/benchmarks.md).
SEARCH_TARGET_P95_MS = 300.0
MAX_PAGES = 3000  # a safety stop for the walk of one user


def kind_of(url: str) -> str:
    parts = urlsplit(url)
    keys = sorted({k for k, _v in parse_qsl(parts.query, keep_blank_values=True) if k != "page"})
    return re.sub(r"/\d+", "/<id>", parts.path) + ("?" + "&".join(keys) if keys else "")


def target_ms(kind: str) -> float:
    path, _, keys = kind.partition("?")
    return SEARCH_TARGET_P95_MS if path == "/calls/" and "q" in keys.split("&") else TARGET_P95_MS


def _args(url: str) -> set[str]:
    return {k for k, _v in parse_qsl(urlsplit(url).query, keep_blank_values=True)}


class _Links(HTMLParser):
    """``<a href>`` targets, and the filter forms (``method="get"``) with their fields."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.forms: list[tuple[str, list[tuple[str, str]], list[tuple[str, list[str]]]]] = []
        self._form: tuple[str, list, list] | None = None
        self._select: tuple[str, list[str], list[str]] | None = None  # name, options, selected

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form" and (a.get("method") or "get").lower() == "get":
            self._form = (a.get("action") or "", [], [])
        elif tag == "option" and self._select is not None:
            value = a.get("value") or ""
            self._select[1].append(value)
            if "selected" in a:
                self._select[2].append(value)
        elif self._form is None or not a.get("name"):
            return
        elif tag == "input" and a.get("type", "text") not in ("submit", "button", "file", "image", "reset"):
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self._form[1].append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select = (a["name"], [], [])

    def handle_endtag(self, tag):
        if tag == "select" and self._select is not None and self._form is not None:
            name, options, selected = self._select
            current = selected[0] if selected else (options[0] if options else "")
            self._form[1].append((name, current))
            self._form[2].append((name, [o for o in options if o and o != current]))
            self._select = None
        elif tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None


def _form_urls(path: str, forms) -> list[str]:
    """Each filter form submitted as shown, and once per select with its first other choice
    (a store, a category, a status): what a user gets by pressing its button."""
    out = []
    for action, fields, selects in forms:
        target = urlsplit(action).path or path
        shown = [(k, v) for k, v in fields if v]
        variants = [shown]
        for name, others in selects:
            if others:
                variants.append([(k, v) for k, v in shown if k != name] + [(name, others[0])])
        for variant in variants:
            out.append(target + ("?" + urlencode(variant) if variant else ""))
    return out


def links_of(html: str, path: str = "/", forms: bool = True) -> list[str]:
    """The same-site pages a page leads to, as path + query: its links and (``forms``) its
    filter forms."""
    parser = _Links()
    parser.feed(html)
    out = []
    for href in parser.links + (_form_urls(path, parser.forms) if forms else []):
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path.startswith("/") or href.startswith(SKIP_PREFIXES):
            continue
        out.append(parts.path + ("?" + parts.query if parts.query else ""))
    return out


@dataclass
class Walk:
    """What one user's walk found."""

    pages: dict[str, list[str]] = field(default_factory=dict)  # kind -> URLs of HTML pages (timed, judged)
    first_view_ms: dict[str, float] = field(default_factory=dict)  # kind -> slowest first (untimed) view
    other_ms: dict[str, float] = field(default_factory=dict)  # downloads and recomputations: kind -> ms, once
    errors: list[str] = field(default_factory=list)  # "status url"
    opened: int = 0


# A request: (method, path) -> (status, body, seconds, headers as a lower-cased dict).
Fetch = Callable[[str], tuple[int, str, float, dict[str, str]]]


def walk(fetch: Fetch, start: str = "/", searches: tuple[str, ...] = (), per_kind: int = PER_KIND) -> Walk:
    """Open the pages reachable from ``start``, at most ``per_kind`` URLs of each kind; then each
    of ``searches`` (words typed into a search box) whose page the walk reached, and what it leads to."""
    found = Walk()
    seen_kinds: dict[str, int] = {}
    visited: set[str] = set()
    queue = deque([start])
    pending = list(searches)
    while (queue or pending) and found.opened < MAX_PAGES:
        if not queue:
            search = pending.pop(0)
            if urlsplit(search).path in found.pages:
                queue.append(search)
            continue
        url = queue.popleft()
        if url in visited:
            continue
        visited.add(url)
        kind = kind_of(url)
        apart = bool((DOWNLOAD_ARGS | RECOMPUTE_ARGS) & _args(url))
        if seen_kinds.get(kind, 0) >= (1 if apart else per_kind):
            continue
        seen_kinds[kind] = seen_kinds.get(kind, 0) + 1
        status, body, elapsed, headers = fetch(url)
        found.opened += 1
        hops = 0
        while status in (301, 302, 303) and hops < 5:
            location = urlsplit(headers.get("location", ""))
            url = location.path + ("?" + location.query if location.query else "")
            visited.add(url)
            status, body, elapsed, headers = fetch(url)
            found.opened += 1
            hops += 1
        kind = kind_of(url)
        if status >= 400:
            found.errors.append(f"{status} {url}")
            continue
        if apart:
            found.other_ms[kind] = round(elapsed * 1000, 1)
            continue
        if not headers.get("content-type", "").startswith("text/html"):
            found.other_ms.setdefault(kind, round(elapsed * 1000, 1))
            continue
        urls = found.pages.setdefault(kind, [])
        if url not in urls and len(urls) < per_kind:
            urls.append(url)
        found.first_view_ms[kind] = max(found.first_view_ms.get(kind, 0.0), round(elapsed * 1000, 1))
        # Filter forms from unfiltered pages only: one filter at a time, not every combination.
        for link in links_of(body, urlsplit(url).path, forms=not urlsplit(url).query):
            if link not in visited:
                queue.append(link)
    return found


def time_pages(fetch: Fetch, pages: dict[str, list[str]], samples: int = SAMPLES_PER_KIND,
               errors: list[str] | None = None) -> dict[str, list[float]]:
    """``samples`` GETs of each kind, spread over its URLs, in rounds over all kinds."""
    plan = {kind: math.ceil(samples / len(urls)) for kind, urls in pages.items() if urls}
    times: dict[str, list[float]] = {kind: [] for kind in plan}
    for round_ in range(max(plan.values(), default=0)):
        for kind, urls in pages.items():
            if round_ >= plan.get(kind, 0):
                continue
            for url in urls:
                if len(times[kind]) >= samples:
                    break
                status, _body, elapsed, _headers = fetch(url)
                if status >= 400 and errors is not None:
                    errors.append(f"{status} {url}")
                times[kind].append(elapsed)
    return times


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(times: dict[str, list[float]]) -> dict[str, dict]:
    """Per kind: n, p50, p95, max and whether the p95 misses the kind's target."""
    out = {}
    for kind, values in sorted(times.items()):
        ms = [v * 1000 for v in values]
        if not ms:
            continue
        p95 = round(percentile(ms, 0.95), 1)
        out[kind] = {"n": len(ms), "p50_ms": round(percentile(ms, 0.5), 1), "p95_ms": p95,
                     "max_ms": round(max(ms), 1), "target_ms": target_ms(kind), "over_target": p95 > target_ms(kind)}
    return out
