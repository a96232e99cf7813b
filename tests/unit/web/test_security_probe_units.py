"""The security probe's (issue 13) attacks on the pieces below the console: the log filter, phone
masking in text, the password policy, the trusted-proxy setting, the API's depth cut. Attack
reproductions are marked ``attack`` (counted in docs/security.md)."""

import io
import json
import logging

import pytest

from callcenter.accounts import AccountError, check_password_policy, common_passwords, password_problem
from callcenter.config import ConfigError, Settings
from callcenter.domain.phone import mask_phones_in_text
from callcenter.logs import PhoneMaskingFilter, escape_control
from web.api import MAX_DEPTH, TOO_DEEP, _cut_deep
from web.security import TrustedProxies


def _rendered(message: str, *args) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PhoneMaskingFilter())
    logger = logging.getLogger("test.security_probe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.attack
def test_control_characters_cannot_start_a_new_log_line():
    out = _rendered("GET %s 404", "/x\n2026-12-06 INFO web: user admin logged in\r\x1b[2J\u2028")
    assert out.count("\n") == 1 and out.endswith("404\n")
    assert "\\x0a2026-12-06" in out and "\\x0d" in out and "\\x1b" in out and "\\u2028" in out
    assert escape_control("tab\there") == "tab\\x09here"


@pytest.mark.attack
@pytest.mark.parametrize("written, masked", [
    ("13812345678", "138****5678"),
    ("138-1234-5678", "138****5678"),
    ("138 1234 5678", "138****5678"),
    ("+86 138 1234 5678", "138****5678"),
    ("+8613812345678", "138****5678"),
    ("86-13812345678", "138****5678"),
    ("0086 13812345678", "138****5678"),
    ("0731-84567890", "0731-****7890"),
    ("(0731) 8456 7890", "0731-****7890"),
    ("010 8888 6666", "010-****6666"),
])
def test_phone_numbers_are_masked_in_every_format(written, masked):
    assert _rendered("customer %s called", written) == f"customer {masked} called\n"


def test_masking_leaves_other_numbers_alone():
    for text in ("2026-12-06 03:00:00,123", "order 2026031312345678", "VIN LVGBE40K18G000001",
                 "took 1381234567890 ns", "call 42 lasted 13.5 s"):
        assert mask_phones_in_text(text) == text


@pytest.mark.attack
@pytest.mark.parametrize("weak", ["woaini1314", "qq123456", "a123456789", "5201314520", "1qaz2wsx",
                                  "Password1", "P@ssw0rd", "zhang123456", "88888888", "password1!"])
def test_common_passwords_are_refused(weak):
    assert password_problem(weak, "wang") == "common"


def test_the_policy_names_each_rule():
    assert len(common_passwords()) > 5000 and all(len(p) >= 8 for p in common_passwords())
    assert password_problem("a123456", "wang") == "short"  # the examples below 8 characters
    assert password_problem("123456", "wang") == "short"
    assert password_problem("x" * 129, "wang") == "long"
    assert password_problem("Wang-Lantern-47", "wang") == "username"
    assert password_problem("Lantern-Mosaic-47", "wang") is None
    with pytest.raises(AccountError, match="too common"):
        check_password_policy("woaini1314", "li")


@pytest.mark.attack
def test_trusted_proxy_addresses_are_parsed_strictly():
    settings = Settings.from_env({"CALLCENTER_TRUSTED_PROXY_ADDRESSES": "10.0.0.2, 192.168.10.0/24,::1"})
    assert settings.trusted_proxy_addresses == ("10.0.0.2/32", "192.168.10.0/24", "::1/128")
    assert Settings().trusted_proxy_addresses == ("127.0.0.1/32", "::1/128")
    for junk in ("*", "10.0.0.300", "10.0.0.5/24", "proxy.local", "10.0.0.1,,10.0.0.2"):
        with pytest.raises(ConfigError, match="CALLCENTER_TRUSTED_PROXY_ADDRESSES"):
            Settings.from_env({"CALLCENTER_TRUSTED_PROXY_ADDRESSES": junk})
    proxies = TrustedProxies(lambda environ, start: [], 1, ("10.0.0.2/32", "192.168.10.0/24"))
    assert proxies.trusted("10.0.0.2") and proxies.trusted("192.168.10.77")
    assert not proxies.trusted("10.0.0.3") and not proxies.trusted("") and not proxies.trusted("unix:")


def test_the_depth_cut_keeps_shallow_values_and_strings():
    text = json.dumps({"a": [1, {"b": "[[[{{{"}], "c": [[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]})
    cut = json.loads(_cut_deep(text, MAX_DEPTH))
    assert cut["a"] == [1, {"b": "[[[{{{"}]
    inner = cut["c"]
    for _ in range(MAX_DEPTH - 1):
        inner = inner[0]
    assert inner == TOO_DEEP
    deep = "[" * 50_000 + "]" * 50_000
    assert json.loads(_cut_deep(deep, 3)) == [[[TOO_DEEP]]]


@pytest.mark.attack
def test_gunicorns_own_log_lines_are_filtered_too(capsys):
    from gunicorn.config import Config

    from callcenter.cli.web import gunicorn_logger_class

    config = Config()
    config.set("errorlog", "-")
    log = gunicorn_logger_class()(config)
    log.error("Error handling request %s", "/x\n2026-12-06 INFO forged 138-1234-5678")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\\x0a2026-12-06" in err and "138****5678" in err
