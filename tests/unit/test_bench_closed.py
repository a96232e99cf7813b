"""bench closed: what the dialog settles on for a clip's recognition, answered truthfully."""

from __future__ import annotations

from bench.bench_closed import settled, summarize
from dialog.nlu import Nlu


def clip(expected: str, text: str, choices, qtype: str = "score5") -> dict:
    return {"id": "x", "split": "tune", "qtype": qtype, "expected": expected, "said": "", "text": text,
            "choices": choices, "one_word": True, "label": None, "text_only_label": None, "choice_ms": None, "decode_ms": None}


def test_a_misheard_score_is_settled_by_restating_the_audios_likeliest():
    # 五分 heard as 您好: the audio leans to 1, then 5; the customer says 不是, then 对
    assert settled(clip("5", "您好", [["1", 0.37], ["5", 0.27], ["3", 0.21], ["other", 0.15]]), Nlu()) == "5"


def test_words_that_say_the_score_settle_at_once_and_nothing_settles_nothing():
    assert settled(clip("4", "四分", []), Nlu()) == "4"
    assert settled(clip("4", "嗯嗯", [["other", 0.95], ["4", 0.05]]), Nlu()) is None


def test_nps_is_settled_too_and_summarised():
    r = clip("9", "就是", [["9", 0.5], ["8", 0.2], ["other", 0.3]], qtype="nps")
    r["settled"] = settled(r, Nlu())
    assert r["settled"] == "9"
    assert summarize([r])["tune"]["nps"]["settled_accuracy"] == 1.0
