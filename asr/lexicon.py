"""Lexicon correction: restore domain terms that the recogniser wrote as same-sounding characters.

Whisper base often hears the right syllables and picks the wrong characters for words it rarely saw
(宝养 for 保养, 图官 for 途观, 师父 for 师傅). A span whose pinyin *with tones* equals a domain term's
is replaced by the term. Tones are required: toneless matching also rewrote ordinary words. Longest
terms win; spans already written correctly are left alone. Pure; any thread (pypinyin is read-only
after import).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")


def _syllables(text: str) -> list[str]:
    from pypinyin import Style, pinyin

    return [s[0] for s in pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda x: ["?"] * len(x))]


class Lexicon:
    """Domain terms indexed by their pinyin."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._by_sound: dict[tuple[str, ...], str] = {}
        self._lengths: list[int] = []
        for term in terms:
            if len(term) < 2 or not _CJK_RUN.fullmatch(term):
                continue
            key = tuple(_syllables(term))
            # Two terms that sound alike are ambiguous: keep neither.
            if key in self._by_sound and self._by_sound[key] != term:
                self._by_sound[key] = ""
            else:
                self._by_sound[key] = term
        self._lengths = sorted({len(k) for k in self._by_sound}, reverse=True)

    def correct(self, text: str) -> str:
        return _CJK_RUN.sub(lambda m: self._correct_run(m.group(0)), text)

    def _correct_run(self, run: str) -> str:
        if len(run) < 2:
            return run
        sounds = _syllables(run)
        if len(sounds) != len(run):
            return run
        out = []
        i = 0
        while i < len(run):
            for n in self._lengths:
                if i + n <= len(run):
                    term = self._by_sound.get(tuple(sounds[i:i + n]))
                    if term:
                        out.append(term)
                        i += n
                        break
            else:
                out.append(run[i])
                i += 1
        return "".join(out)
