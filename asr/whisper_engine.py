"""Whisper engine: faster-whisper (CTranslate2, int8 on CPU) behind the :class:`asr.Recognizer` protocol.

Whisper is not a streaming model, so each call stream runs the Silero VAD segmenter
(:mod:`asr.vad`) and every finished utterance is decoded as one piece. The engine owns the model (one
per process, loaded by explicit directory), the decoding options, and the guards against Whisper's
known failure modes on short telephone clips. Decoding is serialised: one decode at a time already
uses all ``cpu_threads`` cores, so a second concurrent decode would only contend for them; the
utterances that wait meanwhile are decoded together in the next batch.
:meth:`WhisperEngine.decode` runs on whichever thread feeds a recognizer (a decoding thread of
:mod:`asr.service`, or the CLI's main thread); never call it from a media thread or an event loop.

Decoding calls CTranslate2 directly instead of ``WhisperModel.transcribe``: that lets the encoder run
on the utterance's length instead of a fixed 30-second window (``audio_context``), which is where
most of a short clip's decoding time went (5x faster on the evaluation subset, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from asr import bandext, vocabulary
from asr.audio import StreamResampler, pcm16_to_float
from asr.textnorm import normalize_for_scoring, tidy_chinese, to_simplified
from asr.vad import RATE, Segmenter, SileroDetector, SpeechPause, SpeechStart, VadConfig
from callcenter.domain import OTHER_CHOICE, AnswerChoice, AudioFrame, ChoiceScore, TranscriptEvent

logger = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
FRAMES_PER_SECOND = 100  # Whisper's log-mel hop is 10 ms
FULL_CONTEXT = 3000  # 30 s, the window Whisper was trained on

# Phrases that Whisper learnt from subtitle credits and produces on silence or noise (seen on
# Mandarin): a transcript containing one is dropped.
HALLUCINATION_MARKERS = (
    "字幕", "订阅", "点赞", "打赏", "转发", "谢谢观看", "感谢观看", "明镜", "栏目", "amara", "请不吝",
    "下集", "本期视频", "优优独播", "by索兰娅",
)


class WhisperModelError(RuntimeError):
    """The model directory is missing files or cannot be loaded."""


@dataclass(frozen=True)
class WhisperOptions:
    """Decoding options. The defaults are the measured best on the project's evaluation set
    (docs/benchmarks.md, ASR section)."""

    language: str = "zh"
    beam_size: int = 5
    cpu_threads: int = 2
    prompt: str | None = vocabulary.PROMPT
    hotwords: str | None = vocabulary.HOTWORDS
    # The prompt while the answers are a 1-5 score (set_choices with labels 1..5); None: ``prompt``.
    # Off: vocabulary.SCORE5_PROMPT named the right score more often in persona-style answers, but it
    # also wrote scores nobody said ("三分三分" for 满分, "四分" for 挺满意的) and looped on parts of
    # answers, holding the model; with the answers scored against the audio the dialog settled on
    # 116 of 149 tune scores with it, 120 without (docs/benchmarks.md, session 11).
    score5_prompt: str | None = None
    # Encoder input length: the utterance plus this margin, at least ``min_context`` seconds, at most
    # 30 s. None: always 30 s (stock Whisper).
    context_margin: float | None = 1.0
    min_context: float = 8.0
    # With the prompt, one-syllable answers (对) score no-speech 0.65; the VAD has already said speech.
    no_speech_threshold: float = 0.75
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # Utterances quieter than this (RMS, dBFS) are not decoded: Whisper writes text on near-silence.
    silence_dbfs: float = -55.0
    lexicon: bool = True  # snap near-homophones to domain terms (asr.lexicon)
    # Rescore the beam's n-best with a word LM (asr.lm): total = log P_whisper + lm_weight * log P_lm.
    lm_weight: float = 0.1
    # Map narrowband (telephone) utterances' features towards wideband ones (asr.bandext).
    band_extension: bool = True
    # Closed answers (set_choices): each phrase's log-probability given the audio (its tokens and the
    # end of text), divided by its length in characters ** choice_length_norm, is a score s; a label
    # gets sum(exp(s / choice_temperature)) over its phrases, "other" exp((s_free - choice_other_margin)
    # / choice_temperature) for the free transcript when it is none of the phrases. Tuned on the
    # closed-answer tuning split (docs/data-card-closed-answers.md, docs/benchmarks.md).
    choice_length_norm: float = 0.5
    choice_temperature: float = 1.0
    choice_other_margin: float = 8.0
    # Encoder positions (20 ms each) the answers are scored on beyond the utterance's own; None: the
    # whole decoding context. Each forced decode attends to its own copy of the encoder output, so
    # fewer positions cost less, but Whisper reads a clip cut close to its end badly (三分 scored
    # -21 with 25 positions of margin, -7 with the 8 s context).
    choice_context_margin: int | None = None
    # Domain hotwords (保养 钣喷 刹车片 ...) while a closed question is open: off, since a one-second
    # answer was transcribed as one of them (五分 -> 钣喷, 八分吧 -> 刹车片); the step's phrases stay.
    closed_domain_hotwords: bool = False
    # Scoring is skipped where it cannot change the answer, to keep its cost (about 0.5 s per
    # utterance on 2 cores) off most turns: the transcript is one of the phrases word for word (a
    # clear 五分), or longer than this many characters (a sentence no short phrase fits: the scores
    # all go to "other" and the dialog reads the words).
    choice_skip_longer_than: int = 10
    # ... but a transcript that is an answer word for word is scored anyway when the decoder itself
    # doubted it (its mean token probability, ``Decoded.confidence``, below this): a bare 五分 on a
    # bad line came back as 二分 or 一分 at 0.12-0.23, where right ones mostly came back above 0.3.
    choice_doubt_below: float = 0.5
    vad: VadConfig = field(default_factory=VadConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.beam_size <= 10:
            raise ValueError(f"beam_size {self.beam_size}: expected 1 to 10")
        if not 1 <= self.cpu_threads <= 64:
            raise ValueError(f"cpu_threads {self.cpu_threads}: expected 1 to 64")


@dataclass(frozen=True)
class Decoded:
    """One utterance's decoding: tidy text (empty when rejected) and why it was rejected."""

    text: str
    confidence: float
    avg_logprob: float
    no_speech_prob: float
    raw_text: str = ""
    rejected: str | None = None
    seconds: float = 0.0  # wall time of the model run that decoded it (shared by a batch)
    choices: tuple[ChoiceScore, ...] = ()  # closed answers' probabilities, best first (set_choices)
    phrase_scores: tuple[tuple[str, str, float, int], ...] = ()  # (label, phrase, log-prob, chars); "other"
    choice_seconds: float = 0.0  # wall time of scoring the answers (shared by a batch)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_REPEAT = re.compile(r"(.{1,8}?)\1{4,}")


