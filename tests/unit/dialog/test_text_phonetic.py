"""Text normalization and pinyin matching: the ground every rule and feature stands on."""

from __future__ import annotations

from dialog.phonetic import LOOSE, STRICT, PhoneticIndex, pinyin_string, syllabify, syllable_cost
from dialog.text import clauses, clip, normalize, normalize_mapped


def test_normalize_folds_width_traditional_case_and_invisibles():
    assert normalize("ＯＫ，這個車還沒修好\u200b") == "ok,这个车还没修好"
    assert normalize("  两个   空格\t") == "两个 空格"
    assert normalize("") == ""


def test_normalize_mapped_points_back_to_the_original():
    original = "  這個車ＯＫ，還沒修好"
    norm, origin = normalize_mapped(original)
    assert norm == "这个车ok,还没修好"
    start = norm.index("还没修好")
    assert original[origin[start]:origin[start + 3] + 1] == "還沒修好"


def test_clip_cuts_at_a_clause_boundary_and_says_so():
    text = "等了很久," * 600
    head, truncated = clip(text, 2000)
    assert truncated and len(head) <= 2000 and head.endswith(",")
    assert clip("短句", 2000) == ("短句", False)


def test_clauses_split_at_punctuation():
    text = "服务挺好,就是等得久。下次快点"
    assert [text[s:e] for s, e in clauses(text)] == ["服务挺好", "就是等得久", "下次快点"]


def test_syllables_read_in_context_and_keep_offsets():
    syls = syllabify("去银行ok了")
    assert [s.py for s in syls] == ["qu", "yin", "hang", "ok", "le"]
    assert (syls[3].start, syls[3].end) == (3, 5)
    assert pinyin_string("买一") == "mai yi"


def test_syllable_cost_knows_regional_confusions():
    assert syllable_cost("zhi", "zi") == 0.25
    assert syllable_cost("shan", "shang") == 0.25
    assert syllable_cost("man", "mai") == 1 / 3  # one letter: 满 vs 买
    assert syllable_cost("ma", "ma") == 0.0
    assert syllable_cost("xiang", "jian") > 0.3


def test_index_finds_phrases_by_sound_and_prefers_exact_writing():
    index = PhoneticIndex([("满意", "sat"), ("不满意", "dis"), ("洗车", "wash")], LOOSE)
    found = index.find("嗯买一吗")
    assert [(m.label, m.start, m.end) for m in found] == [("sat", 1, 3)]
    assert not found[0].exact
    longest = index.find("不满一")  # the longer phrase wins over 满意 inside it
    assert [m.label for m in longest] == ["dis"]
    assert index.find("洗车")[0].exact


def test_strict_tolerance_rejects_loose_sound_alikes():
    strict = PhoneticIndex([("态度", "x"), ("异响", "y")], STRICT)
    assert strict.find("太多了") == []  # du/duo: a letter edit, not a known confusion
    assert strict.find("意见") == []
    assert [m.label for m in strict.find("泰度")] == ["x"]  # same sound, other characters


def test_single_syllables_match_by_writing_only():
    index = PhoneticIndex([("等", "wait")])
    assert index.find("灯") == []  # a homophone of one syllable is too ambiguous
    assert [m.label for m in index.find("等了")] == ["wait"]
