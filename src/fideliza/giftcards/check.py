"""`fideliza giftcards check`: recomputes every money balance from the entries, reports each
difference (an empty list is a healthy ledger)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from fideliza.giftcards.domain import TxKind
from fideliza.giftcards.models import GiftCard, MoneyAccount, MoneyEntry, MoneyTransaction

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One broken invariant: what, where, what the entries say and what was found."""

    check: str
    subject: str
    expected: Decimal | str
    found: Decimal | str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject} expected {self.expected}, found {self.found}"


def _scoped(statement: Any, column: Any, program_id: int | None) -> Any:
    """Limits a query to one program (or not, with None)."""
    return statement if program_id is None else statement.where(column == program_id)


def _unbalanced_transactions(db: Session, program_id: int | None) -> Iterable[Discrepancy]:
    total = func.sum(MoneyEntry.amount)
    statement = (
        select(MoneyEntry.transaction_id, total)
        .join(MoneyTransaction, MoneyTransaction.id == MoneyEntry.transaction_id)
        .group_by(MoneyEntry.transaction_id)
        .having(total != ZERO)
    )
    for tx_id, amount in db.execute(_scoped(statement, MoneyTransaction.program_id, program_id)):
        yield Discrepancy("transaction entries sum to zero", f"transaction {tx_id}", ZERO, amount)


def _mixed_currencies(db: Session, program_id: int | None) -> Iterable[Discrepancy]:
    statement = (
        select(MoneyEntry.transaction_id, MoneyTransaction.currency, MoneyAccount.currency)
        .join(MoneyTransaction, MoneyTransaction.id == MoneyEntry.transaction_id)
        .join(MoneyAccount, MoneyAccount.id == MoneyEntry.account_id)
        .where(MoneyAccount.currency != MoneyTransaction.currency)
    )
    for tx_id, expected, found in db.execute(
        _scoped(statement, MoneyTransaction.program_id, program_id)
    ):
        yield Discrepancy(
            "entries are in their transaction's currency", f"transaction {tx_id}", expected, found
        )


def _cached_balances(db: Session, program_id: int | None) -> Iterable[Discrepancy]:
    sums = (
        select(MoneyEntry.account_id, func.sum(MoneyEntry.amount).label("total"))
        .group_by(MoneyEntry.account_id)
        .subquery()
    )
    statement = (
        select(MoneyAccount.code, MoneyAccount.balance, sums.c.total)
        .outerjoin(sums, sums.c.account_id == MoneyAccount.id)
        .where(MoneyAccount.balance.is_not(None))
    )
    for code, cached, total in db.execute(_scoped(statement, MoneyAccount.program_id, program_id)):
        recomputed = total if total is not None else ZERO
        if cached != recomputed:
            yield Discrepancy("cached balance equals the sum of entries", code, recomputed, cached)
        if cached < 0:
            yield Discrepancy("balance is never negative", code, ZERO, cached)


def _over_refunded(db: Session, program_id: int | None) -> Iterable[Discrepancy]:
    refund = aliased(MoneyTransaction)
    refunded = func.sum(refund.amount)
    statement = (
        select(MoneyTransaction.id, MoneyTransaction.amount, refunded)
        .join(refund, refund.refunds_id == MoneyTransaction.id)
        .where(MoneyTransaction.kind == TxKind.SPEND.value, refund.kind == TxKind.REFUND.value)
        .group_by(MoneyTransaction.id, MoneyTransaction.amount)
        .having(refunded > MoneyTransaction.amount)
    )
    for tx_id, spent, total in db.execute(
        _scoped(statement, MoneyTransaction.program_id, program_id)
    ):
        yield Discrepancy("refunds never exceed their spend", f"spend {tx_id}", spent, total)


def _expired_cards_hold_nothing(db: Session, program_id: int | None) -> Iterable[Discrepancy]:
    statement = (
        select(GiftCard.id, MoneyAccount.balance)
        .join(MoneyAccount, MoneyAccount.id == GiftCard.account_id)
        .where(GiftCard.expired_at.is_not(None), MoneyAccount.balance != ZERO)
    )
    for card_id, found in db.execute(_scoped(statement, GiftCard.program_id, program_id)):
        yield Discrepancy("expired cards hold nothing", f"gift card {card_id}", ZERO, found)


_CHECKS = (
    _unbalanced_transactions,
    _mixed_currencies,
    _cached_balances,
    _over_refunded,
    _expired_cards_hold_nothing,
)


def check_money_ledger(
    db: Session, *, program_id: int | None = None, limit: int = 1000
) -> list[Discrepancy]:
    """Runs every invariant check of the money ledger; returns the differences found."""
    found: list[Discrepancy] = []
    for run in _CHECKS:
        for discrepancy in run(db, program_id):
            if len(found) >= limit:
                return found
            found.append(discrepancy)
    return found
