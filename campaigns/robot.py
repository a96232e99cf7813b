"""The robot call runner: a real call whose customer audio drives the dialog, live.

:class:`RobotRunner` implements :class:`campaigns.runner.CallRunner` with the three engines of a
worker process: the pjsua2 phone (:mod:`callcenter.telephony`, given by the worker), one speech
recognition model (:mod:`asr`, Whisper or Vosk by ``CALLCENTER_ASR_ENGINE``) behind a
:class:`asr.service.TranscriptionService`, and the dialog models (:mod:`dialog`: NLU, feedback
classifier, scripts, pre-rendered prompts). ``callcenter worker`` builds it through
:func:`make_runner`; ``callcenter dial`` runs one call with it.

One call, on the worker's call thread (:meth:`RobotRunner.run`):

1. dial; ringing and the answer are reported to the observer (the console's live view);
2. on the answer a recognizer stream opens; a pump thread copies the customer's 20 ms frames from
   the phone into it (the media thread only queues them), another turns SIP events (DTMF, the
   end of the call) into dialog events; the recognizer's partial and final transcripts arrive
   on its decoding thread. All of them land in one queue read by the call thread;
3. the call thread feeds each event to the :class:`dialog.engine.Conversation` and executes the
   actions it returns: ``Say`` plays the prompt's pre-rendered audio, ``StopSpeaking`` cuts it
   (barge-in), ``Listen`` switches the recognizer's grammar, timers are deadlines checked by the
   loop, ``Transfer`` is a blind transfer, ``HangUp`` hangs up; storage actions are collected;
4. after the call the recognizer is drained (the customer's last words still count), and the
   telephony result, the conversation's record and the full transcript (robot and customer
   lines, in time order) become one :class:`callcenter.domain.calls.CallResult`.

Failures on our side (a prompt without audio, a recognizer error) hang up politely and come back
as ``CallResult.error``; the call record is always returned.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from callcenter.config import Settings
from callcenter.domain import (
    CallDisposition,
    DtmfEvent,
    FeedbackCategory,
    Intent,
    Sentiment,
    Speaker,
    TranscriptEvent,
)
from callcenter.domain.calls import (
    AddToDnc,
    CallEnd,
    CallResult,
    Evidence,
    Finding,
    HangUp,
    OpenTicket,
    RecordAnswer,
    ScheduleCallback,
    Transfer,
    Turn,
)
from callcenter.domain.phone import dial_digits, mask_phone
from campaigns.runner import CallObserver, CallRequest

logger = logging.getLogger(__name__)

POLL = 0.05  # seconds between checks of the playback and timers while nothing arrives
# Speech that began before the current prompt (or within this much of its start) is the tail of
# the customer's previous answer, split off by a pause, not an interruption of the new prompt: it
# goes into the transcript but not to the dialog (which would stop the prompt and read the tail as
# the answer to a question the customer has not heard yet).
TAIL_GRACE = 0.3
DRAIN_SECONDS = 8.0  # how long the recognizer may take to finish the last utterance after hang-up
_STORED = (RecordAnswer, OpenTicket, ScheduleCallback, AddToDnc, Transfer, HangUp)


def make_runner(phone, settings: Settings) -> RobotRunner:
    """The worker's runner factory (``campaigns.worker.DEFAULT_RUNNER``): models loaded, prompts
    converted to the phone's rate, before the first call is taken."""
    runner = RobotRunner(phone, RobotModels.load(settings), settings)
    started = time.monotonic()
    ready = runner.warm_up()
    logger.info("robot ready: %d prompt fragments at %d Hz in %.1f s", ready, phone.sample_rate,
                time.monotonic() - started)
    return runner


