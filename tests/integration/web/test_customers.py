"""The customer list's search and the customer's file."""

import pytest

pytestmark = pytest.mark.integration


def _names(page: str) -> list[str]:
    import re

    return re.findall(r'<td><a href="/customers/\d+">([^<]+)</a></td>', page)


@pytest.mark.parametrize("q", ["C-S1", "13812345678", "138 1234 5678", "5678", "湘A12", "LVGBE40K18G000001", "王S1"])
def test_each_kind_of_search_finds_the_customer(console, client_for, q):
    page = client_for("sup_all").get("/customers/", query_string={"q": q}).get_data(as_text=True)
    assert _names(page) == ["王S1"], q


def test_search_stays_in_the_users_store_and_masks_for_agents(console, client_for):
    page = client_for("agent_s2").get("/customers/?q=王").get_data(as_text=True)
    assert _names(page) == ["王S2"] and "139****4321" in page and "13987654321" not in page
    assert "共 1 条" in page


def test_the_file_shows_vehicles_visits_calls_and_tickets(console, client_for):
    app, world = console
    page = client_for("sup_s1").get(f"/customers/{world.customers['S1']}").get_data(as_text=True)
    for text in ("凯美瑞", "湘A12345", "刘洋", "洗车/清洁", "S1 洗车投诉", "客户要求回电", "13812345678"):
        assert text in page, text
