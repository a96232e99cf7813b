"""Translated display names for the domain's codes (enums stay codes in storage and the API).

Lazy strings, so each request renders them in its own language.
"""

from __future__ import annotations

import enum

from flask_babel import lazy_gettext as _l

from callcenter.domain import (
    CallDisposition,
    CustomerClass,
    Department,
    FeedbackCategory,
    Gender,
    Intent,
    Role,
    Sentiment,
    Speaker,
    Tier,
    VisitType,
)
from callcenter.storage.live import LiveCallState
from callcenter.storage.models import (
    CallbackStatus,
    CallOutcome,
    CampaignStatus,
    CampaignType,
    TaskState,
    TicketStatus,
)
from callcenter.storage.web_models import PlanStatus

_PAIRS: list[tuple[enum.Enum, object]] = [
    (Role.AGENT, _l("Agent")),
    (Role.SUPERVISOR, _l("Supervisor")),
    (Role.ADMIN, _l("Administrator")),
    (CustomerClass.BASE, _l("Base customers")),
    (CustomerClass.ACTIVE, _l("Active customers")),
    (CustomerClass.LAPSED, _l("Lapsed customers")),
    (CustomerClass.INSURED, _l("Insured with us")),
    (Department.AFTER_SALES, _l("After-sales")),
    (Department.SALES, _l("Sales")),
    (Department.INSURANCE, _l("Insurance")),
    (Department.CRM, _l("CRM")),
    (FeedbackCategory.SERVICE_PROCESS, _l("Service process")),
    (FeedbackCategory.SERVICE_ATTITUDE, _l("Service attitude")),
    (FeedbackCategory.WAIT_TIME, _l("Waiting / delivery time")),
    (FeedbackCategory.REPAIR_QUALITY, _l("Repair quality")),
    (FeedbackCategory.CAR_WASH, _l("Car wash / cleaning")),
    (FeedbackCategory.PARTS_WAIT, _l("Waiting for parts")),
    (FeedbackCategory.PRICE, _l("Price / charges")),
    (FeedbackCategory.FACILITY, _l("Facilities")),
    (FeedbackCategory.SALES_PROCESS, _l("Sales / delivery process")),
    (FeedbackCategory.INSURANCE, _l("Insurance / claims")),
    (FeedbackCategory.PRAISE, _l("Praise")),
    (Sentiment.POSITIVE, _l("Positive")),
    (Sentiment.NEUTRAL, _l("Neutral")),
    (Sentiment.NEGATIVE, _l("Negative")),
    (Speaker.CUSTOMER, _l("Customer")),
    (Speaker.ROBOT, _l("Robot")),
    (Speaker.AGENT, _l("Agent")),
    (CallDisposition.ANSWERED, _l("Answered")),
    (CallDisposition.BUSY, _l("Busy")),
    (CallDisposition.NO_ANSWER, _l("No answer")),
    (CallDisposition.REJECTED, _l("Rejected")),
    (CallDisposition.NOT_FOUND, _l("Number not found")),
    (CallDisposition.UNAVAILABLE, _l("Unavailable")),
    (CallDisposition.FAILED, _l("Failed")),
    (CallDisposition.NETWORK_ERROR, _l("Network error")),
    (Intent.AFFIRM, _l("yes")),
    (Intent.DENY, _l("no")),
    (Intent.BUSY_CALLBACK, _l("call back later")),
    (Intent.WRONG_NUMBER, _l("wrong number")),
    (Intent.OPT_OUT, _l("do not call again")),
    (Intent.COMPLAINT, _l("complaint")),
    (Intent.ASK_HUMAN, _l("asks for a person")),
    (Intent.QUESTION, _l("question")),
    (Intent.UNCLEAR, _l("unclear")),
    (Tier.MID, _l("Mid-range")),
    (Tier.PREMIUM, _l("Premium")),
    (Gender.MALE, _l("Male")),
    (Gender.FEMALE, _l("Female")),
    (VisitType.MAINTENANCE, _l("Maintenance")),
    (VisitType.REPAIR, _l("Repair")),
    (VisitType.BODYWORK, _l("Bodywork")),
    (VisitType.WARRANTY, _l("Warranty")),
    (VisitType.CLAIM, _l("Insurance claim")),
    (VisitType.INSPECTION, _l("Inspection")),
    (CampaignType.POST_SERVICE, _l("Post-service revisit")),
    (CampaignType.NEW_CAR, _l("New-car follow-up")),
    (CampaignType.MAINTENANCE_DUE, _l("Maintenance reminder")),
    (CampaignType.INSURANCE_RENEWAL, _l("Insurance renewal")),
    (CampaignType.WARRANTY_EXPIRY, _l("Warranty-expiry check")),
    (CampaignType.WINBACK, _l("Win-back of lapsed customers")),
    (CampaignType.NPS, _l("NPS survey")),
    (CampaignType.CUSTOM, _l("Custom audience")),
    (CampaignStatus.DRAFT, _l("Draft")),
    (CampaignStatus.RUNNING, _l("Running")),
    (CampaignStatus.PAUSED, _l("Paused")),
    (CampaignStatus.COMPLETED, _l("Completed")),
    (CampaignStatus.CANCELLED, _l("Cancelled")),
    (TaskState.PENDING, _l("Pending")),
    (TaskState.QUEUED, _l("Queued")),
    (TaskState.DIALING, _l("Dialing")),
    (TaskState.COMPLETED, _l("Completed")),
    (TaskState.FAILED, _l("Failed")),
    (TaskState.CANCELLED, _l("Cancelled")),
    (CallOutcome.COMPLETED, _l("Completed")),
    (CallOutcome.PARTIAL, _l("Partly completed")),
    (CallOutcome.CALLBACK, _l("Call back later")),
    (CallOutcome.OPT_OUT, _l("Opted out")),
    (CallOutcome.WRONG_NUMBER, _l("Wrong number")),
    (CallOutcome.ANSWERING_MACHINE, _l("Answering machine")),
    (CallOutcome.TRANSFERRED, _l("Transferred to an agent")),
    (CallOutcome.HUNG_UP, _l("Customer hung up")),
    (CallOutcome.NOT_REACHED, _l("Not reached")),
    (CallOutcome.ERROR, _l("Error on our side")),
    (TicketStatus.OPEN, _l("Open")),
    (TicketStatus.ASSIGNED, _l("Assigned")),
    (TicketStatus.RESOLVED, _l("Resolved")),
    (TicketStatus.VERIFIED, _l("Verified")),
    (TicketStatus.CLOSED, _l("Closed")),
    (CallbackStatus.PENDING, _l("Pending")),
    (CallbackStatus.QUEUED, _l("Queued")),
    (CallbackStatus.DONE, _l("Done")),
    (CallbackStatus.CANCELLED, _l("Cancelled")),
    (LiveCallState.DIALING, _l("Dialing")),
    (LiveCallState.RINGING, _l("Ringing")),
    (LiveCallState.ANSWERED, _l("Talking")),
    (LiveCallState.BRIDGED, _l("With an agent")),
    (LiveCallState.ENDED, _l("Ended")),
    (PlanStatus.ACTIVE, _l("Running")),
    (PlanStatus.CLOSED, _l("Closed")),
    (PlanStatus.CANCELLED, _l("Cancelled")),
]

