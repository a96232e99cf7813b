"""Character/pinyin n-gram model: TF-IDF features, one logistic regression per category and a
multinomial one for sentiment; per-category decision thresholds tuned on the dev split.

Where the pretrained sentence encoder is installed (:mod:`dialog.classifier.embedding`), its
vectors (scaled by :data:`SENTENCE_WEIGHT`) sit beside the n-grams, so answers in words the
training data never used still land near answers that mean the same (dev, session 8: macro-F1
0.869 -> 0.882 alone, ensemble 0.883 -> 0.890). The model card says whether a model uses them.

Evidence for a tag is where its strongest positive n-gram features occur in the text. Trains in
seconds (plus ~1 min to encode the training texts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dialog.classifier import (
    CATEGORY_CODES,
    MODEL_CARD,
    SENTIMENT_CODES,
    Classification,
    ModelError,
    Span,
    embedding,
)
from dialog.datasets import FeedbackExample
from dialog.linear import NgramFeaturizer, fit_logistic, sigmoid, softmax
from dialog.text import clip, normalize_mapped

# The sentence vectors' scale beside the L2-normalised TF-IDF row (dev, session 8: 0.5 / 1.0 / 2.0
# gave macro-F1 0.878 / 0.882 / 0.881; 1.0 also balanced the ensemble's sentiment best).
SENTENCE_WEIGHT = 1.0
THRESHOLD_GRID = np.round(np.arange(0.15, 0.86, 0.05), 2)


def tune_thresholds(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per column, the threshold in :data:`THRESHOLD_GRID` with the best F1 on ``gold`` (ties: 0.5-nearest)."""
    out = np.full(probs.shape[1], 0.5, dtype=np.float32)
    for j in range(probs.shape[1]):
        best = (-1.0, 0.0)
        for t in THRESHOLD_GRID:
            pred = probs[:, j] >= t
            tp = float((pred & gold[:, j]).sum())
            fp = float((pred & ~gold[:, j]).sum())
            fn = float((~pred & gold[:, j]).sum())
            f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
            key = (round(f1, 6), -abs(t - 0.5))
            if key > best:
                best = key
                out[j] = t
    return out


def label_matrix(examples: Sequence[FeedbackExample]) -> np.ndarray:
    return np.array([[c in e.categories for c in CATEGORY_CODES] for e in examples], dtype=bool)


