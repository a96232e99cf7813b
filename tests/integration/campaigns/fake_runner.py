"""A call runner for the dialer tests: personas answer, no SIP, no audio, no models.

It implements ``campaigns.runner.CallRunner`` the way phase 2's real runner will: each call
reports ringing/answered/transcript lines to the observer and returns a ``CallResult`` whose
turns, actions and findings follow the persona of the number dialled (campaigns/personas). Every
dial is appended to ``dial_log`` *before* the call "rings", with O_APPEND so concurrent writers in
several processes never interleave: the log is the tests' ground truth of who was dialled.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

from callcenter.domain import CallDisposition, FeedbackCategory, Intent, Sentiment, Speaker
from callcenter.domain.calls import (
    AddToDnc,
    CallEnd,
    CallResult,
    Evidence,
    Finding,
    HangUp,
    RecordAnswer,
    ScheduleCallback,
    Transfer,
    Turn,
)
from campaigns.personas import PersonaBook, load_personas

POST_SERVICE = ("identity", "satisfaction", "improvement", "advisor", "car_wash", "on_time", "anything_else")
SIP_DISPOSITIONS = {"busy": CallDisposition.BUSY, "no_answer": CallDisposition.NO_ANSWER,
                    "reject": CallDisposition.REJECTED, "unavailable": CallDisposition.UNAVAILABLE,
                    "not_found": CallDisposition.NOT_FOUND}


def read_dial_log(path: Path) -> list[tuple[int, int, int, int]]:
    """``(task_id, attempt, call_id, pid)`` per dial, in order."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        task, attempt, call, pid = (int(x) for x in line.split())
        rows.append((task, attempt, call, pid))
    return rows


class FakeRunner:
    """Conducts calls by persona; ``trunk_down`` makes every call fail at the trunk (403)."""

    def __init__(self, book: PersonaBook | None = None, *, capacity: int = 4, call_seconds: float = 0.05,
                 dial_log: Path | None = None, trunk_down: bool = False, callback_in: float = 1.0) -> None:
        self.book = book or load_personas()
        self._capacity = capacity
        self.call_seconds = call_seconds
        self.dial_log = Path(dial_log) if dial_log else None
        self.trunk_down = trunk_down
        self.callback_in = callback_in
        self.calls: list[int] = []
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0
        self.closed = False

    @property
    def capacity(self) -> int:
        return self._capacity

    def close(self) -> None:
        self.closed = True

    def _log(self, request) -> None:
        if self.dial_log is None:
            return
        line = f"{request.task_id} {request.attempt} {request.call_id} {os.getpid()}\n".encode()
        fd = os.open(self.dial_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def run(self, request, observer) -> CallResult:
        self._log(request)
        with self._lock:
            self.calls.append(request.call_id)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            return self._run(request, observer)
        finally:
            with self._lock:
                self.concurrent -= 1

    def _run(self, request, observer) -> CallResult:
        now = dt.datetime.now(dt.UTC)
        time.sleep(self.call_seconds)
        if self.trunk_down:
            return CallResult(disposition=CallDisposition.FAILED, sip_code=403, sip_reason="Forbidden",
                              ended_at=dt.datetime.now(dt.UTC))
        persona = self.book.for_number(request.phone)
        observer.ringing()
        if not persona.answers_call:
            return CallResult(disposition=SIP_DISPOSITIONS[persona.sip], sip_code=persona.sip_code,
                              ringing_at=now, ended_at=dt.datetime.now(dt.UTC))
        observer.answered()
        answered = dt.datetime.now(dt.UTC)
        turns: list[Turn] = []
        actions: list = []
        clock = 0.0

        def say(speaker: Speaker, text: str, intent: Intent | None = None, prompt: str | None = None) -> int:
            nonlocal clock
            start, clock = clock, clock + 1.0 + len(text) * 0.2
            turns.append(Turn(speaker, text, round(start, 2), round(clock, 2), intent=intent, prompt_id=prompt))
            observer.transcript(len(turns) - 1, speaker, text, is_final=True, start=start, end=clock)
            return len(turns) - 1

        if persona.greeting is not None:
            say(Speaker.CUSTOMER, persona.greeting.text)
            return self._result(request, answered, turns, actions, CallEnd.ANSWERING_MACHINE, hangup="local")
        expect = persona.expect
        kind = expect.get("outcome")
        end = CallEnd.COMPLETED
        answer_turns: dict[str, int] = {}
        for question in POST_SERVICE:
            say(Speaker.ROBOT, self.book.questions[question][1], prompt=question)
            answer = self.book.answer(persona, question)
            if answer is None:
                continue
            answer_turns[question] = say(Speaker.CUSTOMER, answer.text)
            if kind == "wrong_number":
                end = CallEnd.WRONG_NUMBER
                break
            if kind == "opt_out":
                actions.append(AddToDnc("客户要求不再来电"))
                end = CallEnd.OPT_OUT
                break
            if kind == "transferred":
                actions.append(Transfer("8001"))
                end = CallEnd.TRANSFERRED
                break
            if kind == "callback":
                due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.callback_in)
                actions.append(ScheduleCallback(due, reason=expect.get("callback")))
                end = CallEnd.CALLBACK
                break
            if persona.hang_up_after == question:
                end = CallEnd.CUSTOMER_HUNG_UP
                break
            if question == "satisfaction" and expect.get("score5") is not None:
                actions.append(RecordAnswer("satisfaction", expect["score5"], answer.text))
        findings = []
        for code in expect.get("categories", ()):
            seq = answer_turns.get("improvement", answer_turns.get("satisfaction"))
            ev = ()
            if seq is not None:
                text = turns[seq].text
                ev = (Evidence(seq, text[:12], 0, min(12, len(text))),)
            findings.append(Finding(FeedbackCategory(code), 0.9, ev))
        if end is CallEnd.COMPLETED:
            say(Speaker.ROBOT, "感谢您的反馈，祝您用车愉快，再见。", prompt="goodbye")
            actions.append(HangUp("completed"))
        sentiment = Sentiment(expect["sentiment"]) if expect.get("sentiment") else None
        return self._result(request, answered, turns, actions, end, findings=findings, sentiment=sentiment,
                            score5=expect.get("score5") if end is CallEnd.COMPLETED else None,
                            hangup="remote" if end is CallEnd.CUSTOMER_HUNG_UP else "local")

    def _result(self, request, answered, turns, actions, end, *, findings=(), sentiment=None, score5=None,
                hangup=None) -> CallResult:
        ended = dt.datetime.now(dt.UTC)
        return CallResult(
            disposition=CallDisposition.ANSWERED, sip_code=200, sip_reason="OK",
            sip_call_id=f"fake-{request.call_id}@127.0.0.1", hangup_by=hangup, ringing_at=answered,
            answered_at=answered, ended_at=ended, end=end, turns=tuple(turns), actions=tuple(actions),
            findings=tuple(findings), sentiment=sentiment, score5=score5,
            recording=f"recordings/fake/{request.call_id}.wav",
        )


def make_runner(phone, settings) -> FakeRunner:
    """A runner factory in the shape ``campaigns.worker.dialer_job`` expects (``phone`` unused)."""
    return FakeRunner(capacity=4, call_seconds=0.05)
