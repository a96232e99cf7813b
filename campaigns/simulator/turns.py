"""Turn-taking of a simulated customer: the robot's audio in, 20 ms at a time; what to do, out.

:class:`TurnTaker` is a pure state machine (no threads, no clock of its own, no telephony): the
call's thread feeds it every frame the robot sends (:meth:`TurnTaker.frame`, with the frame's time
since the answer) and tells it when our own playback ended (:meth:`TurnTaker.playback_done`); it
answers with actions (:class:`Speak`, :class:`StopSpeaking`, :class:`HangUp`) and keeps the list of
what it heard and said (:attr:`TurnTaker.events`) for the call log.

How it behaves, like a person on the phone:

* **pick-up**: says its ``hello`` ("喂，你好") 0.4 s after answering, unless the robot speaks
  first; an answering machine plays its greeting, a beep, then records in silence;
* **end of the robot's turn**: an energy VAD with a 0.6 s hang-over (robot speech is about
  -24 dBFS, silence on a G.711 line below -60) ends the robot's utterance; its last 1.9 s are
  matched against the robot's own prompt library (:mod:`campaigns.simulator.fingerprint`) to learn
  *which* question was asked. A pause inside a prompt (the shipped prompts have up to 0.7 s between
  clauses) matches a fragment that does not end the prompt: the customer keeps waiting;
* **answer**: the persona's line for that question (by question id, else by the dialog's answer
  context); a re-prompt or a re-ask gets the persona's next line for it (a list of answers, the last
  repeating; a single answer is said again), and unknown steps get a sensible one;
* **confirmation** (``{script}.{step}.confirm.{label}``, "跟您确认一下,……,对吗?"): ``对`` when the
  label is what the persona meant at that step (:meth:`campaigns.personas.PersonaBook.means`), else
  ``不是``, and the question asked again afterwards gets its next answer;
* **barge-in** (``barge_in`` personas): while the robot speaks, the audio so far is located every
  0.3 s; once the question is known and at most 1.5 s of it is left, the customer talks over it;
* **overlap**: if the robot talks over the customer for 1 s, the customer stops (a person yields);
* **endings**: after ``hang_up_after`` is answered it hangs up; after a goodbye it waits for the
  robot's BYE (6 s, 60 s for a transfer) and then hangs up itself; 30 s of robot silence end it.

Unrecognised audio (a prompt not in the library, a live agent after a transfer) is answered from
the script's step order: the next question of the last script recognised, or of ``fallback_script``.
"""

from __future__ import annotations

import collections
import enum
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaigns.personas import Answer, Persona, PersonaBook
from campaigns.simulator.fingerprint import (
    HOP,
    SILENCE_DB,
    SPAN,
    WINDOW,
    Match,
    PromptIndex,
    PromptKind,
    features,
    frame_db,
)

logger = logging.getLogger(__name__)

FRAME = HOP / 8000  # 20 ms
# Shared re-prompts that ask for the last answer again, whatever it answered (a confirmation
# included); "请您直接说一个一到五之间的分数" (no_match_score5 ...) asks the question itself again.
_ASK_AGAIN = frozenset({"no_match", "no_input", "no_match_yes_no", "repeat"})


@dataclass(frozen=True)
class Timing:
    """Seconds; defaults are what a person does on the phone (the issue asks for 0.5-0.8 s)."""

    hangover: float = 0.6  # silence that ends the robot's turn
    speech_start: float = 0.06  # voiced time before robot speech counts (a click is not speech)
    hello_delay: float = 0.4  # from the answer to "喂"
    mid_prompt_wait: float = 1.6  # more silence we allow when the audio stopped inside a prompt
    barge_lead: float = 1.5  # barge-in personas start talking when this much of the question is left
    barge_min_heard: float = 1.0  # ... and not before the robot spoke this long
    barge_check: float = 0.3  # how often the audio so far is located while the robot speaks
    yield_after: float = 1.0  # robot talking over us this long: we stop (not barge-in personas)
    hangup_delay: float = 0.3  # after our last words, before hanging up (hang_up_after)
    linger: float = 6.0  # after a goodbye, how long we wait for the robot's BYE
    linger_transfer: float = 60.0  # after "transferring you", how long we stay on the line
    idle: float = 30.0  # robot silent this long while we wait: hang up
    machine_record: float = 20.0  # an answering machine records this long after its beep


