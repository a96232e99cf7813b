"""The decoding-thread service with a fake engine: frames in from a foreign thread, events out."""

from __future__ import annotations

import threading
import time

import pytest

from asr.protocol import Engine, Recognizer
from asr.service import TranscriptionService
from callcenter.domain import AudioFrame, TranscriptEvent


class FakeRecognizer:
    """Emits a final event per frame with the frame's byte count; records grammar switches."""

    def __init__(self, engine, grammar):
        self.engine = engine
        self.grammar = grammar
        self.fed = 0

    def accept(self, frame: AudioFrame) -> list[TranscriptEvent]:
        if self.engine.delay:
            time.sleep(self.engine.delay)
        if frame.audio.startswith(b"BOOM"):
            raise RuntimeError("decoder crashed")
        self.fed += len(frame.audio)
        return [TranscriptEvent(text=f"{len(frame.audio)}|{self.grammar}", is_final=True, start=0, end=0)]

    def finish(self) -> list[TranscriptEvent]:
        return [TranscriptEvent(text=f"end {self.fed}", is_final=True, start=0, end=0)]

    def set_grammar(self, phrases):
        self.grammar = phrases

    def set_choices(self, choices):
        self.grammar = ("choices", choices)


class FakeEngine:
    name = "fake"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def recognizer(self, *, grammar=None, partials=True):
        return FakeRecognizer(self, grammar)


def frame(n: int = 320) -> AudioFrame:
    return AudioFrame(b"\x00" * n, 8000)


def collect():
    events, lock = [], threading.Lock()

    def on_event(stream_id, event):
        with lock:
            events.append((stream_id, event.text))

    return events, on_event


def test_fakes_satisfy_the_protocols():
    assert isinstance(FakeEngine(), Engine)
    assert isinstance(FakeEngine().recognizer(), Recognizer)


def test_frames_from_a_media_thread_come_out_in_order_then_the_final():
    events, on_event = collect()
    service = TranscriptionService(FakeEngine())
    stream = service.open_stream("call-1", on_event)
    pusher = threading.Thread(target=lambda: [stream.push(frame()) for _ in range(50)])
    pusher.start()
    pusher.join()
    stream.finish()
    assert stream.join(5)
    assert events[-1] == ("call-1", "end 16000")  # every byte reached the recognizer
    assert sum(int(t.split("|")[0]) for _, t in events[:-1]) == 16000
    assert service.active == 0


def test_backlog_is_merged_into_one_feed_when_the_decoder_is_slow():
    events, on_event = collect()
    service = TranscriptionService(FakeEngine(delay=0.05))
    stream = service.open_stream("c", on_event)
    for _ in range(40):
        stream.push(frame())
    stream.finish()
    stream.join(5)
    assert len(events) < 20  # 40 frames, far fewer accept() calls
    assert events[-1][1] == "end 12800"


def test_grammar_changes_apply_in_order_with_the_audio():
    events, on_event = collect()
    service = TranscriptionService(FakeEngine(delay=0.01))
    stream = service.open_stream("c", on_event, grammar=["是", "不是"])
    stream.push(frame())
    stream.set_grammar(None)
    stream.push(frame(160))
    stream.finish()
    stream.join(5)
    assert events[0][1] == "320|['是', '不是']"
    assert events[1][1] == "160|None"


def test_choices_reach_the_recognizer_in_order_with_the_audio():
    from callcenter.domain import AnswerChoice

    events, on_event = collect()
    service = TranscriptionService(FakeEngine(delay=0.01))
    stream = service.open_stream("c", on_event)
    stream.push(frame())
    stream.set_choices([AnswerChoice("yes", ("是",))])
    stream.push(frame(160))
    stream.finish()
    stream.join(5)
    assert events[0][1] == "320|None"
    assert events[1][1] == "160|('choices', (AnswerChoice(label='yes', phrases=('是',)),))"


def test_push_never_blocks_and_drops_past_the_backlog_limit():
    _events, on_event = collect()
    service = TranscriptionService(FakeEngine(delay=0.2), max_backlog=0.5)
    stream = service.open_stream("c", on_event)
    started = time.perf_counter()
    for _ in range(200):  # 4 s of audio while the decoder sleeps
        stream.push(frame())
    assert time.perf_counter() - started < 0.1
    assert stream.dropped_seconds > 3.0
    service.close()


def test_a_crashing_recognizer_closes_only_its_stream_and_a_bad_callback_is_survived():
    events, on_event = collect()
    service = TranscriptionService(FakeEngine())

    def bad_callback(stream_id, event):
        raise ValueError("consumer bug")

    broken = service.open_stream("broken", on_event)
    noisy = service.open_stream("noisy", bad_callback)
    good = service.open_stream("good", on_event)
    broken.push(AudioFrame(b"BOOM" + b"\x00" * 316, 8000))
    noisy.push(frame())
    good.push(frame())
    broken.join(5)
    assert isinstance(broken.error, RuntimeError)
    noisy.finish()
    good.finish()
    assert noisy.join(5) and noisy.error is None
    good.join(5)
    assert ("good", "end 320") in events


def test_duplicate_stream_ids_are_refused():
    service = TranscriptionService(FakeEngine())
    service.open_stream("x", lambda *_: None)
    with pytest.raises(ValueError, match="already open"):
        service.open_stream("x", lambda *_: None)
    service.close()