@dataclass
class RobotModels:
    """What every call of a process shares: loaded once, before the first call."""

    engine: Any  # asr.protocol.Engine
    nlu: Any  # dialog.nlu.Nlu
    classifier: Any | None  # dialog.classifier.FeedbackClassifier, used under ``classifier_lock``
    scripts: dict  # script id -> dialog.script.Script
    library: Any  # dialog.prompts.PromptLibrary
    classifier_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, settings: Settings, *, engine=None) -> RobotModels:
        """Load the configured models; errors name what is missing and how to install it.

        Raises:
            RuntimeError: a model is not installed or does not load.
        """
        from asr import engine_from_settings
        from campaigns.scripts import script_dirs
        from dialog.classifier import ModelError
        from dialog.models import open_feedback_classifier, open_nlu
        from dialog.prompts import deployment_library
        from dialog.script import load_scripts

        try:
            nlu = open_nlu(settings.models_dir, ZoneInfo(settings.timezone))
            classifier = open_feedback_classifier(settings.models_dir, settings.classifier_model,
                                                  threads=settings.nlp_threads)
        except ModelError as exc:
            raise RuntimeError(f"dialog models: {exc}") from None
        scripts = load_scripts([d for d in script_dirs(settings.data_dir) if d.is_dir()])
        if engine is None:
            engine = engine_from_settings(settings)
        return cls(engine, nlu, classifier, scripts, deployment_library(settings.data_dir))

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()


@functools.lru_cache(maxsize=32)
def _versioned_script(script_id: str, text: str):
    """A campaign's script version, parsed once per process (parsing costs ~10 ms a call otherwise).

    Raises:
        ScriptError: the stored text does not parse (it did when the console saved it).
    """
    from dialog.script import parse_script

    return parse_script(text, f"{script_id}.yaml")


class _LockedClassifier:
    """The feedback classifier is thread-compatible, not thread-safe: calls take turns."""

    def __init__(self, classifier, lock: threading.Lock) -> None:
        self._classifier = classifier
        self._lock = lock

    def classify(self, texts):
        with self._lock:
            return self._classifier.classify(texts)


class RobotRunner:
    """Robot revisit calls on one phone; see the module docstring. Thread-safe: one thread per call."""

    def __init__(self, phone, models: RobotModels, settings: Settings) -> None:
        from asr.service import TranscriptionService

        self.phone = phone
        self.models = models
        self.settings = settings
        self.asr = TranscriptionService(models.engine)
        self._classifier = _LockedClassifier(models.classifier, models.classifier_lock) \
            if models.classifier is not None else None
        self._pcm: dict[str, bytes] = {}  # fragment text -> PCM at the phone's rate
        self._pcm_lock = threading.Lock()
        self._closed = False

    @property
    def capacity(self) -> int:
        return self.phone.capacity

    def run(self, request: CallRequest, observer: CallObserver) -> CallResult:
        return _Call(self, request, observer).run()

    def prompt_pcm(self, fragments: tuple[str, ...]) -> bytes:
        """A prompt's audio at the phone's rate: its fragments (each converted once, see
        :meth:`warm_up`) joined as :meth:`dialog.prompts.PromptLibrary.pcm` joins them.

        Raises:
            MissingAudio: a fragment has no rendered audio.
        """
        from dialog.prompts import JOIN_SILENCE_S

        gap = bytes(2 * int(JOIN_SILENCE_S * self.phone.sample_rate))
        pieces: list[bytes] = []
        for i, text in enumerate(fragments):
            if i:
                pieces.append(gap)
            pieces.append(self._fragment(text))
        return b"".join(pieces)

    def _fragment(self, text: str) -> bytes:
        with self._pcm_lock:
            pcm = self._pcm.get(text)
        if pcm is None:
            from dialog.prompts import read_wav

            pcm = read_wav(self.models.library.path(text), self.phone.sample_rate).astype("<i2").tobytes()
            with self._pcm_lock:
                self._pcm[text] = pcm
        return pcm

    def warm_up(self) -> int:
        """Convert every fixed fragment of the installed scripts and the shared vocabulary (names,
        dates) to the phone's rate now, so that no prompt waits for resampling during a call
        (the first conversion also imports scipy: about a second). Returns how many were ready."""
        from dialog.prompts import MissingAudio, fixed_fragments, vocabulary

        wanted = set(vocabulary())
        for script in self.models.scripts.values():
            wanted |= fixed_fragments(script)
        ready = 0
        for text in sorted(wanted):
            if not self.models.library.has(text):
                continue
            try:
                self._fragment(text)
                ready += 1
            except MissingAudio as exc:
                logger.warning("prompt audio: %s", exc)
        return ready

    def recording_path(self, request: CallRequest) -> Path:
        root = self.settings.recordings_dir or self.settings.data_dir / "recordings"
        day = dt.datetime.now(ZoneInfo(request.store_timezone)).strftime("%Y/%m/%d")
        return Path(root) / day / f"call-{request.call_id}-{request.attempt}.wav"

    def transfer_target(self, script_target: str) -> str | None:
        """The agents' extension: ``CALLCENTER_TRANSFER_TARGET``, or the script's when it is dialable."""
        if self.settings.transfer_target:
            return self.settings.transfer_target
        if script_target.startswith("sip:") or script_target.replace("+", "").isdigit():
            return script_target
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.asr.close()
        finally:
            self.models.close()


