"""Report arithmetic that needs no database: months, time zones, the before/after test."""

import datetime as dt

from web.reporting import compare_rates, month_key, months_between, parse_month, utc_bounds


def test_months_are_calendar_months_in_local_time():
    assert [month_key(m) for m in months_between(dt.date(2026, 11, 20), dt.date(2027, 2, 1))] == [
        "2026-11", "2026-12", "2027-01", "2027-02"]
    start, end = utc_bounds(dt.date(2026, 11, 1), dt.date(2026, 12, 1), "Asia/Shanghai")
    assert start == dt.datetime(2026, 10, 31, 16, 0) and end == dt.datetime(2026, 11, 30, 16, 0)


def test_junk_months_fall_back_to_the_default():
    assert parse_month("2026-13", dt.date(2026, 5, 20)) == dt.date(2026, 5, 1)
    assert parse_month("<script>", dt.date(2026, 5, 20)) == dt.date(2026, 5, 1)
    assert parse_month("2026-02", dt.date(2026, 5, 20)) == dt.date(2026, 2, 1)


def _rate(calls, hits):
    return {"calls": calls, "hits": hits, "rate": hits / calls if calls else None}


def test_a_clear_drop_is_a_significant_improvement():
    result = compare_rates(_rate(1000, 80), _rate(1000, 40))
    assert result["improved"] and result["significant"] and result["p_value"] < 0.001
    assert abs(result["change"] - (-0.04)) < 1e-9 and abs(result["relative"] - (-0.5)) < 1e-9


def test_a_drop_on_a_handful_of_calls_is_not_yet_significant():
    result = compare_rates(_rate(20, 2), _rate(20, 1))
    assert result["improved"] and not result["significant"]


def test_a_rise_is_not_an_improvement_and_no_calls_is_no_verdict():
    assert compare_rates(_rate(500, 10), _rate(500, 30))["improved"] is False
    assert compare_rates(_rate(0, 0), _rate(100, 3))["improved"] is None
