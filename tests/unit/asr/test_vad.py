"""The VAD segmenter's state machine, driven by a scripted detector (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from asr.vad import CHUNK, RATE, Segmenter, SpeechPause, SpeechStart, Utterance, VadConfig

CHUNK_S = CHUNK / RATE  # 32 ms


class ScriptedDetector:
    """Returns the next probabilities from a script, one per chunk (the SpeechDetector protocol)."""

    def __init__(self, script: list[float]) -> None:
        self.script = list(script)
        self.calls = 0

    def probabilities(self, chunks: np.ndarray) -> np.ndarray:
        self.calls += 1
        out, self.script = self.script[: len(chunks)], self.script[len(chunks):]
        return np.array(out + [0.0] * (len(chunks) - len(out)), dtype=np.float32)


def samples_for(n_chunks: int) -> np.ndarray:
    # Each chunk carries its own index so tests can see which chunks an utterance kept.
    return np.repeat(np.arange(n_chunks, dtype=np.float32), CHUNK)


def run(script: list[float], config: VadConfig | None = None, piece: int = 700) -> list:
    # The samples are chunk indices, not audio: the energy assist would read them as loud speech.
    seg = Segmenter(ScriptedDetector(script), config or VadConfig(assist_snr_db=0))
    audio = samples_for(len(script))
    events = []
    for i in range(0, audio.size, piece):  # odd-sized pieces: chunking must not depend on them
        events.extend(seg.feed(audio[i:i + piece]))
    return events + seg.flush()


def test_one_utterance_with_start_event_and_times():
    script = [0.0] * 20 + [0.9] * 30 + [0.0] * 30
    events = run(script)
    assert [type(e) for e in events] == [SpeechStart, SpeechPause, Utterance]
    start, pause, utt = events
    assert start.start == pytest.approx(20 * CHUNK_S, abs=1e-3)
    assert utt.end == pytest.approx(50 * CHUNK_S, abs=1e-3)  # speech end, not the end of the silence
    kept = np.unique(utt.samples)
    # Pre-roll: 0.3 s (9 chunks) before the 3 chunks that triggered; post-roll 0.2 s (6 chunks).
    assert kept[0] == 20 - 9 and kept[-1] == 50 + 6 - 1
    assert utt.start == pytest.approx(20 * CHUNK_S, abs=1e-3) == start.start
    assert not utt.forced


def test_short_pause_inside_a_sentence_does_not_split_it():
    script = [0.9] * 20 + [0.1] * 10 + [0.9] * 20 + [0.0] * 20  # 0.32 s pause < 0.8 s
    utts = [e for e in run(script) if isinstance(e, Utterance)]
    assert len(utts) == 1


def test_long_pause_splits_into_two_utterances():
    script = [0.9] * 20 + [0.1] * 30 + [0.9] * 20 + [0.0] * 30  # 0.96 s pause > 0.8 s
    events = run(script)
    assert [type(e).__name__ for e in events] == ["SpeechStart", "SpeechPause", "Utterance",
                                                  "SpeechStart", "SpeechPause", "Utterance"]


def test_a_click_is_announced_but_never_becomes_an_utterance():
    events = run([0.0] * 10 + [0.9] * 4 + [0.0] * 30)  # 128 ms < min_speech 200 ms
    assert [type(e) for e in events] == [SpeechStart]


def test_hysteresis_between_thresholds_keeps_speech_going():
    script = [0.9] * 10 + [0.4] * 40 + [0.0] * 20  # 0.4 is between neg_threshold and threshold
    utts = [e for e in run(script) if isinstance(e, Utterance)]
    assert len(utts) == 1 and utts[0].end == pytest.approx(50 * CHUNK_S, abs=1e-3)


def test_hang_up_mid_speech_flushes_the_utterance():
    events = run([0.9] * 30)
    assert isinstance(events[-1], Utterance) and not events[-1].forced


def test_long_monologue_is_cut_at_max_utterance():
    config = VadConfig(max_utterance=2.0)
    utts = [e for e in run([0.9] * 150, config) if isinstance(e, Utterance)]
    assert utts[0].forced and utts[0].end - utts[0].start == pytest.approx(2.0, abs=0.05)
    assert len(utts) >= 2


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        VadConfig(threshold=0.3, neg_threshold=0.5)
    with pytest.raises(ValueError):
        VadConfig(max_utterance=40)


def _tone_or_hiss(levels: list[float]) -> np.ndarray:
    """One chunk per level: a 300 Hz tone at that amplitude (0: the line's faint hiss)."""
    rng = np.random.default_rng(3)
    t = np.arange(CHUNK) / RATE
    return np.concatenate([a * np.sin(2 * np.pi * 300 * t) if a else rng.normal(0, 3e-4, CHUNK)
                           for a in levels]).astype(np.float32)


def test_energy_assist_hears_loud_speech_that_silero_scores_low():
    # Silero gave 0.2-0.4 to "是我" through G.711; on a quiet line such loud chunks count as speech.
    levels = [0.0] * 40 + [0.2] * 15 + [0.0] * 30
    script = [0.02] * 40 + [0.3] * 15 + [0.02] * 30
    seg = Segmenter(ScriptedDetector(script), VadConfig())
    events = seg.feed(_tone_or_hiss(levels)) + seg.flush()
    assert [type(e) for e in events] == [SpeechStart, Utterance]
    assert events[0].start == pytest.approx(40 * CHUNK_S, abs=1e-3)


def test_energy_assist_leaves_a_noisy_line_to_silero():
    # The same scores on chunks no louder than the line's noise: nothing is heard.
    levels = [0.2] * 85
    script = [0.02] * 40 + [0.3] * 15 + [0.02] * 30
    seg = Segmenter(ScriptedDetector(script), VadConfig())
    assert seg.feed(_tone_or_hiss(levels)) + seg.flush() == []


def test_assist_thresholds_are_checked():
    with pytest.raises(ValueError):
        VadConfig(assisted_threshold=0.5)


def test_a_pause_announces_the_utterance_as_it_will_be_cut():
    # 0.25 s of silence (8 chunks) after the speech: the pause carries the final utterance's
    # start, end and samples, so a decode started then is the decode of the utterance.
    script = [0.0] * 20 + [0.9] * 30 + [0.0] * 30
    pause, utt = [e for e in run(script) if isinstance(e, (SpeechPause, Utterance))]
    assert (pause.start, pause.end) == (utt.start, utt.end)
    assert np.array_equal(pause.samples, utt.samples)


def test_speech_after_a_pause_makes_a_longer_utterance_than_the_pause_said():
    script = [0.9] * 20 + [0.0] * 12 + [0.9] * 20 + [0.0] * 30  # 0.38 s pause: announced, not an end
    events = [e for e in run(script) if not isinstance(e, SpeechStart)]
    assert [type(e) for e in events] == [SpeechPause, SpeechPause, Utterance]
    first, second, utt = events
    assert first.end < second.end == utt.end and np.array_equal(second.samples, utt.samples)


def test_pauses_can_be_switched_off_and_must_come_before_the_end():
    script = [0.0] * 20 + [0.9] * 30 + [0.0] * 30
    assert [type(e) for e in run(script, VadConfig(assist_snr_db=0, speculate_after=0))] == [SpeechStart, Utterance]
    with pytest.raises(ValueError, match="speculate_after"):
        VadConfig(speculate_after=0.8)


def test_a_pause_that_one_feed_already_ended_is_not_announced():
    # A whole file fed at once: the pause's outcome is known, so no decode should start on it.
    script = [0.0] * 20 + [0.9] * 30 + [0.0] * 30
    seg = Segmenter(ScriptedDetector(script), VadConfig(assist_snr_db=0))
    events = seg.feed(samples_for(len(script))) + seg.flush()
    assert [type(e) for e in events] == [SpeechStart, Utterance]


class NumbedBySilence:
    """Like Silero over a silent line: after 2 s of silence it stops hearing speech until reset()."""

    def __init__(self) -> None:
        self.quiet = 0
        self.resets = 0

    def reset(self) -> None:
        self.quiet = 0
        self.resets += 1

    def probabilities(self, chunks: np.ndarray) -> np.ndarray:
        out = []
        for chunk in chunks:
            loud = float(np.abs(chunk).max()) > 0.05
            out.append(0.9 if loud and self.quiet < 63 else 0.0)
            self.quiet = 0 if loud and self.quiet < 63 else self.quiet + 1
        return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("piece", [320, 16000 * 20])  # a live stream's frames, and a whole file at once
def test_a_short_answer_after_a_long_silence_is_heard_because_the_detector_state_is_reset(piece):
    rng = np.random.default_rng(1)
    word = (0.3 * rng.standard_normal(int(0.4 * RATE))).astype(np.float32)  # "是。": 0.4 s
    audio = np.concatenate([np.zeros(12 * RATE, np.float32), word, np.zeros(2 * RATE, np.float32)])
    heard = {}
    for reset_after in (0.0, 2.0):
        detector = NumbedBySilence()
        seg = Segmenter(detector, VadConfig(assist_snr_db=0, reset_after_silence=reset_after))
        events = []
        for i in range(0, audio.size, piece):
            events.extend(seg.feed(audio[i:i + piece]))
        heard[reset_after] = [e for e in events + seg.flush() if isinstance(e, Utterance)]
    assert heard[0.0] == []  # the detector's state after 12 s of silence: the word is lost
    assert len(heard[2.0]) == 1 and heard[2.0][0].start == pytest.approx(12.0, abs=0.1)
