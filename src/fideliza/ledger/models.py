"""The points ledger: accounts, append-only transactions and entries, lots and allocations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, ProgramId, UTCDateTime


class Account(Base):
    """A points account: a member's available/pending/held points, or a program's system account."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        Index("ix_accounts_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(64))
    # A member account caches the sum of its entries, written in the same transaction as them.
    # System accounts are touched by every transaction of the program: caching their balance
    # would make their row a lock every writer queues on, so it stays NULL and is summed.
    balance: Mapped[int | None] = mapped_column(BigInteger)


class LedgerTransaction(Base):
    """One atomic change of balances; its entries sum to zero. Never updated, never deleted."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        # Partial: most transactions (earnings from purchases) carry no key of their own, and
        # an index that skips them costs the bulk ingest nothing.
        Index(
            "uq_ledger_transactions_idempotency_key",
            "program_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_ledger_transactions_member", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    source_type: Mapped[str | None] = mapped_column(String(30))
    source_ref: Mapped[str | None] = mapped_column(String(100))
    issuer: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))


class Entry(Base):
    """A signed amount on one account within a transaction; it records the rule that caused it."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account", "account_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    rule_id: Mapped[int | None] = mapped_column()
    rule_version: Mapped[int | None] = mapped_column()
    tier_code: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(500))


class Lot(Base):
    """Points earned together, with one expiry; burns take the soonest-expiring lots first."""

    __tablename__ = "point_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        Index("ix_point_lots_member_open", "member_id", "state", "expires_at"),
        Index("ix_point_lots_due", "program_id", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    earn_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    # pending until available_at (the return window), then available, until expires_at.
    state: Mapped[str] = mapped_column(String(12))
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Allocation(Base):
    """How many points of a lot a transaction took (or gave back, when negative)."""

    __tablename__ = "lot_allocations"
    __table_args__ = (Index("ix_lot_allocations_lot", "lot_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("point_lots.id"))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(12))


class Hold(Base):
    """Points reserved for a redemption: captured or released (or expired) exactly once."""

    __tablename__ = "point_holds"
    __table_args__ = (UniqueConstraint("program_id", "reference"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12))
    reference: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(String(500))
    hold_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    final_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


# The columns the batch writers (purchases' ingest, ledger.redemptions) give `db.bulk_insert`, in
# the order of the row tuples they build.
TX_BULK_COLUMNS = (
    "id",
    "program_id",
    "member_id",
    "kind",
    "occurred_at",
    "recorded_at",
    "reason",
    "source_type",
    "source_ref",
)
ALLOCATION_BULK_COLUMNS = ("lot_id", "transaction_id", "amount", "kind")
