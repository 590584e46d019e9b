"""Where timeline items come from: one small function per table, each reading one page.

Every source reads at most `limit` rows of one member, newest first by (time, id), after the
cursor; the service merges them. A source whose table is not part of the schema (a domain
not installed yet) is left out, so the timeline grows as domains are added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from fideliza.core.money import minor_units
from fideliza.timeline.domain import Position, TimelineItem


@dataclass(frozen=True, slots=True)
class Page:
    """What a source is asked for: a member, where to start, how many."""

    member_id: int
    before: Position | None
    limit: int


Reader = Callable[[Session, Page], list[TimelineItem]]


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    table: str
    read: Reader


def after_cursor(kind: str, at: Any, row_id: Any, before: Position | None) -> ColumnElement[bool]:
    """Rows strictly older than the cursor in the (at, kind, id) order, for one source."""
    if before is None:
        return true()
    if kind < before.kind:
        return at <= before.at
    if kind > before.kind:
        return at < before.at
    return or_(at < before.at, and_(at == before.at, row_id < before.id))


def _page(statement: Any, kind: str, at: Any, row_id: Any, page: Page) -> Any:
    """The statement narrowed to one page after the cursor, newest first."""
    return (
        statement.where(after_cursor(kind, at, row_id, page.before))
        .order_by(at.desc(), row_id.desc())
        .limit(page.limit)
    )


def _in_currency(amount: Decimal, currency: str) -> Decimal:
    """Money as people read it (12.50, not the stored 12.5000)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def purchases(db: Session, page: Page) -> list[TimelineItem]:
    from fideliza.purchases.models import Purchase

    statement = _page(
        select(Purchase).where(Purchase.member_id == page.member_id),
        "purchase",
        Purchase.occurred_at,
        Purchase.id,
        page,
    )
    return [
        TimelineItem(
            kind="purchase",
            id=row.id,
            at=row.occurred_at,
            summary=f"purchase {row.external_id}: "
            f"{_in_currency(row.amount, row.currency)} {row.currency}"
            + (f" at {row.store}" if row.store else ""),
            points=row.points_earned,
            amount=_in_currency(row.amount, row.currency),
            reference=row.external_id,
            detail={
                "channel": row.channel,
                "store": row.store,
                "items": len(row.items),
                "amount_returned": str(_in_currency(row.amount_returned, row.currency)),
            },
        )
        for row in db.scalars(statement)
    ]


def returns(db: Session, page: Page) -> list[TimelineItem]:
    from fideliza.purchases.models import Purchase, Return

    statement = _page(
        select(Return, Purchase.external_id, Purchase.currency)
        .join(Purchase, Purchase.id == Return.purchase_id)
        .where(Purchase.member_id == page.member_id),
        "return",
        Return.occurred_at,
        Return.id,
        page,
    )
    return [
        TimelineItem(
            kind="return",
            id=row.id,
            at=row.occurred_at,
            summary=f"return {row.external_id} of purchase {purchase_ref}: "
            f"{_in_currency(row.amount, currency)} {currency}",
            points=-row.points_reversed,
            amount=_in_currency(row.amount, currency),
            reference=row.external_id,
            detail={"purchase": purchase_ref},
        )
        for row, purchase_ref, currency in db.execute(statement)
    ]


def points(db: Session, page: Page) -> list[TimelineItem]:
    """Ledger transactions that changed the member's points (net over all their accounts)."""
    from fideliza.ledger.models import Account, Entry, LedgerTransaction

    accounts = select(Account.id).where(Account.member_id == page.member_id).scalar_subquery()
    tx = LedgerTransaction
    statement = _page(
        select(tx, func.sum(Entry.amount).label("net"))
        .join(Entry, Entry.transaction_id == tx.id)
        .where(Entry.account_id.in_(accounts))
        .group_by(tx.id)
        # Moves between the member's own accounts (a hold, an unlock) change nothing they own.
        .having(func.sum(Entry.amount) != 0),
        "points",
        tx.occurred_at,
        tx.id,
        page,
    )
    return [
        TimelineItem(
            kind="points",
            id=row.id,
            at=row.occurred_at,
            summary=f"{row.kind}: {int(net):+d} points"
            + (f" ({row.reason})" if row.reason else ""),
            points=int(net),
            reference=row.source_ref,
            detail={"kind": row.kind, "source_type": row.source_type, "issuer": row.issuer},
        )
        for row, net in db.execute(statement)
    ]


