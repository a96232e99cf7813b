"""Which robot prompt is playing: spectral fingerprints of the robot's own rendered prompt library.

The robot speaks only pre-rendered fragments (``dialog.prompts``: every prompt is its fixed text
fragments plus a few variable ones such as the customer's name, joined with 40 ms of silence). So
the simulated customer needs no speech recognition to know what it was asked: it compares what it
hears with the fixed fragments of every installed script, and the fragment that ends a prompt names
the question. That is robust to re-prompts ("不好意思,我没有听清楚……" + the question: the question
still ends the utterance), to variable parts (never compared) and to barge-in (the position inside
the fragment is known, so how much of the question is left is known too).

Features: every 20 ms, the log energy of 8 kHz audio in 16 bands spaced evenly in log frequency
between 250 and 3,400 Hz (the telephone band: G.711 keeps it, the robot's resampling does not move
it), each over 40 ms (Hann) centred on its 20 ms frame: the robot's frames and ours never line up,
and the doubled analysis window made the score half as sensitive to that. A *window* is 32 frames
(0.64 s), mean-removed per band (a channel's gain or tilt cancels out) and unit-normalised, so the
cosine of two windows is their correlation. Every window of every fragment is precomputed
(:class:`PromptIndex`: about 13,000 windows x 512 values, 26 MB); a query
is the three windows that end the heard audio (1.9 s), scored against all of them with three
matrix-vector products (under 1 ms each with single-threaded BLAS), and the scores of the aligned
windows averaged (at least two must lie in the same fragment). Measured on all 161 prompts of the
7 shipped scripts through a G.711 round trip at four frame phases (0, 5, 10, 15 ms): 644 of 644
found, scores 0.885-1.0, while none of the 88 persona answers matched anything (best 0.795); from
a point 40-80 % into a question, found with its position within one frame.

Pure numpy; build once per process (about 0.5 s), then :meth:`PromptIndex.locate` may be called
from any number of call threads at once (read-only arrays).
"""

from __future__ import annotations

import enum
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

RATE = 8000
HOP = 160  # 20 ms: one telephony frame
ANALYSIS = 320  # 40 ms of samples per frame's spectrum, centred on the frame
NFFT = 512
BANDS = 16
WINDOW = 32  # frames per window (0.64 s)
SPAN = 3  # windows per query: 1.92 s of audio
# Measured over the 161 prompts of the shipped scripts through G.711 at four frame phases (the
# right fragment) and the 88 persona answers (nothing should match): right 0.885-1.00, wrong at
# most 0.795 when at least two aligned windows (1.28 s) are compared. (8 bands over 20 ms: right
# from 0.856, wrong up to 0.815.) A single window is not enough: a short "喂，你好" (two syllables
# and silence) scored 0.93 against some prompt position. The shortest fragment that ends a prompt
# ("好的,我再说一遍。") has 66 frames of speech, so two windows always fit.
MIN_SCORE = 0.84
MIN_WINDOWS = 2
# Frames by which each older window may be offset from the next (per window step). Live, under a
# load of 9-12 on 2 cores, 28 % of the robot's prompts went unplaced although no RTP was lost: a
# jitter buffer drops or conceals 20 ms frames without a sequence gap. With 1 frame in 25 dropped
# at random, 44 of 61 post_service prompts scored below MIN_SCORE aligned exactly, 7 with SLIP 3
# (all 61 best on the right prompt); the persona lines' best stayed 0.834 (bench/personas_build
# voices and the shipped ones, 652 lines). Intact prompts still score 0.991-1.0.
SLIP = 3
SILENCE_DB = -40.0  # frame energy (dBFS) below which a frame is silence; robot speech is about -24 dBFS
# Band energy floor (log10 1e-5 ~ -50 dB below full scale): silence and line noise all look alike,
# so windows are compared on their speech. A lower floor (1e-7) let silence patterns dominate.
_FLOOR = 1e-5


