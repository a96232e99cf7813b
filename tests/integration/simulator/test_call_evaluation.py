"""The call-level evaluation end to end (``python -m bench calls``'s machinery, bench/bench_calls.py):
three short personas of a fixture file (tests/data/calls, not the benchmark's splits) called over
SIP on 127.0.0.1 by the real robot (live Whisper recognition, the dialog engine), each outcome
recorded in a fresh SQLite database; the evaluator's figures must be what the database says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration, pytest.mark.sip, pytest.mark.models, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "data" / "calls" / "personas-fixture.yaml"


def test_three_personas_through_the_robot_are_scored_from_what_was_recorded(tmp_path):
    from bench.bench_calls import evaluate, markdown
    from callcenter.storage import Database
    from callcenter.storage.models import Call, Callback, DoNotCall

    result = evaluate(FIXTURE, concurrency=3, work=tmp_path)
    rows = {r["persona"]: r for r in result["calls"]}
    assert set(rows) == {"fx_opt_out", "fx_refused", "fx_callback"}

    # What the robot recorded, read here independently of the evaluator.
    db = Database(f"sqlite:///{tmp_path / 'var' / 'calls.db'}")
    try:
        with db.session() as s:
            calls = {c.id: c for c in s.scalars(sa.select(Call))}
            callbacks = set(s.scalars(sa.select(Callback.call_id)))
            dnc = set(s.scalars(sa.select(DoNotCall.phone)))
    finally:
        db.dispose()
    for pid, row in rows.items():
        call = calls[row["call_id"]]
        assert call.disposition == "answered" and call.ended_at is not None, (pid, row)
        assert any(line.startswith("C ") for line in row["transcript"]), (pid, row["transcript"])  # words heard
        got = row["concluded"]
        assert got["outcome"] == call.outcome.value and got["score5"] == call.score5
        assert got["callback"] == (call.id in callbacks) and got["dnc"] == (call.phone in dnc)
        judged = row["judgement"]
        assert judged["outcome_ok"] == (call.outcome.value == row["expected"]["outcome"])
        assert judged["dnc_ok"] == ((call.phone in dnc) == row["expected"]["dnc"]
                                    and (call.outcome.value != "opt_out" or call.phone in dnc))
        assert judged["callback_ok"] == ((call.id in callbacks) == row["expected"]["callback"])

    summary = result["summary"]
    right = sum(1 for r in rows.values() if calls[r["call_id"]].outcome.value == r["expected"]["outcome"])
    assert summary["calls"] == 3 and summary["outcome_accuracy"] == round(right / 3, 3)
    assert summary["opt_out"]["of"] == 1 and summary["callback"]["of"] == 1 and summary["transfer"]["of"] == 0
    assert summary["tickets"]["satisfied_calls"] == 3  # none of the three complains
    table = markdown(result, "fixture")
    assert all(f"| {pid} |" in table for pid in rows)
