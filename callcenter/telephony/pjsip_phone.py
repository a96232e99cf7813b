"""The pjsua2 phone: the only module of the project that imports pjsua2.

Threads (see TOOLCHAIN.md for why each rule exists):

* **SIP thread** (``sip-<name>``, one per process): creates the single ``Endpoint``, owns every pjsua2
  object (account, calls, media ports) and is the only thread that calls pjsua2. It polls
  ``libHandleEvents`` (``threadCnt=0``), so every SIP callback runs on it too; between polls it runs
  commands that other threads queued (dial, hang-up, DTMF, transfer, bridge) and checks ring and
  call-duration deadlines. It registers nothing on behalf of callers: application threads never
  touch pjsua2, so they never need ``libRegisterThread``.
* **media clock** (pjmedia's null-audio-device thread): calls ``onFrameRequested`` and
  ``onFrameReceived`` of each call's :class:`_MediaPort` every 20 ms. Those only move bytes between
  pjsua2 and the call's :class:`~callcenter.telephony.session.CallSession` (about 20 us per frame
  each way, see :func:`_vector_reader`).
* **recording writer** (``<name>-rec``): writes recordings, off the media clock.

Lifetimes: every pjsua2 object lives in :class:`_Leg` records held by the SIP thread and is
dropped on the SIP thread, in order (port, audio media, call), with reference cycles broken by hand
so that the garbage collector never destroys one on another thread. ``close()`` (also registered
with ``atexit``) hangs up, releases everything and calls ``libDestroy`` before the interpreter
exits, which is what keeps pjsua2 from aborting at exit.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import itertools
import logging
import os
import queue
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pjsua2 as pj

from callcenter.telephony.api import (
    BridgeError,
    CallResult,
    CallStateError,
    CapacityError,
    DtmfMethod,
    InvalidTarget,
    PhoneClosedError,
    TelephonyError,
    TrunkError,
)
from callcenter.telephony.config import SipConfig
from callcenter.telephony.dialplan import mask_target, request_uri, uri_user
from callcenter.telephony.progress import (
    EndCause,
    InboundProgress,
    LocalCause,
    Progress,
    classify,
    classify_inbound,
)
from callcenter.telephony.recording import RecordingWriter
from callcenter.telephony.session import CallSession, InboundSession

logger = logging.getLogger(__name__)
pjsip_logger = logging.getLogger("callcenter.telephony.pjsip")

# The media clock takes the GIL twice per call every 20 ms (8 times per tick at 4 calls). With
# CPython's default 5 ms switch interval a busy Python thread can make each of those wait 5 ms,
# 40 ms per 20 ms tick; 1 ms keeps the worst case inside the tick. Process-wide: one phone owns
# the process's media anyway.
GIL_SWITCH_INTERVAL = 0.001
POLL_MS = 5  # libHandleEvents timeout: bounds command latency; 200 empty polls/s cost ~0.3 % CPU
# pjsip may not CANCEL an INVITE that got no response yet: hanging up ends the call at once but the
# INVITE transaction (and pjsua's call slot) lives until Timer B, 64 x T1 = 32 s after the INVITE.
# Measured here: four cancelled calls to a silent peer blocked all four slots for 32 s.
TIMER_B = 32.0
SLOT_RELEASE_WAIT = 1.0  # seconds dial() waits for pjsua to free the slot of a call that just ended
HANGUP_GRACE = 5.0  # seconds to wait for pjsip to confirm a hang-up before reporting the call ended
SHUTDOWN_GRACE = 3.0  # seconds close() waits for BYE/CANCEL transactions before destroying the stack
_CALL_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PJ_ETOOMANY = 70010  # PJ_ERRNO_START_STATUS + 10
_CODEC_IDS = {"PCMA": "PCMA/8000", "PCMU": "PCMU/8000", "G722": "G722/16000"}
_PJ_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}
_NOISE = ("Remove port failed",)  # harmless when a player/recorder/port is deleted (TOOLCHAIN.md)


class _SlotReleasing(CapacityError):
    """pjsua refused a call although our count has a free slot: one is still being released."""


# -- fast ByteVector -> bytes ------------------------------------------------------------------------
_P2 = ctypes.c_size_t * 2


def _vector_bytes_fast(vec: Any) -> bytes:
    # std::vector<unsigned char> in libstdc++ starts with its begin and end pointers. Reading them
    # costs about 2.5 us; bytes(vec) iterates through SWIG element by element: about 430 us for a
    # 640-byte frame, which would eat a core at 16 calls x 50 frames/s.
    begin, end = _P2.from_address(int(vec.this))
    return ctypes.string_at(begin, end - begin)


def _vector_reader() -> Callable[[Any], bytes]:
    """The fast reader when it provably reads this build's vectors right, else ``bytes``."""
    probe = bytes(range(256)) * 3
    try:
        frame = pj.MediaFrame()
        frame.buf = pj.ByteVector(probe)
        if _vector_bytes_fast(frame.buf) == probe and _vector_bytes_fast(pj.ByteVector()) == b"":
            return _vector_bytes_fast
    except Exception:  # any surprise means: use the slow, safe path
        logger.debug("fast ByteVector probe failed", exc_info=True)
    logger.warning("pjsua2 ByteVector layout not recognised: using the slow bytes() copy per frame")
    return bytes


# -- pjsua2 subclasses: callbacks copy plain values and hand them to the phone -------------------------
class _LogWriter(pj.LogWriter):
    def write(self, entry: Any) -> None:
        try:
            msg = entry.msg.rstrip()
            if any(n in msg for n in _NOISE):
                return
            pjsip_logger.log(_PJ_LEVELS.get(entry.level, logging.DEBUG), "%s", msg)
        except Exception:  # noqa: BLE001, S110 - never let an exception cross into C; logging here could recurse
            pass


