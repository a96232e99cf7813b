"""`callcenter nlu`, `classify`, `classifier eval`, `dialog validate|simulate` end to end."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.models]


def test_nlu_one_text(nlp_cli):
    result = nlp_cli("nlu", "非常满意,给五分", "--context", "sat")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["intent"], data["score5"], data["nps"], data["callback_at"]) == ("affirm", 5, None, None)


def test_nlu_jsonl_reports_bad_lines_and_goes_on(nlp_cli):
    lines = ['{"text": "九分", "context": "nps"}', "{broken", '{"text": 3}',
             '{"text": "我在开会,明天上午再打", "context": "id"}']
    result = nlp_cli("nlu", "--jsonl", "--now", "2024-06-12T10:30:00+08:00", input="\n".join(lines))
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["nps"] == 9
    assert out[1] == {"line": 2, "error": out[1]["error"]} and "not valid JSON" in out[1]["error"]
    assert out[2]["line"] == 3
    assert out[3]["intent"] == "busy_callback" and out[3]["callback_at"] == "2024-06-13T10:00:00+08:00"
    assert "line 2:" in result.stderr


def test_classify_text_and_jsonl(nlp_cli):
    result = nlp_cli("classify", "洗车洗得很干净,师傅也专业")
    assert result.exit_code == 0
    assert "praise" in json.loads(result.output)["categories"]
    result = nlp_cli("classify", "--jsonl", "--engine", "ngram",
                     input='{"text": "配件等了半个月"}\n[1, 2]\n{"text": "价格太贵了"}\n')
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1 and len(out) == 3
    assert "parts_wait" in out[0]["categories"] and "error" in out[1] and "price" in out[2]["categories"]


def test_classifier_eval_prints_the_report(nlp_cli):
    result = nlp_cli("classifier", "eval", "dialog/data/feedback.jsonl", "--split", "dev", "--engine", "ngram",
                     "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] > 400 and 0 < report["macro_f1"] <= 1
    assert set(report["per_category"]["price"]) >= {"precision", "recall", "f1", "support"}
    assert set(report["sentiment_confusion"]) == {"positive", "neutral", "negative"}
    text = nlp_cli("classifier", "eval", "dialog/data/feedback.jsonl", "--split", "dev", "--engine", "keyword")
    assert "macro-F1" in text.output and "sentiment acc." in text.output


def test_eval_of_a_broken_file_names_the_line(nlp_cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "好", "categories": [], "sentiment": "positive"}\n{"text": "x"}\n', encoding="utf-8")
    result = nlp_cli("classifier", "eval", str(bad), "--engine", "keyword")
    assert result.exit_code == 1
    assert f"{bad}:2: 'categories' must be a list" in result.output


def test_dialog_validate_names_broken_lines(nlp_cli, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\nname: 坏\nstart: a\nsteps:\n  a: {say: 你好, expect: yes_no, "
                      "on: {affirm: z, deny: b}}\n  b: {say: 再见, end: completed}\n", encoding="utf-8")
    result = nlp_cli("dialog", "validate", str(broken))
    assert result.exit_code == 1
    assert f"{broken}:5: step 'a' goes to unknown step 'z'" in result.output
    assert nlp_cli("dialog", "validate").exit_code == 0


def test_dialog_simulate_runs_a_script(nlp_cli):
    result = nlp_cli("dialog", "simulate", "post_service", "--var", "surname=王", "--var", "title=先生",
                     "--reply", "是我", "--reply", "两分", "--reply", "对", "--reply", "等了三个小时", "--reply", "还行",
                     "--reply", "洗了", "--reply", "准时", "--reply", "没有了")
    assert result.exit_code == 0, result.output
    assert "机器人: 王先生您好" in result.output
    assert "[open_ticket]" in result.output and '"category": "wait_time"' in result.output
    assert '"outcome": "completed"' in result.output
