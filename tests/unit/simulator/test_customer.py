"""One simulated customer on one call, over the fake phone's inbound side (no SIP).

The fake phone runs its media clock 10x faster than real time (``tick=0.002``): the customer
only reads frame timestamps, so a 25 s conversation takes 2.5 s and behaves as on a real line.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import HangupBy
from callcenter.telephony.fake import FakePhone
from campaigns.personas import DEFAULT_FILE, load_personas
from campaigns.simulator.customer import SimulatedCall, read_call_logs
from campaigns.simulator.turns import Timing


@pytest.fixture
def quick_book(tmp_path):
    """The shipped personas, picking up at once (ring_seconds 0), audio shared with the shipped file."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    import re

    text = re.sub(r"ring_seconds: \d+", "ring_seconds: 0", text)
    (tmp_path / "personas.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "audio").symlink_to(DEFAULT_FILE.parent / "audio")
    return load_personas(tmp_path / "personas.yaml", require_audio=True)


@pytest.fixture
def phone(tmp_path):
    p = FakePhone(sample_rate=8000, tick=0.002, recordings_dir=tmp_path / "rec")
    yield p
    p.close()


def run(call, book, index, log_dir, **timing) -> tuple[SimulatedCall, threading.Thread]:
    sim = SimulatedCall(call, book, index, log_dir=log_dir, timing=Timing(**timing), worker="test")
    thread = threading.Thread(target=sim.run, daemon=True)
    thread.start()
    return sim, thread


def test_busy_number_is_rejected_with_486_and_logged(phone, quick_book, index, tmp_path):
    phone.ring_in("13900000006")
    sim, thread = run(phone.incoming(1), quick_book, index, tmp_path / "calls")
    thread.join(5)
    result = sim.call.result
    assert (result.disposition, result.sip_code, result.hangup_by) == (D.BUSY, 486, HangupBy.LOCAL)
    (log,) = read_call_logs(tmp_path / "calls")
    assert (log["persona"], log["disposition"], log["number"], log["questions"]) == ("busy", "busy", "139****0006", [])
    assert "13900000006" not in json.dumps(log)  # numbers are masked in the log


def test_no_answer_rings_until_the_caller_gives_up(phone, quick_book, index, tmp_path):
    phone.ring_in("13900000007", cancel_after=2.0)
    sim, thread = run(phone.incoming(1), quick_book, index, tmp_path / "calls")
    thread.join(5)
    result = sim.call.result
    assert (result.disposition, result.hangup_by, result.reason) == (D.NO_ANSWER, HangupBy.REMOTE, "caller cancelled")
    assert result.ringing_at is not None  # it rang (180) all along
    assert read_call_logs(tmp_path / "calls", persona="no_answer")[0]["disposition"] == "no_answer"


def test_a_number_nobody_answers_gets_404(phone, tmp_path, index):
    path = tmp_path / "p.yaml"
    shutil.copytree(DEFAULT_FILE.parent / "audio", tmp_path / "audio")
    path.write_text(DEFAULT_FILE.read_text(encoding="utf-8").replace("default: satisfied\n", ""), encoding="utf-8")
    book = load_personas(path)
    phone.ring_in("13712345678")
    sim, thread = run(phone.incoming(1), book, index, None)
    thread.join(5)
    assert (sim.call.result.disposition, sim.call.result.sip_code) == (D.NOT_FOUND, 404)
    assert sim.error == "no persona answers this number"


def speech_seconds(pcm: bytes) -> float:
    x = np.frombuffer(pcm[: len(pcm) // 320 * 320], dtype="<i2").astype(float).reshape(-1, 160)
    return float((10 * np.log10((x ** 2).mean(axis=1) / 32768 ** 2 + 1e-12) > -40).sum() * 0.02)


def test_a_short_conversation_is_answered_and_written_down(phone, quick_book, index, robot, tmp_path):
    fake = phone.ring_in("13900000009", audio=bytes(48000) + robot("post_service", "identity"))  # 3 s, then the question
    sim, thread = run(phone.incoming(1), quick_book, index, tmp_path / "calls", linger=2.0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e["kind"] == "said_end" and e["key"] == "identity"
                                                  for e in (sim.turns.events if sim.turns else [])):
        time.sleep(0.01)
    sent_by_then = bytes(fake.sent)
    fake.feed(robot("post_service", "end_wrong_number"))
    thread.join(10)
    assert not thread.is_alive()
    persona = quick_book.personas["wrong_number"]
    answer = persona.answers["identity"]
    from callcenter.telephony.audio import load_prompt

    spoken = speech_seconds(load_prompt(persona.hello.audio, 8000) + load_prompt(answer.audio, 8000))
    assert speech_seconds(sent_by_then) == pytest.approx(spoken, abs=0.1)  # hello + its answer went out
    result = sim.call.result
    assert (result.disposition, result.hangup_by) == (D.ANSWERED, HangupBy.LOCAL)
    (log,) = read_call_logs(tmp_path / "calls")
    assert log["persona"] == "wrong_number" and log["script"] == "post_service"
    assert log["questions"] == ["identity"]
    assert [(a["key"], a["text"]) for a in log["answers"]] == [("hello", persona.hello.text), ("identity", answer.text)]
    assert all(a["end"] > a["start"] and a["interrupted"] is False for a in log["answers"])
    heard = [e["prompt"] for e in log["events"] if e["kind"] == "heard"]
    assert heard == ["post_service.identity", "post_service.end_wrong_number"]
    assert "did not hang up" in log["events"][-1]["reason"]
    assert log["sip_call_id"] == sim.call.sip_call_id and log["cpu_seconds"] > 0
    assert read_call_logs(tmp_path / "calls", sip_call_id="nope") == []