class PromptKind(str, enum.Enum):
    """What the customer should do once a prompt of this kind has been said."""

    QUESTION = "question"  # answer it
    REPROMPT = "reprompt"  # the robot asks the current question again in other words: answer again
    CONFIRM = "confirm"  # "跟您确认一下,……,对吗?": yes if it restated what the customer meant, else no
    STATEMENT = "statement"  # the robot goes on by itself: wait
    END = "end"  # the robot says goodbye (or transfers) and hangs up: wait for its BYE


@dataclass(frozen=True, slots=True)
class PromptRef:
    """One prompt of one script: ``post_service.identity``; ``step`` is the question it asks
    (for a re-prompt of a step, that step; for shared re-prompts such as ``no_match_score5``, None:
    the current question)."""

    script: str
    key: str  # step id or shared prompt name (no_match, goodbye_timeout ...)
    kind: PromptKind
    step: str | None = None
    context: str | None = None  # the dialog context of the answer expected (id, sat, nps, yn, open, book, reason)
    action: str | None = None  # terminal steps: transfer, callback, do_not_call
    label: str | None = None  # confirmations: the answer label restated ("5", "no", "opt_out" ...)

    @property
    def prompt_id(self) -> str:
        return f"{self.script}.{self.key}"


@dataclass(frozen=True, eq=False)
class Fragment:
    """A fixed fragment of prompt audio and the prompts it ends (``final``) or belongs to (``inner``)."""

    text: str
    frames: int
    speech_end: int  # frames up to the end of its speech (renderings end with up to 0.4 s of silence)
    final: tuple[PromptRef, ...] = ()
    inner: tuple[PromptRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """Where the heard audio ends, inside which fragment; ``score`` 1.0 is identical."""

    fragment: Fragment
    end_frame: int  # the heard audio ends after this many frames of the fragment
    score: float
    margin: float  # how far the best other fragment scored below (ambiguity)
    windows: int  # how many aligned windows were compared (2-3)

    @property
    def remaining(self) -> float:
        """Seconds of the fragment's speech still to come after the heard audio."""
        return max(0, self.fragment.speech_end - self.end_frame) * HOP / RATE

    def ends_prompt(self, slack: float = 0.25) -> bool:
        """The heard audio reached the end of a fragment that ends a prompt."""
        return bool(self.fragment.final) and self.remaining <= slack


@dataclass
class _Refs:
    final: list[PromptRef] = field(default_factory=list)
    inner: list[PromptRef] = field(default_factory=list)


def _band_matrix() -> np.ndarray:
    edges = np.geomspace(250.0, 3400.0, BANDS + 1)
    freqs = np.fft.rfftfreq(NFFT, 1.0 / RATE)
    return np.stack([(freqs >= edges[i]) & (freqs < edges[i + 1]) for i in range(BANDS)]).astype(np.float32)


_BANDS = _band_matrix()
_HANN = np.hanning(ANALYSIS).astype(np.float32) / 32768.0
_EDGE = (ANALYSIS - HOP) // 2


def features(pcm: np.ndarray | bytes) -> np.ndarray:
    """``(frames, BANDS)`` log10 band energies of 16-bit 8 kHz mono PCM, one row per 20 ms frame
    (each over 40 ms centred on the frame; the audio is taken as silent beyond its ends)."""
    x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    n = len(x) // HOP
    if n == 0:
        return np.zeros((0, BANDS), dtype=np.float32)
    padded = np.zeros(n * HOP + 2 * _EDGE, dtype=np.float32)
    padded[_EDGE:_EDGE + n * HOP] = x[: n * HOP]
    frames = np.lib.stride_tricks.sliding_window_view(padded, ANALYSIS)[::HOP][:n] * _HANN
    power = np.abs(np.fft.rfft(frames, NFFT, axis=1)) ** 2
    return np.log10(power.astype(np.float32) @ _BANDS.T + _FLOOR)


def frame_db(pcm: bytes) -> float:
    """Energy of one frame of 16-bit PCM in dBFS (-100 for digital silence)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if not len(x):
        return -100.0
    power = float(np.dot(x, x)) / len(x) / (32768.0 * 32768.0)
    return 10.0 * float(np.log10(power)) if power > 1e-10 else -100.0


def _normalised(window: np.ndarray) -> np.ndarray:
    w = window - window.mean(axis=0)
    w = w.ravel()
    norm = float(np.linalg.norm(w))
    return w / norm if norm > 1e-6 else w


def prompt_refs(script) -> list[tuple[PromptRef, str]]:
    """Every prompt of a :class:`dialog.script.Script` with its template, classified by kind."""
    from dialog.script import DEFAULT_PROMPTS

    out: list[tuple[PromptRef, str]] = []
    end_shared = {"goodbye_no_input", "goodbye_timeout", "transfer_failed", "voicemail"}
    for name in {**DEFAULT_PROMPTS, **script.prompts}:
        template = script.prompt(name) if name in DEFAULT_PROMPTS else script.prompts[name]
        if name in end_shared:
            kind = PromptKind.END
        elif name.startswith(("no_match", "no_input", "repeat")):
            kind = PromptKind.REPROMPT
        else:
            kind = PromptKind.STATEMENT
        out.append((PromptRef(script.id, name, kind), template))
    for step in script.steps.values():
        if step.terminal:
            ref = PromptRef(script.id, step.id, PromptKind.END, action=step.action)
        elif step.expect == "none":
            ref = PromptRef(script.id, step.id, PromptKind.STATEMENT, step=step.id)
        else:
            ref = PromptRef(script.id, step.id, PromptKind.QUESTION, step=step.id, context=step.context)
        out.append((ref, step.say))
        for name, rp in (("no_input", step.no_input), ("no_match", step.no_match)):
            if rp is not None and rp.say:
                out.append((PromptRef(script.id, f"{step.id}.{name}", PromptKind.REPROMPT, step=step.id,
                                      context=step.context), rp.say))
    # Prompts a script lists beyond those (all_prompts() ids "{script}.{step}.confirm.{label}", a
    # step's further re-prompts "{script}.{step}.no_match..."): classified by their id.
    known = {ref.prompt_id for ref, _t in out}
    for prompt_id, template in script.all_prompts().items():
        if prompt_id in known or not prompt_id.startswith(f"{script.id}."):
            continue
        step_id, _, rest = prompt_id[len(script.id) + 1:].partition(".")
        step = script.steps.get(step_id)
        if step is None or not rest:
            continue
        key = prompt_id[len(script.id) + 1:]
        if rest.startswith("confirm."):
            out.append((PromptRef(script.id, key, PromptKind.CONFIRM, step=step.id, context=step.context,
                                  label=rest.removeprefix("confirm.")), template))
        elif rest.startswith(("no_input", "no_match", "repeat", "reask", "again", "retry")):
            out.append((PromptRef(script.id, key, PromptKind.REPROMPT, step=step.id, context=step.context), template))
    return out


def _literals(template: str) -> list[str]:
    return [lit.replace("{{", "{").replace("}}", "}") for lit, _n, _f, _c in string.Formatter().parse(template) if lit]


class PromptIndex:
    """Fingerprints of every fixed prompt fragment of a set of scripts; see the module docstring."""

    def __init__(self, fragments: list[Fragment], feats: list[np.ndarray], scripts: Mapping[str, object] | None = None
                 ) -> None:
        self.fragments = fragments
        self.scripts = dict(scripts or {})
        rows, owner, position = [], [], []
        for i, f in enumerate(feats):
            for end in range(WINDOW, len(f) + 1):
                rows.append(_normalised(f[end - WINDOW:end]))
                owner.append(i)
                position.append(end)
        if not rows:
            raise ValueError("no prompt fragment is long enough to fingerprint (0.64 s)")
        self._matrix = np.ascontiguousarray(np.stack(rows).astype(np.float32))
        self._owner = np.asarray(owner, dtype=np.int32)
        self._position = np.asarray(position, dtype=np.int32)
        # valid[k][r]: the window k windows before row r lies in the same fragment
        self._valid = [np.zeros(len(rows), dtype=bool)]
        self._valid[0][:] = True
        for k in range(1, SPAN):
            shift = k * WINDOW
            v = np.zeros(len(rows), dtype=bool)
            v[shift:] = self._owner[shift:] == self._owner[:-shift]
            self._valid.append(v)

    @classmethod
    def build(cls, scripts: Mapping[str, object], library) -> PromptIndex:
        """Fingerprint the fixed fragments of ``scripts`` (id -> Script) from ``library``
        (:class:`dialog.prompts.PromptLibrary`). Fragments without audio are left out."""
        from dialog.prompts import MissingAudio, read_wav

        refs: dict[str, _Refs] = {}
        for script in scripts.values():
            for ref, template in prompt_refs(script):
                literals = _literals(template)
                for i, text in enumerate(literals):
                    r = refs.setdefault(text, _Refs())
                    (r.final if i == len(literals) - 1 else r.inner).append(ref)
        fragments, feats = [], []
        for text, r in refs.items():
            try:
                pcm = read_wav(library.path(text), RATE)
            except MissingAudio:
                continue  # the robot cannot say it either (it falls back): nothing to recognise
            f = features(pcm)
            dbs = [frame_db(pcm[i * HOP:(i + 1) * HOP].tobytes()) for i in range(len(f))]
            bounds = speech_bounds(dbs)
            fragments.append(Fragment(text, len(f), bounds[1] if bounds else len(f), tuple(r.final), tuple(r.inner)))
            feats.append(f)
        return cls(fragments, feats, scripts)

    @property
    def nbytes(self) -> int:
        return self._matrix.nbytes

    def locate(self, feats: np.ndarray, min_score: float = MIN_SCORE) -> Match | None:
        """Where in which fragment the audio whose features are ``feats`` ends.

        ``feats`` should end with speech (trailing silence cut off); at least two windows
        (1.28 s) are needed. Returns the best match, or None when nothing scores ``min_score``.
        """
        if len(feats) < MIN_WINDOWS * WINDOW:
            return None
        total = np.zeros(len(self._matrix), dtype=np.float32)
        count = np.zeros(len(self._matrix), dtype=np.float32)
        for k in range(SPAN):
            end = len(feats) - k * WINDOW
            if end < WINDOW:
                break
            scores = self._matrix @ _normalised(feats[end - WINDOW:end]).astype(np.float32)
            if k == 0:
                total += scores
                count += 1
                continue
            # The k-th window back may sit a few frames off: a jitter buffer under load drops or
            # conceals 20 ms frames without a gap in the sequence numbers. Take the best offset.
            best = np.full(len(scores), -np.inf, dtype=np.float32)
            for shift in range(k * WINDOW - k * SLIP, k * WINDOW + k * SLIP + 1):
                valid = np.zeros(len(scores), dtype=bool)
                valid[shift:] = self._owner[shift:] == self._owner[:-shift]
                best[shift:] = np.where(valid[shift:], np.maximum(best[shift:], scores[:-shift]), best[shift:])
            found = np.isfinite(best)
            total += np.where(found, best, 0.0)
            count += found
        if count.max() < MIN_WINDOWS:
            return None  # too little audio to tell (see MIN_SCORE)
        combined = np.where(count >= MIN_WINDOWS, total / count, -1.0)
        best = int(np.argmax(combined))
        score = float(combined[best])
        if score < min_score:
            return None
        owner = self._owner[best]
        others = np.where(self._owner != owner, combined, -1.0)
        margin = score - float(others.max())
        return Match(self.fragments[owner], int(self._position[best]), score, margin, int(count[best]))

    def refs(self, match: Match, script: str | None = None) -> tuple[PromptRef, ...]:
        """The prompts ``match`` ends, those of ``script`` first (the call's script, once known)."""
        final = match.fragment.final
        if script is not None:
            final = tuple(sorted(final, key=lambda r: r.script != script))
        return final


def speech_bounds(dbs: Iterable[float], threshold: float = SILENCE_DB) -> tuple[int, int] | None:
    """First and last+1 index of frames above ``threshold``; None if all are silence."""
    voiced = [i for i, d in enumerate(dbs) if d > threshold]
    return (voiced[0], voiced[-1] + 1) if voiced else None