class _Ended:
    """The call ended (SIP); carries the telephony result."""

    def __init__(self, result) -> None:
        self.result = result


class _Call:
    """One call's state: the conversation, the media, the transcript. Lives on one call thread."""

    def __init__(self, runner: RobotRunner, request: CallRequest, observer: CallObserver) -> None:
        self.runner = runner
        self.request = request
        self.observer = observer
        self.tz = ZoneInfo(request.store_timezone)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.actions: list = []
        self.robot_turns: list[Turn] = []
        self.heard: list[TranscriptEvent] = []  # the customer's final utterances, as recognised
        self.finish = None  # dialog.actions.Finish
        self.error: str | None = None
        self.handle = None
        self.stream = None
        self.answered_mono: float | None = None
        self.playback = None
        self.playing = None  # the Say being played
        self.play_started = 0.0
        self.timers: dict[str, tuple[float, int]] = {}  # name -> (monotonic deadline, token)
        self._seq = itertools.count(1)  # transcript line numbers; next() is atomic in CPython
        self.partial_seq: int | None = None
        self.hung_up = False
        self.telephony_result = None

    # -- the call ----------------------------------------------------------------------------
    def run(self) -> CallResult:
        from callcenter.telephony import TelephonyError
        from dialog.engine import Conversation

        req = self.request
        runner = self.runner
        if req.script_text is not None:
            from dialog.script import ScriptError

            try:
                script = _versioned_script(req.script, req.script_text)
            except ScriptError as exc:
                return self._failed_before_dial(f"the campaign's version of script {req.script!r} is invalid: {exc}")
        else:
            script = runner.models.scripts.get(req.script)
        if script is None:
            return self._failed_before_dial(f"script {req.script!r} is not installed")
        refresh = getattr(runner.models.library, "refresh", None)
        if refresh is not None:
            refresh()  # a store name the console rendered since the worker started
        self.conversation = Conversation(script, dict(req.context), runner.models.nlu,
                                         classifier=runner._classifier, library=runner.models.library,
                                         clock=lambda: dt.datetime.now(self.tz), call_id=req.call_id)
        record = runner.recording_path(req)
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("call %s: cannot create %s (%s); not recording", req.call_id, record.parent, exc)
            record = False
        try:
            self.handle = runner.phone.dial(
                req.phone if req.phone.startswith("sip:") else dial_digits(req.phone), call_id=f"c{req.call_id}a{req.attempt}",
                ring_timeout=runner.settings.sip_ring_timeout,
                max_seconds=script.settings.max_call_seconds + 30, record=record)
        except TelephonyError as exc:
            return self._failed_before_dial(f"dial {mask_phone(req.phone)}: {exc}")
        try:
            self._converse()
        except Exception as exc:  # our failure must not lose the call record
            logger.exception("call %s: robot failed", req.call_id)
            self.error = f"{type(exc).__name__}: {exc}"
            if not self.handle.ended:
                self.handle.hangup()
        result = self.telephony_result or self.handle.wait_ended(timeout=30)
        if self.stream is not None:
            self._drain()
        return self._result(result)

    def _converse(self) -> None:
        handle = self.handle
        events = threading.Thread(target=self._pump_events, name=f"call-{self.request.call_id}-events",
                                  daemon=True)
        events.start()
        # Until the answer only SIP events matter.
        while self.answered_mono is None:
            item = self.inbox.get()
            if isinstance(item, _Ended):
                self.telephony_result = item.result
                return
            if item == "answered":
                self._on_answer()
        while True:
            timeout = self._next_wakeup()
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, _Ended):
                self.telephony_result = item.result
                self.hung_up = True
                self.playback = self.playing = None
                if self.stream is not None and not self.conversation.done:
                    self._hear_last_words()
                if not self.conversation.done:
                    from dialog.actions import CustomerHungUp

                    self._feed(CustomerHungUp())
                return
            if isinstance(item, TranscriptEvent) and self._is_tail(item):
                item = None
            if item is not None:
                self._feed(item)
            self._check_playback()
            self._check_timers()
            if self.conversation.done and not handle.ended and not self.hung_up:
                # Finished without a HangUp action (an error): hang up and wait for the BYE.
                handle.hangup()
                self.hung_up = True

    def _on_answer(self) -> None:
        from dialog.actions import CallAnswered

        self.answered_mono = time.monotonic()
        self.observer.answered()
        self.stream = self.runner.asr.open_stream(f"call-{self.request.call_id}", self._on_transcript)
        threading.Thread(target=self._pump_audio, name=f"call-{self.request.call_id}-audio", daemon=True).start()
        self._execute(self.conversation.start(CallAnswered(dt.datetime.now(self.tz))))

    # -- threads feeding the inbox -------------------------------------------------------------
    def _pump_events(self) -> None:
        from callcenter.telephony import CallEventType

        for ev in self.handle.events():
            if ev.type is CallEventType.RINGING:
                self.observer.ringing()
            elif ev.type is CallEventType.ANSWERED:
                self.inbox.put("answered")
            elif ev.type is CallEventType.DTMF and ev.digit:
                self.inbox.put(DtmfEvent(ev.digit, self._now()))
            elif ev.type is CallEventType.ENDED:
                self.inbox.put(_Ended(ev.result))
                return

    def _pump_audio(self) -> None:
        stream = self.stream
        for frame in self.handle.audio:
            stream.push(frame)
        stream.finish()

    def _on_transcript(self, _stream_id: str, event: TranscriptEvent) -> None:
        """On the recognizer's decoding thread: publish, then hand to the call thread."""
        if self.partial_seq is None:
            self.partial_seq = next(self._seq)
        seq = self.partial_seq
        if event.is_final:
            self.partial_seq = None
            if event.text.strip():
                self.heard.append(event)
        if event.text.strip() or event.is_final:
            self.observer.transcript(seq, Speaker.CUSTOMER, event.text, is_final=event.is_final,
                                     start=event.start, end=event.end)
        self.inbox.put(event)

    # -- the dialog ------------------------------------------------------------------------------
    def _feed(self, event) -> None:
        if self.conversation.done:
            return
        self._execute(self.conversation.handle(event))

    def _execute(self, actions: list) -> None:
        from dialog.actions import CancelTimer, Finish, Listen, Say, StartTimer, StopSpeaking

        for action in actions:
            if isinstance(action, Say):
                self._say(action)
            elif isinstance(action, Listen):
                if self.stream is not None:
                    self.stream.set_grammar(list(action.grammar) if action.grammar else None)
                    # A closed question's answers: the recognizer scores them against the audio.
                    self.stream.set_choices(action.choices)
            elif isinstance(action, StopSpeaking):
                self._stop_speaking()
            elif isinstance(action, StartTimer):
                self.timers[action.name] = (time.monotonic() + action.seconds, action.token)
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.name, None)
            elif isinstance(action, Finish):
                self.finish = action
            elif isinstance(action, _STORED):
                self.actions.append(action)
                if isinstance(action, HangUp):
                    self._stop_speaking(cut=False)
                    if not self.handle.ended:
                        self.handle.hangup()
                    self.hung_up = True
                elif isinstance(action, Transfer):
                    self._transfer(action)

    def _say(self, say) -> None:
        from dialog.actions import PlaybackFinished
        from dialog.prompts import MissingAudio

        if self.handle.ended:
            return
        try:
            pcm = self.runner.prompt_pcm(tuple(say.fragments))
        except MissingAudio as exc:
            # Without audio the customer would hear silence: end the call, say why.
            self.error = f"prompt {say.prompt_id}: {exc}"
            logger.error("call %s: %s", self.request.call_id, self.error)
            self.handle.hangup()
            self.hung_up = True
            return
        if self.playback is not None:  # the engine never overlaps prompts, but be safe
            self._stop_speaking()
        start = self._now()
        turn_seq = next(self._seq)
        self.playback = self.handle.play_pcm(pcm, self.runner.phone.sample_rate)
        self.playing = say
        self.play_started = start
        self.robot_turns.append(Turn(Speaker.ROBOT, say.text, start, start + len(pcm) / (2 * self.runner.phone.sample_rate),
                                     prompt_id=say.prompt_id))
        self.observer.transcript(turn_seq, Speaker.ROBOT, say.text, is_final=True, start=start,
                                 end=self.robot_turns[-1].end)
        if not pcm:
            self.playback = self.playing = None
            self._feed(PlaybackFinished(say.prompt_id))

    def _stop_speaking(self, cut: bool = True) -> None:
        if self.playback is None:
            return
        if cut:
            self.handle.stop_playback()
            now = self._now()
            last = self.robot_turns[-1]
            if now < last.end:  # the customer cut the prompt short: the line ends where it stopped
                self.robot_turns[-1] = Turn(last.speaker, last.text, last.start, now, prompt_id=last.prompt_id)
        self.playback = self.playing = None

    def _is_tail(self, event: TranscriptEvent) -> bool:
        if self.playback is None or event.start >= self.play_started + TAIL_GRACE:
            return False
        if event.is_final:
            logger.debug("call %s: %r began before the prompt; kept as the previous answer's tail",
                         self.request.call_id, event.text)
        return True

    def _check_playback(self) -> None:
        from dialog.actions import PlaybackFinished

        if self.playback is not None and self.playback.done:
            say = self.playing
            self.playback = self.playing = None
            self._feed(PlaybackFinished(say.prompt_id))

    def _check_timers(self) -> None:
        from dialog.actions import TimerFired

        now = time.monotonic()
        for name, (deadline, token) in list(self.timers.items()):
            if now >= deadline and self.timers.get(name) == (deadline, token):
                del self.timers[name]
                self._feed(TimerFired(name, token))

    def _next_wakeup(self) -> float:
        if self.playback is not None or self.conversation.done:
            return POLL
        if not self.timers:
            return 1.0
        return max(0.0, min(min(d for d, _ in self.timers.values()) - time.monotonic(), 1.0))

    def _transfer(self, action: Transfer) -> None:
        from dialog.actions import TransferConnected

        target = self.runner.transfer_target(action.target)
        if target is None:
            self._transfer_failed("no agent extension configured (CALLCENTER_TRANSFER_TARGET)")
            return
        try:
            ok = self.handle.transfer(target)
        except Exception as exc:  # noqa: BLE001 - a failed transfer ends in a callback, not a crash
            self._transfer_failed(str(exc))
            return
        if ok:
            self.observer.transferred(action.agent_id)
            self._feed(TransferConnected())
        else:
            self._transfer_failed("the far end refused the transfer")

    def _transfer_failed(self, reason: str) -> None:
        """The technical reason goes to the log and the call's ``error`` (the console's
        administration page lists them); the customer hears that nobody is free and the agents
        get a callback task, worded for them (campaigns.outcomes)."""
        from dialog.actions import TransferFailed

        logger.error("call %s: transfer to an agent failed: %s", self.request.call_id, reason)
        if self.error is None:
            self.error = f"transfer failed: {reason}"
        self._feed(TransferFailed(reason))

    def _now(self) -> float:
        """Seconds since the answer (the recognizer's time base)."""
        return 0.0 if self.answered_mono is None else round(time.monotonic() - self.answered_mono, 3)

    def _hear_last_words(self) -> None:
        """The customer hung up: what they said last ("我在开车，不方便，挂了啊") still reaches the
        dialog before the hang-up does (it may open a ticket or explain the ending)."""
        self.stream.finish()
        self.stream.join(timeout=DRAIN_SECONDS)
        while not self.conversation.done:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, TranscriptEvent) and item.is_final and item.text.strip():
                self._feed(item)

    def _drain(self) -> None:
        """Let the recognizer finish the customer's last words (they belong in the transcript)."""
        self.stream.finish()
        self.stream.join(timeout=DRAIN_SECONDS)
        while True:  # transcripts that arrived after the conversation ended are kept in self.heard
            try:
                self.inbox.get_nowait()
            except queue.Empty:
                break
        if self.stream.error is not None and self.error is None:
            self.error = f"speech recognition: {self.stream.error}"

    # -- the record -----------------------------------------------------------------------------
    def _failed_before_dial(self, error: str) -> CallResult:
        logger.error("call %s: %s", self.request.call_id, error)
        return CallResult(disposition=CallDisposition.FAILED, sip_reason=error[:200], error=error,
                          ended_at=dt.datetime.now(dt.UTC))

    def _result(self, tel) -> CallResult:
        def when(epoch: float | None) -> dt.datetime | None:
            return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)

        turns, index = self._turns()
        fin = self.finish
        answered = tel is not None and tel.disposition is CallDisposition.ANSWERED
        end = None
        if answered:
            end = CallEnd(fin.end) if fin is not None else (CallEnd.ERROR if self.error else CallEnd.CUSTOMER_HUNG_UP)
        findings = []
        for f in (fin.findings if fin is not None else ()):
            try:
                category = FeedbackCategory(f["category"])
            except ValueError:
                continue
            evidence = tuple(Evidence(index[e["turn"]], e["text"], int(e["start"]), int(e["end"]))
                             for e in f.get("evidence", ()) if e.get("turn") in index)
            findings.append(Finding(category, f.get("confidence"), evidence))
        recording = None
        if tel is not None and tel.recording is not None:
            recording = _relative(Path(tel.recording), self.runner.settings.data_dir)
        return CallResult(
            disposition=tel.disposition if tel is not None else CallDisposition.FAILED,
            sip_code=tel.sip_code if tel is not None else None,
            sip_reason=(tel.reason or None) if tel is not None else None,
            sip_call_id=getattr(self.handle, "sip_call_id", None) or None,
            hangup_by=tel.hangup_by.value if tel is not None else None,
            ringing_at=when(tel.ringing_at) if tel is not None else None,
            answered_at=when(tel.answered_at) if tel is not None else None,
            ended_at=when(tel.ended_at) if tel is not None else dt.datetime.now(dt.UTC),
            end=end,
            turns=tuple(turns),
            actions=tuple(self.actions),
            findings=tuple(findings),
            sentiment=Sentiment(fin.sentiment) if fin is not None and fin.sentiment else None,
            score5=fin.score5 if fin is not None else None,
            nps=fin.nps if fin is not None else None,
            recording=recording,
            error=self.error,
        )

    def _turns(self) -> tuple[list[Turn], dict[int, int]]:
        """Robot and customer lines in time order; ``index`` maps the conversation's turn numbers
        (which the findings' evidence uses) to positions in that list.

        Customer lines are the conversation's turns (with their NLU reading) plus whatever the
        recognizer heard that the conversation did not read as an answer (the first "喂", words
        after the robot's goodbye, words over a prompt that could not be interrupted)."""
        fin = self.finish
        understood = list(fin.turns) if fin is not None else []
        rows: list[tuple[float, int, Turn, int | None]] = []
        covered: list[tuple[float, float]] = []
        for i, t in enumerate(understood):
            text = t.get("text") or ""
            if t.get("dtmf"):
                text = f"[按键] {text}"
            intent = t.get("intent")
            try:
                intent = Intent(intent) if intent else None
            except ValueError:
                intent = None
            start, end = float(t.get("start") or 0.0), float(t.get("end") or 0.0)
            rows.append((start, 1, Turn(Speaker.CUSTOMER, text, start, end, intent, t.get("confidence")), i))
            if not t.get("dtmf"):
                covered.append((start, end))
        for ev in self.heard:
            if any(s - 0.05 <= ev.start and ev.end <= e + 0.05 for s, e in covered):
                continue
            rows.append((ev.start, 1, Turn(Speaker.CUSTOMER, ev.text.strip(), ev.start, ev.end,
                                           confidence=round(ev.confidence, 4)), None))
        rows += [(t.start, 0, t, None) for t in self.robot_turns]
        rows.sort(key=lambda r: (r[0], r[1]))
        index = {src: pos for pos, (_, _, _, src) in enumerate(rows) if src is not None}
        return [r[2] for r in rows], index


