"""A Chinese word-unigram language model for rescoring Whisper's n-best hypotheses.

Whisper base often keeps the right reading in its beam but ranks a string of non-words first
(不买义 over 不满意). This model scores a sentence by its most probable segmentation into words of
jieba's dictionary (349,000 words with corpus frequencies, shipped inside the PyPI package: no
download), with the domain vocabulary (:mod:`asr.vocabulary`) added, so strings of real words win.
Loaded once per process (about 1 s and 100 MB); :meth:`WordLM.score` is read-only and thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from asr.textnorm import numbers_to_chinese

_CJK = re.compile(r"[\u4e00-\u9fff]+")
# Domain terms get the frequency of a common word (jieba's median word is far rarer).
DOMAIN_FREQ = 20000


class WordLM:
    """log P(sentence) under a word-unigram model, maximised over segmentations (jieba's DAG)."""

    def __init__(self, extra_words: Iterable[str] = ()) -> None:
        import jieba

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self._tok = jieba.Tokenizer()
        self._tok.initialize()
        for word in extra_words:
            if _CJK.fullmatch(word):
                self._tok.add_word(word, freq=max(DOMAIN_FREQ, self._tok.FREQ.get(word, 0)))
        self._lock = threading.Lock()  # get_DAG reads FREQ, which add_word mutates; guard anyway

    def score(self, text: str) -> float:
        """Natural-log probability of the Chinese characters of ``text`` (numbers read out first)."""
        total = 0.0
        for run in _CJK.findall(numbers_to_chinese(text)):
            with self._lock:
                dag = self._tok.get_DAG(run)
                route: dict = {}
                self._tok.calc(run, dag, route)
            total += route[0][0]
        return total
