"""Callback times as customers say them, relative to a fixed Wednesday morning."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dialog.when import parse_time

TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2024, 6, 12, 10, 30, tzinfo=TZ)  # a Wednesday


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 6, day, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize("text, expected", [
    ("下午三点以后再打吧", at(12, 15)),
    ("明天上午", at(13, 10)),
    ("明天早上九点半", at(13, 9, 30)),
    ("晚上再打", at(12, 19)),
    ("三点", at(12, 15)),  # the next 3 o'clock between 7:00 and 21:59
    ("八点以后", at(12, 20)),
    ("十点", at(13, 10)),  # 10:00 has passed and 22:00 is too late: tomorrow
    ("一点半打过来", at(12, 13, 30)),
    ("两个小时以后", at(12, 12, 30)),
    ("过半个钟头再打", at(12, 11)),
    ("四十五分钟后吧", at(12, 11, 15)),
    ("周五下午", at(14, 15)),
    ("下周一", at(17, 10)),
    ("下个礼拜三上午", at(19, 10)),
    ("周末吧", at(15, 10)),
    ("后天早上", at(14, 9)),
    ("明天同一时间", at(13, 10, 30)),
    ("下五三点以后", at(12, 15)),  # ASR wrote 下五 for 下午
    ("名天上午吧", at(13, 10)),
    ("这周末不行,下周末吧", at(22, 10)),  # the ruled-out clause is dropped
    ("十五号", at(15, 10)),
    ("下个月十五号我再过来", dt.datetime(2024, 7, 15, 10, 0, tzinfo=TZ)),
    ("七月三号下午", dt.datetime(2024, 7, 3, 15, 0, tzinfo=TZ)),
])
def test_times(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["晚点再打", "改天吧", "过两天", "等一会儿", "希望能快一点", "早了一点",
                                  "改天再说,今天不行", ""])
def test_vague_or_no_time(text):
    assert parse_time(text, NOW) is None


def test_the_result_keeps_the_time_zone():
    assert parse_time("明天上午", NOW).tzinfo is TZ
