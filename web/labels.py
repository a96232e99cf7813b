"""Translated display names for the domain's codes (enums stay codes in storage and the API).

Message ids marked with ``N_`` and translated when shown, so each request renders them in its own
language.
"""

from __future__ import annotations

import enum


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
from web.i18n import N_, gettext

_PAIRS: list[tuple[enum.Enum, object]] = [
    (Role.AGENT, N_("Agent")),
    (Role.SUPERVISOR, N_("Supervisor")),
    (Role.ADMIN, N_("Administrator")),
    (CustomerClass.BASE, N_("Base customers")),
    (CustomerClass.ACTIVE, N_("Active customers")),
    (CustomerClass.LAPSED, N_("Lapsed customers")),
    (CustomerClass.INSURED, N_("Insured with us")),
    (Department.AFTER_SALES, N_("After-sales")),
    (Department.SALES, N_("Sales")),
    (Department.INSURANCE, N_("Insurance")),
    (Department.CRM, N_("CRM")),
    (FeedbackCategory.SERVICE_PROCESS, N_("Service process")),
    (FeedbackCategory.SERVICE_ATTITUDE, N_("Service attitude")),
    (FeedbackCategory.WAIT_TIME, N_("Waiting / delivery time")),
    (FeedbackCategory.REPAIR_QUALITY, N_("Repair quality")),
    (FeedbackCategory.CAR_WASH, N_("Car wash / cleaning")),
    (FeedbackCategory.PARTS_WAIT, N_("Waiting for parts")),
    (FeedbackCategory.PRICE, N_("Price / charges")),
    (FeedbackCategory.FACILITY, N_("Facilities")),
    (FeedbackCategory.SALES_PROCESS, N_("Sales / delivery process")),
    (FeedbackCategory.INSURANCE, N_("Insurance / claims")),
    (FeedbackCategory.PRAISE, N_("Praise")),
    (Sentiment.POSITIVE, N_("Positive")),
    (Sentiment.NEUTRAL, N_("Neutral")),
    (Sentiment.NEGATIVE, N_("Negative")),
    (Speaker.CUSTOMER, N_("Customer")),
    (Speaker.ROBOT, N_("Robot")),
    (Speaker.AGENT, N_("Agent")),
    (CallDisposition.ANSWERED, N_("Answered")),
    (CallDisposition.BUSY, N_("Busy")),
    (CallDisposition.NO_ANSWER, N_("No answer")),
    (CallDisposition.REJECTED, N_("Rejected")),
    (CallDisposition.NOT_FOUND, N_("Number not found")),
    (CallDisposition.UNAVAILABLE, N_("Unavailable")),
    (CallDisposition.FAILED, N_("Failed")),
    (CallDisposition.NETWORK_ERROR, N_("Network error")),
    (Intent.AFFIRM, N_("yes")),
    (Intent.DENY, N_("no")),
    (Intent.BUSY_CALLBACK, N_("call back later")),
    (Intent.WRONG_NUMBER, N_("wrong number")),
    (Intent.OPT_OUT, N_("do not call again")),
    (Intent.COMPLAINT, N_("complaint")),
    (Intent.ASK_HUMAN, N_("asks for a person")),
    (Intent.QUESTION, N_("question")),
    (Intent.UNCLEAR, N_("unclear")),
    (Tier.MID, N_("Mid-range")),
    (Tier.PREMIUM, N_("Premium")),
    (Gender.MALE, N_("Male")),
    (Gender.FEMALE, N_("Female")),
    (VisitType.MAINTENANCE, N_("Maintenance")),
    (VisitType.REPAIR, N_("Repair")),
    (VisitType.BODYWORK, N_("Bodywork")),
    (VisitType.WARRANTY, N_("Warranty")),
    (VisitType.CLAIM, N_("Insurance claim")),
    (VisitType.INSPECTION, N_("Inspection")),
    (CampaignType.POST_SERVICE, N_("Post-service revisit")),
    (CampaignType.NEW_CAR, N_("New-car follow-up")),
    (CampaignType.MAINTENANCE_DUE, N_("Maintenance reminder")),
    (CampaignType.INSURANCE_RENEWAL, N_("Insurance renewal")),
    (CampaignType.WARRANTY_EXPIRY, N_("Warranty-expiry check")),
    (CampaignType.WINBACK, N_("Win-back of lapsed customers")),
    (CampaignType.NPS, N_("NPS survey")),
    (CampaignType.CUSTOM, N_("Custom audience")),
    (CampaignStatus.DRAFT, N_("Draft")),
    (CampaignStatus.RUNNING, N_("Running")),
    (CampaignStatus.PAUSED, N_("Paused")),
    (CampaignStatus.COMPLETED, N_("Completed")),
    (CampaignStatus.CANCELLED, N_("Cancelled")),
    (TaskState.PENDING, N_("Pending")),
    (TaskState.QUEUED, N_("Queued")),
    (TaskState.DIALING, N_("Dialing")),
    (TaskState.COMPLETED, N_("Completed")),
    (TaskState.FAILED, N_("Failed")),
    (TaskState.CANCELLED, N_("Cancelled")),
    (CallOutcome.COMPLETED, N_("Completed")),
    (CallOutcome.PARTIAL, N_("Partly completed")),
    (CallOutcome.REFUSED, N_("Declined the survey")),
    (CallOutcome.CALLBACK, N_("Call back later")),
    (CallOutcome.OPT_OUT, N_("Opted out")),
    (CallOutcome.WRONG_NUMBER, N_("Wrong number")),
    (CallOutcome.ANSWERING_MACHINE, N_("Answering machine")),
    (CallOutcome.TRANSFERRED, N_("Transferred to an agent")),
    (CallOutcome.HUNG_UP, N_("Customer hung up")),
    (CallOutcome.NOT_REACHED, N_("Not reached")),
    (CallOutcome.ERROR, N_("Error on our side")),
    (TicketStatus.OPEN, N_("Open")),
    (TicketStatus.ASSIGNED, N_("Assigned")),
    (TicketStatus.RESOLVED, N_("Resolved")),
    (TicketStatus.VERIFIED, N_("Verified")),
    (TicketStatus.CLOSED, N_("Closed")),
    (CallbackStatus.PENDING, N_("Pending")),
    (CallbackStatus.QUEUED, N_("Queued")),
    (CallbackStatus.DONE, N_("Done")),
    (CallbackStatus.CANCELLED, N_("Cancelled")),
    (LiveCallState.DIALING, N_("Dialing")),
    (LiveCallState.RINGING, N_("Ringing")),
    (LiveCallState.ANSWERED, N_("Talking")),
    (LiveCallState.BRIDGED, N_("With an agent")),
    (LiveCallState.ENDED, N_("Ended")),
    (PlanStatus.ACTIVE, N_("Running")),
    (PlanStatus.CLOSED, N_("Closed")),
    (PlanStatus.CANCELLED, N_("Cancelled")),
]

# Labels for codes that are plain strings (breakdown keys of the customer-base report).
STRING_LABELS: dict[str, object] = {
    "unknown": N_("Unknown"),
    "none": N_("No vehicle"),
    "mid": N_("Mid-range"),
    "premium": N_("Premium"),
    "M": N_("Male"),
    "F": N_("Female"),
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
        return gettext(found) if found is not None else str(value.value)
    found = STRING_LABELS.get(str(value))
    return gettext(found) if found is not None else str(value)


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
