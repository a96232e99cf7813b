"""Turn-taking: the robot's frames in (its real rendered prompts through G.711), decisions out.

``Line`` plays the robot into a TurnTaker 20 ms at a time and plays the customer's lines for as
long as their WAVs last, so times are those of a real call, without SIP.
"""

from __future__ import annotations

import pytest

from callcenter.telephony.audio import load_prompt
from campaigns.simulator.turns import FRAME, HangUp, Speak, State, StopSpeaking, Timing, TurnTaker


def frames(pcm: bytes) -> list[bytes]:
    pcm = pcm + bytes(-len(pcm) % 320)
    return [pcm[i:i + 320] for i in range(0, len(pcm), 320)]


class Line:
    def __init__(self, turns: TurnTaker) -> None:
        self.turns = turns
        self.t = 0.0
        self.log: list[tuple[float, object]] = []
        self.playing_until: float | None = None
        self._ended_at: float | None = None

    def _take(self, actions: list) -> None:
        for action in actions:
            self.log.append((round(self.t, 2), action))
            if isinstance(action, Speak):
                pcm = action.pcm if action.pcm is not None else load_prompt(action.line.audio, 8000)
                self.playing_until = self.t + len(pcm) / 16000
            elif isinstance(action, StopSpeaking):
                self.playing_until = None

    def answer(self) -> Line:
        self._take(self.turns.answered(0.0))
        return self

    def feed(self, frame: bytes) -> None:
        self.t = round(self.t + FRAME, 2)
        if self.playing_until is not None and self.t >= self.playing_until:
            self.playing_until = None
            self._take(self.turns.playback_done(self.t))
        self._take(self.turns.frame(frame, self.t))

    def robot(self, pcm: bytes) -> Line:
        for f in frames(pcm):
            self.feed(f)
        return self

    def silence(self, seconds: float) -> Line:
        for _ in range(round(seconds / FRAME)):
            self.feed(bytes(320))
        return self

    def until_quiet(self, limit: float = 30.0) -> Line:
        """Silence until our line has finished (and 0.1 s more)."""
        end = self.t + limit
        while self.t < end and (self.playing_until is not None or self.turns.state is State.SPEAK):
            self.feed(bytes(320))
        return self.silence(0.1)

    def speaks(self) -> list[tuple[float, Speak]]:
        return [(t, a) for t, a in self.log if isinstance(a, Speak)]

    def of(self, kind) -> list[tuple[float, object]]:
        return [(t, a) for t, a in self.log if isinstance(a, kind)]


def taker(book, index, persona: str, **timing) -> TurnTaker:
    return TurnTaker(book.personas[persona], book, index, timing=Timing(**timing))


def test_answers_each_question_after_the_robot_stops(book, index, robot):
    line = Line(taker(book, index, "complains_wait")).answer()
    line.silence(2.5)
    assert line.speaks() == []  # no hello for this persona: waits for the robot
    for step in ("identity", "satisfaction", "improvement"):
        pcm = robot("post_service", step)
        start = line.t
        line.robot(pcm)
        end_of_speech = start + len(pcm.rstrip(b"\x00")) / 16000
        line.silence(1.0)
        t, speak = line.speaks()[-1]
        assert speak.question == step and speak.line.text == book.personas["complains_wait"].answers[step].text
        assert 0.4 <= t - end_of_speech <= 1.0, (step, t - end_of_speech)  # the 0.6 s hang-over, like a person
        line.until_quiet()
    assert line.turns.questions == ["identity", "satisfaction", "improvement"]
    assert line.turns.script == "post_service"


def test_a_pause_inside_the_question_is_waited_out(book, index, robot):
    line = Line(taker(book, index, "satisfied")).answer().silence(2.0)
    first, rest = robot("post_service", "identity", upto="的客服专员"), robot("post_service", "identity")
    line.robot(first)
    said = len(line.speaks())
    line.silence(1.2)  # 0.6 s hang-over passed: the robot merely paused after "的客服专员。"
    assert len(line.speaks()) == said
    line.robot(rest[len(first):]).silence(1.0)
    assert line.speaks()[-1][1].question == "identity"


def test_a_re_prompt_gets_the_same_answer_again(book, index, robot):
    line = Line(taker(book, index, "satisfied")).answer().silence(0.5)
    line.until_quiet()  # 喂，你好
    line.robot(robot("post_service", "car_wash")).silence(1.0).until_quiet()
    line.robot(robot("post_service", "no_match", "car_wash")).silence(1.0).until_quiet()
    line.robot(robot("post_service", "no_match_yes_no")).silence(1.0).until_quiet()
    answers = [a.question for _t, a in line.speaks() if a.key != "hello"]
    assert answers == ["car_wash", "car_wash", "car_wash"]


def test_barge_in_persona_talks_over_the_end_of_the_question(book, index, robot):
    line = Line(taker(book, index, "complains_quality")).answer()
    line.until_quiet()
    pcm = robot("post_service", "advisor")
    start = line.t
    line.robot(pcm)
    end = start + len(pcm.rstrip(b"\x00")) / 16000
    t, speak = line.speaks()[-1]
    assert speak.question == "advisor" and speak.reason == "barge-in"
    assert 0.2 <= end - t <= 1.5 + 0.35, end - t  # at most 1.5 s (+ one check) before the end
    line.silence(2.0).until_quiet()
    assert [a.question for _t, a in line.speaks()].count("advisor") == 1  # the same question is not answered twice
    assert line.of(StopSpeaking) == []  # an angry customer does not yield


