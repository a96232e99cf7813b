"""The robot call runner on a FakePhone: the real runner, conversation and NLU rules, with a
scripted recognizer (tone bursts in the customer's audio become the next scripted words) and every
prompt rendered as a 0.2 s tone, so a whole post-service call takes seconds of real time."""

from __future__ import annotations

import json
import threading
import wave
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from callcenter.config import Settings
from callcenter.domain import AudioFrame, CallDisposition, Speaker, TranscriptEvent
from callcenter.domain.calls import AddToDnc, CallEnd, OpenTicket, RecordAnswer
from callcenter.telephony.fake import FakeOutcome, FakePhone
from campaigns.robot import RobotModels, RobotRunner, describe
from campaigns.runner import CallRequest
from dialog.classifier import Classification, Span
from dialog.nlu import Nlu
from dialog.prompts import PromptLibrary, fixed_fragments, fragment_id, vocabulary
from dialog.script import shipped_scripts

RATE = 16000
BURST = 0.4  # seconds of "speech" per customer turn
GAP = 2.0  # seconds from one customer turn to the next


class ScriptedEngine:
    """An Engine whose recognizers hear the n-th tone burst as the n-th scripted text."""

    name = "scripted"

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.grammars: list = []
        self.choices: list = []

    def recognizer(self, *, grammar=None, partials: bool = True):
        return _ScriptedRecognizer(self)


class _ScriptedRecognizer:
    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.turn = 0
        self.start: float | None = None
        self.quiet = 0.0
        self.t = 0.0

    def set_grammar(self, phrases) -> None:
        self.engine.grammars.append(phrases)

    def set_choices(self, choices) -> None:
        self.engine.choices.append(choices)

    def accept(self, frame: AudioFrame) -> list[TranscriptEvent]:
        out = []
        pcm = np.frombuffer(frame.audio, dtype="<i2")
        for i in range(0, len(pcm), 320):  # 20 ms pieces: catch-up batches arrive merged
            loud = np.abs(pcm[i:i + 320]).max(initial=0) > 1000
            self.t += 320 / frame.sample_rate
            if loud and self.start is None:
                self.start = self.t - 0.02
                out.append(TranscriptEvent("", False, round(self.start, 3), round(self.start, 3)))
            elif loud:
                self.quiet = 0.0
            elif self.start is not None:
                self.quiet += 0.02
                if self.quiet >= 0.3:  # the VAD's end of utterance
                    text = self.engine.texts[self.turn] if self.turn < len(self.engine.texts) else ""
                    out.append(TranscriptEvent(text, True, round(self.start, 3), round(self.t - 0.3, 3), 0.9))
                    self.turn += 1
                    self.start, self.quiet = None, 0.0
        return out

    def finish(self) -> list[TranscriptEvent]:
        return []


class KeywordClassifier:
    name = "keywords"
    words: ClassVar[dict[str, str]] = {"等": "wait_time", "贵": "price"}

    def classify(self, texts):
        out = []
        for t in texts:
            cats = tuple(dict.fromkeys(c for w, c in self.words.items() if w in t))
            evidence = {c: tuple(Span(t.index(w), t.index(w) + len(w), w) for w, cc in self.words.items()
                                 if cc == c and w in t) for c in cats}
            out.append(Classification(t, cats, "negative" if cats else "neutral", {c: 0.9 for c in cats}, {},
                                      evidence))
        return out


