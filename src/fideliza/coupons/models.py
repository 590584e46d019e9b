"""Coupon campaigns, their codes, redemptions and per-period budget counters."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, Money, ProgramId, UTCDateTime


class CouponCampaign(Base):
    """What a campaign's codes are worth, who may use them, when, how often, at what cost."""

    __tablename__ = "coupon_campaigns"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        CheckConstraint(
            "max_uses_per_code IS NULL OR max_uses_per_code >= 1", name="max_uses_positive"
        ),
        CheckConstraint("points_per_code >= 0", name="points_per_code_not_negative"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    discount: Mapped[dict[str, Any]] = mapped_column(Json)
    min_spend: Mapped[Decimal | None] = mapped_column(Money)
    max_uses_per_code: Mapped[int | None] = mapped_column(Integer)
    once_per_member: Mapped[bool] = mapped_column(Boolean)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    code_valid_days: Mapped[int | None] = mapped_column(Integer)
    code_prefix: Mapped[str] = mapped_column(String(12))
    code_bits: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(12))
    trigger_min_amount: Mapped[Decimal | None] = mapped_column(Money)
    return_policy: Mapped[str] = mapped_column(String(12))
    budget_points: Mapped[int | None] = mapped_column(BigInteger)
    budget_money: Mapped[Decimal | None] = mapped_column(Money)
    budget_period: Mapped[str] = mapped_column(String(10))
    points_per_code: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CouponCode(Base):
    """One code; `code` is normalized (no separators). `max_uses` NULL means unlimited."""

    __tablename__ = "coupon_codes"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        # The backstop of "a code limited to N uses is used at most N times", whatever races.
        CheckConstraint("max_uses IS NULL OR uses <= max_uses", name="uses_within_limit"),
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        # One next-order coupon per purchase and campaign; bulk codes (NULL) stay out of it.
        Index(
            "ix_coupon_codes_source_ref",
            "campaign_id",
            "source_ref",
            unique=True,
            sqlite_where=text("source_ref IS NOT NULL"),
            postgresql_where=text("source_ref IS NOT NULL"),
        ),
        # A member's coupons; bulk-generated codes (no member) stay out of the index.
        Index(
            "ix_coupon_codes_member_id",
            "member_id",
            sqlite_where=text("member_id IS NOT NULL"),
            postgresql_where=text("member_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("coupon_campaigns.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(30))
    source_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CouponRedemption(Base):
    """A use of a code, attached to the purchase it discounted (restored by a return)."""

    __tablename__ = "coupon_redemptions"
    __table_args__ = (
        # The same code on the same purchase is one redemption (a till's retry replays it).
        UniqueConstraint("code_id", "purchase_external_id"),
        # "Once per member": set while the redemption stands, cleared when it is restored.
        UniqueConstraint("campaign_id", "once_member_id"),
        Index("ix_coupon_redemptions_purchase", "program_id", "purchase_external_id"),
        CheckConstraint("discount_amount >= 0", name="discount_not_negative"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("coupon_campaigns.id"))
    code_id: Mapped[int] = mapped_column(ForeignKey("coupon_codes.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    once_member_id: Mapped[int | None] = mapped_column(BigInteger)
    purchase_external_id: Mapped[str | None] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64))
    basket_total: Mapped[Decimal] = mapped_column(Money)
    discount_amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    budget_period_start: Mapped[date | None] = mapped_column(Date)
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CouponBudgetUsage(Base):
    """What a campaign spent in one budget period; the CHECKs forbid overspending."""

    __tablename__ = "coupon_budget_usage"
    __table_args__ = (
        CheckConstraint(
            "points_budget IS NULL OR points_spent <= points_budget", name="points_within_budget"
        ),
        CheckConstraint(
            "money_budget IS NULL OR money_spent <= money_budget", name="money_within_budget"
        ),
        CheckConstraint("points_spent >= 0 AND money_spent >= 0", name="spent_not_negative"),
    )

    campaign_id: Mapped[int] = mapped_column(ForeignKey("coupon_campaigns.id"), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    points_spent: Mapped[int] = mapped_column(BigInteger)
    money_spent: Mapped[Decimal] = mapped_column(Money)
    points_budget: Mapped[int | None] = mapped_column(BigInteger)
    money_budget: Mapped[Decimal | None] = mapped_column(Money)
