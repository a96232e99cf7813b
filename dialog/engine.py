"""The revisit conversation: one state machine per call, events in, actions out.

``Conversation(script, values, nlu, ...)`` follows a :class:`~dialog.script.Script`. The call
runner calls :meth:`Conversation.start` when the callee answers and :meth:`Conversation.handle`
with every event (transcripts partial and final, DTMF, playback finished, timers, hang-up); each
call returns the actions to execute, in order (:mod:`dialog.actions` documents the contract).

What it does besides following the steps:

* **answering machines**: it first listens ``greeting_seconds`` for the callee's "喂"; a machine
  greeting, an IVR, a carrier announcement or a long monologue ends the call (:mod:`dialog.amd`);
* **barge-in**: speech over a prompt that allows it stops the prompt (partials trigger it; the
  recognizer is told the step's grammar before the prompt plays, so the answer is understood);
* **silence and no-match**: re-prompts (default 2 each), then a polite ending;
* **global intents**: opting out, wrong number, asking for a human, "call me later", at any step;
* **feedback**: free-text answers are classified; problem categories open one ticket each for
  their department; a score of 1-2 without a stated reason opens a CRM ticket;
* **time limit**: ``max_call_seconds``, then a polite ending.

Single-threaded by design: the runner calls it from the call's own thread, one event at a time.
The NLU and classifier it is given may be shared with other calls (see their thread notes).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from callcenter.domain import (
    OTHER_CHOICE,
    ChoiceScore,
    Department,
    DtmfEvent,
    FeedbackCategory,
    Intent,
    Speaker,
    TranscriptEvent,
)
from dialog.actions import (
    OUTCOME_END,
    AddToDnc,
    CallAnswered,
    CallEnd,
    CallOutcome,
    CancelTimer,
    CustomerHungUp,
    Finish,
    HangUp,
    Listen,
    PlaybackFinished,
    RecordAnswer,
    Say,
    ScheduleCallback,
    StartTimer,
    StopSpeaking,
    TimerFired,
    Transfer,
    TransferConnected,
    TransferFailed,
)
from dialog.amd import classify_greeting
from dialog.answers import CLOSED_EXPECTS, choices_for, decide, text_label, words_doubted
from dialog.classifier import Classification
from dialog.conclusions import (
    ProblemLedger,
    after_concession,
    complaint_after_yes,
    conceded,
    reason_beside_score,
    refine_tags,
    store_not_at_fault,
)
from dialog.nlu import Nlu, NluResult, explicit_score, scores_said, without_scores
from dialog.prompts import PromptLibrary, render
from dialog.script import Script, Step
from dialog.text import is_cjk

logger = logging.getLogger(__name__)

# A speech-start partial with no text yet must last this long before it counts as the customer
# talking over a prompt: a cough or a door in the background should not cut the robot off.
BARGE_IN_MIN_SECONDS = 0.5
# An answer to an open question often comes in pieces ("等的时间太长了" ... "说好一个小时"): the
# recognizer ends an utterance after 0.8 s of silence (CALLCENTER_ASR_END_SILENCE_MS), so a final
# result at a free-text step is held this much longer for more before it is understood; a new
# speech start extends the hold. (0.8 s on top of 0.8 s made open answers wait 1.6 s of silence.)
TURN_HOLD_SECONDS = 0.5
TURN_HOLD_SPEECH_SECONDS = 4.0
# Held too: scores ("满意，给五分吧" came as "满意" / "给五分吧": the first piece alone is a 4) and
# any one-character piece at any step (a fragment the recognizer cut off: "请" / "认" / "您五分吧").
HELD_ANSWERS = ("text", "reason", "score5", "nps")  # the customer went on talking: wait for that utterance's result
# ... except a good score said as a number ("挺满意的，给五分吧"): that answer is complete, and the
# hold was a third of the reply time. A low score is still held: its reason usually follows.
UNHELD_SCORES = {"score5": (5, 4), "nps": (10, 9)}  # expect -> (scale top, lowest score not held)
# Speech started during the greeting and no words came for this long: a recorded greeting. (A
# greeting's words, when they come, name a machine sooner; 8 s hung up on people whose 喂,你好 a busy
# recognizer had not delivered yet: demo run 14.)
GREETING_SPEECH_WAIT_SECONDS = 14.0
# The customer started talking (speech detected, no text yet): the silence timer gives them this
# much more time, so a slow recognition does not trigger "您还在听吗" over their answer.
SPEECH_GRACE_SECONDS = 8.0
GREETING = "__greeting__"
# An answer the robot would act on irreversibly (end the revisit, opt out, wrong number, open a
# complaint from a "no") is confirmed first when the understanding is less sure than this and no
# high-precision phrase rule decided it.
CONFIRM_BELOW = 0.85
# An opt-out phrase inside words the intent model gives less than this to opting out is restated first
# (the phrase may be part of feedback, or a misheard word); the model agreeing, it is acted on at once.
RULE_OPT_OUT_AGREES = 0.2
# The model's reading needed to leave the survey for a human or a callback from an open question
# (and for a callback from a yes/no question of the survey).
OFF_SCRIPT_IN_TEXT = 0.7
YES_NO_INTENTS = (Intent.AFFIRM.value, Intent.DENY.value, Intent.COMPLAINT.value)
# An utterance at least this long that the recognizer could not turn into words was the customer
# talking (a mumble, a word lost on the line): "not understood", never "are you still there?".
UNUSABLE_SPEECH_SECONDS = 0.15  # a bare "三分" was cut to 0.22 s by the VAD
# Closed questions whose answer can be skipped when it cannot be understood after the re-prompts:
# the call goes on without the answer instead of ending (everything after it would be lost).
SKIPPABLE = ("score5", "nps", "text", "reason")
# The audio's best expected answer contradicts the words' reading with at least this probability:
# neither is trusted and the customer is asked again.
AUDIO_RIVAL = 0.3
# A score answer neither the words nor the audio were sure of is restated as the audio's likeliest
# score when its share of the audio is at least this (else the question is asked again); after a "no"
# to a restated score, the next likeliest is asked about when its share is at least RUNNER_UP_FROM.
# Both chosen on the closed-answer tuning clips (bench/data/closed, split tune).
SCORE_GUESS_FROM = 0.3
RUNNER_UP_FROM = 0.2
# NLU rules that read a whole yes/no sentence (a double negation, a denied fault, an answer that
# leads with its yes, a confirmed identity): the audio's scores of the short answers do not overrule them.
READS_THE_WHOLE_ANSWER = ("double negation", "negated fault", "leading yes", "identity confirmed", "goes ahead")
# Declining the survey in so many words, even after confirming who one is.
DECLINES = re.compile(r"(回访|调查|问卷|评价)(就)?(算了|不用了|不做了|免了)|不(用|需要|想|做|接受)(做)?(回访|调查|问卷|评价)"
                      r"|没(什么|啥)好(说|聊|评价)的|不想(回答|参加|配合)|就算了吧")
# Someone else picked up the customer's phone (a relative, a colleague), or says the customer is away.
SOMEONE_ELSE = re.compile(
    r"我是(他|她)(的)?(老婆|爱人|媳妇|妻子|太太|老公|丈夫|先生|儿子|女儿|闺女|妈|妈妈|爸|爸爸|父亲|母亲|家人|家属"
    r"|哥|哥哥|姐|姐姐|弟|弟弟|妹|妹妹|朋友|同事|司机|秘书|助理)"
    r"|(他|她)(现在|这会儿?|今天)?(不在|出差|出去了|上班去了|在上班|没在)|不在(家|身边|旁边)|手机(落|放)在")
# ... and says they are the one who uses the car or brought it in: they can answer the revisit.
USES_THE_CAR = re.compile(r"车(是|一直是|平时是|都是)我(在)?(开|用)|我(平时)?(在)?开(的|这辆|这台)|我(去|送|开)(去)?(的|保养|修)"
                          r"|我去(店里|4s|你们那)|是我(去|送|开)|(一直|平时|都|主要)是我(在)?(开|用)")
# Whoever answers offers to take the questions ("有什么你问我吧", "跟我说就行"): go on with them, whether
# or not the words about the car owner came through ("她上班去了" heard as "他上班起了").
OFFERS_TO_ANSWER = re.compile(r"(你|您)(就)?(问|跟|和)我(说)?(吧|就行|就好|也行|.?一样)|(问|跟|和)我(说)?(就行|就好|也行|.?一样)"
                              r"|我(来|替(他|她)|帮(他|她))(回答|答|说)")
YES_NO_GRAMMAR = ("是", "是的", "对", "对的", "没错", "嗯", "不是", "不对", "不是的", "没有")
# How a confirmation is answered, per label, tried in order (the first match decides). The restated
# sentences are negative ("您现在不方便……,对吗?"), so agreeing may repeat the negative ("不方便",
# "没洗") and "不是" may disagree or agree ("不是我" to "您不是车主本人吗"): each label has its own.
_YES, _NO = True, False
CONFIRM_ANSWERS: dict[str, tuple[tuple[re.Pattern, bool], ...]] = {
    "declined": ((re.compile(r"不方便|没空|没时间|不用了|不要了|不需要|在忙|算了"), _YES),
                 (re.compile(r"^(不是|不对)|方便|可以|你说|没事|问吧|说吧"), _NO),
                 (re.compile(r"^(对|是|嗯|没错|确实)"), _YES)),
    "wrong_number": ((re.compile(r"不是我|我不是|打错|不认识|没这个人|^(对|嗯|没错|是的)[啊呀的,.。!\s]*$"), _YES),
                     (re.compile(r"是我|我就是|^我是|本人|^不对"), _NO)),
    "opt_out": ((re.compile(r"^(不是|不对)|可以打|没关系|没说|不是这个意思"), _NO),
                (re.compile(r"^(对|是|嗯|没错)|别.{0,2}打|不要.{0,3}打|不用.{0,3}打|别再|拉黑"), _YES)),
    "no": ((re.compile(r"^(不是|不对)|洗了|洗过|准时|按时|讲了|讲过|有的|有啊|提前|都有"), _NO),
           (re.compile(r"^(对|是|嗯|没错|确实)|^没(有)?|没洗|晚了|没讲|没有讲"), _YES)),
    "complaint": ((re.compile(r"^(不是|不对|没有|没)|没有?不满意|(挺|都|很|蛮)(好|满意)|误会|夸"), _NO),
                  (re.compile(r"^(对|是|嗯|没错|确实|有)|不满意|希望.{0,6}改"), _YES)),
}
CONFIRM_CHOICES = choices_for(SimpleNamespace(expect="yes_no", grammar=None))
# The model's "yes" to a confirmation, when no phrase said it plainly, must be at least this sure: a
# misheard 不是 came back as 无事 (affirm 0.64) and recorded the score the customer had just denied.
CONFIRM_YES_FROM = 0.75
# ... and its "no": "对，是的" heard as 谢谢谢谢 read as a no at 0.49 ruled out the score the customer had
# just confirmed. A guess either way is asked again.
CONFIRM_NO_FROM = 0.6
# A reply to a restated score or problem: doubted words the audio's other answer scores at least
# this are not acted on; an acoustic "no" at least this sure is a no (tune personas' 对,是的 / 不是
# clips: the "no" replies read right 21 -> 28 of 36, no "yes" reply read as a no).
CONFIRM_AUDIO_RIVAL = 0.6
CONFIRM_AUDIO_NO_FROM = 0.6
CONFIRM_SCORE = ((re.compile(r"^(不是|不对|错了|不)"), _NO), (re.compile(r"^(对|是|嗯|没错|没问题|对的)"), _YES))
# Listeners say these while the other side talks; they are not an interruption.
_BACKCHANNEL = re.compile(r"^[嗯啊哦噢呃对好是哈]{1,3}[,.。!?\s]*$")

DEFAULT_GRAMMAR: dict[str, tuple[str, ...]] = {
    "identity": ("是", "是的", "是我", "对", "对的", "你说", "方便", "可以", "不是", "不方便", "没空", "打错了",
                 "在开车", "在开会", "晚点再打"),
    "yes_no": ("是", "是的", "对", "有", "有的", "洗了", "准时", "没有", "不是", "没洗", "晚了", "不记得了"),
    "score5": ("一分", "两分", "二分", "三分", "四分", "五分", "一", "二", "三", "四", "五", "非常满意", "满意",
               "比较满意", "一般", "还行", "不满意", "非常不满意"),
    "nps": ("零分", "一分", "两分", "三分", "四分", "五分", "六分", "七分", "八分", "九分", "十分", "满分", "不推荐",
            "会推荐"),
}
GLOBAL_GRAMMAR = ("人工", "转人工", "不要再打了", "别打了", "打错了", "在开车", "在开会", "晚点再打", "没听清")


class State(str, enum.Enum):
    IDLE = "idle"
    GREETING = "greeting"  # listening for the callee's first words (machine detection)
    SPEAKING = "speaking"
    LISTENING = "listening"
    TRANSFERRING = "transferring"
    DONE = "done"


@dataclass
class _TagReading:
    """The classifier's reading of one answer (:meth:`DialogEngine._read_tags`)."""

    result: Classification
    kept: tuple[str, ...]  # the tags the answer supports
    held: tuple[str, ...]  # problems kept back only because the customer scored well: asked about
    turn: int  # the answer's turn


