"""Text normalisation for Mandarin transcripts and error rates (CER, WER).

Owns two jobs: making engine output presentable (Traditional -> Simplified, Whisper's half-width
punctuation -> Chinese punctuation) and making a reference and a hypothesis comparable for scoring
(punctuation and spaces removed, Traditional folded to Simplified, Arabic numbers read out as Chinese
characters the way a speaker says them, as AISHELL/WenetSpeech-style scoring does). Pure functions;
any thread.

Number reading is a heuristic, so it is applied to both sides of a comparison: ``380块`` and
``三百八十块`` score equal, ``13800138000`` and ``一三八零零一三八零零零`` too.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_BIG_UNITS = ("", "万", "亿")
# A lone 2 before these measure words is read 两 (两个, 两点, 两年), elsewhere 二 (二号, 二十).
_LIANG_BEFORE = set("个次条台辆天位点周岁件把张瓶桶遍趟年块种家套只辆千万百")
_PUNCT_TO_ZH = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；"}


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc  # opencc-python-reimplemented: pure Python, loads its dictionaries once

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese (Whisper writes Traditional for Mandarin unless pushed)."""
    return _t2s().convert(text) if text else text


def tidy_chinese(text: str) -> str:
    """Simplified characters and Chinese punctuation; spaces between Chinese characters removed."""
    text = to_simplified(unicodedata.normalize("NFKC", text)).strip()
    text = re.sub(r"(?<=[\u4e00-\u9fff])([,?!:;])", lambda m: _PUNCT_TO_ZH[m.group(1)], text)
    text = re.sub(r"(?<=[\u4e00-\u9fff，。？！])\s+(?=[\u4e00-\u9fff])", "", text)
    return text


def _section(n: int) -> str:
    """0 < n < 10000 in characters, without the leading 一 of 一十."""
    out = []
    zero = False
    for i, unit in reversed(list(enumerate(_SMALL_UNITS))):
        d = (n // 10**i) % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGITS[d] + unit)
    return "".join(out)


def cardinal(n: int) -> str:
    """An integer the way it is read: 380 -> 三百八十, 10 -> 十, 2350 -> 两千三百五十, 20000 -> 两万."""
    if n == 0:
        return "零"
    if n >= 10**12:
        return "".join(_DIGITS[int(c)] for c in str(n))
    parts = []
    sections = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    for i in reversed(range(len(sections))):
        s = sections[i]
        if s == 0:
            if parts and parts[-1] != "零":
                parts.append("零")
            continue
        if parts and s < 1000 and parts[-1] != "零":
            parts.append("零")
        parts.append(_section(s) + _BIG_UNITS[i])
    text = "".join(parts).rstrip("零")
    if text.startswith("一十"):
        text = text[1:]
    # Spoken Mandarin says 两 before 千/万/亿 at the head of a number.
    text = re.sub(r"^二(?=[千万亿])", "两", text)
    text = text.replace("二千", "两千")  # 三万两千: 两 before 千 inside a number too
    text = re.sub(r"^二百", "两百", text)
    return text


def digit_string(s: str) -> str:
    return "".join(_DIGITS[int(c)] for c in s)


def _number(match: re.Match) -> str:
    whole, frac, after = match.group(1), match.group(2), match.string[match.end():match.end() + 1]
    if frac:
        return cardinal(int(whole)) + "点" + digit_string(frac[1:])
    if len(whole) >= 5 or (len(whole) > 1 and whole.startswith("0")):
        return digit_string(whole)  # phone numbers, codes: read digit by digit
    if len(whole) == 4 and after in ("年", "款") and whole[:2] in ("19", "20"):
        return digit_string(whole)  # years and model years: 二零二一款
    if whole == "2" and after in _LIANG_BEFORE:
        return "两"
    return cardinal(int(whole))


def numbers_to_chinese(text: str) -> str:
    """Arabic numbers -> Chinese reading (percentages, decimals, years, codes, cardinals)."""
    text = re.sub(r"(\d+(?:\.\d+)?)%", lambda m: "百分之" + numbers_to_chinese(m.group(1)), text)
    text = re.sub(r"(\d{1,2}):(\d{2})", lambda m: f"{cardinal(int(m.group(1)))}点{cardinal(int(m.group(2)))}"
                  + ("" if m.group(2) == "00" else "分"), text)
    return re.sub(r"(\d+)(\.\d+)?", _number, text)


_SCORE_DROP = re.compile(r"[^\w]|_", re.UNICODE)


def normalize_for_scoring(text: str) -> str:
    """The form references and hypotheses are compared in (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = to_simplified(text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 2,350 -> 2350
    text = numbers_to_chinese(text)
    return _SCORE_DROP.sub("", text)


def edit_distance(ref: list[str] | str, hyp: list[str] | str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edits, reference length) on normalised characters: sum these over a set for its CER."""
    r, h = normalize_for_scoring(ref), normalize_for_scoring(hyp)
    return edit_distance(r, h), len(r)


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edits, reference words) for space-separated languages (Korean, English)."""
    def words(t: str) -> list[str]:
        return [w for w in (_SCORE_DROP.sub("", w) for w in unicodedata.normalize("NFKC", t).lower().split()) if w]

    r, h = words(ref), words(hyp)
    return edit_distance(r, h), len(r)
