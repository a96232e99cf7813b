"""What the conversation engine asks the call to do (actions), and what the call tells it (events).

The engine (:mod:`dialog.engine`) is pure logic; the campaign's call runner executes these actions
against telephony, ASR and storage and feeds back the events. Two families of actions:

* storage effects are the shared types of :mod:`callcenter.domain.calls` (re-exported here):
  :class:`RecordAnswer`, :class:`OpenTicket`, :class:`ScheduleCallback`, :class:`AddToDnc`,
  :class:`Transfer`, :class:`HangUp`; they are what ``CallResult.actions`` stores;
* media and flow actions are defined here: :class:`Say`, :class:`Listen`, :class:`StopSpeaking`,
  :class:`StartTimer`, :class:`CancelTimer` and, exactly once at the end, :class:`Finish`.

Every action and event is a frozen dataclass with a ``kind`` tag and converts to and from plain
JSON (:func:`to_dict` / :func:`from_dict`), so a call record can keep the whole exchange.

Contract for the runner, in the order it will typically see them:

* :class:`Say` -> play ``fragments`` (audio from :mod:`dialog.prompts`), then send
  :class:`PlaybackFinished` with the same ``prompt_id``;
* :class:`Listen` -> set the recognizer up for this step (``grammar`` for a grammar-mode Vosk
  recognizer; ``context`` is what the NLU was told) and keep streaming; transcripts (partial and
  final) and DTMF arrive as :class:`~callcenter.domain.TranscriptEvent` / ``DtmfEvent``;
* :class:`StopSpeaking` -> stop the current playback at once (barge-in); no PlaybackFinished needed;
* :class:`StartTimer` / :class:`CancelTimer` -> one timer per ``name``; on expiry send
  :class:`TimerFired` with the same ``token`` (stale tokens are ignored: a late timer is harmless);
* RecordAnswer, OpenTicket, ScheduleCallback, AddToDnc -> storage, without blocking the call;
* Transfer -> bridge to an agent (``target`` comes from the script's settings); then send
  :class:`TransferConnected` when the agent answers, or :class:`TransferFailed`;
* HangUp -> hang up; the engine sends it only after the last prompt's PlaybackFinished;
* :class:`Finish` -> the conversation is over: how it ended, the answers, every customer turn with
  its NLU reading, and the classifier's findings, for ``CallResult``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from callcenter.domain import AnswerChoice, ChoiceScore, DtmfEvent, Speaker, TranscriptEvent, Word
from callcenter.domain.calls import (
    ACTION_TYPES,
    AddToDnc,
    CallEnd,
    HangUp,
    OpenTicket,
    RecordAnswer,
    ScheduleCallback,
    Transfer,
    action_from_dict,
    action_to_dict,
)

__all__ = ["AddToDnc", "CallAnswered", "CallEnd", "CallOutcome", "CancelTimer", "CustomerHungUp", "Finish",
           "HangUp", "Listen", "OpenTicket", "PlaybackFinished", "RecordAnswer", "Say", "ScheduleCallback",
           "StartTimer", "StopSpeaking", "TimerFired", "Transfer", "TransferConnected", "TransferFailed", "from_dict",
           "to_dict"]


class CallOutcome(str, enum.Enum):
    """How the conversation ended, finer than :class:`~callcenter.domain.calls.CallEnd`
    (:data:`OUTCOME_END` maps one onto the other)."""

    COMPLETED = "completed"  # reached the script's end
    PARTIAL = "partial"  # answered some questions, then hung up, fell silent or ran out of time
    REFUSED = "refused"  # declined the survey ("不方便,不用了")
    CALLBACK = "callback"  # asked to be called another time
    WRONG_NUMBER = "wrong_number"  # not the customer, vehicle sold, unknown number
    OPT_OUT = "opt_out"  # asked never to be called again
    TRANSFERRED = "transferred"  # handed to a human agent
    MACHINE = "machine"  # voicemail, an IVR or a carrier announcement answered
    NO_RESPONSE = "no_response"  # a person answered but never said anything usable


# A declined survey ends as REFUSED, never COMPLETED: completion and feedback rates count only revisits
# that were actually held.
OUTCOME_END: dict[CallOutcome, CallEnd] = {
    CallOutcome.COMPLETED: CallEnd.COMPLETED,
    CallOutcome.REFUSED: CallEnd.REFUSED,
    CallOutcome.CALLBACK: CallEnd.CALLBACK,
    CallOutcome.WRONG_NUMBER: CallEnd.WRONG_NUMBER,
    CallOutcome.OPT_OUT: CallEnd.OPT_OUT,
    CallOutcome.TRANSFERRED: CallEnd.TRANSFERRED,
    CallOutcome.MACHINE: CallEnd.ANSWERING_MACHINE,
    CallOutcome.NO_RESPONSE: CallEnd.NO_INPUT,
    CallOutcome.PARTIAL: CallEnd.CUSTOMER_HUNG_UP,  # refined by the reason: no_input, max_duration
}


# -- media and flow actions ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Say:
    """Play a prompt. ``fragments`` concatenated are ``text``; each one has pre-rendered audio."""

    step: str
    prompt_id: str
    text: str
    fragments: tuple[str, ...]
    barge_in: bool = True
    kind: str = field(default="say", init=False)


@dataclass(frozen=True, slots=True)
class Listen:
    """Expect an answer for ``step``: ``context`` is the NLU context (id, sat, nps, yn, open, book,
    reason), ``grammar`` an optional closed phrase list for grammar-mode recognizers, ``dtmf``
    whether key presses answer too, ``choices`` the expected answers of a closed question
    (:func:`dialog.answers.choices_for`), which the recognizer scores against the audio."""

    step: str
    context: str | None
    grammar: tuple[str, ...] | None = None
    dtmf: bool = True
    choices: tuple[AnswerChoice, ...] | None = None
    kind: str = field(default="listen", init=False)


@dataclass(frozen=True, slots=True)
class StopSpeaking:
    reason: str = "barge_in"
    kind: str = field(default="stop_speaking", init=False)


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str  # "no_input", "max_duration", "greeting"
    seconds: float
    token: int
    kind: str = field(default="start_timer", init=False)


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str
    kind: str = field(default="cancel_timer", init=False)


@dataclass(frozen=True, slots=True)
class Finish:
    """The conversation's record. ``end`` is a :class:`CallEnd` value, ``outcome`` a
    :class:`CallOutcome` value; ``turns`` are the customer's final utterances with their NLU
    reading; ``findings`` the classifier's categories with evidence (one per category)."""

    end: str
    outcome: str
    reason: str
    answers: dict[str, Any]
    turns: tuple[dict, ...] = ()
    findings: tuple[dict, ...] = ()
    sentiment: str | None = None
    score5: int | None = None
    nps: int | None = None
    kind: str = field(default="finish", init=False)


