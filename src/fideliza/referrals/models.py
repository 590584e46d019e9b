"""Referral codes, referrals and each program's referral configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, UTCDateTime


class ReferralConfigRow(Base):
    """A program's referral configuration (validated JSON: `referrals.schemas.ReferralConfig`)."""

    __tablename__ = "referral_configs"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReferralCode(Base):
    """A member's own referral code, created the first time it is asked for."""

    __tablename__ = "referral_codes"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(String(32))  # normalized (no separators)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Referral(Base):
    """A new member linked to the member who referred them, and the state of their rewards."""

    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_program_state", "program_id", "state", "due_at"),
        Index("ix_referrals_referrer", "referrer_member_id", "linked_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    referrer_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    # A member is referred at most once: this is also what makes a cycle impossible to store.
    referred_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    state: Mapped[str] = mapped_column(String(20))
    reject_reason: Mapped[str | None] = mapped_column(String(40))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    rewarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referred_points: Mapped[int] = mapped_column(BigInteger, default=0)