def _relative(path: Path, data_dir: Path) -> str:
    """A recording's path relative to the data directory (the console serves only those)."""
    try:
        return str(path.resolve().relative_to(Path(data_dir).resolve()))
    except ValueError:
        return str(path)


def describe(result: CallResult) -> dict:
    """JSON-ready summary of a robot call (``callcenter dial --json``)."""
    from callcenter.domain.calls import action_to_dict

    return {
        "disposition": result.disposition.value,
        "sip_code": result.sip_code,
        "end": result.end.value if result.end else None,
        "talk_seconds": round((result.ended_at - result.answered_at).total_seconds(), 2)
        if result.answered_at and result.ended_at else 0.0,
        "score5": result.score5,
        "nps": result.nps,
        "sentiment": result.sentiment.value if result.sentiment else None,
        "categories": [f.category.value for f in result.findings],
        "turns": [{"speaker": t.speaker.value, "start": t.start, "end": t.end, "text": t.text,
                   **({"intent": t.intent.value} if t.intent else {})} for t in result.turns],
        "actions": [action_to_dict(a) for a in result.actions],
        "findings": [{"category": f.category.value, "confidence": f.confidence,
                      "evidence": [e.text for e in f.evidence]} for f in result.findings],
        "recording": result.recording,
        "error": result.error,
    }


# Script variables of a one-off call without a customer record (``callcenter dial``).
ONE_OFF_VALUES = {"surname": "王", "title": "先生", "store": "我们店", "model": "", "plate": "",
                  "advisor": "", "visit_date": None, "insurance_expiry": None, "warranty_end": None}


def default_context(values: Mapping[str, Any] | None = None) -> dict:
    """``ONE_OFF_VALUES`` overridden by ``values`` (``--var name=value``)."""
    return {**ONE_OFF_VALUES, **(values or {})}
