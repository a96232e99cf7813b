"""File transcription and evaluation: the same recognizers a call uses, fed from WAV files.

Owns ``transcribe_file`` (one file -> the JSON shape of ``callcenter transcribe``) and ``evaluate``
(a manifest -> CER/WER/RTF and the worst utterances, ``callcenter asr eval``). A file goes through the
streaming path (resampling, VAD or Vosk endpointing, per-utterance decoding) in 0.5 s pieces, so what
is measured here is what runs on a call. Runs on the caller's thread.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.audio import AudioError, load_mono, pick_channel, read_wav, resample
from asr.protocol import Engine
from asr.textnorm import char_errors, word_errors
from callcenter.domain import TranscriptEvent

FEED_SECONDS = 0.5


def _feed(engine: Engine, samples_by_rate: np.ndarray, grammar: Sequence[str] | None) -> list[TranscriptEvent]:
    rec = engine.recognizer(grammar=grammar, partials=False)
    rate = getattr(engine, "sample_rate", 16000)
    step = int(FEED_SECONDS * rate)
    events: list[TranscriptEvent] = []
    for i in range(0, samples_by_rate.size, step):
        events.extend(rec.accept_samples(samples_by_rate[i:i + step]))  # type: ignore[attr-defined]
    events.extend(rec.finish())
    return [e for e in events if e.is_final]


def transcribe_file(engine: Engine, path: str | Path, *, channel: str | int | None = None,
                    grammar: Sequence[str] | None = None) -> dict:
    """Transcribe one WAV file.

    Returns:
        ``{"file", "engine", "duration", "rtf", "text", "segments": [{"start", "end", "text",
        "confidence"}]}``; ``rtf`` is processing time (decoding, resampling, VAD) over audio duration.

    Raises:
        AudioError: the file is not readable audio.
    """
    started = time.perf_counter()
    audio = read_wav(path)
    rate = getattr(engine, "sample_rate", 16000)
    samples = resample(pick_channel(audio, channel), audio.sample_rate, rate)
    finals = _feed(engine, samples, grammar)
    elapsed = time.perf_counter() - started
    segments = [{"start": e.start, "end": e.end, "text": e.text, "confidence": e.confidence}
                for e in finals if e.text]
    sep = " " if engine.name == "vosk" else ""
    return {
        "file": str(path),
        "engine": engine.name,
        "duration": round(audio.duration, 3),
        "rtf": round(elapsed / audio.duration, 4) if audio.duration else 0.0,
        "text": sep.join(s["text"] for s in segments),
        "segments": segments,
    }


@dataclass
class EvalItem:
    file: str
    reference: str
    hypothesis: str
    errors: int
    length: int
    duration: float
    seconds: float

    @property
    def rate(self) -> float:
        return self.errors / self.length if self.length else float(self.errors > 0)


@dataclass
class EvalReport:
    engine: str
    unit: str  # "char" (CER) or "word" (WER)
    items: list[EvalItem] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        n = sum(i.length for i in self.items)
        return sum(i.errors for i in self.items) / n if n else 0.0

    @property
    def rtf(self) -> float:
        d = sum(i.duration for i in self.items)
        return sum(i.seconds for i in self.items) / d if d else 0.0

    def worst(self, n: int = 10) -> list[EvalItem]:
        return sorted((i for i in self.items if i.errors), key=lambda i: (-i.rate, -i.errors))[:n]

    def as_dict(self, worst: int = 10) -> dict:
        key = "cer" if self.unit == "char" else "wer"
        return {
            "engine": self.engine,
            "utterances": len(self.items),
            key: round(self.error_rate, 4),
            "rtf": round(self.rtf, 4),
            "audio_seconds": round(sum(i.duration for i in self.items), 1),
            "sentence_error_rate": round(sum(1 for i in self.items if i.errors) / len(self.items), 4)
            if self.items else 0.0,
            "failures": self.failures,
            "worst": [{"file": i.file, key: round(i.rate, 3), "reference": i.reference, "hypothesis": i.hypothesis}
                      for i in self.worst(worst)],
        }


def read_manifest(path: str | Path) -> list[dict]:
    """JSON lines ``{"file": ..., "text": ...}``; files relative to the manifest's folder.

    Raises:
        ValueError: a line is malformed (the message names the line).
    """
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("file"), str) or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{n}: expected {{\"file\": ..., \"text\": ...}}")  # noqa: TRY004 (bad data)
        row["path"] = (path.parent / row["file"]) if not Path(row["file"]).is_absolute() else Path(row["file"])
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no utterances")
    return rows


def evaluate(engine: Engine, manifest: str | Path, *, unit: str | None = None, limit: int | None = None,
             grammar: Sequence[str] | None = None) -> EvalReport:
    """Score ``engine`` on a manifest. ``unit``: "char" (default for Chinese) or "word".

    A file that cannot be read is listed under ``failures`` and the rest are still scored.
    """
    rows = read_manifest(manifest)[:limit]
    if unit is None:
        # Chinese (Han characters) is scored by characters; Korean, English... by words.
        unit = "char" if any(re.search(r"[\u4e00-\u9fff]", r["text"]) for r in rows) else "word"
    report = EvalReport(engine=engine.name, unit=unit)
    score = char_errors if unit == "char" else word_errors
    for row in rows:
        started = time.perf_counter()
        try:
            rate = getattr(engine, "sample_rate", 16000)
            samples, audio = load_mono(row["path"], rate)
        except AudioError as exc:
            report.failures.append({"file": row["file"], "error": str(exc)})
            continue
        finals = _feed(engine, samples, grammar)
        seconds = time.perf_counter() - started
        hyp = (" " if unit == "word" else "").join(e.text for e in finals if e.text)
        errors, length = score(row["text"], hyp)
        report.items.append(EvalItem(row["file"], row["text"], hyp, errors, length, audio.duration, seconds))
    return report
