"""``callcenter dial``: the whole robot (pjsua2, Whisper, the dialog and classifier) on one real
call to the simulator, outside any campaign; nothing is written to a database."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sip, pytest.mark.models]

ROOT = Path(__file__).resolve().parents[3]
MODELS_DIR = Path(os.environ.get("CALLCENTER_TEST_MODELS_DIR", ROOT / "var" / "models"))


def _helpers():
    """This folder's conftest (start/stop the simulator, free ports), loaded by path."""
    import importlib.util

    name = "simulator_conftest_for_dial"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def one_phone_simulator(tmp_path_factory):
    helpers = _helpers()
    sim = helpers.start_simulator(tmp_path_factory.mktemp("dial-simulator"), processes=1)
    yield sim
    assert helpers.stop_simulator(sim) == 0


def _dial(sim, ports, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") or k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_DATA_DIR": str(tmp_path / "var"), "CALLCENTER_MODELS_DIR": str(MODELS_DIR),
                "CALLCENTER_SIP_TRUNK": sim.trunk, "CALLCENTER_SIP_BIND": "127.0.0.1",
                "CALLCENTER_RTP_PORT": str(ports), "CALLCENTER_LOG_LEVEL": "warning"})
    return subprocess.run([sys.executable, "-m", "callcenter", "dial", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240, check=False)


def test_an_opt_out_call_through_the_simulator(one_phone_simulator, tmp_path):
    out = _dial(one_phone_simulator, _helpers().free_ports(200), tmp_path, "13900000011", "--var", "surname=李", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    call = json.loads(out.stdout)
    assert call["disposition"] == "answered" and call["end"] == "opt_out", call
    assert [a["kind"] for a in call["actions"]][-2:] == ["add_to_dnc", "hang_up"], call
    robot = [t for t in call["turns"] if t["speaker"] == "robot"]
    assert robot[0]["text"].startswith("李先生您好")
    heard = [t["text"] for t in call["turns"] if t["speaker"] == "customer"]
    best = max(difflib.SequenceMatcher(None, "以后别再给我打这种电话了", h).ratio() for h in heard)
    assert best >= 0.6, heard
    assert call["recording"] and (tmp_path / "var" / call["recording"]).is_file()
    assert call["error"] is None


def test_a_bad_script_is_a_setup_error(one_phone_simulator, tmp_path):
    out = _dial(one_phone_simulator, _helpers().free_ports(200), tmp_path, "13900000001", "--script", "nope")
    assert out.returncode == 1 and "unknown script 'nope'" in out.stderr
