"""Incoming calls without SIP: classification, URI user parts, and the fake phone's inbound side.

The fake phone drives the same ``InboundSession`` as the pjsua2 phone (real SIP is in
tests/integration/telephony/test_inbound.py); the manual clock makes every step frame-exact.
"""

import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import CallEventType, CallStateError, CapacityError, HangupBy, IncomingCall, Phone
from callcenter.telephony.dialplan import uri_user
from callcenter.telephony.fake import FakePhone
from callcenter.telephony.progress import InboundProgress, LocalCause, classify_inbound

RATE = 8000
FB = 320


@pytest.mark.parametrize("uri, user", [
    ('"王" <sip:13900000001@gw;user=phone>;tag=1', "13900000001"),
    ("sip:%2312@pbx", "#12"),
    ("tel:+8613900000001", "+8613900000001"),
    ("sip:gw.example", ""),
    ("<sip:dialer:secret@127.0.0.1:5060>", "dialer"),
    ("mailto:a@b", ""),
])
def test_uri_user_takes_the_number_out_of_any_form(uri, user):
    assert uri_user(uri) == user


@pytest.mark.parametrize("progress, expected", [
    (InboundProgress(200, "OK", True, True), (D.ANSWERED, HangupBy.REMOTE, "remote hung up")),
    (InboundProgress(200, "OK", True, True, LocalCause.HANGUP), (D.ANSWERED, HangupBy.LOCAL, "local hang-up")),
    (InboundProgress(486, "Busy Here", False, False, LocalCause.REJECTED, 486),
     (D.BUSY, HangupBy.LOCAL, "486 Busy Here (rejected)")),
    (InboundProgress(603, "Decline", False, False, LocalCause.REJECTED, 603),
     (D.REJECTED, HangupBy.LOCAL, "603 Decline (rejected)")),
    (InboundProgress(480, "", False, False, LocalCause.REJECTED, 480),
     (D.UNAVAILABLE, HangupBy.LOCAL, "480 Temporarily Unavailable (rejected)")),
    (InboundProgress(487, "Request Terminated", False, False), (D.NO_ANSWER, HangupBy.REMOTE, "caller cancelled")),
    (InboundProgress(480, "", False, False, LocalCause.RING_TIMEOUT, ring_timeout=120),
     (D.NO_ANSWER, HangupBy.LOCAL, "not answered within 120 s (480 Temporarily Unavailable)")),
    (InboundProgress(603, "", False, False, LocalCause.HANGUP),
     (D.REJECTED, HangupBy.LOCAL, "hung up before answering (603 Decline)")),
    (InboundProgress(408, "Request Timeout", True, False),
     (D.FAILED, HangupBy.LOCAL, "answered without usable media (408 Request Timeout)")),
])
def test_inbound_dispositions_are_from_our_side(progress, expected):
    assert classify_inbound(progress) == expected


@pytest.fixture
def phone(tmp_path):
    p = FakePhone(sample_rate=RATE, tick=None, recordings_dir=tmp_path)
    yield p
    p.close()


def test_an_incoming_call_is_rung_answered_and_carries_the_callers_audio(phone):
    caller_audio = bytes(range(256)) * 5  # 4 frames of a known pattern
    fake = phone.ring_in("13900000002", caller="sip:robot@10.0.0.1", audio=caller_audio)
    call = phone.incoming(timeout=0)
    assert isinstance(phone, Phone) and isinstance(call, IncomingCall)
    assert (call.caller, call.dialled, call.dialled_masked) == ("robot", "13900000002", "139****0002")
    assert not call.answered and call.direction == "inbound"
    call.ring()
    assert call.next_event(0).type is CallEventType.RINGING
    phone.advance(10)  # ringing: no media yet
    assert call.audio.get_nowait() is None
    call.answer()
    assert call.wait_answered(0) and call.next_event(0).type is CallEventType.ANSWERED
    phone.advance(4)
    heard = b"".join(call.audio.get(0).audio for _ in range(4))
    assert heard == caller_audio[: 4 * FB]
    call.play_pcm(b"\x01\x02" * 160, RATE)
    phone.advance(1)
    assert bytes(fake.sent[-FB:]) == b"\x01\x02" * 160  # what the caller hears from us
    with pytest.raises(CallStateError, match="already answered"):
        call.answer()
    with pytest.raises(CallStateError, match="hang up instead"):
        call.reject(486)
    call.hangup()
    result = call.wait_ended(0)
    assert (result.disposition, result.hangup_by, result.direction) == (D.ANSWERED, HangupBy.LOCAL, "inbound")
    assert result.target == "sip:robot@10.0.0.1"


def test_rejecting_gives_the_codes_disposition_and_frees_the_slot(phone):
    phone.ring_in("13900000006")
    call = phone.incoming(0)
    with pytest.raises(ValueError, match="400-699"):
        call.reject(200)
    with pytest.raises(ValueError, match="400-699"):
        call.reject(487)
    call.reject(486)
    result = call.wait_ended(0)
    assert (result.disposition, result.sip_code, result.reason) == (D.BUSY, 486, "486 Busy Here (rejected)")
    assert phone.active_calls == 0
    with pytest.raises(CallStateError, match="has ended"):
        call.reject(486)


def test_a_caller_who_gives_up_ends_a_ringing_call_as_no_answer(phone):
    phone.ring_in("13900000007", cancel_after=1.0)
    call = phone.incoming(0)
    call.ring()
    phone.advance(49)
    assert not call.ended
    phone.advance(1)
    result = call.wait_ended(0)
    assert (result.disposition, result.hangup_by, result.reason) == (D.NO_ANSWER, HangupBy.REMOTE, "caller cancelled")
    with pytest.raises(CallStateError, match="the caller has gone"):
        call.answer()


def test_a_call_left_ringing_gets_480_at_the_ring_limit(phone):
    phone.inbound_ring_timeout = 0.2
    phone.ring_in("13900000007")
    call = phone.incoming(0)
    phone.advance(10)
    result = call.wait_ended(0)
    assert (result.disposition, result.hangup_by) == (D.NO_ANSWER, HangupBy.LOCAL)
    assert "480" in result.reason


def test_inbound_calls_take_slots_like_dialled_ones(phone):
    for i in range(4):
        phone.ring_in(f"1390000000{i}")
    with pytest.raises(CapacityError):
        phone.ring_in("13900000009")
    assert phone.active_calls == 4


def test_caller_audio_can_be_fed_turn_by_turn(phone):
    fake = phone.ring_in("13900000001")
    call = phone.incoming(0)
    call.answer()
    phone.advance(3)
    assert [call.audio.get(0).audio for _ in range(3)] == [bytes(FB)] * 3  # nothing fed yet: silence
    fake.feed(b"\x05\x00" * 160 * 2)
    assert fake.far_end_pending == pytest.approx(0.04)
    phone.advance(2)
    assert [call.audio.get(0).audio for _ in range(2)] == [b"\x05\x00" * 160] * 2
    assert fake.far_end_pending == 0


def test_closing_wakes_a_thread_waiting_for_calls(tmp_path):
    p = FakePhone(sample_rate=RATE, tick=None, recordings_dir=tmp_path)
    p.close()
    assert p.incoming(timeout=5) is None