@dataclass
class _Confirmation:
    """An answer restated to the customer ("您是说……,对吗?") before the robot acts on it."""

    label: str
    step: Step
    yes: Callable[[], list]
    no: Callable[[], list]
    tries: int = 0
    unclear: Callable[[], list] | None = None  # no clear yes or no after the tries (default: as no)


class Conversation:
    """One call's conversation. Not thread-safe: one thread feeds it, one event at a time."""

    def __init__(self, script: Script, values: Mapping[str, Any], nlu: Nlu, *, classifier=None,
                 library: PromptLibrary | None = None, clock: Callable[[], dt.datetime] | None = None,
                 call_id: str | int = "", detect_machines: bool = True) -> None:
        self.script = script
        self.values = dict(values)
        self.nlu = nlu
        self.classifier = classifier
        self.library = library
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.call_id = call_id
        self.detect_machines = detect_machines
        self.state = State.IDLE
        self.step: Step | None = None
        self.answers: dict[str, Any] = {}
        self.turns: list[dict] = []
        self.findings: dict[str, dict] = {}
        self.outcome: CallOutcome | None = None
        self._end_reason = ""
        self._tokens: dict[str, int] = {}
        self._next_token = 0
        self._speaking: Say | None = None
        self._after = "listen"  # what follows the current prompt: listen | next | end | transfer
        self._next_step: str | None = None
        self._buffered: list[TranscriptEvent] = []
        self._held: list[TranscriptEvent] = []
        self._greeting_speech = False  # speech heard since pick-up, its words not yet recognised  # finals of a free-text answer still coming in
        self._no_input_count = 0
        self._no_match_count = 0
        self._denied: set[str] = set()  # scores the customer said no to at this step
        self._said: list[str] = []  # the scores the words of this step's answer named (五三四分: 5, 3, 4)
        self._heard_choices: tuple[ChoiceScore, ...] = ()  # the audio's scores of this step's last answer
        self._pending: _Confirmation | None = None
        self._known_time: dt.datetime | None = None
        self._tickets: set[str] = set()  # categories reported (and "complaint": one nobody could place)
        self._problems = ProblemLedger()
        self._low_score: int | None = None
        self._satisfied = False  # the customer gave a good score: weak problem readings are not problems
        self._sentiments: list[str] = []
        self._ending_outcome: CallOutcome | None = None

    # -- public ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state is State.DONE

    @property
    def confirming(self) -> tuple[Step, str] | None:
        """The step and the answer label being restated ("您是说……,对吗?"), while a confirmation is open."""
        return (self._pending.step, self._pending.label) if self._pending is not None else None

    def start(self, answered: CallAnswered | None = None) -> list:
        """The callee answered. Returns the first actions (listen for the greeting, or speak)."""
        if self.state is not State.IDLE:
            raise RuntimeError("conversation already started")
        out: list = [self._timer("max_duration", self.script.settings.max_call_seconds)]
        if self.detect_machines and self.script.settings.greeting_seconds > 0:
            self.state = State.GREETING
            out.append(Listen(GREETING, None, None, dtmf=False))
            out.append(self._timer("greeting", self.script.settings.greeting_seconds))
            return out
        return out + self._enter(self.script.start)

    def handle(self, event: Any) -> list:
        """Feed one event; returns the actions it causes (possibly none)."""
        if self.state is State.DONE:
            return []
        if isinstance(event, TranscriptEvent):
            return self._on_transcript(event)
        if isinstance(event, DtmfEvent):
            return self._on_dtmf(event)
        if isinstance(event, PlaybackFinished):
            return self._on_playback(event)
        if isinstance(event, TimerFired):
            return self._on_timer(event)
        if isinstance(event, CustomerHungUp):
            return self._on_hangup()
        if isinstance(event, TransferFailed):
            return self._on_transfer_failed(event)
        if isinstance(event, TransferConnected):
            return self._finish(CallOutcome.TRANSFERRED, "transferred")
        if isinstance(event, CallAnswered):
            return []
        raise TypeError(f"unknown event {event!r}")

    # -- speaking ------------------------------------------------------------------------------
    def _say(self, prompt_id: str, template: str, step: str, barge_in: bool, then: str | None = None) -> Say:
        """A prompt; ``then`` is a second template said right after (a re-prompt and the question):
        each is rendered on its own, so both keep the audio fragments they were rendered with."""
        text, fragments = render(template, self.values, self.script.variables, self.library)
        if then is not None:
            more_text, more = render(then, self.values, self.script.variables, self.library)
            text, fragments = text + more_text, fragments + more
        say = Say(step, prompt_id, text, fragments, barge_in)
        self._speaking = say
        self.state = State.SPEAKING
        return say

    def _enter(self, step_id: str) -> list:
        step = self.script.steps[step_id]
        self.step = step
        self._no_input_count = self._no_match_count = 0
        self._denied, self._heard_choices = set(), ()
        out: list = []
        if step.expect == "time" and self._known_time is not None:
            # The time is already known ("明天上午再打" answered the question before it was asked).
            out += self._record(step, self._known_time.isoformat(), "")
            target = step.on.get("affirm") or step.goto
            if target:
                return out + self._enter(target)
        if step.terminal:
            return out + self._enter_terminal(step)
        barge = self.script.settings.barge_in if step.barge_in is None else step.barge_in
        out.append(self._say(f"{self.script.id}.{step.id}", step.say, step.id, barge))
        if step.expect == "none":
            self._after, self._next_step = "next", step.goto
        else:
            self._after = "listen"
            out.append(self._listen(step))
        return out

    def _listen(self, step: Step) -> Listen:
        grammar = step.grammar or DEFAULT_GRAMMAR.get(step.expect)
        if grammar is not None:
            grammar = tuple(dict.fromkeys(grammar + GLOBAL_GRAMMAR))
        return Listen(step.id, step.context, grammar, dtmf=step.expect in ("identity", "yes_no", "score5", "nps"),
                      choices=choices_for(step))

    def _enter_terminal(self, step: Step) -> list:
        outcome = CallOutcome(step.end)
        out: list = []
        now = self.clock()
        if step.action == "callback":
            at = self._known_time or now + dt.timedelta(minutes=self.script.settings.callback_delay_minutes)
            out.append(ScheduleCallback(at=at, reason="customer asked to be called later", robot=True))
        elif step.action == "do_not_call":
            out.append(AddToDnc(reason=self._last_text() or "opt_out"))
        self._ending_outcome = outcome
        self._end_reason = step.id
        out.append(self._say(f"{self.script.id}.{step.id}", step.say, step.id, barge_in=False))
        self._after = "transfer" if step.action == "transfer" else "end"
        return out

    def _end_politely(self, prompt: str, outcome: CallOutcome, reason: str) -> list:
        self._ending_outcome = outcome
        self._end_reason = reason
        say = self._say(f"{self.script.id}.{prompt}", self.script.prompt(prompt), prompt, barge_in=False)
        self._after = "end"
        return [CancelTimer("no_input"), say]

    def _on_playback(self, event: PlaybackFinished) -> list:
        if self._speaking is None or event.prompt_id != self._speaking.prompt_id or self.state is not State.SPEAKING:
            return []  # a late or duplicate notification
        self._speaking = None
        if self._after == "end":
            return [HangUp(reason=self._end_reason)] + self._finish(self._ending_outcome or CallOutcome.COMPLETED,
                                                                     self._end_reason)
        if self._after == "transfer":
            self.state = State.TRANSFERRING
            return [Transfer(target=self.script.settings.transfer_target)]
        if self._after == "next":
            return self._enter(self._next_step) if self._next_step else []
        self.state = State.LISTENING
        out: list = [self._timer("no_input", self._timeout())]
        if self._buffered:
            pending, self._buffered = self._buffered, []
            merged = " ".join(e.text for e in pending if e.text.strip())
            out += self._understand(merged, pending[0].start, pending[-1].end,
                                    asr=min(e.confidence for e in pending))
        return out

    def _timeout(self) -> float:
        step = self.step
        return step.timeout if step is not None and step.timeout else self.script.settings.no_input_seconds

    # -- hearing ---------------------------------------------------------------------------------
    def _on_transcript(self, ev: TranscriptEvent) -> list:
        if ev.speaker is not Speaker.CUSTOMER:
            return []
        text = ev.text.strip()
        if self.state is State.GREETING:
            if not ev.is_final:
                if ev.end - ev.start >= 5.0:  # still talking 5 s after pick-up: a recorded greeting
                    return self._machine(text, ev.end - ev.start)
                # The callee is talking: wait for their words (a recognizer without growing partials
                # reports the utterance only when it ends) rather than talk over "您好，机主现在…".
                self._greeting_speech = True
                return [self._timer("greeting", GREETING_SPEECH_WAIT_SECONDS)]
            self._greeting_speech = False
            verdict = classify_greeting(text, ev.end - ev.start)
            logger.info("call %s: first words classified %s (%s)", self.call_id, verdict.verdict.value, verdict.reason)
            if verdict.verdict.is_machine:
                return self._machine(text, ev.end - ev.start, verdict.verdict.value)
            return [CancelTimer("greeting")] + self._enter(self.script.start)
        if self.state is State.SPEAKING:
            if self._speaking is None or not self._speaking.barge_in or self._after != "listen":
                if ev.is_final and text and self._after == "listen":
                    self._buffered.append(ev)  # heard over a prompt that may not be interrupted
                return []
            if not ev.is_final and (_BACKCHANNEL.match(text) if text else ev.end - ev.start < BARGE_IN_MIN_SECONDS):
                return []  # "嗯嗯" while listening, or too little speech to be an interruption yet
            self._speaking = None
            self.state = State.LISTENING
            out: list = [StopSpeaking("barge_in")]
            if ev.is_final:
                return out + self._understand(text, ev.start, ev.end, choices=ev.choices, asr=ev.confidence)
            return out
        if self.state is not State.LISTENING:
            return []
        if not ev.is_final:
            if self._held:
                return [self._timer("turn_end", TURN_HOLD_SPEECH_SECONDS)]
            if text or ev.end > ev.start:
                return [CancelTimer("no_input")]
            return [self._timer("no_input", self._timeout() + SPEECH_GRACE_SECONDS)]
        if not text:
            if self._held:
                return [self._timer("turn_end", TURN_HOLD_SECONDS)]
            if ev.choices and self.step is not None and self.step.expect in CLOSED_EXPECTS:
                # No words, but the audio scored the expected answers ("三分" of 0.2 s): let it speak.
                return self._understand("", ev.start, ev.end, choices=ev.choices, asr=ev.confidence)
            if ev.end - ev.start >= UNUSABLE_SPEECH_SECONDS and self.step is not None:
                return self._unusable(ev)
            return [self._timer("no_input", self._timeout())]
        if self.step is not None and TURN_HOLD_SECONDS > 0 and (self._held or (
                (self.step.expect in HELD_ANSWERS or len(text) <= 1) and not self._complete_score(text))):
            self._held.append(ev)
            return [CancelTimer("no_input"), self._timer("turn_end", TURN_HOLD_SECONDS)]
        return self._understand(text, ev.start, ev.end, choices=ev.choices, asr=ev.confidence)

    def _unusable(self, ev: TranscriptEvent) -> list:
        """The customer spoke and the recognizer made nothing of it: "not understood", not silence."""
        step = self.step
        assert step is not None
        self.turns.append({"step": step.id, "text": "", "intent": Intent.UNCLEAR.value, "confidence": 0.0,
                           "start": ev.start, "end": ev.end, "unusable": True,
                           **({"confirming": self._pending.label} if self._pending else {})})
        logger.info("call %s step %s: %.1f s of speech not recognised", self.call_id, step.id, ev.end - ev.start)
        out: list = [CancelTimer("no_input")]
        if self._pending is not None:
            return out + self._confirmation_unclear()
        return out + self._no_match(None)

    @staticmethod
    def _closed_answer(step: Step, result: NluResult, choices: Sequence[ChoiceScore],
                       asr: float | None = None) -> tuple[NluResult, dict]:
        """The answer to a closed question from the transcript's reading and the audio's own scores
        of the expected answers (:func:`dialog.answers.decide`), as the reading the handlers act on."""
        if result.rule in READS_THE_WHOLE_ANSWER:
            # "不是没洗,洗了的": the audio scores the short answer 不是/没洗 best on the answer's first
            # words; the reading of the whole sentence is what it means.
            choices = ()
        d = decide(step.expect, result, choices, asr=asr)
        note = {"answer": d.label, "answer_confidence": d.confidence, "answer_source": d.source}
        if d.source.startswith("intent:") or result.intent == Intent.COMPLAINT.value:
            return result, note  # not an answer (opting out, a human, a question back) or a complaint
        rule = result.rule if d.source in ("text", "both") else None
        if d.label is None:
            heard = [c for c in choices if c.label != OTHER_CHOICE]
            rival = max(heard, key=lambda c: c.probability) if heard else None
            said = text_label(step.expect, result, asr)[0]
            doubted = words_doubted(asr)
            if said is not None and (result.rule is None or doubted) and rival is not None and rival.label != said \
                    and rival.probability >= AUDIO_RIVAL:
                # The model's reading of the words says one answer and the audio another: ask, do not
                # guess. (A phrase rule's reading, "是我你说吧", stands: run 10 of the demo re-asked it;
                # unless the recognizer doubted the words themselves: "二分" at 0.12 for a bare 五分.)
                return replace(result, intent=Intent.UNCLEAR.value, confidence=d.confidence, score5=None,
                               nps=None, rule="not sure"), note
            return result, note  # a long answer no short phrase fits: its words carry it
        if step.expect == "score5":
            return replace(result, intent=Intent.AFFIRM.value, confidence=d.confidence, score5=int(d.label),
                           rule=rule), note
        if step.expect == "nps":
            return replace(result, intent=Intent.AFFIRM.value, confidence=d.confidence, nps=int(d.label),
                           rule=rule), note
        intent = {"yes": Intent.AFFIRM.value, "no": Intent.DENY.value, "busy": Intent.BUSY_CALLBACK.value}[d.label]
        return replace(result, intent=intent, confidence=d.confidence, rule=rule), note

    def _complete_score(self, text: str) -> bool:
        scale = UNHELD_SCORES.get(self.step.expect)
        if scale is None:
            return False
        value = explicit_score(text, scale[0])
        return value is not None and value >= scale[1]

    def _release_held(self) -> list:
        """Understand the pieces of a free-text answer as one turn."""
        held, self._held = self._held, []
        if not held:
            return []
        scored = [e.choices for e in held if e.choices]
        return self._understand(" ".join(e.text.strip() for e in held), held[0].start, held[-1].end,
                                choices=scored[-1] if scored else (), asr=min(e.confidence for e in held))

    def _machine(self, text: str, duration: float, verdict: str = "voicemail") -> list:
        self.turns.append({"step": GREETING, "text": text, "intent": None, "confidence": None, "start": 0.0,
                           "end": duration, "machine": verdict})
        out: list = [CancelTimer("greeting")]
        if self.script.settings.on_machine == "message" and verdict == "voicemail" and "voicemail" in self.script.prompts:
            return out + self._end_politely("voicemail", CallOutcome.MACHINE, "machine")
        return out + [HangUp(reason="machine")] + self._finish(CallOutcome.MACHINE, "machine")

    def _on_dtmf(self, ev: DtmfEvent) -> list:
        if self.state not in (State.LISTENING, State.SPEAKING) or self.step is None or self._after != "listen":
            return []
        digit = ev.digit
        settings = self.script.settings
        out: list = [StopSpeaking("dtmf")] if self.state is State.SPEAKING else []
        self.state = State.LISTENING
        self._speaking = None
        if settings.dtmf_human and digit == settings.dtmf_human and "ask_human" in self.script.handlers:
            return out + self._route_intent("ask_human", f"按键{digit}")
        expect = self.step.expect
        if expect == "score5" and digit in "12345":
            return out + self._understand(f"{digit}分", ev.at, ev.at, dtmf=True)
        if expect == "nps" and (digit.isdigit() or digit == "*"):
            return out + self._understand("10分" if digit == "*" else f"{digit}分", ev.at, ev.at, dtmf=True)
        if expect in ("identity", "yes_no") and digit in "12":
            return out + self._understand("是的" if digit == "1" else "不是", ev.at, ev.at, dtmf=True)
        return out + [self._timer("no_input", self._timeout())]

    # -- understanding ---------------------------------------------------------------------------
    def _understand(self, text: str, start: float, end: float, dtmf: bool = False,
                    choices: Sequence[ChoiceScore] = (), asr: float | None = None) -> list:
        """Act on one answer. ``asr``: the recognizer's confidence in the words (Whisper: the mean
        token probability; the least of an answer's pieces), kept in the turn for the reader."""
        step = self.step
        assert step is not None
        if self._pending is not None:
            return self._on_confirmation(text, start, end, dtmf, choices, None if dtmf else asr)
        result = self.nlu.parse(text, step.context, self.clock())
        decided: dict = {}
        if step.expect in CLOSED_EXPECTS and not dtmf:
            result, decided = self._closed_answer(step, result, choices, asr)
            self._heard_choices = tuple(choices)
            if choices:  # the audio's three likeliest answers, for whoever reads the call afterwards
                top = sorted(choices, key=lambda c: c.probability, reverse=True)[:3]
                decided["audio"] = [[c.label, round(c.probability, 3)] for c in top]
        self.turns.append({"step": step.id, "text": text, "intent": result.intent,
                           "confidence": round(result.confidence, 4), "start": start, "end": end,
                           "score5": result.score5, "nps": result.nps,
                           "callback_at": result.callback_at.isoformat() if result.callback_at else None,
                           **({"asr": round(asr, 3)} if asr is not None and not dtmf else {}),
                           **decided, **({"dtmf": True} if dtmf else {})})
        logger.debug("call %s step %s: intent %s (%.2f)", self.call_id, step.id, result.intent, result.confidence)
        if result.callback_at is not None:
            self._known_time = result.callback_at
        out: list = [CancelTimer("no_input")]
        intent = result.intent
        if intent in step.on and intent not in ("affirm", "deny"):
            return out + self._goto(step.on[intent])
        if intent in ("opt_out", "wrong_number", "ask_human", "busy_callback") and intent in self.script.handlers:
            if intent == "busy_callback" and step.expect == "time":
                pass  # "明天上午" to "when shall we call you?" answers the question
            elif intent in ("ask_human", "busy_callback") and step.expect in ("text", "reason") \
                    and result.rule is None and result.confidence < OFF_SCRIPT_IN_TEXT:
                # A feedback sentence that mentions phoning ("以后有事打电话问我") is feedback: only a
                # plain request (a phrase rule) or a sure reading leaves the survey from an open question.
                intent = Intent.AFFIRM.value
                result = replace(result, intent=intent)
            elif intent == "busy_callback" and step.expect == "yes_no" and result.rule is None \
                    and result.confidence < OFF_SCRIPT_IN_TEXT:
                # Mid-survey, the customer is answering: a guessed "call me later" ("晚了,说两点好,快六点
                # 才给我" read busy_callback 0.44) is read as the answer it most likely is instead.
                answers = {k: v for k, v in result.intents.items() if k in YES_NO_INTENTS}
                intent = max(answers, key=answers.get) if answers else Intent.UNCLEAR.value
                result = replace(result, intent=intent, confidence=answers.get(intent, 0.0))
            elif intent in ("opt_out", "wrong_number") and (
                    result.rule is None and (result.confidence < CONFIRM_BELOW or step.expect in ("text", "reason"))
                    or result.rule == "opt_out" and result.intents
                    and result.intents.get("opt_out", 0.0) < RULE_OPT_OUT_AGREES):
                # The model's reading, no phrase said it plainly (in feedback, however sure: the
                # customer is answering a question), or a phrase said it inside a sentence
                # the model reads as something else ("我说了不要打扰我休息,你们服务挺好"): ask before
                # acting on it. A customer who hangs up instead of answering is opted out.
                return out + self._confirm(intent, step, yes=lambda: self._route_global(intent, text),
                                           no=lambda: self._not_leaving(step, result))
            else:
                return out + self._route_global(intent, text)
        if intent == Intent.UNCLEAR.value and step.expect in ("text", "reason") and result.rule not in (
                "unclear", "empty") and len(text.strip()) >= 2:
            intent = Intent.AFFIRM.value  # "一般" to an open question is an answer, however short
        elif intent == Intent.UNCLEAR.value and step.expect == "identity" and (
                SOMEONE_ELSE.search(text) or OFFERS_TO_ANSWER.search(text)):
            pass  # "她上班去了,有什么你问我吧": not a yes or a no, but the identity step knows what it means
        elif intent == Intent.UNCLEAR.value and step.expect in ("score5", "nps") and result.rule not in (
                "unclear", "empty"):
            pass  # neither words nor audio sure: the score handler restates what the audio leans to, or asks again
        elif intent == Intent.UNCLEAR.value:
            # "什么?", "没听清" ask for the question again; a mumble or a filler gets the answer's form.
            return out + self._no_match(result, repeat=result.rule == "unclear")
        if intent == Intent.QUESTION.value and step.expect not in ("text", "reason"):
            return out + self._no_match(result, repeat=True)
        handler = getattr(self, f"_answer_{step.expect}")
        return out + handler(step, result)

    def _not_leaving(self, step: Step, r: NluResult) -> list:
        """The customer said no to "you want to opt out / have the wrong number?": feedback to an open
        question is taken as the answer it was (its words are not lost); a closed question is asked again."""
        if step.expect not in ("text", "reason"):
            return self._reask(step)
        rest = {k: v for k, v in r.intents.items() if k not in ("opt_out", "wrong_number", "ask_human",
                                                                "busy_callback", "unclear")}
        intent = max(rest, key=rest.get) if rest else Intent.AFFIRM.value
        return getattr(self, f"_answer_{step.expect}")(step, replace(r, intent=intent, rule=None,
                                                                        confidence=rest.get(intent, 0.5)))

    def _answer_identity(self, step: Step, r: NluResult) -> list:
        if r.intent == Intent.COMPLAINT.value:
            # "你们终于打电话来了！" to "is this Mr Wang?": the customer is there and has something to
            # say. Record the complaint (ticket) and go on with the survey, where they will say more.
            out = self._complaint(step, r) + self._record(step, True, r.text, r)
            target = step.on.get("affirm") or step.goto
            return out + (self._goto(target) if target else self._no_match(r))
        if r.intent != Intent.DENY.value and DECLINES.search(r.text):
            # "是我,不过回访就算了吧": the customer, declining the survey, and saying so plainly.
            r = replace(r, intent=Intent.DENY.value, confidence=max(r.confidence, 0.9), rule="declines")
            return self._answer_yes_no(step, r)
        relative = SOMEONE_ELSE.search(r.text)
        offers = OFFERS_TO_ANSWER.search(r.text) if not re.search(r"不(用|要|想|必)", r.text) else None
        if relative or offers:
            self.turns[-1]["answered_by"] = (relative or offers).group(0)
            if offers or USES_THE_CAR.search(r.text):
                # "我是他儿子,车是我开的": the one who brought the car answers the revisit.
                out = self._record(step, True, r.text, r)
                target = step.on.get("affirm") or step.goto
                return out + (self._goto(target) if target else self._no_match(r))
            if "busy_callback" in self.script.handlers:
                # "我是他爱人,他不在家": not a refusal; the customer is called again.
                return self._route_intent("busy_callback", r.text)
        return self._answer_yes_no(step, r)

    def _answer_yes_no(self, step: Step, r: NluResult) -> list:
        if r.intent == Intent.COMPLAINT.value:
            # "洗没洗我不关心,车都没修好": a complaint instead of the answer. What it is about is the
            # classifier's to say (repair quality), not the question's (car wash).
            out = self._complaint(step, r)
            target = step.on.get("deny") or step.goto
            return out + self._record(step, None, r.text, r) + (self._goto(target) if target else self._no_match(r))
        elif r.intent == Intent.AFFIRM.value:
            out, value, target = [], True, step.on.get("affirm") or step.goto
            if step.problem and complaint_after_yes(r.text):
                # "外面是洗了,可是座椅上全是油手印子": yes to the question, and a complaint after it;
                # the classifier says what about (and a satisfied customer's unsure one is asked about).
                self._classify(step, r, open_tickets=True)
        elif r.intent == Intent.DENY.value:
            out, value, target = [], False, step.on.get("deny") or step.goto
        else:  # busy/question with no handler: not an answer
            return self._no_match(r)
        if value is False and step.expect == "identity" and r.intent == Intent.DENY.value \
                and (r.confidence < CONFIRM_BELOW or len(r.text.strip()) <= 2
                     or words_doubted(self.turns[-1].get("asr") if self.turns else None)):
            # A bare "不是" ends the revisit: make sure it was not a misheard "是的". So too words the
            # recognizer itself doubted ("我是,什么事儿?" heard 不是什么事 at 0.45 ended a call).
            affirm = step.on.get("affirm") or step.goto
            return self._confirm("declined", step, yes=lambda: self._yes_no_done(step, r, False, target),
                                 no=lambda: self._yes_no_done(step, r, True, affirm))
        if value is False and step.problem and store_not_at_fault(r.text):
            # "没洗,我跟他们说不用洗的", "没有,提前就好了": a "no" that is no failure of the store.
            self.turns[-1]["not_a_problem"] = True
        elif value is False and step.problem and r.intent != Intent.COMPLAINT.value \
                and (r.confidence < CONFIRM_BELOW or self._satisfied):
            # A guessed failure is confirmed before it opens a ticket; so is any failure the customer
            # who just gave 4-5 points names only by a "no" ("没有晚,准时的" heard as 没有玩对时等, deny
            # 0.96, opened a late-delivery ticket on a 5/5 call). One short question against a false ticket.
            return self._confirm("no", step, yes=lambda: self._yes_no_done(step, r, False, target, problem=True),
                                 no=lambda: self._yes_no_done(step, r, True, step.on.get("affirm") or step.goto))
        return out + self._yes_no_done(step, r, value, target, problem=value is False and bool(step.problem)
                                       and not self.turns[-1].get("not_a_problem"))

    def _yes_no_done(self, step: Step, r: NluResult, value: bool, target: str | None, problem: bool = False) -> list:
        out = self._record(step, value, r.text, r)
        if problem:
            out += self._problem(step, step.problem, r.text, r.intent == Intent.COMPLAINT.value)
        return out + (self._goto(target) if target else self._no_match(r))

    def _answer_score5(self, step: Step, r: NluResult) -> list:
        return self._answer_score(step, r, r.score5, "score5")

    def _answer_nps(self, step: Step, r: NluResult) -> list:
        return self._answer_score(step, r, r.nps, "nps")

    def _answer_score(self, step: Step, r: NluResult, value: int | None, scale: str) -> list:
        out: list = []
        self._said = []
        if r.intent == Intent.COMPLAINT.value:
            out += self._complaint(step, r)
        if value is None:
            guess = self._audio_guess(SCORE_GUESS_FROM)
            if r.intent == Intent.DENY.value and (r.confidence >= CONFIRM_NO_FROM or guess is None):
                # "不打分" (declining to score) goes on without one; a guessed no ("没听乃多好" for 满分,
                # deny 0.44) with the audio leaning to a score is restated below instead.
                target = step.on.get("deny") or step.goto
                if target:
                    return out + self._record(step, None, r.text, r) + self._goto(target)
            if r.intent == Intent.COMPLAINT.value and (guess is None or r.confidence >= CONFIRM_BELOW):
                # A complaint instead of a score goes to the complaint's branch; a guessed one
                # ("汽车售真的没话想" for 一百分,真的没话讲: complaint 0.39) with the audio leaning to a
                # score has that score restated below.
                target = step.on.get("complaint") or step.goto or (step.branches[-1].goto if step.branches else None)
                if target:
                    return out + self._goto(target)
            if guess is not None and r.rule not in ("unclear", "empty"):
                # Words with no score in them ("您好" for a bare 五分), the audio leaning to one: asking
                # "您是说五分,对吗?" gets a clear yes or no where asking again gets the same misheard words.
                return out + self._confirm_score(step, r, guess)
            return out + self._no_match(r)
        heard = self.turns[-1] if self.turns else {}
        said = scores_said(r.text, 5 if scale == "score5" else 10)
        if len(set(said)) > 1:
            # "五分四分四分" (the recognizer repeating itself), "一分五分" (a word it added), "三分,不,四分吧"
            # (a self-correction): the reading of the words and the audio picks one (the first said
            # when they name none of them), and it is confirmed before it decides anything.
            value = value if value in said else said[0]
            self._said = [str(v) for v in dict.fromkeys(said)]
            return out + self._confirm_score(step, r, str(value))
        low = value <= 2 if scale == "score5" else value <= 6
        # "二分", "两分吧", "二分二分" (the recognizer repeating itself on a sound it could not place):
        # nothing but the score to go by.
        bare = sum(1 for ch in without_scores(r.text) if is_cjk(ch)) <= 1
        top = max(self._heard_choices, key=lambda c: c.probability, default=None)
        disputed = top is not None and top.label not in (OTHER_CHOICE, str(value)) and top.probability >= AUDIO_RIVAL
        doubted = words_doubted(heard.get("asr")) and r.confidence < CONFIRM_BELOW
        if heard.get("answer_source") == "audio" and (r.confidence < CONFIRM_BELOW or low) \
                or low and bare and (scale == "score5" or value <= 3) or disputed or doubted:
            # A bare low score opens a follow-up for an unhappy customer: a misheard 五分 ("二分")
            # would open one for a satisfied one. Restated first ("您是说两分,对吗?").
            # The audio alone says which score (the words did not): restate it before it decides the
            # call's branch, or opens a follow-up for an unhappy customer who was not. So too when the
            # audio's likeliest score is another one ("四" heard, 三分 the audio's best at 0.44), or the
            # recognizer doubted the words and words and audio together are not sure ("三分" at 0.15
            # for a bare 五分, the audio agreeing at 0.42).
            return out + self._confirm_score(step, r, str(value))
        return out + self._score_done(step, r, value, scale)

    def _confirm_score(self, step: Step, r: NluResult, label: str) -> list:
        """Restate the score ``label`` ("您是说五分,对吗?"): yes records it; no tries the audio's next
        likeliest score, else asks again."""
        scale, value = step.expect, int(label)
        # No clear answer to it is no "no": the question is asked again, the score not ruled out.
        return self._confirm(label, step, yes=lambda: self._score_done(step, r, value, scale),
                             no=lambda: self._score_denied(step, r, label), unclear=lambda: self._reask(step))

    def _score_denied(self, step: Step, r: NluResult, label: str) -> list:
        self._denied.add(label)
        # The other scores the words named ("五三四分四分": a 不是 to 三分 asks about 五分 next), then
        # the audio's next likeliest.
        guess = next((s for s in self._said if s not in self._denied), None) or self._audio_guess(RUNNER_UP_FROM)
        if guess is None:
            return self._reask(step)
        # "不是" to the likeliest score: the audio's next one is asked about as one of the step's tries
        # ("那是四分,对吗?"), where asking the question again would get the same misheard words.
        self._no_match_count += 1
        if self._no_match_count > self._no_match_limit(step):
            return self._give_up(step)
        return self._confirm_score(step, r, guess)

    def _audio_guess(self, at_least: float) -> str | None:
        """The score the audio of the step's last answer leans to, among those not yet denied, when
        its share (the denied ones and "none of them" left out) is at least ``at_least``."""
        scores = {c.label: c.probability for c in self._heard_choices
                  if c.label != OTHER_CHOICE and c.label not in self._denied and c.label.isdigit()}
        total = sum(scores.values()) + sum(c.probability for c in self._heard_choices if c.label == OTHER_CHOICE)
        if not scores or total <= 0:
            return None
        best = max(scores, key=scores.get)
        return best if scores[best] / total >= at_least else None

    def _score_done(self, step: Step, r: NluResult, value: int, scale: str) -> list:
        if scale == "score5" and value <= 2:
            self._low_score = value
        self._satisfied = value >= UNHELD_SCORES[scale][1]  # 4-5 of 5, 9-10 of 10
        out = self._record(step, value, r.text, r)
        if r.intent != Intent.COMPLAINT.value and reason_beside_score(r.text):
            # "四分,扣一分是因为等得有点久": the reason given with the score is feedback too (a 4-5
            # point customer is not asked for one); the classifier says what about.
            turn = next((i for i in range(len(self.turns) - 1, -1, -1) if self.turns[i]["text"] == r.text),
                        len(self.turns) - 1)
            reading = self._read_tags(r, turn)
            if reading is not None:
                self._apply_tags(step, r, reading, reading.kept, open_tickets=True)
        for branch in step.branches:
            if branch.matches(value):
                return out + self._goto(branch.goto)
        return out + self._goto(step.goto) if step.goto else out + self._no_match(r)

    def _answer_text(self, step: Step, r: NluResult) -> list:
        out: list = []
        if r.intent == Intent.DENY.value and len(r.text) <= 12:
            out += self._record(step, "", r.text, r)
            return out + self._goto(step.on.get("deny") or step.goto)
        out += self._record(step, r.text, r.text, r)
        target = step.on.get(r.intent) or step.goto

        def go_on() -> list:
            return self._goto(target) if target else self._no_match(r)

        if r.intent == Intent.COMPLAINT.value or step.ticket:
            opened = step.ticket or r.intent == Intent.COMPLAINT.value
            reading = self._read_tags(r)
            if reading is not None and reading.held and opened and "complaint" in self.script.confirm_prompts(step):
                # A customer who scored 4-5 and then says something the classifier reads as a problem,
                # but unsurely or from words the recognizer doubted: a garbled compliment ("顾问还可以"
                # heard 顾问还捆银) and a late complaint ("就是结账排队太久") look alike. Asking once
                # ("您是说有不满意的地方,对吗?") keeps the complaint without a ticket for the compliment.
                self.turns[-1]["tags_held"] = list(reading.held)

                def confirmed(categories: tuple[str, ...]) -> Callable[[], list]:
                    def act() -> list:
                        self._apply_tags(step, r, reading, categories, opened)
                        return go_on()
                    return act

                return out + self._confirm("complaint", step, yes=confirmed(reading.kept + reading.held),
                                           no=confirmed(reading.kept))
            if reading is not None:
                self._apply_tags(step, r, reading, reading.kept, opened)
        return out + go_on()

    def _answer_reason(self, step: Step, r: NluResult) -> list:
        return self._answer_text(step, r)

    def _answer_time(self, step: Step, r: NluResult) -> list:
        if r.intent in (Intent.AFFIRM.value, Intent.BUSY_CALLBACK.value):
            when = r.callback_at or self._known_time
            if when is not None:
                self._known_time = when
                out = self._record(step, when.isoformat(), r.text, r)
                return out + self._goto(step.on.get("affirm") or step.goto)
            out = self._record(step, True, r.text, r)
            return out + self._goto(step.on.get("affirm") or step.goto)
        if r.intent == Intent.DENY.value:
            return self._record(step, False, r.text, r) + self._goto(step.on.get("deny") or step.goto)
        if r.intent == Intent.COMPLAINT.value:
            out = self._complaint(step, r)
            return out + self._goto(step.on.get("complaint") or step.on.get("deny") or step.goto)
        return self._no_match(r)

    def _goto(self, target: str | None) -> list:
        if not target:
            return self._end_politely("goodbye_timeout", CallOutcome.PARTIAL, "no route")
        return self._enter(target)

    def _route_intent(self, intent: str, text: str) -> list:
        return self._enter(self.script.handlers[intent])

    def _route_global(self, intent: str, text: str) -> list:
        out = self._record_raw("wrong_number", True, text) if intent == "wrong_number" else []
        return out + self._route_intent(intent, text)

    # -- confirmations ---------------------------------------------------------------------------
    def _confirm(self, label: str, step: Step, yes: Callable[[], list], no: Callable[[], list],
                 unclear: Callable[[], list] | None = None) -> list:
        """Restate ``label`` ("跟您确认一下,……,对吗?") and act on the customer's yes or no."""
        if self.turns:
            self.turns[-1]["confirming"] = label
        self._pending = _Confirmation(label, step, yes, no, unclear=unclear)
        return self._say_confirmation()

    def _say_confirmation(self) -> list:
        p = self._pending
        assert p is not None
        template = self.script.confirm_prompts(p.step)[p.label]
        self._after = "listen"
        return [self._say(f"{self.script.id}.{p.step.id}.confirm.{p.label}", template, p.step.id, True),
                Listen(p.step.id, "yn", tuple(dict.fromkeys(YES_NO_GRAMMAR + GLOBAL_GRAMMAR)), dtmf=True,
                       choices=CONFIRM_CHOICES)]

    def _on_confirmation(self, text: str, start: float, end: float, dtmf: bool,
                         choices: Sequence[ChoiceScore] = (), asr: float | None = None) -> list:
        p = self._pending
        assert p is not None
        result = self.nlu.parse(text, "yn", self.clock())
        verdict = self._confirmation_verdict(p, text, result)
        corrected: dict = {}
        if p.label.isdigit() and p.step.expect in ("score5", "nps"):
            said = scores_said(text, 5 if p.step.expect == "score5" else 10)
            other = [v for v in said if str(v) != p.label]
            if other:  # "不是,四分" / "不对,是五分": the customer's correction is the answer
                verdict, corrected = False, {"corrected": other[-1], p.step.expect: other[-1]}
            elif said and verdict is None:
                verdict = True  # "五分" to "您是说五分,对吗?"
        audio: dict = {}
        if choices and not corrected:
            verdict, audio = self._confirmation_audio(p, verdict, result, choices, asr)
        self.turns.append({"step": p.step.id, "text": text, "intent": result.intent,
                           "confidence": round(result.confidence, 4), "start": start, "end": end,
                           "confirming": p.label, "confirmed": verdict, **corrected,
                           **({"asr": round(asr, 3)} if asr is not None else {}), **audio,
                           **({"dtmf": True} if dtmf else {})})
        out: list = [CancelTimer("no_input")]
        if corrected:
            self._pending = None
            value = corrected["corrected"]  # the expect (score5 / nps) is also the reading's field
            r = replace(result, intent=Intent.AFFIRM.value, confidence=0.9, **{p.step.expect: value})
            return out + self._score_done(p.step, r, value, p.step.expect)
        if verdict is None and result.rule in ("opt_out", "ask_human", "busy_callback", "wrong_number") \
                and result.intent in self.script.handlers:
            self._pending = None  # "别问了,转人工": a plain request of its own
            return out + self._route_global(result.intent, text)
        if verdict is None:
            return out + self._confirmation_unclear()
        self._pending = None
        return out + (p.yes() if verdict else p.no())

    @staticmethod
    def _confirmation_audio(p: _Confirmation, verdict: bool | None, result: NluResult,
                            choices: Sequence[ChoiceScore], asr: float | None) -> tuple[bool | None, dict]:
        """The reply's audio, scored against the yes and no phrases, beside its words.

        Words that fit no reading ("对" heard as "队"): a plain "yes" in the audio agrees. When the
        sentence restated what the customer said (a score, a problem: "您给的是三分,对吗?") a plain
        "no" in the audio is a no too; when it restated a negative ("车辆没有洗干净,对吗?") 没有 is
        a yes and 不是 a no, so an acoustic "no" never decides there. Words the recognizer doubted
        (a 不是 came back as 听 or 呼声 at 0.1) that the audio clearly contradicts decide nothing:
        the question is asked again rather than a guess acted on."""
        positive = p.label.isdigit() or p.label == "complaint"
        heard = [c for c in choices if c.label in ("yes", "no")]
        top = max(heard, key=lambda c: c.probability) if heard else None
        note = {"audio": [[c.label, round(c.probability, 3)] for c in heard]}
        if verdict is not None and positive and words_doubted(asr) and top is not None \
                and (top.label == "yes") != verdict and top.probability >= CONFIRM_AUDIO_RIVAL:
            note["audio_disagrees"] = True
            verdict = None
            result = replace(result, intent=Intent.UNCLEAR.value, confidence=0.0)
        if verdict is None:
            d = decide("yes_no", result, choices, asr=asr)
            if d.label == "yes" and d.confidence >= CONFIRM_BELOW:
                verdict = True
            elif d.label == "no" and positive and d.confidence >= CONFIRM_AUDIO_NO_FROM:
                verdict = False
        return verdict, note

    def _confirmation_unclear(self) -> list:
        """No clear yes or no (silence, a mumble): ask once more, then take the safe path (do not act)."""
        p = self._pending
        assert p is not None
        p.tries += 1
        if p.tries < 2:
            return self._say_confirmation()
        self._pending = None
        return (p.unclear or p.no)()

    @staticmethod
    def _confirmation_verdict(p: _Confirmation, text: str, result: NluResult) -> bool | None:
        canon = text.strip()
        for pattern, verdict in CONFIRM_ANSWERS.get(p.label, CONFIRM_SCORE):
            if pattern.search(canon):
                return verdict
        if result.intent == Intent.AFFIRM.value and result.confidence >= CONFIRM_YES_FROM \
                or (result.intent == Intent.COMPLAINT.value and p.label == "no"):
            return True
        if result.intent == Intent.DENY.value and p.label not in CONFIRM_ANSWERS \
                and result.confidence >= CONFIRM_NO_FROM:
            return False
        return None

    def _reask(self, step: Step) -> list:
        """The robot misheard: say so, and ask the question again (one of the step's tries: a
        customer who keeps saying "不是" to what the robot heard is not asked forever)."""
        self._no_match_count += 1
        if self._no_match_count > self._no_match_limit(step):
            return self._give_up(step)
        self._after = "listen"
        barge = self.script.settings.barge_in if step.barge_in is None else step.barge_in
        return [self._say(f"{self.script.id}.{step.id}.reask", self.script.prompt("confirm_misheard"), step.id,
                          barge, then=step.say), self._listen(step)]

    # -- re-prompts ------------------------------------------------------------------------------
    def _no_match_limit(self, step: Step) -> int:
        return step.no_match.retries if step.no_match else self.script.settings.no_match_retries

    def _give_up(self, step: Step) -> list:
        """No usable answer after the step's tries."""
        goto = (step.no_match.goto if step.no_match else None) or self._skip_target(step)
        if goto is None and step.expect == "identity" and step.on.get("question") \
                and not any(t["step"] == step.on["question"] for t in self.turns):
            # Not understood three times at the first question ("哪家店啊?" heard as "那家电脑回访下"):
            # say who is calling and why, and ask again, as an agent would, before giving up the call.
            goto = step.on["question"]
        if goto:
            # Still there but not understood: go on without this answer rather than lose the call.
            if self.turns:
                self.turns[-1]["skipped"] = True
            logger.info("call %s step %s: no usable answer after %d tries, going on", self.call_id, step.id,
                        self._no_match_count)
            return self._enter(goto)
        outcome = CallOutcome.PARTIAL if self.answers else CallOutcome.NO_RESPONSE
        return self._end_politely("goodbye_no_input", outcome, "no_match")

    def _no_match(self, r: NluResult | None = None, repeat: bool = False) -> list:
        """An answer that was heard but not understood (or a request to repeat, ``repeat``)."""
        step = self.step
        assert step is not None
        self._no_match_count += 1
        if self._no_match_count > self._no_match_limit(step):
            return self._give_up(step)
        custom = step.no_match.say if step.no_match and step.no_match.say else None
        first = self._no_match_count == 1
        then = None
        if custom:
            template = custom
        elif repeat:
            template, then = self.script.prompt("repeat"), step.say
        elif step.expect in ("score5", "nps", "yes_no", "identity"):
            template = self.script.prompt(f"no_match_{step.expect}" + ("" if first else "_again"))
            then = step.say if first and step.expect == "yes_no" else None
        else:
            template, then = self.script.prompt("no_match" if first else "no_match_again"), step.say
        barge = self.script.settings.barge_in if step.barge_in is None else step.barge_in
        self._after = "listen"
        return [self._say(f"{self.script.id}.{step.id}.no_match", template, step.id, barge, then), self._listen(step)]

    @staticmethod
    def _skip_target(step: Step) -> str | None:
        """Where to go on when ``step``'s answer cannot be had (None: the answer decides the call)."""
        if step.expect in SKIPPABLE:
            return step.on.get("skip") or step.goto or step.on.get("deny") or (
                step.branches[0].goto if step.branches else None)
        if step.expect == "yes_no":
            affirm, deny = step.on.get("affirm") or step.goto, step.on.get("deny") or step.goto
            return affirm if affirm == deny else None
        return None

    def _on_timer(self, ev: TimerFired) -> list:
        if self._tokens.get(ev.name) != ev.token:
            return []  # cancelled or replaced
        del self._tokens[ev.name]
        if ev.name == "greeting" and self.state is State.GREETING:
            if self._greeting_speech:
                # Talking on without words for that long after picking up: no person says hello like
                # that, a recorded greeting does.
                return self._machine("", GREETING_SPEECH_WAIT_SECONDS, "voicemail")
            return self._enter(self.script.start)
        if ev.name == "turn_end":
            return self._release_held() if self.state is State.LISTENING else []
        if ev.name == "max_duration":
            if self.state is State.TRANSFERRING:
                return []
            outcome = CallOutcome.PARTIAL if self.answers else CallOutcome.NO_RESPONSE
            return [StopSpeaking("max_duration")] * (self.state is State.SPEAKING) + \
                self._end_politely("goodbye_timeout", outcome, "max_duration")
        if ev.name == "no_input" and self.state is State.LISTENING and self._pending is not None:
            return self._confirmation_unclear()
        if ev.name == "no_input" and self.state is State.LISTENING and self.step is not None:
            step = self.step
            self._no_input_count += 1
            limit = step.no_input.retries if step.no_input else self.script.settings.no_input_retries
            if self._no_input_count > limit:
                if step.no_input and step.no_input.goto:
                    return self._enter(step.no_input.goto)
                outcome = CallOutcome.PARTIAL if self.answers else CallOutcome.NO_RESPONSE
                return self._end_politely("goodbye_no_input", outcome, "no_input")
            custom = step.no_input.say if step.no_input and step.no_input.say else None
            name = "no_input" if self._no_input_count == 1 else "no_input_again"
            template, then = (custom, None) if custom else (self.script.prompt(name), step.say)
            barge = self.script.settings.barge_in if step.barge_in is None else step.barge_in
            self._after = "listen"
            return [self._say(f"{self.script.id}.{step.id}.no_input", template, step.id, barge, then),
                    self._listen(step)]
        return []

    def _timer(self, name: str, seconds: float) -> StartTimer:
        self._next_token += 1
        self._tokens[name] = self._next_token
        return StartTimer(name, float(seconds), self._next_token)

    # -- recording -------------------------------------------------------------------------------
    def _record(self, step: Step, value: Any, text: str, r: NluResult | None = None) -> list:
        if not step.record:
            return []
        return self._record_raw(step.record, value, text)

    def _record_raw(self, key: str, value: Any, text: str) -> list:
        self.answers[key] = value
        return [RecordAnswer(question=key, value=value, text=text or None)]

    def _classify(self, step: Step, r: NluResult, open_tickets: bool) -> list:
        reading = self._read_tags(r)
        return self._apply_tags(step, r, reading, reading.kept, open_tickets) if reading else []

    def _read_tags(self, r: NluResult, turn: int | None = None) -> _TagReading | None:
        """The classifier's tags of one answer (the turn ``turn``, default the last), refined
        (:func:`refine_tags`); on a satisfied call also the problems kept back only because the
        customer scored well (``held``)."""
        turn = len(self.turns) - 1 if turn is None else turn
        if self.classifier is None or not r.text.strip():
            return None
        result = self.classifier.classify([r.text])[0]
        rest = conceded(r.text)
        if rest is not None:
            # "顾问态度还行,就是一直让我干等着": the complaint is what follows the concession.
            result = after_concession(result, self.classifier.classify([rest])[0])
        self._sentiments.append(result.sentiment)
        # The intent model's "complaint" on words the classifier reads as positive is the negation
        # misread ("服务态度不差,挺热情"); a phrase rule's complaint stands.
        complaint = r.intent == Intent.COMPLAINT.value and (r.rule is not None or result.sentiment != "positive")
        satisfied = self._satisfied and not (complaint and r.rule is not None)
        asr = self.turns[turn].get("asr") if 0 <= turn < len(self.turns) else None
        kept = refine_tags(result.categories, result.scores, result.sentiment, complaint, r.text,
                           satisfied=satisfied, asr=asr)
        held: tuple[str, ...] = ()
        if satisfied:
            unsure = refine_tags(result.categories, result.scores, result.sentiment, complaint, r.text, asr=asr)
            held = tuple(c for c in unsure if c != "praise" and c not in kept)
        return _TagReading(result, kept, held, turn)

    def _apply_tags(self, step: Step, r: NluResult, reading: _TagReading, categories: tuple[str, ...],
                    open_tickets: bool) -> list:
        result, turn = reading.result, reading.turn
        if categories != result.categories and 0 <= turn < len(self.turns):
            self.turns[turn]["tags_read"] = {"classifier": list(result.categories), "kept": list(categories)}
        out: list = []
        for code in categories:
            finding = self.findings.setdefault(code, {"category": code, "confidence": 0.0, "evidence": []})
            finding["confidence"] = max(finding["confidence"], round(result.scores.get(code, 1.0), 4))
            spans = result.evidence.get(code) or ()
            finding["evidence"] += [{"turn": turn, "text": s.text, "start": s.start, "end": s.end} for s in spans] \
                or [{"turn": turn, "text": r.text, "start": 0, "end": len(r.text)}]  # the answer as a whole
            if open_tickets and code != "praise":
                self._ticket(step, code, r.text, r.intent == Intent.COMPLAINT.value)
                out.append(code)
        return out

    def _ticket(self, step: Step, code: str, text: str, high: bool) -> None:
        """A problem for the call's tickets: one per department, opened when the call ends."""
        self._tickets.add(code)
        self._problems.add(FeedbackCategory(code), self._question_text(step), text,
                           high=high or self._low_score is not None)

    def _question_text(self, step: Step) -> str:
        return render(step.say, self.values, self.script.variables, None)[0]

    def _problem(self, step: Step, code: str, text: str, high: bool) -> list:
        finding = self.findings.setdefault(code, {"category": code, "confidence": 1.0, "evidence": []})
        turn = len(self.turns) - 1
        finding["evidence"].append({"turn": turn, "text": text, "start": 0, "end": len(text)})
        self._ticket(step, code, text, high)
        return []

    def _complaint(self, step: Step, r: NluResult) -> list:
        """A complaint heard at a step that asked something else: record it, classify, ticket."""
        out = self._record_raw(f"complaint_{step.id}", r.text, r.text)
        classified = self._classify(step, r, open_tickets=True)
        sure = r.rule in ("complaint", "complaint word", "score+complaint") or r.confidence >= 0.8
        if not classified and not (self._tickets - {"praise"}) and sure:
            # A complaint nobody could place still reaches a person, if it surely was one.
            self._problems.add(None, self._question_text(step), r.text, high=True)
            self._tickets.add("complaint")
        return out

    def _last_text(self) -> str:
        return self.turns[-1]["text"] if self.turns else ""

    # -- ending ----------------------------------------------------------------------------------
    def _on_hangup(self) -> list:
        if self._held and self.state is State.LISTENING:
            # The customer said their piece and hung up: it still counts (tickets, findings).
            out = [a for a in self._release_held() if not isinstance(a, (Say, Listen, StartTimer, CancelTimer))]
            return out + self._on_hangup_finish()
        return self._on_hangup_finish()

    def _on_hangup_finish(self) -> list:
        if self.state is State.DONE:
            return []
        if self.state is State.TRANSFERRING:
            return self._finish(CallOutcome.TRANSFERRED, "customer hung up during transfer")
        if self._ending_outcome is not None:
            return self._finish(self._ending_outcome, self._end_reason)
        if self._pending is not None and self._pending.label == "opt_out" and "opt_out" in self.script.handlers:
            # Asked "以后不再给您打电话了,对吗?" and hung up: the customer's wish is honoured.
            step = self.script.steps[self.script.handlers["opt_out"]]
            self._pending = None
            if step.end:
                text = next((t["text"] for t in reversed(self.turns) if t.get("confirming") == "opt_out"), "")
                return [AddToDnc(reason=text or "opt_out")] + self._finish(CallOutcome(step.end), step.id)
        outcome = CallOutcome.PARTIAL if self.answers else (
            CallOutcome.NO_RESPONSE if not self.turns else CallOutcome.PARTIAL)
        return self._finish(outcome, "customer_hung_up")

    def _on_transfer_failed(self, ev: TransferFailed) -> list:
        if self.state is not State.TRANSFERRING:
            return []
        at = self.clock() + dt.timedelta(minutes=30)
        return [ScheduleCallback(at=at, reason=f"transfer failed: {ev.reason}".strip(), robot=False)] + \
            self._end_politely("transfer_failed", CallOutcome.CALLBACK, "transfer_failed")

    def _finish(self, outcome: CallOutcome, reason: str) -> list:
        if self.state is State.DONE:
            return []
        self.state = State.DONE
        self.outcome = outcome
        out: list = []
        score5 = self._recorded_score("score5")
        if self._low_score is not None and not (self._tickets - {"praise"}):
            score_turn = next((t for t in self.turns if t.get("score5") == self._low_score), None)
            step = self.script.steps.get(score_turn["step"]) if score_turn else None
            self._problems.add(None, self._question_text(step) if step else "",
                               score_turn["text"] if score_turn else "", high=True, kind="follow_up",
                               department=Department.CRM)
        out += self._problems.tickets(score5)
        end = OUTCOME_END[outcome]
        if reason == "customer_hung_up" and outcome in (CallOutcome.PARTIAL, CallOutcome.NO_RESPONSE):
            end = CallEnd.CUSTOMER_HUNG_UP  # "我在开车，挂了啊" and gone: hung up, not silent
        elif outcome is CallOutcome.PARTIAL:
            end = {"no_input": CallEnd.NO_INPUT, "no_match": CallEnd.NO_INPUT,
                   "max_duration": CallEnd.MAX_DURATION}.get(reason, CallEnd.CUSTOMER_HUNG_UP)
        nps = self._recorded_score("nps")
        out.append(Finish(end=end.value, outcome=outcome.value, reason=reason, answers=dict(self.answers),
                          turns=tuple(self.turns), findings=tuple(self.findings.values()),
                          sentiment=self._overall_sentiment(score5), score5=score5, nps=nps))
        logger.info("call %s: conversation ended %s (%s), %d turns", self.call_id, outcome.value, reason,
                    len(self.turns))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("call %s turns: %s", self.call_id, json.dumps(self.turns, ensure_ascii=False, default=str))
        return out

    def _recorded_score(self, expect: str) -> int | None:
        """The score the conversation settled on (recorded at a score step), never a reading the
        customer denied or did not confirm."""
        return next((self.answers[s.record] for s in self.script.steps.values()
                     if s.expect == expect and s.record and isinstance(self.answers.get(s.record), int)), None)

    def _overall_sentiment(self, score5: int | None) -> str | None:
        if "negative" in self._sentiments or (score5 is not None and score5 <= 2):
            return "negative"
        if "positive" in self._sentiments or (score5 is not None and score5 >= 4):
            return "positive"
        if self._sentiments or score5 is not None:
            return "neutral"
        return None