class State(str, enum.Enum):
    PICKUP = "pickup"  # answered; about to say hello
    LISTEN = "listen"  # waiting for / hearing the robot
    SPEAK = "speak"  # our line is playing
    MACHINE = "machine"  # answering machine: greeting, beep, recording
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Speak:
    """Play ``line`` (a persona's pre-rendered answer); ``pcm`` instead for generated audio (the beep)."""

    key: str  # question id, "hello", "greeting", "default", "beep"
    line: Answer | None = None
    question: str | None = None
    pcm: bytes | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StopSpeaking:
    reason: str


@dataclass(frozen=True, slots=True)
class HangUp:
    reason: str


def beep(seconds: float = 0.4, freq: float = 1000.0, rate: int = 8000) -> bytes:
    """The voicemail beep: a 1 kHz tone at -12 dBFS."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.25 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


class TurnTaker:
    """One simulated customer's side of one call; see the module docstring.

    Args:
        persona: who answers.
        book: the personas file (answers by question and by context).
        index: fingerprints of the robot's prompts.
        timing: the behaviour's constants.
        fallback_script: the script assumed before any prompt was recognised.
    """

    BUFFER_FRAMES = SPAN * WINDOW + 64  # the audio kept for locating: 3 windows plus the hang-over

    def __init__(self, persona: Persona, book: PersonaBook, index: PromptIndex, *, timing: Timing | None = None,
                 fallback_script: str = "post_service", call_id: str = "") -> None:
        self.persona = persona
        self.book = book
        self.index = index
        self.timing = timing or Timing()
        self.fallback_script = fallback_script
        self.call_id = call_id
        self.state = State.PICKUP
        self.events: list[dict[str, Any]] = []
        self.questions: list[str] = []  # questions recognised, in order (re-asks included)
        self.script: str | None = None  # the robot's script, once a prompt unique to one was heard
        self.hung_up = False
        # robot VAD
        self._frames: collections.deque[tuple[float, bytes, bool]] = collections.deque(maxlen=self.BUFFER_FRAMES)
        self._voiced_run = 0
        self._robot_speaking = False
        self._utt = 0  # utterances of the robot so far
        self._utt_start = 0.0
        self._last_voiced = 0.0
        self._last_activity = 0.0
        self._next_barge_check = 0.0
        self._answered_utt = -1  # the utterance our current/last answer answered (barge-in)
        # decisions pending
        self._hello_at: float | None = None
        self._decide_at: float | None = None  # end of a pause inside a prompt: decide then
        self._pending_match: Match | None = None  # what the audio before that pause matched
        self._hangup_at: float | None = None
        self._hangup_reason = ""
        self._hangup_polite = False  # wait until the robot is quiet (it may ask something after all)
        self._deferred: tuple[float, Match | None] | None = None  # an utterance that ended while we spoke
        # what we are saying
        self._speaking: Speak | None = None
        self._speak_started = 0.0
        self._overlap = 0.0
        self._question: str | None = None  # the question being answered / last answered
        self._context: str | None = None
        self._asked: dict[str, int] = {}
        self._confirming: tuple[str, str] | None = None  # (step, label) of the confirmation last answered
        self._near: Match | None = None  # the best match below the bar of the last unplaced utterance
        self._transferred = False  # the robot said it is transferring: a person waits for the agent

    # -- input -------------------------------------------------------------------------------------
    def answered(self, t: float = 0.0) -> list:
        """The call was answered (we picked up)."""
        self._last_activity = t
        if self.persona.greeting is not None:
            self.state = State.MACHINE
            return self._speak(t, Speak("greeting", self.persona.greeting, reason="answering machine"))
        self.state = State.PICKUP
        if self.persona.hello is not None:
            self._hello_at = t + self.timing.hello_delay
        else:
            self.state = State.LISTEN
        return []

    def frame(self, pcm: bytes, t: float) -> list:
        """20 ms of the robot's audio ending at ``t`` seconds after the answer."""
        if self.state is State.DONE:
            return []
        db = frame_db(pcm)
        voiced = db > SILENCE_DB
        self._frames.append((t, pcm, voiced))
        out: list = []
        if voiced:
            self._voiced_run += 1
            self._last_voiced = t
            self._last_activity = t
            if not self._robot_speaking and self._voiced_run * FRAME >= self.timing.speech_start - 1e-9:
                out += self._robot_started(t)
        else:
            self._voiced_run = 0
            if self._robot_speaking and t - self._last_voiced >= self.timing.hangover - 1e-9:
                out += self._robot_stopped(t)
        if self._robot_speaking:
            out += self._while_robot_speaks(t)
        out += self._timers(t)
        return out

    def playback_done(self, t: float, interrupted: bool = False) -> list:
        """Our line finished (or was stopped)."""
        speak = self._speaking
        if speak is None or self.state is State.DONE:
            return []
        self._speaking = None
        self._last_activity = t
        self._event(t, "said_end", key=speak.key, interrupted=interrupted, started=round(self._speak_started, 2))
        if self.state is State.MACHINE:
            if speak.key == "greeting":
                return self._speak(t, Speak("beep", pcm=beep(), reason="answering machine"))
            self._set_hangup(t + self.timing.machine_record, "answering machine recorded for "
                             f"{self.timing.machine_record:g} s")
            return []
        self.state = State.LISTEN
        if speak.key not in ("hello", "beep") and speak.question and speak.question == self.persona.hang_up_after:
            self._set_hangup(t + self.timing.hangup_delay, f"hangs up after answering {speak.question}")
            return []
        if self._deferred is not None:
            at, match = self._deferred
            self._deferred = None
            return self._decide(t, match, at, settled=True)
        return []

    def tick(self, t: float) -> list:
        """Time passed without frames (the robot's RTP paused): run the timers."""
        return [] if self.state is State.DONE else self._timers(t)

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    # -- the robot's voice ---------------------------------------------------------------------------
    def _robot_started(self, t: float) -> list:
        out: list = []
        resumed = self._decide_at is not None
        self._robot_speaking = True
        self._decide_at = None
        if not resumed:
            self._utt += 1
            self._utt_start = t - self._voiced_run * FRAME
            self._next_barge_check = self._utt_start + self.timing.barge_min_heard
            self._overlap = 0.0
        if self.state is State.PICKUP:
            self._hello_at = None  # the robot spoke first: no "喂"
            self.state = State.LISTEN
        return out

    def _robot_stopped(self, t: float) -> list:
        self._robot_speaking = False
        if self.state is State.MACHINE:
            match = self._locate(self._last_voiced)
            self._event(t, "recorded", start=round(self._utt_start, 2), end=round(self._last_voiced, 2),
                        prompt=self._prompt_id(match))
            return []
        if self._utt == self._answered_utt:
            return []  # the question we barged in on: the robot has stopped (or finished) it
        match = self._locate(self._last_voiced)
        self._near = self._locate(self._last_voiced, 0.0) if match is None else None
        if self.state is State.SPEAK:
            self._deferred = (self._last_voiced, match)  # decide once our line is over
            return []
        if match is None or not match.ends_prompt():
            # A pause inside a prompt, or audio we cannot place (a variable part, a prompt we do
            # not know): wait a little longer before deciding.
            self._decide_at = t + self.timing.mid_prompt_wait
            self._pending_match = match
            return []
        return self._decide(t, match, self._last_voiced)

    def _while_robot_speaks(self, t: float) -> list:
        out: list = []
        if self.state is State.SPEAK and self._speaking is not None:
            self._overlap += FRAME
            if not self.persona.barge_in and self._overlap >= self.timing.yield_after - 1e-9:
                self._event(t, "yielded", key=self._speaking.key)
                out.append(StopSpeaking("the robot talks over us"))
                self._speaking = None
                self.state = State.LISTEN
            return out
        if (self.persona.barge_in and self.state is State.LISTEN and t >= self._next_barge_check
                and self._utt != self._answered_utt):
            self._next_barge_check = t + self.timing.barge_check
            match = self._locate(t)
            if match is not None and match.fragment.final and match.remaining <= self.timing.barge_lead:
                refs = self.index.refs(match, self.script)
                if refs and refs[0].kind in (PromptKind.QUESTION, PromptKind.REPROMPT):
                    return self._decide(t, match, t, barged=True)
        return out

    def _timers(self, t: float) -> list:
        out: list = []
        if self._hello_at is not None and t >= self._hello_at and self.state is State.PICKUP:
            self._hello_at = None
            out += self._speak(t, Speak("hello", self.persona.hello, reason="picks up"))
        if self._decide_at is not None and t >= self._decide_at and not self._robot_speaking:
            self._decide_at = None
            match = getattr(self, "_pending_match", None)
            if self.state is State.SPEAK:
                self._deferred = (self._last_voiced, match)
            else:
                out += self._decide(t, match, self._last_voiced, settled=True)
        if self._hangup_at is not None and t >= self._hangup_at and not (
                self._hangup_polite and (self._robot_speaking or self._decide_at is not None)):
            out.append(self._hang_up(t, self._hangup_reason))
        elif (self.state is State.LISTEN and not self._robot_speaking and self._hangup_at is None
              and t - self._last_activity >= self.timing.idle):
            out.append(self._hang_up(t, f"the robot was silent for {self.timing.idle:g} s"))
        return out

    # -- deciding ------------------------------------------------------------------------------------
    def _locate(self, end: float, min_score: float | None = None) -> Match | None:
        pcm = b"".join(p for (ft, p, _v) in self._frames if ft <= end + 1e-9)
        if len(pcm) < WINDOW * HOP * 2:
            return None
        feats = features(pcm)
        if min_score is None:
            return self.index.locate(feats[-(SPAN * WINDOW):])
        return self.index.locate(feats[-(SPAN * WINDOW):], min_score)

    def _prompt_id(self, match: Match | None) -> str | None:
        if match is None:
            return None
        refs = self.index.refs(match, self.script)
        return refs[0].prompt_id if refs else None

    def _decide(self, t: float, match: Match | None, end: float, *, barged: bool = False,
                settled: bool = False) -> list:
        """The robot finished (or, barging in, is finishing) a turn: what do we do?"""
        heard = {"start": round(self._utt_start, 2), "end": round(end, 2)}
        if match is None:
            near = self._near  # for the log: what the audio was closest to, below the bar
            if near is not None:
                refs = self.index.refs(near, self.script) or near.fragment.inner
                heard.update(nearest=refs[0].prompt_id if refs else None, nearest_score=round(near.score, 3),
                             nearest_margin=round(near.margin, 3))
            return self._unrecognised(t, heard)
        refs = self.index.refs(match, self.script)
        if not refs:
            if not settled:
                return []
            # The robot stopped inside a prompt and stayed silent: the prompt is known all the same.
            refs = tuple(sorted(match.fragment.inner, key=lambda r: r.script != self.script))
            if not refs:
                return self._unrecognised(t, heard, match)
        ref = refs[0]
        confirms = [r for r in refs if r.kind is PromptKind.CONFIRM]
        if confirms:
            # One sentence may confirm an answer to any step ("……以后不再给您打电话,对吗?"), and a
            # shared prompt of the same text is listed as a statement too: the step just answered.
            ref = next((r for r in confirms if r.step == self._question), confirms[0])
        scripts = {r.script for r in refs}
        if len(scripts) == 1:
            self.script = ref.script
        self._event(t, "heard", prompt=ref.prompt_id, prompt_kind=ref.kind.value, step=ref.step, score=round(match.score, 3),
                    margin=round(match.margin, 3), complete=match.ends_prompt(), barged=barged, **heard)
        if ref.kind is PromptKind.END:
            self._transferred = ref.action == "transfer"
            linger = self.timing.linger_transfer if self._transferred else self.timing.linger
            self._set_hangup(t + linger, f"the robot said goodbye ({ref.key}) but did not hang up in {linger:g} s",
                             polite=True)
            return []
        if ref.kind is PromptKind.STATEMENT:
            return []
        if ref.kind is PromptKind.CONFIRM and ref.step is not None:
            return self._confirm(t, ref.step, ref.context, ref.label or "", barged=barged)
        if ref.kind is PromptKind.REPROMPT and ref.step is None and self._confirming is not None \
                and ref.key in _ASK_AGAIN:
            # "请您回答是或者不是", "没有听清楚,麻烦您再说一遍" after a confirmation: say it again.
            return self._confirm(t, *self._confirming_args(), barged=barged)
        self._confirming = None
        if ref.kind is PromptKind.REPROMPT and ref.step is None:
            question, context = self._question, self._context  # "please say a number 1-5": the same question
            if question is None:
                return []
        else:
            question, context = ref.step, ref.context
        return self._answer(t, question, context, barged=barged)

    def _confirming_args(self) -> tuple[str, str | None, str]:
        step, label = self._confirming
        return step, self._context, label

    def _confirm(self, t: float, step: str, context: str | None, label: str, *, barged: bool = False) -> list:
        """The robot restated an answer (``label``) to ``step``: yes if that is what we meant, else no."""
        if self._hangup_at is not None and not self.hung_up and self.state is not State.MACHINE:
            self._hangup_at = None
        meant = self.book.means(self.persona, step, context)
        yes = label in meant
        self._confirming = (step, label)
        self._question, self._context = step, context or self._context
        self.questions.append(f"{step}.confirm.{label}")
        self._answered_utt = self._utt
        line = self.persona.confirm_yes if yes else self.persona.confirm_no
        if line is None:
            self._event(t, "silent", question=step, confirm=label)
            return []
        reason = f"confirm {label}: {'yes' if yes else 'no'}" + (" (barge-in)" if barged else "")
        return self._speak(t, Speak(line.key, line, question=step, reason=reason))

    def _unrecognised(self, t: float, heard: dict, match: Match | None = None) -> list:
        if self._transferred:
            # An agent (or hold music) after "正在为您转接": the persona has nothing scripted to say.
            self._event(t, "heard", prompt=None, prompt_kind="after_transfer", **heard)
            return []
        question, context = self._guess_next()
        self._event(t, "heard", prompt=None, prompt_kind="unrecognised", step=question,
                    score=round(match.score, 3) if match else None, guessed=True, **heard)
        if question is None:
            return []
        return self._answer(t, question, context, guessed=True)

    def _guess_next(self) -> tuple[str | None, str | None]:
        """The question the script's step order says comes next (fallback for unknown audio)."""
        script = self.index.scripts.get(self.script or self.fallback_script)
        if script is None:
            return (self._question, self._context)
        if self._question is None or self._question not in script.steps:
            step = script.steps.get(script.start)
            return (step.id, step.context) if step is not None and not step.terminal else (None, None)
        step = script.steps[self._question]
        # A score question branches on the score: the branch of the score this persona meant first.
        scores = [int(x) for x in self.book.means(self.persona, step.id, step.context) if x.isdigit()]
        branches = sorted(step.branches, key=lambda br: not any(br.matches(v) for v in scores))
        candidates = [step.on.get("affirm"), step.goto, *(br.goto for br in branches), step.on.get("deny")]
        steps = [script.steps[c] for c in candidates if c and c in script.steps]
        questions = [s for s in steps if not s.terminal and s.expect != "none"]
        own = [s for s in questions if s.id in self.persona.answers]
        pick = (own or questions or [None])[0]
        return (pick.id, pick.context) if pick is not None else (None, None)

    def _answer(self, t: float, question: str, context: str | None, *, barged: bool = False,
                guessed: bool = False) -> list:
        if self._hangup_at is not None and not self.hung_up and self.state is not State.MACHINE:
            self._hangup_at = None  # the robot asked something after all: stay
        self._question, self._context = question, context
        self.questions.append(question)
        self._asked[question] = self._asked.get(question, 0) + 1
        self._answered_utt = self._utt
        line = self.book.answer(self.persona, question, context, attempt=self._asked[question] - 1)
        if line is None:
            self._event(t, "silent", question=question)
            return []
        reason = "barge-in" if barged else "guessed" if guessed else ""
        return self._speak(t, Speak(question, line, question=question, reason=reason))

    def _speak(self, t: float, speak: Speak) -> list:
        self._speaking = speak
        self._speak_started = t
        self._overlap = 0.0
        if self.state is not State.MACHINE:
            self.state = State.SPEAK
        self._event(t, "said", key=speak.key, question=speak.question,
                    text=speak.line.text if speak.line is not None else None, reason=speak.reason or None)
        return [speak]

    def _set_hangup(self, at: float, reason: str, *, polite: bool = False) -> None:
        self._hangup_at = at
        self._hangup_reason = reason
        self._hangup_polite = polite

    def _hang_up(self, t: float, reason: str) -> HangUp:
        self.hung_up = True
        self.state = State.DONE
        self._hangup_at = None
        self._event(t, "hung_up", reason=reason)
        return HangUp(reason)

    def _event(self, t: float, kind: str, **data: Any) -> None:
        self.events.append({"t": round(t, 2), "kind": kind, **{k: v for k, v in data.items() if v is not None}})
