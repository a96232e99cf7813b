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
    (Role.MANAGER, N_("Manager")),
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
    (CallOutcome.TRANSFER_FAILED, N_("Transfer to an agent failed")),
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


# -- the audit log and the do-not-call list: codes the web layer writes ----------------------

AUDIT_ACTIONS: dict[str, object] = {
    "login.locked": N_("Login locked after failed attempts"),
    "user.create": N_("User created"),
    "user.update": N_("User changed"),
    "user.role_change": N_("Role or store changed"),
    "user.password_change": N_("Password changed"),
    "token.create": N_("API token created"),
    "token.revoke": N_("API token revoked"),
    "export": N_("Export"),
    "recording.play": N_("Recording played"),
    "phone.reveal": N_("Phone number revealed"),
    "phone.search": N_("Search by phone number"),
    "dnc.add": N_("Number added to the do-not-call list"),
    "dnc.remove": N_("Number removed from the do-not-call list"),
    "script.upload": N_("Script uploaded"),
    "tag.correct": N_("Tag corrected"),
    "qa.review": N_("QA review"),
    "campaign.create": N_("Campaign created"),
    "campaign.state": N_("Campaign started, paused or stopped"),
    "plan.create": N_("Improvement plan created"),
    "plan.close": N_("Improvement plan closed"),
    "ticket.update": N_("Ticket changed"),
    "api.write": N_("Data pushed through the API"),
    "import.run": N_("DMS import"),
    "store.create": N_("Store created"),
    "store.update": N_("Store changed"),
    "script.edit": N_("Script edited"),
}
AUDIT_TARGETS: dict[str, object] = {
    "user": N_("User"), "token": N_("API token"), "call": N_("Call"), "customer": N_("Customer"),
    "customers": N_("Customers"), "visits": N_("Service visits"), "dnc": N_("Do-not-call entry"),
    "script": N_("Script"), "campaign": N_("Campaign"), "plan": N_("Improvement plan"), "ticket": N_("Ticket"),
    "report": N_("Report"), "import": N_("Import"), "store": N_("Store"),
}
_AUDIT_DETAILS: dict[str, object] = {
    "username": N_("User name"), "user": N_("User"), "role": N_("Role"), "before": N_("Before"),
    "after": N_("After"), "active": N_("Can log in"), "password_reset": N_("Password reset"), "name": N_("Object name"),
    "can_write": N_("May write"), "size": N_("Size (bytes)"), "phone": N_("Number"), "reason": N_("Reason"),
    "call_id": N_("Call"), "imported": N_("Imported"), "updated": N_("Updated"), "rejected": N_("Rejected"),
    "failures_at_least": N_("Failed attempts"), "category": N_("Category"), "action": N_("Change"),
    "total": N_("Score"), "type": N_("Type"), "audience": N_("Audience"), "previous": N_("Before"),
    "status": N_("Status"), "query": N_("Searched for"), "refused": N_("Refused"), "kind": N_("Kind"),
    "file": N_("File"), "what": N_("What"), "format": N_("Format"), "args": N_("Filters"),
    "store_id": N_("Store"), "id": N_("Number"),
}
# Codes that appear as audit detail values.
_AUDIT_VALUES: dict[str, object] = {
    "customer-base": N_("Customer base"), "feedback-rate": N_("Feedback rate"), "top-problems": N_("Top-3 problems"),
    "satisfaction": N_("Satisfaction and NPS"), "winback": N_("Win-back"),
    "improvement-plans": N_("Improvement plans"), "import errors": N_("Rejected rows of an import"),
    "add": N_("Tag added"), "remove": N_("Tag removed"), "assign": N_("Assigned"), "status": N_("Status"),
    "note": N_("Note"), "due": N_("Due date"), "verify_callback": N_("Verification callback"),
    "customers": N_("Customers"), "visits": N_("Service visits"),
}
DNC_SOURCES: dict[str, object] = {
    "robot": N_("Robot call (the customer asked)"), "agent": N_("Agent call (the customer asked)"),
    "admin": N_("Administrator"), "api": N_("DMS (API)"), "import": N_("DMS import"),
}


def audit_action(code: str | None) -> str:
    found = AUDIT_ACTIONS.get(code or "")
    return gettext(found) if found is not None else str(code or "")


def audit_target(target_type: str | None, target_id: str | None) -> str:
    if not target_type:
        return ""
    found = AUDIT_TARGETS.get(target_type)
    name = gettext(found) if found is not None else target_type
    if target_type == "report" and target_id:
        return f"{name} · {audit_value('report', target_id, None)[0]}"
    return f"{name} #{target_id}" if target_id else name


def audit_value(key: str, value: object, target_type: str | None, stores: dict | None = None) -> tuple[str, bool]:
    """(text, is_code) of one audit detail value: codes as labels (is_code True), data as it is."""
    if isinstance(value, bool):
        return gettext(N_("yes") if value else N_("no")), True
    if isinstance(value, dict):
        return "; ".join(f"{audit_key(k)}: {audit_value(k, v, target_type, stores)[0]}"
                         for k, v in value.items()), True
    if value is None:
        return "–", True
    text = str(value)
    enum_cls = {"role": Role, "type": CampaignType, "category": FeedbackCategory}.get(key)
    if key in ("status", "previous"):
        enum_cls = PlanStatus if target_type == "plan" else CampaignStatus
    if enum_cls is not None:
        return of(enum_cls, text), True
    if key == "store_id" and stores is not None:
        return stores.get(value, text), False
    if key == "format":
        return text.upper(), True
    found = _AUDIT_VALUES.get(text) if key in ("report", "what", "action", "kind") or target_type == "report" else None
    return (gettext(found), True) if found is not None else (text, False)


def audit_key(key: str) -> str:
    found = _AUDIT_DETAILS.get(key)
    return gettext(found) if found is not None else key


def audit_details(details: dict | None, target_type: str | None, stores: dict | None = None) -> list[tuple[str, str, bool]]:
    """(label, value, value is a code) for each detail of an audit entry."""
    return [(audit_key(k), *audit_value(k, v, target_type, stores)) for k, v in (details or {}).items()]


def dnc_source(code: str | None) -> str:
    found = DNC_SOURCES.get(code or "")
    return gettext(found) if found is not None else str(code or "")


_PHONE_PROBLEMS: dict[str, object] = {
    "empty": N_("Enter a phone number."),
    "country": N_("Only mainland China numbers (+86) can be called."),
    "characters": N_("A phone number has digits only (spaces and dashes are fine)."),
    "mobile": N_("A mobile number has 11 digits and starts with 13-19."),
    "landline": N_("A landline needs its area code and a 7 or 8 digit number, e.g. 0731-84567890."),
    "no_area_code": N_("Not a mobile number, and a landline needs its area code, e.g. 0731-84567890."),
}


def phone_problem(exc: Exception) -> str:
    """Why a value is not a phone number (:class:`callcenter.domain.phone.PhoneError`), for people."""
    found = _PHONE_PROBLEMS.get(getattr(exc, "kind", ""))
    return gettext(found) if found is not None else gettext(N_("Not a valid phone number."))
