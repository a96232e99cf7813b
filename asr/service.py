"""Decoding threads for a worker process: the bridge between the media thread and the recognizers.

Owns where decoding runs. The telephony media thread (pjsua2's clock, shared by every call of the
process) must never block, so it only calls :meth:`Stream.push`, which copies a frame into a queue
and returns. Each stream has its own decoding thread that drains its queue, feeds the recognizer and
hands events to the stream's callback. Frames that piled up while a decode ran are fed in one piece,
so a stream catches up after a slow Whisper decode instead of falling further behind.

Why a thread per stream rather than one decoding thread: Vosk releases the GIL while decoding, so
streams decode in parallel on all cores; Whisper serialises (and batches) the model itself in
:meth:`asr.whisper_engine.WhisperEngine.decode`, while the other streams' VAD keeps running, so
one customer's long utterance does not delay everybody's speech-start signal. Callbacks run on the
stream's decoding thread: they should hand the event on (a queue, ``loop.call_soon_threadsafe``) and
return.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asr.protocol import Engine
from callcenter.domain import AnswerChoice, AudioFrame, TranscriptEvent

logger = logging.getLogger(__name__)

EventCallback = Callable[[str, TranscriptEvent], None]
_FINISH = object()


@dataclass(frozen=True)
class _Grammar:
    phrases: tuple[str, ...] | None


@dataclass(frozen=True)
class _Choices:
    choices: tuple[AnswerChoice, ...] | None


class Stream:
    """One call's audio stream. ``push``, ``set_grammar`` and ``finish`` are safe from any thread."""

    def __init__(self, service: TranscriptionService, stream_id: str, on_event: EventCallback,
                 grammar: Sequence[str] | None, max_backlog: float) -> None:
        self.stream_id = stream_id
        self._service = service
        self._on_event = on_event
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._recognizer = service.engine.recognizer(grammar=grammar)
        self._max_backlog = max_backlog
        self._backlog = 0.0  # seconds of audio queued, approximate (updated without a lock)
        self._closed = False
        self.dropped_seconds = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"asr-{stream_id}", daemon=True)
        self._thread.start()

    def push(self, frame: AudioFrame) -> None:
        """Queue a frame; never blocks. Past ``max_backlog`` seconds of queued audio, frames are dropped
        (and counted) rather than letting memory and latency grow without bound."""
        if self._closed:
            return
        if self._backlog > self._max_backlog:
            self.dropped_seconds += frame.duration
            return
        self._backlog += frame.duration
        self._queue.put(frame)

    def set_grammar(self, phrases: Sequence[str] | None) -> None:
        """Expected phrases for the next customer turn (in order with the frames already pushed)."""
        self._queue.put(_Grammar(tuple(phrases) if phrases else None))

    def set_choices(self, choices: Sequence[AnswerChoice] | None) -> None:
        """Expected answers of a closed question for the next customer turn, or None (in order with
        the frames already pushed): the finals then carry their acoustic ``choices``."""
        self._queue.put(_Choices(tuple(choices) if choices else None))

    def finish(self) -> None:
        """Hang-up: the utterance in progress is decoded, then the thread ends."""
        if not self._closed:
            self._closed = True
            self._queue.put(_FINISH)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _emit(self, events: list[TranscriptEvent]) -> None:
        for event in events:
            try:
                self._on_event(self.stream_id, event)
            except Exception:  # a broken consumer must not kill the decoding thread
                logger.exception("call %s: transcript callback failed", self.stream_id)

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                frames: list[AudioFrame] = []
                while True:
                    if isinstance(item, AudioFrame):
                        frames.append(item)
                    else:
                        self._feed(frames)
                        frames = []
                        if item is _FINISH:
                            self._emit(self._recognizer.finish())
                            return
                        if isinstance(item, _Choices):
                            self._recognizer.set_choices(item.choices)
                        else:
                            self._recognizer.set_grammar(item.phrases)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._feed(frames)
        except Exception as exc:
            self.error = exc
            logger.exception("call %s: recognizer failed; the stream is closed", self.stream_id)
            self._closed = True
        finally:
            self._service._forget(self.stream_id)

    def _feed(self, frames: list[AudioFrame]) -> None:
        if not frames:
            return
        first = frames[0]
        audio = b"".join(f.audio for f in frames) if len(frames) > 1 else first.audio
        merged = AudioFrame(audio, first.sample_rate, first.num_channels, first.timestamp)
        self._backlog = max(0.0, self._backlog - merged.duration)
        self._emit(self._recognizer.accept(merged))


class TranscriptionService:
    """All the call streams of one worker process, sharing one engine (one loaded model)."""

    def __init__(self, engine: Engine, *, max_backlog: float = 10.0) -> None:
        self.engine = engine
        self.max_backlog = max_backlog
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()

    def open_stream(self, stream_id: str, on_event: EventCallback, *, grammar: Sequence[str] | None = None) -> Stream:
        """Start recognising a call (``stream_id``: the call id, used in logs and thread names)."""
        with self._lock:
            if stream_id in self._streams:
                raise ValueError(f"stream {stream_id!r} is already open")
            stream = Stream(self, stream_id, on_event, grammar, self.max_backlog)
            self._streams[stream_id] = stream
        return stream

    def _forget(self, stream_id: str) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._streams)

    def close(self, timeout: float = 30.0) -> None:
        """Finish every stream and wait for their last events."""
        with self._lock:
            streams = list(self._streams.values())
        for s in streams:
            s.finish()
        deadline = time.monotonic() + timeout
        for s in streams:
            if not s.join(max(0.0, deadline - time.monotonic())):
                logger.warning("call %s: decoding thread still busy at shutdown", s.stream_id)
