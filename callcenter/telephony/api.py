"""What business logic sees of telephony: plain types, errors, and the ``Phone``/``CallHandle`` protocols.

Nothing here imports pjsua2. Every method of the protocols may be called from any ordinary Python
thread (or from asyncio through ``asyncio.to_thread``); the pjsua2 implementation forwards what needs
its SIP thread through a queue, so callers never register threads with pjlib.

A call, seen from the dialer::

    handle = phone.dial("13812345678", record=True)
    if handle.wait_answered(timeout=40):
        playback = handle.play(Path("prompts/greeting.wav"))
        for frame in handle.audio:          # 20 ms AudioFrames of the customer, in real time
            if speech_started(frame):
                handle.stop_playback()      # barge-in: silence from the next 20 ms frame
            ...
        handle.hangup()
    result = handle.wait_ended()            # CallResult: disposition, SIP code, timestamps, recording
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from callcenter.domain import AudioFrame, CallDisposition


class TelephonyError(Exception):
    """Base class of every error raised by ``callcenter.telephony``."""


class InvalidTarget(TelephonyError, ValueError):
    """The number or SIP URI cannot be dialled (the message says why)."""


class MediaFileError(TelephonyError, ValueError):
    """A prompt WAV is missing, unreadable or in a format that cannot be converted."""


class CapacityError(TelephonyError):
    """Every call slot of this phone is in use; dial again when a call has ended.

    The pjsua2 wheel is compiled with ``PJSUA_MAX_CALLS=4``: a worker process holds at most four
    calls (a bridged agent leg counts as one). The dialer treats this as "worker full", not as a
    failure of the number.
    """


class CallStateError(TelephonyError):
    """The operation does not fit the call's state (e.g. DTMF before the call was answered)."""


class TrunkError(TelephonyError):
    """The trunk cannot be used at all: transport error, failed registration, bad proxy."""


class PhoneClosedError(TelephonyError):
    """The phone was closed (or its SIP thread died); no new calls can be placed."""


class BridgeError(TelephonyError):
    """The agent leg of a bridge was not connected; ``result`` tells how that call ended."""

    def __init__(self, message: str, result: CallResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class HangupBy(str, enum.Enum):
    """Which side ended the call (``local`` also covers timeouts and errors on our side)."""

    LOCAL = "local"
    REMOTE = "remote"


class DtmfMethod(str, enum.Enum):
    RFC2833 = "rfc2833"  # RTP telephone-event
    SIP_INFO = "sip_info"  # INFO with application/dtmf-relay


class CallEventType(str, enum.Enum):
    RINGING = "ringing"  # first 180/183
    ANSWERED = "answered"  # 200 OK, media flowing
    DTMF = "dtmf"  # a digit from the far end
    TRANSFER = "transfer"  # progress of a blind transfer (REFER/NOTIFY)
    BRIDGED = "bridged"  # an agent leg was connected to this call
    UNBRIDGED = "unbridged"  # the agent leg ended; the call goes on
    ENDED = "ended"  # always the last event; carries the CallResult


@dataclass(frozen=True, slots=True)
class CallResult:
    """How a call attempt went. Times are UNIX epoch seconds (``time.time()``).

    ``ring_seconds`` runs from the INVITE to the answer (or to the end for an unanswered call);
    ``talk_seconds`` from the answer to the end.
    """

    call_id: str
    target: str  # masked for logs: sip:138****5678@trunk
    disposition: CallDisposition
    sip_code: int
    reason: str
    hangup_by: HangupBy
    invite_at: float
    ended_at: float
    ringing_at: float | None = None
    answered_at: float | None = None
    recording: Path | None = None
    codec: str | None = None
    frames_received: int = 0
    frames_dropped: int = 0  # thrown away because a consumer fell behind (FrameSource.dropped)
    frames_lost: int = 0  # never produced: the media clock skipped ticks when starved of CPU
    direction: str = "outbound"  # "inbound": a call we received (target is then the caller)

    @property
    def ring_seconds(self) -> float:
        end = self.answered_at if self.answered_at is not None else self.ended_at
        return max(0.0, end - self.invite_at)

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)

    def summary(self) -> dict:
        """The fields ``callcenter call --json`` prints, in that order."""
        return {
            "disposition": self.disposition.value,
            "sip_code": self.sip_code,
            "reason": self.reason,
            "ring_seconds": round(self.ring_seconds, 3),
            "talk_seconds": round(self.talk_seconds, 3),
            "recording": str(self.recording) if self.recording else None,
            "hangup_by": self.hangup_by.value,
        }


@dataclass(frozen=True, slots=True)
class CallEvent:
    type: CallEventType
    call_id: str
    at: float  # time.time()
    sip_code: int | None = None
    reason: str = ""
    digit: str | None = None
    method: DtmfMethod | None = None
    final: bool = False  # TRANSFER: the last progress report
    result: CallResult | None = field(default=None, repr=False)  # ENDED only


@runtime_checkable
class Playback(Protocol):
    """Something being played into a call: a prompt, generated PCM, or a live stream."""

    @property
    def done(self) -> bool:
        """Played to the end or stopped."""

    @property
    def interrupted(self) -> bool:
        """Stopped before its end (barge-in, hang-up)."""

    @property
    def played_seconds(self) -> float: ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done; False on timeout."""

    def stop(self) -> None:
        """Stop at once: the next 20 ms frame is silence."""


@runtime_checkable
class PcmStream(Playback, Protocol):
    """A playback fed while it plays (streaming TTS). ``close()`` lets it finish what was written."""

    def write(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class FrameSource(Protocol):
    """The customer's audio: 20 ms :class:`AudioFrame` objects, in order, ending with the call."""

    def get(self, timeout: float | None = None) -> AudioFrame | None:
        """The next frame; None when the call has ended (or on timeout)."""

    def __iter__(self) -> Iterator[AudioFrame]: ...

    @property
    def dropped(self) -> int:
        """Frames thrown away because the consumer fell more than the buffer behind."""


