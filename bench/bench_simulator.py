"""Simulated customers (issue 6, phase 2a): what 16 concurrent simulated calls cost and how they behave.

``callcenter simulate`` (4 phone processes x 4 calls) takes 16 concurrent calls from 4 robot
stand-in processes (pjsua2 through callcenter.telephony, 4 calls each) that play the shipped
post_service prompts in order, as the robot would, and time the customers' replies
(tests/integration/simulator/robot_stand_in.py).

Reported:

* **CPU per simulated call**: the simulator's process tree (front + 4 phone processes: pjmedia's
  codec, jitter buffer and resampling, our media callbacks, VAD, prompt lookups) from /proc, over
  the whole batch, divided by the calls' talk time: per cent of one core per live call. The call
  threads' own CPU (VAD, turn-taking, fingerprint lookups; ``cpu_seconds`` in each call log) is
  reported apart, so the media share is the rest.
* **turn gaps**: robot prompt end -> customer reply start (p50/p95), and barge-in leads;
* **recognition**: prompts recognised as the question actually asked, over all calls.

The machine is shared: the load average and the CPU everything else used meanwhile are recorded.
Ports come from 20000-24999 (the simulator's test range).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import PortPicker, machine_busy, tree_cpu

_free_ports = PortPicker(20000, 25000)

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "tests" / "integration" / "simulator" / "robot_stand_in.py"
FULL = ["identity", "satisfaction", "improvement", "advisor", "car_wash", "on_time", "anything_else", "end_thanks"]
SHORT = ["identity", "satisfaction", "end_thanks"]
# 16 answering customers of the shipped personas file (the barge-in one included).
NUMBERS = ["13900000001", "13900000002", "13900000003", "13900000004", "13900000005", "13712340001",
           "13712340002", "13712340003", "13712340004", "13712340005", "13712340006", "13712340007",
           "13712340008", "13712340009", "13712340010", "13712340011"]
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 3)


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    processes, prompts = (1, SHORT) if quick else (4, FULL)
    numbers = NUMBERS[:4] if quick else NUMBERS
    work = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    port, rtp = _free_ports(processes + 1), _free_ports(200 * processes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env.update({"CALLCENTER_DATA_DIR": str(work / "var"), "CALLCENTER_LOG_LEVEL": "warning"})
    log_dir = work / "calls"
    with open(work / "simulate.log", "wb") as stderr:
        sim = subprocess.Popen([sys.executable, "-m", "callcenter", "simulate", "--listen", f"127.0.0.1:{port}",
                                "--processes", str(processes), "--rtp-port", str(rtp), "--log-dir", str(log_dir)],
                               stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env)
    try:
        started = time.monotonic()
        ready = sim.stdout.readline()
        if not ready.startswith("{"):
            raise RuntimeError(f"simulator did not start: {(work / 'simulate.log').read_text()[-2000:]}")
        startup = time.monotonic() - started
        trunk = json.loads(ready)["trunk"]
        time.sleep(2.0)  # let the phones settle: the idle figure is measured apart
        idle0, idle_t0 = tree_cpu(sim.pid), time.monotonic()
        time.sleep(5.0)
        idle_cpu = (tree_cpu(sim.pid) - idle0) / (time.monotonic() - idle_t0)
        load_before = os.getloadavg()
        cpu0, busy0, t0 = tree_cpu(sim.pid), machine_busy(), time.monotonic()
        reaped0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        stand_ins = []
        for i in range(0, len(numbers), 4):
            plan = {"trunk": trunk, "sip_port": _free_ports(1), "rtp_port": _free_ports(40), "name": f"robot{i // 4}",
                    "calls": [{"number": n, "prompts": prompts} for n in numbers[i:i + 4]]}
            path = work / f"plan{i}.json"
            path.write_text(json.dumps(plan))
            stand_ins.append(subprocess.Popen([sys.executable, str(STAND_IN), str(path)], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, cwd=ROOT))
        results = []
        for proc in stand_ins:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"robot stand-in failed: {err[-2000:]}")
            results += json.loads(out.strip().splitlines()[-1])
        wall = time.monotonic() - t0
        cpu = tree_cpu(sim.pid) - cpu0
        machine = machine_busy() - busy0
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)  # the stand-ins, reaped by communicate()
        stand_in_cpu = reaped.ru_utime + reaped.ru_stime - reaped0.ru_utime - reaped0.ru_stime
        time.sleep(1.0)  # the last call logs are written as the calls end
        from campaigns.simulator.customer import read_call_logs

        logs = {log["sip_call_id"]: log for log in read_call_logs(log_dir)}
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
    talk = sum(r.get("talk_seconds") or 0 for r in results)
    gaps, leads, asked, recognised = [], [], 0, 0
    for r in results:
        log = logs.get(r.get("sip_call_id"), {})
        barge = log.get("persona") == "complains_quality"
        questions = [t["prompt"] for t in r.get("turns", []) if not t["prompt"].startswith("end_")]
        asked += len(questions)
        recognised += sum(1 for a, b in zip(questions, log.get("questions", []), strict=False) if a == b)
        for t in r.get("turns", []):
            if t["reply_start"] is None:
                continue
            (leads if barge else gaps).append(t["reply_start"] - t["prompt_end"])
    thread_cpu = sum(log.get("cpu_seconds", 0) for log in logs.values())
    return {
        "calls": len(results),
        "answered": sum(1 for r in results if r.get("disposition") == "answered"),
        "simulator_processes": processes,
        "startup_seconds": round(startup, 1),
        "wall_seconds": round(wall, 1),
        "talk_seconds_total": round(talk, 1),
        "frames_lost_robot_side": sum(r.get("frames_lost") or 0 for r in results),
        "frames_lost_simulator_side": sum(log.get("frames_lost", 0) for log in logs.values()),
        "simulator_cpu_seconds": round(cpu, 2),
        "cpu_percent_of_a_core_per_call": round(100 * cpu / talk, 2) if talk else None,
        "call_thread_cpu_percent_per_call": round(100 * thread_cpu / talk, 3) if talk else None,
        "idle_simulator_cpu_percent": round(100 * idle_cpu, 2),
        "turn_gap_p50": _pct(gaps, 50),
        "turn_gap_p95": _pct(gaps, 95),
        "barge_in_lead_p50": _pct([-x for x in leads], 50),
        "questions_asked": asked,
        "questions_recognised": recognised,
        "machine": {"load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
                    "busy_cpu_seconds": round(machine, 1), "robot_stand_ins_cpu_seconds": round(stand_in_cpu, 1),
                    "others_cpu_seconds": round(machine - cpu - stand_in_cpu, 1)},
    }