# Labels for codes that are plain strings (breakdown keys of the customer-base report).
STRING_LABELS: dict[str, object] = {
    "unknown": _l("Unknown"),
    "none": _l("No vehicle"),
    "mid": _l("Mid-range"),
    "premium": _l("Premium"),
    "M": _l("Male"),
    "F": _l("Female"),
}


# Keyed by (enum class, value): str enums of different classes with the same value
# ("completed", "agent", "insurance", "active") are equal to each other as dict keys.
_BY_CLASS: dict[tuple[type, str], object] = {(type(m), m.value): text for m, text in _PAIRS}


def label(value: object) -> str:
    """The display name of an enum member or code; the code itself when none is known."""
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        found = _BY_CLASS.get((type(value), value.value))
        return str(found) if found is not None else str(value.value)
    found = STRING_LABELS.get(str(value))
    return str(found) if found is not None else str(value)


def of(enum_cls: type[enum.Enum], code: str | None) -> str:
    """The display name of a code stored as a plain string (``calls.disposition`` ...)."""
    if code is None or code == "":
        return ""
    try:
        return label(enum_cls(code))
    except ValueError:
        return str(code)


def choices(enum_cls: type[enum.Enum]) -> list[tuple[str, str]]:
    """(code, label) pairs for a <select>."""
    return [(m.value, label(m)) for m in enum_cls]
