"""``callcenter demo run``, the orchestration of ``make run``, with a stand-in call runner.

The real robot is the end-to-end tests' business; here the workers run the dialer tests'
persona-driven fake runner (``tests/integration/campaigns/fake_runner.py``: no models), while
everything else is real: the demo database, ``callcenter simulate`` on its own ports, the
console behind gunicorn (read through its API for the visibility figure), ``callcenter worker``
with the scheduler, and the stop of every process group. Redis database 6.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from callcenter.config import Settings
from callcenter.storage import Database, upgrade_database
from callcenter.storage.models import Store
from campaigns.demo_run import DemoError, DemoOptions, check_ports, reset_demo

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = "redis://127.0.0.1:6379/6"
FAKE_RUNNER = "tests.integration.campaigns.fake_runner:make_runner"

pytestmark = [pytest.mark.integration]


@pytest.fixture
def redis_db6():
    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis_lib.RedisError as exc:
        pytest.fail(f"Redis not reachable at {REDIS_URL} (run scripts/services): {exc}")
    yield client
    client.flushdb()
    client.close()


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_udp_run(n: int) -> int:
    """A first port of ``n`` consecutive free UDP ports, away from the simulator tests' 20000-24999."""
    for _ in range(50):
        first = random.randrange(26000, 28000)
        socks = []
        try:
            for port in range(first, first + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free run of UDP ports in 26000-27999")


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env.update(CALLCENTER_DATA_DIR=str(data_dir), CALLCENTER_REDIS_URL=REDIS_URL, CALLCENTER_ENV="development",
               CALLCENTER_RTP_PORT=str(random.randrange(40000, 44000, 200)), PYTHONUNBUFFERED="1")
    return env


def _demo(data_dir: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "callcenter", "demo", "run", "--runner", FAKE_RUNNER, "--workers", "1",
            "--channels", "4", "--min-calls", "10", "--simulator-processes", "1",
            "--port", str(_free_tcp_port()), "--trunk-port", str(_free_udp_run(3)),
            "--simulator-rtp-port", str(random.randrange(45000, 49000, 200)), *extra]
    return subprocess.Popen(argv, cwd=ROOT, env=_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _started_pids(output: str) -> list[int]:
    line = next(line for line in output.splitlines() if "starting:" in line)
    return [int(p) for p in re.findall(r"pid (\d+)", line)]


def _group_members(pgids: list[int]) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if len(line.split()) > 1 and int(line.split()[1]) in pgids]


@pytest.mark.sip
@pytest.mark.slow
def test_a_whole_demo_run_prints_and_writes_the_figures_and_leaves_nothing_running(tmp_path, redis_db6):
    proc = _demo(tmp_path, "--exit-when-done")
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    figures = json.loads((tmp_path / "demo-figures.json").read_text(encoding="utf-8"))
    tasks = figures["campaign"]["tasks"]
    assert sum(tasks.values()) >= 10 and tasks == {"completed": sum(tasks.values())}  # the fake: all satisfied
    assert figures["calls"] == figures["answered"] == sum(tasks.values())
    assert figures["calls_per_hour"] > 0
    # Every call was seen ended through the console API, tags included, and no earlier than its hang-up.
    visible = figures["hangup_to_visible_seconds"]
    assert visible["n"] == figures["calls"] and visible["tagged"]["n"] == figures["calls"]
    assert 0 <= visible["median"] <= visible["max"] < 30
    assert figures["answered_as_scripted"]["of"] == figures["answered"]
    assert 0 <= figures["answered_as_scripted"]["n"] <= figures["answered"]
    # One line per call as the console shows it, the figures, and a login that is the generated one.
    assert len(re.findall(r"通话 #\d+ ", output)) == figures["calls"]
    assert "calls per hour on this machine" in output and "hang-up to tags visible" in output
    assert "演示历史数据已生成 demo history" in output  # a year of marked past work beside the live calls
    admin = (tmp_path / "demo-credentials.txt").read_text(encoding="utf-8").splitlines()[0].split()
    assert f"登录 login: admin / {admin[1]}" in output
    pids = _started_pids(output)
    assert len(pids) == 3
    assert _group_members(pids) == []


@pytest.mark.sip
@pytest.mark.slow
def test_ctrl_c_while_starting_stops_every_process_it_started(tmp_path, redis_db6):
    proc = _demo(tmp_path)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "starting:" in line:
                break
        pids = _started_pids("".join(lines))
        time.sleep(2)  # the services are coming up: their children exist or are being spawned
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "已停止 stopped" in rest
    assert _group_members(pids) == []


def test_the_demo_refuses_to_reset_a_database_that_holds_other_data(tmp_path, redis_db6):
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL)
    db = Database(settings.database_url)
    upgrade_database(db)
    with db.session() as s:
        s.add(Store(code="XS01", name="某某店"))
    db.dispose()
    with pytest.raises(DemoError, match="XS01"):
        reset_demo(settings, redis_db6, customers=10, seed=1, as_of=dt.date.today())
    assert (tmp_path / "callcenter.db").exists()


def test_the_robot_rtp_ports_must_not_overlap_the_simulated_customers(tmp_path):
    settings = Settings(data_dir=tmp_path, rtp_port=30200)
    with pytest.raises(DemoError, match="overlap"):
        check_ports(DemoOptions(console_port=_free_tcp_port(), trunk_port=_free_udp_run(7)), settings)