# -- events from the call (besides callcenter.domain.TranscriptEvent and DtmfEvent) ----------------
@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The callee picked up; ``at`` is wall-clock time (callback times are relative to it)."""

    at: dt.datetime | None = None
    kind: str = field(default="call_answered", init=False)


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    prompt_id: str
    kind: str = field(default="playback_finished", init=False)


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str
    token: int
    kind: str = field(default="timer_fired", init=False)


@dataclass(frozen=True, slots=True)
class CustomerHungUp:
    kind: str = field(default="customer_hung_up", init=False)


@dataclass(frozen=True, slots=True)
class TransferConnected:
    """The agent picked up the transferred call: the robot's part is over."""

    kind: str = field(default="transfer_connected", init=False)


@dataclass(frozen=True, slots=True)
class TransferFailed:
    reason: str = ""
    kind: str = field(default="transfer_failed", init=False)


_OWN: dict[str, type] = {
    cls.__dataclass_fields__["kind"].default: cls
    for cls in (Say, Listen, StopSpeaking, StartTimer, CancelTimer, Finish, CallAnswered, PlaybackFinished,
                TimerFired, CustomerHungUp, TransferConnected, TransferFailed)
}
# Domain events carry no tag of their own.
_EVENTS: dict[str, type] = {"transcript": TranscriptEvent, "dtmf": DtmfEvent}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_dict(item: Any) -> dict:
    """JSON-able dict of an action or event, tagged with ``kind``."""
    if type(item) in ACTION_TYPES.values():
        return action_to_dict(item)
    if type(item) in _OWN.values():
        return {f.name: _plain(getattr(item, f.name)) for f in dataclasses.fields(item)}
    for name, cls in _EVENTS.items():
        if type(item) is cls:
            return {"kind": name, **_plain(item)}
    raise TypeError(f"not a dialog action or event: {item!r}")


def from_dict(data: dict) -> Any:
    """Inverse of :func:`to_dict`.

    Raises:
        ValueError: unknown ``kind`` or fields that do not fit it.
    """
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind in ACTION_TYPES:
        return action_from_dict(data)
    cls = _OWN.get(kind) or _EVENTS.get(kind)
    if cls is None:
        raise ValueError(f"unknown action/event kind {kind!r}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key == "kind":
            continue
        if key not in names:
            raise ValueError(f"{kind}: unexpected field {key!r}")
        kwargs[key] = _revive(cls, key, value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{kind}: {exc}") from None


def _revive(cls: type, key: str, value: Any) -> Any:
    if value is None:
        return None
    if cls is CallAnswered and key == "at":
        return dt.datetime.fromisoformat(value)
    if cls is TranscriptEvent and key == "speaker":
        return Speaker(value)
    if cls is TranscriptEvent and key == "words":
        return tuple(Word(**w) for w in value)
    if cls is TranscriptEvent and key == "choices":
        return tuple(ChoiceScore(**c) for c in value)
    if cls is Listen and key == "choices":
        return tuple(AnswerChoice(c["label"], tuple(c["phrases"])) for c in value)
    if (cls, key) in ((Say, "fragments"), (Listen, "grammar"), (Finish, "turns"), (Finish, "findings")):
        return tuple(value)
    return value
