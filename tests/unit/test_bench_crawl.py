"""The benchmark's page walk (bench/crawl.py): which pages it finds, how it groups and times them."""

from bench import crawl

SITE = {
    "/": (302, "", "/home"),
    "/home": (200, ('<a href="/customers/">c</a><a href="/reports/x">r</a><a href="/logout">out</a>'
                    '<a href="https://example.com/">ext</a><a href="/static/app.css">css</a>'), None),
    "/customers/": (200, ('<a href="/customers/1">1</a><a href="/customers/2">2</a><a href="/customers/3">3</a>'
                          '<a href="/customers/?page=2">next</a>'
                          '<form method="get"><input name="q" value=""><select name="store">'
                          '<option value="">all</option><option value="7">S7</option></select>'
                          '<button>go</button></form><form method="post"><input name="x" value="1"></form>'), None),
    "/customers/?page=2": (200, "", None),
    "/customers/?store=7": (200, ('<form method="get"><select name="store"><option value="7" selected>S7</option>'
                                  '<option value="8">S8</option></select></form>'), None),
    "/customers/1": (200, "", None),
    "/customers/2": (200, "", None),
    "/customers/3": (200, "", None),
    "/reports/x": (200, ('<a href="/reports/x?refresh=1">again</a><a href="/reports/x?format=csv">csv</a>'
                         '<a href="/broken">b</a>'), None),
    "/reports/x?refresh=1": (200, "", None),
    "/reports/x?format=csv": (200, "a,b", None),
    "/calls/?q=%E7%AD%89": (200, "", None),
    "/customers/?q=%E7%8E%8B": (200, "", None),
}


def _fetch(opened: list[str]):
    def fetch(url):
        opened.append(url)
        status, body, location = SITE.get(url, (404, "", None))
        headers = {"content-type": "text/csv" if "format=" in url else "text/html; charset=utf-8"}
        if location:
            headers["location"] = location
        return status, body, 0.001, headers

    return fetch


def test_the_walk_groups_pages_by_kind_and_keeps_downloads_and_refreshes_apart():
    opened: list[str] = []
    found = crawl.walk(_fetch(opened), "/", searches=("/calls/?q=%E7%AD%89", "/customers/?q=%E7%8E%8B"), per_kind=2)
    assert found.pages["/customers/<id>"] == ["/customers/1", "/customers/2"]  # two of a kind
    assert "/customers/3" not in opened
    assert found.pages["/customers/"] == ["/customers/", "/customers/?page=2"]  # the page number is no new kind
    # The filter form as shown (nothing chosen: the page itself) and with its first store; a
    # filtered page's own form is not submitted again (one filter at a time).
    assert found.pages["/customers/?store"] == ["/customers/?store=7"] and "/customers/?store=8" not in opened
    assert set(found.other_ms) == {"/reports/x?refresh", "/reports/x?format"}
    assert found.errors == ["404 /broken"]
    assert not any(u.startswith(("/logout", "/static/", "https:")) for u in opened)
    # A search is typed only where the walk reached its page: no customer search without /customers/?q
    # answers, no call search page without the call list.
    assert "/customers/?q=%E7%8E%8B" in opened and "/calls/?q=%E7%AD%89" not in opened


def test_timing_spreads_the_samples_over_a_kinds_urls_and_judges_the_p95():
    opened: list[str] = []
    times = crawl.time_pages(_fetch(opened), {"/customers/<id>": ["/customers/1", "/customers/2", "/customers/3"],
                                              "/home": ["/home"]}, samples=7)
    assert len(times["/customers/<id>"]) == 7 and len(times["/home"]) == 7
    assert opened.count("/customers/1") == 3 and opened.count("/customers/3") == 2
    summary = crawl.summary({"/a": [0.01] * 19 + [0.9], "/b": [0.01] * 18 + [0.2, 0.9],
                             "/calls/?q": [0.2] * 20})
    assert not summary["/a"]["over_target"]  # one slow view in 20 is the 100th percentile, not the 95th
    assert summary["/b"]["over_target"] and summary["/b"]["p95_ms"] == 200.0
    assert not summary["/calls/?q"]["over_target"] and summary["/calls/?q"]["target_ms"] == 300.0  # search
