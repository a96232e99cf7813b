"""One simulated customer taking one call: persona by number, SIP behaviour, turn-taking, call log.

:class:`SimulatedCall` runs on the call's own thread (the bank starts one per incoming call): it
picks the persona of the dialled number, rings, answers, rejects or lets the call ring out as the
persona says, then feeds the robot's frames to a :class:`~campaigns.simulator.turns.TurnTaker`
and executes what it decides (play a line, stop, hang up) through the call's thread-safe
:class:`~callcenter.telephony.IncomingCall` API. When the call is over it writes the call log:
``<log_dir>/<call_id>.json`` (see :func:`call_log` for the fields), written whole and renamed
into place so that a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from callcenter.domain.phone import mask_phone
from callcenter.telephony import IncomingCall, MediaFileError, TelephonyError
from campaigns.personas import Persona, PersonaBook
from campaigns.simulator.fingerprint import PromptIndex
from campaigns.simulator.turns import FRAME, HangUp, Speak, StopSpeaking, Timing, TurnTaker

logger = logging.getLogger(__name__)

REJECT_CODES = {"busy": 486, "reject": 603, "unavailable": 480, "not_found": 404}
NO_PERSONA_CODE = 404  # a number no persona answers (the file has no default): "no such number"


class SimulatedCall:
    """Conducts one incoming call for a persona; see the module docstring.

    Args:
        call: the incoming call (unanswered).
        book: personas by number.
        index: fingerprints of the robot's prompts.
        log_dir: where the call log goes (None: no file).
        timing: turn-taking constants.
        fallback_script: the script assumed until a prompt was recognised.
        worker: the simulator process's name, for the log.
    """

    def __init__(self, call: IncomingCall, book: PersonaBook, index: PromptIndex, *, log_dir: Path | None = None,
                 timing: Timing | None = None, fallback_script: str = "post_service", worker: str = "") -> None:
        self.call = call
        self.book = book
        self.index = index
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.timing = timing or Timing()
        self.fallback_script = fallback_script
        self.worker = worker
        self.persona: Persona | None = None
        self.turns: TurnTaker | None = None
        self.error: str | None = None
        self._playback = None
        self._cpu = 0.0

    def run(self) -> dict[str, Any]:
        """Take the call to its end; returns the call log (also written to ``log_dir``)."""
        cpu0 = time.thread_time()
        call = self.call
        try:
            try:
                self.persona = self.book.for_number(call.dialled)
            except KeyError:
                self.error = "no persona answers this number"
                logger.warning("call %s: no persona for %s: %d", call.call_id, call.dialled_masked, NO_PERSONA_CODE)
                call.reject(NO_PERSONA_CODE)
            else:
                self._conduct(self.persona)
        except TelephonyError as exc:
            # The caller hung up between our decision and our command (e.g. cancelled while we
            # answered): the call is over, nothing else is wrong.
            if not call.ended:
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("call %s: %s", call.call_id, exc)
                call.hangup()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("call %s: simulated customer failed", call.call_id)
            if not call.ended:
                call.hangup()
        finally:
            call.wait_ended(timeout=15)
            self._cpu = time.thread_time() - cpu0
        log = call_log(self)
        if self.log_dir is not None:
            try:
                write_call_log(self.log_dir, log)
            except OSError as exc:
                logger.error("call %s: cannot write the call log to %s: %s", call.call_id, self.log_dir, exc)
        return log

    # -- the call ----------------------------------------------------------------------------------
    def _conduct(self, persona: Persona) -> None:
        call = self.call
        logger.info("call %s: %s answers %s (%s)", call.call_id, persona.id, call.dialled_masked, persona.sip)
        if persona.sip in REJECT_CODES:
            call.reject(REJECT_CODES[persona.sip])
            return
        call.ring()
        if persona.sip == "no_answer":
            call.wait_ended()  # ring until the caller gives up (or the phone's ring limit: 480)
            return
        if call.wait_ended(timeout=persona.ring_seconds) is not None:
            return  # the caller gave up while it rang
        call.answer()
        if not call.wait_answered(timeout=10):
            return
        self._talk(persona)

    def _talk(self, persona: Persona) -> None:
        call = self.call
        turns = self.turns = TurnTaker(persona, self.book, self.index, timing=self.timing,
                                       fallback_script=self.fallback_script, call_id=call.call_id)
        answered = time.monotonic()
        self._execute(turns.answered(0.0))
        audio = call.audio
        while not turns.done:
            frame = audio.get(timeout=0.2)
            if frame is None:
                if audio.finished or call.ended:
                    break
                self._execute(turns.tick(time.monotonic() - answered))  # the robot's RTP paused
                continue
            t = frame.timestamp + FRAME
            pb = self._playback
            if pb is not None and pb.done:
                self._playback = None
                self._execute(turns.playback_done(t, pb.interrupted))
            self._execute(turns.frame(frame.audio, t))

    def _execute(self, actions: list) -> None:
        call = self.call
        for action in actions:
            if isinstance(action, Speak):
                try:
                    if action.pcm is not None:
                        self._playback = call.play_pcm(action.pcm, 8000)
                    elif action.line is not None:
                        self._playback = call.play(action.line.audio)
                except MediaFileError as exc:
                    logger.error("call %s: cannot play %s: %s", call.call_id, action.key, exc)
                    self.error = f"audio of {action.key}: {exc}"
            elif isinstance(action, StopSpeaking):
                call.stop_playback()
                self._playback = None
            elif isinstance(action, HangUp):
                logger.info("call %s: hanging up (%s)", call.call_id, action.reason)
                call.hangup()


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


def call_log(sim: SimulatedCall) -> dict[str, Any]:
    """The call log of a finished :class:`SimulatedCall`.

    Fields: ``call_id``, ``sip_call_id`` (the SIP Call-ID, the same on the robot's side),
    ``worker``, ``number`` (dialled, masked), ``caller`` (masked URI), ``persona``, ``sip``,
    ``invite_at`` / ``answered_at`` / ``ended_at`` (ISO 8601 UTC), ``disposition``, ``sip_code``,
    ``reason``, ``hangup_by``, ``script`` (recognised), ``questions`` (recognised, in order),
    ``answers`` (``question``, ``key``, ``text``, ``start``, ``end``, ``interrupted``, ``reason``:
    seconds after the answer), ``events`` (everything heard and said, ``t`` seconds after the
    answer), ``cpu_seconds`` (this call's thread), ``frames_received``, ``frames_lost``, ``error``.
    """
    call = sim.call
    result = call.result
    turns = sim.turns
    events = list(turns.events) if turns is not None else []
    answers, open_lines = [], {}
    for e in events:
        if e["kind"] == "said":
            open_lines[e["key"]] = {"question": e.get("question"), "key": e["key"], "text": e.get("text"),
                                    "start": e["t"], "end": None, "interrupted": None, "reason": e.get("reason")}
            answers.append(open_lines[e["key"]])
        elif e["kind"] == "said_end" and e["key"] in open_lines:
            line = open_lines.pop(e["key"])
            line["end"], line["interrupted"] = e["t"], e.get("interrupted", False)
    for line in open_lines.values():
        line["interrupted"] = True  # the call ended (or we yielded) while it played
    return {
        "call_id": call.call_id,
        "sip_call_id": getattr(call, "sip_call_id", ""),
        "worker": sim.worker,
        "number": mask_phone("".join(c for c in call.dialled if c.isdigit())) or call.dialled_masked,
        "caller": call.target,
        "persona": sim.persona.id if sim.persona else None,
        "sip": sim.persona.sip if sim.persona else None,
        "invite_at": _iso(result.invite_at) if result else None,
        "answered_at": _iso(result.answered_at) if result else None,
        "ended_at": _iso(result.ended_at) if result else None,
        "disposition": result.disposition.value if result else None,
        "sip_code": result.sip_code if result else None,
        "reason": result.reason if result else None,
        "hangup_by": result.hangup_by.value if result else None,
        "script": turns.script if turns else None,
        "questions": list(turns.questions) if turns else [],
        "answers": [a for a in answers if a["key"] not in ("beep",)],
        "events": events,
        "cpu_seconds": round(sim._cpu, 4),
        "frames_received": result.frames_received if result else 0,
        "frames_lost": result.frames_lost if result else 0,
        "error": sim.error,
    }


def write_call_log(log_dir: Path, log: dict[str, Any]) -> Path:
    """Write ``log`` to ``<log_dir>/<call_id>.json`` atomically (temporary file, then rename)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{log['call_id']}.json"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=log_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(log, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_call_logs(log_dir: Path | str, *, sip_call_id: str | None = None, persona: str | None = None
                   ) -> list[dict[str, Any]]:
    """The call logs in ``log_dir`` (oldest first), optionally only one SIP Call-ID or persona.

    For the end-to-end tests: the robot's ``CallResult.sip_call_id`` finds the customer's side.
    """
    out = []
    for path in Path(log_dir).glob("*.json"):
        try:
            log = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # being replaced right now, or not ours
        if sip_call_id is not None and log.get("sip_call_id") != sip_call_id:
            continue
        if persona is not None and log.get("persona") != persona:
            continue
        out.append(log)
    return sorted(out, key=lambda log: log.get("invite_at") or "")
