"""The live-event payloads the dialer publishes and the console relays (callcenter.storage.live)."""

import json

import pytest

from callcenter.storage import live


def test_call_state_round_trips_with_its_type_and_enum_value():
    event = live.CallStateEvent(call_id=7, state=live.LiveCallState.BRIDGED, store_id=2, agent_id=5, at=1.5)
    raw = live.encode(event)
    assert json.loads(raw) == {
        "call_id": 7, "state": "bridged", "store_id": 2, "campaign_id": None, "customer_id": None,
        "agent_id": 5, "worker": None, "disposition": None, "outcome": None, "at": 1.5, "type": "call_state",
    }
    assert live.decode(raw) == event


def test_transcript_line_keeps_chinese_readable_on_the_wire():
    line = live.TranscriptLine(call_id=1, seq=3, speaker="customer", text="等了很久", is_final=True, start=1.0, end=2.5)
    raw = live.encode(line)
    assert "等了很久" in raw
    assert live.decode(raw) == line


def test_heartbeat_campaigns_come_back_as_a_tuple():
    beat = live.WorkerHeartbeat(worker="h:1", active_calls=3, capacity=4, campaigns=(1, 2), at=9.0)
    assert live.decode(live.encode(beat)) == beat


@pytest.mark.parametrize("raw", [b"not json", b'{"type": "nope"}', b'{"call_id": 1}',
                                 b'{"type": "call_state", "call_id": 1, "state": "exploded"}',
                                 b'{"type": "transcript", "call_id": 1}', b"[1, 2]"])
def test_junk_payloads_are_refused_with_a_value_error(raw):
    with pytest.raises(ValueError):
        live.decode(raw)


def test_channel_names_are_per_call_and_reject_non_numeric_ids():
    assert live.call_channel(42) == "cc:live:call:42"
    assert live.call_lines_key(42) == "cc:live:call:42:lines"
    with pytest.raises(ValueError):
        live.call_channel("42; FLUSHALL")