Reply = str | tuple[str, Sequence[ChoiceScore]] | tuple[str, Sequence[ChoiceScore], float] | CustomerHungUp | None


def run_text(conversation: Conversation,
             replies: Sequence[str | None] | Callable[[Conversation], Reply]) -> list:
    """Drive a conversation with typed replies (None = silence): for simulations and tests.

    Every Say is "played" at once, every listen gets the next reply; returns all actions. ``replies``
    may instead be a function of the conversation giving each reply as it is asked for: text, or text
    with the recognizer's scores of the expected answers (and its confidence in the words), None, or
    a :class:`~dialog.actions.CustomerHungUp` (the customer hangs up instead of answering).
    """
    actions = conversation.start(CallAnswered())
    log = list(actions)
    if not callable(replies):
        pending = iter(list(replies))
        replies = lambda _c: next(pending, None)
    clock = 0.0
    guard = 0
    while not conversation.done and guard < 200:
        guard += 1
        timers = {a.name: a for a in actions if isinstance(a, StartTimer)}
        says = [a for a in actions if isinstance(a, Say)]
        if conversation.state is State.GREETING:
            actions = conversation.handle(TimerFired("greeting", timers["greeting"].token)) if "greeting" in timers \
                else []
        elif says:
            actions = conversation.handle(PlaybackFinished(says[-1].prompt_id))
        elif conversation.state is State.LISTENING and "turn_end" in conversation._tokens:
            actions = conversation.handle(TimerFired("turn_end", conversation._tokens["turn_end"]))
        elif conversation.state is State.LISTENING:
            reply = replies(conversation)
            if isinstance(reply, CustomerHungUp):
                log += conversation.handle(reply)
                break
            text, choices, confidence = (tuple(reply) + (1.0,))[:3] if isinstance(reply, tuple) else (reply, (), 1.0)
            if text is None:
                token = conversation._tokens.get("no_input")
                actions = conversation.handle(TimerFired("no_input", token)) if token else []
            else:
                actions = conversation.handle(TranscriptEvent(text, True, clock, clock + 1.0, confidence,
                                                              choices=tuple(choices)))
                clock += 2.0
        elif conversation.state is State.TRANSFERRING:
            actions = conversation.handle(TransferConnected())
        else:
            break
        log += actions
    return log
