"""Custom member events (store visits, reviews, survey answers, …) that earn through rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, ProgramId, UTCDateTime


class MemberEvent(Base):
    """Something a member did, sent by an app or a till; idempotent by external id."""

    __tablename__ = "member_events"
    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        Index("ix_member_events_member", "member_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    external_id: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(50))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    earn_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