def collapse_repeats(text: str) -> str:
    """Runs of five or more copies of the same 1-8 character unit -> one copy (a decoding loop;
    people say 对对对 or 好的好的, not five in a row)."""
    return _REPEAT.sub(r"\1", text)


def hallucination_reason(text: str, avg_logprob: float, no_speech_prob: float, options: WhisperOptions,
                         prompt: str | None) -> str | None:
    """Why ``text`` should not be trusted, or None. ``prompt`` is the prompt this decode used."""
    norm = normalize_for_scoring(text)
    if not norm:
        return "empty"
    if no_speech_prob > options.no_speech_threshold and avg_logprob < options.logprob_threshold:
        return "no speech"
    if compression_ratio(text) > options.compression_ratio_threshold:
        return "repetitive"
    lowered = text.lower()
    if any(marker in lowered for marker in HALLUCINATION_MARKERS):
        return "subtitle artefact"
    for source in (prompt, options.hotwords):
        if source and len(norm) >= 4 and norm in normalize_for_scoring(source):
            return "prompt echo"
    if prompt and options.hotwords and _made_of_terms(norm, options.hotwords.split()):
        # Nothing but domain hotwords ("钣喷异响" for a short "顾问还可以", "保养" for 五分): the
        # decoder's context, not the customer; decoded again without it.
        return "prompt echo"
    return None


def _made_of_terms(text: str, terms: Sequence[str]) -> bool:
    """True when ``text`` is one or more of ``terms`` back to back."""
    terms = [normalize_for_scoring(t) for t in terms if t]
    ends = {0}
    for i in range(len(text)):
        if i in ends:
            ends.update(i + len(t) for t in terms if t and text.startswith(t, i))
    return bool(text) and len(text) in ends


