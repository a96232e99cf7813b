"""The project's labelled data: loading, validation with line numbers, splits, supervisor corrections.

Two hand-written data sets ship in ``dialog/data/`` (see its ``DATA_CARD.md``):

* ``feedback.jsonl``: customer feedback texts with multi-label categories and a sentiment;
* ``intents.jsonl``: customer turns with the question they answered (``context``), the intent,
  the satisfaction score (1-5), NPS (0-10) and a callback time relative to :data:`REFERENCE_NOW`.

Each row carries its ``split`` (train/dev/test), fixed once when the data was written. Training
code reads train (and dev for model selection) and never test. Loaders run on any thread.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from callcenter.domain import FeedbackCategory, Intent, Sentiment

DATA_DIR = Path(__file__).resolve().parent / "data"
FEEDBACK_FILE = DATA_DIR / "feedback.jsonl"
INTENTS_FILE = DATA_DIR / "intents.jsonl"
SPLITS = ("train", "dev", "test")
CONTEXTS = ("id", "sat", "nps", "yn", "open", "book", "reason")
# The moment the intent data's callback times are relative to: a Wednesday morning, Beijing time.
REFERENCE_NOW = dt.datetime(2024, 6, 12, 10, 30, tzinfo=ZoneInfo("Asia/Shanghai"))

CATEGORY_CODES = tuple(c.value for c in FeedbackCategory)
SENTIMENT_CODES = tuple(s.value for s in Sentiment)
INTENT_CODES = tuple(i.value for i in Intent)


class DataError(ValueError):
    """A data file is malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class LineError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class FeedbackExample:
    id: str
    text: str
    categories: tuple[str, ...]
    sentiment: str
    split: str = "train"
    source: str = "dataset"  # "dataset" or "correction"


@dataclass(frozen=True, slots=True)
class IntentExample:
    id: str
    text: str
    context: str
    intent: str
    score5: int | None = None
    nps: int | None = None
    callback_at: dt.datetime | None = None
    split: str = "train"


def read_jsonl(lines: Iterable[str], path: str = "<stdin>") -> Iterator[tuple[int, dict | LineError]]:
    """``(line_number, object)`` per non-blank line; a line that is not a JSON object yields a
    :class:`LineError` instead, so callers report it and go on with the rest."""
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, LineError(path, n, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            yield n, LineError(path, n, f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield n, obj


def _text(obj: dict) -> str:
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'text' must be a non-empty string")
    return text.strip()


def parse_feedback(obj: dict, *, default_id: str, require_labels: bool = True) -> FeedbackExample:
    """One feedback row; raises ``ValueError`` naming the bad field."""
    text = _text(obj)
    cats = obj.get("categories", [] if not require_labels else None)
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise ValueError("'categories' must be a list of category codes")
    unknown = [c for c in cats if c not in CATEGORY_CODES]
    if unknown:
        raise ValueError(f"unknown category {unknown[0]!r} (known: {', '.join(CATEGORY_CODES)})")
    sentiment = obj.get("sentiment", None if require_labels else "neutral")
    if sentiment not in SENTIMENT_CODES:
        raise ValueError(f"'sentiment' must be one of {', '.join(SENTIMENT_CODES)}, got {sentiment!r}")
    split = obj.get("split", "train")
    if split not in SPLITS:
        raise ValueError(f"'split' must be one of {', '.join(SPLITS)}")
    ordered = tuple(c for c in CATEGORY_CODES if c in cats)  # canonical order, duplicates folded
    return FeedbackExample(str(obj.get("id") or default_id), text, ordered, sentiment, split)


def _opt_int(obj: dict, key: str, lo: int, hi: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"'{key}' must be null or a whole number from {lo} to {hi}")
    return value


def parse_intent(obj: dict, *, default_id: str) -> IntentExample:
    text = _text(obj)
    intent = obj.get("intent")
    if intent not in INTENT_CODES:
        raise ValueError(f"'intent' must be one of {', '.join(INTENT_CODES)}, got {intent!r}")
    context = obj.get("context", "open")
    if context not in CONTEXTS:
        raise ValueError(f"'context' must be one of {', '.join(CONTEXTS)}")
    cb = obj.get("callback_at")
    when = None
    if cb is not None:
        try:
            when = dt.datetime.fromisoformat(cb)
        except (TypeError, ValueError):
            raise ValueError("'callback_at' must be null or an ISO date-time") from None
    split = obj.get("split", "train")
    if split not in SPLITS:
        raise ValueError(f"'split' must be one of {', '.join(SPLITS)}")
    return IntentExample(str(obj.get("id") or default_id), text, context, intent,
                         _opt_int(obj, "score5", 1, 5), _opt_int(obj, "nps", 0, 10), when, split)


def _load(path: Path, parse) -> list:
    rows, errors = [], []
    with path.open(encoding="utf-8") as fh:
        for n, obj in read_jsonl(fh, str(path)):
            if isinstance(obj, LineError):
                errors.append(obj)
                continue
            try:
                rows.append(parse(obj, default_id=f"{path.stem}:{n}"))
            except ValueError as exc:
                errors.append(LineError(str(path), n, str(exc)))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DataError(f"{errors[0]}{more}")
    return rows


def load_feedback(path: Path | None = None, splits: Sequence[str] | None = None) -> list[FeedbackExample]:
    rows = _load(path or FEEDBACK_FILE, parse_feedback)
    return [r for r in rows if splits is None or r.split in splits]


def load_intents(path: Path | None = None, splits: Sequence[str] | None = None) -> list[IntentExample]:
    rows = _load(path or INTENTS_FILE, parse_intent)
    return [r for r in rows if splits is None or r.split in splits]


@dataclass
class CorrectionReport:
    """What merging supervisor corrections did, for the training log and the model card."""

    relabelled: int = 0
    added: int = 0
    held_out: list[str] = field(default_factory=list)  # ids/texts not used: they are dev/test texts

    def as_dict(self) -> dict:
        return {"relabelled": self.relabelled, "added": self.added, "held_out": len(self.held_out)}


def merge_corrections(examples: Sequence[FeedbackExample], corrections_path: Path
                      ) -> tuple[list[FeedbackExample], CorrectionReport]:
    """Apply a JSONL of supervisor tag corrections to the data set (pass every split).

    Each line is ``{"text": ..., "categories": [...], "sentiment": ...}`` with an optional ``id``
    (the console writes the call's transcript id). A correction for a text that is already in the
    data relabels it; a new text is added to the training split. A correction that would touch a
    dev or test example is held out and reported: evaluation data never leaks into training.

    Raises:
        DataError: a line is malformed (file and line named); nothing is merged then.
    """
    from dialog.text import normalize

    fixes = _load(corrections_path, lambda obj, default_id: parse_feedback(obj, default_id=default_id))
    by_text = {normalize(e.text): i for i, e in enumerate(examples)}
    by_id = {e.id: i for i, e in enumerate(examples)}
    out = list(examples)
    report = CorrectionReport()
    for fix in fixes:
        idx = by_id.get(fix.id, by_text.get(normalize(fix.text)))
        if idx is not None and out[idx].split != "train":
            report.held_out.append(fix.id)
            continue
        fixed = FeedbackExample(fix.id, fix.text, fix.categories, fix.sentiment, "train", "correction")
        if idx is None:
            by_text[normalize(fix.text)] = len(out)
            out.append(fixed)
            report.added += 1
        else:
            out[idx] = fixed
            report.relabelled += 1
    return out, report
