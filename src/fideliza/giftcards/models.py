"""The money ledger: accounts with a currency, append-only transactions and entries, gift cards."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Money, ProgramId, UTCDateTime


class MoneyAccount(Base):
    """A gift card's or a wallet's money, or a program's system account in one currency."""

    __tablename__ = "money_accounts"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        # The backstop under the service's own check: no transaction can commit an overdraft.
        CheckConstraint("balance IS NULL OR balance >= 0", name="balance_non_negative"),
        Index("ix_money_accounts_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(3))
    # Customer accounts cache the sum of their entries (written with them); system accounts
    # keep NULL, as in the points ledger, so they are no lock every writer queues on.
    balance: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MoneyTransaction(Base):
    """One atomic move of money; its entries sum to zero. Never updated, never deleted."""

    __tablename__ = "money_transactions"
    __table_args__ = (
        Index(
            "uq_money_transactions_idempotency_key",
            "program_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_money_transactions_account", "account_id", "id"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    # The customer account (card or wallet) the transaction is about.
    account_id: Mapped[int] = mapped_column(ForeignKey("money_accounts.id"))
    kind: Mapped[str] = mapped_column(String(12))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    # The customer account's balance right after: the receipt's figure, and a replay's answer.
    balance_after: Mapped[Decimal] = mapped_column(Money)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    refunds_id: Mapped[int | None] = mapped_column(ForeignKey("money_transactions.id"), index=True)


class MoneyEntry(Base):
    """A signed amount on one account within a transaction."""

    __tablename__ = "money_entries"
    __table_args__ = (Index("ix_money_entries_account", "account_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("money_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("money_accounts.id"))
    amount: Mapped[Decimal] = mapped_column(Money)


class GiftCard(Base):
    """A card known by its code (stored hashed), optionally a PIN, an owner and an expiry."""

    __tablename__ = "gift_cards"
    __table_args__ = (
        UniqueConstraint("program_id", "code_hash"),
        CheckConstraint("status IN ('active', 'frozen', 'closed')", name="status_known"),
        Index("ix_gift_cards_due", "program_id", "expired_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("money_accounts.id"), unique=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    code_hint: Mapped[str] = mapped_column(String(8))
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    initial_value: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(12))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set once by the expiry job, when what was left went to breakage.
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
