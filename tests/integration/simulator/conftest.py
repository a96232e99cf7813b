"""The simulator as the robot meets it: ``callcenter simulate`` in its own process, on 127.0.0.1.

Ports come from 20000-24999 (this area's range), at an offset derived from the process id; the
simulator is stopped by its pid (SIGTERM, then its exit status is checked).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter.ports import PortPicker

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
LO, HI = 20000, 24999
_picker = PortPicker(LO, HI + 1, seed=os.getpid() * 7919)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports in 20000-24999 free for UDP and TCP."""
    return _picker(count)


@dataclass
class RunningSimulator:
    proc: subprocess.Popen
    trunk: str
    log_dir: Path
    stderr: Path
    summary: dict

    def logs(self) -> list[dict]:
        from campaigns.simulator.customer import read_call_logs

        return read_call_logs(self.log_dir)

    def log_for(self, sip_call_id: str, timeout: float = 10.0) -> dict:
        """The simulator's log of the call with this SIP Call-ID (written when the call ends)."""
        from campaigns.simulator.customer import read_call_logs

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = read_call_logs(self.log_dir, sip_call_id=sip_call_id)
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no simulator call log for {sip_call_id} in {self.log_dir}")

    def phone_pids(self) -> list[int]:
        """The phone processes (children spawned by the supervisor, not multiprocessing's resource tracker)."""
        out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], capture_output=True,
                             text=True, check=False)
        return [int(line.split()[0]) for line in out.stdout.splitlines()
                if "spawn_main" in line and "resource_tracker" not in line]


def start_simulator(tmp: Path, processes: int, extra: tuple[str, ...] = ()) -> RunningSimulator:
    port = free_ports(processes + 1)
    rtp = free_ports(200 * processes)
    log_dir, err = tmp / "calls", tmp / "simulate.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_DATA_DIR": str(tmp / "var"), "CALLCENTER_LOG_LEVEL": "info"})
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callcenter", "simulate", "--listen", f"127.0.0.1:{port}", "--processes",
             str(processes), "--rtp-port", str(rtp), "--log-dir", str(log_dir), *extra],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    if not line.startswith("{"):
        proc.kill()
        pytest.fail(f"callcenter simulate did not come up: {line!r} {err.read_text()[-3000:]}")
    summary = json.loads(line)
    return RunningSimulator(proc, summary["trunk"], log_dir, err, summary)


def stop_simulator(sim: RunningSimulator, timeout: float = 30.0) -> int:
    if sim.proc.poll() is None:
        sim.proc.send_signal(signal.SIGTERM)
        try:
            sim.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            sim.proc.kill()
            sim.proc.wait(5)
            raise AssertionError(f"the simulator ignored SIGTERM for {timeout} s") from None
    return sim.proc.returncode


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    """``callcenter simulate`` with 4 phone processes (exactly 16 calls) for the whole module."""
    if not (ROOT / "callcenter" / "cli" / "simulate.py").is_file():
        pytest.fail("callcenter/cli/simulate.py is missing")
    sim = start_simulator(tmp_path_factory.mktemp("simulator"), processes=4)
    yield sim
    code = stop_simulator(sim)
    assert code == 0, sim.stderr.read_text()[-3000:]


def run_stand_ins(sim: RunningSimulator, tmp: Path, batches: list[list[dict]], timeout: float = 240) -> list[dict]:
    """Run each batch (up to 4 calls) in its own robot stand-in process, all at once; results in order."""
    procs = []
    for i, calls in enumerate(batches):
        plan = {"trunk": sim.trunk, "sip_port": free_ports(1), "rtp_port": free_ports(40), "calls": calls,
                "name": f"robot{i}"}
        path = tmp / f"plan{i}.json"
        path.write_text(json.dumps(plan, ensure_ascii=False))
        procs.append(subprocess.Popen([sys.executable, str(HERE / "robot_stand_in.py"), str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"a robot stand-in ran over {timeout} s: {err[-2000:]}") from None
        assert proc.returncode == 0, err[-3000:]
        results += json.loads(out.strip().splitlines()[-1])
    return results
