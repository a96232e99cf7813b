"""Plain domain types shared by every layer (standard library only).

Types that two packages exchange live here, low in the stack, so that for example
``dialog`` never imports ``asr`` and ``asr`` never imports ``telephony``: they meet
through queues wired by the worker and agree on these dataclasses and enums.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Tier(str, enum.Enum):
    """Vehicle tier; decides the maintenance cycle (seeds: mid 3 months, premium 6)."""

    MID = "mid"
    PREMIUM = "premium"


class Gender(str, enum.Enum):
    MALE = "M"
    FEMALE = "F"


class VisitType(str, enum.Enum):
    """Kind of after-sales visit as DMS exports name it."""

    MAINTENANCE = "maintenance"  # 保养
    REPAIR = "repair"  # 维修
    BODYWORK = "bodywork"  # 钣喷
    WARRANTY = "warranty"  # 索赔 (manufacturer pays)
    CLAIM = "claim"  # 理赔 (insurer pays)
    INSPECTION = "inspection"  # 检查


class Role(str, enum.Enum):
    """Console roles. Agents, supervisors and administrators form a ladder (each may do what the
    one below may); a manager stands beside it and only reads."""

    AGENT = "agent"  # 坐席: calls customers, works their tickets
    SUPERVISOR = "supervisor"  # 主管: calls, QA, tags, campaigns, scripts, plans
    MANAGER = "manager"  # 经理: a store's or the group's manager: reads reports, calls and tickets
    ADMIN = "admin"  # 管理员: users, stores, imports, settings


class CustomerClass(str, enum.Enum):
    """The seeds' customer-base classes (天健汽车 talk, part two)."""

    BASE = "base"  # 保有客户: every customer, prospects included
    ACTIVE = "active"  # 有效客户: paid visit or purchase within two maintenance cycles
    LAPSED = "lapsed"  # 流失客户: last touch older than two cycles
    INSURED = "insured"  # 再保客户: a vehicle insured with the store, policy not expired


class Department(str, enum.Enum):
    """Departments that own the monthly top-3 problems."""

    AFTER_SALES = "after_sales"
    SALES = "sales"
    INSURANCE = "insurance"
    CRM = "crm"


class Speaker(str, enum.Enum):
    CUSTOMER = "customer"
    ROBOT = "robot"
    AGENT = "agent"


class CallDisposition(str, enum.Enum):
    """How a call attempt ended at the SIP level."""

    ANSWERED = "answered"
    BUSY = "busy"  # 486, 600
    NO_ANSWER = "no_answer"  # ring timeout; we sent CANCEL
    REJECTED = "rejected"  # 603
    NOT_FOUND = "not_found"  # 404, 604
    UNAVAILABLE = "unavailable"  # 480, 503
    FAILED = "failed"  # any other final code
    NETWORK_ERROR = "network_error"  # no response / transport error


class Intent(str, enum.Enum):
    """Intent of one customer turn on a revisit call."""

    AFFIRM = "affirm"
    DENY = "deny"
    BUSY_CALLBACK = "busy_callback"
    WRONG_NUMBER = "wrong_number"
    OPT_OUT = "opt_out"
    COMPLAINT = "complaint"
    ASK_HUMAN = "ask_human"
    QUESTION = "question"
    UNCLEAR = "unclear"