class NgramClassifier:
    name = "ngram"

    def __init__(self, featurizer: NgramFeaturizer, cat_w: np.ndarray, cat_b: np.ndarray,
                 sent_w: np.ndarray, sent_b: np.ndarray, thresholds: np.ndarray, encoder=None,
                 sentence_weight: float = SENTENCE_WEIGHT) -> None:
        self.featurizer = featurizer
        self.encoder = encoder  # a SentenceEncoder, or None: n-grams only
        self.sentence_weight = sentence_weight
        self.cat_w, self.cat_b = cat_w, cat_b  # [11, d], [11]
        self.sent_w, self.sent_b = sent_w, sent_b  # [3, d], [3]
        self.thresholds = thresholds

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, train: Sequence[FeedbackExample], dev: Sequence[FeedbackExample],
              seed: int = 13, encoder=None) -> NgramClassifier:
        feat = NgramFeaturizer()
        x = feat.fit([e.text for e in train])
        if encoder is not None:
            x = _with_sentences(x, encoder.encode([e.text for e in train]), SENTENCE_WEIGHT)
        y = label_matrix(train)
        ws, bs = [], []
        for j in range(len(CATEGORY_CODES)):
            if y[:, j].all() or not y[:, j].any():  # a category the data never (or always) shows
                ws.append(np.zeros(x.shape[1], dtype=np.float32))
                bs.append(np.float32(10.0 if y[:, j].all() else -10.0))
                continue
            w, b = fit_logistic(x, y[:, j].astype(int), c=8.0, seed=seed)
            ws.append(w[0])
            bs.append(b[0])
        sent = np.array([SENTIMENT_CODES.index(e.sentiment) for e in train])
        present = sorted(set(sent.tolist()))
        sw = np.zeros((len(SENTIMENT_CODES), x.shape[1]), dtype=np.float32)
        sb = np.full(len(SENTIMENT_CODES), -10.0, dtype=np.float32)
        if len(present) == 1:
            sb[present[0]] = 10.0
        else:
            w, b = fit_logistic(x, np.array([present.index(v) for v in sent]), c=8.0, seed=seed)
            if len(present) == 2:  # binary: one row of weights for the second class
                w, b = np.vstack([-w[0] / 2, w[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
            for k, v in enumerate(present):
                sw[v], sb[v] = w[k], b[k]
        model = cls(feat, np.stack(ws), np.array(bs, dtype=np.float32), sw, sb,
                    np.full(len(CATEGORY_CODES), 0.5, dtype=np.float32), encoder)
        if dev:
            probs, _ = model._probs([e.text for e in dev])
            model.thresholds = tune_thresholds(probs, label_matrix(dev))
        return model

    def save(self, directory: Path, card: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.featurizer.save(directory)
        np.savez(directory / "weights.npz", cat_w=self.cat_w, cat_b=self.cat_b, sent_w=self.sent_w,
                 sent_b=self.sent_b, thresholds=self.thresholds)
        vectors = ({"name": embedding.NAME, "version": self.encoder.version, "dim": embedding.DIM,
                    "weight": self.sentence_weight} if self.encoder is not None else None)
        (directory / MODEL_CARD).write_text(json.dumps({"kind": "ngram", **card, "sentence_vectors": vectors},
                                                       ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> NgramClassifier:
        try:
            card = json.loads((directory / MODEL_CARD).read_text(encoding="utf-8"))
            feat = NgramFeaturizer.load(directory)
            z = np.load(directory / "weights.npz")
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{directory}: incomplete n-gram model: {exc}") from None
        vectors = card.get("sentence_vectors")
        encoder, weight = None, SENTENCE_WEIGHT
        if vectors:
            if vectors.get("name") != embedding.NAME or vectors.get("dim") != embedding.DIM:
                raise ModelError(f"{directory}: unknown sentence vectors {vectors!r}")
            encoder, weight = embedding.shared_encoder(), float(vectors["weight"])
        width = len(feat.vocab) + (embedding.DIM if encoder is not None else 0)
        if z["cat_w"].shape[1] != width:
            raise ModelError(f"{directory}: weights have {z['cat_w'].shape[1]} features, the model card {width}")
        return cls(feat, z["cat_w"], z["cat_b"], z["sent_w"], z["sent_b"], z["thresholds"], encoder, weight)

    # -- inference ----------------------------------------------------------------------------
    def _probs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        x = self.featurizer.transform(texts)
        if self.encoder is not None:
            x = _with_sentences(x, self.encoder.encode(texts), self.sentence_weight)
        cat = sigmoid(x @ self.cat_w.T + self.cat_b)
        sent = softmax(x @ self.sent_w.T + self.sent_b)
        return np.asarray(cat), np.asarray(sent)

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        if not texts:
            return []
        prepared = []
        for t in texts:
            norm, origin = normalize_mapped(t)
            head, truncated = clip(norm)
            prepared.append((t, head, origin, truncated))
        cat, sent = self._probs([p[1] for p in prepared])
        out = []
        for (original, head, origin, truncated), pc, ps in zip(prepared, cat, sent):
            codes = tuple(c for j, c in enumerate(CATEGORY_CODES) if pc[j] >= self.thresholds[j])
            evidence = {c: self._evidence(head, origin, original, CATEGORY_CODES.index(c)) for c in codes}
            out.append(Classification(
                original, codes, SENTIMENT_CODES[int(ps.argmax())],
                {c: float(pc[j]) for j, c in enumerate(CATEGORY_CODES)},
                {s: float(ps[k]) for k, s in enumerate(SENTIMENT_CODES)}, evidence, truncated))
        return out

    def _evidence(self, head: str, origin: list[int], original: str, j: int, top: int = 3) -> tuple[Span, ...]:
        feats = self.featurizer.written_features(head)
        scored = sorted(((self.cat_w[j, self.featurizer.vocab[f.gram]] * self.featurizer.idf[
            self.featurizer.vocab[f.gram]], f) for f in feats if len(f.gram.strip()) > 1), key=lambda t: -t[0])
        spans: list[tuple[int, int]] = []
        for weight, f in scored:
            if weight <= 0 or len(spans) >= top:
                break
            if any(s <= f.start < e or s < f.end <= e for s, e in spans):
                continue
            spans.append((f.start, f.end))
        return tuple(_to_original(original, origin, s, e) for s, e in sorted(spans))


def _with_sentences(x, vectors: np.ndarray, weight: float):
    """The n-gram rows with the sentence vectors appended (after the n-gram columns, so the
    evidence code's n-gram indices still hold)."""
    from scipy import sparse

    return sparse.hstack([x, sparse.csr_matrix(vectors * weight)], format="csr", dtype=np.float32)


def _to_original(original: str, origin: list[int], start: int, end: int) -> Span:
    if not origin:
        return Span(start, end, original[start:end])
    s = origin[min(start, len(origin) - 1)]
    e = origin[min(end, len(origin)) - 1] + 1
    return Span(s, e, original[s:e])
