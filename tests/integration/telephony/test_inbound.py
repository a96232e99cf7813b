"""Incoming calls on a real pjsua2 phone: SIPp UAC scenarios and a second pjsua2 phone calling it.

The inbound phone lives in the test process for the whole module (as a simulator phone serves
call after call); every test must leave it with no call and all 4 slots free. Ports come from
20000-24999 (``INBOUND_PORTS``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import CallEventType, CallStateError, HangupBy, IncomingCall, SipConfig
from callcenter.telephony.recording import write_wav

pytestmark = [pytest.mark.integration, pytest.mark.sip]

HERE = Path(__file__).resolve().parent
LO_HI = (20000, 24999)


@pytest.fixture(scope="module")
def phone(tmp_path_factory, port_finder):
    from callcenter.telephony import open_phone

    free_ports = port_finder
    tmp = tmp_path_factory.mktemp("inbound")
    cfg = SipConfig(bind_address="127.0.0.1", sip_port=free_ports(1, *LO_HI), rtp_port=free_ports(40, *LO_HI),
                    rtp_port_range=40, audio_rate=8000, inbound=True, inbound_ring_timeout=3.0,
                    recordings_dir=tmp / "recordings")
    p = open_phone(cfg, name="inbound")
    yield p
    p.close()


@pytest.fixture(autouse=True)
def clean_slate(phone):
    yield
    phone.hangup_all()
    deadline = time.monotonic() + 5
    while phone.active_calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert phone.active_calls == 0, "a call of this test still holds a slot"
    while phone.incoming(timeout=0) is not None:
        pass


def take(phone, timeout: float = 10.0) -> IncomingCall:
    call = phone.incoming(timeout=timeout)
    assert call is not None, "no incoming call arrived"
    return call


def uac(sipp, phone, scenario: str, number: str, **kw):
    return sipp(scenario, remote=f"127.0.0.1:{phone.local_port}", service=number, port_range=LO_HI, **kw)


def test_answered_call_carries_audio_both_ways_and_the_caller_hangs_up(phone, sipp, signals, wav_channels,
                                                                      tmp_path):
    peer = uac(sipp, phone, "uac_call.xml", "13900000002", duration_ms=5000)  # -rtp_echo: we hear ourselves
    call = take(phone)
    assert (call.dialled, call.caller) == ("13900000002", "callcenter")
    assert call.target.startswith("sip:callcenter@127.0.0.1") and call.sip_call_id
    call.ring()
    time.sleep(0.3)
    call.answer(record=tmp_path / "in.wav")
    assert call.wait_answered(5)
    bursts = signals.bursts(8000)
    call.play_pcm(signals.pcm16(bursts), 8000)
    heard = bytearray()
    for frame in call.audio:
        heard += frame.audio
    result = call.wait_ended(5)
    assert peer.wait(10) == 0, peer.errors()
    assert (result.disposition, result.hangup_by, result.direction) == (D.ANSWERED, HangupBy.REMOTE, "inbound")
    assert result.codec == "PCMU/8000" and 4.0 < result.talk_seconds < 7.0
    import numpy as np

    echo = np.frombuffer(bytes(heard), dtype="<i2").astype(float) / 32768
    corr, lag = signals.best_match(bursts, 8000, echo, 8000)
    assert corr > 0.9 and lag < 0.5, (corr, lag)  # our bursts went out and came back through SIPp's echo
    rate, channels = wav_channels(result.recording)
    assert rate == 8000 and channels.shape[1] == 2
    events = [e.type for e in call.events()]
    assert events == [CallEventType.RINGING, CallEventType.ANSWERED, CallEventType.ENDED]


@pytest.mark.parametrize("code, disposition", [(486, D.BUSY), (603, D.REJECTED), (480, D.UNAVAILABLE),
                                               (404, D.NOT_FOUND)])
def test_rejected_call_gets_the_chosen_code(phone, sipp, code, disposition):
    peer = uac(sipp, phone, "uac_rejected.xml", "13900000006", sub={"[code]": code})
    call = take(phone)
    call.reject(code)
    result = call.wait_ended(5)
    assert peer.wait(10) == 0, peer.errors()  # the scenario insists on exactly this response
    assert (result.disposition, result.sip_code, result.hangup_by) == (disposition, code, HangupBy.LOCAL)
    assert f"{code} " in peer.messages()


def test_ringing_until_the_caller_gives_up(phone, sipp):
    peer = uac(sipp, phone, "uac_cancel.xml", "13900000007", duration_ms=1500)
    call = take(phone)
    call.ring()
    result = call.wait_ended(10)
    assert peer.wait(10) == 0, peer.errors()  # 180, then 200 to the CANCEL and 487 to the INVITE
    assert (result.disposition, result.hangup_by, result.reason) == (D.NO_ANSWER, HangupBy.REMOTE, "caller cancelled")
    assert 1.3 < result.ring_seconds < 4.0
    with pytest.raises(CallStateError):
        call.answer()


def test_a_call_left_ringing_gets_480_at_the_phones_ring_limit(phone, sipp):
    peer = uac(sipp, phone, "uac_rejected.xml", "13900000007", sub={"[code]": 480})
    call = take(phone)
    call.ring()
    result = call.wait_ended(10)
    assert peer.wait(10) == 0, peer.errors()
    assert (result.disposition, result.hangup_by) == (D.NO_ANSWER, HangupBy.LOCAL)
    assert 2.5 < result.ring_seconds < 5.0  # inbound_ring_timeout=3


def test_we_hang_up_an_answered_call(phone, sipp):
    peer = uac(sipp, phone, "uac_callee_bye.xml", "13900000008")
    call = take(phone)
    call.answer()
    assert call.wait_answered(5)
    time.sleep(0.5)
    call.hangup()
    result = call.wait_ended(5)
    assert peer.wait(10) == 0, peer.errors()
    assert (result.disposition, result.hangup_by, result.reason) == (D.ANSWERED, HangupBy.LOCAL, "local hang-up")


def test_hanging_up_before_answering_declines(phone, sipp):
    peer = uac(sipp, phone, "uac_rejected.xml", "13900000009", sub={"[code]": 603})
    call = take(phone)
    call.hangup()
    result = call.wait_ended(5)
    assert peer.wait(10) == 0, peer.errors()
    assert (result.disposition, result.hangup_by) == (D.REJECTED, HangupBy.LOCAL)


def test_four_calls_at_once_and_the_fifth_is_refused_by_pjsua(phone, sipp):
    peers = [uac(sipp, phone, "uac_callee_bye.xml", f"1390000010{i}") for i in range(4)]
    calls = [take(phone) for _ in range(4)]
    for call in calls:
        call.answer()
    assert all(c.wait_answered(5) for c in calls)
    assert phone.active_calls == 4
    fifth = uac(sipp, phone, "uac_rejected.xml", "13900000105", sub={"[code]": 486})
    assert fifth.wait(10) == 0, fifth.errors()  # pjsua's own "486" when every slot is taken
    assert phone.incoming(timeout=0.5) is None
    for call in calls:
        call.hangup()
    for call, peer in zip(calls, peers, strict=True):
        assert call.wait_ended(5).disposition is D.ANSWERED
        assert peer.wait(10) == 0, peer.errors()


def test_pjsua2_phone_calls_pjsua2_phone_across_processes(phone, ports, signals, tmp_path):
    """Tone bursts both ways, DTMF both ways, the callee hangs up: the caller sees all of it."""
    import numpy as np

    caller_bursts = signals.bursts(8000, freq=500)
    write_wav(tmp_path / "caller.wav", signals.pcm16(caller_bursts), 8000)
    config = {"target": f"sip:13900000001@127.0.0.1:{phone.local_port}", "sip_port": ports(1, *LO_HI),
              "rtp_port": ports(40, *LO_HI), "play": str(tmp_path / "caller.wav"), "heard": str(tmp_path / "heard.wav"),
              "dtmf": "5"}
    (tmp_path / "peer.json").write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, str(HERE / "peer_caller.py"), str(tmp_path / "peer.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        call = take(phone, timeout=20)
        assert call.dialled == "13900000001"
        call.ring()
        call.answer()
        assert call.wait_answered(5)
        ours = signals.bursts(8000, freq=900)
        call.play_pcm(signals.pcm16(ours), 8000)
        heard, digits = bytearray(), []
        done = threading.Event()

        def listen():
            for frame in call.audio:
                heard.extend(frame.audio)
            done.set()

        threading.Thread(target=listen, daemon=True).start()
        deadline = time.monotonic() + 12
        sent = False
        while time.monotonic() < deadline and not call.ended:
            event = call.next_event(timeout=0.1)
            if event is not None and event.type is CallEventType.DTMF:
                digits.append(event.digit)
            if not sent and len(heard) > 8000 * 2 * 4:  # after our bursts: a DTMF event replaces audio
                call.send_dtmf("7")
                sent = True
            if digits and sent and len(heard) > 8000 * 2 * 6:
                break
        call.hangup()
        result = call.wait_ended(5)
        done.wait(5)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    peer = json.loads(out.strip().splitlines()[-1])
    assert digits == ["5"] and peer["dtmf"] == "7"
    assert (result.disposition, result.hangup_by) == (D.ANSWERED, HangupBy.LOCAL)
    assert (peer["disposition"], peer["hangup_by"]) == ("answered", "remote")
    mine = np.frombuffer(bytes(heard), dtype="<i2").astype(float) / 32768
    corr, _ = signals.best_match(caller_bursts, 8000, mine, 8000)
    assert corr > 0.9, corr  # the caller's bursts reached us
    import wave

    with wave.open(str(tmp_path / "heard.wav")) as w:
        theirs = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float) / 32768
    corr, _ = signals.best_match(ours, 8000, theirs, 8000)
    assert corr > 0.9, corr  # ours reached the caller


def test_a_phone_without_inbound_declines_with_603(ports, sipp, tmp_path):
    """Workers keep declining: only SipConfig(inbound=True) receives calls. Runs its own process."""
    script = (
        "import sys, time\n"
        "from callcenter.telephony import SipConfig, open_phone, CallStateError\n"
        f"p = open_phone(SipConfig(bind_address='127.0.0.1', sip_port={ports(1, *LO_HI)}, rtp_port={ports(40, *LO_HI)},"
        " rtp_port_range=40))\n"
        "print(p.local_port, flush=True)\n"
        "try:\n    p.incoming(0)\nexcept CallStateError as e:\n    print('refused:', e, flush=True)\n"
        "time.sleep(6)\np.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        assert "SipConfig(inbound=True)" in proc.stdout.readline()
        peer = sipp("uac_rejected.xml", remote=f"127.0.0.1:{port}", service="13900000001", port_range=LO_HI,
                    sub={"[code]": 603})
        assert peer.wait(10) == 0, peer.errors()
    finally:
        proc.kill()
        proc.wait(5)
