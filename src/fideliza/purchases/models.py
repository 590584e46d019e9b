"""Purchases and returns as the tills sent them, with the points they moved."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, Money, ProgramId, UTCDateTime


class Purchase(Base):
    """A purchase; `external_id` is the till's transaction id (the idempotency key)."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        Index("ix_purchases_member", "member_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    external_id: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(30))
    store: Mapped[str | None] = mapped_column(String(64))
    items: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_returned: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    earn_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))


class Return(Base):
    """Items of a purchase brought back; reverses their share of the purchase's points."""

    __tablename__ = "returns"
    __table_args__ = (UniqueConstraint("program_id", "external_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    amount: Mapped[Decimal] = mapped_column(Money)
    items: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