def redemptions(db: Session, page: Page) -> list[TimelineItem]:
    from fideliza.rewards.models import Redemption, Reward

    statement = _page(
        select(Redemption, Reward.code, Reward.name)
        .join(Reward, Reward.id == Redemption.reward_id)
        .where(Redemption.member_id == page.member_id),
        "redemption",
        Redemption.created_at,
        Redemption.id,
        page,
    )
    return [
        TimelineItem(
            kind="redemption",
            id=row.id,
            at=row.created_at,
            summary=f"redeemed {name} for {row.points} points ({row.status})",
            points=-row.points,
            amount=row.value,
            reference=row.reference,
            detail={"reward": code, "status": row.status},
        )
        for row, code, name in db.execute(statement)
    ]


def survey_responses(db: Session, page: Page) -> list[TimelineItem]:
    from fideliza.surveys.models import SurveyResponse

    statement = _page(
        select(SurveyResponse).where(SurveyResponse.member_id == page.member_id),
        "survey",
        SurveyResponse.answered_at,
        SurveyResponse.id,
        page,
    )
    return [
        TimelineItem(
            kind="survey",
            id=row.id,
            at=row.answered_at,
            summary=f"answered a {row.kind} survey"
            + (f": score {row.score}" if row.score is not None else ""),
            points=row.points_earned or None,
            detail={"survey_kind": row.kind, "score": row.score, "trigger": row.trigger},
        )
        for row in db.scalars(statement)
    ]


def cases(db: Session, page: Page) -> list[TimelineItem]:
    from fideliza.cases.models import Case

    statement = _page(
        select(Case).where(Case.member_id == page.member_id),
        "case",
        Case.opened_at,
        Case.id,
        page,
    )
    return [
        TimelineItem(
            kind="case",
            id=row.id,
            at=row.opened_at,
            summary=f"{row.severity} {row.category} complaint: {row.subject} ({row.state})",
            points=row.goodwill_points,
            reference=f"case:{row.id}",
            detail={
                "state": row.state,
                "severity": row.severity,
                "channel": row.channel,
                "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
                "apologized": row.apologized,
            },
        )
        for row in db.scalars(statement)
    ]


def messages(db: Session, page: Page) -> list[TimelineItem]:
    from fideliza.messaging.models import Message

    # By when the message was queued: the index (member, created_at) serves the page.
    statement = _page(
        select(Message).where(Message.member_id == page.member_id),
        "message",
        Message.created_at,
        Message.id,
        page,
    )
    return [
        TimelineItem(
            kind="message",
            id=row.id,
            at=row.created_at,
            summary=f"{row.kind} {row.channel} message: {row.subject or row.kind} ({row.status})",
            points=None,
            reference=f"message:{row.id}",
            detail={
                "status": row.status,
                "reason": row.reason,
                "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            },
        )
        for row in db.scalars(statement)
    ]


# Each with the module that defines its table.
CANDIDATES: list[tuple[Source, str]] = [
    (Source("purchase", "purchases", purchases), "fideliza.purchases.models"),
    (Source("return", "returns", returns), "fideliza.purchases.models"),
    (Source("points", "ledger_transactions", points), "fideliza.ledger.models"),
    (Source("redemption", "reward_redemptions", redemptions), "fideliza.rewards.models"),
    (Source("survey", "survey_responses", survey_responses), "fideliza.surveys.models"),
    (Source("case", "cases", cases), "fideliza.cases.models"),
    (Source("message", "messages", messages), "fideliza.messaging.models"),
]


def installed() -> list[Source]:
    """The sources whose tables are in the schema's metadata (their domain is installed)."""
    import importlib

    from fideliza.schema import metadata

    found = []
    for source, module in CANDIDATES:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        if source.table in metadata.tables:
            found.append(source)
    return found
