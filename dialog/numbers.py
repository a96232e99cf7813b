"""Numbers as customers say them and recognizers write them: 5, 五, 两, 十一, 九十, 一百, 仨, and
sound-alikes of digits that ASR produces in front of 分 (无分 = 五分, 是分 = 十分, 酒分 = 九分).

Pure functions; any thread.
"""

from __future__ import annotations

import re

DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "仨": 3, "四": 4, "五": 5,
          "六": 6, "七": 7, "八": 8, "九": 9}
UNITS = {"十": 10, "百": 100}
# Toneless pinyin of a spoken digit -> its value: a recognizer may write any character with that
# sound (无 for 五, 是 or 石 for 十, 酒/久/就 for 九, 把/巴 for 八, 期 for 七, 刘 for 六, 思/死 for 四,
# 山/散 for 三, 领 for 零). Only used right before 分/份 or 星, where the sound is unambiguous.
DIGIT_SOUNDS = {"ling": 0, "yi": 1, "er": 2, "liang": 2, "san": 3, "si": 4, "wu": 5, "liu": 6, "qi": 7,
                "ba": 8, "jiu": 9, "shi": 10}

NUMERAL = re.compile(r"[0-9]+|[零〇一幺二两俩三仨四五六七八九十百]+")


def chinese_to_int(s: str) -> int | None:
    """``"十一"`` -> 11, ``"九十"`` -> 90, ``"一百"`` -> 100, ``"两"`` -> 2, ``"12"`` -> 12;
    None when ``s`` is not a number up to 999."""
    if not s:
        return None
    if s.isdigit():
        return int(s)
    if all(c in DIGITS for c in s):
        if len(s) == 1:
            return DIGITS[s]
        return int("".join(str(DIGITS[c]) for c in s))  # 一二三 read digit by digit
    total, current = 0, None
    for c in s:
        if c in DIGITS:
            if current is not None:
                return None  # 三四十 and the like: not a number
            current = DIGITS[c]
        elif c in UNITS:
            unit = UNITS[c]
            total += (1 if current is None else current) * unit
            current = None
        else:
            return None
    if current is not None:
        total += current
    return total if total < 1000 else None
