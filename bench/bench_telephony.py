"""Telephony figures (issue 3), measured with real pjsua2 workers calling SIPp on 127.0.0.1.

1. **16 concurrent calls**: 4 worker processes x 4 calls, each call playing a prompt, recording
   (stereo WAV + metadata) and streaming the customer's 20 ms frames to a Python consumer (the
   soak job, ``callcenter.telephony.jobs:soak``; SIPp echoes our audio back as the customer's).
   Reported: frames lost (media-clock ticks skipped), dropped (consumer behind) and timestamp gaps;
   frames per second of talk; CPU share per call; memory per worker.
2. **Call set-up rate**: the same 4 workers dialling short calls as fast as slots free up;
   attempts per second and dial-to-200-OK latency (p50/p95/p99), target >= 10 attempts/s.

CPU and memory come from /proc (utime+stime, VmRSS) sampled every 0.25 s. The machine is shared:
the load average and the CPU used by everything else during each run are reported beside the
figures. Ports are taken from telephony's range, 15000-19999.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.procs import PortPicker, cpu_seconds, machine_busy
from callcenter.config import Settings
from callcenter.telephony.config import SipConfig
from callcenter.telephony.recording import write_wav
from callcenter.telephony.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "data" / "sip" / "uas_answer.xml"
PAGE = os.sysconf("SC_PAGE_SIZE")
def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


_free_ports = PortPicker(15000, 20000)


class _Sampler(threading.Thread):
    """Samples CPU seconds and RSS of the workers (and SIPp) every 0.25 s."""

    def __init__(self, supervisor: Supervisor, sipp_pid: int) -> None:
        super().__init__(daemon=True)
        self.supervisor = supervisor
        self.sipp_pid = sipp_pid
        self.samples: list[tuple[float, dict[int, tuple[float, float]], float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            now = time.time()
            workers = {}
            for slot in self.supervisor.slots:
                proc = slot.process
                if proc is not None and proc.pid:
                    cpu, rss = cpu_seconds(proc.pid), _rss_mb(proc.pid)
                    if cpu is not None and rss is not None:
                        workers[slot.index] = (cpu, rss)
            self.samples.append((now, workers, cpu_seconds(self.sipp_pid) or 0.0, machine_busy()))

    def window(self, start: float, end: float) -> dict:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        span = last[0] - first[0]
        per_worker = {}
        for index in last[1]:
            if index in first[1]:
                per_worker[index] = {
                    "cpu_percent": round(100 * (last[1][index][0] - first[1][index][0]) / span, 1),
                    "rss_mb_max": round(max(s[1][index][1] for s in inside if index in s[1]), 1),
                }
        ours = sum(w["cpu_percent"] for w in per_worker.values())
        sipp = 100 * (last[2] - first[2]) / span
        machine = 100 * (last[3] - first[3]) / span
        return {"seconds": round(span, 2), "workers": per_worker, "workers_cpu_percent": round(ours, 1),
                "sipp_cpu_percent": round(sipp, 1), "machine_cpu_percent": round(machine, 1),
                "others_cpu_percent": round(machine - ours - sipp, 1)}


def _start_sipp(workdir: Path) -> tuple[subprocess.Popen, int]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp not found: install Debian's sip-tester (scripts/setup does)")
    port, media = _free_ports(1), _free_ports(4)
    proc = subprocess.Popen(
        [sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media),
         "-rtp_echo", "-nostdin", "-key", "ring_ms", "0", "-l", "64", "-trace_err", "-error_file",
         str(workdir / "sipp-errors.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return proc, port
        finally:
            s.close()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("SIPp did not start")


def _supervisor(workdir: Path, processes: int, job_args: dict) -> Supervisor:
    settings = Settings(data_dir=workdir, env="testing", log_level="WARNING")
    sip = SipConfig(bind_address="127.0.0.1", sip_port=_free_ports(processes),
                    rtp_port=_free_ports(40 * processes), rtp_port_range=40, ring_timeout=10.0,
                    recordings_dir=workdir / "recordings")
    return Supervisor(settings, sip, processes=processes, job="callcenter.telephony.jobs:soak",
                      job_args=job_args, stop_grace=30)


def _lines(directory: Path) -> list[dict]:
    out = []
    for path in sorted(directory.glob("worker-*.jsonl")):
        out += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def concurrent_calls(workdir: Path, talk: float, processes: int = 4, per_worker: int = 4) -> dict:
    prompt = workdir / "prompt.wav"
    t = np.arange(int(talk * 16000)) / 16000
    # A prompt as long as the call (tone bursts), at the phone's rate: prompts are converted once per
    # process and cached, and the first conversion (importing scipy, ~2 s of CPU here) is not what
    # this figure is about.
    write_wav(prompt, (0.3 * np.sin(2 * np.pi * 600 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0) * 32767)
              .astype("<i2").tobytes(), 16000)
    sipp, port = _start_sipp(workdir)
    out = workdir / "concurrent"
    sup = _supervisor(workdir, processes, {"target": f"sip:8001@127.0.0.1:{port}", "calls": str(per_worker),
                                           "talk": str(talk), "play": str(prompt), "record": "1",
                                           "results": str(out)})
    load_before = os.getloadavg()
    sampler = _Sampler(sup, sipp.pid)
    sampler.start()
    try:
        sup.run(threading.Event(), poll_interval=0.1)
    finally:
        sampler.stop.set()
        sampler.join()
        sipp.terminate()
        sipp.wait(5)
    calls = _lines(out)
    answered = [c for c in calls if c.get("disposition") == "answered"]
    starts = [c["invite_at"] + c["dial_to_answer"] for c in answered]
    ends = [s + c["talk_seconds"] for s, c in zip(starts, answered, strict=True)]
    all_up = (max(starts) + 1.0, min(ends) - 0.5) if answered else (0, 0)  # steady state only
    usage = sampler.window(*all_up) if all_up[1] > all_up[0] else {}
    calls_up = len(answered)
    cpu_per_call = usage.get("workers_cpu_percent", 0) / calls_up if calls_up else None
    return {
        "calls": len(calls),
        "answered": calls_up,
        "simultaneous_seconds": round(max(0.0, min(ends) - max(starts)), 2) if answered else 0,
        "talk_seconds_per_call": talk,
        "frames_received": sum(c["frames"] for c in answered),
        "frames_lost": sum(c.get("frames_lost", 0) for c in answered),
        "frames_dropped": sum(c["frames_dropped"] for c in answered),
        "timestamp_gaps": sum(c["timestamp_gaps"] for c in answered),
        "frames_per_talk_second": {"min": min(c["frames_per_talk_second"] for c in answered),
                                   "max": max(c["frames_per_talk_second"] for c in answered)},
        "consumer_max_frame_gap_ms": max(c["max_frame_gap_ms"] for c in answered),
        "cpu_percent_per_call": round(cpu_per_call, 2) if cpu_per_call is not None else None,
        "cpu_percent_per_worker": {i: w["cpu_percent"] for i, w in usage.get("workers", {}).items()},
        "rss_mb_per_worker": {i: w["rss_mb_max"] for i, w in usage.get("workers", {}).items()},
        "sipp_cpu_percent": usage.get("sipp_cpu_percent"),
        "others_cpu_percent": usage.get("others_cpu_percent"),
        "window_seconds": usage.get("seconds"),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def setup_rate(workdir: Path, per_worker: int, processes: int = 4) -> dict:
    sipp, port = _start_sipp(workdir)
    out = workdir / "setup"
    sup = _supervisor(workdir, processes, {"target": f"sip:8001@127.0.0.1:{port}", "calls": str(per_worker),
                                           "talk": "0.1", "results": str(out)})
    load_before = os.getloadavg()
    sampler = _Sampler(sup, sipp.pid)
    sampler.start()
    try:
        sup.run(threading.Event(), poll_interval=0.1)
    finally:
        sampler.stop.set()
        sampler.join()
        sipp.terminate()
        sipp.wait(5)
    calls = _lines(out)
    answered = [c for c in calls if c.get("disposition") == "answered"]
    invites = sorted(c["invite_at"] for c in calls if "invite_at" in c)
    span = invites[-1] - invites[0] if len(invites) > 1 else 0
    setup_ms = [1000 * c["dial_to_answer"] for c in answered]
    app_ms = [1000 * c["answer_latency"] for c in answered if c.get("answer_latency") is not None]
    usage = sampler.window(invites[0], invites[-1]) if span else {}
    return {
        "attempts": len(calls),
        "answered": len(answered),
        "errors": len(calls) - len(answered),
        "attempts_per_second": round((len(invites) - 1) / span, 1) if span else None,
        "dial_to_200ok_ms": {"p50": round(_pct(setup_ms, 50), 1), "p95": round(_pct(setup_ms, 95), 1),
                             "p99": round(_pct(setup_ms, 99), 1), "max": round(max(setup_ms), 1)},
        "dial_to_answered_event_ms": {"p50": round(_pct(app_ms, 50), 1), "p95": round(_pct(app_ms, 95), 1)},
        "workers_cpu_percent": usage.get("workers_cpu_percent"),
        "sipp_cpu_percent": usage.get("sipp_cpu_percent"),
        "others_cpu_percent": usage.get("others_cpu_percent"),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    with tempfile.TemporaryDirectory(prefix="bench-telephony-") as tmp:
        workdir = Path(tmp)
        (workdir / "a").mkdir()
        (workdir / "b").mkdir()
        concurrent = concurrent_calls(workdir / "a", talk=6.0 if quick else 30.0)
        setup = setup_rate(workdir / "b", per_worker=10 if quick else 60)
    summary = {
        "frames_ok": concurrent["frames_lost"] == 0 and concurrent["frames_dropped"] == 0
        and concurrent["timestamp_gaps"] == 0,
        "fps_within_2_percent": 49.0 <= concurrent["frames_per_talk_second"]["min"]
        and concurrent["frames_per_talk_second"]["max"] <= 51.0,
        "setup_rate_ok": (setup["attempts_per_second"] or 0) >= 10,
    }
    return {"concurrent_16": concurrent, "setup_rate": setup, "targets": summary}
