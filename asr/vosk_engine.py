"""Vosk engine: streaming Kaldi recognition with partials, word timestamps and per-step grammars.

Owns one ``vosk.Model`` per process, loaded from an explicit model directory only (Vosk's
by-language lookup would fetch a model from the internet at run time, which a deployment here cannot
do), and one ``KaldiRecognizer`` per call stream.
Endpointing is Vosk's own (the model's ``conf/model.conf`` trailing-silence rules): ``AcceptWaveform``
returning True ends an utterance. Vosk releases the GIL while decoding, so several decoding threads
of :mod:`asr.service` run in parallel on several cores. Runs on a decoding thread, never a media
thread or an event loop.

A Mandarin deployment installs vosk-model-cn-0.22 or vosk-model-small-cn-0.22 by path
(``callcenter models install --vosk-model DIR``); the tests use the Korean model from PyPI.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr.audio import StreamResampler, float_to_pcm16, pcm16_to_float
from callcenter.domain import OTHER_CHOICE, AnswerChoice, AudioFrame, ChoiceScore, TranscriptEvent, Word

logger = logging.getLogger(__name__)

UNK = "[unk]"


class VoskModelError(RuntimeError):
    """The directory is not a Vosk model or does not load."""


def check_model_dir(path: Path) -> None:
    """Raise :class:`VoskModelError` naming what a Vosk model directory lacks."""
    if not path.is_dir():
        raise VoskModelError(f"{path}: not a directory")
    problems = []
    if not (path / "am" / "final.mdl").is_file():
        problems.append("am/final.mdl")
    if not ((path / "graph" / "HCLG.fst").is_file() or (path / "graph" / "HCLr.fst").is_file()):
        problems.append("graph/HCLG.fst (or graph/HCLr.fst + Gr.fst)")
    if not (path / "conf" / "mfcc.conf").is_file():
        problems.append("conf/mfcc.conf")
    if problems:
        raise VoskModelError(f"{path} is not a Vosk model: missing {', '.join(problems)}")


def model_sample_rate(path: Path) -> int:
    """The rate the model's features expect (``--sample-frequency`` in conf/mfcc.conf, default 16000)."""
    text = (path / "conf" / "mfcc.conf").read_text(errors="replace")
    m = re.search(r"--sample-frequency=(\d+)", text)
    return int(m.group(1)) if m else 16000


