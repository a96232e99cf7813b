"""What one robot call produced: the facts a call runner hands back to the dialer.

A call runner (telephony + recognizer + dialog engine, wired by ``campaigns``) returns a
:class:`CallResult`; ``campaigns.outcomes`` turns it into database rows. The dialog engine
(``dialog``) emits the actions below; they are defined here, low in the stack, so that
``dialog`` and ``campaigns`` agree on them without importing each other. Standard library only;
plain frozen dataclasses, safe to pass between threads.

Actions, in the order the conversation took them:

- :class:`RecordAnswer`: the answer to a script question (``question`` id, normalised ``value``).
- :class:`OpenTicket`: a complaint or follow-up for a department (or the category's department).
- :class:`ScheduleCallback`: call the customer again at the time they chose.
- :class:`AddToDnc`: the customer asked never to be called again.
- :class:`Transfer`: handed to a human (extension or agent).
- :class:`HangUp`: the robot ended the call, with why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from callcenter.domain import CallDisposition, Department, FeedbackCategory, Intent, Sentiment, Speaker


class CallEnd(str, enum.Enum):
    """How an answered call ended, from the conversation's point of view."""

    COMPLETED = "completed"  # the script reached its end
    REFUSED = "refused"  # the customer declined the survey (拒访): a finished conversation, not a revisit
    CUSTOMER_HUNG_UP = "customer_hung_up"  # before the script's end
    WRONG_NUMBER = "wrong_number"
    ANSWERING_MACHINE = "answering_machine"  # voicemail or an IVR answered
    OPT_OUT = "opt_out"
    CALLBACK = "callback"  # the customer asked to be called later
    TRANSFERRED = "transferred"
    NO_INPUT = "no_input"  # silence after the re-prompts
    MAX_DURATION = "max_duration"
    ERROR = "error"  # our side failed during the call


@dataclass(frozen=True, slots=True)
class RecordAnswer:
    question: str  # script question id, e.g. "satisfaction"
    value: str | int | float | bool | None
    text: str | None = None  # what the customer said
    kind: str = field(default="record_answer", init=False)


@dataclass(frozen=True, slots=True)
class OpenTicket:
    """A ticket for ``department``; without one, the category's department (CATEGORY_DEPARTMENT)."""

    title: str
    category: FeedbackCategory | None = None
    department: Department | None = None
    description: str | None = None
    priority: str = "normal"  # low | normal | high
    ticket_kind: str = "complaint"  # complaint | follow_up
    kind: str = field(default="open_ticket", init=False)


@dataclass(frozen=True, slots=True)
class ScheduleCallback:
    at: dt.datetime  # timezone-aware
    reason: str | None = None
    robot: bool = True  # False: an agent calls back
    kind: str = field(default="schedule_callback", init=False)


@dataclass(frozen=True, slots=True)
class AddToDnc:
    reason: str | None = None
    kind: str = field(default="add_to_dnc", init=False)


@dataclass(frozen=True, slots=True)
class Transfer:
    target: str  # extension or SIP URI of the human
    agent_id: int | None = None
    kind: str = field(default="transfer", init=False)


@dataclass(frozen=True, slots=True)
class HangUp:
    reason: str | None = None
    kind: str = field(default="hang_up", init=False)


CallAction = RecordAnswer | OpenTicket | ScheduleCallback | AddToDnc | Transfer | HangUp
ACTION_TYPES: dict[str, type] = {
    "record_answer": RecordAnswer, "open_ticket": OpenTicket, "schedule_callback": ScheduleCallback,
    "add_to_dnc": AddToDnc, "transfer": Transfer, "hang_up": HangUp,
}


@dataclass(frozen=True, slots=True)
class Turn:
    """One line of the transcript; times in seconds from the answer."""

    speaker: Speaker
    text: str
    start: float
    end: float
    intent: Intent | None = None
    confidence: float | None = None
    prompt_id: str | None = None  # robot lines: the script prompt


@dataclass(frozen=True, slots=True)
class Evidence:
    """Words supporting a finding: ``text`` at character offsets [start, end) of turn ``turn``."""

    turn: int  # index into CallResult.turns
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Finding:
    """A feedback category the classifier found in the call."""

    category: FeedbackCategory
    confidence: float | None = None
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class CallResult:
    """Everything one attempt produced. Datetimes are timezone-aware (UTC or local, any zone)."""

    disposition: CallDisposition
    sip_code: int | None = None
    sip_reason: str | None = None
    sip_call_id: str | None = None
    hangup_by: str | None = None  # local | remote
    ringing_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    end: CallEnd | None = None  # answered calls: how the conversation ended
    turns: tuple[Turn, ...] = ()
    actions: tuple[CallAction, ...] = ()
    findings: tuple[Finding, ...] = ()
    sentiment: Sentiment | None = None
    score5: int | None = None
    nps: int | None = None
    recording: str | None = None  # path relative to the data directory
    error: str | None = None  # what went wrong on our side, if anything


def action_to_dict(action: CallAction) -> dict[str, Any]:
    """JSON-ready form of an action (enums as values, datetimes ISO 8601)."""
    out: dict[str, Any] = {"kind": action.kind}
    for f in dataclasses.fields(action):
        if f.name == "kind":
            continue
        value = getattr(action, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        out[f.name] = value
    return out


def action_from_dict(data: dict[str, Any]) -> CallAction:
    """Inverse of :func:`action_to_dict`.

    Raises:
        ValueError: unknown ``kind`` or fields that do not fit it.
    """
    try:
        cls = ACTION_TYPES[data["kind"]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown action kind in {str(data)[:80]!r}") from None
    values = {k: v for k, v in data.items() if k != "kind"}
    try:
        if cls is OpenTicket:
            if values.get("category") is not None:
                values["category"] = FeedbackCategory(values["category"])
            if values.get("department") is not None:
                values["department"] = Department(values["department"])
        if cls is ScheduleCallback:
            values["at"] = dt.datetime.fromisoformat(values["at"])
            if values["at"].tzinfo is None:
                raise ValueError("callback time without a time zone")
        return cls(**values)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"malformed {data.get('kind')} action: {exc}") from None
