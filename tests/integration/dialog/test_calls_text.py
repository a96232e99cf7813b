"""The call-level evaluation with perfect hearing (bench/calls_text.py): personas typed into the real
dialog, NLU and classifier, their calls recorded and judged as the SIP run's are."""

from __future__ import annotations

import yaml

from bench.calls_text import evaluate


def _questions() -> dict:
    """The robot's questions as the bench's personas files list them."""
    from bench.bench_calls import personas_file

    return yaml.safe_load(personas_file("tune").read_text(encoding="utf-8"))["questions"]


PERSONAS = {
    "satisfied": {
        "answers": {"identity": "是我，你说。", "satisfaction": "五分。", "advisor": "挺热情的。", "car_wash": "洗了。",
                    "on_time": "准时的。", "anything_else": "没有了。"},
        "expect": {"outcome": "completed", "score5": 5}},
    "waited_long": {
        "answers": {"identity": "是我。", "satisfaction": "两分。", "improvement": "等了三个多小时才修好，太慢了。",
                    "advisor": "一般。", "car_wash": "洗了。", "on_time": "没有，晚了两个钟头。", "anything_else": "没有了。"},
        "expect": {"outcome": "completed", "score5": 2, "categories": ["wait_time"], "tickets": ["after_sales"]}},
    "opts_out": {
        "answers": {"identity": "是我。", "satisfaction": "以后别再给我打这种电话了，把我号码删掉。"},
        "means": {"satisfaction": ["opt_out"]},
        "expect": {"outcome": "opt_out", "dnc": True}},
    "hangs_up": {
        "hang_up_after": "satisfaction",
        "answers": {"identity": "是我。", "satisfaction": "四分吧。"},
        "expect": {"outcome": "partial", "score5": 4}},
    "no_answer": {"sip": "no_answer", "expect": {"outcome": "no_answer"}},
}


def test_personas_typed_into_the_real_dialog_are_concluded_and_judged(dialog_models, tmp_path):
    personas = {pid: {"description": pid, "sip": "answer", **p} for pid, p in PERSONAS.items()}
    numbers = {f"1392000{i:04d}": pid for i, pid in enumerate(personas, 1)}
    path = tmp_path / "personas.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "questions": _questions(), "numbers": numbers, "personas": personas},
                                   allow_unicode=True), encoding="utf-8")

    result = evaluate(path, models_dir=dialog_models, work=tmp_path / "work")

    assert result["not_simulated"] == ["no_answer"]  # unanswered calls are the SIP run's to judge
    calls = {c["persona"]: c for c in result["calls"]}
    assert set(calls) == {"satisfied", "waited_long", "opts_out", "hangs_up"}
    got = {pid: c["concluded"] for pid, c in calls.items()}
    assert (got["satisfied"]["outcome"], got["satisfied"]["score5"], got["satisfied"]["tickets"]) == ("completed", 5, {})
    assert got["waited_long"]["score5"] == 2 and "wait_time" in got["waited_long"]["categories"]
    assert got["waited_long"]["tickets"].get("after_sales") == 1
    assert got["opts_out"]["outcome"] == "opt_out" and got["opts_out"]["dnc"] is True
    # The customer hung up after the score: it is kept, and the call is not a completed revisit.
    assert got["hangs_up"]["score5"] == 4 and got["hangs_up"]["outcome"] != "completed"
    assert calls["hangs_up"]["customer_said"][-1] == "satisfaction: 四分吧。"
    s = result["summary"]
    assert s["calls"] == 4 and s["opt_out"]["recall"] == 1.0 and s["tickets"]["on_satisfied_calls"] == 0


def test_the_tune_personas_typed_in_end_as_they_should(dialog_models, tmp_path):
    """With perfect hearing every tune persona's call ends with the right outcome, every opt-out,
    hand-over and callback request is acted on, and no satisfied customer gets a ticket (the tags
    are the classifier's and not asserted here; bench calls --hearing text reports them)."""
    from bench.bench_calls import personas_file

    result = evaluate(personas_file("tune"), models_dir=dialog_models, work=tmp_path)
    s = result["summary"]
    wrong = [(c["persona"], c["expected"]["outcome"], c["concluded"]["outcome"]) for c in result["calls"]
             if not c["judgement"]["outcome_ok"]]
    assert wrong == [] and s["calls"] >= 80
    assert (s["opt_out"]["recall"], s["transfer"]["recall"], s["callback"]["recall"]) == (1.0, 1.0, 1.0)
    assert s["tickets"]["on_satisfied_calls"] == 0 and s["tickets"]["duplicates"] == 0
