"""The call-level evaluation's bookkeeping: the seeded split and the additions to tune only, and
the figures pooled over repeated runs (bench/personas_build.py, bench/bench_calls.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from bench import personas_build
from bench.bench_calls import pooled
from bench.personas_build import ADDED_TO_TUNE, check_split

DATA = Path(__file__).resolve().parents[2] / "bench" / "data" / "calls"


def _copy_split(tmp_path: Path) -> Path:
    for name in ("tune", "test"):
        shutil.copy(DATA / f"personas-{name}.yaml", tmp_path / f"personas-{name}.yaml")
    return tmp_path


def _move(tmp_path: Path, pid: str, src: str, dst: str) -> None:
    docs = {n: yaml.safe_load((tmp_path / f"personas-{n}.yaml").read_text(encoding="utf-8")) for n in (src, dst)}
    docs[dst]["personas"][pid] = docs[src]["personas"].pop(pid)
    for n, doc in docs.items():
        (tmp_path / f"personas-{n}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def test_the_shipped_split_is_the_seeded_one_with_the_additions_in_tune():
    assert check_split(DATA) == []
    tune = yaml.safe_load((DATA / "personas-tune.yaml").read_text(encoding="utf-8"))["personas"]
    assert set(ADDED_TO_TUNE) <= set(tune)


def test_a_persona_moved_between_the_splits_is_caught(tmp_path):
    d = _copy_split(tmp_path)
    test_ids = list(yaml.safe_load((d / "personas-test.yaml").read_text(encoding="utf-8"))["personas"])
    _move(d, test_ids[0], "test", "tune")
    assert check_split(d) == [f"{test_ids[0]} is in tune but the split puts it in test"]


def test_a_persona_added_after_the_split_may_not_go_to_test(tmp_path):
    d = _copy_split(tmp_path)
    pid = min(ADDED_TO_TUNE)
    _move(d, pid, "tune", "test")
    assert check_split(d) == [f"{pid} was added to tune after the split but is in test"]


def test_add_tune_refuses_an_unlisted_persona(tmp_path, monkeypatch):
    d = _copy_split(tmp_path)
    src = tmp_path / "new.yaml"
    src.write_text(yaml.safe_dump({"brand_new": {"description": "x", "covers": ["terse"], "answers": {"identity": "对。"},
                                                 "expect": {"outcome": "completed"}}}, allow_unicode=True),
                   encoding="utf-8")
    try:
        personas_build.add_tune([src], d)
    except SystemExit as exc:
        assert "brand_new" in str(exc)
    else:
        raise AssertionError("an unlisted persona was added")
    monkeypatch.setitem(ADDED_TO_TUNE, "brand_new", "test")
    assert personas_build.add_tune([src], d)["added"] == 1
    assert check_split(d) == []
    tune = yaml.safe_load((d / "personas-tune.yaml").read_text(encoding="utf-8"))
    assert tune["personas"]["brand_new"]["voice"]["voice"] in ("fastspeech2", "tacotron2")
    assert list(tune["numbers"].values())[-1] == "brand_new"


def _run(calls: list[tuple[str, dict]]) -> dict:
    rows = [{"persona": pid, "concluded": {"outcome": c.get("outcome", "completed"), "score5": c.get("score5"),
                                           "categories": c.get("categories", []), "tickets": c.get("tickets", {}),
                                           "callback": False, "dnc": False}} for pid, c in calls]
    from bench.bench_calls import _judged
    from campaigns.personas import load_personas

    book = load_personas(DATA / "personas-tune.yaml")
    from campaigns.personas.scoring import summarize

    result = {"personas_file": "bench/data/calls/personas-tune.yaml", "calls": rows}
    result["summary"] = summarize(_judged(json.loads(json.dumps(result)), book))
    return result


def test_pooled_figures_count_every_call_of_every_run():
    right = {"score5": 4, "categories": ["service_process"], "tickets": {"after_sales": 1}}
    wrong = {"score5": 3, "categories": [], "tickets": {}}
    runs = [_run([("anything_else_phone_unanswered", right)]), _run([("anything_else_phone_unanswered", wrong)])]
    out = pooled(runs)
    assert out["runs"] == 2 and out["calls"] == 2
    assert out["score_accuracy"] == 0.5
    assert out["tags"]["recall"] == 0.5
    assert [r["score_accuracy"] for r in out["per_run"]] == [1.0, 0.0]
