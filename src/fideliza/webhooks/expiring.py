"""The `points.expiring` event: points about to expire, announced once, ahead of the expiry job.

Each lot is announced at most once, whatever the number of runs or of jobs running at once:
a notice row per lot is inserted with `ON CONFLICT DO NOTHING … RETURNING`, and only the lots
this run inserted are published. One event covers a member's newly announced lots that expire
at the same instant (an end-of-month policy gives many lots one expiry): its `points` are
what is left of those lots, and `lot_ids` names them so the figure can be traced.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fideliza.core.errors import ValidationError
from fideliza.ledger.domain import LotState
from fideliza.ledger.models import Lot
from fideliza.members.models import Member
from fideliza.programs.models import OutboxEvent
from fideliza.webhooks.domain import matches
from fideliza.webhooks.models import ExpiringNotice, WebhookEndpoint
from fideliza.webhooks.service import WebhookSettings

EVENT = "points.expiring"
DEFAULT_NOTICE = timedelta(days=30)
_CHUNK = 500  # notice rows per INSERT (SQLite limits the bound parameters of a statement)


def is_subscribed(db: Session, *, program_id: int) -> bool:
    """Whether an active endpoint of the program receives `points.expiring`."""
    subscribed = db.scalars(
        select(WebhookEndpoint.event_types).where(
            WebhookEndpoint.program_id == program_id, WebhookEndpoint.active
        )
    )
    return any(matches(types, EVENT) for types in subscribed)


def announce_expiring(
    db: Session, *, program_id: int, now: datetime, notice: timedelta = DEFAULT_NOTICE
) -> int | None:
    """Publishes `points.expiring` for available lots expiring within `notice` of `now` that
    no event announced yet; returns the events published (None: no endpoint listens)."""
    if notice <= timedelta(0):
        raise ValidationError("must be a positive duration", field="notice")
    if not is_subscribed(db, program_id=program_id):
        return None
    already = select(ExpiringNotice.lot_id).where(ExpiringNotice.lot_id == Lot.id).exists()
    due = db.execute(
        select(Lot.id, Lot.member_id, Lot.remaining, Lot.expires_at)
        .where(
            Lot.program_id == program_id,
            Lot.state == LotState.AVAILABLE,
            Lot.remaining > 0,
            Lot.expires_at > now,
            Lot.expires_at <= now + notice,
            ~already,
        )
        .order_by(Lot.id)
    ).all()
    rows: list[dict[str, Any]] = [
        {
            "lot_id": lot_id,
            "program_id": program_id,
            "member_id": member_id,
            "points": remaining,
            "expires_at": expires_at,
            "noticed_at": now,
        }
        for lot_id, member_id, remaining, expires_at in due
    ]
    claimed = _claim(db, rows)
    groups: dict[tuple[int, datetime], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["lot_id"] in claimed:
            groups[(row["member_id"], row["expires_at"])].append(row)
    if not groups:
        return 0
    owners = select(Member.id, Member.external_id).where(
        Member.id.in_({member_id for member_id, _ in groups})
    )
    external_ids = {member_id: external_id for member_id, external_id in db.execute(owners)}
    events = [
        {
            "program_id": program_id,
            "event_type": EVENT,
            "payload": {
                "member_id": member_id,
                "external_id": external_ids.get(member_id),
                "points": sum(lot["points"] for lot in lots),
                "expires_at": expires_at.isoformat(),
                "lot_ids": [lot["lot_id"] for lot in lots],
            },
            "created_at": now,
        }
        for (member_id, expires_at), lots in sorted(groups.items())
    ]
    db.execute(insert(OutboxEvent), events)
    return len(events)


def _claim(db: Session, rows: list[dict[str, Any]]) -> set[int]:
    """Inserts the notice rows not there yet; returns the lot ids this call inserted (a
    concurrent run that inserted one first keeps it)."""
    postgres = db.get_bind().dialect.name == "postgresql"
    claimed: set[int] = set()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        statement: Any = (
            postgresql.insert(ExpiringNotice) if postgres else sqlite.insert(ExpiringNotice)
        )
        statement = (
            statement.values(chunk)
            .on_conflict_do_nothing(index_elements=["lot_id"])
            .returning(ExpiringNotice.lot_id)
        )
        claimed.update(db.execute(statement).scalars())
    return claimed


def announce_due(db: Session, program_id: int, now: datetime) -> int | None:
    """The jobs' step: `announce_expiring` with the operator's notice period
    (FIDELIZA_WEBHOOK_EXPIRING_NOTICE_DAYS, 30 days by default)."""
    days = WebhookSettings().expiring_notice_days
    return announce_expiring(db, program_id=program_id, now=now, notice=timedelta(days=days))
