"""Tier levels of a program and each member's tier history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, Money, UTCDateTime


class TierLevelRow(Base):
    """A tier (Bronze, Silver, Gold …): the threshold to reach it and its earning multiplier."""

    __tablename__ = "tier_levels"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        UniqueConstraint("program_id", "rank"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    rank: Mapped[int] = mapped_column()
    threshold: Mapped[Decimal] = mapped_column(Money)
    multiplier: Mapped[Decimal] = mapped_column(Money)  # an exact decimal factor, like money
    benefits: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class TierHistory(Base):
    """A member's change of tier, with why."""

    __tablename__ = "tier_history"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    from_code: Mapped[str | None] = mapped_column(String(32))
    to_code: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500))
