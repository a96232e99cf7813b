"""When the customer wants to be called back (or to come in): 下午三点以后, 明天上午, 周五, 两个小时以后.

Conventions (also in dialog/data/DATA_CARD.md, where the intent data's callback labels follow them):

* a named period without a clock time starts at its usual hour: 早上 9:00, 上午 10:00, 中午 12:00,
  下午 15:00, 傍晚 and 下班以后 18:00, 晚上 19:00; a day without a time: 10:00;
* a clock time without a period is the next sensible occurrence between 7:00 and 21:59: at 10:30,
  三点 is 15:00 and 十点 is tomorrow 10:00; 一点 to 六点 are afternoon;
* 周五 is the coming Friday (today if it is Friday and the time is still ahead); 下周五 is the
  Friday of next week (weeks start on Monday); 下周 alone is next Monday; 周末 the coming Saturday;
* X 小时/分钟以后 (or 过 X 小时) counts from now; vague wishes (晚点, 等会儿, 改天, 过两天) give
  ``None``: the dialog then uses its default retry delay, which the campaign's calling hours bound.

Pure functions over an explicit ``now`` (timezone-aware); any thread.
"""

from __future__ import annotations

import datetime as dt
import re

from dialog.numbers import chinese_to_int

_NUM = r"(?:[0-9]{1,2}|[零一二两三四五六七八九十]{1,3})"
# Recognizer spellings of the same words (上五 for 上午, 名天 for 明天) are folded first.
_FOLD = (("上五", "上午"), ("下五", "下午"), ("中五", "中午"), ("名天", "明天"), ("明儿个", "明天"),
         ("明儿", "明天"), ("明日", "明天"), ("今儿个", "今天"), ("今儿", "今天"), ("后晌", "下午"),
         ("晌午", "中午"), ("钟头", "小时"), ("个小时", "小时"), ("礼拜", "周"), ("星期", "周"),
         ("下个周", "下周"), ("这个周", "这周"), ("夜里头", "晚上"), ("夜里", "晚上"))
PERIODS = (("早上", 9), ("早晨", 9), ("一早", 9), ("上午", 10), ("中午", 12), ("下午", 15), ("傍晚", 18),
           ("下班", 18), ("晚上", 19), ("今晚", 19), ("明晚", 19), ("明早", 9))
_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}

_RELATIVE = re.compile(rf"(?:过)?({_NUM}|半)?(?:个)?(半)?(小时|分钟)(?:以后|之后|后)")
_RELATIVE_PRE = re.compile(rf"(?:过|等)({_NUM}|半)(?:个)?(半)?(小时|分钟)")
_CLOCK = re.compile(rf"({_NUM})(?:点|:|：)(半|{_NUM}(?:分)?)?")
_WEEK = re.compile(r"(下下|下|这|本)?周([一二三四五六日天末])")
_NEXT_WEEK = re.compile(r"下周(?![一二三四五六日天末])")
_RULED_OUT = re.compile(r"不行|不方便|没空|没时间|不在|去不了|来不了")
_DATE = re.compile(rf"(下个月|下月|这个月|本月)?(?:({_NUM})月)?({_NUM})(号|日)")
_ONE_OCLOCK = re.compile(r"(半|以后|之后|左右|钟|再|打|过来|前)")
_NOT_TODAY = re.compile(r"今天(不行|不方便|没空|没时间|不在|忙)")
_SAME_TIME = re.compile(r"(同一|这个|这)(个)?时间")


def _fold(text: str) -> str:
    for a, b in _FOLD:
        text = text.replace(a, b)
    return text


def _calendar_day(today: dt.date, month_word: str | None, month: str | None, day: str) -> dt.date | None:
    """十五号 (this month, or next if past), 下个月十五号, 七月三号 (this year, or next if past)."""
    d = chinese_to_int(day)
    if d is None or not 1 <= d <= 31:
        return None
    year, m = today.year, today.month
    if month is not None:
        m = chinese_to_int(month) or 0
        if not 1 <= m <= 12:
            return None
        if (m, d) < (today.month, today.day):
            year += 1
    elif month_word in ("下个月", "下月") or d < today.day:
        m += 1
    if m > 12:
        year, m = year + 1, m - 12
    try:
        return dt.date(year, m, d)
    except ValueError:
        return None