class Sentiment(str, enum.Enum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class FeedbackCategory(str, enum.Enum):
    """Fixed feedback category codes; each belongs to one department."""

    SERVICE_PROCESS = "service_process"  # 服务流程
    SERVICE_ATTITUDE = "service_attitude"  # 服务态度
    WAIT_TIME = "wait_time"  # 等待/交车时间
    REPAIR_QUALITY = "repair_quality"  # 维修质量/一次修复
    CAR_WASH = "car_wash"  # 洗车/清洁
    PARTS_WAIT = "parts_wait"  # 等配件
    PRICE = "price"  # 价格/收费
    FACILITY = "facility"  # 环境设施
    SALES_PROCESS = "sales_process"  # 销售/交车/手续
    INSURANCE = "insurance"  # 保险/理赔
    PRAISE = "praise"  # 表扬

    @property
    def department(self) -> Department:
        return CATEGORY_DEPARTMENT[self]


CATEGORY_DEPARTMENT: dict[FeedbackCategory, Department] = {
    FeedbackCategory.SERVICE_PROCESS: Department.AFTER_SALES,
    FeedbackCategory.SERVICE_ATTITUDE: Department.AFTER_SALES,
    FeedbackCategory.WAIT_TIME: Department.AFTER_SALES,
    FeedbackCategory.REPAIR_QUALITY: Department.AFTER_SALES,
    FeedbackCategory.CAR_WASH: Department.AFTER_SALES,
    FeedbackCategory.PARTS_WAIT: Department.AFTER_SALES,
    FeedbackCategory.PRICE: Department.AFTER_SALES,
    FeedbackCategory.FACILITY: Department.AFTER_SALES,
    FeedbackCategory.SALES_PROCESS: Department.SALES,
    FeedbackCategory.INSURANCE: Department.INSURANCE,
    FeedbackCategory.PRAISE: Department.CRM,
}

# What staff read: the category's name, and the problem it stands for in a ticket's title.
CATEGORY_ZH: dict[FeedbackCategory, str] = {
    FeedbackCategory.SERVICE_PROCESS: "服务流程", FeedbackCategory.SERVICE_ATTITUDE: "服务态度",
    FeedbackCategory.WAIT_TIME: "等待/交车时间", FeedbackCategory.REPAIR_QUALITY: "维修质量",
    FeedbackCategory.CAR_WASH: "洗车/清洁", FeedbackCategory.PARTS_WAIT: "等配件",
    FeedbackCategory.PRICE: "价格/收费", FeedbackCategory.FACILITY: "环境设施",
    FeedbackCategory.SALES_PROCESS: "销售/交车手续", FeedbackCategory.INSURANCE: "保险/理赔",
    FeedbackCategory.PRAISE: "表扬",
}
PROBLEM_ZH: dict[FeedbackCategory, str] = {
    FeedbackCategory.SERVICE_PROCESS: "服务流程不顺", FeedbackCategory.SERVICE_ATTITUDE: "服务态度不满意",
    FeedbackCategory.WAIT_TIME: "等待或交车时间过长", FeedbackCategory.REPAIR_QUALITY: "维修质量有问题",
    FeedbackCategory.CAR_WASH: "车辆未清洗干净", FeedbackCategory.PARTS_WAIT: "等配件时间过长",
    FeedbackCategory.PRICE: "收费或价格有异议", FeedbackCategory.FACILITY: "店内环境设施不满意",
    FeedbackCategory.SALES_PROCESS: "销售或交车手续有问题", FeedbackCategory.INSURANCE: "保险或理赔有问题",
    FeedbackCategory.PRAISE: "表扬",
}


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A chunk of raw 16-bit little-endian PCM (pipecat's AudioRawFrame, in short)."""

    audio: bytes
    sample_rate: int
    num_channels: int = 1
    timestamp: float = 0.0  # seconds since the stream started

    @property
    def duration(self) -> float:
        return len(self.audio) / (2 * self.num_channels * self.sample_rate)


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float = 1.0


OTHER_CHOICE = "other"  # the label of "none of the expected answers fits"


@dataclass(frozen=True, slots=True)
class AnswerChoice:
    """One expected answer of a closed question: its ``label`` ("5", "yes", ...) and the short
    phrases people say for it ("五分", "非常满意", ...), which the recognizer scores against the audio."""

    label: str
    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.label or self.label == OTHER_CHOICE:
            raise ValueError(f"answer label {self.label!r}: must be non-empty and not {OTHER_CHOICE!r}")
        if not self.phrases or not all(p.strip() for p in self.phrases):
            raise ValueError(f"answer {self.label!r}: needs at least one non-empty phrase")


@dataclass(frozen=True, slots=True)
class ChoiceScore:
    """How likely the utterance was the answer ``label`` (or :data:`OTHER_CHOICE`), in [0, 1]."""

    label: str
    probability: float


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """A partial or final recognition result for one side of a call.

    ``choices``: for a final heard while a closed question was open (``set_choices``), the expected
    answers' labels best first with probabilities calibrated over them plus :data:`OTHER_CHOICE`
    (summing to 1); empty when no closed question was set or the engine could not score."""

    text: str
    is_final: bool
    start: float
    end: float
    confidence: float = 1.0
    speaker: Speaker = Speaker.CUSTOMER
    words: tuple[Word, ...] = field(default_factory=tuple)
    choices: tuple[ChoiceScore, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str
    at: float = 0.0