@runtime_checkable
class CallHandle(Protocol):
    """One call. Usable from any thread; nothing blocks the media clock."""

    call_id: str

    @property
    def target(self) -> str:
        """Masked target for logs."""

    @property
    def answered(self) -> bool: ...

    @property
    def ended(self) -> bool: ...

    @property
    def result(self) -> CallResult | None: ...

    @property
    def recording(self) -> Path | None: ...

    @property
    def audio(self) -> FrameSource:
        """The primary customer-audio stream, buffered from the first frame of the call."""

    def subscribe_audio(self, max_frames: int = 3000) -> FrameSource:
        """An additional customer-audio stream from now on (e.g. a VAD beside the recogniser)."""

    def next_event(self, timeout: float | None = None) -> CallEvent | None: ...

    def events(self) -> Iterator[CallEvent]:
        """Events until (and including) ENDED."""

    def wait_answered(self, timeout: float | None = None) -> bool:
        """True once answered; False if the call ended unanswered or on timeout."""

    def wait_ended(self, timeout: float | None = None) -> CallResult | None: ...

    def play(self, wav: Path | str, *, interrupt: bool = False) -> Playback:
        """Queue a WAV prompt (any common rate/width/channels; converted once and cached)."""

    def play_pcm(self, pcm: bytes, sample_rate: int, *, interrupt: bool = False) -> Playback:
        """Queue 16-bit mono PCM at ``sample_rate`` (resampled as needed)."""

    def stream(self, sample_rate: int, *, interrupt: bool = False) -> PcmStream:
        """Open a playback that is fed while it plays (e.g. from a streaming synthesiser)."""

    def stop_playback(self) -> None:
        """Barge-in: stop the current and every queued playback at once."""

    def send_dtmf(self, digits: str, method: DtmfMethod = DtmfMethod.RFC2833) -> None: ...

    def transfer(self, target: str, timeout: float = 15.0) -> bool:
        """Blind transfer (REFER). True when the far end reports success; the call then ends."""

    def bridge(self, target: str, *, ring_timeout: float | None = None) -> CallHandle:
        """Dial ``target`` (an agent's extension) and connect both legs; returns the agent leg.

        Recording and customer audio go on; the agent's audio is mixed into the recording's
        right channel and is available on the agent leg's ``audio``.
        """

    def hangup(self) -> None:
        """Hang up (CANCEL before answer, BYE after). Returns at once; see ``wait_ended``."""


@runtime_checkable
class IncomingCall(CallHandle, Protocol):
    """A call we received (``Phone.incoming()``): a :class:`CallHandle` that starts unanswered.

    pjsip has already sent ``100 Trying``. The application then rings (``180``), answers (``200``)
    or rejects it (``486`` busy, ``603`` decline, ``480`` unavailable, ``404``); leaving it ringing
    until the caller gives up is a valid choice too (the call ends with ``no_answer``,
    ``hangup_by="remote"``). Once answered, the whole media API of :class:`CallHandle` applies;
    ``audio`` carries the caller's frames. ``target`` is the caller's masked URI, for logs.
    """

    caller: str  # the caller's number or SIP user (From), unmasked: for business logic, never for logs
    dialled: str  # the number that was called (user part of the Request-URI), unmasked

    def ring(self) -> None:
        """Send ``180 Ringing`` (idempotent while unanswered)."""

    def answer(self, *, record: Path | bool = False) -> None:
        """Send ``200 OK`` with our SDP; the call is up (``ANSWERED``) once the caller's ACK arrives.

        Raises:
            CallStateError: the call already ended (e.g. the caller cancelled) or was answered.
        """

    def reject(self, code: int = 486) -> None:
        """Refuse the call with a final response (400-699), e.g. 486 busy, 603 decline, 480, 404.

        Raises:
            ValueError: ``code`` is not a final error response.
            CallStateError: the call was already answered (hang up instead) or has ended.
        """


@runtime_checkable
class Phone(Protocol):
    """One per worker process: owns the SIP stack and up to ``capacity`` concurrent calls."""

    @property
    def capacity(self) -> int: ...

    @property
    def active_calls(self) -> int:
        """Call slots in use: live calls, plus INVITEs pjsip is still timing out (see docs)."""

    @property
    def sample_rate(self) -> int:
        """Rate of the customer frames and of the recording (8000 or 16000)."""

    def dial(
        self,
        target: str,
        *,
        call_id: str | None = None,
        ring_timeout: float | None = None,
        max_seconds: float | None = None,
        record: Path | bool = False,
    ) -> CallHandle:
        """Start a call to a number (through the trunk) or a ``sip:`` URI.

        Raises:
            InvalidTarget: the target cannot be dialled.
            CapacityError: every call slot is in use.
            TrunkError: the trunk is unusable (e.g. its host does not resolve).
            PhoneClosedError: the phone was closed.
        """

    def incoming(self, timeout: float | None = None) -> IncomingCall | None:
        """The next call received (oldest first), or None on timeout.

        Only a phone opened with ``SipConfig(inbound=True)`` receives calls; others decline every
        INVITE with ``603`` and raise :class:`CallStateError` here. An incoming call takes a call
        slot from its INVITE to its end, like a dialled one.
        """

    def hangup_all(self, timeout: float = 5.0) -> None:
        """Hang up every call and wait until they have ended (emergency stop, tests)."""

    def close(self) -> None:
        """Hang up every call and release the SIP stack. Idempotent."""

    def healthy(self) -> bool:
        """The SIP thread is alive and turning (used by the worker heartbeat)."""
