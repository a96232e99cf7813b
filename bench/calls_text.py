"""The call-level evaluation with perfect hearing: what the robot concludes when every word arrives.

``python -m bench calls --hearing text [--split tune|test]`` runs the same personas as the SIP
evaluation (:mod:`bench.bench_calls`) through the same dialog engine, NLU and feedback classifier
(the installed models: ``Settings.models_dir``, var/models by default), but each persona's line reaches the dialog as the
text it was written as, at full recognizer confidence: no SIP, no audio, no Whisper. The calls are
recorded by :func:`campaigns.outcomes.record_outcome` into a fresh SQLite database and judged by
:mod:`campaigns.personas.scoring` exactly as the SIP run's are.

What it is for: the gap between this run and the SIP run of the same split is what the recognizer
costs; what this run misses, the dialog, the NLU and the classifier miss with perfect hearing. It
takes seconds, so the understanding can be checked on every change (the SIP run takes ~12 minutes).

The customer behaves as the SIP simulator's (:mod:`campaigns.simulator.turns`): each question gets
the persona's line for it (the next line of a list on each re-ask), a confirmation ("您是说……,对吗?")
gets its yes or no line by what the persona meant, ``hang_up_after`` hangs up after that answer.
Not simulated: barge-in and timing (the dialog hears each answer after its question ended),
answering machines and unanswered calls (the SIP run's job): such personas are left out and counted.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


def _customer(persona, book):
    """The persona's side of the conversation, for :func:`dialog.engine.run_text`."""
    from dialog.actions import CustomerHungUp

    asked: dict[str, int] = {}
    said: list[str] = []
    hang_up = False

    def reply(conversation):
        nonlocal hang_up
        if hang_up:
            return CustomerHungUp()
        confirming = conversation.confirming
        if confirming is not None:
            step, label = confirming
            yes = label in book.means(persona, step.id, step.context)
            line = persona.confirm_yes if yes else persona.confirm_no
            said.append(f"{step.id}.confirm.{label}: {line.text if line else ''}")
            return line.text if line is not None else None
        step = conversation.step
        asked[step.id] = asked.get(step.id, 0) + 1
        line = book.answer(persona, step.id, step.context, attempt=asked[step.id] - 1)
        said.append(f"{step.id}: {line.text if line else ''}")
        if persona.hang_up_after == step.id:
            hang_up = True
        return line.text if line is not None else None

    return reply, said


def _result(actions: list, finish):
    """The :class:`CallResult` a runner would report for these actions (no turns, no evidence)."""
    from callcenter.domain import CallDisposition, FeedbackCategory, Sentiment
    from callcenter.domain.calls import CallEnd, CallResult, Finding
    from campaigns.robot import _STORED

    now = dt.datetime.now(dt.UTC)
    findings = []
    for f in (finish.findings if finish is not None else ()):
        try:
            findings.append(Finding(FeedbackCategory(f["category"]), f.get("confidence"), ()))
        except ValueError:
            continue
    return CallResult(
        disposition=CallDisposition.ANSWERED, answered_at=now - dt.timedelta(seconds=60), ended_at=now,
        end=CallEnd(finish.end) if finish is not None else CallEnd.CUSTOMER_HUNG_UP,
        actions=tuple(a for a in actions if isinstance(a, _STORED)), findings=tuple(findings),
        sentiment=Sentiment(finish.sentiment) if finish is not None and finish.sentiment else None,
        score5=finish.score5 if finish is not None else None, nps=finish.nps if finish is not None else None)


def evaluate(path: Path, *, models_dir: Path, timezone: str = "Asia/Shanghai", work: Path | None = None,
             only: list[str] | None = None) -> dict[str, Any]:
    """Run the answering personas of ``path`` (or those named in ``only``) as text and judge each call."""
    from bench.bench_calls import _prepare_database
    from callcenter.storage import Database
    from campaigns.outcomes import record_outcome
    from campaigns.personas import load_personas
    from campaigns.personas.scoring import Expected, concluded, judge, summarize
    from campaigns.robot import default_context
    from campaigns.rules import RetryPolicy
    from dialog.actions import Finish
    from dialog.engine import Conversation, run_text
    from dialog.models import open_feedback_classifier, open_nlu
    from dialog.script import shipped_scripts

    t0 = time.monotonic()
    book = load_personas(path)
    tz = ZoneInfo(timezone)
    nlu = open_nlu(models_dir, tz)
    classifier = open_feedback_classifier(models_dir)
    scripts = shipped_scripts()
    work = work or Path(tempfile.mkdtemp(prefix="bench-calls-text-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'calls.db'}"
    call_ids = _prepare_database(url, book)
    loaded = time.monotonic() - t0
    numbers = {n: pid for n, pid in book.numbers.items() if only is None or pid in only}
    skipped = sorted(pid for pid in numbers.values()
                     if not book.personas[pid].answers_call or book.personas[pid].greeting is not None)
    db = Database(url)
    rows, pairs = [], []
    try:
        for number, pid in numbers.items():
            persona = book.personas[pid]
            if pid in skipped:
                continue
            script = scripts[persona.expect.get("script", "post_service")]
            conversation = Conversation(script, default_context({"store": "评测门店"}), nlu, classifier=classifier,
                                        clock=lambda: dt.datetime.now(tz), call_id=call_ids[number])
            reply, said = _customer(persona, book)
            actions = run_text(conversation, reply)
            finish = next((a for a in reversed(actions) if isinstance(a, Finish)), None)
            with db.session() as s:
                record_outcome(s, call_ids[number], _result(actions, finish), RetryPolicy())
            with db.session() as s:
                got = concluded(s, [call_ids[number]])[call_ids[number]]
            expected = Expected.from_expect(persona.expect)
            j = judge(expected, got)
            pairs.append((expected, got, j))
            rows.append({
                "persona": pid, "covers": list(persona.covers), "call_id": call_ids[number],
                "expected": {"outcome": expected.outcome, "score5": expected.score5,
                             "categories": sorted(expected.categories), "allowed": sorted(expected.allowed),
                             "tickets": sorted(expected.tickets), "callback": expected.callback, "dnc": expected.dnc},
                "concluded": {"outcome": got.outcome, "score5": got.score5, "categories": sorted(got.categories),
                              "tickets": dict(got.tickets), "callback": got.callback, "dnc": got.dnc},
                "judgement": j.as_dict(), "customer_said": said,
                "turns": [{k: t.get(k) for k in ("step", "text", "intent", "confidence", "score5")}
                          for t in (finish.turns if finish is not None else ())],
            })
    finally:
        db.dispose()
    return {"personas_file": str(path), "hearing": "text", "not_simulated": skipped,
            "model_load_seconds": round(loaded, 1), "total_wall_seconds": round(time.monotonic() - t0, 1),
            "work_dir": str(work), "summary": summarize(pairs), "calls": rows}
