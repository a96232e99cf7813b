"""The shipped labelled data: size, validity, the split, and how corrections merge."""

from __future__ import annotations

import json

import pytest

from dialog.datasets import (
    CATEGORY_CODES,
    DataError,
    load_feedback,
    load_intents,
    merge_corrections,
    read_jsonl,
)
from dialog.text import normalize


@pytest.fixture(scope="module")
def feedback():
    return load_feedback()


@pytest.fixture(scope="module")
def intents():
    return load_intents()


def test_the_data_sets_are_as_large_as_the_issue_asks(feedback, intents):
    assert len(feedback) >= 3000
    assert len(intents) >= 1500
    assert {e.split for e in feedback} == {"train", "dev", "test"}


def test_every_category_has_examples_in_every_split(feedback):
    for split in ("train", "dev", "test"):
        rows = [e for e in feedback if e.split == split]
        for code in CATEGORY_CODES:
            assert sum(code in e.categories for e in rows) >= 15, (split, code)


def test_no_text_is_in_two_splits(feedback, intents):
    for rows in (feedback, intents):
        seen: dict[str, str] = {}
        for e in rows:
            key = normalize(e.text)
            assert seen.setdefault(key, e.split) == e.split, e.text


def test_praise_and_problem_rules_hold(feedback):
    for e in feedback:
        problems = set(e.categories) - {"praise"}
        if "praise" in e.categories and not problems:
            assert e.sentiment == "positive", e.text
        if problems and "praise" in e.categories:
            assert e.sentiment == "neutral", e.text
        if problems:
            assert e.sentiment != "positive", e.text


def test_malformed_lines_are_reported_with_their_line_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "好", "categories": [], "sentiment": "positive"}\n'
                    "{not json\n"
                    '{"text": "贵", "categories": ["pricey"], "sentiment": "negative"}\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_feedback(path)
    assert f"{path}:2: not valid JSON" in str(err.value)
    assert "and 1 more" in str(err.value)
    rows = list(read_jsonl(path.read_text(encoding="utf-8").splitlines(), str(path)))
    assert [n for n, _ in rows] == [1, 2, 3]


def test_corrections_relabel_add_and_never_touch_dev_or_test(tmp_path, feedback):
    train = next(e for e in feedback if e.split == "train")
    test = next(e for e in feedback if e.split == "test")
    path = tmp_path / "corrections.jsonl"
    lines = [
        {"text": train.text, "categories": ["price"], "sentiment": "negative"},
        {"text": "新来的顾问态度很差", "categories": ["service_attitude"], "sentiment": "negative", "id": "call-9"},
        {"text": test.text, "categories": ["facility"], "sentiment": "negative"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    merged, report = merge_corrections(feedback, path)
    assert report.as_dict() == {"relabelled": 1, "added": 1, "held_out": 1}
    relabelled = next(e for e in merged if e.text == train.text)
    assert relabelled.categories == ("price",) and relabelled.source == "correction"
    assert any(e.id == "call-9" and e.split == "train" for e in merged)
    assert next(e for e in merged if e.text == test.text).categories == test.categories


def test_a_bad_correction_file_merges_nothing(tmp_path, feedback):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "x", "categories": "price", "sentiment": "negative"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c.jsonl:1: 'categories' must be a list"):
        merge_corrections(feedback, path)
