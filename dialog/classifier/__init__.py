"""Feedback classification: multi-label categories, a sentiment, and the words that support each tag.

Three engines behind one protocol, :class:`FeedbackClassifier`:

* :class:`~dialog.classifier.transformer.TransformerClassifier`: a compact BERT-style encoder
  (bert-base-chinese vocabulary, trained here) with a label-attention multi-label head and a
  sentiment head; the attention of each label over the characters gives its evidence spans;
* :class:`~dialog.classifier.ngram.NgramClassifier`: character and pinyin n-grams, linear heads;
* :class:`~dialog.classifier.keywords.KeywordClassifier`: a lexicon with polarity rules;

and :class:`~dialog.classifier.ensemble.EnsembleClassifier`, the transformer and n-gram models
averaged, which becomes the default only if it beats both on dev.

A trained model is a directory with ``model.json`` naming its kind; :func:`load_classifier` opens
any of them. Which one a deployment uses by default is decided by the numbers on the dev split
(``callcenter classifier build-default``), and ``docs/benchmarks.md`` reports all three on test.

Engines are thread-compatible, not thread-safe: one instance per worker thread, or a lock.
Importing this package is cheap (no torch until a transformer model is opened).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from callcenter.domain import CATEGORY_DEPARTMENT, FeedbackCategory
from dialog.datasets import CATEGORY_CODES, SENTIMENT_CODES

__all__ = ["CATEGORY_CODES", "SENTIMENT_CODES", "Classification", "FeedbackClassifier", "ModelError",
           "Span", "departments_of", "load_classifier"]

MODEL_CARD = "model.json"


class ModelError(RuntimeError):
    """A model directory is missing, incomplete or of an unknown kind; the message says which."""


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``[start, end)`` of the original text that support a tag."""

    start: int
    end: int
    text: str

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text}


@dataclass(frozen=True)
class Classification:
    """What a classifier says about one text."""

    text: str
    categories: tuple[str, ...]
    sentiment: str
    scores: dict[str, float]  # category code -> probability (every category)
    sentiment_scores: dict[str, float]
    evidence: dict[str, tuple[Span, ...]] = field(default_factory=dict)  # predicted category -> spans
    truncated: bool = False  # the text was longer than the classifier reads; its head was classified

    @property
    def departments(self) -> tuple[str, ...]:
        return departments_of(self.categories)

    def as_dict(self) -> dict:
        """The ``callcenter classify`` output shape."""
        out = {
            "text": self.text,
            "categories": list(self.categories),
            "sentiment": self.sentiment,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "evidence": {k: [s.as_dict() for s in v] for k, v in self.evidence.items()},
            "sentiment_scores": {k: round(v, 4) for k, v in self.sentiment_scores.items()},
        }
        if self.truncated:
            out["truncated"] = True
        return out


def departments_of(categories: Sequence[str]) -> tuple[str, ...]:
    """Departments owning these categories, without repeats, in category order."""
    seen: list[str] = []
    for code in categories:
        dep = CATEGORY_DEPARTMENT[FeedbackCategory(code)].value
        if dep not in seen:
            seen.append(dep)
    return tuple(seen)


@runtime_checkable
class FeedbackClassifier(Protocol):
    """Classifies customer feedback texts. ``classify`` takes a batch: engines are faster batched."""

    name: str

    def classify(self, texts: Sequence[str]) -> list[Classification]: ...


def read_card(path: Path) -> dict:
    card = Path(path) / MODEL_CARD
    if not card.is_file():
        raise ModelError(f"{path}: not a classifier model directory (no {MODEL_CARD}); "
                         "build one with `callcenter classifier train` or run scripts/setup")
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card}: unreadable model card: {exc}") from None


def load_classifier(path: Path | str, *, threads: int = 1) -> FeedbackClassifier:
    """Open a trained model directory of any kind.

    Args:
        path: the directory (``model.json`` inside names the kind).
        threads: CPU threads for the transformer (set explicitly: torch's default takes every core).

    Raises:
        ModelError: not a model directory, incomplete, or of an unknown kind.
    """
    path = Path(path)
    card = read_card(path)
    kind = card.get("kind")
    if kind == "transformer":
        from dialog.classifier.transformer import TransformerClassifier

        return TransformerClassifier.load(path, threads=threads)
    if kind == "ngram":
        from dialog.classifier.ngram import NgramClassifier

        return NgramClassifier.load(path)
    if kind == "keyword":
        from dialog.classifier.keywords import KeywordClassifier

        return KeywordClassifier()
    if kind == "ensemble":
        from dialog.classifier.ensemble import EnsembleClassifier

        return EnsembleClassifier.load(path, threads=threads)
    raise ModelError(f"{path}: unknown model kind {kind!r} in {MODEL_CARD}")
