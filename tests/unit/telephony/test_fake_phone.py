"""CallSession behaviour (playlist, barge-in, frames, events, recording) driven by the fake phone.

The manual clock (``tick=None``) makes every assertion frame-exact: ``phone.advance(n)`` runs n
20 ms frames, as pjmedia's clock would.
"""

import json
import threading
import wave

import numpy as np
import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import (
    BridgeError,
    CallEventType,
    CallHandle,
    CallStateError,
    CapacityError,
    DtmfMethod,
    HangupBy,
    Phone,
)
from callcenter.telephony.fake import FakeOutcome, FakePhone

RATE = 8000
BUSY, GONE, LATE, DEAD, TALKER = "13800000486", "13800000404", "13800000487", "13800000408", "13800000001"
AGENT, BUSY_AGENT = "8001", "8002"
FB = 320  # bytes per 20 ms frame at 8 kHz


@pytest.fixture
def customer_pcm(sig) -> bytes:
    return sig.pcm16(sig.tone(700, 0.5, RATE, 0.3))  # 25 frames


@pytest.fixture
def phone(tmp_path, customer_pcm):
    p = FakePhone({BUSY: FakeOutcome(D.BUSY), GONE: FakeOutcome(D.NOT_FOUND, ring_seconds=0.04),
                   LATE: FakeOutcome(D.NO_ANSWER), DEAD: FakeOutcome(D.NETWORK_ERROR, ring_seconds=0.1),
                   TALKER: FakeOutcome(customer_audio=customer_pcm, hangup_after_audio=True,
                                         dtmf=((0.1, "1"), (0.2, "#")))},
                  sample_rate=RATE, tick=None, recordings_dir=tmp_path / "rec", ring_timeout=1.0)
    yield p
    p.close()


def test_the_fake_implements_the_protocols(phone):
    assert isinstance(phone, Phone)
    assert isinstance(phone.dial("8001"), CallHandle)


def test_customer_audio_arrives_as_contiguous_20ms_frames_and_the_call_ends_when_they_hang_up(phone, customer_pcm):
    h = phone.dial(TALKER)
    phone.advance(1)
    assert h.wait_answered(0)
    phone.advance(40)
    frames = list(h.audio)
    assert [f.timestamp for f in frames] == pytest.approx([i * 0.02 for i in range(25)])
    assert all(f.sample_rate == RATE and len(f.audio) == FB for f in frames)
    assert b"".join(f.audio for f in frames) == customer_pcm
    result = h.wait_ended(0)
    assert (result.disposition, result.hangup_by, result.frames_received) == (D.ANSWERED, HangupBy.REMOTE, 25)
    events = [e.type for e in h.events()]
    assert events == [CallEventType.RINGING, CallEventType.ANSWERED, CallEventType.DTMF, CallEventType.DTMF,
                      CallEventType.ENDED]


def test_dtmf_from_the_customer_are_events_with_digit_and_method(phone):
    h = phone.dial(TALKER)
    phone.advance(30)
    digits = [(e.digit, e.method) for e in h.events() if e.type is CallEventType.DTMF]
    assert digits == [("1", DtmfMethod.RFC2833), ("#", DtmfMethod.RFC2833)]


