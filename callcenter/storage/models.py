"""SQLAlchemy ORM models: the durable truth about the dealer group.

The foundation tables: stores, customers, vehicles, service visits, users, import runs.
Later features add theirs by Alembic migration (see ``migrations/versions``). Every
schema change goes through a migration; ``Base.metadata`` must always equal the head.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from callcenter.domain import Gender, Role, Tier, VisitType

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def str_enum(enum_cls: type[enum.Enum], length: int = 24) -> sa.Enum:
    """A ``str`` enum stored as its value in a VARCHAR (no native ENUM, no CHECK).

    Values rather than names, so SQL reports read ``maintenance``; no CHECK so a later
    release can add members without a table rebuild on SQLite.
    """
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Store(Base):
    """One 4S store of the group. Each store may set its own maintenance cycles."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    city: Mapped[str | None] = mapped_column(sa.String(50))
    timezone: Mapped[str] = mapped_column(sa.String(50), default="Asia/Shanghai")
    cycle_months_mid: Mapped[int | None] = mapped_column()
    cycle_months_premium: Mapped[int | None] = mapped_column()
    # The store's own calling windows ("09:00-12:00,14:00-20:00"); NULL: the dialer's default.
    # A campaign's own ``windows`` parameter still wins (migration console0001).
    calling_windows: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Customer(TimestampMixin, Base):
    """A person known to the group: buyer, service customer or prospect (保有客户)."""

    __tablename__ = "customers"
    __table_args__ = (
        # A customer number is the group's (scope_store_id NULL: one number, one person in every
        # store) or one store's, for stores whose DMS numbers customers on its own (migration dms0001).
        sa.Index("uq_customers_external_id_scope", "external_id", "scope_store_id", unique=True),
        sa.Index("uq_customers_external_id_group", "external_id", unique=True,
                 sqlite_where=sa.text("scope_store_id IS NULL"), postgresql_where=sa.text("scope_store_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The DMS's customer number (客户编号): unique in the group, or in scope_store_id's store.
    external_id: Mapped[str] = mapped_column(sa.String(64))
    scope_store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"))
    # The customer's home store: the one that first imported them. A customer belongs to the group;
    # their vehicles and visits carry the store that sells or services them (see customer_in_store).
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    phone: Mapped[str | None] = mapped_column(sa.String(20), index=True)
    gender: Mapped[Gender | None] = mapped_column(str_enum(Gender, 1))
    birthday: Mapped[dt.date | None] = mapped_column()
    city: Mapped[str | None] = mapped_column(sa.String(50))
    district: Mapped[str | None] = mapped_column(sa.String(50))
    occupation: Mapped[str | None] = mapped_column(sa.String(50))

    store: Mapped[Store] = relationship(foreign_keys=[store_id])
    vehicles: Mapped[list["Vehicle"]] = relationship(back_populates="customer", order_by="Vehicle.id")
    visits: Mapped[list["ServiceVisit"]] = relationship(
        back_populates="customer", order_by="ServiceVisit.visit_date"
    )


def _owner_store(context) -> int | None:
    """A new vehicle's store when its writer names none: its owner's home store."""
    customer_id = context.get_current_parameters().get("customer_id")
    return context.connection.scalar(sa.select(Customer.store_id).where(Customer.id == customer_id))


class Vehicle(TimestampMixin, Base):
    """A car owned by a customer, with its warranty and insurance (再保) facts."""

    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    # The store that sold or services the car (the DMS row's store); its staff see the car, its
    # visits and calls, and its maintenance cycle is this store's (migration dms0001).
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True, default=_owner_store)
    vin: Mapped[str] = mapped_column(sa.String(17), unique=True)
    plate: Mapped[str | None] = mapped_column(sa.String(16))
    brand: Mapped[str | None] = mapped_column(sa.String(50))
    model: Mapped[str | None] = mapped_column(sa.String(50))
    tier: Mapped[Tier] = mapped_column(str_enum(Tier, 10))
    purchase_date: Mapped[dt.date | None] = mapped_column(index=True)
    warranty_end: Mapped[dt.date | None] = mapped_column(index=True)
    insurance_expiry: Mapped[dt.date | None] = mapped_column(index=True)
    insured_here: Mapped[bool] = mapped_column(default=False)

    customer: Mapped[Customer] = relationship(back_populates="vehicles")
    store: Mapped[Store] = relationship()


class ServiceVisit(Base):
    """One after-sales visit (进厂) from the DMS."""

    __tablename__ = "service_visits"
    __table_args__ = (
        sa.Index("ix_service_visits_customer_paid_date", "customer_id", "paid", "visit_date"),
        # "No later visit of this car" (maintenance due) reads only the index (migration campaigns0002).
        sa.Index("ix_service_visits_vehicle_date", "vehicle_id", "visit_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The repair-order number when the export has one, otherwise customer|vin|date|type:
    # what makes re-importing the same file change nothing.
    dedup_key: Mapped[str] = mapped_column(sa.String(160), unique=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    vehicle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vehicles.id"))
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    visit_date: Mapped[dt.date] = mapped_column(index=True)
    visit_type: Mapped[VisitType] = mapped_column(str_enum(VisitType, 16))
    paid: Mapped[bool] = mapped_column()
    amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    advisor: Mapped[str | None] = mapped_column(sa.String(50))
    ro_number: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="visits")
    vehicle: Mapped[Vehicle | None] = relationship()
    store: Mapped[Store] = relationship()


class CustomerTouch(Base):
    """Per customer, what the customer-base classes (保有/有效/流失/再保) are computed from.

    Kept by database triggers on ``vehicles`` and ``service_visits`` (migration campaigns0002),
    so every writer (the importer, the demo, the ORM, bulk COPY) keeps it current; the
    application never writes it. Dates are the latest overall: readers asking "as of" an earlier
    date than ``last_paid_visit``/``last_purchase`` fall back to the visits and cars themselves
    (see :func:`callcenter.customer_base.classes_query`). A customer without a row has no car
    and no paid visit. Selecting win-back's lapsed customers from it instead of aggregating
    3 million visits brought that selection from 11-17 s to seconds (docs/benchmarks.md).
    """

    __tablename__ = "customer_touch"

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    last_paid_visit: Mapped[dt.date | None] = mapped_column(index=True)  # latest paid visit, any type
    last_purchase: Mapped[dt.date | None] = mapped_column()  # latest car purchase
    cars_mid: Mapped[int] = mapped_column(server_default=sa.text("0"))  # cars of any tier but premium
    cars_premium: Mapped[int] = mapped_column(server_default=sa.text("0"))
    latest_vehicle_id: Mapped[int | None] = mapped_column()  # the highest vehicle id
    insured_until: Mapped[dt.date | None] = mapped_column()  # latest expiry of a policy taken here


class CustomerStoreTouch(Base):
    """:class:`CustomerTouch` per store: the same facts from one store's cars and visits only.

    What a store's own customer-base classes and its campaigns' audiences are computed from (a
    customer who services one car in store A and another in store B is active or lapsed in each
    store on that store's own visits). Kept by triggers like customer_touch (migration dms0001).
    Any car or visit (paid or not) in the store gives the pair a row, so a row also says that the
    store sees the customer (:func:`customer_in_store`).
    """

    __tablename__ = "customer_store_touch"
    __table_args__ = (sa.Index("ix_customer_store_touch_store_paid", "store_id", "last_paid_visit"),)

    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    last_paid_visit: Mapped[dt.date | None] = mapped_column()
    last_purchase: Mapped[dt.date | None] = mapped_column()
    cars_mid: Mapped[int] = mapped_column(server_default=sa.text("0"))
    cars_premium: Mapped[int] = mapped_column(server_default=sa.text("0"))
    latest_vehicle_id: Mapped[int | None] = mapped_column()
    insured_until: Mapped[dt.date | None] = mapped_column()


def customer_in_store(store_id: int) -> sa.ColumnElement[bool]:
    """Customers a store's staff may see: its home customers and those with a car or a visit there.

    A customer belongs to the dealer group; each store sees them through its own cars and visits
    (and sees only those: callers filter vehicles, visits and calls by their ``store_id``).
    """
    # The per-store summary has a row for every car and visit of the customer in the store: one
    # index range, where probing every customer's cars and visits cost two lookups per customer.
    return sa.or_(
        Customer.store_id == store_id,
        Customer.id.in_(sa.select(CustomerStoreTouch.customer_id).where(CustomerStoreTouch.store_id == store_id)),
    )


class User(Base):
    """A console user. ``store_id`` NULL means group-wide (sees every store)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(sa.String(100))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role, 16))
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()
    # Raised by logout: every console session carries
    # the generation it was opened with, and one of an older generation is refused.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")

    store: Mapped[Store | None] = relationship()


class ImportRun(Base):
    """What each DMS import did, for the audit trail and the console's import history."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # customers | visits
    filename: Mapped[str] = mapped_column(sa.String(255))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    rows: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list | None] = mapped_column(sa.JSON)  # the first 200 rejections



# --------------------------------------------------------------------------- campaigns and calls
# The dialer side (campaigns/): what was called, how it went, what the customer said.


class CampaignType(str, enum.Enum):
    """The seeds' touch plan; each type is an audience rule plus a script."""

    POST_SERVICE = "post_service"  # 售后回访
    NEW_CAR = "new_car"  # 新车三个月触点
    MAINTENANCE_DUE = "maintenance_due"  # 保养提醒
    INSURANCE_RENEWAL = "insurance_renewal"  # 续保提醒
    WARRANTY_EXPIRY = "warranty_expiry"  # 出保前免费检查
    WINBACK = "winback"  # 流失客户召回
    NPS = "nps"
    CUSTOM = "custom"


class CampaignStatus(str, enum.Enum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TaskState(str, enum.Enum):
    """Life of one customer's task in a campaign. Final states: completed, failed, cancelled."""

    PENDING = "pending"  # waiting for its time (calling window, retry delay)
    QUEUED = "queued"  # on the Redis stream
    DIALING = "dialing"  # a worker claimed the attempt and is calling
    COMPLETED = "completed"  # reached a conclusion (any business outcome)
    FAILED = "failed"  # attempts exhausted or undialable
    CANCELLED = "cancelled"  # campaign cancelled, opted out elsewhere, DNC


class CallOutcome(str, enum.Enum):
    """Business outcome of a call, beyond the SIP disposition."""

    COMPLETED = "completed"  # the script ran to its end
    PARTIAL = "partial"  # answered, ended before the script's end
    REFUSED = "refused"  # 拒访: declined the survey; neither a completed revisit nor a failure to reach
    CALLBACK = "callback"  # customer asked to be called later
    OPT_OUT = "opt_out"  # asked not to be called again
    WRONG_NUMBER = "wrong_number"
    ANSWERING_MACHINE = "answering_machine"
    TRANSFERRED = "transferred"  # handed to a human
    TRANSFER_FAILED = "transfer_failed"  # asked for a person, nobody could take it: an agent calls back
    HUNG_UP = "hung_up"  # customer hung up early
    NOT_REACHED = "not_reached"  # busy, no answer, unavailable ...
    ERROR = "error"  # our side failed (media, worker); the record says why


class TicketStatus(str, enum.Enum):
    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    VERIFIED = "verified"  # the customer confirmed on a callback
    CLOSED = "closed"  # closed without verification (duplicate, invalid)


class CallbackStatus(str, enum.Enum):
    PENDING = "pending"
    QUEUED = "queued"
    DONE = "done"
    CANCELLED = "cancelled"


class ScriptVersion(Base):
    """One saved version of a dialog script (话术), as YAML text.

    The console's script editor writes a new version on every save (and the installed file);
    a campaign records the version it was created with (``campaigns.script_version_id``) and
    its calls use that text, so editing a script never changes a running campaign.
    """

    __tablename__ = "script_versions"
    __table_args__ = (sa.UniqueConstraint("script_id", "version", name="uq_script_versions_script_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    script_id: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column()
    text: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    type: Mapped[CampaignType] = mapped_column(str_enum(CampaignType))
    script: Mapped[str] = mapped_column(sa.String(64))  # dialog script id
    # The script version (``script_versions``) the campaign was created with: the console's
    # script editor saves new versions, and a running campaign keeps calling with this one.
    # NULL: the installed file (campaigns created before console0001, or from the CLI).
    script_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("script_versions.id"))
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)  # NULL: all stores
    status: Mapped[CampaignStatus] = mapped_column(str_enum(CampaignStatus), default=CampaignStatus.DRAFT)
    as_of: Mapped[dt.date] = mapped_column()
    params: Mapped[dict | None] = mapped_column(sa.JSON)  # audience and dialing parameters
    max_channels: Mapped[int] = mapped_column(default=4)
    max_attempts: Mapped[int] = mapped_column(default=3)
    robot: Mapped[bool] = mapped_column(default=True)  # False: preview calls by agents
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    store: Mapped[Store | None] = relationship()


class CallTask(Base):
    """One customer to reach in one campaign; the unit the dialer schedules and retries."""

    __tablename__ = "call_tasks"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "customer_id", name="uq_call_tasks_campaign_customer"),
        sa.Index("ix_call_tasks_state_next", "state", "next_attempt_at"),
        sa.Index("ix_call_tasks_campaign_state", "campaign_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id"))
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    vehicle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vehicles.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service_visits.id"), index=True)
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    phone: Mapped[str] = mapped_column(sa.String(20))
    state: Mapped[TaskState] = mapped_column(str_enum(TaskState), default=TaskState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    last_disposition: Mapped[str | None] = mapped_column(sa.String(24))
    outcome: Mapped[CallOutcome | None] = mapped_column(str_enum(CallOutcome))
    context: Mapped[dict | None] = mapped_column(sa.JSON)  # script variables, touch point, survey flags
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    campaign: Mapped[Campaign] = relationship()
    customer: Mapped[Customer] = relationship()


class Call(Base):
    """One call attempt (robot or agent) with its outcome; the record is written whatever happens."""

    __tablename__ = "calls"
    __table_args__ = (
        # Exactly-once dialing: an attempt's row is created before the INVITE; a redelivered
        # task finds it and never dials that attempt again.
        sa.UniqueConstraint("task_id", "attempt", name="uq_calls_task_attempt"),
        sa.Index("ix_calls_store_started", "store_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int | None] = mapped_column(sa.ForeignKey("call_tasks.id"))
    attempt: Mapped[int] = mapped_column(default=1)
    campaign_id: Mapped[int | None] = mapped_column(sa.ForeignKey("campaigns.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"))
    agent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    robot: Mapped[bool] = mapped_column(default=True)
    script: Mapped[str | None] = mapped_column(sa.String(64))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    worker: Mapped[str | None] = mapped_column(sa.String(100))  # host:pid that placed it
    sip_call_id: Mapped[str | None] = mapped_column(sa.String(128))
    disposition: Mapped[str | None] = mapped_column(sa.String(24), index=True)  # CallDisposition value
    sip_code: Mapped[int | None] = mapped_column()
    sip_reason: Mapped[str | None] = mapped_column(sa.String(200))
    outcome: Mapped[CallOutcome | None] = mapped_column(str_enum(CallOutcome), index=True)
    hangup_by: Mapped[str | None] = mapped_column(sa.String(10))  # local | remote
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)  # INVITE sent
    ringing_at: Mapped[dt.datetime | None] = mapped_column()
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    talk_seconds: Mapped[float | None] = mapped_column()
    recording: Mapped[str | None] = mapped_column(sa.String(255))  # relative to the data dir
    score5: Mapped[int | None] = mapped_column()
    nps: Mapped[int | None] = mapped_column()
    sentiment: Mapped[str | None] = mapped_column(sa.String(10), index=True)
    answers: Mapped[dict | None] = mapped_column(sa.JSON)  # script question id -> answer
    actions: Mapped[list | None] = mapped_column(sa.JSON)  # dialog actions taken, in order
    error: Mapped[str | None] = mapped_column(sa.Text)  # what went wrong on our side
    notes: Mapped[str | None] = mapped_column(sa.Text)  # agent notes
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    task: Mapped[CallTask | None] = relationship()
    campaign: Mapped[Campaign | None] = relationship()
    customer: Mapped[Customer | None] = relationship()
    utterances: Mapped[list["Utterance"]] = relationship(back_populates="call", order_by="Utterance.seq")
    tags: Mapped[list["CallTag"]] = relationship(back_populates="call", order_by="CallTag.id")


class Utterance(Base):
    """One line of a call's transcript; times in seconds from the answer."""

    __tablename__ = "utterances"
    __table_args__ = (sa.UniqueConstraint("call_id", "seq", name="uq_utterances_call_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column()
    speaker: Mapped[str] = mapped_column(sa.String(10))  # Speaker value
    text: Mapped[str] = mapped_column(sa.Text)
    start: Mapped[float] = mapped_column()
    end: Mapped[float] = mapped_column()
    confidence: Mapped[float | None] = mapped_column()
    intent: Mapped[str | None] = mapped_column(sa.String(20))
    prompt_id: Mapped[str | None] = mapped_column(sa.String(64))  # robot lines: the script prompt

    call: Mapped[Call] = relationship(back_populates="utterances")


class CallTag(Base):
    """A feedback category found in a call, with the words that support it."""

    __tablename__ = "call_tags"
    __table_args__ = (sa.UniqueConstraint("call_id", "category", name="uq_call_tags_call_category"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("calls.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(sa.String(24), index=True)  # FeedbackCategory value
    department: Mapped[str] = mapped_column(sa.String(16), index=True)  # Department value
    confidence: Mapped[float | None] = mapped_column()
    evidence: Mapped[list | None] = mapped_column(sa.JSON)  # [{"utterance": seq, "text": "...", "start": i, "end": j}]
    source: Mapped[str] = mapped_column(sa.String(12), default="model")  # model | supervisor
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    call: Mapped[Call] = relationship(back_populates="tags")


class Ticket(Base):
    """A complaint or follow-up routed to a department: open -> assigned -> resolved -> verified."""

    __tablename__ = "tickets"
    __table_args__ = (sa.Index("ix_tickets_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("calls.id"), index=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    department: Mapped[str] = mapped_column(sa.String(16), index=True)  # Department value
    category: Mapped[str | None] = mapped_column(sa.String(24))  # FeedbackCategory value
    kind: Mapped[str] = mapped_column(sa.String(16), default="complaint")  # complaint | follow_up
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[TicketStatus] = mapped_column(str_enum(TicketStatus), default=TicketStatus.OPEN)
    priority: Mapped[str] = mapped_column(sa.String(8), default="normal")  # low | normal | high
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    due_at: Mapped[dt.datetime | None] = mapped_column()
    resolution: Mapped[str | None] = mapped_column(sa.Text)
    verify_call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("calls.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    verified_at: Mapped[dt.datetime | None] = mapped_column()

    customer: Mapped[Customer] = relationship()
    call: Mapped[Call | None] = relationship(foreign_keys=[call_id])


class TicketEvent(Base):
    """The history of a ticket: who changed what, when."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(sa.String(24))  # created, assigned, status, note, due, callback
    note: Mapped[str | None] = mapped_column(sa.Text)  # what a person wrote, nothing else
    # The event's facts as codes and ids, rendered in the reader's language (migration tickets0001):
    # created {"call_id", "department"}, assigned {"assignee_id", "assignee"}, status {"status"},
    # due and callback {"due_at": naive UTC ISO}, callback also {"robot"}.
    data: Mapped[dict | None] = mapped_column(sa.JSON)


class Callback(Base):
    """A call promised to the customer at a time they chose (robot or agent)."""

    __tablename__ = "callbacks"
    __table_args__ = (sa.Index("ix_callbacks_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("calls.id"))  # the call that promised it
    task_id: Mapped[int | None] = mapped_column(sa.ForeignKey("call_tasks.id"))
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"))  # verification callbacks
    due_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str | None] = mapped_column(sa.String(200))
    robot: Mapped[bool] = mapped_column(default=True)
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    status: Mapped[CallbackStatus] = mapped_column(str_enum(CallbackStatus), default=CallbackStatus.PENDING)
    done_call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("calls.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column()

    customer: Mapped[Customer] = relationship()


class DoNotCall(Base):
    """Numbers that must never be dialled by a campaign (customer opt-outs, admin entries)."""

    __tablename__ = "do_not_call"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(20), unique=True)
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    reason: Mapped[str | None] = mapped_column(sa.String(200))
    source: Mapped[str] = mapped_column(sa.String(16))  # robot | agent | admin | import
    call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("calls.id"))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# Console-owned tables (web/) live in their own module; imported here so Base.metadata has them.
from callcenter.storage import web_models as _web_models  # noqa: E402,F401
