"""Call-level evaluation (issue 11): do the robot's conclusions per call match what the customer meant?

``python -m bench calls [--split tune|test] [--concurrency N] [--repeat N]`` (default: the test split, 4 calls at
a time) runs every persona of ``bench/data/calls/personas-<split>.yaml`` (docs/data-card-calls.md)
through the real path, as the robot benchmark does (``bench/bench_robot.py``'s machinery):

* ``callcenter simulate --personas FILE`` on 127.0.0.1 (the personas' rendered, transformed voices);
* ``bench/robot_load.py`` processes (4 calls each, pjsua2's limit): the whole robot of a worker
  process (telephony, live Whisper recognition, the dialog engine, the feedback classifier),
  ``concurrency`` calls at a time, each thread dialling its next persona when its call ended;
* each call's result recorded by :func:`campaigns.outcomes.record_outcome` (what a dialer worker
  does) into a fresh SQLite database, on a call row of a customer of a bench store;

then reads back what was recorded (outcome, score, tags, tickets, callbacks, the do-not-call list)
and judges every call against its persona's ``expect`` (:mod:`campaigns.personas.scoring`). Output:
the figures (outcome and score accuracy, complaint-tag precision and recall with praise aside,
false / missed / duplicate tickets, opt-out / transfer / callback recall, opt-outs on the
do-not-call list), ``var/bench/calls-<split>.json`` (every call: expected, concluded, the judgement,
what the customer said and what the robot heard) and ``var/bench/calls-<split>.md`` (a table).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_robot import (
    CALLS_PER_PROCESS,
    ROOT,
    _free_ports,
    _stop,
    bench_env,
    go_and_collect,
    start_robots,
    start_simulator,
)

DATA = ROOT / "bench" / "data" / "calls"
SPLITS = ("tune", "test")
STAGGER = 2.0  # seconds between the first calls, so that their turns are out of phase
STORE_CODE = "BENCH"


def personas_file(split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: one of {', '.join(SPLITS)}")
    return DATA / f"personas-{split}.yaml"


def _prepare_database(url: str, book) -> dict[str, int]:
    """A fresh schema with one store, a customer per persona and a call row per persona: number -> call id."""
    from callcenter.storage import Database, upgrade_database
    from callcenter.storage.models import Call, Customer, Store

    db = Database(url)
    try:
        upgrade_database(db)
        with db.session() as s:
            store = Store(code=STORE_CODE, name="评测门店")
            s.add(store)
            s.flush()
            ids = {}
            for i, (number, pid) in enumerate(book.numbers.items()):
                customer = Customer(external_id=f"{STORE_CODE}-{i:04d}", store_id=store.id, name=f"王先生 {pid}",
                                    phone=number)
                s.add(customer)
                s.flush()
                call = Call(customer_id=customer.id, store_id=store.id, phone=number, script="post_service",
                            robot=True)
                s.add(call)
                s.flush()
                ids[number] = call.id
        return ids
    finally:
        db.dispose()


def _transcripts(url: str, call_ids: list[int]) -> dict[int, list[str]]:
    """call id -> "R prompt_id" / "C text" lines, as recorded."""
    import sqlalchemy as sa

    from callcenter.storage import Database
    from callcenter.storage.models import Utterance

    db = Database(url)
    try:
        with db.session() as s:
            rows = s.execute(sa.select(Utterance.call_id, Utterance.speaker, Utterance.text, Utterance.prompt_id)
                             .where(Utterance.call_id.in_(call_ids)).order_by(Utterance.call_id, Utterance.seq)).all()
    finally:
        db.dispose()
    out: dict[int, list[str]] = {}
    for cid, speaker, text, prompt in rows:
        out.setdefault(cid, []).append(f"R {prompt or text}" if speaker == "robot" else f"C {text}")
    return out


def evaluate(path: Path, *, concurrency: int = 4, engine: str = "whisper", work: Path | None = None,
             only: list[str] | None = None) -> dict[str, Any]:
    """Run the personas of ``path`` (or those named in ``only``) through the robot and judge each call."""
    from campaigns.personas import load_personas
    from campaigns.personas.scoring import Expected, concluded, judge, summarize
    from campaigns.simulator.customer import read_call_logs

    book = load_personas(path, require_audio=True)
    numbers = {n: pid for n, pid in book.numbers.items() if only is None or pid in only}
    if not numbers:
        raise ValueError(f"{path}: no persona to call")
    work = work or Path(tempfile.mkdtemp(prefix="bench-calls-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "var").mkdir(exist_ok=True)
    url = f"sqlite:///{work / 'var' / 'calls.db'}"
    call_ids = _prepare_database(url, book)
    call_ids = {n: cid for n, cid in call_ids.items() if n in numbers}
    _free_ports.release()
    env = dict(bench_env(work), CALLCENTER_DATABASE_URL=url)
    processes = math.ceil(concurrency / CALLS_PER_PROCESS)
    per_process = [min(CALLS_PER_PROCESS, concurrency - p * CALLS_PER_PROCESS) for p in range(processes)]
    order = list(numbers)
    plans = []
    for p in range(processes):
        mine = order[p::processes]
        calls = [{"number": n, "call_id": call_ids[n], "script": book.personas[numbers[n]].expect.get("script",
                                                                                                      "post_service"),
                  "delay": round(STAGGER * (p + processes * i), 1) if i < per_process[p] else 0.0}
                 for i, n in enumerate(mine)]
        plans.append({"name": f"bench-calls{p}", "workers": per_process[p], "record": True, "calls": calls,
                      "turns_log": str(work / f"turns{p}.log")})
    # One phone process more than needed: a phone frees its slot a SIP transaction after the call.
    sim, trunk = start_simulator(work, processes + 1, env, "--personas", str(path))
    robots: list[subprocess.Popen] = []
    try:
        t0 = time.monotonic()
        loads = start_robots(work, plans, env, trunk, engine, robots)
        t1 = time.monotonic()
        outs = go_and_collect(work, robots, timeout=300 + 120 * len(numbers) / max(1, concurrency))
        wall = time.monotonic() - t1
        time.sleep(1.5)  # the simulator writes each call log as its call ends
        logs = {log["sip_call_id"]: log for log in read_call_logs(work / "calls")}
    finally:
        for proc in robots:
            _stop(proc)
        _stop(sim)
    robot_calls = {c["number"]: c for o in outs for c in o["calls"] if c}
    from callcenter.storage import Database

    db = Database(url)
    try:
        with db.session() as s:
            got = concluded(s, call_ids.values())
    finally:
        db.dispose()
    heard = _transcripts(url, list(call_ids.values()))
    rows, pairs = [], []
    for number, pid in numbers.items():
        persona = book.personas[pid]
        expected = Expected.from_expect(persona.expect)
        cid = call_ids[number]
        c = got[cid]
        j = judge(expected, c)
        pairs.append((expected, c, j))
        rc = robot_calls.get(number, {})
        log = logs.get(rc.get("sip_call_id") or "", {})
        rows.append({
            "persona": pid, "covers": list(persona.covers), "number": number, "call_id": cid,
            "expected": {"outcome": expected.outcome, "score5": expected.score5,
                         "categories": sorted(expected.categories), "allowed": sorted(expected.allowed),
                         "tickets": sorted(expected.tickets), "callback": expected.callback, "dnc": expected.dnc},
            "concluded": {"outcome": c.outcome, "disposition": c.disposition, "score5": c.score5,
                          "categories": sorted(c.categories), "tickets": dict(c.tickets), "callback": c.callback,
                          "dnc": c.dnc},
            "judgement": j.as_dict(),
            "robot_end": rc.get("end"), "error": rc.get("error"),
            # How valid the call is as a measurement: robot prompts the simulated customer could not
            # place (it then answers from the script's step order), and media lost on either side.
            "prompts_unrecognised": sum(1 for e in log.get("events", [])
                                        if e.get("kind") == "heard" and e.get("prompt_kind") == "unrecognised"),
            "frames_lost": {"robot": rc.get("frames_lost"), "robot_dropped": rc.get("frames_dropped"),
                            "customer": log.get("frames_lost")},
            "customer_said": [f"{a.get('key')}: {a.get('text')}" for a in log.get("answers", [])],
            "questions_heard_by_customer": log.get("questions"),
            "transcript": heard.get(cid, []),
        })
    summary = summarize(pairs)
    summary["prompts_unrecognised"] = {"n": sum(r["prompts_unrecognised"] for r in rows),
                                       "of": sum(1 for log in logs.values() for e in log.get("events", [])
                                                 if e.get("kind") == "heard")}
    return {
        "personas_file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "engine": engine, "concurrency": concurrency, "robot_processes": processes,
        "model_load_seconds": loads, "calls_wall_seconds": round(wall, 1),
        "total_wall_seconds": round(time.monotonic() - t0, 1), "work_dir": str(work),
        "summary": summary, "calls": rows,
    }


def _cell(values) -> str:
    if isinstance(values, dict):
        return ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(values.items())) or "-"
    if isinstance(values, list | tuple | set | frozenset):
        return ", ".join(sorted(values)) or "-"
    return "-" if values is None else str(values)


def markdown(result: dict[str, Any], title: str) -> str:
    s = result["summary"]
    t = s["tags"]
    k = s["tickets"]
    figures = [
        ("outcome accuracy", s["outcome_accuracy"]),
        ("score accuracy (calls with a score)",
         f"{s['score_accuracy']} of {s['scores_expected']}; invented {s['scores_invented']}"),
        ("complaint tags precision / recall",
         f"{t['precision']} / {t['recall']} (true {t['true']}, false {t['false']}, missed {t['missed']})"),
        ("tickets false / on satisfied calls / duplicate / missed",
         f"{k['false']} / {k['on_satisfied_calls']} / {k['duplicates']} / {k['missed']}"),
        ("complaint calls without their department's ticket",
         f"{k['complaint_calls_missing_a_ticket']} of {k['complaint_calls']}"),
        ("opt-out recall (precision)", f"{s['opt_out']['recall']} ({s['opt_out']['precision']})"),
        ("transfer recall (precision)", f"{s['transfer']['recall']} ({s['transfer']['precision']})"),
        ("callback recall (precision)", f"{s['callback']['recall']} ({s['callback']['precision']})"),
        ("opt-outs on the do-not-call list", f"{s['opt_outs_on_dnc_list']['n']} of {s['opt_outs_on_dnc_list']['of']}"),
    ]
    if result.get("hearing") == "text":
        head = (f"{s['calls']} calls ({result['personas_file']}, perfect hearing: the lines as typed text, "
                f"{result['total_wall_seconds']} s); all checks right on {s['all_right']}. Not simulated: "
                f"{_cell(result['not_simulated'])}.")
    else:
        head = (f"{s['calls']} calls ({result['personas_file']}, {result['engine']}, {result['concurrency']} at a "
                f"time, {result['calls_wall_seconds']} s); all checks right on {s['all_right']}. Robot prompts the "
                f"simulated customers could not place: {s['prompts_unrecognised']['n']} of "
                f"{s['prompts_unrecognised']['of']} (answered from the script's step order instead).")
    lines = [f"# {title}", "", head, "", "| figure | value |", "|---|---|",
             *(f"| {name} | {value} |" for name, value in figures), "",
             "| persona | outcome (expected → got) | score | complaint tags | tickets | callback / dnc | ok |",
             "|---|---|---|---|---|---|---|"]
    for r in result["calls"]:
        e, c, j = r["expected"], r["concluded"], r["judgement"]
        tags = _cell(e["categories"]) + " → " + _cell([x for x in c["categories"] if x != "praise"])
        lines.append(f"| {r['persona']} | {e['outcome']} → {c['outcome']} | {_cell(e['score5'])} → {_cell(c['score5'])} "
                     f"| {tags} | {_cell(e['tickets'])} → {_cell(c['tickets'])} "
                     f"| {int(e['callback'])}/{int(e['dnc'])} → {int(c['callback'])}/{int(c['dnc'])} "
                     f"| {'✓' if j['ok'] else '✗'} |")
    return "\n".join(lines) + "\n"


def _judged(result: dict[str, Any], book) -> list:
    """(expected, concluded, judgement) of every call of a results dict, judged again from what was
    recorded (its ``concluded``) with the current scoring rules and expectations; rows updated."""
    from campaigns.personas.scoring import Concluded, Expected, judge

    pairs = []
    for row in result["calls"]:
        expected = Expected.from_expect(book.personas[row["persona"]].expect)
        c = row["concluded"]
        got = Concluded(c["outcome"], c["score5"], frozenset(c["categories"]), c["tickets"], c["callback"], c["dnc"],
                        c.get("disposition"))
        j = judge(expected, got)
        row["judgement"] = j.as_dict()
        pairs.append((expected, got, j))
    return pairs


def rescore(path: Path) -> dict[str, Any]:
    """Judge the calls of a results file again from what was recorded (its ``concluded``), with the
    current scoring rules and expectations: ``python -m bench.bench_calls rescore FILE.json``."""
    from campaigns.personas import load_personas
    from campaigns.personas.scoring import summarize

    result = json.loads(path.read_text(encoding="utf-8"))
    book = load_personas(ROOT / result["personas_file"])
    unplaced = result["summary"].get("prompts_unrecognised")
    result["summary"] = summarize(_judged(result, book))
    if unplaced is not None:
        result["summary"]["prompts_unrecognised"] = unplaced
    return result


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures over every call of several runs of the same split (each persona counted once per
    run): one run of 42 personas moves several calls between runs of the same code, so a change is
    judged on the pooled figures, with each run's own beside them."""
    from campaigns.personas import load_personas
    from campaigns.personas.scoring import summarize

    pairs = []
    for result in results:
        book = load_personas(ROOT / result["personas_file"])
        pairs += _judged(result, book)
    out = summarize(pairs)
    out["runs"] = len(results)
    out["per_run"] = [{"outcome_accuracy": r["summary"]["outcome_accuracy"],
                       "score_accuracy": r["summary"]["score_accuracy"],
                       "tags_precision": r["summary"]["tags"]["precision"],
                       "tags_recall": r["summary"]["tags"]["recall"],
                       "tickets_on_satisfied_calls": r["summary"]["tickets"]["on_satisfied_calls"],
                       "complaint_calls_missing_a_ticket": r["summary"]["tickets"]["complaint_calls_missing_a_ticket"],
                       "all_right": r["summary"]["all_right"]} for r in results]
    return out


