"""A pjsua2 phone in its own process that calls the test's inbound phone (pjsua2 allows one
Endpoint per process, so a pjsua2-to-pjsua2 call needs two processes).

Usage: ``python peer_caller.py CONFIG.json``; CONFIG has ``target`` (sip: URI), ``sip_port``,
``rtp_port``, ``play`` (a WAV to play once answered), ``heard`` (where to write what it hears:
16-bit mono at 8 kHz), ``dtmf`` (digits to send ``dtmf_after`` seconds after the answer, default 4:
after the WAV, since RFC 2833 events replace the audio while they last), ``ring_timeout``,
``hangup_after`` (seconds of talk before hanging up; absent: wait for the callee's BYE).
It prints one JSON line: the CallResult summary, the DTMF digits it received and the SIP Call-ID.
"""

import json
import sys
import time
from pathlib import Path

from callcenter.telephony import CallEventType, SipConfig, open_phone
from callcenter.telephony.recording import write_wav


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    sip = SipConfig(bind_address="127.0.0.1", sip_port=cfg["sip_port"], rtp_port=cfg["rtp_port"], rtp_port_range=40,
                    audio_rate=8000, ring_timeout=cfg.get("ring_timeout", 10), recordings_dir=Path(cfg["heard"]).parent)
    phone = open_phone(sip, name="peer")
    try:
        call = phone.dial(cfg["target"])
        heard = bytearray()
        digits = []
        answered = call.wait_answered(timeout=cfg.get("ring_timeout", 10) + 5)
        if answered:
            if cfg.get("play"):
                call.play(cfg["play"])
            t0 = time.monotonic()
            sent_dtmf = False
            while not call.ended:
                frame = call.audio.get(timeout=0.1)
                if frame is not None:
                    heard += frame.audio
                event = call.next_event(timeout=0)
                while event is not None:
                    if event.type is CallEventType.DTMF:
                        digits.append(event.digit)
                    event = call.next_event(timeout=0)
                talk = time.monotonic() - t0
                if cfg.get("dtmf") and not sent_dtmf and talk > cfg.get("dtmf_after", 4.0):
                    call.send_dtmf(cfg["dtmf"])
                    sent_dtmf = True
                if cfg.get("hangup_after") and talk > cfg["hangup_after"]:
                    call.hangup()
                    break
        result = call.wait_ended(timeout=15)
        for event in call.events():
            if event.type is CallEventType.DTMF:
                digits.append(event.digit)
        write_wav(Path(cfg["heard"]), bytes(heard), 8000)
        print(json.dumps({**result.summary(), "dtmf": "".join(digits)}), flush=True)
    finally:
        phone.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
