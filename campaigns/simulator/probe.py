"""A scripted stand-in for the robot: dials, plays a script's prompts in order, times the replies.

It checks a simulator (or any trunk) without speech recognition or a dialog: each prompt is the
robot's own rendered audio (:class:`dialog.prompts.PromptLibrary`), played over a real call through
:mod:`callcenter.telephony`; after it, the probe waits for the customer to speak and to stop (an
energy VAD, 0.8 s of silence), then plays the next. The simulator's tests and benchmark use it; it
is also a quick commissioning check (``ScriptedCaller(phone).call("13900000001", [...])``).

Runs on the calling thread (one call at a time per caller object; use one thread per call).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callcenter.telephony import CallHandle, Phone
from campaigns.simulator.fingerprint import SILENCE_DB, frame_db

REPLY_END_SILENCE = 0.8  # seconds of silence that end the customer's reply
DEFAULT_VALUES = {"surname": "王", "title": "先生", "store": "我们店", "visit_date": "2024-06-03",
                  "insurance_expiry": "2024-07-01", "warranty_end": "2024-08-01", "model": ""}


@dataclass
class ProbeTurn:
    prompt: str  # step id (or shared prompt name)
    text: str
    played_at: float  # seconds after the answer
    prompt_end: float
    reply_start: float | None = None
    reply_end: float | None = None

    @property
    def gap(self) -> float | None:
        """From the end of the prompt to the start of the reply (negative: the customer barged in)."""
        return None if self.reply_start is None else self.reply_start - self.prompt_end

    @property
    def reply_seconds(self) -> float:
        return 0.0 if self.reply_start is None or self.reply_end is None else self.reply_end - self.reply_start


@dataclass
class ProbeResult:
    number: str
    result: Any  # telephony CallResult
    greeting: tuple[float, float] | None = None  # the customer's first words (hello / machine greeting)
    turns: list[ProbeTurn] = field(default_factory=list)
    hung_up_by_customer_at: float | None = None
    sip_call_id: str = ""  # the same on the simulator's side: finds its call log

    def to_dict(self) -> dict:
        r = self.result
        return {"number": self.number, "sip_call_id": self.sip_call_id, "greeting": self.greeting,
                "hung_up_by_customer_at": self.hung_up_by_customer_at,
                "disposition": r.disposition.value if r else None, "sip_code": r.sip_code if r else None,
                "reason": r.reason if r else None, "hangup_by": r.hangup_by.value if r else None,
                "talk_seconds": r.talk_seconds if r else None, "frames_lost": r.frames_lost if r else None,
                "turns": [{"prompt": t.prompt, "played_at": t.played_at, "prompt_end": t.prompt_end,
                           "reply_start": t.reply_start, "reply_end": t.reply_end} for t in self.turns]}

    @property
    def replies(self) -> int:
        return sum(1 for t in self.turns if t.reply_start is not None)


class _Ear:
    """Reads the customer's frames and keeps a VAD on them (the probe's only thread)."""

    def __init__(self, call: CallHandle) -> None:
        self.call = call
        self.t = 0.0
        self.speaking = False
        self.started: float | None = None
        self.last_voiced = 0.0
        self.segments: list[tuple[float, float]] = []
        self._run = 0

    def step(self, timeout: float = 0.1) -> bool:
        """Consume the frames available now; False once the call has ended."""
        frame = self.call.audio.get(timeout=timeout)
        if frame is None:
            if self.call.audio.finished or self.call.ended:
                if self.speaking:  # the customer hung up right after speaking
                    self.speaking = False
                    self.segments.append((self.started, self.last_voiced))
                return False
            return True
        while frame is not None:
            self.t = frame.timestamp + frame.duration
            if frame_db(frame.audio) > SILENCE_DB:
                self._run += 1
                self.last_voiced = self.t
                if not self.speaking and self._run >= 3:
                    self.speaking, self.started = True, self.t - self._run * frame.duration
            else:
                self._run = 0
                if self.speaking and self.t - self.last_voiced >= REPLY_END_SILENCE:
                    self.speaking = False
                    self.segments.append((self.started, self.last_voiced))
            frame = self.call.audio.get_nowait()
        return True


class ScriptedCaller:
    """Plays prompts of ``script`` over calls from ``phone``; see the module docstring."""

    def __init__(self, phone: Phone, script_id: str = "post_service", *, values: Mapping[str, Any] | None = None,
                 library=None, scripts: Mapping[str, Any] | None = None) -> None:
        from dialog.prompts import PromptLibrary
        from dialog.script import SCRIPTS_DIR, load_scripts

        self.phone = phone
        self.library = library or PromptLibrary()
        self.scripts = scripts or load_scripts([SCRIPTS_DIR])
        self.script = self.scripts[script_id]
        self.values = {**DEFAULT_VALUES, **(values or {})}
        self._pcm: dict[str, tuple[str, bytes]] = {}

    def prompt(self, key: str) -> tuple[str, bytes]:
        """(text, PCM at the phone's rate) of a step's prompt or a shared prompt."""
        if key not in self._pcm:
            from dialog.prompts import render

            template = self.script.steps[key].say if key in self.script.steps else self.script.prompt(key)
            text, fragments = render(template, self.values, self.script.variables, self.library)
            self._pcm[key] = (text, self.library.pcm(fragments, self.phone.sample_rate))
        return self._pcm[key]

    def call(self, number: str, prompts: Sequence[str], *, greeting_wait: float = 2.5, reply_timeout: float = 8.0,
             gap: float = 0.3, ring_timeout: float = 30.0, hang_up: bool = True) -> ProbeResult:
        """Dial ``number`` and play ``prompts`` (step ids) in order, waiting for a reply after each.

        The first prompt follows the customer's first words (or ``greeting_wait`` of silence), each
        next one ``gap`` after the reply ended (or ``reply_timeout`` without one). Stops early if
        the customer hangs up.
        """
        for key in prompts:
            self.prompt(key)  # render before dialling: no conversion while the call is live
        call = self.phone.dial(number, ring_timeout=ring_timeout)
        out = ProbeResult(number, None)
        out.sip_call_id = getattr(call, "sip_call_id", "")
        try:
            if not call.wait_answered(timeout=ring_timeout + 5):
                out.result = call.wait_ended(timeout=10)
                return out
            ear = _Ear(call)
            deadline = time.monotonic() + greeting_wait
            while time.monotonic() < deadline or ear.speaking:
                if not ear.step():
                    break
            if ear.segments:
                out.greeting = ear.segments[0]
            for key in prompts:
                if call.ended:
                    break
                text, pcm = self.prompt(key)
                turn = ProbeTurn(key, text, ear.t, ear.t + len(pcm) / (2 * self.phone.sample_rate))
                before = len(ear.segments)
                playback = call.play_pcm(pcm, self.phone.sample_rate)
                alive = True
                while alive and not playback.done:
                    alive = ear.step(0.05)
                turn.prompt_end = ear.t
                if ear.speaking and ear.started is not None:
                    turn.reply_start = ear.started  # the customer talks over the prompt (barge-in)
                wait_until = time.monotonic() + reply_timeout
                while alive and (ear.speaking or (len(ear.segments) == before and time.monotonic() < wait_until)):
                    alive = ear.step()
                if len(ear.segments) > before:
                    start, end = ear.segments[before]
                    turn.reply_start, turn.reply_end = start, end
                out.turns.append(turn)
                if not alive:
                    break
                pause_until = time.monotonic() + gap
                while alive and time.monotonic() < pause_until:
                    alive = ear.step(0.02)
            if call.ended and out.hung_up_by_customer_at is None:
                out.hung_up_by_customer_at = ear.t
        finally:
            if hang_up and not call.ended:
                call.hangup()
            out.result = call.wait_ended(timeout=10)
            out.sip_call_id = getattr(call, "sip_call_id", "") or out.sip_call_id
        return out