def calibrate(phrase_scores: Sequence[tuple[str, str, float, int]], labels: Sequence[str],
              options: WhisperOptions) -> tuple[ChoiceScore, ...]:
    """Choice probabilities, best first, from ``(label, phrase, log-probability, characters)`` of the
    answers' phrases and of the free transcript (label ``"other"``); see :class:`WhisperOptions`."""
    o = options
    weights: dict[str, list[float]] = {label: [] for label in labels}
    weights.setdefault(OTHER_CHOICE, [])
    for label, _, logprob, chars in phrase_scores:
        s = logprob / chars ** o.choice_length_norm
        if label == OTHER_CHOICE:
            s -= o.choice_other_margin
        weights.setdefault(label, []).append(s / o.choice_temperature)
    flat = [v for vs in weights.values() for v in vs]
    if not flat:
        return ()
    top = max(flat)
    mass = {label: sum(math.exp(v - top) for v in vs) for label, vs in weights.items()}
    total = sum(mass.values())
    return tuple(sorted((ChoiceScore(label, round(m / total, 4)) for label, m in mass.items()),
                        key=lambda c: -c.probability))


_NUMERALS = frozenset("零一二两三四五六七八九十")


def _is_score5(choices: Sequence[AnswerChoice]) -> bool:
    labels = {c.label for c in choices}
    return {"1", "2", "3", "4", "5"} <= labels and not labels & {"0", "6", "10"}


def _names_one_score(free: str, phrases: Sequence[tuple[str, str]]) -> bool:
    """``free`` names one score, once, among the answers' ``(label, phrase)`` (all normalised) made
    of a numeral and more (五分, not a lone 五; a phrase inside a longer one found aside): "那肯定五分",
    "差不多四分打".
    Scoring the bare phrases against such an answer only spreads it over "other" (on the
    closed-answer tuning clips that name one score: right 8 of 17 with the scores, 12 of 17 on the
    words alone, as many wrong). A score said twice ("三分三分", "二分二分") is the decoder repeating
    itself on a sound it could not place, and on a 0-10 scale 十分 is also "very" (十分满意): the
    audio is asked for both."""
    found = {(q, label) for label, q in phrases
             if label != OTHER_CHOICE and len(q) > 1 and q in free and _NUMERALS & set(q)}
    found = {(q, label) for q, label in found if not any(q != other and q in other for other, _ in found)}
    return len(found) == 1 and free.count(next(iter(found))[0]) == 1


MAX_BATCH = 4  # a worker process holds at most 4 calls
# Tokens a second of speech can hold, generously (Mandarin runs at 4-6 characters a second).
MAX_TOKENS_PER_SECOND = 15
_DECODE_FAILED = Decoded("", 0.0, -10.0, 1.0, rejected="decode error")


@dataclass(eq=False)
class _Request:
    """An utterance waiting for the model, and what became of it."""

    samples: np.ndarray
    hotwords: str | None
    choices: tuple[AnswerChoice, ...] | None = None
    prompt: str | None = None
    result: Decoded | None = None
    error: BaseException | None = None


