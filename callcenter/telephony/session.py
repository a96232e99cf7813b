"""``CallSession``: the one implementation of :class:`~callcenter.telephony.api.CallHandle`.

It holds everything about a call that is not SIP: the playlist of our side, the customer's frame
streams, the recording, events and waits. The phone that owns it (pjsua2 or fake) drives it from two
threads and gives it a :class:`CallControl` for what needs signalling (hang-up, DTMF, transfer, bridge):

* the media clock calls :meth:`media_tx` and :meth:`media_rx` once per 20 ms frame; both are a few
  microseconds of pure Python (no locks, no I/O);
* the phone's signalling thread calls the ``_on_*`` methods as the call progresses;
* application threads call the public methods.
"""

from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from callcenter.domain import AudioFrame
from callcenter.telephony.api import (
    CallEvent,
    CallEventType,
    CallResult,
    CallStateError,
    DtmfMethod,
    PcmStream,
    Playback,
)
from callcenter.telephony.audio import convert_pcm16, load_prompt
from callcenter.telephony.dialplan import mask_target
from callcenter.telephony.media import FrameStream, PcmPlayback, StreamPlayback
from callcenter.telephony.recording import CallRecording, RecordingWriter

logger = logging.getLogger(__name__)

_monotonic = time.monotonic  # the media clock's wall time (a seam for tests; never patch time itself)
FRAME_SECONDS = 0.02  # pjmedia's ptime and the conference bridge's tick
CLOCK_RESYNC_FRAMES = 25  # pjmedia's clock resynchronises (skips ticks) once 500 ms late
_DTMF = re.compile(r"[0-9*#A-Da-d]{1,32}")


class CallControl(Protocol):
    """Signalling a phone provides to its sessions (called from application threads)."""

    def hangup(self, session: CallSession) -> None: ...

    def send_dtmf(self, session: CallSession, digits: str, method: DtmfMethod) -> None: ...

    def transfer(self, session: CallSession, target: str, timeout: float) -> bool: ...

    def bridge(self, session: CallSession, target: str, ring_timeout: float | None) -> CallSession: ...


class InboundControl(CallControl, Protocol):
    """What a phone that receives calls adds for its :class:`InboundSession` objects."""

    def ring(self, session: InboundSession) -> None: ...

    def answer(self, session: InboundSession, record: Path | bool) -> None: ...

    def reject(self, session: InboundSession, code: int) -> None: ...


