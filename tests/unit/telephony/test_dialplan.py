import pytest

from callcenter.telephony.api import InvalidTarget
from callcenter.telephony.dialplan import check_sip_uri, mask_target, normalize_number, request_uri


@pytest.mark.parametrize("raw,expected", [
    ("138-1234-5678", "13812345678"),
    ("(0731) 8456 7890", "073184567890"),
    ("１３８１２３４５６７８", "13812345678"),
    ("+86 138 1234 5678", "+8613812345678"),
    ("8001", "8001"),
    ("*72#", "*72#"),
])
def test_numbers_lose_separators_and_keep_dial_characters(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize("raw,fragment", [
    ("", "empty"),
    ("138abc", "cannot dial: 'abc'"),
    ("138\r\nVia: x", "cannot dial"),
    ("13+8", "'+' may only start"),
    ("1" * 33, "longer than 32"),
])
def test_bad_numbers_say_what_is_wrong(raw, fragment):
    with pytest.raises(InvalidTarget, match=fragment.replace("+", r"\+")):
        normalize_number(raw)


def test_numbers_go_to_the_trunk_with_prefix_and_transport():
    assert request_uri("138 1234 5678", "10.0.0.5:5070") == "sip:13812345678@10.0.0.5:5070"
    assert request_uri("13812345678", "gw.example", dial_prefix="9") == "sip:913812345678@gw.example"
    assert request_uri("13812345678", "gw", transport="tcp") == "sip:13812345678@gw;transport=tcp"
    assert request_uri("*72#", "gw") == "sip:*72%23@gw"


def test_sip_uris_are_used_as_given_and_a_bare_user_at_host_gets_the_scheme():
    assert request_uri("sip:8001@127.0.0.1:5080", "trunk") == "sip:8001@127.0.0.1:5080"
    assert request_uri("SIP:bob@pbx.local;transport=tcp", None) == "sip:bob@pbx.local;transport=tcp"
    assert request_uri("8001@127.0.0.1", None) == "sip:8001@127.0.0.1"


def test_a_number_without_a_trunk_is_refused():
    with pytest.raises(InvalidTarget, match="CALLCENTER_SIP_TRUNK"):
        request_uri("13812345678", None)


@pytest.mark.parametrize("uri,fragment", [
    ("sips:bob@host", "TLS"),
    ("sip:bob@host:70000", "port out of range"),
    ("sip:bob@ho st", "malformed"),
    ("sip:bob@host>\r\nX-Evil: 1", "malformed"),
    ('sip:"bob"@host', "malformed"),
    ("sip:bob@-host", "malformed"),
    ("tel:+8613812345678", "not a SIP URI"),
])
def test_malformed_or_injected_uris_are_refused(uri, fragment):
    with pytest.raises(InvalidTarget, match=fragment):
        check_sip_uri(uri)


def test_masking_hides_personal_numbers_but_keeps_extensions():
    assert mask_target("sip:13812345678@10.0.0.5:5070") == "sip:138****5678@10.0.0.5:5070"
    assert mask_target("sip:073184567890@gw;transport=tcp") == "sip:073*****7890@gw;transport=tcp"
    assert mask_target("sip:8001@pbx") == "sip:8001@pbx"
    assert mask_target("13812345678") == "138****5678"
    # The error for a bad URI does not leak the number either.
    with pytest.raises(InvalidTarget) as err:
        check_sip_uri("sip:13812345678@bad host")
    assert "13812345678" not in str(err.value)
