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
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Customer(TimestampMixin, Base):
    """A person known to the group: buyer, service customer or prospect (保有客户)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The DMS's customer number (客户编号), unique across the dealer group.
    external_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    store_id: Mapped[int] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    phone: Mapped[str | None] = mapped_column(sa.String(20), index=True)
    gender: Mapped[Gender | None] = mapped_column(str_enum(Gender, 1))
    birthday: Mapped[dt.date | None] = mapped_column()
    city: Mapped[str | None] = mapped_column(sa.String(50))
    district: Mapped[str | None] = mapped_column(sa.String(50))
    occupation: Mapped[str | None] = mapped_column(sa.String(50))

    store: Mapped[Store] = relationship()
    vehicles: Mapped[list["Vehicle"]] = relationship(back_populates="customer", order_by="Vehicle.id")
    visits: Mapped[list["ServiceVisit"]] = relationship(
        back_populates="customer", order_by="ServiceVisit.visit_date"
    )


class Vehicle(TimestampMixin, Base):
    """A car owned by a customer, with its warranty and insurance (再保) facts."""

    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    vin: Mapped[str] = mapped_column(sa.String(17), unique=True)
    plate: Mapped[str | None] = mapped_column(sa.String(16))
    brand: Mapped[str | None] = mapped_column(sa.String(50))
    model: Mapped[str | None] = mapped_column(sa.String(50))
    tier: Mapped[Tier] = mapped_column(str_enum(Tier, 10))
    purchase_date: Mapped[dt.date | None] = mapped_column()
    warranty_end: Mapped[dt.date | None] = mapped_column(index=True)
    insurance_expiry: Mapped[dt.date | None] = mapped_column(index=True)
    insured_here: Mapped[bool] = mapped_column(default=False)

    customer: Mapped[Customer] = relationship(back_populates="vehicles")


class ServiceVisit(Base):
    """One after-sales visit (进厂) from the DMS."""

    __tablename__ = "service_visits"
    __table_args__ = (
        sa.Index("ix_service_visits_customer_paid_date", "customer_id", "paid", "visit_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The repair-order number when the export has one, otherwise customer|vin|date|type:
    # what makes re-importing the same file change nothing.
    dedup_key: Mapped[str] = mapped_column(sa.String(160), unique=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    vehicle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vehicles.id"), index=True)
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
