"""The money ledger's primitives: system and wallet accounts, locks, idempotent posting.

Services in `giftcards.service` build every use case from these; nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, overload

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fideliza.core.errors import IdempotencyError, ValidationError
from fideliza.core.money import minor_units, require_currency, to_money
from fideliza.giftcards.domain import (
    SYSTEM_KINDS,
    AccountKind,
    TxKind,
    require_positive,
    system_account_code,
    wallet_account_code,
)
from fideliza.giftcards.models import MoneyAccount, MoneyEntry, MoneyTransaction

MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Move:
    """What a money transaction did: the amount moved and the balance it left on the account."""

    transaction_id: int
    kind: TxKind
    account_id: int
    amount: Decimal
    currency: str
    balance_after: Decimal
    recorded_at: datetime
    refunds_id: int | None = None
    replayed: bool = False


# --- accounts ---------------------------------------------------------------------------------


def _insert_ignoring_duplicates(db: Session, rows: list[dict[str, Any]]) -> None:
    """Creates accounts that may exist already (a concurrent writer may be creating them too)."""
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(MoneyAccount).on_conflict_do_nothing(
        index_elements=["program_id", "code"]
    )
    db.execute(statement, rows)


def system_account_id(
    db: Session, *, program_id: int, kind: AccountKind, currency: str, now: datetime
) -> int:
    """The program's system account of `kind` in `currency` (all four created on first use)."""
    code = system_account_code(kind, currency)
    statement = select(MoneyAccount.id).where(
        MoneyAccount.program_id == program_id, MoneyAccount.code == code
    )
    found = db.scalar(statement)
    if found is None:
        _insert_ignoring_duplicates(
            db,
            [
                {
                    "program_id": program_id,
                    "member_id": None,
                    "kind": k.value,
                    "code": system_account_code(k, currency),
                    "currency": currency,
                    "balance": None,
                    "created_at": now,
                }
                for k in SYSTEM_KINDS
            ],
        )
        found = db.scalar(statement)
    assert found is not None
    return found


@overload
def lock_account(db: Session, account_id: int) -> MoneyAccount: ...
@overload
def lock_account(db: Session, account_id: int, *, skip_locked: bool) -> MoneyAccount | None: ...
def lock_account(db: Session, account_id: int, *, skip_locked: bool = False) -> MoneyAccount | None:
    """Locks a customer account and reads it as it is under the lock (None: skipped, held by
    another transaction)."""
    account = db.scalar(
        select(MoneyAccount)
        .where(MoneyAccount.id == account_id)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    assert account is not None or skip_locked
    return account


def wallet_account(
    db: Session, *, program_id: int, member_id: int, currency: str, now: datetime, create: bool
) -> MoneyAccount | None:
    """The member's wallet in `currency`, locked (created first when `create`)."""
    code = wallet_account_code(member_id, currency)
    statement = select(MoneyAccount.id).where(
        MoneyAccount.program_id == program_id, MoneyAccount.code == code
    )
    account_id = db.scalar(statement)
    if account_id is None and create:
        _insert_ignoring_duplicates(
            db,
            [
                {
                    "program_id": program_id,
                    "member_id": member_id,
                    "kind": AccountKind.WALLET.value,
                    "code": code,
                    "currency": currency,
                    "balance": Decimal(0),
                    "created_at": now,
                }
            ],
        )
        account_id = db.scalar(statement)
    return None if account_id is None else lock_account(db, account_id)


# --- posting ----------------------------------------------------------------------------------


def require_key(key: str | None, *, field: str = "idempotency_key") -> str:
    if key is None or not key.strip():
        raise ValidationError("is required, so a retry never moves money twice", field=field)
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationError(f"must be at most {MAX_KEY_LENGTH} characters", field=field)
    return key


def in_currency(value: Decimal, currency: str) -> Decimal:
    """A stored amount (4 decimals) shown with its currency's own decimals (exact: never more)."""
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)))


def move_of(tx: MoneyTransaction, *, replayed: bool = False) -> Move:
    return Move(
        transaction_id=tx.id,
        kind=TxKind(tx.kind),
        account_id=tx.account_id,
        amount=in_currency(tx.amount, tx.currency),
        currency=tx.currency,
        balance_after=in_currency(tx.balance_after, tx.currency),
        recorded_at=tx.recorded_at,
        refunds_id=tx.refunds_id,
        replayed=replayed,
    )


def replay(db: Session, *, program_id: int, key: str, request_hash: str, field: str) -> Move | None:
    """The first result of `key`, if it was used with the same content; refuses other content."""
    first = db.scalar(
        select(MoneyTransaction).where(
            MoneyTransaction.program_id == program_id, MoneyTransaction.idempotency_key == key
        )
    )
    if first is None:
        return None
    if first.request_hash != request_hash:
        raise IdempotencyError("was already used for another money transaction", field=field)
    return move_of(first, replayed=True)


def post(
    db: Session,
    *,
    program_id: int,
    account: MoneyAccount,
    kind: TxKind,
    amount: Decimal,
    counter_account_id: int,
    now: datetime,
    reason: str | None = None,
    actor: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    refunds_id: int | None = None,
) -> Move:
    """Appends a transaction moving `amount` into `account` (out of it when negative) from
    `counter_account_id`: two entries summing to zero, and the cached balance moved with them."""
    assert amount != 0, "a money transaction moves something"
    assert account.balance is not None, "only customer accounts are posted to directly"
    # Atomic, so the CHECK constraint judges the real new balance even if a caller forgot the lock.
    balance_after = db.execute(
        update(MoneyAccount)
        .where(MoneyAccount.id == account.id)
        .values(balance=MoneyAccount.balance + amount)
        .returning(MoneyAccount.balance)
    ).scalar_one()
    account.balance = balance_after
    tx = MoneyTransaction(
        program_id=program_id,
        account_id=account.id,
        kind=kind.value,
        currency=account.currency,
        amount=abs(amount),
        balance_after=balance_after,
        recorded_at=now,
        reason=reason,
        actor=actor,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        refunds_id=refunds_id,
    )
    db.add(tx)
    db.flush()
    db.execute(
        insert(MoneyEntry),
        [
            {"transaction_id": tx.id, "account_id": account.id, "amount": amount},
            {"transaction_id": tx.id, "account_id": counter_account_id, "amount": -amount},
        ],
    )
    return move_of(tx)


def parse_amount(value: object, *, currency: str, given_currency: str | None) -> Decimal:
    """A positive amount in the account's currency, refusing another currency or more decimals."""
    if given_currency is not None and given_currency != currency:
        require_currency(given_currency)
        raise ValidationError(
            f"must be {currency}, the currency of this balance (got {given_currency})",
            field="currency",
        )
    return require_positive(to_money(value, currency, field="amount"))


def system_account(
    db: Session, program_id: int, kind: AccountKind, currency: str, now: datetime
) -> int:
    return system_account_id(db, program_id=program_id, kind=kind, currency=currency, now=now)
