"""Whisper base on the project's telephone-band Mandarin clips: text, streaming events, guards."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from asr.audio import float_to_pcm16, load_mono
from asr.textnorm import char_errors, to_simplified
from asr.transcribe import transcribe_file
from callcenter.domain import AudioFrame

from .conftest import EVAL

pytestmark = [pytest.mark.integration, pytest.mark.models]

# A spread of the evaluation set: a satisfaction answer, a callback request, an opt-out, numbers.
SAMPLE = ["satisfaction-01", "callback-02", "optout-01", "numbers-06", "praise-05", "waiting-02"]


def test_a_sample_of_the_evaluation_set_is_transcribed_in_simplified_chinese(whisper, eval_rows):
    edits = chars = 0
    for clip in SAMPLE:
        row = eval_rows[clip]
        result = transcribe_file(whisper, EVAL / row["file"])
        assert result["text"] == to_simplified(result["text"])  # no Traditional characters left
        assert result["segments"] and all(0 < s["confidence"] <= 1 for s in result["segments"])
        e, n = char_errors(row["text"], result["text"])
        edits, chars = edits + e, chars + n
    # The whole set scores far better (docs/benchmarks.md); this bound catches a broken pipeline.
    assert edits / chars < 0.25


def test_streaming_frames_give_a_speech_start_then_the_final(whisper, eval_rows):
    samples, _ = load_mono(EVAL / eval_rows["callback-02"]["file"], 8000)
    samples = np.concatenate([samples, np.zeros(8000, np.float32)])  # the customer then stays silent
    rec = whisper.recognizer()
    events = []
    for i in range(0, samples.size, 160):  # 20 ms at 8 kHz, as the phone delivers them
        events.extend(rec.accept(AudioFrame(float_to_pcm16(samples[i:i + 160]), 8000)))
    finals_before_hangup = [e for e in events if e.is_final]
    events += rec.finish()
    assert not events[0].is_final and events[0].text == ""  # the VAD's barge-in signal
    assert len(finals_before_hangup) == 1  # endpointed by silence, not by the hang-up
    final = finals_before_hangup[0]
    assert 0.1 < final.start < 0.5 and final.end <= samples.size / 8000 - 0.5
    assert char_errors(eval_rows["callback-02"]["text"], final.text)[0] <= 3
    # The utterance was decoded while its end silence ran out, and that decode was the final's.
    assert (rec.speculative_hits, rec.speculative_misses) == (1, 0)


def test_a_pause_shorter_than_the_end_silence_keeps_one_utterance(whisper, eval_rows):
    """The decode started at the pause is dropped when the customer goes on: the final has both parts."""
    def voiced(name: str) -> np.ndarray:  # the clip without its leading and trailing quiet
        x, _ = load_mono(EVAL / eval_rows[name]["file"], 8000)
        rms = np.sqrt(np.mean(x[: x.size // 160 * 160].reshape(-1, 160) ** 2, axis=1))
        loud = np.flatnonzero(rms > 0.05 * rms.max())
        return x[loud[0] * 160:(loud[-1] + 1) * 160]

    first, second = voiced("satisfaction-01"), voiced("callback-02")
    gap = np.zeros(int(0.45 * 8000), np.float32)  # past speculate_after (0.25 s), short of 0.8 s
    samples = np.concatenate([first, gap, second, np.zeros(8000, np.float32)])
    rec = whisper.recognizer()
    events = []
    for i in range(0, samples.size, 160):
        events.extend(rec.accept(AudioFrame(float_to_pcm16(samples[i:i + 160]), 8000)))
    finals = [e for e in events if e.is_final]
    assert len(finals) == 1 and rec.speculative_misses >= 1 and rec.speculative_hits == 1
    e1 = char_errors(eval_rows["satisfaction-01"]["text"] + eval_rows["callback-02"]["text"], finals[0].text)
    assert e1[0] / e1[1] < 0.3


def test_silence_and_noise_produce_no_text(whisper):
    rng = np.random.default_rng(7)
    for audio in (np.zeros(16000 * 3, np.float32), rng.normal(0, 0.01, 16000 * 3).astype(np.float32)):
        rec = whisper.recognizer()
        events = rec.accept(AudioFrame(float_to_pcm16(audio), 16000)) + rec.finish()
        assert [e.text for e in events if e.text] == []


def test_decoding_guards_reject_a_clip_of_pure_tone(whisper):
    t = np.arange(16000 * 2) / 16000
    decoded = whisper.decode((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    assert decoded.text == "" or decoded.confidence < 0.5


def test_stereo_44k_file_with_the_customer_on_the_right(whisper, eval_rows, tmp_path):
    speech, _ = load_mono(EVAL / eval_rows["optout-01"]["file"], 44100)
    stereo = np.stack([np.zeros_like(speech), speech], axis=1).reshape(-1)
    path = tmp_path / "call.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(float_to_pcm16(stereo))
    right = transcribe_file(whisper, path, channel="right")
    left = transcribe_file(whisper, path, channel="left")
    assert char_errors(eval_rows["optout-01"]["text"], right["text"])[0] <= 2
    assert left["text"] == "" and left["segments"] == []
    assert right["duration"] == pytest.approx(speech.size / 44100, abs=1e-3)


def test_two_calls_share_one_model_through_the_service(whisper, eval_rows):
    """Two streams pushed from a 'media thread' in 20 ms frames; each gets its own final."""
    import threading

    from asr.service import TranscriptionService

    clips = {"call-a": "praise-05", "call-b": "optout-01"}
    finals: dict[str, list[str]] = {k: [] for k in clips}
    starts: dict[str, int] = {k: 0 for k in clips}

    def on_event(call_id, event):
        if event.is_final:
            finals[call_id].append(event.text)
        elif event.text == "":
            starts[call_id] += 1

    service = TranscriptionService(whisper)
    streams = {k: service.open_stream(k, on_event) for k in clips}
    audio = {k: load_mono(EVAL / eval_rows[v]["file"], 8000)[0] for k, v in clips.items()}

    def media_thread():
        n = max(a.size for a in audio.values())
        for i in range(0, n, 160):
            for k, a in audio.items():
                if i < a.size:
                    streams[k].push(AudioFrame(float_to_pcm16(a[i:i + 160]), 8000))

    t = threading.Thread(target=media_thread)
    t.start()
    t.join()
    service.close()
    for call_id, clip in clips.items():
        assert starts[call_id] == 1
        assert len(finals[call_id]) == 1
        assert char_errors(eval_rows[clip]["text"], finals[call_id][0])[0] <= 3


def test_utterances_that_end_together_are_decoded_in_one_batch_with_the_same_text(whisper, eval_rows):
    """Four streams' utterances reach the model at once: the first runs alone, the three that
    waited go in one batch, and each text is what a decode on its own gives."""
    import threading

    clips = [load_mono(EVAL / eval_rows[name]["file"], 16000)[0] for name in SAMPLE[:4]]
    alone = [whisper.decode(c).text for c in clips]
    runs_before = whisper.batches
    barrier, texts, errors = threading.Barrier(4), [None] * 4, []

    def decode(k: int, hotwords=None) -> None:
        try:
            barrier.wait()
            texts[k] = whisper.decode(clips[k], extra_hotwords=hotwords).text
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def run_all(hotwords) -> None:
        threads = [threading.Thread(target=decode, args=(k, hotwords[k])) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    run_all([None] * 4)
    assert not errors and texts == alone
    assert whisper.batches - runs_before < 4  # some waited and went together
    # Streams at different dialog steps have different hotwords (their prompts differ in length):
    # those never share a batch, and all are decoded.
    texts = [None] * 4
    run_all([None, ["满意", "不满意"], ["是的"], None])
    assert not errors and all(t is not None for t in texts)


def test_a_decode_that_fails_loses_that_utterance_not_the_stream(whisper, eval_rows, monkeypatch):
    samples, _ = load_mono(EVAL / eval_rows["callback-02"]["file"], 8000)
    samples = np.concatenate([samples, np.zeros(8000, np.float32)])
    rec = whisper.recognizer()
    real = whisper.decode
    calls = []

    def flaky(x, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model fault")
        return real(x, **kw)

    monkeypatch.setattr(whisper, "decode", flaky)
    events = []
    for _ in range(2):  # the same answer twice: the first decode fails, the second works
        for i in range(0, samples.size, 160):
            events.extend(rec.accept(AudioFrame(float_to_pcm16(samples[i:i + 160]), 8000)))
    finals = [e for e in events if e.is_final]
    assert rec.decode_errors == 1 and len(finals) == 2 and all(f.text for f in finals)  # retried at the end