def customer_pcm(turns: int, first: float = 0.3, total: float | None = None) -> bytes:
    """Silence with a 440 Hz burst at ``first``, then every GAP seconds."""
    total = total or first + turns * GAP + 2.0
    audio = np.zeros(int(total * RATE), dtype=np.float64)
    t = np.arange(int(BURST * RATE)) / RATE
    for k in range(turns):
        at = int((first + k * GAP) * RATE)
        audio[at:at + t.size] = 0.3 * np.sin(2 * np.pi * 440 * t)
    return (audio * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def tone_library(tmp_path_factory) -> PromptLibrary:
    """Every fragment of the shipped scripts as one 0.2 s tone."""
    folder = tmp_path_factory.mktemp("prompts")
    tone = (0.2 * 32767 * np.sin(2 * np.pi * 660 * np.arange(int(0.2 * 8000)) / 8000)).astype("<i2")
    with wave.open(str(folder / "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone.tobytes())
    fragments = set(vocabulary())
    for script in shipped_scripts().values():
        fragments |= fixed_fragments(script)
    names = {}
    for text in fragments:
        name = fragment_id(text) + ".wav"
        (folder / name).hardlink_to(folder / "tone.wav")
        names[text] = name
    (folder / "manifest.json").write_text(json.dumps({"format": "pcm16", "sample_rate": 8000,
                                                      "fragments": names}, ensure_ascii=False))
    return PromptLibrary(folder)


class Observer:
    def __init__(self) -> None:
        self.events: list = []
        self.lock = threading.Lock()

    def ringing(self):
        self.events.append(("ringing",))

    def answered(self):
        self.events.append(("answered",))

    def transcript(self, seq, speaker, text, *, is_final, start, end):
        with self.lock:
            self.events.append(("transcript", seq, speaker, text, is_final))

    def transferred(self, agent_id):
        self.events.append(("transferred", agent_id))


def make_runner(tmp_path, library, texts, outcome: FakeOutcome | None = None) -> tuple[RobotRunner, FakePhone]:
    settings = Settings(data_dir=tmp_path / "var")
    phone = FakePhone(default=outcome or FakeOutcome(customer_audio=customer_pcm(len(texts))), sample_rate=RATE,
                      recordings_dir=tmp_path / "var" / "recordings")
    models = RobotModels(engine=ScriptedEngine(texts), nlu=Nlu(), classifier=KeywordClassifier(),
                         scripts=shipped_scripts(), library=library)
    runner = RobotRunner(phone, models, settings)
    runner.warm_up()
    return runner, phone


def request(script: str = "post_service", phone: str = "13900000001") -> CallRequest:
    return CallRequest(call_id=7, task_id=3, attempt=1, campaign_id=1, customer_id=5, store_id=1, phone=phone,
                       script=script, context={"surname": "王", "title": "先生", "store": "我们店"})


def test_a_whole_revisit_call_runs_on_the_customers_words(tmp_path, tone_library):
    texts = ["喂你好", "是的", "三分", "等的时间太长了", "挺好的", "洗了", "准时", "没有了"]
    runner, phone = make_runner(tmp_path, tone_library, texts)
    observer = Observer()
    try:
        result = runner.run(request(), observer)
    finally:
        runner.close()
        phone.close()
    assert result.disposition is CallDisposition.ANSWERED and result.error is None, describe(result)
    assert result.end is CallEnd.COMPLETED and result.score5 == 3, describe(result)
    customer = [t.text for t in result.turns if t.speaker is Speaker.CUSTOMER]
    assert customer == texts, describe(result)
    starts = [t.start for t in result.turns]
    assert starts == sorted(starts)  # robot and customer lines in time order
    robot = [t for t in result.turns if t.speaker is Speaker.ROBOT]
    assert robot[0].prompt_id == "post_service.identity" and robot[-1].prompt_id == "post_service.end_thanks"
    answers = {a.question: a.value for a in result.actions if isinstance(a, RecordAnswer)}
    assert answers["consent"] is True and answers["overall_score"] == 3
    tickets = [a for a in result.actions if isinstance(a, OpenTicket)]
    assert [t.category.value for t in tickets] == ["wait_time"]
    (finding,) = result.findings
    evidence = finding.evidence[0]
    assert result.turns[evidence.turn].text[evidence.start:evidence.end] == "等"  # points into the transcript
    assert result.recording and result.recording.startswith("recordings/")
    assert (tmp_path / "var" / result.recording).is_file()
    # The console saw the call live: both speakers, and each line once as final.
    kinds = [e[0] for e in observer.events]
    assert kinds[:2] == ["ringing", "answered"]
    finals = [(e[2], e[3]) for e in observer.events if e[0] == "transcript" and e[4]]
    assert [t for s, t in finals if s is Speaker.CUSTOMER] == texts
    assert sum(1 for s, _ in finals if s is Speaker.ROBOT) == len(robot)
    seqs = [e[1] for e in observer.events if e[0] == "transcript" and e[4]]
    assert len(seqs) == len(set(seqs))
    # The prompts were played on the call.
    assert len(phone.calls[0].played) >= len(robot)


def test_an_opt_out_goes_on_the_do_not_call_list(tmp_path, tone_library):
    runner, phone = make_runner(tmp_path, tone_library, ["喂", "以后别再给我打这种电话了"])
    try:
        result = runner.run(request(), Observer())
    finally:
        runner.close()
        phone.close()
    assert result.end is CallEnd.OPT_OUT
    assert any(isinstance(a, AddToDnc) for a in result.actions)


def test_a_customer_who_hangs_up_mid_call_leaves_a_complete_record(tmp_path, tone_library):
    texts = ["喂", "是的"]
    outcome = FakeOutcome(customer_audio=customer_pcm(2, total=3.0), hangup_after_audio=True)
    runner, phone = make_runner(tmp_path, tone_library, texts, outcome)
    try:
        result = runner.run(request(), Observer())
    finally:
        runner.close()
        phone.close()
    assert result.disposition is CallDisposition.ANSWERED and result.hangup_by == "remote"
    assert result.end is CallEnd.CUSTOMER_HUNG_UP
    assert [t.text for t in result.turns if t.speaker is Speaker.CUSTOMER] == texts
    assert any(isinstance(a, RecordAnswer) and a.question == "consent" for a in result.actions)


def test_busy_is_a_disposition_without_a_conversation(tmp_path, tone_library):
    runner, phone = make_runner(tmp_path, tone_library, [], FakeOutcome(CallDisposition.BUSY, ring_seconds=0.1))
    try:
        result = runner.run(request(), Observer())
    finally:
        runner.close()
        phone.close()
    assert result.disposition is CallDisposition.BUSY and result.sip_code == 486
    assert result.turns == () and result.end is None and result.error is None


def test_an_unknown_script_fails_before_dialling(tmp_path, tone_library):
    runner, phone = make_runner(tmp_path, tone_library, [])
    try:
        result = runner.run(request(script="no_such_script"), Observer())
    finally:
        runner.close()
        phone.close()
    assert result.disposition is CallDisposition.FAILED and "no_such_script" in result.error
    assert phone.calls == []


def test_a_prompt_without_audio_ends_the_call_with_the_reason(tmp_path):
    runner, phone = make_runner(tmp_path, PromptLibrary(tmp_path / "empty"), ["喂"])
    try:
        result = runner.run(request(), Observer())
    finally:
        runner.close()
        phone.close()
    assert result.disposition is CallDisposition.ANSWERED and result.hangup_by == "local"
    assert result.error and "post_service.identity" in result.error


def test_a_transfer_without_an_agent_extension_promises_a_callback_and_says_why(tmp_path, tone_library, caplog):
    """No CALLCENTER_TRANSFER_TARGET: the customer hears that nobody is free, the call is not
    "transferred", and the configuration problem is in the call's error and the log (issue 12)."""
    from callcenter.domain.calls import ScheduleCallback, Transfer
    from callcenter.storage.models import CallOutcome
    from campaigns.rules import derive_outcome

    runner, phone = make_runner(tmp_path, tone_library, ["喂你好", "我要转人工"])
    try:
        with caplog.at_level("ERROR", logger="campaigns.robot"):
            result = runner.run(request(), Observer())
    finally:
        runner.close()
        phone.close()
    assert any(isinstance(a, Transfer) for a in result.actions), describe(result)
    callbacks = [a for a in result.actions if isinstance(a, ScheduleCallback)]
    assert callbacks and not callbacks[0].robot, describe(result)
    assert result.end is CallEnd.CALLBACK and derive_outcome(result) is CallOutcome.TRANSFER_FAILED
    assert "CALLCENTER_TRANSFER_TARGET" in (result.error or "")
    assert any("call 7" in r.getMessage() and "CALLCENTER_TRANSFER_TARGET" in r.getMessage() for r in caplog.records)
