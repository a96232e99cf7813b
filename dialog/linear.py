"""Character and pinyin n-gram features with linear heads: the NLU's intent model and the n-gram
feedback baseline share this.

Features of a text: TF-IDF weighted character n-grams (written form) plus toneless-pinyin syllable
n-grams (sound: 买一 and 满意 share ``yi``, 保洋 and 保养 share ``bao yang``), plus optional tag
features such as the question the customer answered (``ctx=sat``). scikit-learn fits the weights;
inference is plain numpy/scipy over saved arrays, so a saved model does not depend on the
scikit-learn version that trained it.

Objects are immutable after training or loading: safe to share between threads.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from dialog.phonetic import syllabify
from dialog.text import normalize

_PY = "\x01"  # prefix that keeps pinyin features apart from written ones
_TAG = "\x02"


@dataclass(frozen=True)
class Feature:
    """Where a written n-gram feature occurs, for evidence."""

    gram: str
    start: int
    end: int


class NgramFeaturizer:
    """TF-IDF over character n-grams, pinyin n-grams and tags; fit once, then transform."""

    def __init__(self, char_n: tuple[int, int] = (1, 3), pinyin_n: tuple[int, int] = (1, 2),
                 min_df: int = 2, vocab: dict[str, int] | None = None, idf: np.ndarray | None = None) -> None:
        self.char_n = char_n
        self.pinyin_n = pinyin_n
        self.min_df = min_df
        self.vocab = vocab or {}
        self.idf = idf

    def grams(self, text: str, tags: Sequence[str] = ()) -> Counter:
        norm = normalize(text)
        padded = f"^{norm}$"
        out: Counter = Counter()
        lo, hi = self.char_n
        for n in range(lo, hi + 1):
            for i in range(len(padded) - n + 1):
                g = padded[i:i + n]
                if g.strip() and g not in ("^", "$"):
                    out[g] += 1
        syls = ["^"] + [s.py for s in syllabify(norm)] + ["$"]
        lo, hi = self.pinyin_n
        for n in range(lo, hi + 1):
            for i in range(len(syls) - n + 1):
                g = syls[i:i + n]
                if g not in (["^"], ["$"]):
                    out[_PY + " ".join(g)] += 1
        for t in tags:
            out[_TAG + t] += 1
        return out

    def fit(self, texts: Sequence[str], tags: Sequence[Sequence[str]] | None = None) -> sparse.csr_matrix:
        docs = [self.grams(t, tags[i] if tags else ()) for i, t in enumerate(texts)]
        df: Counter = Counter()
        for d in docs:
            df.update(d.keys())
        kept = sorted(g for g, c in df.items() if c >= self.min_df or g.startswith(_TAG))
        self.vocab = {g: i for i, g in enumerate(kept)}
        n = len(docs)
        self.idf = np.array([math.log((1 + n) / (1 + df[g])) + 1.0 for g in kept], dtype=np.float32)
        return self._matrix(docs)

    def transform(self, texts: Sequence[str], tags: Sequence[Sequence[str]] | None = None) -> sparse.csr_matrix:
        if self.idf is None:
            raise RuntimeError("featurizer is not fitted")
        return self._matrix([self.grams(t, tags[i] if tags else ()) for i, t in enumerate(texts)])

    def _matrix(self, docs: list[Counter]) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for r, d in enumerate(docs):
            for g, c in d.items():
                j = self.vocab.get(g)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
                    vals.append((1.0 + math.log(c)) * self.idf[j])  # sublinear tf
        m = sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)),
                              shape=(len(docs), len(self.vocab)), dtype=np.float32)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sparse.csr_matrix(m.multiply(1.0 / norms[:, None]))

    def written_features(self, text: str) -> list[Feature]:
        """Written n-grams of the normalized text with their offsets (for evidence)."""
        norm = normalize(text)
        out = []
        lo, hi = self.char_n
        for n in range(max(lo, 1), hi + 1):
            for i in range(len(norm) - n + 1):
                g = norm[i:i + n]
                if g in self.vocab:
                    out.append(Feature(g, i, i + n))
        return out

    def save(self, directory: Path, name: str = "features") -> None:
        (directory / f"{name}.json").write_text(json.dumps(
            {"char_n": list(self.char_n), "pinyin_n": list(self.pinyin_n), "min_df": self.min_df,
             "vocab": sorted(self.vocab, key=self.vocab.get)}, ensure_ascii=False), encoding="utf-8")
        np.save(directory / f"{name}.idf.npy", self.idf)

    @classmethod
    def load(cls, directory: Path, name: str = "features") -> NgramFeaturizer:
        meta = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        idf = np.load(directory / f"{name}.idf.npy")
        vocab = {g: i for i, g in enumerate(meta["vocab"])}
        if len(vocab) != len(idf):
            raise ValueError(f"{directory}: feature vocabulary and idf disagree ({len(vocab)} vs {len(idf)})")
        return cls(tuple(meta["char_n"]), tuple(meta["pinyin_n"]), meta["min_df"], vocab, idf)


def fit_logistic(x: sparse.csr_matrix, y: np.ndarray, *, c: float = 4.0, balanced: bool = True,
                 seed: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(coef [k, d], intercept [k])`` of a logistic regression (multinomial for k > 2
    labels; one row for a binary target). Fixed seed and solver: the same data gives the same model."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None,
                               solver="lbfgs", random_state=seed)
    model.fit(x, y)
    return model.coef_.astype(np.float32), model.intercept_.astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
