"""Real calls from one pjsua2 phone to SIPp scenarios on 127.0.0.1.

The phone is shared by the whole module on purpose (``shared_phone``): every scenario (busy, no
answer, garbage, media failures ...) must leave it healthy for the next call, as a worker serves
call after call.
"""

from __future__ import annotations

import json
import struct
import subprocess
import threading
import time

import numpy as np
import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import (
    CallEventType,
    CapacityError,
    DtmfMethod,
    HangupBy,
    InvalidTarget,
    MediaFileError,
)
from callcenter.telephony.recording import write_wav

pytestmark = [pytest.mark.integration, pytest.mark.sip]


def assert_healthy(phone) -> None:
    assert phone.healthy() and phone.active_calls == 0


@pytest.fixture(autouse=True)
def no_call_left_behind(shared_phone, sipp, settle):
    """A failed test must not leave calls that starve the next tests of slots.

    Every test starts with all four slots free: pjsua keeps a slot until the far end answers our
    BYE, and a SIPp that exited first leaves it taken for Timer F. Depending on ``sipp`` makes the
    hang-ups below go out while the test's SIPp peers still run (fixtures end in reverse order)."""
    waited = settle(shared_phone)
    assert not shared_phone.slots_in_use, f"pjsua still holds {shared_phone.slots_in_use} call(s) after {waited:.0f} s"
    yield
    shared_phone.hangup_all()
    settle(shared_phone, timeout=5.0)


@pytest.fixture
def prompt(tmp_path, signals):
    """A 16 kHz prompt of tone bursts (3.1 s) and its samples."""
    x = signals.bursts(16000)
    path = tmp_path / "prompt.wav"
    write_wav(path, signals.pcm16(x), 16000)
    return path, x


# -- dispositions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,reason,disposition", [
    (486, "Busy Here", D.BUSY),
    (600, "Busy Everywhere", D.BUSY),
    (603, "Decline", D.REJECTED),
    (404, "Not Found", D.NOT_FOUND),
    (604, "Does Not Exist Anywhere", D.NOT_FOUND),
    (480, "Temporarily Unavailable", D.UNAVAILABLE),
    (503, "Service Unavailable", D.UNAVAILABLE),
    (488, "Not Acceptable Here", D.FAILED),
])
def test_final_responses_give_their_disposition(shared_phone, sipp, code, reason, disposition):
    peer = sipp("uas_final.xml", sub={"@CODE@": code, "@REASON@": reason})
    h = shared_phone.dial(peer.uri("13812345678"))
    r = h.wait_ended(10)
    assert (r.disposition, r.sip_code, r.hangup_by) == (disposition, code, HangupBy.REMOTE)
    assert r.reason == f"{code} {reason}" and r.talk_seconds == 0 and r.answered_at is None
    assert peer.wait() == 0, peer.errors()  # SIPp saw our ACK
    assert_healthy(shared_phone)


def test_ringing_without_answer_is_cancelled_at_the_ring_timeout(shared_phone, sipp):
    peer = sipp("uas_ring.xml")
    h = shared_phone.dial(peer.uri(), ring_timeout=1.5)
    r = h.wait_ended(10)
    assert (r.disposition, r.sip_code, r.hangup_by) == (D.NO_ANSWER, 487, HangupBy.LOCAL)
    assert 1.4 < r.ring_seconds < 3.0 and r.ringing_at is not None
    assert [e.type for e in h.events()] == [CallEventType.RINGING, CallEventType.ENDED]
    assert peer.wait() == 0, peer.errors()  # CANCEL, 200, 487, ACK in order
    assert_healthy(shared_phone)


def test_bye_from_the_far_end_in_the_middle_of_a_prompt(shared_phone, sipp, prompt):
    peer = sipp("uas_bye.xml", keys={"ring_ms": 100, "hold_ms": 1000})
    h = shared_phone.dial(peer.uri())
    assert h.wait_answered(5)
    playback = h.play(prompt[0])
    r = h.wait_ended(10)
    assert (r.disposition, r.hangup_by) == (D.ANSWERED, HangupBy.REMOTE)
    assert 0.8 < r.talk_seconds < 2.0
    assert playback.wait(1) and playback.interrupted and playback.played_seconds < 2.0
    assert peer.wait() == 0, peer.errors()
    assert_healthy(shared_phone)


