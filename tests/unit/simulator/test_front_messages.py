"""The SIP front's message handling and its view of the phones' load (no sockets)."""

import pytest

from campaigns.simulator.front import REPORT_STALE, Backend, SipParseError, parse, split_first, via_params

INVITE = (
    "INVITE sip:13900000001@127.0.0.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bKabc\r\n"
    "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKdef, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK3\r\n"
    "From: \"长沙星沙4S店\" <sip:callcenter@127.0.0.1>;tag=1\r\n"
    "To: <sip:13900000001@127.0.0.1:5070>\r\n"
    "i: abc@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Subject: a folded\r\n header\r\n"
    "Content-Length: 4\r\n\r\n"
    "v=0\n"
).encode()


def test_parse_keeps_body_compact_names_and_utf8():
    msg = parse(INVITE)
    assert msg.is_request and msg.method == "INVITE"
    assert msg.get("call-id") == "abc@127.0.0.1" and msg.get("Via").endswith("branch=z9hG4bKabc")
    assert msg.get("subject") == "a folded header"
    assert msg.body == b"v=0\n"
    assert msg.get("from").startswith('"长沙星沙4S店"')
    again = parse(msg.to_bytes())
    assert again.headers == msg.headers and again.body == msg.body


def test_via_helpers():
    top, rest = split_first('SIP/2.0/UDP a;branch=1;x="p,q", SIP/2.0/UDP b')
    assert top == 'SIP/2.0/UDP a;branch=1;x="p,q"' and rest == "SIP/2.0/UDP b"
    assert via_params("SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bKabc") == (
        "SIP/2.0/UDP", "127.0.0.1", 5061, {"rport": None, "branch": "z9hG4bKabc"})
    assert via_params("SIP/2.0/TCP [::1]:5062;received=::1")[1:3] == ("::1", 5062)


@pytest.mark.parametrize("data, message", [
    (b"hello world", "no end of headers"),
    (b"GET / HTTP/1.1\r\n\r\n", "not a SIP start line"),
    (b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n", "malformed header"),
    (b"\r\n\r\n\r\n\r\n", "empty message"),
])
def test_garbage_is_a_clear_parse_error(data, message):
    with pytest.raises(SipParseError, match=message):
        parse(data)


def test_a_phone_is_only_as_free_as_its_reports_and_the_calls_in_flight():
    now = 100.0
    b = Backend(0, port=5071, pid=1, capacity=4, active=1, taken=10, sent=10, seen=now)
    assert b.free(now) == 3
    b.sent, b.last_sent = 12, now  # two INVITEs on their way that the phone has not taken yet
    assert b.free(now) == 1
    b.taken = 12  # ... the report says it took them (and counts them as active)
    b.active = 3
    assert b.free(now) == 1
    assert b.free(now + REPORT_STALE + 0.1) == 0  # no report for 1.5 s: down (restarting)
    b.sent, b.last_sent = 13, now
    assert b.in_flight() == 1
    b.free(now + 11)  # an INVITE it never got stops counting after 10 s
    assert b.in_flight() == 0