class VoskEngine:
    """A Vosk model shared by every stream of the process."""

    name = "vosk"

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        check_model_dir(self.model_dir)
        import vosk

        vosk.SetLogLevel(-1)  # Kaldi logs every grammar word it does not know to stderr
        started = time.perf_counter()
        try:
            self._model = vosk.Model(str(self.model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise VoskModelError(f"cannot load the Vosk model in {self.model_dir}: {exc}") from exc
        self.sample_rate = model_sample_rate(self.model_dir)
        self._lock = threading.Lock()
        # Grammars get "[unk]" so out-of-grammar speech is not forced onto a phrase; the Korean
        # PyPI model has no such word (Vosk would warn and drop it), the Mandarin models do.
        self._knows_unk = self._model.vosk_model_find_word(UNK) >= 0
        logger.info("Vosk model loaded from %s in %.1f s", self.model_dir, time.perf_counter() - started)

    def unknown_words(self, phrases: Sequence[str]) -> list[str]:
        """Words of ``phrases`` that the model's vocabulary lacks (a grammar silently drops them)."""
        words = {w for p in phrases for w in p.split() if w != UNK}
        with self._lock:
            return sorted(w for w in words if self._model.vosk_model_find_word(w) < 0)

    def grammar_json(self, phrases: Sequence[str]) -> str:
        cleaned = [" ".join(p.split()) for p in phrases if p and p.strip()]
        if not cleaned:
            raise ValueError("grammar: no phrases")
        unknown = self.unknown_words(cleaned)
        if unknown:
            logger.warning("grammar words not in the Vosk vocabulary (ignored by the decoder): %s",
                           ", ".join(unknown[:20]))
        if UNK not in cleaned and self._knows_unk:
            cleaned.append(UNK)
        return json.dumps(cleaned, ensure_ascii=False)

    def kaldi_recognizer(self, grammar: Sequence[str] | None):
        import vosk

        if grammar:
            rec = vosk.KaldiRecognizer(self._model, self.sample_rate, self.grammar_json(grammar))
        else:
            rec = vosk.KaldiRecognizer(self._model, self.sample_rate)
        rec.SetWords(True)
        return rec

    def recognizer(self, *, grammar: Sequence[str] | None = None, partials: bool = True) -> VoskRecognizer:
        return VoskRecognizer(self, grammar=grammar, partials=partials)


class VoskRecognizer:
    """One stream. A grammar change takes effect at the next utterance boundary."""

    def __init__(self, engine: VoskEngine, grammar: Sequence[str] | None = None, partials: bool = True) -> None:
        self.engine = engine
        self.partials = partials
        self._grammar = tuple(grammar) if grammar else None
        self._base_grammar = self._grammar  # set_grammar's phrases; the choices' phrases are added
        self._choices: tuple[AnswerChoice, ...] | None = None
        self._choices_live: tuple[AnswerChoice, ...] | None = None  # those of the recognizer in use
        self._rec = engine.kaldi_recognizer(self._grammar)
        self._pending_grammar: tuple[str, ...] | None | bool = False  # False: no change pending
        self._resampler: StreamResampler | None = None
        self._offset = 0.0  # stream seconds at which the current KaldiRecognizer started
        self._fed = 0  # samples fed at the model rate
        self._partial = ""
        self._finished = False

    def set_grammar(self, phrases: Sequence[str] | None) -> None:
        self._base_grammar = tuple(phrases) if phrases else None
        self._apply()

    def set_choices(self, choices: Sequence[AnswerChoice] | None) -> None:
        """Closed-question answers: their phrases join the grammar, and a final that is one of them
        scores its label with the decoder's word confidence (the rest goes to "other")."""
        self._choices = tuple(choices) if choices else None
        self._apply()

    def _apply(self) -> None:
        grammar = self._base_grammar
        if self._choices:
            grammar = tuple(dict.fromkeys([*(grammar or ()), *(p for c in self._choices for p in c.phrases)]))
        if grammar is not None:
            self.engine.grammar_json(grammar)  # validate now, fail where the caller can see it
        if self._partial:
            self._pending_grammar = grammar  # an utterance is under way: switch after it
        else:
            self._switch(grammar)

    def _switch(self, grammar: tuple[str, ...] | None) -> None:
        self._grammar = grammar
        self._choices_live = self._choices
        self._rec = self.engine.kaldi_recognizer(grammar)
        self._offset = self._fed / self.engine.sample_rate
        self._pending_grammar = False

    def accept(self, frame: AudioFrame) -> list[TranscriptEvent]:
        if self._finished:
            raise RuntimeError("recognizer already finished")
        samples = pcm16_to_float(frame.audio)
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels)[:, 0]
        if self._resampler is None:
            self._resampler = StreamResampler(frame.sample_rate, self.engine.sample_rate)
        elif self._resampler.rate_in != frame.sample_rate:
            raise ValueError(f"sample rate changed mid-stream: {self._resampler.rate_in} -> {frame.sample_rate}")
        return self.accept_samples(self._resampler.process(samples))

    def accept_samples(self, samples: np.ndarray) -> list[TranscriptEvent]:
        """Feed float32 samples at the model's rate."""
        if samples.size == 0:
            return []
        self._fed += samples.size
        if self._rec.AcceptWaveform(float_to_pcm16(samples)):
            return self._final(json.loads(self._rec.Result()))
        if not self.partials:
            return []
        text = self._clean(json.loads(self._rec.PartialResult()).get("partial", ""))
        if text and text != self._partial:
            self._partial = text
            now = self._fed / self.engine.sample_rate
            return [TranscriptEvent(text=text, is_final=False, start=self._offset, end=round(now, 3),
                                    confidence=0.0)]
        return []

    def finish(self) -> list[TranscriptEvent]:
        if self._finished:
            return []
        self._finished = True
        return self._final(json.loads(self._rec.FinalResult()))

    def _score_choices(self, text: str, confidence: float) -> tuple[ChoiceScore, ...]:
        """The grammar decoder's answer as choice probabilities: the label of the phrase it found
        gets the word confidence, "other" the rest (all of it for [unk] or a non-answer phrase)."""
        if not self._choices_live:
            return ()
        said = "".join(text.split())
        label = next((c.label for c in self._choices_live if any("".join(p.split()) == said for p in c.phrases)),
                     None) if said else None
        p = min(1.0, max(0.0, confidence)) if label is not None else 0.0
        out = [ChoiceScore(c.label, round(p, 4) if c.label == label else 0.0) for c in self._choices_live]
        out.append(ChoiceScore(OTHER_CHOICE, round(1.0 - p, 4)))
        return tuple(sorted(out, key=lambda c: -c.probability))

    @staticmethod
    def _clean(text: str) -> str:
        return " ".join(w for w in text.split() if w != UNK)

    def _final(self, result: dict) -> list[TranscriptEvent]:
        had_speech = bool(self._partial)
        self._partial = ""
        words = tuple(
            Word(text=w["word"], start=round(self._offset + w["start"], 3), end=round(self._offset + w["end"], 3),
                 confidence=round(float(w.get("conf", 1.0)), 3))
            for w in result.get("result", []) if w["word"] != UNK
        )
        unk_only = not words and UNK in result.get("text", "")
        events = []
        if words:
            text = " ".join(w.text for w in words)
            confidence = round(float(np.mean([w.confidence for w in words])), 3)
            events.append(TranscriptEvent(text=text, is_final=True, start=words[0].start, end=words[-1].end,
                                          confidence=confidence, words=words,
                                          choices=self._score_choices(text, confidence)))
        elif unk_only or had_speech:
            # Speech that matched nothing (out of grammar): tell the dialog to re-prompt.
            now = round(self._fed / self.engine.sample_rate, 3)
            events.append(TranscriptEvent(text="", is_final=True, start=self._offset, end=now, confidence=0.0,
                                          choices=self._score_choices("", 0.0)))
        if self._pending_grammar is not False:
            self._switch(self._pending_grammar)  # type: ignore[arg-type]
        return events
