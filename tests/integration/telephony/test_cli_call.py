"""`callcenter call` as an operator runs it: a separate process, real SIPp, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.telephony.recording import write_wav

pytestmark = [pytest.mark.integration, pytest.mark.sip]

KEYS = ["disposition", "sip_code", "reason", "ring_seconds", "talk_seconds", "recording", "hangup_by"]


@pytest.fixture
def call(tmp_path, sip_config):
    def run(*args: str, trunk: str, **env: str) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
        environ.update({"CALLCENTER_DATA_DIR": str(tmp_path / "var"), "CALLCENTER_ENV": "testing",
                        "CALLCENTER_LOG_LEVEL": "warning", "CALLCENTER_SIP_TRUNK": trunk,
                        "CALLCENTER_SIP_BIND": "127.0.0.1", "CALLCENTER_RTP_PORT": str(sip_config.rtp_port)})
        environ.update(env)
        return subprocess.run([sys.executable, "-m", "callcenter", "call", *args], env=environ, capture_output=True,
                              text=True, timeout=60, check=False)

    return run


def test_an_answered_call_plays_records_and_prints_the_result(call, sipp, signals, tmp_path):
    prompt = tmp_path / "prompt.wav"
    write_wav(prompt, signals.pcm16(signals.bursts(8000)), 8000)
    peer = sipp("uas_answer.xml", keys={"ring_ms": 300})
    out = call("138-1234-5678", "--play", str(prompt), "--record", str(tmp_path / "rec" / "call.wav"), "--json",
               trunk=peer.trunk)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # stdout holds the JSON and nothing else
    assert list(result) == KEYS
    assert (result["disposition"], result["sip_code"], result["hangup_by"]) == ("answered", 200, "local")
    assert 0.25 < result["ring_seconds"] < 2 and 3.0 < result["talk_seconds"] < 5
    assert Path(result["recording"]).exists() and Path(result["recording"]).with_suffix(".json").exists()
    assert "13812345678" not in out.stderr  # logs mask the number
    assert peer.wait() == 0


def test_a_busy_number_is_placed_and_reported(call, sipp):
    peer = sipp("uas_final.xml", sub={"@CODE@": 486, "@REASON@": "Busy Here"})
    out = call("13812345678", "--json", trunk=peer.trunk)
    assert out.returncode == 0
    assert json.loads(out.stdout) | {"ring_seconds": 0} == {
        "disposition": "busy", "sip_code": 486, "reason": "486 Busy Here", "ring_seconds": 0, "talk_seconds": 0.0,
        "recording": None, "hangup_by": "remote"}


def test_a_trunk_unreachable_at_transport_level_is_exit_1(call):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = call("13812345678", "--json", trunk=f"127.0.0.1:{port}", CALLCENTER_SIP_TRANSPORT="tcp")
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["disposition"] == "network_error" and result["reason"].startswith("transport error")