@pytest.mark.parametrize("scenario,code", [("uas_nosdp.xml", 406), ("uas_badcodec.xml", 415)])
def test_an_answer_without_usable_media_is_a_failed_call(shared_phone, sipp, scenario, code):
    peer = sipp(scenario)
    h = shared_phone.dial(peer.uri())
    r = h.wait_ended(10)
    assert (r.disposition, r.sip_code) == (D.FAILED, code)
    assert r.reason.startswith("answered without usable media")
    assert not h.answered and list(h.audio) == []
    peer.wait()
    assert_healthy(shared_phone)


def test_bad_targets_and_prompts_are_clear_errors_and_the_call_goes_on(shared_phone, sipp, tmp_path):
    with pytest.raises(InvalidTarget):
        shared_phone.dial("sip:8001@bad host")
    with pytest.raises(InvalidTarget):
        shared_phone.dial("13812345678")  # no trunk configured on this phone
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri())
    assert h.wait_answered(5)
    with pytest.raises(MediaFileError, match="no such file"):
        h.play(tmp_path / "missing.wav")
    odd = tmp_path / "odd.wav"
    fmt = struct.pack("<HHIIHH", 0x11, 1, 8000, 4055, 256, 4)  # IMA ADPCM, which we do not decode
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 256) + bytes(256)
    odd.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(MediaFileError, match="IMA ADPCM"):
        h.play(odd)
    assert not h.ended
    h.hangup()
    assert h.wait_ended(5).disposition is D.ANSWERED
    assert_healthy(shared_phone)


# -- media ---------------------------------------------------------------------------------------------
def test_recording_has_the_echoed_customer_left_and_our_prompt_right(shared_phone, sipp, prompt, signals,
                                                                     wav_channels):
    path, x = prompt
    peer = sipp("uas_answer.xml", keys={"ring_ms": 200})
    h = shared_phone.dial(peer.uri(), record=True)
    assert h.wait_answered(5)
    playback = h.play(path)
    assert playback.wait(10) and not playback.interrupted
    time.sleep(0.4)  # let the echo of the last burst come back
    h.hangup()
    r = h.wait_ended(5)
    assert r.recording is not None and r.recording.exists()
    rate, ch = wav_channels(r.recording)
    assert rate == 16000 and len(ch) / rate <= r.talk_seconds + 0.1
    ours, customer = ch[:, 1], ch[:, 0]
    corr, lag = signals.best_match(x, 16000, ours, rate)
    assert corr > 0.99 and lag < 0.1  # our side is the prompt itself
    corr, echo_lag = signals.best_match(x, 16000, customer, rate)
    assert corr > 0.9 and lag <= echo_lag < 0.3  # the customer side is its echo, a little later
    meta = json.loads(r.recording.with_suffix(".json").read_text())
    assert meta["disposition"] == "answered" and meta["hangup_by"] == "local" and meta["codec"] == r.codec
    assert meta["channels"] == {"left": "customer", "right": "robot and agent"}
    assert peer.wait() == 0


def test_customer_frames_arrive_fifty_a_second_without_gaps(shared_phone, sipp, prompt):
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri())
    assert h.wait_answered(5)
    h.play(prompt[0])
    arrivals, stamps = [], []
    deadline = time.monotonic() + 4.0
    for frame in h.audio:
        arrivals.append(time.monotonic())
        stamps.append(frame.timestamp)
        assert len(frame.audio) == 640 and frame.sample_rate == 16000
        if arrivals[-1] >= deadline and not h.ended:
            h.hangup()
    r = h.wait_ended(5)
    assert stamps == pytest.approx([i * 0.02 for i in range(len(stamps))])  # no gaps, in order
    per_talk_second = len(stamps) / r.talk_seconds
    assert abs(per_talk_second - 50) / 50 < 0.02, per_talk_second
    per_second = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(per_second - 50) / 50 < 0.02, per_second
    assert r.frames_received == len(stamps) and r.frames_dropped == 0 and r.frames_lost == 0


