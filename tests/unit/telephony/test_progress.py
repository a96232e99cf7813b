import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony.api import HangupBy
from callcenter.telephony.progress import EndCause, LocalCause, Progress, classify, disposition_for_code


def progress(**kw) -> Progress:
    base = {"sip_code": 0, "reason": "", "answered": False, "media_established": False, "got_response": True,
                "end_cause": EndCause.RESPONSE, "local_cause": None, "ring_timeout": 30.0, "max_seconds": 600.0}
    base.update(kw)
    return Progress(**base)


@pytest.mark.parametrize("code,expected", [
    (486, D.BUSY), (600, D.BUSY), (603, D.REJECTED), (404, D.NOT_FOUND), (604, D.NOT_FOUND),
    (480, D.UNAVAILABLE), (503, D.UNAVAILABLE), (488, D.FAILED), (500, D.FAILED), (403, D.FAILED),
    (408, D.FAILED), (200, D.ANSWERED),
])
def test_final_codes_map_as_issue_3_lists(code, expected):
    assert disposition_for_code(code) is expected


def test_a_rejection_keeps_code_and_reason_and_blames_the_far_end():
    d, by, reason = classify(progress(sip_code=486, reason="Busy Here"))
    assert (d, by, reason) == (D.BUSY, HangupBy.REMOTE, "486 Busy Here")


def test_answered_call_ended_by_either_side():
    up = {"sip_code": 200, "reason": "OK", "answered": True, "media_established": True}
    assert classify(progress(**up))[:2] == (D.ANSWERED, HangupBy.REMOTE)
    assert classify(progress(**up, local_cause=LocalCause.HANGUP))[:2] == (D.ANSWERED, HangupBy.LOCAL)
    d, by, reason = classify(progress(**up, local_cause=LocalCause.MAX_DURATION, max_seconds=90))
    assert (d, by) == (D.ANSWERED, HangupBy.LOCAL) and "maximum call duration" in reason and "90 s" in reason
    assert classify(progress(**up, local_cause=LocalCause.TRANSFERRED))[2] == "transferred"


def test_ring_timeout_is_no_answer_when_the_far_end_rang_and_network_error_when_silent():
    d, by, reason = classify(progress(sip_code=487, local_cause=LocalCause.RING_TIMEOUT, ring_timeout=25))
    assert (d, by) == (D.NO_ANSWER, HangupBy.LOCAL) and "25 s" in reason
    d, _, reason = classify(progress(sip_code=487, local_cause=LocalCause.RING_TIMEOUT, got_response=False))
    assert d is D.NETWORK_ERROR and "no response" in reason


def test_no_response_and_transport_errors_are_network_errors():
    d, by, _ = classify(progress(sip_code=408, reason="Request Timeout", got_response=False,
                                 end_cause=EndCause.TIMEOUT))
    assert (d, by) == (D.NETWORK_ERROR, HangupBy.LOCAL)
    d, _, reason = classify(progress(sip_code=503, reason="Connection refused", got_response=False,
                                     end_cause=EndCause.TRANSPORT))
    assert d is D.NETWORK_ERROR and reason == "transport error: Connection refused"
    # A 503 that really came back from the trunk is "unavailable", not a network error.
    assert classify(progress(sip_code=503, reason="Service Unavailable"))[0] is D.UNAVAILABLE


def test_answer_without_usable_media_is_a_failure_with_the_reason():
    d, by, reason = classify(progress(sip_code=406, reason="SDP offer/answer incomplete", answered=True))
    assert (d, by) == (D.FAILED, HangupBy.LOCAL)
    assert reason == "answered without usable media (406 SDP offer/answer incomplete)"
    assert classify(progress(sip_code=415, reason="SDP negotiation failed", answered=True))[0] is D.FAILED


def test_our_own_cancel_before_an_answer_is_no_answer():
    d, by, reason = classify(progress(sip_code=487, local_cause=LocalCause.HANGUP))
    assert (d, by, reason) == (D.NO_ANSWER, HangupBy.LOCAL, "cancelled by caller")
    assert classify(progress(sip_code=487, local_cause=LocalCause.SHUTDOWN))[2] == "worker shutting down"