class CallSession:
    """A call as the application sees it; see the module docstring for the threads involved."""

    direction = "outbound"

    def __init__(
        self,
        call_id: str,
        uri: str,
        rate: int,
        control: CallControl,
        *,
        record_path: Path | None = None,
        writer: RecordingWriter | None = None,
        audio_buffer_frames: int = 3000,
    ) -> None:
        self.call_id = call_id
        self.uri = uri
        self._target = mask_target(uri)
        self.rate = rate
        self.frame_bytes = int(rate * FRAME_SECONDS) * 2
        self._silence = bytes(self.frame_bytes)
        self._control = control
        self._record_path = record_path
        self._writer = writer
        self._recording: CallRecording | None = None
        self._mirror: CallRecording | None = None  # an agent leg mixes its audio into the customer's recording
        self._audio = FrameStream(audio_buffer_frames)
        self._streams: tuple[FrameStream, ...] = (self._audio,)
        self._playlist: collections.deque = collections.deque()
        self._current = None
        self._rx_frames = 0
        self._rx_first = self._rx_last = 0.0
        self._tx_frames = 0
        self._events: queue.SimpleQueue[CallEvent] = queue.SimpleQueue()
        self._events_done = False
        self._answered = threading.Event()
        self._settled = threading.Event()  # answered or ended: what wait_answered waits for
        self._ended = threading.Event()
        self._result: CallResult | None = None
        self.codec: str | None = None
        self.sip_call_id = ""  # the SIP Call-ID header, once the phone knows it (matches the far end's logs)
        self.bridged_to: str | None = None
        self.played: list[str] = []  # labels of every playback queued, in order (call log, tests)

    # -- media clock thread ---------------------------------------------------------------------
    def media_tx(self) -> bytes:
        """Our side's next 20 ms: the current playback, or silence."""
        pb = self._current
        chunk = None
        while chunk is None:
            if pb is None:
                try:
                    pb = self._current = self._playlist.popleft()
                except IndexError:
                    chunk = self._silence
                    break
            chunk = pb.read(self.frame_bytes)
            if chunk is None:
                pb = self._current = None
        self._tx_frames += 1
        rec = self._recording
        if rec is not None:
            rec.ours(chunk)
        return chunk

    def media_rx(self, pcm: bytes | None) -> None:
        """The customer's next 20 ms (None or a short buffer: the bridge had no audio, i.e. silence)."""
        if pcm is None or len(pcm) != self.frame_bytes:
            pcm = (pcm or b"") + self._silence
            pcm = pcm[: self.frame_bytes]
        n = self._rx_frames
        self._rx_frames = n + 1
        now = _monotonic()
        if n == 0:
            self._rx_first = now
        self._rx_last = now
        frame = AudioFrame(pcm, self.rate, 1, n * FRAME_SECONDS)
        for stream in self._streams:
            stream.put(frame)
        rec = self._recording
        if rec is not None:
            rec.customer(pcm)
        mirror = self._mirror
        if mirror is not None:
            mirror.mix(pcm)

    # -- signalling thread ----------------------------------------------------------------------
    def _emit(self, type_: CallEventType, **kw) -> None:
        self._events.put(CallEvent(type=type_, call_id=self.call_id, at=kw.pop("at", None) or time.time(), **kw))

    def _on_ringing(self, at: float, sip_code: int, reason: str = "") -> None:
        self._emit(CallEventType.RINGING, at=at, sip_code=sip_code, reason=reason)

    def _start_media(self) -> None:
        """Media is about to flow: open the recording (before the first frame)."""
        if self._record_path is not None and self._recording is None:
            try:
                self._recording = CallRecording(self._record_path, self.rate, self.call_id, self.frame_bytes)
            except OSError as exc:
                # The call goes on without a recording rather than failing; the result says so.
                logger.error("call %s: cannot open recording %s: %s", self.call_id, self._record_path, exc)
                self._record_path = None
                return
            if self._writer is not None:
                self._writer.add(self._recording)

    def _on_answered(self, at: float, codec: str | None) -> None:
        self.codec = codec
        self._answered.set()
        self._settled.set()
        self._emit(CallEventType.ANSWERED, at=at, sip_code=200, reason=codec or "")

    def _on_dtmf(self, digit: str, method: DtmfMethod, at: float | None = None) -> None:
        self._emit(CallEventType.DTMF, at=at, digit=digit, method=method)

    def _on_transfer(self, sip_code: int, reason: str, final: bool) -> None:
        self._emit(CallEventType.TRANSFER, sip_code=sip_code, reason=reason, final=final)

    def _on_bridged(self, agent: CallSession) -> None:
        self.bridged_to = agent._target
        agent._mirror = self._recording
        self._emit(CallEventType.BRIDGED, reason=agent._target)

    def _on_unbridged(self, agent: CallSession) -> None:
        agent._mirror = None
        self._emit(CallEventType.UNBRIDGED, reason=agent._target)

    def _finish(self, result: CallResult, metadata: dict | None = None) -> None:
        """The call is over: stop media, close streams and recording, publish the result."""
        if self._ended.is_set():
            return
        current = self._current
        self.stop_playback()
        if current is not None:
            current._finish()  # the media clock will not read it again: finish it here
        for stream in self._streams:
            stream.close()
        rec = self._recording
        if rec is not None:
            if self._writer is not None:
                self._writer.remove(rec)
            try:
                rec.close({**(metadata or {}), **self._result_metadata(result)})
            except OSError as exc:
                logger.error("call %s: finishing recording %s failed: %s", self.call_id, rec.path, exc)
        self._mirror = None
        self._result = result
        self._ended.set()
        self._settled.set()
        self._emit(CallEventType.ENDED, at=result.ended_at, sip_code=result.sip_code, reason=result.reason,
                   result=result)

    @staticmethod
    def _result_metadata(r: CallResult) -> dict:
        def iso(t: float | None) -> str | None:
            if t is None:
                return None
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"

        return {
            "target": r.target,
            **r.summary(),
            "invite_at": iso(r.invite_at),
            "ringing_at": iso(r.ringing_at),
            "answered_at": iso(r.answered_at),
            "ended_at": iso(r.ended_at),
            "codec": r.codec,
            "frames_received": r.frames_received,
            "frames_dropped": r.frames_dropped,
            "frames_lost": r.frames_lost,
        }

    # -- counters the phone reads when it builds the result ---------------------------------------
    @property
    def frames_received(self) -> int:
        return self._rx_frames

    @property
    def frames_sent(self) -> int:
        return self._tx_frames

    @property
    def frames_dropped(self) -> int:
        return sum(s.dropped for s in self._streams)

    @property
    def frames_lost(self) -> int:
        """Frames the media clock never produced: 20 ms ticks it skipped when starved of CPU.

        pjmedia's clock catches up with short delays by running late ticks back to back, but
        resynchronises (skips) after a long stall; the customer's audio of those ticks is gone.
        """
        if self._rx_frames < 2:
            return 0
        expected = round((self._rx_last - self._rx_first) / FRAME_SECONDS) + 1
        deficit = expected - self._rx_frames
        # Up to 500 ms behind, the clock is late, not lossy (it catches up, and the call may have
        # ended before it did); pjmedia skips only beyond that, so a real skip is >= 25 frames.
        return deficit if deficit > CLOCK_RESYNC_FRAMES else 0

    @property
    def recording_path(self) -> Path | None:
        return self._recording.path if self._recording is not None else None

    # -- CallHandle -------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        return self._target

    @property
    def answered(self) -> bool:
        return self._answered.is_set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def result(self) -> CallResult | None:
        return self._result

    @property
    def recording(self) -> Path | None:
        return self.recording_path

    @property
    def audio(self) -> FrameStream:
        return self._audio

    def subscribe_audio(self, max_frames: int = 3000) -> FrameStream:
        stream = FrameStream(max_frames)
        if self.ended:
            stream.close()
        else:
            self._streams = self._streams + (stream,)
        return stream

    def next_event(self, timeout: float | None = None) -> CallEvent | None:
        if self._events_done:
            return None
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event.type is CallEventType.ENDED:
            self._events_done = True
        return event

    def events(self) -> Iterator[CallEvent]:
        while True:
            event = self.next_event()
            if event is None:
                return
            yield event

    def wait_answered(self, timeout: float | None = None) -> bool:
        self._settled.wait(timeout)
        return self._answered.is_set()

    def wait_ended(self, timeout: float | None = None) -> CallResult | None:
        self._ended.wait(timeout)
        return self._result

    def play(self, wav: Path | str, *, interrupt: bool = False) -> Playback:
        pcm = load_prompt(wav, self.rate)
        return self._enqueue(PcmPlayback(pcm, self.rate, label=Path(wav).name), interrupt)

    def play_pcm(self, pcm: bytes, sample_rate: int, *, interrupt: bool = False) -> Playback:
        if sample_rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise ValueError(f"unsupported sample rate {sample_rate} Hz")
        data = convert_pcm16(pcm, sample_rate, self.rate)
        return self._enqueue(PcmPlayback(data, self.rate, label="pcm"), interrupt)

    def stream(self, sample_rate: int, *, interrupt: bool = False) -> PcmStream:
        if sample_rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise ValueError(f"unsupported sample rate {sample_rate} Hz")
        return self._enqueue(StreamPlayback(self.rate, sample_rate), interrupt)

    def _enqueue(self, playback, interrupt: bool):
        if interrupt:
            self.stop_playback()
        self.played.append(playback.label)
        if self.ended:
            playback.stop()  # nothing will ever read it: a finished, interrupted playback
            playback._finish()
            return playback
        self._playlist.append(playback)
        return playback

    def stop_playback(self) -> None:
        while True:
            try:
                self._playlist.popleft().stop()
            except IndexError:
                break
        current = self._current
        if current is not None:
            current.stop()

    @property
    def playing(self) -> bool:
        return self._current is not None or bool(self._playlist)

    def send_dtmf(self, digits: str, method: DtmfMethod = DtmfMethod.RFC2833) -> None:
        if not isinstance(digits, str) or not _DTMF.fullmatch(digits):
            raise ValueError(f"DTMF digits must be 1-32 of 0-9 * # A-D, got {digits!r}")
        if not self.answered or self.ended:
            raise CallStateError(f"call {self.call_id}: DTMF needs an answered, live call")
        self._control.send_dtmf(self, digits.upper(), DtmfMethod(method))

    def transfer(self, target: str, timeout: float = 15.0) -> bool:
        if not self.answered or self.ended:
            raise CallStateError(f"call {self.call_id}: transfer needs an answered, live call")
        return self._control.transfer(self, target, timeout)

    def bridge(self, target: str, *, ring_timeout: float | None = None) -> CallSession:
        if not self.answered or self.ended:
            raise CallStateError(f"call {self.call_id}: bridging needs an answered, live call")
        return self._control.bridge(self, target, ring_timeout)

    def hangup(self) -> None:
        if not self.ended:
            self._control.hangup(self)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "answered" if self.answered else "dialling"
        return f"<CallSession {self.call_id} {self._target} {state}>"