def test_barge_in_silences_our_side_within_a_frame_or_two(shared_phone, sipp, signals, tmp_path, wav_channels):
    long_tone = tmp_path / "long.wav"
    write_wav(long_tone, signals.pcm16(0.4 * np.sin(2 * np.pi * 500 * np.arange(48000) / 16000)), 16000)
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri(), record=True)
    assert h.wait_answered(5)
    playback = h.play(long_tone)
    for heard, frame in enumerate(h.audio, start=1):
        if heard == 50:  # about one second in: the customer starts talking
            h.stop_playback()
            stopped_at = frame.timestamp
        if heard == 100:
            h.hangup()
    assert playback.wait(1) and playback.interrupted
    assert abs(playback.played_seconds - stopped_at) <= 0.06
    r = h.wait_ended(5)
    _, ch = wav_channels(r.recording)
    frames = ch[: len(ch) - len(ch) % 320, 1].reshape(-1, 320)
    loud = np.abs(frames).max(axis=1) > 0.1
    last_loud = int(np.nonzero(loud)[0].max())
    assert not loud[last_loud + 1:].any()  # silence from the barge-in to the end
    assert abs((last_loud + 1) * 0.02 - playback.played_seconds) <= 0.04


@pytest.mark.parametrize("sox_args", [["-r", "44100", "-c", "2", "-b", "24"], ["-r", "8000", "-e", "u-law"]],
                         ids=["44k1-stereo-24bit", "8k-ulaw"])
def test_prompts_in_other_formats_are_converted(shared_phone, sipp, prompt, signals, tmp_path, wav_channels,
                                                sox_args):
    odd = tmp_path / "odd.wav"
    subprocess.run(["sox", str(prompt[0]), *sox_args, str(odd)], check=True)
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri(), record=True)
    assert h.wait_answered(5)
    assert h.play(odd).wait(10)
    h.hangup()
    r = h.wait_ended(5)
    rate, ch = wav_channels(r.recording)
    corr, _ = signals.best_match(prompt[1], 16000, ch[:, 1], rate)
    assert corr > 0.98


def test_streamed_pcm_is_played_as_it_is_written(shared_phone, sipp, signals, wav_channels):
    x = signals.bursts(24000)
    pcm = signals.pcm16(x)
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri(), record=True)
    assert h.wait_answered(5)
    stream = h.stream(24000)

    def synthesiser():  # 100 ms of audio every 80 ms, as a streaming TTS would deliver it
        for i in range(0, len(pcm), 4800):
            stream.write(pcm[i:i + 4800])
            time.sleep(0.08)
        stream.close()

    threading.Thread(target=synthesiser).start()
    assert stream.wait(10) and not stream.interrupted
    h.hangup()
    r = h.wait_ended(5)
    rate, ch = wav_channels(r.recording)
    corr, _ = signals.best_match(x, 24000, ch[:, 1], rate)
    assert corr > 0.98


# -- signalling ----------------------------------------------------------------------------------------
def test_rfc2833_digits_we_send_come_back_from_the_echo_as_events(shared_phone, sipp):
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri())
    assert h.wait_answered(5)
    time.sleep(0.2)
    h.send_dtmf("12#")
    got = []
    for event in h.events():
        if event.type is CallEventType.DTMF:
            got.append((event.digit, event.method))
            if len(got) == 3:
                h.hangup()
    assert got == [("1", DtmfMethod.RFC2833), ("2", DtmfMethod.RFC2833), ("#", DtmfMethod.RFC2833)]


