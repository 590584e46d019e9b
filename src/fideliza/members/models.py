"""Members, their loyalty cards and their monthly activity buckets."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, Money, ProgramId, UTCDateTime


class Member(Base):
    """A customer enrolled in a program."""

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        Index("ix_members_program_email", "program_id", "email"),
        Index("ix_members_program_phone", "program_id", "phone"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    external_id: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    birthday: Mapped[date | None] = mapped_column(Date)
    locale: Mapped[str] = mapped_column(String(10), default="es")
    consent: Mapped[dict[str, bool]] = mapped_column(Json, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="active")
    tier_code: Mapped[str | None] = mapped_column(String(32))
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tier_grace_used: Mapped[int] = mapped_column(default=0)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Card(Base):
    """A loyalty card number (Luhn-checked) that identifies a member at a till."""

    __tablename__ = "cards"
    __table_args__ = (UniqueConstraint("program_id", "number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    number: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default="active")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberMonth(Base):
    """A member's activity in one local calendar month: the basis of tiers and first purchase."""

    __tablename__ = "member_months"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    spend: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    purchases: Mapped[int] = mapped_column(default=0)
