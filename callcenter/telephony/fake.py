"""``FakePhone``: a :class:`~callcenter.telephony.api.Phone` without SIP, for other packages' unit tests.

It drives the same :class:`~callcenter.telephony.session.CallSession` as the pjsua2 phone, so
playlists, barge-in, frame streams, recordings and events behave exactly as in a real call; only
the far end is scripted (:class:`FakeOutcome`): how long it rings, how the attempt ends, what the
customer says (a WAV replayed as 20 ms frames), when they press keys or hang up.

Clock: with ``tick=0.02`` (default) a pacer thread advances every call by one 20 ms frame in real
time; a smaller ``tick`` runs faster than real time; ``tick=None`` is manual: nothing moves until
the test calls :meth:`FakePhone.advance`, which makes frame-exact tests ("after 10 frames, barge
in") deterministic. Signalling (hang-up, DTMF, transfer, bridge) takes effect at once.

Incoming calls: :meth:`FakePhone.ring_in` makes a caller call the phone; the application takes it
from :meth:`FakePhone.incoming` and rings, answers or rejects it exactly as on a pjsua2 phone. The
caller's audio can be fed while the call runs (:meth:`FakeCall.feed`), so a test can play a
conversation turn by turn with the manual clock.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from callcenter.domain import CallDisposition
from callcenter.telephony.api import (
    BridgeError,
    CallResult,
    CallStateError,
    CapacityError,
    DtmfMethod,
    PhoneClosedError,
)
from callcenter.telephony.audio import load_prompt
from callcenter.telephony.dialplan import request_uri
from callcenter.telephony.progress import (
    EndCause,
    InboundProgress,
    LocalCause,
    Progress,
    classify,
    classify_inbound,
)
from callcenter.telephony.recording import RecordingWriter
from callcenter.telephony.session import FRAME_SECONDS, CallSession, InboundSession

_DEFAULT_CODES = {
    CallDisposition.ANSWERED: 200,
    CallDisposition.BUSY: 486,
    CallDisposition.NO_ANSWER: 487,
    CallDisposition.REJECTED: 603,
    CallDisposition.NOT_FOUND: 404,
    CallDisposition.UNAVAILABLE: 480,
    CallDisposition.FAILED: 500,
    CallDisposition.NETWORK_ERROR: 408,
}
_REASONS = {200: "OK", 486: "Busy Here", 487: "Request Terminated", 603: "Decline", 404: "Not Found",
            480: "Temporarily Unavailable", 500: "Server Internal Error", 408: "Request Timeout"}


@dataclass(frozen=True)
class FakeOutcome:
    """How the far end of a fake call behaves.

    Attributes:
        disposition: ANSWERED, or the way the attempt fails (BUSY, NOT_FOUND, NETWORK_ERROR ...).
            NO_ANSWER means it rings until the ring timeout.
        sip_code: final code for failures (default: the usual one for the disposition).
        ring_seconds: time from dial to answer or to the final response.
        customer_audio: WAV file (any format :func:`load_prompt` reads) or 16-bit mono PCM at the
            phone's rate, replayed as the customer's frames; silence after it ends.
        hangup_after_audio: the customer hangs up when their audio ends.
        talk_seconds: the customer hangs up this long after answering (None: never).
        dtmf: ``(seconds after answer, digit)`` pairs the customer presses (RFC 2833).
        transfer_code: final NOTIFY status a blind transfer gets.
    """

    disposition: CallDisposition = CallDisposition.ANSWERED
    sip_code: int | None = None
    ring_seconds: float = 0.0
    customer_audio: Path | str | bytes | None = None
    hangup_after_audio: bool = False
    talk_seconds: float | None = None
    dtmf: tuple[tuple[float, str], ...] = ()
    transfer_code: int = 200


@dataclass(eq=False)
class FakeCall:
    """What happened on one fake call (inspect it in tests)."""

    session: CallSession
    outcome: FakeOutcome
    target: str
    ring_timeout: float
    max_seconds: float
    invite_at: float
    ticks: int = 0  # frames since dial
    talk_ticks: int = 0  # frames since answer
    state: str = "ringing"  # ringing | talking | ended
    sent: bytearray = field(default_factory=bytearray)  # our side, every frame since answer
    dtmf_sent: list[tuple[str, DtmfMethod]] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    customer_pcm: bytes = b""
    audio_pos: int = 0
    ringing_at: float | None = None
    answered_at: float | None = None
    local_cause: LocalCause | None = None
    peer: FakeCall | None = None
    is_agent_leg: bool = False
    inbound: bool = False  # the far end called us (FakePhone.ring_in)
    cancel_after: float | None = None  # inbound: the caller gives up after this many seconds of ringing
    reject_code: int | None = None

    def feed(self, pcm: bytes) -> None:
        """Append 16-bit mono PCM (at the phone's rate) to what the far end says next."""
        self.customer_pcm = self.customer_pcm[self.audio_pos:] + pcm
        self.audio_pos = 0

    @property
    def far_end_pending(self) -> float:
        """Seconds of fed far-end audio not yet delivered."""
        return max(0, len(self.customer_pcm) - self.audio_pos) / (2 * self.session.rate)

    @property
    def played(self) -> list[str]:
        """Labels of the playbacks queued on the call (WAV file names, ``pcm``, ``stream``)."""
        return self.session.played

    def sent_seconds(self, threshold: int = 64) -> float:
        """Seconds of our side that were not silence (peak above ``threshold``)."""
        fb = self.session.frame_bytes
        count = 0
        mv = memoryview(bytes(self.sent)).cast("h")
        per = fb // 2
        for i in range(0, len(mv) - per + 1, per):
            if max(abs(min(mv[i:i + per])), max(mv[i:i + per])) > threshold:
                count += 1
        return count * FRAME_SECONDS


class FakePhone:
    """A scripted phone; see the module docstring.

    Args:
        outcomes: far-end behaviour by target (exactly as dialled) or a function of the target.
        default: behaviour of targets not in ``outcomes``.
        sample_rate: 8000 or 16000.
        capacity: call slots, like the wheel's 4.
        tick: seconds per 20 ms frame (None: manual clock, see :meth:`advance`).
        recordings_dir: where ``record=True`` puts recordings.
    """

    def __init__(
        self,
        outcomes: Mapping[str, FakeOutcome] | Callable[[str], FakeOutcome] | None = None,
        *,
        default: FakeOutcome = FakeOutcome(),
        sample_rate: int = 16000,
        capacity: int = 4,
        tick: float | None = FRAME_SECONDS,
        recordings_dir: Path | str = Path("var/recordings"),
        trunk: str = "fake.trunk",
        ring_timeout: float = 40.0,
        max_call_seconds: float = 600.0,
    ) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError("sample_rate must be 8000 or 16000")
        self._outcomes = outcomes or {}
        self._default = default
        self._rate = sample_rate
        self._capacity = capacity
        self._tick = tick
        self._recordings_dir = Path(recordings_dir)
        self._trunk = trunk
        self._ring_timeout = ring_timeout
        self._max_call_seconds = max_call_seconds
        self._lock = threading.RLock()
        self._live: dict[str, FakeCall] = {}
        self.calls: list[FakeCall] = []
        self._closed = False
        self._seq = itertools.count(1)
        self._incoming: queue.SimpleQueue[InboundSession | None] = queue.SimpleQueue()
        self.inbound_ring_timeout = 120.0
        self._writer = RecordingWriter(name="fake-rec")
        self._stop = threading.Event()
        self._pacer: threading.Thread | None = None
        if tick is not None:
            self._pacer = threading.Thread(target=self._run, name="fake-media-clock", daemon=True)
            self._pacer.start()

    # -- Phone ------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def active_calls(self) -> int:
        return len(self._live)

    @property
    def sample_rate(self) -> int:
        return self._rate

    def healthy(self) -> bool:
        return not self._closed

    def dial(
        self,
        target: str,
        *,
        call_id: str | None = None,
        ring_timeout: float | None = None,
        max_seconds: float | None = None,
        record: Path | bool = False,
    ) -> CallSession:
        uri = request_uri(target, self._trunk)
        with self._lock:
            if self._closed:
                raise PhoneClosedError("fake phone is closed")
            if len(self._live) >= self._capacity:
                raise CapacityError(f"all {self._capacity} call slots are in use")
            call_id = call_id or f"fake-{next(self._seq)}"
            path = None
            if record is True:
                path = self._recordings_dir / f"{call_id}.wav"
            elif record:
                path = Path(record)
            session = CallSession(call_id, uri, self._rate, self, record_path=path, writer=self._writer)
            outcome = self._outcome(target)
            call = FakeCall(
                session=session, outcome=outcome, target=target,
                ring_timeout=self._ring_timeout if ring_timeout is None else ring_timeout,
                max_seconds=self._max_call_seconds if max_seconds is None else max_seconds,
                invite_at=time.time(),
            )
            if outcome.customer_audio is not None:
                audio = outcome.customer_audio
                call.customer_pcm = audio if isinstance(audio, bytes) else load_prompt(audio, self._rate)
            self._live[call_id] = call
            self.calls.append(call)
        return session

    def ring_in(
        self,
        dialled: str,
        *,
        caller: str = "sip:robot@fake.trunk",
        audio: Path | str | bytes | None = None,
        cancel_after: float | None = None,
        talk_seconds: float | None = None,
        hangup_after_audio: bool = False,
        call_id: str | None = None,
    ) -> FakeCall:
        """A caller calls ``dialled``; the call is waiting in :meth:`incoming`.

        Args:
            audio: what the caller says once answered (WAV or PCM at the phone's rate); more can
                be fed later with :meth:`FakeCall.feed`.
            cancel_after: the caller gives up (CANCEL) after this much ringing; None: never.
            talk_seconds / hangup_after_audio: when the caller hangs up after the answer.

        Raises:
            CapacityError: every call slot is in use (a real phone answers 486 then).
        """
        from callcenter.telephony.dialplan import uri_user

        with self._lock:
            if self._closed:
                raise PhoneClosedError("fake phone is closed")
            if len(self._live) >= self._capacity:
                raise CapacityError(f"all {self._capacity} call slots are in use")
            call_id = call_id or f"fake-in{next(self._seq)}"
            session = InboundSession(call_id, caller if caller.startswith("sip:") else f"sip:{caller}@fake.trunk",
                                     self._rate, self, caller=uri_user(caller) or caller, dialled=dialled,
                                     writer=self._writer)
            session.sip_call_id = f"{call_id}@fake"
            outcome = FakeOutcome(talk_seconds=talk_seconds, hangup_after_audio=hangup_after_audio)
            call = FakeCall(session=session, outcome=outcome, target=caller, ring_timeout=self.inbound_ring_timeout,
                            max_seconds=self._max_call_seconds, invite_at=time.time(), state="incoming",
                            inbound=True, cancel_after=cancel_after)
            if audio is not None:
                call.customer_pcm = audio if isinstance(audio, bytes) else load_prompt(audio, self._rate)
            self._live[call_id] = call
            self.calls.append(call)
        self._incoming.put(session)
        return call

    def incoming(self, timeout: float | None = None) -> InboundSession | None:
        try:
            session = self._incoming.get(timeout=timeout)
        except queue.Empty:
            return None
        if session is None:
            self._incoming.put(None)
        return session

    def hangup_all(self, timeout: float = 5.0) -> None:
        with self._lock:
            for call in list(self._live.values()):
                call.local_cause = LocalCause.HANGUP
                self._end(call)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for call in list(self._live.values()):
                call.local_cause = LocalCause.SHUTDOWN
                self._end(call)
        self._stop.set()
        self._incoming.put(None)
        if self._pacer is not None:
            self._pacer.join(timeout=2)
        self._writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, call_id: str) -> FakeCall:
        """The record of a call placed on this phone."""
        for call in self.calls:
            if call.session.call_id == call_id:
                return call
        raise KeyError(call_id)

    # -- the clock ---------------------------------------------------------------------------------
    def advance(self, frames: int = 1) -> None:
        """Move every live call on by ``frames`` 20 ms frames (manual clock)."""
        for _ in range(frames):
            self._step()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._step()
            next_at += self._tick
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # fell behind: do not burst to catch up

    def _step(self) -> None:
        with self._lock:
            for call in list(self._live.values()):
                self._step_call(call)

    def _step_call(self, call: FakeCall) -> None:
        out = call.outcome
        call.ticks += 1
        elapsed = call.ticks * FRAME_SECONDS
        s = call.session
        if call.state == "incoming":
            if call.cancel_after is not None and elapsed >= call.cancel_after:
                self._end(call)  # the caller gave up
            elif elapsed >= call.ring_timeout:
                call.local_cause = LocalCause.RING_TIMEOUT
                self._end(call)
            return
        if call.state == "ringing":
            if call.ringing_at is None and out.disposition is not CallDisposition.NETWORK_ERROR:
                call.ringing_at = time.time()
                s._on_ringing(call.ringing_at, 180, "Ringing")
            if elapsed >= call.ring_timeout and (
                    out.disposition is CallDisposition.NO_ANSWER or elapsed < out.ring_seconds):
                call.local_cause = LocalCause.RING_TIMEOUT
                self._end(call)
            elif out.disposition is not CallDisposition.NO_ANSWER and elapsed >= out.ring_seconds:
                if out.disposition is CallDisposition.ANSWERED:
                    call.state = "talking"
                    call.answered_at = time.time()
                    s._start_media()
                    s._on_answered(call.answered_at, "PCMA/8000" if self._rate == 8000 else "G722/16000")
                else:
                    self._end(call)
            return
        if call.state != "talking":
            return
        call.talk_ticks += 1
        talk = call.talk_ticks * FRAME_SECONDS
        call.sent += s.media_tx()
        fb = s.frame_bytes
        chunk = call.customer_pcm[call.audio_pos:call.audio_pos + fb]
        call.audio_pos += fb
        s.media_rx(chunk if chunk else None)
        for at, digit in out.dtmf:
            if round(at / FRAME_SECONDS) == call.talk_ticks:
                s._on_dtmf(digit, DtmfMethod.RFC2833)
        audio_done = call.audio_pos >= len(call.customer_pcm) and bool(call.customer_pcm)
        if (out.hangup_after_audio and audio_done) or (out.talk_seconds is not None and talk >= out.talk_seconds):
            self._end(call)
        elif talk >= call.max_seconds:
            call.local_cause = LocalCause.MAX_DURATION
            self._end(call)

    def _end(self, call: FakeCall) -> None:
        if call.state == "ended":
            return
        answered = call.state == "talking"
        call.state = "ended"
        self._live.pop(call.session.call_id, None)
        out = call.outcome
        if call.inbound:
            code = 200 if answered else call.reject_code or (487 if call.local_cause is None else 480)
            disposition, hangup_by, reason = classify_inbound(InboundProgress(
                sip_code=code, reason=_REASONS.get(code, ""), answered=answered, media_established=answered,
                local_cause=call.local_cause, reject_code=call.reject_code, ring_timeout=call.ring_timeout,
                max_seconds=call.max_seconds))
        elif answered:
            code, got = 200, True
        elif call.local_cause is not None:
            code, got = 487, out.disposition is not CallDisposition.NETWORK_ERROR
        else:
            code = out.sip_code or _DEFAULT_CODES[out.disposition]
            got = out.disposition is not CallDisposition.NETWORK_ERROR
        if not call.inbound:
            disposition, hangup_by, reason = classify(Progress(
                sip_code=code, reason=_REASONS.get(code, ""), answered=answered, media_established=answered,
                got_response=got, end_cause=EndCause.RESPONSE if got else EndCause.TIMEOUT,
                local_cause=call.local_cause, ring_timeout=call.ring_timeout, max_seconds=call.max_seconds,
            ))
        peer = call.peer
        if peer is not None:
            call.peer = peer.peer = None
            if call.is_agent_leg:
                peer.session._on_unbridged(call.session)
            elif peer.state != "ended":
                peer.local_cause = LocalCause.HANGUP
                self._end(peer)
        s = call.session
        result = CallResult(
            call_id=s.call_id, target=s.target, disposition=disposition, sip_code=code, reason=reason,
            hangup_by=hangup_by, invite_at=call.invite_at, ended_at=time.time(), ringing_at=call.ringing_at,
            answered_at=call.answered_at, recording=s.recording_path, codec=s.codec,
            frames_received=s.frames_received, frames_dropped=s.frames_dropped, frames_lost=s.frames_lost,
            direction=s.direction,
        )
        s._finish(result, {"phone": "fake"})

    def _outcome(self, target: str) -> FakeOutcome:
        if callable(self._outcomes):
            return self._outcomes(target)
        return self._outcomes.get(target, self._default)

    # -- InboundControl -------------------------------------------------------------------------------
    def ring(self, session: InboundSession) -> None:
        with self._lock:
            call = self._live.get(session.call_id)
            if call is None or call.state != "incoming":
                raise CallStateError(f"call {session.call_id}: not ringing")
            if call.ringing_at is None:
                call.ringing_at = time.time()
                session._on_ringing(call.ringing_at, 180, "Ringing")

    def answer(self, session: InboundSession, record: Path | bool) -> None:
        with self._lock:
            call = self._live.get(session.call_id)
            if call is None or call.state != "incoming":
                raise CallStateError(f"call {session.call_id}: cannot answer (the caller has gone)")
            if record is True:
                session.set_recording(self._recordings_dir / f"{session.call_id}.wav")
            elif record:
                session.set_recording(Path(record))
            call.state = "talking"
            call.answered_at = time.time()
            session._start_media()
            session._on_answered(call.answered_at, "PCMA/8000" if self._rate == 8000 else "G722/16000")

    def reject(self, session: InboundSession, code: int) -> None:
        with self._lock:
            call = self._live.get(session.call_id)
            if call is None:
                return
            if call.state != "incoming":
                raise CallStateError(f"call {session.call_id}: already answered; hang up instead")
            call.local_cause = LocalCause.REJECTED
            call.reject_code = code
            self._end(call)

    # -- CallControl ---------------------------------------------------------------------------------
    def hangup(self, session: CallSession) -> None:
        with self._lock:
            call = self._live.get(session.call_id)
            if call is not None:
                call.local_cause = LocalCause.HANGUP
                self._end(call)

    def send_dtmf(self, session: CallSession, digits: str, method: DtmfMethod) -> None:
        with self._lock:
            call = self._live[session.call_id]
            call.dtmf_sent.extend((d, method) for d in digits)

    def transfer(self, session: CallSession, target: str, timeout: float) -> bool:
        uri = request_uri(target, self._trunk)
        with self._lock:
            call = self._live[session.call_id]
            call.transfers.append(uri)
            code = call.outcome.transfer_code
            session._on_transfer(100, "Trying", False)
            session._on_transfer(code, _REASONS.get(code, ""), True)
            if 200 <= code < 300:
                call.local_cause = LocalCause.TRANSFERRED
                self._end(call)
        return 200 <= code < 300

    def bridge(self, session: CallSession, target: str, ring_timeout: float | None) -> CallSession:
        with self._lock:
            customer = self._live[session.call_id]
            agent_session = self.dial(target, call_id=f"{session.call_id}-agent", ring_timeout=ring_timeout)
            agent = self._live[agent_session.call_id]
            if agent.outcome.disposition is not CallDisposition.ANSWERED:
                agent.local_cause = None
                self._end(agent)
                result = agent_session.result
                raise BridgeError(f"agent {agent_session.target} not connected: {result.disposition.value}", result)
            agent.state = "talking"
            agent.answered_at = time.time()
            agent_session._start_media()
            agent_session._on_answered(agent.answered_at, "PCMA/8000")
            customer.peer, agent.peer = agent, customer
            agent.is_agent_leg = True
            session.stop_playback()
            session._on_bridged(agent_session)
        return agent_session


def open_fake_phone(sip, *, name: str = "fake") -> FakePhone:
    """A phone factory with the signature of :func:`callcenter.telephony.open_phone`.

    For supervisor tests: ``Supervisor(..., phone_factory="callcenter.telephony.fake:open_fake_phone")``.
    Every call is answered and the customer stays silent.
    """
    return FakePhone(sample_rate=sip.audio_rate, capacity=sip.max_calls, recordings_dir=sip.recordings_dir,
                     trunk=sip.trunk or "fake.trunk", ring_timeout=sip.ring_timeout,
                     max_call_seconds=sip.max_call_seconds)