def test_sip_info_dtmf_both_ways(shared_phone, sipp):
    peer = sipp("uas_info_dtmf.xml")
    h = shared_phone.dial(peer.uri())
    got = []
    for event in h.events():
        if event.type is CallEventType.DTMF:
            got.append((event.digit, event.method))
            if event.digit == "#":
                h.send_dtmf("7", DtmfMethod.SIP_INFO)  # SIPp's scenario checks for Signal=7
                time.sleep(0.3)
                h.hangup()
    assert got == [("5", DtmfMethod.SIP_INFO), ("#", DtmfMethod.SIP_INFO)]
    assert peer.wait() == 0, peer.errors()


def test_blind_transfer_with_refer(shared_phone, sipp):
    peer = sipp("uas_refer.xml")
    h = shared_phone.dial(peer.uri())
    assert h.wait_answered(5)
    assert h.transfer("sip:8001@127.0.0.1") is True
    r = h.wait_ended(5)
    assert (r.disposition, r.reason, r.hangup_by) == (D.ANSWERED, "transferred", HangupBy.LOCAL)
    progress = [(e.sip_code, e.final) for e in h.events() if e.type is CallEventType.TRANSFER]
    assert progress[-1] == (200, True)
    assert peer.wait() == 0, peer.errors()  # Refer-To named the agent, NOTIFY answered, BYE sent


def test_four_calls_at_once_and_a_fifth_is_refused_cleanly(shared_phone, sipp):
    peer = sipp("uas_answer.xml", calls=None, keys={"ring_ms": 0})
    handles = [shared_phone.dial(peer.uri(f"800{i}")) for i in range(4)]
    assert all(h.wait_answered(5) for h in handles)
    with pytest.raises(CapacityError, match="4 call slots"):
        shared_phone.dial(peer.uri("8009"))
    handles[0].hangup()
    assert handles[0].wait_ended(5).disposition is D.ANSWERED
    fifth = shared_phone.dial(peer.uri("8009"))
    assert fifth.wait_answered(5)
    for h in handles[1:] + [fifth]:
        h.hangup()
    assert all(h.wait_ended(5).hangup_by is HangupBy.LOCAL for h in handles[1:] + [fifth])
    assert_healthy(shared_phone)


def test_maximum_call_duration(shared_phone, sipp):
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    h = shared_phone.dial(peer.uri(), max_seconds=1.0)
    r = h.wait_ended(10)
    assert (r.disposition, r.hangup_by) == (D.ANSWERED, HangupBy.LOCAL)
    assert "maximum call duration" in r.reason and 0.9 < r.talk_seconds < 1.5
    assert peer.wait() == 0


def test_an_incoming_call_is_declined_and_takes_no_slot(shared_phone, ports, tmp_path):
    import shutil

    errors = tmp_path / "uac-errors.log"
    # SIPp's built-in UAC expects 180/200; our worker answers 603 Decline, which SIPp reports.
    out = subprocess.run([shutil.which("sipp"), "-sn", "uac", f"127.0.0.1:{shared_phone.local_port}",
                          "-i", "127.0.0.1", "-p", str(ports(1)), "-m", "1", "-nostdin", "-timeout", "10",
                          "-trace_err", "-error_file", str(errors)], capture_output=True, timeout=30, check=False)
    assert out.returncode != 0 and "SIP/2.0 603 Decline" in errors.read_text()
    assert_healthy(shared_phone)


def test_hundreds_of_short_calls_tear_media_down_safely(shared_phone, sipp):
    """Regression: a media port freed while the bridge's clock was calling it crashed the worker
    (SIGSEGV, about once in 300 calls). Four threads hang up short calls at staggered moments."""
    peer = sipp("uas_answer.xml", calls=None, keys={"ring_ms": 0})
    results, lock = [], threading.Lock()

    def caller(k: int) -> None:
        for i in range(75):
            h = shared_phone.dial(peer.uri(f"80{k}{i:02d}"))
            if h.wait_answered(5):
                h.play_pcm(bytes(3200), 16000)
                time.sleep(0.03 + (i % 7) * 0.011)
                h.hangup()
            r = h.wait_ended(5)
            with lock:
                results.append(r.disposition if r else None)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results.count(D.ANSWERED) == 300
    assert_healthy(shared_phone)
