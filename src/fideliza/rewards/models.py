"""The rewards catalog, its redemptions and the per-period budget counters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, Money, UTCDateTime


class Reward(Base):
    """A reward members redeem points for; `stock` NULL means unlimited."""

    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        # The backstop of "the last unit goes to exactly one member".
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("points_cost > 0", name="points_cost_positive"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    tier_costs: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    eligible_tiers: Mapped[list[str]] = mapped_column(Json, default=list)
    stock: Mapped[int | None] = mapped_column(Integer)
    limit_per_member: Mapped[int | None] = mapped_column(Integer)
    limit_period: Mapped[str] = mapped_column(String(10))
    available_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    available_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_points: Mapped[int | None] = mapped_column(BigInteger)
    budget_money: Mapped[Decimal | None] = mapped_column(Money)
    budget_period: Mapped[str] = mapped_column(String(10))
    value: Mapped[Decimal | None] = mapped_column(Money)
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RewardBudgetSpend(Base):
    """What a reward's budget has spent in one period (reserved at hold, given back at release).

    The limits are copied into the row so the database itself refuses an overspend.
    """

    __tablename__ = "reward_budget_spend"
    __table_args__ = (
        CheckConstraint(
            "points_limit IS NULL OR points_spent <= points_limit", name="points_within_budget"
        ),
        CheckConstraint(
            "money_limit IS NULL OR money_spent <= money_limit", name="money_within_budget"
        ),
        CheckConstraint("points_spent >= 0 AND money_spent >= 0", name="spend_not_negative"),
    )

    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    points_spent: Mapped[int] = mapped_column(BigInteger)
    money_spent: Mapped[Decimal] = mapped_column(Money)
    points_limit: Mapped[int | None] = mapped_column(BigInteger)
    money_limit: Mapped[Decimal | None] = mapped_column(Money)


class Redemption(Base):
    """A member's redemption of a reward: its points hold, its unit of stock, its fulfilment."""

    __tablename__ = "reward_redemptions"
    __table_args__ = (
        UniqueConstraint("program_id", "reference"),
        Index("ix_reward_redemptions_member_reward", "member_id", "reward_id", "created_at"),
        Index("ix_reward_redemptions_due", "program_id", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    hold_id: Mapped[int] = mapped_column(ForeignKey("point_holds.id"))
    reference: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(12))
    points: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[Decimal | None] = mapped_column(Money)
    stock_taken: Mapped[bool] = mapped_column(Boolean)
    budget_period_key: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    fulfilment: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