class InboundSession(CallSession):
    """A call we received: :class:`CallSession` plus who called whom, and ring / answer / reject.

    ``caller`` and ``dialled`` are unmasked (business logic picks a persona or a queue by them);
    logs use ``target`` (the caller's masked URI) and :attr:`dialled_masked`.
    """

    direction = "inbound"

    def __init__(
        self,
        call_id: str,
        uri: str,
        rate: int,
        control: InboundControl,
        *,
        caller: str,
        dialled: str,
        writer: RecordingWriter | None = None,
        audio_buffer_frames: int = 3000,
    ) -> None:
        super().__init__(call_id, uri, rate, control, writer=writer, audio_buffer_frames=audio_buffer_frames)
        self._inbound = control
        self.caller = caller
        self.dialled = dialled

    @property
    def dialled_masked(self) -> str:
        return mask_target(self.dialled) if self.dialled else ""

    def set_recording(self, path: Path | None) -> None:
        """Where to record once media starts (the phone calls this when answering)."""
        if self._recording is None:
            self._record_path = path

    def ring(self) -> None:
        if self.ended or self.answered:
            raise CallStateError(f"call {self.call_id}: cannot ring a call that is {'over' if self.ended else 'answered'}")
        self._inbound.ring(self)

    def answer(self, *, record: Path | bool = False) -> None:
        if self.ended:
            raise CallStateError(f"call {self.call_id}: the caller has gone ({self.result.reason if self.result else 'ended'})")
        if self.answered:
            raise CallStateError(f"call {self.call_id}: already answered")
        self._inbound.answer(self, record)

    def reject(self, code: int = 486) -> None:
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 699 or code == 487:
            raise ValueError(f"reject code must be a final error response 400-699 other than 487, got {code!r}")
        if self.answered and not self.ended:
            raise CallStateError(f"call {self.call_id}: already answered; hang up instead")
        if self.ended:
            raise CallStateError(f"call {self.call_id}: has ended")
        self._inbound.reject(self, code)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "answered" if self.answered else "ringing"
        return f"<InboundSession {self.call_id} from {self._target} to {self.dialled_masked} {state}>"
