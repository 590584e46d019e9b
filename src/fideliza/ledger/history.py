"""A member's points history, each line with its why (rule and version, tier, reason)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.ledger.models import Account, Entry, LedgerTransaction


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One entry on one of the member's accounts."""

    entry_id: int
    transaction_id: int
    occurred_at: datetime
    kind: str
    account: str
    points: int
    rule_id: int | None
    rule_version: int | None
    tier_code: str | None
    source_type: str | None
    source_ref: str | None
    why: str


def member_history(
    db: Session, *, member_id: int, limit: int = 50, before_entry_id: int | None = None
) -> list[HistoryLine]:
    """The member's latest entries first (cursor: pass the last entry id to page back)."""
    statement = (
        select(Entry, LedgerTransaction, Account.kind)
        .join(LedgerTransaction, LedgerTransaction.id == Entry.transaction_id)
        .join(Account, Account.id == Entry.account_id)
        .where(Account.member_id == member_id)
        .order_by(Entry.id.desc())
        .limit(limit)
    )
    if before_entry_id is not None:
        statement = statement.where(Entry.id < before_entry_id)
    lines = []
    for entry, tx, account_kind in db.execute(statement):
        why = entry.detail or tx.reason or tx.kind
        if entry.rule_id is not None:
            why = f"{why} [rule {entry.rule_id} v{entry.rule_version}]"
        elif entry.tier_code is not None:
            why = f"{why} [tier {entry.tier_code}]"
        lines.append(
            HistoryLine(
                entry_id=entry.id,
                transaction_id=tx.id,
                occurred_at=tx.occurred_at,
                kind=tx.kind,
                account=account_kind,
                points=entry.amount,
                rule_id=entry.rule_id,
                rule_version=entry.rule_version,
                tier_code=entry.tier_code,
                source_type=tx.source_type,
                source_ref=tx.source_ref,
                why=why,
            )
        )
    return lines
