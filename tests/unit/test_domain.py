import datetime as dt

import pytest

from callcenter.domain.dates import DateError, add_months, parse_date
from callcenter.domain.phone import PhoneError, mask_phone, mask_phones_in_text, normalize_phone
from callcenter.domain.vin import VinError, check_digit, normalize_vin


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("0086 13812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        (13812345678, "13812345678"),
        ("13812345678.0", "13812345678"),
        ("010-62345678", "010-62345678"),
        ("(0731)84567890", "0731-84567890"),
        ("0731 8456789", "0731-8456789"),
        ("+86 10 62345678", "010-62345678"),
        ("021 5234 5678", "021-52345678"),
    ],
)
def test_phone_normalisation(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw,reason",
    [
        ("", "empty"),
        ("12812345678", "mobile"),
        ("1381234567", "mobile"),
        ("+1 415 555 0100", "+86"),
        ("138-1234-567x", "digits"),
        ("62345678", "area code"),
        ("010-1234", "landline"),
    ],
)
def test_bad_phones_say_why(raw, reason):
    with pytest.raises(PhoneError) as err:
        normalize_phone(raw)
    assert reason in str(err.value)


def test_masking():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0731-84567890") == "073*****7890"
    assert mask_phones_in_text("dial sip:13812345678@127.0.0.1 ok") == "dial sip:138****5678@127.0.0.1 ok"
    assert mask_phones_in_text("order 2026031312345678") == "order 2026031312345678"


def test_vin():
    assert normalize_vin(" lsvav4187e2123456 ") == "LSVAV4187E2123456"
    for bad, why in [("LSVAV4187E212345", "17"), ("LSVAV4187E212345O", "O"), ("LSVAV4187E21234-6", "digits")]:
        with pytest.raises(VinError) as err:
            normalize_vin(bad)
        assert why in str(err.value)
    assert check_digit("1M8GDM9AXKP042788") == "X"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("2026-03-05", dt.date(2026, 3, 5)),
        ("2026/3/5", dt.date(2026, 3, 5)),
        ("2026年3月5日", dt.date(2026, 3, 5)),
        ("2026.03.05", dt.date(2026, 3, 5)),
        ("20260305", dt.date(2026, 3, 5)),
        ("2026-03-05 14:30:00", dt.date(2026, 3, 5)),
        ("46086", dt.date(2026, 3, 5)),
        (46086, dt.date(2026, 3, 5)),
        (46086.5, dt.date(2026, 3, 5)),
        (dt.datetime(2026, 3, 5, 9), dt.date(2026, 3, 5)),
    ],
)
def test_dates(raw, expected):
    assert parse_date(raw) == expected


@pytest.mark.parametrize("raw,why", [("2026-02-30", "impossible date 2026-02-30"), ("next week", "not a date"),
                                     ("12", "not an Excel date"), ("", "empty")])
def test_bad_dates(raw, why):
    with pytest.raises(DateError) as err:
        parse_date(raw)
    assert why in str(err.value)


def test_add_months_clamps_to_month_end():
    assert add_months(dt.date(2026, 8, 31), -6) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2026, 1, 15), -12) == dt.date(2025, 1, 15)
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)
