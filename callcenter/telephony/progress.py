"""Call progress to dispositions: the one place that decides how a call attempt ended.

Pure functions over plain values, so the rules are unit-tested without a SIP stack. The pjsua2 phone
collects the facts (final code, whether any response came back, whether we hung up and why, whether
media was ever established) on its SIP thread and calls :func:`classify` once per call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from callcenter.domain import CallDisposition
from callcenter.telephony.api import HangupBy

# Final responses with a disposition of their own (issue 3); every other code >= 300 is FAILED.
_BY_CODE: dict[int, CallDisposition] = {
    486: CallDisposition.BUSY,
    600: CallDisposition.BUSY,
    603: CallDisposition.REJECTED,
    404: CallDisposition.NOT_FOUND,
    604: CallDisposition.NOT_FOUND,
    480: CallDisposition.UNAVAILABLE,
    503: CallDisposition.UNAVAILABLE,
}


class LocalCause(str, enum.Enum):
    """Why we ended a call ourselves."""

    HANGUP = "hangup"  # the application asked
    RING_TIMEOUT = "ring_timeout"  # not answered in time: CANCEL
    MAX_DURATION = "max_duration"  # talk time limit reached: BYE
    TRANSFERRED = "transferred"  # blind transfer succeeded: BYE
    SHUTDOWN = "shutdown"  # the phone is closing
    REJECTED = "rejected"  # an incoming call we refused with a final response (486, 603 ...)


class EndCause(str, enum.Enum):
    """What pjsip reported as the event that ended the INVITE session."""

    RESPONSE = "response"  # a final response (or BYE) received from the network
    TIMEOUT = "timeout"  # Timer B/F: no final response
    TRANSPORT = "transport"  # transport error (TCP refused, DNS, ICMP)
    LOCAL = "local"  # our own hang-up, or pjsip ended the session itself


@dataclass(frozen=True, slots=True)
class Progress:
    """Facts about one call, collected on the SIP thread."""

    sip_code: int  # last status code pjsip reports at DISCONNECTED
    reason: str
    answered: bool  # a 2xx for the INVITE came back (CONNECTING or CONFIRMED was reached)
    media_established: bool  # an audio stream became active at least once
    got_response: bool  # any response (100 Trying included) came back for the INVITE
    end_cause: EndCause
    local_cause: LocalCause | None = None
    ring_timeout: float | None = None
    max_seconds: float | None = None


def disposition_for_code(code: int) -> CallDisposition:
    """Disposition of an unanswered call that got final response ``code`` from the far end."""
    if 200 <= code < 300:
        return CallDisposition.ANSWERED
    return _BY_CODE.get(code, CallDisposition.FAILED)


def classify(p: Progress) -> tuple[CallDisposition, HangupBy, str]:
    """Decide disposition, who hung up, and a reason a person can read.

    The reason keeps the SIP reason phrase where there was one (``486 Busy Here``) and says in
    words what happened where there was none (ring timeout, no response, media failure).
    """
    code, phrase = p.sip_code, (p.reason or "").strip()
    by_us = p.local_cause is not None

    if p.answered and p.media_established:
        reason = {
            None: "remote hung up",
            LocalCause.HANGUP: "local hang-up",
            LocalCause.MAX_DURATION: f"maximum call duration reached ({_secs(p.max_seconds)})",
            LocalCause.TRANSFERRED: "transferred",
            LocalCause.SHUTDOWN: "worker shutting down",
            LocalCause.RING_TIMEOUT: "local hang-up",
        }[p.local_cause]
        return CallDisposition.ANSWERED, HangupBy.LOCAL if by_us else HangupBy.REMOTE, reason

    if p.answered:
        # The far end said 200 OK but no audio stream could be set up: pjsip sends ACK + BYE itself
        # (200 OK without SDP -> 406 "SDP offer/answer incomplete"; only unsupported codecs -> 415).
        detail = f"{code} {phrase}".strip() if code else phrase
        return CallDisposition.FAILED, HangupBy.LOCAL, f"answered without usable media ({detail})"

    if p.local_cause is LocalCause.RING_TIMEOUT:
        if not p.got_response:
            return (CallDisposition.NETWORK_ERROR, HangupBy.LOCAL,
                    f"no response from the trunk within {_secs(p.ring_timeout)}")
        return CallDisposition.NO_ANSWER, HangupBy.LOCAL, f"ring timeout ({_secs(p.ring_timeout)}), cancelled"

    if by_us:
        # We gave up before an answer (hang-up requested, shutdown): the customer did not answer.
        what = "worker shutting down" if p.local_cause is LocalCause.SHUTDOWN else "cancelled by caller"
        return CallDisposition.NO_ANSWER, HangupBy.LOCAL, what

    if p.end_cause is EndCause.TRANSPORT:
        return CallDisposition.NETWORK_ERROR, HangupBy.LOCAL, f"transport error: {phrase or code}"
    if p.end_cause is EndCause.TIMEOUT or not p.got_response:
        return CallDisposition.NETWORK_ERROR, HangupBy.LOCAL, f"no response from the trunk ({code} {phrase})".strip()

    disposition = disposition_for_code(code)
    return disposition, HangupBy.REMOTE, f"{code} {phrase}".strip()


_PHRASES = {404: "Not Found", 480: "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
            488: "Not Acceptable Here", 503: "Service Unavailable", 600: "Busy Everywhere", 603: "Decline",
            604: "Does Not Exist Anywhere"}


@dataclass(frozen=True, slots=True)
class InboundProgress:
    """Facts about one incoming call, collected on the SIP thread."""

    sip_code: int  # last status code pjsip reports at DISCONNECTED (ours, or 487 when the caller cancelled)
    reason: str
    answered: bool  # we sent 200 OK
    media_established: bool
    local_cause: LocalCause | None = None  # we ended it (hang-up, rejection, ring limit, shutdown)
    reject_code: int | None = None  # the final response we sent, when we rejected it
    ring_timeout: float | None = None
    max_seconds: float | None = None


def classify_inbound(p: InboundProgress) -> tuple[CallDisposition, HangupBy, str]:
    """Disposition of a call we received, from our side's point of view.

    ``answered`` when we answered and media flowed; a rejection has the disposition of the code we
    sent (486 -> ``busy``, 603 -> ``rejected``, 480 -> ``unavailable``, 404 -> ``not_found``) and
    ``hangup_by="local"``; a caller who gave up while we rang is ``no_answer`` by ``remote``.
    """
    phrase = (p.reason or "").strip()
    if p.answered and p.media_established:
        by_us = p.local_cause is not None
        reason = {
            None: "remote hung up",
            LocalCause.HANGUP: "local hang-up",
            LocalCause.MAX_DURATION: f"maximum call duration reached ({_secs(p.max_seconds)})",
            LocalCause.TRANSFERRED: "transferred",
            LocalCause.SHUTDOWN: "phone shutting down",
            LocalCause.RING_TIMEOUT: "local hang-up",
            LocalCause.REJECTED: "local hang-up",
        }[p.local_cause]
        return CallDisposition.ANSWERED, HangupBy.LOCAL if by_us else HangupBy.REMOTE, reason
    if p.answered:
        detail = f"{p.sip_code} {phrase}".strip() if p.sip_code else phrase
        return CallDisposition.FAILED, HangupBy.LOCAL, f"answered without usable media ({detail})"
    if p.local_cause is LocalCause.REJECTED and p.reject_code:
        code = p.reject_code
        return disposition_for_code(code), HangupBy.LOCAL, f"{code} {_PHRASES.get(code, '')}".strip() + " (rejected)"
    if p.local_cause is LocalCause.RING_TIMEOUT:
        return (CallDisposition.NO_ANSWER, HangupBy.LOCAL,
                f"not answered within {_secs(p.ring_timeout)} (480 Temporarily Unavailable)")
    if p.local_cause is LocalCause.SHUTDOWN:
        return CallDisposition.UNAVAILABLE, HangupBy.LOCAL, "phone shutting down"
    if p.local_cause is not None:
        return CallDisposition.REJECTED, HangupBy.LOCAL, "hung up before answering (603 Decline)"
    if p.sip_code == 487 or not p.sip_code:
        return CallDisposition.NO_ANSWER, HangupBy.REMOTE, "caller cancelled"
    # pjsip ended the INVITE transaction itself (e.g. our response could not be sent).
    return CallDisposition.FAILED, HangupBy.LOCAL, f"{p.sip_code} {phrase}".strip()


def _secs(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g} s"
