"""Calls to baresip, a real softphone: it answers, plays a known WAV, and dumps what it hears."""

from __future__ import annotations

import numpy as np
import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import CallEventType, HangupBy
from callcenter.telephony.recording import write_wav

pytestmark = [pytest.mark.integration, pytest.mark.sip]


@pytest.fixture
def customer_voice(tmp_path, signals):
    """What the 'customer' (baresip) says: 8 kHz tone bursts, padded with silence as baresip hangs up
    when its WAV ends (TOOLCHAIN.md)."""
    x = signals.bursts(8000, freq=500)
    path = tmp_path / "customer.wav"
    pad = [0.0] * 4000
    write_wav(path, signals.pcm16(np.concatenate([pad, x, [0.0] * 16000])), 8000)
    return path, x


def test_baresip_hears_our_prompt_and_we_record_what_it_says(shared_phone, baresip, customer_voice, signals,
                                                               tmp_path, wav_channels, dtmf_seen):
    prompt = signals.bursts(16000, freq=900)
    prompt_path = tmp_path / "prompt.wav"
    write_wav(prompt_path, signals.pcm16(prompt), 16000)
    peer = baresip(customer_voice[0])
    h = shared_phone.dial(peer.uri(), record=True)
    assert h.wait_answered(5)
    assert h.play(prompt_path).wait(10)
    h.send_dtmf("5")
    r = h.wait_ended(15)  # baresip hangs up when its WAV ends
    assert (r.disposition, r.hangup_by) == (D.ANSWERED, HangupBy.REMOTE)
    rate, ch = wav_channels(r.recording)
    corr, _ = signals.best_match(customer_voice[1], 8000, ch[:, 0], rate)  # left: what the customer said
    assert corr > 0.9, corr
    heard_rate, heard = wav_channels(peer.heard())  # what baresip decoded from us
    corr, _ = signals.best_match(prompt, 16000, heard[:, 0], heard_rate)
    assert corr > 0.9, corr
    log = peer.stop()  # its stdout is block-buffered in a file: complete only once it exits
    assert dtmf_seen(log, "5"), log[-1500:]  # our RFC 2833 digit, as baresip reports it


def test_bridge_connects_the_customer_with_an_agent_and_keeps_recording_both(shared_phone, baresip, sipp,
                                                                             customer_voice, signals,
                                                                             wav_channels):
    customer = baresip(customer_voice[0])
    agent_desk = sipp("uas_answer.xml", keys={"ring_ms": 300})  # the agent's phone echoes what it hears
    h = shared_phone.dial(customer.uri(), record=True)
    assert h.wait_answered(5)
    agent = h.bridge(agent_desk.uri("8001"), ring_timeout=5)
    assert agent.answered and not h.ended
    agent_frames = []
    for frame in agent.audio:  # the agent leg ends when the customer hangs up
        agent_frames.append(frame.audio)
    r = h.wait_ended(15)
    assert agent.wait_ended(5).hangup_by is HangupBy.LOCAL
    types = [e.type for e in h.events()]
    assert CallEventType.BRIDGED in types
    # The agent heard the customer through the bridge: its echo carries the customer's bursts.
    agent_audio = np.frombuffer(b"".join(agent_frames), dtype="<i2") / 32768.0
    corr, _ = signals.best_match(customer_voice[1], 8000, agent_audio, shared_phone.sample_rate)
    assert corr > 0.8, corr
    # The recording kept both sides: left the customer, right the agent (the echo, a little later).
    rate, ch = wav_channels(r.recording)
    left, _ = signals.best_match(customer_voice[1], 8000, ch[:, 0], rate)
    right, _ = signals.best_match(customer_voice[1], 8000, ch[:, 1], rate)
    assert left > 0.9 and right > 0.8, (left, right)
    # And the customer heard the agent: baresip's dump holds the echoed bursts.
    heard_rate, heard = wav_channels(customer.heard())
    corr, _ = signals.best_match(customer_voice[1], 8000, heard[:, 0], heard_rate)
    assert corr > 0.8, corr
