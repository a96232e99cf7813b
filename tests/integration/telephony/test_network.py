"""Trunks that never answer properly: silence, junk, refused connections.

A module of its own, with its own phone: pjsip cannot CANCEL an INVITE that got no response, so
each of these calls keeps one of the phone's four slots until Timer B (32 s) and would starve the
other tests' calls.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import CapacityError, HangupBy

pytestmark = [pytest.mark.integration, pytest.mark.sip]


@pytest.fixture
def udp_peer():
    """``udp_peer(reply)``: a UDP 'trunk' that never answers (None) or answers every datagram with junk."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def start(reply: bytes | None) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.1)
        socks.append(s)

        def serve():
            while not stop.is_set():
                try:
                    _, addr = s.recvfrom(65535)
                except (TimeoutError, OSError):
                    continue
                if reply is not None:
                    s.sendto(reply, addr)

        threading.Thread(target=serve, daemon=True).start()
        return s.getsockname()[1]

    yield start
    stop.set()
    for s in socks:
        s.close()


@pytest.mark.parametrize("reply", [
    None,
    os.urandom(300),
    b"SIP/2.0 200 OK\r\nVia: nonsense\r\nContent-Length: 99999\r\n\r\n\x00\xff garbage",
], ids=["silent", "random-bytes", "broken-response"])
def test_a_trunk_that_never_answers_properly_is_a_network_error(shared_phone, udp_peer, reply):
    port = udp_peer(reply)
    h = shared_phone.dial(f"sip:13812345678@127.0.0.1:{port}", ring_timeout=1.5)
    r = h.wait_ended(10)
    assert (r.disposition, r.hangup_by) == (D.NETWORK_ERROR, HangupBy.LOCAL)
    assert "no response from the trunk" in r.reason
    assert shared_phone.healthy()


def test_a_refused_tcp_connection_is_a_transport_error(shared_phone):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    h = shared_phone.dial(f"sip:8001@127.0.0.1:{port};transport=tcp")
    r = h.wait_ended(10)
    assert r.disposition is D.NETWORK_ERROR and r.reason.startswith("transport error")
    assert shared_phone.healthy()


def test_slots_of_unanswered_invites_come_back_after_timer_b_and_the_phone_still_calls(shared_phone, sipp):
    # Three INVITEs above got no response: their slots are held until Timer B, and counted.
    assert shared_phone.active_calls == 3
    peer = sipp("uas_answer.xml", calls=None, keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri())
    with pytest.raises(CapacityError):
        shared_phone.dial(peer.uri())
    assert h.wait_answered(5)
    h.hangup()
    assert h.wait_ended(5).disposition is D.ANSWERED


