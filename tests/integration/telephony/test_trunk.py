"""Trunk configurations against SIPp: registration and INVITE digest auth, outbound proxy, caller
id and codec preference, TCP, and continuous RTP (noVad). Each test opens its own phone."""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time

import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import TrunkError, open_phone

pytestmark = [pytest.mark.integration, pytest.mark.sip]

CREDENTIALS = {"@USER@": "4sdealer", "@PASSWORD@": "s3cret-Pass"}


def invite_of(messages: str) -> str:
    """The first INVITE SIPp received, as text."""
    m = re.search(r"(INVITE sip:.*?)\r?\n\r?\n(.*?)(?=\r?\n-{5,}|\Z)", messages, re.DOTALL)
    assert m, messages[:2000]
    return m.group(0)


def test_registration_and_invite_with_digest_authentication(sip_config, sipp):
    registrar = sipp("uas_register.xml", sub=CREDENTIALS, echo=False)
    trunk = sipp("uas_auth_invite.xml", sub=CREDENTIALS)
    cfg = sip_config.replace(registrar=registrar.trunk, trunk=trunk.trunk, username="4sdealer",
                             password="s3cret-Pass")
    phone = open_phone(cfg)
    try:
        assert phone.registered
        h = phone.dial("13812345678")
        assert h.wait_answered(5), h.wait_ended(5)
        h.hangup()
        assert h.wait_ended(5).disposition is D.ANSWERED
        assert trunk.wait() == 0, trunk.errors()  # 407, then a valid digest, then BYE
    finally:
        phone.close()  # un-REGISTER
    assert registrar.wait() == 0, registrar.errors()
    assert "Authorization: Digest" in registrar.messages() and 'username="4sdealer"' in registrar.messages()
    assert "s3cret" not in registrar.messages()  # the password itself never travels


def test_a_refused_registration_stops_the_phone_with_a_clear_error(sip_config, sipp):
    registrar = sipp("uas_register.xml", sub={"@USER@": "4sdealer", "@PASSWORD@": "another-password"},
                     echo=False)
    cfg = sip_config.replace(registrar=registrar.trunk, username="4sdealer", password="s3cret-Pass",
                             register_timeout=5)
    with pytest.raises(TrunkError, match=r"registration with 127\.0\.0\.1:\d+ failed: 403 Forbidden"):
        open_phone(cfg)
    # and the next phone in this process starts: the failed one released pjsua2's Endpoint
    phone = open_phone(sip_config)
    phone.close()


def test_outbound_proxy_caller_id_display_name_and_codec_preference(sip_config, sipp):
    proxy = sipp("uas_answer.xml", keys={"ring_ms": 0})
    cfg = sip_config.replace(trunk="127.0.0.1:9", proxy=proxy.trunk, caller_id="073184567890",
                             display_name="长沙星沙4S店", codecs=("G722", "PCMA"))
    phone = open_phone(cfg)
    try:
        h = phone.dial("13812345678")
        assert h.wait_answered(5)
        h.hangup()
        r = h.wait_ended(5)
    finally:
        phone.close()
    assert r.codec == "PCMA/8000"  # the answer had no G722; PCMA was our next choice
    invite = invite_of(proxy.messages())
    assert invite.startswith("INVITE sip:13812345678@127.0.0.1:9 SIP/2.0")  # request URI: the trunk
    assert f"Route: <sip:{proxy.trunk};lr>" in invite  # sent through the proxy
    assert re.search(r'From: "长沙星沙4S店" <sip:073184567890@127\.0\.0\.1>;tag=', invite)
    m_line = re.search(r"m=audio \d+ RTP/AVP ([0-9 ]+)", invite).group(1).split()
    assert m_line[:2] == ["9", "8"] and "0" not in m_line  # G722, PCMA; PCMU disabled


def test_calls_over_tcp(sip_config, sipp):
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0}, transport="tcp")
    phone = open_phone(sip_config.replace(trunk=peer.trunk, transport="tcp"))
    try:
        h = phone.dial("8001")
        assert h.wait_answered(5)
        h.hangup()
        assert h.wait_ended(5).disposition is D.ANSWERED
    finally:
        phone.close()
    assert "Via: SIP/2.0/TCP" in invite_of(peer.messages())
    assert peer.wait() == 0


def test_rtp_keeps_flowing_through_silence(sip_config, sipp):
    """noVad: carriers hang up on calls whose RTP stops; we send 50 packets a second even in silence."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    packets: list[float] = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            try:
                sink.recv(2048)
                packets.append(time.monotonic())
            except OSError:
                pass

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    peer = sipp("uas_sink.xml", sub={"@SINK@": sink.getsockname()[1]}, echo=False)
    phone = open_phone(sip_config)
    try:
        h = phone.dial(peer.uri())
        assert h.wait_answered(5)
        time.sleep(2.0)  # nothing is played: our side is silence
        h.hangup()
        h.wait_ended(5)
    finally:
        phone.close()
        stop.set()
        counter.join(2)
        sink.close()
    assert len(packets) >= 90, len(packets)  # 2 s at 50 packets/s, less set-up
    gaps = [b - a for a, b in itertools.pairwise(packets)]
    assert max(gaps) < 0.2  # no silence suppression anywhere in the call


def test_asking_for_more_calls_than_the_pjsua2_build_holds_is_a_clear_error(sip_config):
    with pytest.raises(TrunkError, match=r"at most 4 calls per process \(PJSUA_MAX_CALLS\).*max_calls=8"):
        open_phone(sip_config.replace(max_calls=8))
    open_phone(sip_config).close()  # nothing was left behind
