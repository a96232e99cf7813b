"""Text clean-up shared by the NLU, the classifiers and the data loaders (pure functions, any thread).

Customer text arrives from ASR (Whisper writes Traditional characters now and then, full-width
digits, stray spaces) or from people typing in the console (emoji, mixed languages, pasted essays).
Everything that reads customer text goes through :func:`normalize` first, so that a rule, a
feature and a training example see the same string.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Longest text we analyse. A revisit answer is rarely over 200 characters; 10,000-character pastes
# happen in the console. Past this we analyse the head and say so (``truncated``), instead of
# spending seconds of CPU on one request.
MAX_CHARS = 2000

_SPACE = re.compile(r"\s+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Control and format characters (zero-width joiners, BOMs, bidi marks) that ASR and copy-paste leave.
_INVISIBLE = {"Cc", "Cf"}


@lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC  # pure Python, ~50 ms to build the dictionaries: once per process

    return OpenCC("t2s")


def normalize(text: str, *, simplify: bool = True) -> str:
    """Canonical form of customer text.

    NFKC (full-width letters, digits and punctuation become ASCII: ``，`` -> ``,``; ``。`` stays),
    invisible characters removed, whitespace collapsed, Traditional characters turned Simplified,
    Latin lower-cased. Punctuation is kept: it carries the clause boundaries that evidence spans use.
    """
    return normalize_mapped(text, simplify=simplify)[0]


def normalize_mapped(text: str, *, simplify: bool = True) -> tuple[str, list[int]]:
    """:func:`normalize` plus, for each output character, the offset of the input character it
    came from, so that evidence found in the normalized text can be highlighted in the original."""
    if not text:
        return "", []
    out: list[str] = []
    origin: list[int] = []
    pending_space = False
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch):
            if c.isspace():
                pending_space = bool(out)
                continue
            if unicodedata.category(c) in _INVISIBLE:
                continue
            if pending_space:
                out.append(" ")
                origin.append(i)
                pending_space = False
            lc = c.lower()
            out.extend(lc)
            origin.extend([i] * len(lc))
    norm = "".join(out)
    if simplify and _CJK.search(norm):
        converted = _t2s().convert(norm)
        if len(converted) == len(norm):
            norm = converted
        else:  # a phrase conversion changed the length: convert character by character instead
            norm = "".join(_t2s().convert(c) if len(_t2s().convert(c)) == 1 else c for c in norm)
    return norm, origin


def clip(text: str, limit: int = MAX_CHARS) -> tuple[str, bool]:
    """``(text[:limit], truncated)``; cuts at the last clause boundary before the limit when there is one."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    cut = max(head.rfind(p) for p in "。！？!?,，;；")
    if cut > limit // 2:
        head = head[: cut + 1]
    return head, True


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def is_cjk(ch: str) -> bool:
    return bool(_CJK.fullmatch(ch))


CLAUSE_BREAKS = frozenset(",，。.!！?？;；:：、~…\n")


def clauses(text: str) -> list[tuple[int, int]]:
    """Character ranges of the clauses of ``text`` (split at punctuation), empty ones dropped."""
    spans: list[tuple[int, int]] = []
    start = 0
    for i, ch in enumerate(text):
        if ch in CLAUSE_BREAKS:
            if i > start and text[start:i].strip():
                spans.append((start, i))
            start = i + 1
    if start < len(text) and text[start:].strip():
        spans.append((start, len(text)))
    return spans