def test_hangs_up_after_its_last_answer(book, index, robot):
    line = Line(taker(book, index, "hangs_up_early")).answer()
    line.silence(2.5).robot(robot("post_service", "identity")).silence(1.0)
    _t, speak = line.speaks()[-1]
    assert speak.question == "identity"
    line.until_quiet().silence(0.5)
    (t, hang), = line.of(HangUp)
    assert "after answering identity" in hang.reason and line.turns.done
    assert t - line.turns.events[-2]["t"] == pytest.approx(0.3, abs=0.03)  # 0.3 s after its words ended


def test_after_a_goodbye_it_waits_for_the_robot_then_hangs_up(book, index, robot):
    line = Line(taker(book, index, "satisfied", linger=2.0)).answer().silence(0.5).until_quiet()
    line.robot(robot("post_service", "end_thanks")).silence(1.5)
    assert line.of(HangUp) == [] and len(line.speaks()) == 1  # only the hello: a goodbye needs no answer
    line.silence(1.5)
    (_t, hang), = line.of(HangUp)
    assert "did not hang up" in hang.reason


def test_a_question_after_a_goodbye_is_still_answered(book, index, robot):
    line = Line(taker(book, index, "callback", linger=3.0)).answer().silence(0.5).until_quiet()
    line.robot(robot("post_service", "end_callback")).silence(0.8)
    line.robot(robot("post_service", "callback_time")).silence(1.0)
    assert line.speaks()[-1][1].question == "callback_time"
    line.until_quiet().silence(3.5)
    assert line.of(HangUp) == []  # the pending hang-up was cancelled by the question


def test_hello_unless_the_robot_speaks_first(book, index, robot):
    line = Line(taker(book, index, "satisfied")).answer().silence(1.0)
    (t, hello), = line.speaks()
    assert hello.key == "hello" and t == pytest.approx(0.4, abs=0.03)
    line = Line(taker(book, index, "satisfied")).answer().robot(robot("post_service", "identity")[:3200])
    assert all(a.key != "hello" for _t, a in line.speaks())


def test_answering_machine_greets_beeps_and_records(book, index, robot):
    line = Line(taker(book, index, "answering_machine", machine_record=15.0)).answer()
    (t, greeting), = line.speaks()
    assert t == 0 and greeting.key == "greeting"
    line.until_quiet().silence(0.5)
    beep = line.speaks()[-1][1]
    assert beep.key == "beep" and len(beep.pcm) == 6400
    line.robot(robot("post_service", "identity")).silence(4.0)
    assert len(line.speaks()) == 2  # a machine never answers
    (_t, hang), = line.of(HangUp)
    assert "answering machine" in hang.reason
    assert any(e["kind"] == "recorded" and e.get("prompt") == "post_service.identity" for e in line.turns.events)


def test_yields_when_the_robot_talks_over_it(book, index, robot):
    line = Line(taker(book, index, "complains_wait")).answer().silence(2.5)
    line.robot(robot("post_service", "improvement")).silence(0.8)
    assert line.turns.state is State.SPEAK  # the long complaint is playing
    line.robot(robot("post_service", "no_input")[:24000])  # the robot cuts in for over a second
    (_t, stop), = line.of(StopSpeaking)
    assert "talks over us" in stop.reason
    assert line.turns.events[-1]["kind"] == "yielded"


def test_unknown_audio_falls_back_to_the_scripts_step_order(book, index):
    import numpy as np

    line = Line(taker(book, index, "satisfied", hello_delay=60)).answer()
    t = np.arange(8000 * 2) / 8000
    noise = (3000 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype("<i2").tobytes()
    line.robot(noise).silence(2.5)  # no prompt of any script: after waiting, the first question of the script
    _t, first = line.speaks()[-1]
    assert first.question == "identity" and first.reason == "guessed"
    line.until_quiet().robot(noise).silence(2.5)
    assert line.speaks()[-1][1].question == "satisfaction"  # then the next step, by the script's order
    guessed = [e for e in line.turns.events if e["kind"] == "heard"]
    assert all(e["prompt_kind"] == "unrecognised" and e["guessed"] for e in guessed)


def test_a_silent_robot_is_hung_up_on(book, index):
    line = Line(taker(book, index, "complains_wait", idle=3.0)).answer().silence(3.2)
    (t, hang), = line.of(HangUp)
    assert "silent" in hang.reason and t == pytest.approx(3.0, abs=0.05)


def test_statements_are_not_answered(book, index, robot):
    line = Line(taker(book, index, "satisfied", hello_delay=60)).answer()
    line.robot(robot("new_car", "first_service")).silence(2.0)
    assert line.speaks() == []
    heard = [e for e in line.turns.events if e["kind"] == "heard"]
    assert heard[-1]["prompt"] == "new_car.first_service" and heard[-1]["prompt_kind"] == "statement"


def test_a_step_the_persona_has_no_answer_for_gets_one_of_the_same_context(book, index, robot):
    line = Line(taker(book, index, "satisfied", hello_delay=60)).answer()
    line.robot(robot("maintenance_due", "booking_time")).silence(1.0)  # time context "book"
    _t, speak = line.speaks()[-1]
    assert speak.question == "booking_time" and speak.line is book.personas["satisfied"].answers["booking"]


def test_after_a_transfer_it_waits_for_the_agent_without_guessing(book, index, robot):
    import numpy as np

    line = Line(taker(book, index, "asks_human", hello_delay=60)).answer()
    line.robot(robot("post_service", "identity")).silence(1.0).until_quiet()
    assert line.speaks()[-1][1].question == "identity"
    line.robot(robot("post_service", "transfer")).silence(1.0)
    t = np.arange(8000 * 2) / 8000
    agent = (3000 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype("<i2").tobytes()
    line.robot(agent).silence(3.0)
    assert len(line.speaks()) == 1 and line.of(HangUp) == []  # stays on the line, says nothing
    assert line.turns.events[-1]["prompt_kind"] == "after_transfer"
