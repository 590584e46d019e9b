"""Tier reviews at period end: downgrade only after the grace periods, once per period."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.members.models import Member
from fideliza.purchases import service as purchases
from fideliza.rules import service as rules
from fideliza.tiers import service as tiers
from fideliza.tiers.models import TierHistory
from tests.factories import make_member, make_program

LADDER = {
    "levels": [
        {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0"},
        {"code": "GOLD", "name": "Gold", "rank": 2, "threshold": "100", "multiplier": "1.5"},
    ],
    "policy": {"basis": "spend", "period": "calendar_year", "grace_periods": 1},
}


def _buy(db: Session, program, member, external_id: str, at: datetime, amount: str):  # type: ignore[no-untyped-def]
    return purchases.record_purchase(
        db,
        program=program,
        now=at,
        data={
            "external_id": external_id,
            "member_id": member.external_id,
            "occurred_at": at.isoformat(),
            "amount": amount,
            "currency": "EUR",
        },
    )


def test_downgrade_waits_for_grace_and_each_period_is_reviewed_once(db: Session) -> None:
    start = datetime(2023, 3, 1, 12, tzinfo=UTC)
    program = make_program(db, now=start)
    rules.create(
        db,
        program=program,
        now=start,
        definition={
            "name": "1 per euro",
            "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
        },
    )
    tiers.configure(db, program=program, config=LADDER, now=start)
    member = make_member(db, program=program, now=start)
    _buy(db, program, member, "t1", start, "150.00")  # GOLD in 2023
    db.commit()

    def tier() -> tuple[str | None, int]:
        row = db.execute(
            select(Member.tier_code, Member.tier_grace_used).where(Member.id == member.id)
        ).one()
        return row[0], row[1]

    assert tier() == ("GOLD", 0)
    # 2023 qualified: kept.
    assert (
        tiers.review_closed_period(db, program=program, now=datetime(2024, 1, 2, tzinfo=UTC)) == 0
    )
    assert tier() == ("GOLD", 0)
    # The same period again: nothing to do.
    assert (
        tiers.review_closed_period(db, program=program, now=datetime(2024, 6, 2, tzinfo=UTC))
        is None
    )
    # 2024 without purchases: the grace period is used, still GOLD.
    assert (
        tiers.review_closed_period(db, program=program, now=datetime(2025, 1, 2, tzinfo=UTC)) == 0
    )
    assert tier() == ("GOLD", 1)
    # 2025 fails again: down to BRONZE.
    assert (
        tiers.review_closed_period(db, program=program, now=datetime(2026, 1, 2, tzinfo=UTC)) == 1
    )
    db.commit()
    assert tier() == ("BRONZE", 0)
    history = db.scalars(
        select(TierHistory.to_code)
        .where(TierHistory.member_id == member.id)
        .order_by(TierHistory.id)
    ).all()
    assert history == ["GOLD", "BRONZE"]


def test_points_to_next_tier_reports_what_is_missing(db: Session) -> None:
    now = datetime(2025, 5, 5, 12, tzinfo=UTC)
    program = make_program(db, now=now)
    tiers.configure(db, program=program, config=LADDER, now=now)
    member = make_member(db, program=program, now=now)
    _buy(db, program, member, "t1", now, "30.00")
    db.commit()
    status = tiers.status(db, program=program, member=db.get(Member, member.id), now=now)  # type: ignore[arg-type]
    assert status is not None
    assert (status.code, status.metric, status.next_code, status.missing) == (
        "BRONZE",
        30,
        "GOLD",
        70,
    )