def test_prompts_play_in_order_and_barge_in_silences_the_very_next_frame(phone, sig, write_wav):
    first = write_wav("first.wav", sig.pcm16(sig.tone(400, 0.2, 16000, 0.5)), 16000)  # resampled to 8 kHz
    h = phone.dial("8001")
    phone.advance(1)
    p1 = h.play(first)
    p2 = h.play_pcm(sig.pcm16(sig.tone(900, 1.0, RATE, 0.5)), RATE)
    phone.advance(10)  # first prompt: 10 frames
    assert p1.done and not p1.interrupted and not p2.done
    phone.advance(5)
    h.stop_playback()  # barge-in
    phone.advance(3)
    call = phone.calls[0]
    sent = np.frombuffer(bytes(call.sent), dtype="<i2").reshape(-1, FB // 2)
    loud = [int(np.abs(f).max() > 1000) for f in sent]
    assert loud == [1] * 15 + [0] * 3
    assert p2.done and p2.interrupted and 0.09 < p2.played_seconds < 0.11
    assert call.played == ["first.wav", "pcm"]


def test_interrupting_play_replaces_what_was_queued(phone, sig):
    h = phone.dial("8001")
    phone.advance(1)
    a = h.play_pcm(bytes(FB * 50), RATE)
    b = h.play_pcm(bytes(FB * 50), RATE)
    c = h.play_pcm(sig.pcm16(sig.tone(500, 0.04, RATE)), RATE, interrupt=True)
    phone.advance(3)
    assert a.interrupted and b.done and c.done and not c.interrupted


def test_streamed_pcm_plays_as_it_is_written(phone, sig):
    h = phone.dial("8001")
    phone.advance(1)
    stream = h.stream(16000)
    phone.advance(2)  # nothing written yet: silence
    stream.write(sig.pcm16(sig.tone(600, 0.1, 16000, 0.5)))
    stream.close()
    phone.advance(8)
    assert stream.done
    sent = np.frombuffer(bytes(phone.calls[0].sent), dtype="<i2").reshape(-1, FB // 2)
    assert np.abs(sent[:2]).max() == 0 and np.abs(sent[2:6]).max() > 10000


@pytest.mark.parametrize("target,disposition,code,by", [
    (BUSY, D.BUSY, 486, HangupBy.REMOTE),
    (GONE, D.NOT_FOUND, 404, HangupBy.REMOTE),
    (LATE, D.NO_ANSWER, 487, HangupBy.LOCAL),
    (DEAD, D.NETWORK_ERROR, 408, HangupBy.LOCAL),
])
def test_unanswered_attempts_end_with_their_disposition(phone, target, disposition, code, by):
    h = phone.dial(target)
    phone.advance(60)  # 1.2 s, past the 1 s ring timeout
    r = h.wait_ended(0)
    assert (r.disposition, r.sip_code, r.hangup_by) == (disposition, code, by)
    assert not h.wait_answered(0) and r.talk_seconds == 0 and list(h.audio) == []


def test_a_fifth_call_is_refused_and_a_slot_frees_when_a_call_ends(phone):
    handles = [phone.dial(f"800{i}") for i in range(4)]
    with pytest.raises(CapacityError, match="4 call slots"):
        phone.dial("8009")
    handles[0].hangup()
    assert handles[0].wait_ended(0).hangup_by is HangupBy.LOCAL
    phone.dial("8009")


def test_recording_has_the_customer_left_and_our_prompt_right_plus_metadata(phone, sig, customer_pcm):
    h = phone.dial(TALKER, record=True)
    phone.advance(1)
    h.play_pcm(sig.pcm16(sig.tone(1200, 0.3, RATE, 0.4)), RATE)
    phone.advance(40)
    result = h.wait_ended(0)
    with wave.open(str(result.recording)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert w.getframerate() == RATE and len(data) == 25 * 160
    assert data[:, 0].tobytes() == customer_pcm
    assert np.abs(data[:15 * 160, 1]).max() > 10000 and np.abs(data[15 * 160:, 1]).max() == 0
    meta = json.loads(result.recording.with_suffix(".json").read_text())
    assert meta["disposition"] == "answered" and meta["hangup_by"] == "remote" and meta["seconds"] == 0.5


def test_transfer_reports_progress_and_ends_the_call(phone):
    h = phone.dial("8001")
    phone.advance(1)
    assert h.transfer("8002") is True
    assert phone.calls[0].transfers == ["sip:8002@fake.trunk"]
    events = [(e.type, e.sip_code, e.final) for e in h.events()][-3:]
    assert events == [(CallEventType.TRANSFER, 100, False), (CallEventType.TRANSFER, 200, True),
                      (CallEventType.ENDED, 200, False)]
    assert h.result.reason == "transferred" and h.result.hangup_by is HangupBy.LOCAL


def test_bridge_mixes_the_agent_into_the_recording_and_the_agent_leg_follows_the_customer(tmp_path, sig):
    agent_voice = sig.pcm16(sig.tone(300, 1.0, RATE, 0.3))
    phone = FakePhone({AGENT: FakeOutcome(customer_audio=agent_voice), BUSY_AGENT: FakeOutcome(D.BUSY)},
                      sample_rate=RATE, tick=None, recordings_dir=tmp_path)
    h = phone.dial("13812345678", record=True)
    phone.advance(1)
    with pytest.raises(BridgeError) as failed:
        h.bridge(BUSY_AGENT)
    assert failed.value.result.disposition is D.BUSY and not h.ended
    agent = h.bridge(AGENT)
    phone.advance(10)
    agent_frames = [agent.audio.get(0) for _ in range(10)]
    assert b"".join(f.audio for f in agent_frames) == agent_voice[: 10 * FB]
    h.hangup()
    assert agent.wait_ended(0).hangup_by is HangupBy.LOCAL
    with wave.open(str(h.result.recording)) as w:
        right = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, 1]
    assert right[160:].tobytes() == agent_voice[: 9 * FB]  # agent audio, aligned from its first frame
    types = [e.type for e in h.events()]
    assert CallEventType.BRIDGED in types


def test_dtmf_and_transfer_need_an_answered_live_call(phone):
    h = phone.dial(LATE)
    with pytest.raises(CallStateError):
        h.send_dtmf("1")
    with pytest.raises(CallStateError):
        h.transfer("8002")
    phone.advance(1)
    with pytest.raises(ValueError, match="DTMF digits"):
        h.send_dtmf("12x")


def test_play_on_an_ended_call_returns_a_finished_playback(phone):
    h = phone.dial(BUSY)
    phone.advance(1)
    pb = h.play_pcm(bytes(FB), RATE)
    assert h.ended and pb.done and pb.wait(0)


def test_max_call_duration_hangs_up_locally(tmp_path):
    phone = FakePhone(sample_rate=RATE, tick=None, max_call_seconds=0.2)
    h = phone.dial("8001")
    phone.advance(20)
    r = h.wait_ended(0)
    assert r.hangup_by is HangupBy.LOCAL and "maximum call duration" in r.reason


def test_the_real_time_clock_delivers_about_fifty_frames_a_second():
    with FakePhone(sample_rate=RATE, tick=0.002) as phone:  # 10x real time, to keep the test short
        h = phone.dial("8001")
        assert h.wait_answered(1)
        got = [h.audio.get(timeout=1) for _ in range(50)]
        assert all(f is not None for f in got)
        done = threading.Event()
        h.hangup()
        done.set()
        assert h.wait_ended(1).disposition is D.ANSWERED


def test_frames_lost_counts_only_a_media_clock_that_skipped(monkeypatch):
    import callcenter.telephony.session as session_module

    clock = [100.0]
    monkeypatch.setattr(session_module, "_monotonic", lambda: clock[0])  # only the session's clock
    phone = FakePhone(sample_rate=RATE, tick=None)
    h = phone.dial("8001")
    phone.advance(1)  # answered
    for _ in range(50):  # one second of frames, 20 ms apart
        phone.advance(1)
        clock[0] += 0.02
    clock[0] += 0.3  # late, but within pjmedia's 500 ms: it catches up, nothing is lost
    phone.advance(1)
    assert h.frames_lost == 0
    clock[0] += 1.0  # a one-second stall: pjmedia resynchronised, those ticks never happened
    phone.advance(1)
    assert h.frames_lost == round((clock[0] - 100.0) / 0.02) + 1 - 52 > 25
    phone.close()