def parse_time(text: str, now: dt.datetime) -> dt.datetime | None:
    """The moment ``text`` names, relative to ``now``; None when it names none (or only vaguely)."""
    t = _fold(text)
    # "这周末不行,下周末吧": drop the clauses that rule a time out, if any clause is left.
    parts = [p for p in re.split(r"[,，。;；!！?？]", t) if p.strip()]
    kept = [p for p in parts if not _RULED_OUT.search(p)]
    if kept and len(kept) < len(parts):
        t = ",".join(kept)
    m = _RELATIVE.search(t) or _RELATIVE_PRE.search(t)
    if m:
        amount = 0.5 if m.group(1) == "半" else (chinese_to_int(m.group(1)) if m.group(1) else 1)
        if amount is not None:
            if m.group(2) == "半":
                amount += 0.5
            minutes = amount * (60 if m.group(3) == "小时" else 1)
            if 0 < minutes <= 7 * 24 * 60:
                return (now + dt.timedelta(minutes=minutes)).replace(second=0, microsecond=0)

    day: dt.date | None = None
    explicit_day = False
    if "大后天" in t:
        day, explicit_day = now.date() + dt.timedelta(days=3), True
    elif "后天" in t:
        day, explicit_day = now.date() + dt.timedelta(days=2), True
    elif "明天" in t or "明晚" in t or "明早" in t:
        day, explicit_day = now.date() + dt.timedelta(days=1), True
    elif "今晚" in t or ("今天" in t and not _NOT_TODAY.search(t)):
        day, explicit_day = now.date(), True
    date = _DATE.search(t)
    if date and day is None and (date.group(1) or date.group(2) or date.group(4)):
        day = _calendar_day(now.date(), date.group(1), date.group(2), date.group(3))
        explicit_day = day is not None
    wk = _WEEK.search(t)
    if wk and day is None:
        target = _WEEKDAY[wk.group(2)]
        today = now.weekday()
        if wk.group(1) in ("下", "下下"):
            monday = now.date() - dt.timedelta(days=today) + dt.timedelta(days=7 * len(wk.group(1)))
            day = monday + dt.timedelta(days=target)
        else:
            ahead = (target - today) % 7
            day = now.date() + dt.timedelta(days=ahead)
        explicit_day = True
    elif day is None and _NEXT_WEEK.search(t):
        day, explicit_day = now.date() - dt.timedelta(days=now.weekday()) + dt.timedelta(days=7), True

    period = None
    for word, hour in PERIODS:
        if word in t:
            period = (word, hour)
            break

    clock = _CLOCK.search(t)
    if clock and clock.group(0) == "一点" and period is None and not _ONE_OCLOCK.match(t, clock.end()):
        clock = None  # 快一点, 早了一点: "a little", not one o'clock
    hour = minute = None
    if clock:
        h = chinese_to_int(clock.group(1))
        if h is not None and 0 <= h <= 24:
            hour = h
            rest = clock.group(2)
            if rest == "半":
                minute = 30
            elif rest:
                mm = chinese_to_int(rest.rstrip("分"))
                minute = mm if mm is not None and mm < 60 else 0
            else:
                minute = 0
    if hour is None and period is None and day is None:
        if _SAME_TIME.search(t) and ("明天" in t):
            return (now + dt.timedelta(days=1)).replace(second=0, microsecond=0)
        return None
    if _SAME_TIME.search(t) and day is not None and hour is None and period is None:
        return dt.datetime.combine(day, now.timetz()).replace(second=0, microsecond=0)

    if hour is not None:
        if period is not None:
            word = period[0]
            if word in ("下午", "晚上", "傍晚", "下班", "今晚", "明晚") and hour < 12 or word == "中午" and hour <= 2:
                hour += 12
            candidates = [hour]
        else:
            candidates = [h for h in (hour, hour + 12) if 7 <= h <= 21] or [hour]
            if explicit_day and day != now.date():
                candidates = [candidates[0]]
        base_day = day or now.date()
        for h in candidates:
            at = dt.datetime.combine(base_day, dt.time(h % 24, minute or 0), tzinfo=now.tzinfo)
            if at > now or explicit_day and base_day != now.date():
                return at
        if day is None:  # every candidate is past today: the first one tomorrow
            return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(candidates[0] % 24, minute or 0),
                                       tzinfo=now.tzinfo)
        return dt.datetime.combine(base_day, dt.time(candidates[-1] % 24, minute or 0), tzinfo=now.tzinfo)

    if period is not None:
        base_day = day or now.date()
        at = dt.datetime.combine(base_day, dt.time(period[1]), tzinfo=now.tzinfo)
        if at <= now and day is None:
            if period[0] in ("下午", "晚上", "傍晚", "下班", "中午") and now.hour < 21:
                return (now + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
            at += dt.timedelta(days=1)
        return at
    if day == now.date():
        return None  # "今天再说": today, no time: as vague as 晚点
    return dt.datetime.combine(day, dt.time(10), tzinfo=now.tzinfo)
