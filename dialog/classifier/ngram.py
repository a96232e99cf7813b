"""Character/pinyin n-gram baseline: TF-IDF features, one logistic regression per category and a
multinomial one for sentiment; per-category decision thresholds tuned on the dev split.

Evidence for a tag is where its strongest positive features occur in the text. Trains in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dialog.classifier import CATEGORY_CODES, MODEL_CARD, SENTIMENT_CODES, Classification, ModelError, Span
from dialog.datasets import FeedbackExample
from dialog.linear import NgramFeaturizer, fit_logistic, sigmoid, softmax
from dialog.text import clip, normalize_mapped

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
                 sent_w: np.ndarray, sent_b: np.ndarray, thresholds: np.ndarray) -> None:
        self.featurizer = featurizer
        self.cat_w, self.cat_b = cat_w, cat_b  # [11, d], [11]
        self.sent_w, self.sent_b = sent_w, sent_b  # [3, d], [3]
        self.thresholds = thresholds

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, train: Sequence[FeedbackExample], dev: Sequence[FeedbackExample],
              seed: int = 13) -> NgramClassifier:
        feat = NgramFeaturizer()
        x = feat.fit([e.text for e in train])
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
                    np.full(len(CATEGORY_CODES), 0.5, dtype=np.float32))
        if dev:
            probs, _ = model._probs([e.text for e in dev])
            model.thresholds = tune_thresholds(probs, label_matrix(dev))
        return model

    def save(self, directory: Path, card: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.featurizer.save(directory)
        np.savez(directory / "weights.npz", cat_w=self.cat_w, cat_b=self.cat_b, sent_w=self.sent_w,
                 sent_b=self.sent_b, thresholds=self.thresholds)
        (directory / MODEL_CARD).write_text(json.dumps({"kind": "ngram", **card}, ensure_ascii=False, indent=2),
                                            encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> NgramClassifier:
        try:
            feat = NgramFeaturizer.load(directory)
            z = np.load(directory / "weights.npz")
            return cls(feat, z["cat_w"], z["cat_b"], z["sent_w"], z["sent_b"], z["thresholds"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{directory}: incomplete n-gram model: {exc}") from None

    # -- inference ----------------------------------------------------------------------------
    def _probs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        x = self.featurizer.transform(texts)
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


def _to_original(original: str, origin: list[int], start: int, end: int) -> Span:
    if not origin:
        return Span(start, end, original[start:end])
    s = origin[min(start, len(origin) - 1)]
    e = origin[min(end, len(origin)) - 1] + 1
    return Span(s, e, original[s:e])