class _MediaPort(pj.AudioMediaPort):
    """One per call: the customer's audio out of the bridge, our audio into it (media clock thread)."""

    def __init__(self, session: CallSession, reader: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._tx = session.media_tx
        self._rx = session.media_rx
        self._read = reader
        self._vector = pj.ByteVector
        self._audio = pj.PJMEDIA_FRAME_TYPE_AUDIO
        self.errors = 0

    def onFrameRequested(self, frame: Any) -> None:
        try:
            chunk = self._tx()
            frame.buf = self._vector(chunk)
            frame.size = len(chunk)
            frame.type = self._audio
        except Exception:
            self.errors += 1
            if self.errors in (1, 100, 10000):
                logger.exception("media tx callback failed (%d times)", self.errors)

    def onFrameReceived(self, frame: Any) -> None:
        try:
            if frame.type == self._audio:
                self._rx(self._read(frame.buf))
            else:
                self._rx(None)
        except Exception:
            self.errors += 1
            if self.errors in (1, 100, 10000):
                logger.exception("media rx callback failed (%d times)", self.errors)


class _Call(pj.Call):
    def __init__(self, phone: PjsipPhone, leg: _Leg | None, account: pj.Account,
                 call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.phone: PjsipPhone | None = phone
        self.leg: _Leg | None = leg

    def _dispatch(self, method: str, prm: Any) -> None:
        phone, leg = self.phone, self.leg
        if phone is None or leg is None:
            return
        try:
            getattr(phone, method)(leg, prm)
        except Exception:
            logger.exception("call %s: %s failed", leg.session.call_id, method)

    def onCallState(self, prm: Any) -> None:
        self._dispatch("_on_call_state", prm)

    def onCallTsxState(self, prm: Any) -> None:
        self._dispatch("_on_tsx_state", prm)

    def onCallMediaState(self, prm: Any) -> None:
        self._dispatch("_on_media_state", prm)

    def onDtmfEvent(self, prm: Any) -> None:
        self._dispatch("_on_dtmf_event", prm)

    def onCallTransferStatus(self, prm: Any) -> None:
        self._dispatch("_on_transfer_status", prm)

    def onCallTransferRequest(self, prm: Any) -> None:
        # pjsua's default accepts a REFER from the far end and dials its Refer-To through our
        # account: a remote party could make the call center place calls (toll fraud). Transfers
        # are ours to start (CallHandle.transfer); a REFER we receive is declined.
        try:
            prm.statusCode = 603
            leg = self.leg
            logger.warning("call %s: declined a transfer request (REFER) from the far end",
                           leg.session.call_id if leg is not None else "?")
        except Exception:  # noqa: BLE001, S110 - never let an exception cross into C
            pass


class _Account(pj.Account):
    def __init__(self) -> None:
        super().__init__()
        self.phone: PjsipPhone | None = None  # set when inbound calls are received; cleared at shutdown
        self.reg_code: int | None = None
        self.reg_reason = ""
        self.reg_active = False
        self.reg_event = threading.Event()

    def onIncomingCall(self, prm: Any) -> None:
        phone = self.phone
        if phone is not None:
            try:
                phone._on_incoming(self, prm)
            except Exception:
                logger.exception("taking an incoming call failed")
            return
        # Workers only place calls; inbound calls belong to the PBX's agents. Decline cleanly
        # (pjsua2's default for an unhandled incoming call is "500 Server Internal Error").
        try:
            call = pj.Call(self, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = 603
            call.hangup(op)
            del call
            logger.info("declined an incoming call (603): workers only place calls")
        except Exception:
            logger.exception("declining an incoming call failed")

    def onRegState(self, prm: Any) -> None:
        try:
            self.reg_code, self.reg_reason = prm.code, prm.reason
            self.reg_active = prm.code // 100 == 2 and prm.expiration > 0
            self.reg_event.set()
            level = logging.INFO if self.reg_active else logging.WARNING
            logger.log(level, "registration: %s %s (expires %s s)", prm.code, prm.reason, prm.expiration)
        except Exception:
            logger.exception("onRegState failed")


@dataclass(eq=False)
class _Leg:
    """Everything the SIP thread knows about one call (SIP thread only)."""

    session: CallSession
    ring_timeout: float
    max_seconds: float
    invite_at: float
    invite_mono: float  # time.monotonic() of the INVITE
    ring_deadline: float  # time.monotonic()
    call: _Call | None = None
    port: _MediaPort | None = None
    aud: Any = None  # pj.AudioMedia of the call's stream in the bridge
    media_index: int | None = None
    media_active: bool = False
    media_established: bool = False
    got_response: bool = False
    answered: bool = False  # 2xx received
    confirmed: bool = False  # ACK sent: the call is up
    answer_reported: bool = False
    ringing_at: float | None = None
    answered_at: float | None = None
    max_deadline: float | None = None
    local_cause: LocalCause | None = None
    hangup_sent_at: float | None = None
    disconnected: bool = False
    sip_code: int = 0
    reason: str = ""
    end_cause: EndCause = EndCause.LOCAL
    ended_at: float | None = None
    reported: bool = False  # the session got its result
    codec: str | None = None
    sip_call_id: str = ""
    peer: _Leg | None = None  # bridge partner
    is_agent_leg: bool = False
    transfer: concurrent.futures.Future[int] | None = None
    inbound: bool = False  # a call we received (the far end sent the INVITE)
    reject_code: int | None = None  # the final response we refused an incoming call with


class PjsipPhone:
    """A :class:`~callcenter.telephony.api.Phone` on pjsua2; one per process.

    Args:
        config: trunk, identity, ports and media settings.
        name: used in thread names and logs (``worker-2``).
        start_timeout: seconds to wait for the stack (and the registration, if any).

    Raises:
        TrunkError: the stack could not start (port in use, registration refused, no codec).
    """

    _open: PjsipPhone | None = None  # pjsua2 allows one Endpoint per process
    _open_lock = threading.Lock()

    def __init__(self, config: SipConfig, *, name: str = "phone", start_timeout: float = 30.0) -> None:
        with PjsipPhone._open_lock:
            other = PjsipPhone._open
            if other is not None and not other._stopped.is_set():
                raise TelephonyError(
                    f"phone {other._name!r} is already open in this process: pjsua2 allows one Endpoint per "
                    "process; close it first or run another worker process")
            PjsipPhone._open = self
        self._cfg = config
        self._name = name
        self._rate = config.audio_rate
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._incoming: queue.SimpleQueue[InboundSession | None] = queue.SimpleQueue()
        self._legs: dict[str, _Leg] = {}
        self._lock = threading.Lock()
        self._reserved = 0  # call slots promised to dial() callers, held by live legs, or by zombies
        self._zombies: list[float] = []  # monotonic times at which pjsua frees a cancelled INVITE's slot
        self._closed = False
        self._stopping = False
        self._dead = False
        self._last_turn = time.monotonic()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._startup_error: BaseException | None = None
        self._writer = RecordingWriter(name=f"{name}-rec")
        self._seq = itertools.count(1)
        self.local_port: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"sip-{name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(start_timeout):
            self._stopping = True
            raise TrunkError(f"SIP stack did not start within {start_timeout:g} s")
        if self._startup_error is not None:
            self._writer.close()
            self._closed = True
            raise self._startup_error
        atexit.register(self.close)

    # -- Phone ------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._cfg.max_calls

    @property
    def active_calls(self) -> int:
        return self._reserved

    @property
    def slots_in_use(self) -> int:
        """Call slots pjsua itself still holds, or more if our count is higher.

        pjsua frees a slot one transaction after a call ended for us (the 200 OK to our BYE, the
        ACK of our 486), so its count can run ahead of :attr:`active_calls` for a moment. Whoever
        steers incoming calls to this phone must use this number: a full pjsua answers the next
        INVITE itself with a stateless "486 Busy Here", indistinguishable from a busy callee.
        """
        return max(self._reserved, _stack_call_count())

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def config(self) -> SipConfig:
        return self._cfg

    @property
    def registered(self) -> bool:
        acc = getattr(self, "_acc", None)
        return bool(acc and acc.reg_active)

    def healthy(self) -> bool:
        return not self._dead and not self._closed and time.monotonic() - self._last_turn < 5.0

    def dial(
        self,
        target: str,
        *,
        call_id: str | None = None,
        ring_timeout: float | None = None,
        max_seconds: float | None = None,
        record: Path | bool = False,
    ) -> CallSession:
        cfg = self._cfg
        uri = request_uri(target, cfg.trunk, transport=cfg.transport, dial_prefix=cfg.dial_prefix)
        if call_id is None:
            call_id = f"{self._name}-{next(self._seq)}-{uuid.uuid4().hex[:8]}"
        elif not _CALL_ID.fullmatch(call_id):
            raise ValueError("call_id must be 1-64 of letters, digits, '.', '_' or '-'")
        if record is True:
            record_path: Path | None = cfg.recordings_dir / time.strftime("%Y-%m-%d") / f"{call_id}.wav"
        elif record:
            record_path = Path(record)
        else:
            record_path = None
        ring = cfg.ring_timeout if ring_timeout is None else float(ring_timeout)
        talk = cfg.max_call_seconds if max_seconds is None else float(max_seconds)
        if ring <= 0 or talk <= 0:
            raise ValueError("ring_timeout and max_seconds must be positive")
        with self._lock:
            if self._closed or self._stopping or self._dead:
                raise PhoneClosedError(f"{self._name}: phone is closed")
            if self._reserved >= self.capacity:
                raise CapacityError(f"{self._name}: all {self.capacity} call slots are in use")
            self._reserved += 1
        session = CallSession(call_id, uri, self._rate, self, record_path=record_path, writer=self._writer)
        deadline = time.monotonic() + SLOT_RELEASE_WAIT
        try:
            while True:
                try:
                    self._run_on_sip_thread(self._make_call, session, ring, talk)
                    break
                except _SlotReleasing:
                    # pjsua frees a call's slot only when its last transaction ends (the 200 OK to
                    # our BYE, one round trip after the call ended for us): wait for that briefly.
                    if time.monotonic() >= deadline:
                        raise CapacityError(f"{self._name}: pjsua has not released a finished call's slot "
                                            f"within {SLOT_RELEASE_WAIT:g} s (the far end does not answer "
                                            "our BYE?)") from None
                    time.sleep(0.01)
        except BaseException:
            self._release_slot()
            raise
        return session

    def incoming(self, timeout: float | None = None) -> InboundSession | None:
        if not self._cfg.inbound:
            raise CallStateError(f"{self._name}: this phone declines incoming calls (open it with "
                                 "SipConfig(inbound=True) to receive them)")
        try:
            session = self._incoming.get(timeout=timeout)
        except queue.Empty:
            return None
        if session is None:  # the phone closed: wake the next waiter too
            self._incoming.put(None)
        return session

    def hangup_all(self, timeout: float = 5.0) -> None:
        """Hang up every call and wait (up to ``timeout``) until they have ended."""
        sessions = self._run_on_sip_thread(self._hangup_all_cmd)
        deadline = time.monotonic() + timeout
        for session in sessions:
            session.wait_ended(max(0.0, deadline - time.monotonic()))

    def _hangup_all_cmd(self) -> list[CallSession]:
        legs = list(self._legs.values())
        for leg in legs:
            self._hangup(leg, LocalCause.HANGUP)
        return [leg.session for leg in legs]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping = True
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=SHUTDOWN_GRACE + 10)
            if self._thread.is_alive():
                logger.error("%s: SIP thread did not stop; pjsua2 objects may abort the interpreter", self._name)
        self._writer.close()
        self._incoming.put(None)
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- CallControl (application threads) -----------------------------------------------------------
    def hangup(self, session: CallSession) -> None:
        self._run_on_sip_thread(self._hangup_cmd, session.call_id, LocalCause.HANGUP)

    def send_dtmf(self, session: CallSession, digits: str, method: DtmfMethod) -> None:
        self._run_on_sip_thread(self._dtmf_cmd, session.call_id, digits, method)

    def transfer(self, session: CallSession, target: str, timeout: float) -> bool:
        cfg = self._cfg
        uri = request_uri(target, cfg.trunk, transport=cfg.transport, dial_prefix=cfg.dial_prefix)
        fut: concurrent.futures.Future[int] = self._run_on_sip_thread(self._xfer_cmd, session.call_id, uri)
        try:
            code = fut.result(timeout)
        except concurrent.futures.TimeoutError:
            logger.warning("call %s: no final transfer report within %g s", session.call_id, timeout)
            return False
        return 200 <= code < 300

    def bridge(self, session: CallSession, target: str, ring_timeout: float | None) -> CallSession:
        ring = self._cfg.ring_timeout if ring_timeout is None else ring_timeout
        agent = self.dial(target, call_id=f"{session.call_id}-agent"[:64], ring_timeout=ring)
        if not agent.wait_answered(timeout=ring + HANGUP_GRACE):
            agent.hangup()
            result = agent.wait_ended(timeout=HANGUP_GRACE)
            what = f"{result.disposition.value} ({result.reason})" if result else "no answer"
            raise BridgeError(f"call {session.call_id}: agent {agent.target} not connected: {what}", result)
        try:
            self._run_on_sip_thread(self._bridge_cmd, session.call_id, agent.call_id)
        except TelephonyError:
            agent.hangup()
            raise
        return agent

    # -- InboundControl (application threads) ---------------------------------------------------------
    def ring(self, session: InboundSession) -> None:
        self._run_on_sip_thread(self._answer_cmd, session.call_id, 180)

    def answer(self, session: InboundSession, record: Path | bool) -> None:
        if record is True:
            session.set_recording(self._cfg.recordings_dir / time.strftime("%Y-%m-%d") / f"{session.call_id}.wav")
        elif record:
            session.set_recording(Path(record))
        self._run_on_sip_thread(self._answer_cmd, session.call_id, 200)

    def reject(self, session: InboundSession, code: int) -> None:
        self._run_on_sip_thread(self._reject_cmd, session.call_id, code)

    # -- command plumbing ----------------------------------------------------------------------------
    def _run_on_sip_thread(self, fn: Callable, *args: Any, timeout: float = 10.0) -> Any:
        if threading.current_thread() is self._thread:
            return fn(*args)
        if self._dead or self._stopped.is_set():
            raise PhoneClosedError(f"{self._name}: SIP thread is not running")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put((fut, fn, args))
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TelephonyError(f"{self._name}: SIP thread did not answer within {timeout:g} s") from None

    def _run_commands(self) -> None:
        while True:
            try:
                fut, fn, args = self._commands.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                fut.set_exception(_scrubbed(exc))

    def _release_slot(self) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    # -- SIP thread: life cycle ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._start_stack()
        except BaseException as exc:  # noqa: BLE001 - becomes the constructor's error
            _scrubbed(exc)  # drop the pjsua2 objects its frames hold, here, before libDestroy
            if isinstance(exc, TelephonyError):
                self._startup_error = exc
            elif isinstance(exc, pj.Error):
                self._startup_error = TrunkError(f"SIP stack failed to start: {exc.reason}")
            else:
                self._startup_error = TrunkError(f"SIP stack failed to start: {exc!r}")
            del exc
            try:
                self._destroy_stack()
            finally:
                self._stopped.set()
                self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stopping:
                self._ep.libHandleEvents(POLL_MS)
                self._last_turn = time.monotonic()
                self._run_commands()
                self._check_deadlines()
        except BaseException:
            self._dead = True
            logger.exception("%s: SIP thread crashed", self._name)
        finally:
            try:
                self._shutdown_calls()
            except BaseException:
                logger.exception("%s: hanging up at shutdown failed", self._name)
            self._destroy_stack()
            self._fail_pending_commands()
            self._stopped.set()

    def _start_stack(self) -> None:
        cfg = self._cfg
        self._reader = _vector_reader()
        ep = self._ep = pj.Endpoint()
        with _stdout_silenced():  # libCreate logs its banner to stdout before any log config applies
            ep.libCreate()
        epc = pj.EpConfig()
        epc.uaConfig.maxCalls = cfg.max_calls
        epc.uaConfig.threadCnt = 0  # we poll: every SIP callback runs on this thread
        epc.uaConfig.mainThreadOnly = False
        epc.uaConfig.userAgent = "callcenter (pjsua2)"
        debug = cfg.log_level == "DEBUG"
        self._log_writer = _LogWriter()
        epc.logConfig.writer = self._log_writer
        epc.logConfig.level = 4 if debug else 2
        epc.logConfig.consoleLevel = 0
        epc.logConfig.msgLogging = debug  # SIP messages carry phone numbers: only when debugging
        epc.logConfig.decor = 0
        med = epc.medConfig
        med.clockRate = self._rate  # the bridge runs at the rate we hand to Python: no extra resampling
        med.sndClockRate = self._rate
        med.channelCount = 1
        med.audioFramePtime = 20
        med.noVad = True  # continuous RTP: carriers drop calls that go silent at the RTP level
        med.ecTailLen = 0  # no echo canceller: there is no sound device to echo
        med.threadCnt = 1
        ep.libInit(epc)
        built = _compiled_max_calls()
        if built is not None and built < cfg.max_calls:
            raise TrunkError(
                f"this pjsua2 build holds at most {built} calls per process (PJSUA_MAX_CALLS) but "
                f"max_calls={cfg.max_calls} was asked for: lower CALLCENTER_SIP_MAX_CALLS or install a "
                "pjproject built with a larger limit (docs/telephony.md)")
        ep.audDevManager().setNullDev()  # the null device's thread is the media clock

        tc = pj.TransportConfig()
        tc.port = cfg.sip_port
        if cfg.bind_address != "0.0.0.0":
            tc.boundAddress = cfg.bind_address
        try:
            tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
            self.local_port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
            # TCP listens beside UDP on the same port: trunks may use either, and agents' extensions
            # (sip:8001@pbx;transport=tcp) may differ from the trunk.
            tcp = pj.TransportConfig()
            tcp.port = self.local_port
            if cfg.bind_address != "0.0.0.0":
                tcp.boundAddress = cfg.bind_address
            ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcp)
        except pj.Error as exc:
            raise TrunkError(f"cannot open SIP port {cfg.bind_address}:{cfg.sip_port}: {exc.reason}") from None
        self._set_codecs()
        ep.libStart()
        self._create_account()

    def _set_codecs(self) -> None:
        available = {c.codecId: c for c in self._ep.codecEnum2()}
        for codec_id in available:
            self._ep.codecSetPriority(codec_id, 0)
        chosen = []
        for rank, name in enumerate(self._cfg.codecs):
            prefix = _CODEC_IDS[name]
            for codec_id in available:
                if codec_id.startswith(prefix):
                    self._ep.codecSetPriority(codec_id, 250 - rank)
                    chosen.append(codec_id)
        if not chosen:
            raise TrunkError(f"none of the codecs {', '.join(self._cfg.codecs)} is available in this pjsua2 build")
        self.codecs = chosen

    def _create_account(self) -> None:
        cfg = self._cfg
        tport = ";transport=tcp" if cfg.transport == "tcp" else ""
        acfg = pj.AccountConfig()
        user = cfg.caller_id or cfg.username or "callcenter"
        uri = f"sip:{user}@{cfg.identity_host}"
        acfg.idUri = f'"{cfg.display_name}" <{uri}>' if cfg.display_name else uri
        if cfg.registrar:
            acfg.regConfig.registrarUri = f"sip:{cfg.registrar}{tport}"
            acfg.regConfig.registerOnAdd = True
            acfg.regConfig.timeoutSec = 300
            acfg.regConfig.retryIntervalSec = 30
        if cfg.username:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", cfg.username, 0, cfg.password or ""))
        if cfg.proxy:
            acfg.sipConfig.proxies.append(f"sip:{cfg.proxy};lr{tport}")
        # A LAN trunk or PBX: none of the NAT helpers, no RFC 5626 outbound, no re-INVITE to lock
        # a codec when the answer lists several (gateways that answer "0 8 101" do not expect one).
        acfg.natConfig.sipOutboundUse = 0
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.mediaConfig.lockCodecEnabled = False
        acfg.mediaConfig.transportConfig.port = cfg.rtp_port
        acfg.mediaConfig.transportConfig.portRange = cfg.rtp_port_range
        if cfg.bind_address != "0.0.0.0":
            acfg.mediaConfig.transportConfig.boundAddress = cfg.bind_address
        acc = self._acc = _Account()
        if cfg.inbound:
            acc.phone = self
        try:
            acc.create(acfg, True)
        except pj.Error as exc:
            raise TrunkError(f"SIP account rejected: {exc.reason}") from None
        if cfg.registrar:
            deadline = time.monotonic() + cfg.register_timeout
            while not acc.reg_event.is_set() and time.monotonic() < deadline:
                self._ep.libHandleEvents(POLL_MS)
            if not acc.reg_active:
                what = f"{acc.reg_code} {acc.reg_reason}" if acc.reg_code else f"no answer in {cfg.register_timeout:g} s"
                raise TrunkError(f"registration with {cfg.registrar} failed: {what}")

    def _shutdown_calls(self) -> None:
        for leg in list(self._legs.values()):
            self._hangup(leg, LocalCause.SHUTDOWN)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self._legs and time.monotonic() < deadline and not self._dead:
            self._ep.libHandleEvents(POLL_MS)
            self._check_deadlines()
        for leg in list(self._legs.values()):  # the far end never answered our BYE/CANCEL
            self._finish_leg(leg, force=True)

    def _destroy_stack(self) -> None:
        ep = getattr(self, "_ep", None)
        acc = getattr(self, "_acc", None)
        if acc is not None:
            try:
                if acc.reg_active:
                    acc.setRegistration(False)  # REGISTER with Expires: 0
                    deadline = time.monotonic() + 1.0
                    acc.reg_event.clear()
                    while time.monotonic() < deadline and not acc.reg_event.is_set():
                        ep.libHandleEvents(POLL_MS)
                acc.shutdown()
            except Exception:
                logger.debug("account shutdown", exc_info=True)
            acc.phone = None
            self._acc = None
            del acc
        if ep is not None:
            try:
                ep.libDestroy()
            except Exception:
                logger.exception("%s: libDestroy failed", self._name)
            self._ep = None
            del ep
        self._log_writer = None

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                fut, _, _ = self._commands.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(PhoneClosedError(f"{self._name}: phone is closed"))

    # -- SIP thread: commands ------------------------------------------------------------------------
    def _make_call(self, session: CallSession, ring_timeout: float, max_seconds: float) -> None:
        now = time.monotonic()
        leg = _Leg(session=session, ring_timeout=ring_timeout, max_seconds=max_seconds,
                   invite_at=time.time(), invite_mono=now, ring_deadline=now + ring_timeout)
        call = _Call(self, leg, self._acc)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        try:
            call.makeCall(session.uri, prm)
        except pj.Error as exc:
            call.phone = call.leg = None
            del call
            if exc.status == _PJ_ETOOMANY:
                raise _SlotReleasing() from None
            if "URI" in exc.reason or "uri" in exc.reason:
                raise InvalidTarget(f"{mask_target(session.uri)}: {exc.reason}") from None
            raise TrunkError(f"cannot call {mask_target(session.uri)}: {exc.reason}") from None
        leg.call = call
        self._legs[session.call_id] = leg
        logger.info("call %s: dialling %s", session.call_id, session.target)

    def _leg(self, call_id: str) -> _Leg:
        leg = self._legs.get(call_id)
        if leg is None or leg.reported:
            raise CallStateError(f"call {call_id} has ended")
        return leg

    def _hangup_cmd(self, call_id: str, cause: LocalCause) -> None:
        leg = self._legs.get(call_id)
        if leg is not None:
            self._hangup(leg, cause)

    def _hangup(self, leg: _Leg, cause: LocalCause) -> None:
        if leg.disconnected or leg.local_cause is not None or leg.call is None:
            return
        leg.local_cause = cause
        leg.hangup_sent_at = time.monotonic()
        logger.info("call %s: hanging up (%s)", leg.session.call_id, cause.value)
        prm = pj.CallOpParam()
        if leg.inbound and not leg.answered:
            # An incoming call we never answered gets a final response: 480 when we cannot take
            # it (ring limit, shutdown), 603 when the application hung up on it.
            prm.statusCode = 603 if cause is LocalCause.HANGUP else 480
        try:
            leg.call.hangup(prm)
        except pj.Error as exc:
            logger.debug("call %s: hangup: %s", leg.session.call_id, exc.reason)

    # -- SIP thread: incoming calls --------------------------------------------------------------------
    def _on_incoming(self, acc: _Account, prm: Any) -> None:
        """An INVITE arrived (pjsip answered 100 Trying): register the leg, queue the session."""
        now, mono = time.time(), time.monotonic()
        cfg = self._cfg
        call = _Call(self, None, acc, prm.callId)
        try:
            info = call.getInfo()
            remote, local = info.remoteUri, info.localUri
            sip_call_id = info.callIdString
            request_line = prm.rdata.wholeMsg.split("\n", 1)[0].split(" ")
            ruri = request_line[1] if len(request_line) == 3 else ""
        except (pj.Error, AttributeError) as exc:
            logger.warning("incoming call: unreadable INVITE (%s); declining", getattr(exc, "reason", exc))
            self._decline(call, 400)
            return
        if self._stopping or self._closed:
            self._decline(call, 480)
            return
        call_id = f"{self._name}-in{next(self._seq)}-{uuid.uuid4().hex[:8]}"
        session = InboundSession(call_id, _bare_uri(remote), self._rate, self,
                                 caller=uri_user(remote), dialled=uri_user(ruri) or uri_user(local),
                                 writer=self._writer)
        session.sip_call_id = sip_call_id
        leg = _Leg(session=session, ring_timeout=cfg.inbound_ring_timeout, max_seconds=cfg.max_call_seconds,
                   invite_at=now, invite_mono=mono, ring_deadline=mono + cfg.inbound_ring_timeout,
                   call=call, got_response=True, sip_call_id=sip_call_id, inbound=True)
        call.leg = leg
        with self._lock:
            self._reserved += 1  # pjsua gave the INVITE one of its slots: count it like a dial
        self._legs[call_id] = leg
        logger.info("call %s: incoming from %s to %s", call_id, session.target, session.dialled_masked)
        self._incoming.put(session)

    @staticmethod
    def _decline(call: _Call, code: int) -> None:
        op = pj.CallOpParam()
        op.statusCode = code
        try:
            call.hangup(op)
        except pj.Error:
            pass
        call.phone = call.leg = None

    def _answer_cmd(self, call_id: str, code: int) -> None:
        leg = self._leg(call_id)
        if not leg.inbound or leg.call is None:
            raise CallStateError(f"call {call_id}: not an incoming call")
        if leg.answered:
            raise CallStateError(f"call {call_id}: already answered")
        if leg.local_cause is not None or leg.disconnected:
            raise CallStateError(f"call {call_id}: has ended")
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        try:
            leg.call.answer(prm)
        except pj.Error as exc:
            raise CallStateError(f"call {call_id}: cannot send {code}: {exc.reason}") from None
        logger.info("call %s: %s", call_id, "ringing" if code == 180 else "answering")

    def _reject_cmd(self, call_id: str, code: int) -> None:
        leg = self._leg(call_id)
        if not leg.inbound or leg.call is None:
            raise CallStateError(f"call {call_id}: not an incoming call")
        if leg.answered:
            raise CallStateError(f"call {call_id}: already answered; hang up instead")
        if leg.local_cause is not None or leg.disconnected:
            return
        leg.local_cause = LocalCause.REJECTED
        leg.reject_code = code
        leg.hangup_sent_at = time.monotonic()
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            leg.call.hangup(prm)
        except pj.Error as exc:
            raise CallStateError(f"call {call_id}: cannot reject: {exc.reason}") from None
        logger.info("call %s: rejected with %d", call_id, code)

    def _dtmf_cmd(self, call_id: str, digits: str, method: DtmfMethod) -> None:
        leg = self._leg(call_id)
        if not leg.confirmed or leg.call is None:
            raise CallStateError(f"call {call_id}: not answered")
        try:
            if method is DtmfMethod.SIP_INFO:
                prm = pj.CallSendDtmfParam()
                prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
                prm.digits = digits
                prm.duration = 160
                leg.call.sendDtmf(prm)
            else:
                leg.call.dialDtmf(digits)
        except pj.Error as exc:
            raise CallStateError(f"call {call_id}: DTMF not sent: {exc.reason}") from None
        logger.info("call %s: sent DTMF (%s, %d digits)", call_id, method.value, len(digits))

    def _xfer_cmd(self, call_id: str, uri: str) -> concurrent.futures.Future[int]:
        leg = self._leg(call_id)
        if leg.call is None or not leg.confirmed:
            raise CallStateError(f"call {call_id}: not answered")
        if leg.transfer is not None and not leg.transfer.done():
            raise CallStateError(f"call {call_id}: a transfer is already in progress")
        leg.transfer = concurrent.futures.Future()
        leg.transfer.set_running_or_notify_cancel()
        try:
            leg.call.xfer(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            leg.transfer = None
            raise CallStateError(f"call {call_id}: REFER not sent: {exc.reason}") from None
        logger.info("call %s: blind transfer to %s", call_id, mask_target(uri))
        return leg.transfer

    def _bridge_cmd(self, call_id: str, agent_call_id: str) -> None:
        leg = self._leg(call_id)
        agent = self._leg(agent_call_id)
        if leg.aud is None or agent.aud is None:
            raise CallStateError(f"call {call_id}: no audio to bridge")
        leg.aud.startTransmit(agent.aud)
        agent.aud.startTransmit(leg.aud)
        leg.peer, agent.peer = agent, leg
        agent.is_agent_leg = True
        leg.session.stop_playback()
        leg.session._on_bridged(agent.session)
        logger.info("call %s: bridged to agent leg %s", call_id, agent_call_id)

    # -- SIP thread: callbacks ---------------------------------------------------------------------
    def _on_call_state(self, leg: _Leg, prm: Any) -> None:
        call = leg.call
        if call is None:
            return
        info = call.getInfo()
        state, code, reason = info.state, info.lastStatusCode, info.lastReason
        if not leg.sip_call_id:
            leg.sip_call_id = leg.session.sip_call_id = info.callIdString
        sid = leg.session.call_id
        now = time.time()
        if state == pj.PJSIP_INV_STATE_EARLY:
            leg.got_response = True
            if code in (180, 183) and leg.ringing_at is None:
                leg.ringing_at = now
                leg.session._on_ringing(now, code, reason)
                logger.info("call %s: %s %s", sid, code, reason)
        elif state == pj.PJSIP_INV_STATE_CONNECTING:
            leg.got_response = True
            if not leg.answered:
                leg.answered, leg.answered_at = True, now
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            leg.got_response = True
            if not leg.answered:
                leg.answered, leg.answered_at = True, now
            leg.confirmed = True
            leg.max_deadline = time.monotonic() + leg.max_seconds
            if leg.media_active:
                self._connect_media(leg)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            leg.disconnected = True
            leg.ended_at = now
            leg.sip_code, leg.reason = code, reason
            leg.end_cause = _end_cause(prm)
            if leg.end_cause is EndCause.RESPONSE:
                leg.got_response = True
            logger.info("call %s: disconnected %s %s", sid, code, reason)
            self._finish_leg(leg)

    def _on_tsx_state(self, leg: _Leg, prm: Any) -> None:
        e = prm.e
        if e.type == pj.PJSIP_EVENT_TSX_STATE and e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG:
            leg.got_response = True

    def _on_media_state(self, leg: _Leg, prm: Any) -> None:
        call = leg.call
        if call is None or leg.disconnected:
            return
        info = call.getInfo()
        for mi in info.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                leg.media_active = True
                leg.media_established = True
                leg.media_index = mi.index
                try:
                    si = call.getStreamInfo(mi.index)
                    leg.codec = f"{si.codecName}/{si.codecClockRate}"
                except pj.Error:
                    pass
                if leg.confirmed:
                    self._connect_media(leg)
            else:
                leg.media_active = False
            return

    def _connect_media(self, leg: _Leg) -> None:
        """Attach the call's stream to its port (and to the bridge partner), once per stream."""
        call = leg.call
        aud = call.getAudioMedia(leg.media_index)
        if leg.aud is not None and leg.aud.getPortId() == aud.getPortId():
            return
        if leg.port is None:
            leg.session._start_media()
            port = _MediaPort(leg.session, self._reader)
            fmt = pj.MediaFormatAudio()
            fmt.type = pj.PJMEDIA_TYPE_AUDIO
            fmt.id = pj.PJMEDIA_FORMAT_L16
            fmt.clockRate = self._rate
            fmt.channelCount = 1
            fmt.bitsPerSample = 16
            fmt.frameTimeUsec = 20000
            port.createPort(f"cc-{leg.session.call_id}"[:30], fmt)
            leg.port = port
        aud.startTransmit(leg.port)
        leg.port.startTransmit(aud)
        leg.aud = aud
        if leg.peer is not None and leg.peer.aud is not None:
            aud.startTransmit(leg.peer.aud)
            leg.peer.aud.startTransmit(aud)
        if not leg.answer_reported:
            leg.answer_reported = True
            leg.session._on_answered(leg.answered_at or time.time(), leg.codec)
            logger.info("call %s: answered (%s)", leg.session.call_id, leg.codec)

    def _on_dtmf_event(self, leg: _Leg, prm: Any) -> None:
        # RFC 2833 digits are reported at the start and again at the end of the tone (flags has
        # PJMEDIA_STREAM_DTMF_IS_END then); SIP INFO digits once. Report each digit once.
        method = DtmfMethod.SIP_INFO if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else DtmfMethod.RFC2833
        if method is DtmfMethod.RFC2833 and prm.flags & 1:  # PJMEDIA_STREAM_DTMF_IS_END
            return
        leg.session._on_dtmf(str(prm.digit), method)
        logger.info("call %s: DTMF received (%s)", leg.session.call_id, method.value)

    def _on_transfer_status(self, leg: _Leg, prm: Any) -> None:
        code, reason, final = prm.statusCode, prm.reason, prm.finalNotify
        leg.session._on_transfer(code, reason, final)
        logger.info("call %s: transfer %s %s%s", leg.session.call_id, code, reason, " (final)" if final else "")
        if final:
            fut = leg.transfer
            if fut is not None and not fut.done():
                fut.set_result(code)
            if 200 <= code < 300:
                prm.cont = False
                self._hangup(leg, LocalCause.TRANSFERRED)

    # -- SIP thread: deadlines and release -----------------------------------------------------------
    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._zombies:
            freed = [t for t in self._zombies if t <= now]
            if freed:
                self._zombies = [t for t in self._zombies if t > now]
                for _ in freed:
                    self._release_slot()
        if not self._legs:
            return
        for leg in list(self._legs.values()):
            if leg.disconnected:
                continue
            if leg.local_cause is None:
                if not leg.answered and now >= leg.ring_deadline:
                    self._hangup(leg, LocalCause.RING_TIMEOUT)  # inbound: 480 after the ring limit
                elif leg.confirmed and leg.max_deadline is not None and now >= leg.max_deadline:
                    self._hangup(leg, LocalCause.MAX_DURATION)
            elif not leg.reported and leg.hangup_sent_at and now - leg.hangup_sent_at > HANGUP_GRACE:
                # The far end does not answer our CANCEL/BYE: tell the application now; the slot
                # stays taken until pjsip's transaction times out and _finish_leg releases it.
                leg.ended_at = time.time()
                leg.end_cause = EndCause.TIMEOUT
                self._report(leg)

    def _finish_leg(self, leg: _Leg, force: bool = False) -> None:
        """Release the leg's pjsua2 objects (SIP thread) and report its result."""
        sid = leg.session.call_id
        if leg.ended_at is None:
            leg.ended_at = time.time()
        peer = leg.peer
        if peer is not None:
            leg.peer = peer.peer = None
            if leg.is_agent_leg:
                peer.session._on_unbridged(leg.session)
            elif not peer.disconnected:
                self._hangup(peer, LocalCause.HANGUP)  # the customer left: the agent leg goes too
        # Release in order: our port (removes it from the bridge), the stream's AudioMedia, the call.
        port, leg.port = leg.port, None
        if port is not None:
            _destroy_port(port)
        leg.aud = None
        call, leg.call = leg.call, None
        if call is not None:
            call.phone = call.leg = None  # break the call <-> leg cycle so the GC never frees it elsewhere
            if force and not leg.disconnected:
                try:
                    call.hangup(pj.CallOpParam())
                except pj.Error:
                    pass
            del call
        self._legs.pop(sid, None)
        if leg.transfer is not None and not leg.transfer.done():
            leg.transfer.set_result(0)
        if leg.local_cause is not None and not leg.got_response and not leg.answered and not force \
                and not leg.inbound:
            # We gave up on an INVITE nobody answered: pjsua keeps its slot until Timer B.
            self._zombies.append(leg.invite_mono + TIMER_B + 0.5)
        else:
            self._release_slot()  # before ENDED goes out, so that whoever waits on it can dial at once
        self._report(leg)

    def _report(self, leg: _Leg) -> None:
        if leg.reported:
            return
        leg.reported = True
        session = leg.session
        if leg.inbound:
            disposition, hangup_by, reason = classify_inbound(InboundProgress(
                sip_code=leg.sip_code,
                reason=leg.reason,
                answered=leg.answered,
                media_established=leg.media_established,
                local_cause=leg.local_cause,
                reject_code=leg.reject_code,
                ring_timeout=leg.ring_timeout,
                max_seconds=leg.max_seconds,
            ))
        else:
            disposition, hangup_by, reason = classify(Progress(
                sip_code=leg.sip_code,
                reason=leg.reason,
                answered=leg.answered,
                media_established=leg.media_established,
                got_response=leg.got_response,
                end_cause=leg.end_cause,
                local_cause=leg.local_cause,
                ring_timeout=leg.ring_timeout,
                max_seconds=leg.max_seconds,
            ))
        result = CallResult(
            call_id=session.call_id,
            target=session.target,
            disposition=disposition,
            sip_code=leg.sip_code,
            reason=reason,
            hangup_by=hangup_by,
            invite_at=leg.invite_at,
            ended_at=leg.ended_at or time.time(),
            ringing_at=leg.ringing_at,
            answered_at=leg.answered_at if disposition.value == "answered" else None,
            recording=session.recording_path,
            codec=leg.codec,
            frames_received=session.frames_received,
            frames_dropped=session.frames_dropped,
            frames_lost=session.frames_lost,
            direction=session.direction,
        )
        logger.info("call %s: %s (%s), by %s", session.call_id, disposition.value, reason, hangup_by.value)
        session._finish(result, {"sip_call_id": leg.sip_call_id, "phone": self._name})


def _destroy_port(port: _MediaPort) -> None:
    """Remove a media port from the bridge and free it while its Python object is still whole.

    Dropping the last reference would let Python clear the object's attributes *before* SWIG's
    destructor takes the bridge's lock to remove the port, so a media tick running at that moment
    calls back into a half-destroyed object: seen as AttributeError on ``self._audio`` followed by
    SIGSEGV, once in about 300 short calls. Calling the destructor first (it releases the GIL and
    waits for the tick in progress) and only then dropping the object closes that window.
    """
    try:
        if port.thisown:
            pj._pjsua2.delete_AudioMediaPort(port)  # disowns: the later dealloc does not free it again
    except Exception:
        logger.exception("destroying a media port failed")


def _compiled_max_calls() -> int | None:
    """pjsua's effective call limit (``maxCalls`` clamped to the compiled PJSUA_MAX_CALLS).

    pjsua2 does not wrap ``pjsua_call_get_max_count``, but the extension module exports it; None
    when a build hides its C symbols (then the 5th call fails with PJ_ETOOMANY, reported as
    CapacityError).
    """
    try:
        lib = ctypes.CDLL(pj._pjsua2.__file__)
        fn = lib.pjsua_call_get_max_count
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_uint
    fn.argtypes = []
    return int(fn())


_call_count_fn: Any = None


def _stack_call_count() -> int:
    """Calls pjsua holds right now (``pjsua_call_get_count``: reads one counter, no pjlib call, so
    any thread may ask); 0 when the build hides the symbol."""
    global _call_count_fn
    if _call_count_fn is None:
        try:
            fn = ctypes.CDLL(pj._pjsua2.__file__).pjsua_call_get_count
            fn.restype, fn.argtypes = ctypes.c_uint, []
        except (OSError, AttributeError):
            fn = False
        _call_count_fn = fn
    return int(_call_count_fn()) if _call_count_fn else 0


def _bare_uri(uri: str) -> str:
    """``"Name" <sip:u@h>;tag=x`` -> ``sip:u@h`` (what CallSession keeps as the far end's URI)."""
    m = re.search(r"<([^>]*)>", uri)
    return (m.group(1) if m else uri.split(";", 1)[0]).strip()


def _scrubbed(exc: BaseException) -> BaseException:
    """Clear the local variables of every frame in ``exc``'s tracebacks (and chained ones).

    An exception raised on the SIP thread keeps its frames' locals alive (a Call, an Account,
    the Endpoint). Handed to another thread and freed there, their C++ destructors would call
    pjlib from an unregistered thread, and pjlib aborts the process. Clearing the frames here
    releases them on the SIP thread; the traceback itself (file, line, function) is kept.
    """
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
        e = e.__cause__ or e.__context__
    return exc


@contextlib.contextmanager
def _stdout_silenced():
    """Point file descriptor 1 at /dev/null for a moment (``callcenter call --json`` owns stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _end_cause(prm: Any) -> EndCause:
    e = prm.e
    if e.type == pj.PJSIP_EVENT_TSX_STATE:
        kind = e.body.tsxState.type
        if kind == pj.PJSIP_EVENT_RX_MSG:
            return EndCause.RESPONSE
        if kind == pj.PJSIP_EVENT_TIMER:
            return EndCause.TIMEOUT
        if kind == pj.PJSIP_EVENT_TRANSPORT_ERROR:
            return EndCause.TRANSPORT
    elif e.type == pj.PJSIP_EVENT_TRANSPORT_ERROR:
        return EndCause.TRANSPORT
    elif e.type == pj.PJSIP_EVENT_TIMER:
        return EndCause.TIMEOUT
    return EndCause.LOCAL