class WhisperEngine:
    """Whisper model loaded once per process; thread-safe; hands out one recognizer per stream."""

    name = "whisper"
    sample_rate = RATE  # what accept_samples() takes

    def __init__(self, model_dir: str | Path, options: WhisperOptions | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.options = options or WhisperOptions()
        missing = [f for f in MODEL_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise WhisperModelError(
                f"Whisper model directory {self.model_dir} lacks {', '.join(missing)}: "
                "run `callcenter models install`")
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        started = time.perf_counter()
        try:
            self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8",
                                       cpu_threads=self.options.cpu_threads, num_workers=1)
        except (RuntimeError, ValueError, OSError) as exc:
            raise WhisperModelError(f"cannot load the Whisper model in {self.model_dir}: {exc}") from exc
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual,
                                    task="transcribe", language=self.options.language)
        # One decode at a time (it already uses every cpu_threads core); utterances that arrive
        # meanwhile wait in _waiting and go together in the next batch.
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: list[_Request] = []
        self.batches = 0  # model runs, and the utterances they decoded (> batches: batching helped)
        self.batched_utterances = 0
        self._lexicon = None
        self._lm = None
        if self.options.lm_weight > 0:
            from asr.lm import WordLM

            self._lm = WordLM(vocabulary.DOMAIN_TERMS)
        if self.options.lexicon:
            from asr.lexicon import Lexicon

            self._lexicon = Lexicon(vocabulary.DOMAIN_TERMS)
        logger.info("Whisper model loaded from %s in %.1f s (int8, %d threads)", self.model_dir,
                    time.perf_counter() - started, self.options.cpu_threads)

    def recognizer(self, *, grammar: Sequence[str] | None = None, partials: bool = True) -> WhisperRecognizer:
        return WhisperRecognizer(self, grammar=grammar, partials=partials)

    # -- decoding -------------------------------------------------------------------------------

    def _context_frames(self, n_frames: int) -> int:
        o = self.options
        if o.context_margin is None:
            return FULL_CONTEXT
        want = max(n_frames + o.context_margin * FRAMES_PER_SECOND, o.min_context * FRAMES_PER_SECOND)
        return int(min(FULL_CONTEXT, 2 * math.ceil(want / 2)))  # even: the encoder's conv has stride 2

    def _features(self, samples: np.ndarray) -> np.ndarray:
        feats = self._model.feature_extractor(samples)
        if self.options.band_extension and bandext.is_narrowband(samples):
            feats = bandext.map_features(feats)
        frames = min(feats.shape[-1], FULL_CONTEXT)
        out = np.zeros((feats.shape[0], self._context_frames(frames)), dtype=np.float32)
        # Zero padding in feature space, as faster-whisper's own pad_or_trim does.
        out[:, :frames] = feats[:, :frames]
        return out

    def _prompt_tokens(self, prompt: str | None, hotwords: str | None) -> list[int]:
        previous = self._tokenizer.encode(" " + prompt.strip()) if prompt else []
        return self._model.get_prompt(self._tokenizer, previous, without_timestamps=True, hotwords=hotwords)

    def decode(self, samples: np.ndarray, *, extra_hotwords: Sequence[str] | None = None,
               choices: Sequence[AnswerChoice] | None = None, score_choices: bool = True) -> Decoded:
        """Transcribe one utterance (float32 mono 16 kHz, at most 30 s); with ``choices`` (a closed
        question's answers) also score each answer against the audio (``Decoded.choices``), unless
        ``score_choices`` is off (the prompt and hotwords are still the closed question's; a decode
        at a pause that may be thrown away: :meth:`score_choices` adds them when it is kept).

        Any thread may call it. Utterances of other streams that wait while a decode runs are
        decoded together in the next batch (up to :data:`MAX_BATCH`): when several customers stop
        talking at once, all get their text after one batched decode instead of one after another.
        """
        samples, rejected = self._screen(samples)
        if rejected is not None:
            return rejected
        req = _Request(samples, self._hotwords(extra_hotwords, bool(choices)),
                       tuple(choices) if choices and score_choices else None, self._prompt(choices))
        with self._cond:
            self._waiting.append(req)
            while req.result is None and req.error is None and self._busy:
                self._cond.wait()
            if req.result is None and req.error is None:
                self._busy = True  # this thread decodes its own and the others' waiting utterances
                # Same hotwords and prompt only: CTranslate2 needs <|startoftranscript|> at the same
                # position in every prompt of a batch, and they differ in length from step to step.
                batch = [req] + [r for r in self._waiting if r is not req and r.hotwords == req.hotwords
                                 and r.prompt == req.prompt][: MAX_BATCH - 1]
                for r in batch:
                    self._waiting.remove(r)
            else:
                batch = []
        if batch:
            try:
                decoded: list[Decoded] | BaseException = self._decode_now([r.samples for r in batch],
                                                                          [r.hotwords for r in batch],
                                                                          [r.choices for r in batch], req.prompt)
            except BaseException as exc:  # noqa: BLE001 - every waiter of the batch gets it, then it propagates
                decoded = exc
            with self._cond:
                for k, r in enumerate(batch):
                    if isinstance(decoded, BaseException):
                        r.error = decoded
                    else:
                        r.result = decoded[k]
                self._release()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def score_choices(self, samples: np.ndarray, decoded: Decoded, choices: Sequence[AnswerChoice]) -> Decoded:
        """``decoded`` (a :meth:`decode` of ``samples`` with ``score_choices`` off) with the answers
        scored against the audio, as :meth:`decode` would have; the encoder runs again (about a
        tenth of the scoring's cost)."""
        import ctranslate2

        samples, rejected = self._screen(samples)
        if rejected is not None or not choices:
            return decoded
        with self._holding():
            encoded = self._model.model.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(self._features(samples)[None])), to_cpu=False)
            return self._with_choices(encoded, [samples], [decoded], [tuple(choices)])[0]

    def decode_batch(self, utterances: Sequence[np.ndarray], *, extra_hotwords: Sequence[str] | None = None,
                     choices: Sequence[AnswerChoice] | None = None) -> list[Decoded]:
        """Transcribe several utterances in one encoder/decoder batch (they are padded to the longest).

        Offline use (evaluation of many files); live streams call :meth:`decode`, which batches the
        utterances that wait for the model by itself.
        """
        results: list[Decoded | None] = [None] * len(utterances)
        todo = []
        for i, samples in enumerate(utterances):
            samples, rejected = self._screen(samples)
            if rejected is not None:
                results[i] = rejected
            else:
                todo.append((i, samples))
        if not todo:
            return results  # type: ignore[return-value]
        hotwords = self._hotwords(extra_hotwords, bool(choices))
        with self._holding():
            decoded = self._decode_now([s for _, s in todo], [hotwords] * len(todo),
                                       [tuple(choices) if choices else None] * len(todo), self._prompt(choices))
        for (i, _), d in zip(todo, decoded):
            results[i] = d
        return results  # type: ignore[return-value]

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """The model for this thread alone (waiting while a decode runs), given back at the end."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._release()

    def _release(self) -> None:
        """The model is free again: wake the waiters (hold ``_cond``)."""
        self._busy = False
        self._cond.notify_all()

    def _screen(self, samples: np.ndarray) -> tuple[np.ndarray, Decoded | None]:
        """The samples to decode (at most 30 s), or the rejection of a clip too short or too quiet."""
        samples = np.asarray(samples, dtype=np.float32)
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
        if samples.size < RATE // 10 or 20 * math.log10(max(rms, 1e-10)) < self.options.silence_dbfs:
            return samples, Decoded("", 0.0, -10.0, 1.0, rejected="silence")
        return samples[: FULL_CONTEXT * 160], None

    def _prompt(self, choices: Sequence[AnswerChoice] | None) -> str | None:
        """The prompt of a decode: :attr:`WhisperOptions.score5_prompt` while the answers are a 1-5
        score (Whisper writes the score it heard far more often after a question naming the five),
        else :attr:`WhisperOptions.prompt`."""
        if self.options.score5_prompt and choices and _is_score5(choices):
            return self.options.score5_prompt
        return self.options.prompt

    def _hotwords(self, extra: Sequence[str] | None, closed: bool = False) -> str | None:
        """The hotwords of a decode: the step's phrases before the domain terms; for a closed
        question (``closed``) with ``closed_domain_hotwords`` off, the step's phrases alone."""
        hotwords = None if closed and not self.options.closed_domain_hotwords else self.options.hotwords
        if extra:
            hotwords = " ".join([*extra, hotwords or ""]).strip()
        return hotwords

    def _decode_now(self, batch: list[np.ndarray], hotwords: list[str | None],
                    choices: list[tuple[AnswerChoice, ...] | None] | None = None,
                    prompt: str | None = None) -> list[Decoded]:
        """One batch through the model (the caller holds the engine: ``_busy``); ``prompt``: the
        batch's (default :attr:`WhisperOptions.prompt`)."""
        o = self.options
        prompt = prompt or o.prompt
        choices = choices or [None] * len(batch)
        started = time.perf_counter()
        decoded = self._run(batch, prompt, hotwords, choices)
        retry = [k for k, d in enumerate(decoded) if d.rejected == "prompt echo"]
        if retry and prompt:
            # The prompt came back as the transcript: decode those again with no prompt at all.
            again = self._run([batch[k] for k in retry], None, [None] * len(retry), [choices[k] for k in retry])
            for k, d in zip(retry, again):
                decoded[k] = d
        elapsed = time.perf_counter() - started
        self.batches += 1
        self.batched_utterances += len(batch)
        return [replace(d, seconds=elapsed) for d in decoded]

    def _run(self, batch: list[np.ndarray], prompt: str | None, hotwords: list[str | None],
             choices: list[tuple[AnswerChoice, ...] | None] | None = None) -> list[Decoded]:
        import ctranslate2

        o = self.options
        feats = [self._features(s) for s in batch]
        width = max(f.shape[-1] for f in feats)
        stacked = np.zeros((len(feats), feats[0].shape[0], width), dtype=np.float32)
        for k, f in enumerate(feats):
            stacked[k, :, : f.shape[-1]] = f
        encoder_output = self._model.model.encode(ctranslate2.StorageView.from_array(stacked), to_cpu=False)
        if len(set(hotwords)) > 1:
            raise ValueError("one batch, one set of hotwords (the prompts must be of equal length)")
        prompts = {h: self._prompt_tokens(prompt, h) for h in set(hotwords)}
        n_best = o.beam_size if self._lm is not None else 1
        # No more tokens than the longest utterance can hold: a decoder caught in a loop ("三分、三分、
        # 三分……" after the score prompt) stops there instead of at 448 tokens, which held the model
        # (and every call waiting for it) for 7.5 s.
        seconds = max(b.size for b in batch) / RATE
        max_length = min(self._model.max_length,
                         max(len(p) for p in prompts.values()) + int(MAX_TOKENS_PER_SECOND * seconds) + 16)
        results = self._model.model.generate(
            encoder_output, [prompts[h] for h in hotwords], beam_size=o.beam_size, patience=1.0,
            num_hypotheses=n_best, length_penalty=1.0, max_length=max_length, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
        )
        out = []
        for result in results:
            best = None
            for seq, score in zip(result.sequences_ids, result.scores):
                tokens = [t for t in seq if t < self._tokenizer.eot]
                raw = self._tokenizer.decode(tokens).strip()
                cum_logprob = score * len(tokens)  # generate() returns the length-normalised score
                total = cum_logprob
                if self._lm is not None:
                    total += o.lm_weight * self._lm.score(to_simplified(raw))
                if best is None or total > best[0]:
                    best = (total, raw, cum_logprob / (len(tokens) + 1))
            _, raw, avg_logprob = best
            reason = hallucination_reason(raw, avg_logprob, result.no_speech_prob, o, prompt)
            text = "" if reason else self._postprocess(raw)
            confidence = 0.0 if reason else float(min(1.0, math.exp(avg_logprob)))
            out.append(Decoded(text, confidence, avg_logprob, result.no_speech_prob, raw_text=raw, rejected=reason))
        if choices and any(choices):
            out = self._with_choices(encoder_output, batch, out, choices)
        return out

    # -- closed answers ---------------------------------------------------------------------------

    def _with_choices(self, encoder_output, batch: list[np.ndarray], decoded: list[Decoded],
                      choices: list[tuple[AnswerChoice, ...] | None]) -> list[Decoded]:
        """Score each utterance's expected answers against its own encoder output (computed once for
        the transcript): every phrase's tokens and the end of text are forced through the decoder,
        all phrases of all utterances of the batch in one call."""
        started = time.perf_counter()
        encoded = np.asarray(encoder_output)  # (batch, frames, width): the encoder ran once
        items: list[tuple[int, list[tuple[str, str]]]] = []  # (utterance, [(label, text)])
        for k, (d, cs) in enumerate(zip(decoded, choices)):
            if not cs:
                continue
            texts = [(c.label, p) for c in cs for p in c.phrases]
            free = normalize_for_scoring(d.raw_text)
            normalized = [(label, normalize_for_scoring(p)) for label, p in texts]
            phrases = {p for _, p in normalized}
            # A lone numeral ("四" for a spoken 三分) is a phrase too, but the weakest of readings: it is
            # scored, so that a "no" to it leaves the answer's next likeliest score to ask about.
            lone_numeral = len(free) == 1 and free in _NUMERALS
            sure = d.confidence >= self.options.choice_doubt_below
            if d.text and (free in phrases and not lone_numeral and sure
                           or sure and _is_score5(cs) and _names_one_score(free, normalized)
                           or len(free) > self.options.choice_skip_longer_than):
                continue  # the words decide: no choices, as for an engine that cannot score
            if free and free not in phrases:
                texts.append((OTHER_CHOICE, to_simplified(d.raw_text).strip()))
            items.append((k, texts))
        if not items:
            return decoded
        margin = self.options.choice_context_margin
        if margin is not None:
            encoded = encoded[:, : max(min(encoded.shape[1], math.ceil(batch[k].size / 320) + margin) for k, _ in items)]
        scored = self._force_score(encoded, items)
        seconds = time.perf_counter() - started
        out = list(decoded)
        for (k, texts), scores in zip(items, scored):
            phrase_scores = tuple((label, text, lp, n) for (label, text), (lp, n) in zip(texts, scores))
            out[k] = replace(decoded[k], choices=calibrate(phrase_scores, [c.label for c in choices[k]], self.options),
                             phrase_scores=phrase_scores, choice_seconds=seconds)
        return out

    def _force_score(self, encoded: np.ndarray, items: list[tuple[int, list[tuple[str, str]]]]
                     ) -> list[list[tuple[float, int]]]:
        """(log P(text, end of text | audio), characters) of every text of every item.

        ``items``: (row of ``encoded``, [(label, text)]). The texts are scored with no prompt, so
        every phrase is on the same footing (a prompt listing the answers made Whisper copy from it:
        二分 at -0.5 on a clear 五分). A text that is a prefix of another one of the same item (五 of
        五分) is read off the longer one's forced decode (its end-of-text probability sits on that
        decode's next row), so only the longest texts run through the decoder; runs of similar
        length share one decoder call (a call runs as many steps as its longest run needs)."""
        import ctranslate2

        tok = self._tokenizer
        start = self._prompt_tokens(None, None)
        runs: list[tuple[int, list[int]]] = []  # (item index, tokens) forced through the decoder
        where: list[list[tuple[int, int]]] = []  # per item, per text: (run, length in tokens)
        for i, (_, texts) in enumerate(items):
            seqs = [tok.encode(text) for _, text in texts]
            mine: dict[tuple[int, ...], int] = {}
            for seq in sorted(seqs, key=len, reverse=True):
                key = tuple(seq)
                if key in mine:
                    continue
                longer = next((r for r_key, r in mine.items() if r_key[: len(key)] == key), None)
                if longer is None:
                    runs.append((i, seq))
                    longer = len(runs) - 1
                mine[key] = longer
            where.append([(mine[tuple(seq)], len(seq)) for seq in seqs])
        groups: dict[int, list[int]] = {}  # by length: 1, 2-3, 4-7, 8-15 ... tokens
        for r, (_, seq) in enumerate(runs):
            groups.setdefault(len(seq).bit_length(), []).append(r)
        cumulative: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for members in groups.values():
            longest = max(len(runs[r][1]) for r in members)
            features = ctranslate2.StorageView.from_array(
                np.ascontiguousarray(encoded[[items[runs[r][0]][0] for r in members]]))
            results = self._model.model.generate(
                features, [start + runs[r][1] for r in members], beam_size=1,
                # CTranslate2 4.x reaches the row after a forced prefix of n tokens only at a
                # max_length of about len(start) + 2n - 2 (measured); rows past it stop at the end of text.
                max_length=len(start) + 2 * longest + 2,
                return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])
            for r, result in zip(members, results):
                seq = runs[r][1]
                logits = np.asarray(result.logits[0], dtype=np.float32)[: len(seq) + 1]
                if logits.shape[0] < len(seq) + 1:
                    raise RuntimeError(f"forced decode gave {logits.shape[0]} rows for {len(seq)} tokens")
                top = logits.max(axis=1, keepdims=True)
                logp = logits - (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))
                tokens = np.concatenate([[0.0], np.cumsum(logp[np.arange(len(seq)), seq])])
                cumulative[r] = (tokens, logp[:, tok.eot])
        out = []
        for (_, texts), places in zip(items, where):
            scores = []
            for (_, text), (run, n) in zip(texts, places):
                tokens, eot = cumulative[run]
                scores.append((float(tokens[n] + eot[n]), max(1, len(normalize_for_scoring(text)))))
            out.append(scores)
        return out

    def _postprocess(self, raw: str) -> str:
        text = tidy_chinese(collapse_repeats(raw))
        if self._lexicon is not None:
            text = self._lexicon.correct(text)
        return text


