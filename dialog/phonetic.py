"""Pinyin-level matching, so that what a recognizer mis-writes still means what was said.

A recognizer that hears 满意吗 may write 买一吗; one that hears 保养 may write 保洋. Both keep the
sound: toneless pinyin ``man yi`` vs ``mai yi`` differ by one letter, ``bao yang`` not at all. This
module turns text into syllables (:func:`syllabify`), scores how far two syllables sound apart
(:func:`syllable_cost`, with the confusions southern speakers and 8 kHz audio produce: z/zh, c/ch,
s/sh, n/l, f/h, an/ang, en/eng, in/ing) and finds phrases in text by sound (:class:`PhoneticIndex`).

Pure functions and immutable indexes: safe from any thread. Costs are cached per syllable pair.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from pypinyin import Style, lazy_pinyin

from dialog.text import is_cjk

# Confusable initials and finals: each pair costs CONFUSABLE instead of a letter edit. Measured on
# our ASR-noisy batches: most homophone substitutions are exact pinyin matches (cost 0); the rest
# are these pairs or one-letter final changes (man -> mai).
_INITIAL_PAIRS = {("z", "zh"), ("c", "ch"), ("s", "sh"), ("n", "l"), ("f", "h"), ("r", "l")}
_FINAL_PAIRS = {("an", "ang"), ("en", "eng"), ("in", "ing"), ("ian", "iang"), ("uan", "uang"), ("ong", "eng")}
CONFUSABLE = 0.25
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
             "r", "z", "c", "s", "y", "w")


@dataclass(frozen=True, slots=True)
class Syllable:
    """One sounding unit of a text: a Chinese character, or one Latin letter/digit run."""

    text: str
    start: int  # offset of the unit in the text it came from
    end: int
    py: str  # toneless pinyin for a character; the lower-cased run otherwise


def _split(py: str) -> tuple[str, str]:
    for ini in _INITIALS:
        if py.startswith(ini) and len(py) > len(ini):
            return ini, py[len(ini):]
    return "", py


def _pair(a: str, b: str, pairs: set[tuple[str, str]]) -> bool:
    return (a, b) in pairs or (b, a) in pairs


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@lru_cache(maxsize=200_000)
def syllable_cost(a: str, b: str) -> float:
    """How different two toneless syllables sound: 0 (same) to 1 (unrelated).

    Initials must agree or be a known confusion (zh/z, n/l, ...): a recognizer keeps the onset far
    more often than the rhyme. Finals may also differ by letters (买 mai for 满 man: 1/3), which is
    the commonest recognizer slip measured on our ASR-noisy batches.
    """
    if a == b:
        return 0.0
    ia, fa = _split(a)
    ib, fb = _split(b)
    cost = 0.0 if ia == ib else (CONFUSABLE if _pair(ia, ib, _INITIAL_PAIRS) else 1.0)
    if fa != fb:
        if _pair(fa, fb, _FINAL_PAIRS):
            cost += CONFUSABLE
        else:
            cost += (2 / 3) * _levenshtein(fa, fb) / max(len(fa), len(fb), 1)
    return min(1.0, cost)


def syllabify(text: str) -> list[Syllable]:
    """Syllables of ``text``: Chinese characters with their reading in context, Latin and digit runs."""
    out: list[Syllable] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if is_cjk(ch):
            j = i
            while j < n and is_cjk(text[j]):
                j += 1
            run = text[i:j]
            # Phrase-aware readings (银行 hang, 重新 chong); one reading per character for a pure run.
            readings = lazy_pinyin(run, style=Style.NORMAL, errors="ignore")
            if len(readings) != len(run):  # pypinyin lost a rare character: read one by one
                readings = [(lazy_pinyin(c, style=Style.NORMAL, errors="ignore") or [c])[0] for c in run]
            for k, py in enumerate(readings):
                out.append(Syllable(run[k], i + k, i + k + 1, py.replace("ü", "v")))
            i = j
        elif ch.isalnum():
            j = i
            while j < n and text[j].isalnum() and not is_cjk(text[j]):
                j += 1
            out.append(Syllable(text[i:j], i, j, text[i:j].lower()))
            i = j
        else:
            i += 1
    return out


def pinyin_string(text: str) -> str:
    """Space-separated toneless pinyin of ``text`` (features for the statistical models)."""
    return " ".join(s.py for s in syllabify(text))


@dataclass(frozen=True, slots=True)
class Match:
    """A phrase found in a text by sound."""

    phrase: str
    label: str
    start: int  # character offsets into the searched text
    end: int
    cost: float  # 0 = written exactly as in the lexicon; higher = found by sound only

    @property
    def exact(self) -> bool:
        return self.cost == 0.0


# Default tolerance (mean syllable cost) by phrase length. Single syllables are matched by writing
# only (see ``find``). Two syllables allow one letter edit: 买一 vs 满意 = (1/3 + 0) / 2 = 0.17.
LOOSE = {2: 0.2, 3: 0.15}
# For open-vocabulary lexicons (the keyword classifier), where a loose match finds 太多 for 态度
# (0.17) or 意见 for 异响 (0.2): one confusable pair in two syllables, exact sound beyond.
STRICT = {2: 0.13, 3: 0.09}


def max_cost_for(n_syllables: int, tolerance: dict[int, float] = LOOSE) -> float:
    if n_syllables <= 1:
        return 0.0
    return tolerance[min(n_syllables, 3)]


class PhoneticIndex:
    """Finds lexicon phrases in a text by writing and by sound.

    Built once from ``(phrase, label)`` pairs; :meth:`find` returns every non-overlapping best match.
    A phrase written exactly wins over a sound-alike at the same place.
    """

    def __init__(self, entries: Iterable[tuple[str, str]], tolerance: dict[int, float] = LOOSE) -> None:
        self._tolerance = tolerance
        self._entries: list[tuple[str, str, tuple[str, ...]]] = []
        self._by_first: dict[str, list[int]] = defaultdict(list)
        for phrase, label in entries:
            syls = tuple(s.py for s in syllabify(phrase))
            if not syls:
                raise ValueError(f"lexicon phrase {phrase!r} has no syllables")
            self._by_first[syls[0]].append(len(self._entries))
            self._entries.append((phrase, label, syls))
        self._firsts = tuple(self._by_first)
        # syllable -> first syllables of phrases that sound close enough; filled lazily (a dict
        # store is atomic under the GIL, so concurrent readers at worst compute an entry twice).
        self._near: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _neighbours(self, py: str) -> tuple[str, ...]:
        near = self._near.get(py)
        if near is None:
            near = tuple(f for f in self._firsts if syllable_cost(py, f) <= 0.5)
            if len(self._near) < 20_000:
                self._near[py] = near
        return near

    def find(self, text: str, syllables: Sequence[Syllable] | None = None,
             phonetic: bool = True) -> list[Match]:
        syls = syllabify(text) if syllables is None else syllables
        found: list[Match] = []
        for i, s in enumerate(syls):
            firsts = self._neighbours(s.py) if phonetic else ((s.py,) if s.py in self._by_first else ())
            for first in firsts:
                for k in self._by_first[first]:
                    phrase, label, psyl = self._entries[k]
                    if i + len(psyl) > len(syls):
                        continue
                    window = syls[i:i + len(psyl)]
                    if any(text[w.end:n.start].strip() for w, n in pairwise(window)):
                        continue  # a phrase never spans punctuation
                    written = "".join(w.text for w in window)
                    if written == phrase:
                        cost = 0.0
                    elif not phonetic or len(psyl) == 1:
                        continue  # one syllable has dozens of homophones: only its own writing counts
                    else:
                        cost = sum(syllable_cost(w.py, p) for w, p in zip(window, psyl)) / len(psyl)
                        if cost > max_cost_for(len(psyl), self._tolerance):
                            continue
                        cost = max(cost, 0.01)  # same sound, other characters: not "exact"
                    found.append(Match(phrase, label, window[0].start, window[-1].end, cost))
        return best_cover(found)


def best_cover(matches: list[Match]) -> list[Match]:
    """Keep the longest, then cheapest, matches that do not overlap, in text order."""
    chosen: list[Match] = []
    taken: set[int] = set()
    for m in sorted(matches, key=lambda m: (-(m.end - m.start), m.cost, m.start)):
        span = set(range(m.start, m.end))
        if span & taken:
            continue
        taken |= span
        chosen.append(m)
    return sorted(chosen, key=lambda m: m.start)