def _write(result: dict[str, Any], split: str) -> tuple[Path, Path]:
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"calls-{split}.json", out / f"calls-{split}.md"
    paths[0].write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(result, f"Calls, {split} split, {result['date']}"), encoding="utf-8")
    return paths


def run_perfect_hearing(split: str) -> dict:
    """The split with perfect hearing (:mod:`bench.calls_text`): var/bench/calls-<split>-text.json/.md;
    the models and time zone are the deployment's (``Settings``: var/models unless configured)."""
    from bench.calls_text import evaluate as evaluate_text
    from callcenter.config import Settings

    settings = Settings.from_env()
    result = evaluate_text(personas_file(split), models_dir=Path(settings.models_dir), timezone=settings.timezone)
    result["split"] = split
    result["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    json_path, md_path = _write(result, f"{split}-text")
    return {"split": split, "hearing": "text", "summary": result["summary"], "not_simulated": result["not_simulated"],
            "json": str(json_path), "markdown": str(md_path), "total_wall_seconds": result["total_wall_seconds"]}


def run(args) -> dict:
    """One run of the split, or ``--repeat N`` runs pooled (var/bench/calls-<split>-runK.json each,
    calls-<split>-pooled.json the figures over all)."""
    split = getattr(args, "split", None) or "test"
    if getattr(args, "hearing", None) == "text":
        return run_perfect_hearing(split)
    concurrency = getattr(args, "concurrency", None) or 4
    repeat = max(1, getattr(args, "repeat", None) or 1)
    results, out = [], {}
    for k in range(repeat):
        result = evaluate(personas_file(split), concurrency=concurrency)
        result["split"] = split
        result["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        json_path, md_path = _write(result, split)
        if repeat > 1:
            copy = json_path.with_name(f"calls-{split}-run{k + 1}.json")
            copy.write_text(json_path.read_text(encoding="utf-8"), encoding="utf-8")
        results.append(result)
        out = {"split": split, "summary": result["summary"], "json": str(json_path), "markdown": str(md_path),
               "calls_wall_seconds": result["calls_wall_seconds"], "total_wall_seconds": result["total_wall_seconds"],
               "work_dir": result["work_dir"]}
    if repeat > 1:
        out["pooled"] = pooled(results)
        path = ROOT / "var" / "bench" / f"calls-{split}-pooled.json"
        path.write_text(json.dumps(out["pooled"], ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        out["pooled_json"] = str(path)
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "rescore":
        sys.exit("usage: python -m bench.bench_calls rescore var/bench/calls-<split>.json")
    rescored = rescore(Path(sys.argv[2]))
    print(json.dumps(rescored["summary"], ensure_ascii=False, indent=1))
    print(_write(rescored, rescored["split"]))
