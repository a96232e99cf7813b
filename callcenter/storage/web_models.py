"""Tables the console (``web/``) owns: audit log, API tokens, login attempts, improvement
plans, QA forms and reviews, tag corrections, background jobs (imports, audio rendering).

Imported at the end of :mod:`callcenter.storage.models` so that ``Base.metadata`` (and with it
Alembic) sees them; migrations ``web0001_console`` and later create them. Nothing here runs on
a thread of its own: these are plain ORM classes.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from callcenter.domain import Department, FeedbackCategory
from callcenter.storage.models import Base, Store, User, str_enum, utcnow


class AuditLog(Base):
    """One sensitive action: who, when, from where, on what (exports, playback, DNC, roles...)."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    # Kept beside the id so the log still reads right after a user is renamed.
    username: Mapped[str | None] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(48))
    target_type: Mapped[str | None] = mapped_column(sa.String(32))
    target_id: Mapped[str | None] = mapped_column(sa.String(64))
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    details: Mapped[dict | None] = mapped_column(sa.JSON)


class ApiToken(Base):
    """A bearer token for ``/api/v1``; acts with its user's role and store scope.

    Only the SHA-256 of the token is stored; the token itself is shown once at creation.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))  # first characters, to recognise a token in lists
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    can_write: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class LoginAttempt(Base):
    """A login try, for rate limiting by user name and by client address."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        sa.Index("ix_login_attempts_username_at", "username", "at"),
        sa.Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    username: Mapped[str] = mapped_column(sa.String(64))
    ip: Mapped[str] = mapped_column(sa.String(45))
    success: Mapped[bool] = mapped_column()


class PlanStatus(str, enum.Enum):
    ACTIVE = "active"  # cycle running
    CLOSED = "closed"  # cycle over, result recorded
    CANCELLED = "cancelled"


class ImprovementPlan(Base):
    """An improvement plan for one of a month's top-3 problems (the seeds' monthly loop).

    The plan's problem rate is the share of completed revisit calls tagged ``category``; the
    comparison window before the plan has the same length as the cycle and ends the day
    before ``start_date``.
    """

    __tablename__ = "improvement_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)  # NULL: whole group
    department: Mapped[Department] = mapped_column(str_enum(Department, 16))
    category: Mapped[FeedbackCategory] = mapped_column(str_enum(FeedbackCategory, 24))
    source_month: Mapped[str | None] = mapped_column(sa.String(7))  # "2026-10": the top-3 it came from
    title: Mapped[str] = mapped_column(sa.String(200))
    owner: Mapped[str] = mapped_column(sa.String(100))
    actions: Mapped[str] = mapped_column(sa.Text)
    cycle_months: Mapped[int] = mapped_column()
    start_date: Mapped[dt.date] = mapped_column()
    end_date: Mapped[dt.date] = mapped_column(index=True)
    status: Mapped[PlanStatus] = mapped_column(str_enum(PlanStatus, 16), default=PlanStatus.ACTIVE)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    # Recorded when the cycle is closed: {"before": {...}, "after": {...}, "improved": bool}.
    result: Mapped[dict | None] = mapped_column(sa.JSON)

    store: Mapped[Store | None] = relationship()


class QaForm(Base):
    """A quality-assurance scoring form: items with a maximum score each."""

    __tablename__ = "qa_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    # [{"key": "greeting", "label": "开场白与身份确认", "max": 10}, ...]
    items: Mapped[list] = mapped_column(sa.JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def max_total(self) -> int:
        return sum(int(item["max"]) for item in self.items)


class QaReview(Base):
    """A supervisor's score of one call against a QA form (one per call, form and reviewer)."""

    __tablename__ = "qa_reviews"
    __table_args__ = (sa.UniqueConstraint("call_id", "form_id", "reviewer_id", name="uq_qa_reviews_call_form_reviewer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    form_id: Mapped[int] = mapped_column(sa.ForeignKey("qa_forms.id"))
    reviewer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    scores: Mapped[dict] = mapped_column(sa.JSON)  # item key -> points
    total: Mapped[int] = mapped_column()
    max_total: Mapped[int] = mapped_column()
    comment: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    form: Mapped[QaForm] = relationship()
    reviewer: Mapped[User] = relationship()


class TagCorrection(Base):
    """A supervisor's correction of a call's feedback tags, kept for the classifier's next training.

    ``action`` is ``add`` (a category the model missed, with the supporting words) or ``remove``
    (a category the model got wrong). ``model_confidence`` is what the model had said.
    """

    __tablename__ = "tag_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    category: Mapped[FeedbackCategory] = mapped_column(str_enum(FeedbackCategory, 24))
    action: Mapped[str] = mapped_column(sa.String(8))  # add | remove
    evidence: Mapped[str | None] = mapped_column(sa.Text)
    model_confidence: Mapped[float | None] = mapped_column()
    corrected_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ConsoleJob(Base):
    """Work the console runs in the background: a DMS import (dry run or real) or rendering prompt
    audio. Progress is written here, so any console worker process can show it; the import
    history is the list of import jobs with who ran them.
    """

    __tablename__ = "console_jobs"
    __table_args__ = (sa.Index("ix_console_jobs_kind_created", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # import_customers | import_visits | render_audio
    status: Mapped[JobStatus] = mapped_column(str_enum(JobStatus, 16), default=JobStatus.QUEUED)
    dry_run: Mapped[bool] = mapped_column(default=False)
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    username: Mapped[str | None] = mapped_column(sa.String(64))
    filename: Mapped[str | None] = mapped_column(sa.String(255))  # as uploaded (shown, never a path)
    stored_name: Mapped[str | None] = mapped_column(sa.String(64))  # random name in <data dir>/imports
    target: Mapped[str | None] = mapped_column(sa.String(200))  # what a render job renders (a store, a script)
    total: Mapped[int | None] = mapped_column()
    done: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User | None] = relationship(foreign_keys=[created_by])
    store: Mapped[Store | None] = relationship()
