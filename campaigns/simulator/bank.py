"""A simulator phone process: the worker job that answers incoming calls as personas.

``callcenter simulate`` runs N of these under the telephony supervisor
(``callcenter.telephony.supervisor``: restarted with backoff when one dies, heartbeat-checked),
each with its own pjsua2 phone (inbound, 8 kHz, 4 calls) behind the SIP front
(:mod:`campaigns.simulator.front`).

Threads of one phone process: the main thread runs :func:`simulator_job`: it takes incoming calls
from the phone and reports the load to the front (every 50 ms and after every call taken); one
``call-<id>`` thread per call runs a :class:`~campaigns.simulator.customer.SimulatedCall`; the
phone's SIP thread and pjmedia's clock as in any worker (docs/telephony.md).

Before the first call it loads the personas, fingerprints the robot's prompt library and converts
every persona WAV once: converting audio while calls are live would hold the GIL long enough to
starve the media clock (docs/telephony.md, "The GIL").
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from callcenter.telephony import Phone
from callcenter.telephony.supervisor import WorkerInfo

logger = logging.getLogger(__name__)

REPORT_EVERY = 0.05  # seconds between load reports to the front
STOP_GRACE = 5.0  # seconds the calls get to end after SIGTERM


@dataclass(frozen=True)
class BankArgs:
    """The job's arguments (``--job-arg`` pairs, all strings; built by the ``simulate`` command)."""

    personas: Path
    log_dir: Path | None
    front: tuple[str, int]  # the front's report address
    token: str
    default: str | None = None
    scripts: tuple[Path, ...] = ()
    fallback_script: str = "post_service"
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> BankArgs:
        """Raises ValueError naming the missing or bad argument."""
        known = {"personas", "log_dir", "front", "token", "default", "scripts", "fallback_script"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"simulator: unknown argument {unknown[0]!r}")
        for key in ("personas", "front", "token"):
            if not args.get(key):
                raise ValueError(f"simulator: {key}=... is required")
        host, _, port = args["front"].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"simulator: front={args['front']!r}: expected host:port")
        scripts = tuple(Path(p) for p in args.get("scripts", "").split(os.pathsep) if p)
        return cls(personas=Path(args["personas"]), log_dir=Path(args["log_dir"]) if args.get("log_dir") else None,
                   front=(host, int(port)), token=args["token"], default=args.get("default") or None,
                   scripts=scripts, fallback_script=args.get("fallback_script") or "post_service")


def load_world(args: BankArgs, sample_rate: int):
    """Personas, prompt index and pre-converted persona audio: everything a call needs."""
    from threadpoolctl import threadpool_limits

    from callcenter.telephony.audio import load_prompt
    from campaigns.personas import load_personas
    from campaigns.simulator.fingerprint import PromptIndex
    from dialog.prompts import PromptLibrary
    from dialog.script import SCRIPTS_DIR, load_scripts

    # A prompt lookup is three 13,000 x 256 matrix-vector products: 0.3 ms each on one thread,
    # about 5 ms when OpenBLAS spreads them over both (busy) cores. One thread per process.
    threadpool_limits(1)
    book = load_personas(args.personas, require_audio=True)
    if args.default:
        book = book.with_default(args.default)
    scripts = load_scripts([SCRIPTS_DIR, *args.scripts])
    if args.fallback_script not in scripts:
        raise ValueError(f"fallback script {args.fallback_script!r} is not among {', '.join(sorted(scripts))}")
    index = PromptIndex.build(scripts, PromptLibrary())
    for _persona, answer in book.all_answers():
        load_prompt(answer.audio, sample_rate)  # cached: the call threads only look it up
    return book, index


def simulator_job(phone: Phone, stop: threading.Event, info: WorkerInfo) -> None:
    """Answer incoming calls as personas until ``stop`` is set (see the module docstring)."""
    from campaigns.simulator.customer import SimulatedCall
    from campaigns.simulator.front import report

    args = BankArgs.parse(info.args)
    started = time.monotonic()
    book, index = load_world(args, phone.sample_rate)
    logger.info("%s: %d personas, %d prompt fragments fingerprinted (%.1f s)", info.name, len(book.personas),
                len(index.fragments), time.monotonic() - started)
    port = int(getattr(phone, "local_port", 0) or info.sip.sip_port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken = 0
    calls: set[threading.Thread] = set()

    def tell() -> None:
        # slots_in_use (pjsua's own count) where the phone has it: see PjsipPhone.slots_in_use.
        active = getattr(phone, "slots_in_use", phone.active_calls)
        report(sock, args.front, token=args.token, index=info.index, port=port, active=active, taken=taken,
               capacity=phone.capacity)

    try:
        next_report = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_report:
                tell()
                next_report = now + REPORT_EVERY
            call = phone.incoming(timeout=REPORT_EVERY)
            if call is None:
                continue
            taken += 1
            tell()
            sim = SimulatedCall(call, book, index, log_dir=args.log_dir, fallback_script=args.fallback_script,
                                worker=info.name)
            thread = threading.Thread(target=sim.run, name=f"call-{call.call_id}", daemon=True)
            calls = {t for t in calls if t.is_alive()}
            calls.add(thread)
            thread.start()
    finally:
        phone.hangup_all(timeout=STOP_GRACE)
        for thread in calls:
            thread.join(timeout=STOP_GRACE)
        sock.close()
