"""Start-up and shut-down: pjsua2 aborts the interpreter if its objects outlive the library."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from callcenter.domain import CallDisposition as D
from callcenter.telephony import HangupBy, PhoneClosedError, TelephonyError, open_phone

pytestmark = [pytest.mark.integration, pytest.mark.sip]


def test_closing_hangs_up_live_calls_and_refuses_new_ones(sip_config, sipp):
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    phone = open_phone(sip_config)
    h = phone.dial(peer.uri())
    assert h.wait_answered(5)
    with pytest.raises(TelephonyError, match="already open in this process"):
        open_phone(sip_config)  # one Endpoint per process
    phone.close()
    r = h.wait_ended(0)
    assert (r.disposition, r.hangup_by, r.reason) == (D.ANSWERED, HangupBy.LOCAL, "worker shutting down")
    assert peer.wait() == 0  # SIPp got our BYE
    with pytest.raises(PhoneClosedError):
        phone.dial(peer.uri())
    phone.close()  # idempotent


def test_a_process_that_exits_with_a_call_up_and_never_closes_exits_cleanly(sip_config, sipp):
    peer = sipp("uas_answer.xml", keys={"ring_ms": 0})
    script = textwrap.dedent(f"""
        from pathlib import Path
        from callcenter.telephony import SipConfig, open_phone
        phone = open_phone(SipConfig(bind_address="127.0.0.1", sip_port={sip_config.sip_port},
                                     rtp_port={sip_config.rtp_port}, rtp_port_range=40,
                                     recordings_dir=Path({str(sip_config.recordings_dir)!r})))
        call = phone.dial({peer.uri()!r}, record=True)
        assert call.wait_answered(5)
        call.play_pcm(bytes(32000), 16000)
        print("exiting with", phone.active_calls, "call")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "exiting with 1 call" in out.stdout
    assert "Fatal" not in out.stderr and "Assertion" not in out.stderr
    assert peer.wait() == 0  # the atexit close sent BYE
