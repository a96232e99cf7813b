"""Closed answers: turning the phrases' forced-decoding scores into label probabilities (no model)."""

from __future__ import annotations

import math

import pytest

from asr.whisper_engine import WhisperOptions, calibrate
from callcenter.domain import OTHER_CHOICE

PLAIN = WhisperOptions(choice_length_norm=0.0, choice_temperature=1.0, choice_other_margin=0.0)


def probs(choices) -> dict[str, float]:
    return {c.label: c.probability for c in choices}


def test_labels_sum_their_phrases_and_come_best_first():
    scores = [("5", "五分", math.log(0.3), 2), ("5", "满分", math.log(0.3), 2), ("4", "四分", math.log(0.4), 2)]
    got = calibrate(scores, ["4", "5"], PLAIN)
    assert [c.label for c in got] == ["5", "4", OTHER_CHOICE]
    assert probs(got) == pytest.approx({"5": 0.6, "4": 0.4, OTHER_CHOICE: 0.0}, abs=1e-3)


def test_other_competes_through_the_free_transcript_less_the_margin():
    scores = [("yes", "是我", -3.0, 2), (OTHER_CHOICE, "请问", -1.0, 2)]
    even = probs(calibrate(scores, ["yes", "no"], PLAIN))
    assert even[OTHER_CHOICE] > even["yes"]
    margin = probs(calibrate(scores, ["yes", "no"], WhisperOptions(choice_length_norm=0.0, choice_other_margin=4.0)))
    assert margin["yes"] > 0.8 and margin["no"] == 0.0
    assert sum(margin.values()) == pytest.approx(1.0, abs=1e-3)


def test_length_normalisation_divides_by_characters():
    # The same log-probability over four characters is a better fit than over one.
    scores = [("1", "一", -4.0, 1), ("5", "非常满意", -4.0, 4)]
    got = probs(calibrate(scores, ["1", "5"], WhisperOptions(choice_length_norm=1.0, choice_other_margin=0.0)))
    assert got["5"] > got["1"]


def test_no_scores_no_choices():
    assert calibrate([], ["yes", "no"], PLAIN) == ()


def test_a_sure_answer_naming_one_score_is_not_scored_against_the_bare_phrases():
    """"那肯定五分" names one score: forcing 五分, 四分 ... against it only spreads it over "other"."""
    from asr.whisper_engine import _names_one_score

    texts = [("5", "五分"), ("5", "五"), ("5", "非常满意"), ("4", "四分"), ("4", "满意"), ("3", "三分")]  # normalised
    assert _names_one_score("那肯定五分", texts)
    assert _names_one_score("挺满意的给五分吧", texts)  # 满意 has no numeral: the number decides
    assert not _names_one_score("三分五分", texts)  # two scores: the audio is asked
    assert not _names_one_score("挺满意的", texts)  # no number at all
    assert not _names_one_score("四轮", texts)
    assert not _names_one_score("三分三分", texts)  # the decoder repeating itself, not an answer
