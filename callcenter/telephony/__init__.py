"""Telephony: SIP calls on pjsua2 behind a small, pjsua2-free API.

``callcenter.telephony`` is the only package that imports pjsua2, and only inside
:func:`open_phone` (through ``callcenter.telephony.pjsip_phone``), so importing this package costs
no SIP stack and unit tests run without one. Business logic uses:

* :class:`Phone` (one per worker process) -> ``dial(...)`` -> :class:`CallHandle` per call; a phone
  opened with ``SipConfig(inbound=True)`` also receives calls: ``incoming()`` -> :class:`IncomingCall`;
* :class:`FakePhone` in unit tests (replays a WAV as the customer, records what was played);
* ``callcenter.telephony.supervisor.Supervisor`` to run N worker processes, each with its own
  phone, ports and a pluggable job (``job(phone, stop, info)``), restarted with backoff when one dies.

See docs/telephony.md.
"""

from __future__ import annotations

from callcenter.telephony.api import (
    BridgeError,
    CallEvent,
    CallEventType,
    CallHandle,
    CallResult,
    CallStateError,
    CapacityError,
    DtmfMethod,
    FrameSource,
    HangupBy,
    IncomingCall,
    InvalidTarget,
    MediaFileError,
    PcmStream,
    Phone,
    PhoneClosedError,
    Playback,
    TelephonyError,
    TrunkError,
)
from callcenter.telephony.config import SipConfig

__all__ = [
    "BridgeError", "CallEvent", "CallEventType", "CallHandle", "CallResult", "CallStateError", "CapacityError", "DtmfMethod",
    "FakePhone", "FrameSource", "HangupBy", "IncomingCall", "InvalidTarget", "MediaFileError", "PcmStream", "Phone",
    "PhoneClosedError", "Playback", "SipConfig", "TelephonyError", "TrunkError", "open_phone",
]


def open_phone(config: SipConfig, *, name: str = "phone") -> Phone:
    """Start the pjsua2 phone for this process (the first call imports pjsua2).

    Raises:
        TrunkError: the SIP stack could not start (port in use, registration refused).
    """
    from callcenter.telephony.pjsip_phone import PjsipPhone

    return PjsipPhone(config, name=name)


def __getattr__(name: str):
    if name == "FakePhone":
        from callcenter.telephony.fake import FakePhone

        return FakePhone
    raise AttributeError(name)
