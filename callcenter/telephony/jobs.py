"""Worker jobs that ship with telephony: ``soak``, a load and soak test for a trunk.

``callcenter worker --job callcenter.telephony.jobs:soak --job-arg target=8001 --job-arg play=p.wav``
keeps every worker's call slots busy with calls to ``target``: each call plays the prompt, reads the
customer's frames the way a recogniser would, hangs up, and appends one JSON line per call
(disposition, dial-to-answer time, frames per second of talk, gaps, drops) to ``results``. Use it to
commission a trunk or PBX before a campaign, and to measure a machine (bench/bench_telephony.py).

Threads: the job runs on the worker's main thread and starts ``concurrent`` call threads; each owns
one call at a time and touches only the thread-safe CallHandle API.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from callcenter.telephony.api import CapacityError, Phone, TelephonyError
from callcenter.telephony.audio import load_prompt
from callcenter.telephony.session import FRAME_SECONDS
from callcenter.telephony.supervisor import WorkerInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SoakArgs:
    target: str
    concurrent: int | None = None  # default: the phone's capacity
    calls: int = 0  # calls per worker, 0: until stopped
    play: Path | None = None
    talk: float | None = None  # hang up this long after the answer (default: prompt length + 0.5 s, or 10 s)
    record: bool = False
    results: Path | None = None  # directory; one <worker>.jsonl per worker
    rate: float = 0.0  # call attempts per second per worker, 0: as fast as slots free up
    ring_timeout: float | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> SoakArgs:
        """Raises ValueError naming the bad or unknown argument."""
        known = {"target", "concurrent", "calls", "play", "talk", "record", "results", "rate", "ring_timeout"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"soak: unknown argument {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if not args.get("target"):
            raise ValueError("soak: target=<number or sip: URI> is required")

        def num(key: str, kind, lo: float):
            raw = args.get(key)
            if raw is None:
                return None
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"soak: {key}={raw!r} is not a number") from None
            if value < lo:
                raise ValueError(f"soak: {key} must be >= {lo}")
            return value

        play = Path(args["play"]) if args.get("play") else None
        if play is not None and not play.is_file():
            raise ValueError(f"soak: play={play} is not a file")
        record = args.get("record", "0").lower()
        if record not in ("0", "1", "true", "false", "yes", "no"):
            raise ValueError(f"soak: record={record!r}: expected 1 or 0")
        return cls(
            target=args["target"],
            concurrent=num("concurrent", int, 1),
            calls=num("calls", int, 0) or 0,
            play=play,
            talk=num("talk", float, 0.1),
            record=record in ("1", "true", "yes"),
            results=Path(args["results"]) if args.get("results") else None,
            rate=num("rate", float, 0) or 0.0,
            ring_timeout=num("ring_timeout", float, 0.5),
        )


class _Pacer:
    """Shared budget and rate limit of the call threads of one worker."""

    def __init__(self, calls: int, rate: float) -> None:
        self._left = calls if calls > 0 else None
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def take(self, stop: threading.Event) -> bool:
        with self._lock:
            if self._left is not None:
                if self._left <= 0:
                    return False
                self._left -= 1
            wait = self._next - time.monotonic()
            self._next = max(self._next, time.monotonic()) + self._interval
        if wait > 0:
            stop.wait(wait)
        return not stop.is_set()

    def give_back(self) -> None:
        with self._lock:
            if self._left is not None:
                self._left += 1


def soak(phone: Phone, stop: threading.Event, info: WorkerInfo) -> None:
    """Place calls until ``stop`` is set or ``calls`` per worker are done (see module docstring)."""
    args = SoakArgs.parse(info.args)
    out = None
    write_lock = threading.Lock()
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        out = open(args.results / f"{info.name}.jsonl", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    pacer = _Pacer(args.calls, args.rate)
    if args.play is not None:
        # Convert the prompt now, not in the first call: a conversion holds the GIL (and the first
        # one imports scipy, ~2 s here), and the media clock of every live call needs the GIL.
        load_prompt(args.play, phone.sample_rate)

    def record(line: dict) -> None:
        if out is not None:
            with write_lock:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")

    def loop(n: int) -> None:
        while not stop.is_set() and pacer.take(stop):
            t_dial = time.monotonic()
            try:
                handle = phone.dial(args.target, record=args.record, ring_timeout=args.ring_timeout)
            except CapacityError:
                pacer.give_back()
                stop.wait(0.05)
                continue
            except TelephonyError as exc:
                logger.error("%s: dial failed: %s", info.name, exc)
                record({"worker": info.name, "error": str(exc), "at": time.time()})
                stop.wait(1.0)
                continue
            try:
                record(_run_call(handle, args, stop, info.name, t_dial))
            except Exception:
                logger.exception("%s: call %s failed", info.name, handle.call_id)
                handle.hangup()

    threads = [threading.Thread(target=loop, args=(i,), name=f"soak-{i}", daemon=True)
               for i in range(args.concurrent or phone.capacity)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if out is not None:
            out.close()


def _run_call(handle, args: SoakArgs, stop: threading.Event, worker: str, t_dial: float) -> dict:
    ring = (args.ring_timeout or 60.0) + 10.0
    answered = handle.wait_answered(timeout=ring)
    answer_latency = time.monotonic() - t_dial if answered else None
    frames = gaps = 0
    max_gap = 0.0
    first = last = None
    if answered:
        t_answer = time.monotonic()
        duration = 10.0
        if args.play is not None:
            playback = handle.play(args.play)
            duration = getattr(playback, "duration", duration) + 0.5
        hang_at = t_answer + (args.talk if args.talk is not None else duration)
        hung = False
        audio = handle.audio
        while True:
            frame = audio.get(timeout=0.1)
            now = time.monotonic()
            if frame is not None:
                if abs(frame.timestamp - frames * FRAME_SECONDS) > 1e-6:
                    gaps += 1
                frames += 1
                if last is not None:
                    max_gap = max(max_gap, now - last)
                first = first if first is not None else now
                last = now
            elif audio.finished:
                break
            if not hung and (now >= hang_at or stop.is_set()):
                handle.hangup()
                hung = True
    result = handle.wait_ended(timeout=30)
    line = {"worker": worker, "call_id": handle.call_id, "dial_seconds": round(time.monotonic() - t_dial, 3)}
    if result is None:
        line["error"] = "no result within 30 s of the end of the call"
        return line
    line.update(result.summary())
    line.update({
        "invite_at": result.invite_at,
        "dial_to_answer": round(result.answered_at - result.invite_at, 4) if result.answered_at else None,
        "answer_latency": round(answer_latency, 4) if answer_latency is not None else None,
        "frames": frames,
        # as the consumer saw them (its own scheduling included); the media side is frames_lost
        "frames_per_second": round((frames - 1) / (last - first), 3) if frames > 1 and last > first else None,
        "frames_per_talk_second": round(frames / result.talk_seconds, 3) if result.talk_seconds else None,
        "timestamp_gaps": gaps,
        "max_frame_gap_ms": round(max_gap * 1000, 1),
        "frames_dropped": result.frames_dropped,
        "frames_lost": result.frames_lost,
        "codec": result.codec,
    })
    return line
