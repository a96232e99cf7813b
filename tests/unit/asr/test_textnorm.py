"""Scoring normalisation: numbers, scripts, punctuation; edit distance; presentable output."""

from __future__ import annotations

import pytest

from asr.textnorm import (
    cardinal,
    char_errors,
    edit_distance,
    normalize_for_scoring,
    numbers_to_chinese,
    tidy_chinese,
    word_errors,
)


@pytest.mark.parametrize(("n", "text"), [
    (0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"), (110, "一百一十"),
    (380, "三百八十"), (2350, "两千三百五十"), (1001, "一千零一"), (20000, "两万"), (32000, "三万两千"),
    (100010, "十万零一十"), (250, "两百五十"),
])
def test_cardinal(n, text):
    assert cardinal(n) == text


@pytest.mark.parametrize(("raw", "spoken"), [
    ("花了380块", "花了三百八十块"),
    ("电话13800138000", "电话一三八零零一三八零零零"),
    ("2021款的车", "二零二一款的车"),
    ("2019年买的", "二零一九年买的"),
    ("等了2个小时", "等了两个小时"),
    ("3月2号", "三月二号"),
    ("1.5万公里", "一点五万公里"),
    ("打折50%", "打折百分之五十"),
    ("下午3:30", "下午三点三十分"),
    ("打12315投诉", "打一二三一五投诉"),
])
def test_numbers_are_read_out(raw, spoken):
    assert numbers_to_chinese(raw) == spoken


def test_scoring_form_folds_script_punctuation_width_and_numbers():
    assert normalize_for_scoring("還挺滿意的，花了３８０塊！") == "还挺满意的花了三百八十块"
    assert normalize_for_scoring("Hello, World") == "helloworld"
    assert normalize_for_scoring("2,350块") == "两千三百五十块"


def test_edit_distance_counts_each_operation_once():
    assert edit_distance("保养", "保养") == 0
    assert edit_distance("保养", "宝养") == 1
    assert edit_distance("满意", "满意了") == 1
    assert edit_distance("", "abc") == 3
    assert edit_distance(["a", "b"], ["b"]) == 1


def test_char_errors_ignore_what_scoring_should_not_count():
    assert char_errors("我花了三百八十块。", "我花了380块") == (0, 8)
    assert char_errors("满意，挺好的。", "滿意 挺好的") == (0, 5)
    assert char_errors("等太久了", "等太旧了") == (1, 4)


def test_word_errors_for_space_separated_languages():
    assert word_errors("다시 전화해 주세요", "다시 전화해 주세요") == (0, 3)
    assert word_errors("다시 전화해 주세요", "다시 주세요") == (1, 3)


def test_tidy_chinese_gives_simplified_text_with_chinese_punctuation():
    assert tidy_chinese("整體還算滿意吧,就是等的時間有點長") == "整体还算满意吧，就是等的时间有点长"
    assert tidy_chinese("新车台了一个月 后北乡有意想") == "新车台了一个月后北乡有意想"
