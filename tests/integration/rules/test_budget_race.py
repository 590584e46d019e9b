"""A campaign budget is never overspent, even by purchases committing at the same instant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.ledger.check import check_ledger
from fideliza.programs.models import Program
from fideliza.purchases import service as purchases
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from tests.factories import make_member, make_program
from tests.integration.ledger.test_races import THREADS, kinds, race

BONUS_WITH_BUDGET = {
    "name": "launch bonus",
    "actions": [{"type": "fixed_bonus", "points": 10}],
    "caps": {"budget": 95},
}


def test_concurrent_purchases_never_overspend_a_budget(
    session_factory: sessionmaker[Session], db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=BONUS_WITH_BUDGET, now=now)
    members = [make_member(db, program=program, now=now) for _ in range(THREADS)]
    db.commit()

    def buy(session: Session, index: int) -> int:
        found = session.get(Program, program.id)
        assert found is not None
        outcome = purchases.record_purchase(
            session,
            program=found,
            now=now,
            data={
                "external_id": f"race-{index}",
                "member_id": members[index].external_id,
                "occurred_at": now.isoformat(),
                "amount": "5.00",
                "currency": "EUR",
            },
        )
        return outcome.points

    results = race(session_factory, THREADS, buy)
    assert kinds(results) == {"ok": THREADS}
    points = sorted(r for r in results if isinstance(r, int))
    # 95 points of budget: nine purchases get 10, one gets the 5 left, the others nothing.
    assert sum(points) == 95
    assert points.count(10) == 9 and points.count(5) == 1
    db.expire_all()
    assert (
        db.scalar(
            select(func.count()).select_from(Purchase).where(Purchase.program_id == program.id)
        )
        == THREADS
    )
    assert check_ledger(db, program_id=program.id) == []


def test_a_daily_budget_holds_under_a_race_and_starts_afresh_the_next_local_day(
    session_factory: sessionmaker[Session], db: Session, now: datetime
) -> None:
    program = make_program(db, now=now, timezone="Europe/Madrid")
    daily = {**BONUS_WITH_BUDGET, "caps": {"budget": 25, "budget_period": "day"}}
    rules.create(db, program=program, definition=daily, now=now)
    members = [make_member(db, program=program, now=now) for _ in range(THREADS)]
    db.commit()
    # 23:30 UTC on the 10th is already the 11th in Madrid: a day of its own.
    days = [now, now.replace(hour=23, minute=30)]

    def buy(session: Session, index: int, at: datetime) -> int:
        found = session.get(Program, program.id)
        assert found is not None
        return purchases.record_purchase(
            session,
            program=found,
            now=at,
            data={
                "external_id": f"day-{at.isoformat()}-{index}",
                "member_id": members[index].external_id,
                "occurred_at": at.isoformat(),
                "amount": "5.00",
                "currency": "EUR",
            },
        ).points

    for at in days:
        results = race(session_factory, THREADS, lambda s, i, at=at: buy(s, i, at))
        assert kinds(results) == {"ok": THREADS}
        points = sorted(r for r in results if isinstance(r, int))
        assert sum(points) == 25 and points.count(10) == 2 and points.count(5) == 1
    assert check_ledger(db, program_id=program.id) == []