class WhisperRecognizer:
    """One stream: resample to 16 kHz, segment with the VAD, decode each utterance when it ends."""

    def __init__(self, engine: WhisperEngine, grammar: Sequence[str] | None = None, partials: bool = True) -> None:
        self.engine = engine
        self.partials = partials
        self._segmenter = Segmenter(SileroDetector(), engine.options.vad)
        self._resampler: StreamResampler | None = None
        self._grammar: tuple[str, ...] | None = tuple(grammar) if grammar else None
        self._choices: tuple[AnswerChoice, ...] | None = None
        self._finished = False
        self.last_decode: Decoded | None = None
        # The decode started at a pause, kept for the utterance if the silence lasts:
        # (start, end, samples, grammar) -> Decoded.
        self._speculative: tuple[tuple, Decoded] | None = None
        self.speculative_hits = 0  # utterances whose decode was already done at the pause
        self.speculative_misses = 0  # pause decodes thrown away because the speaker went on
        self.decode_errors = 0

    def set_grammar(self, phrases: Sequence[str] | None) -> None:
        """Whisper has no grammar: the phrases become hotwords for the following utterances."""
        self._grammar = tuple(p for p in phrases if p.strip()) if phrases else None

    def set_choices(self, choices: Sequence[AnswerChoice] | None) -> None:
        """A closed question's answers: each following utterance scores them with the model."""
        self._choices = tuple(choices) if choices else None

    def accept(self, frame: AudioFrame) -> list[TranscriptEvent]:
        if self._finished:
            raise RuntimeError("recognizer already finished")
        samples = pcm16_to_float(frame.audio)
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels)[:, 0]
        if self._resampler is None:
            self._resampler = StreamResampler(frame.sample_rate, RATE)
        elif self._resampler.rate_in != frame.sample_rate:
            raise ValueError(f"sample rate changed mid-stream: {self._resampler.rate_in} -> {frame.sample_rate}")
        return self._handle(self._segmenter.feed(self._resampler.process(samples)))

    def accept_samples(self, samples_16k: np.ndarray) -> list[TranscriptEvent]:
        """Feed float32 16 kHz samples directly (file transcription; skips PCM packing)."""
        return self._handle(self._segmenter.feed(samples_16k))

    def finish(self) -> list[TranscriptEvent]:
        if self._finished:
            return []
        self._finished = True
        return self._handle(self._segmenter.flush())

    def _decode(self, ev, speculative: bool = False) -> Decoded | None:
        """One utterance's decode, or None when it failed: that loses the utterance (logged), not
        the stream. A ``speculative`` one (at a pause) leaves the answers unscored: most are thrown
        away when the customer goes on, and four calls' scorings queued behind each other."""
        try:
            return self.engine.decode(ev.samples, extra_hotwords=self._grammar, choices=self._choices,
                                      score_choices=not speculative)
        except Exception:  # the call goes on; the dialog hears nothing and asks again
            logger.exception("utterance %.2f-%.2f s could not be decoded", ev.start, ev.end)
            self.decode_errors += 1
            return None

    def _kept(self, ev, decoded: Decoded) -> Decoded:
        """The pause's decode kept for the utterance, with the answers scored now."""
        if not self._choices:
            return decoded
        try:
            return self.engine.score_choices(ev.samples, decoded, self._choices)
        except Exception:  # the words stand without the audio's scores
            logger.exception("utterance %.2f-%.2f s: the answers could not be scored", ev.start, ev.end)
            self.decode_errors += 1
            return decoded

    def _handle(self, vad_events) -> list[TranscriptEvent]:
        events = []
        for ev in vad_events:
            if isinstance(ev, SpeechStart):
                if self.partials:
                    events.append(TranscriptEvent(text="", is_final=False, start=ev.start, end=ev.start,
                                                  confidence=0.0))
                continue
            key = (ev.start, ev.end, ev.samples.size, self._grammar, self._choices)
            if isinstance(ev, SpeechPause):
                if self._speculative is not None:
                    self.speculative_misses += 1
                decoded = self._decode(ev, speculative=True)
                # A failed decode is not kept: the utterance's end tries again.
                self._speculative = (key, decoded) if decoded is not None else None
                continue
            if self._speculative is not None and self._speculative[0] == key:
                decoded = self._kept(ev, self._speculative[1])
                self.speculative_hits += 1
            else:
                if self._speculative is not None:
                    self.speculative_misses += 1
                decoded = self._decode(ev) or _DECODE_FAILED
            self._speculative = None
            self.last_decode = decoded
            if decoded.rejected:
                logger.debug("utterance %.2f-%.2f s rejected (%s): %r", ev.start, ev.end, decoded.rejected,
                             decoded.raw_text)
            events.append(TranscriptEvent(text=decoded.text, is_final=True, start=ev.start, end=ev.end,
                                          confidence=round(decoded.confidence, 3), choices=decoded.choices))
        return events
