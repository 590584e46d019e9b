"""The ledger's use cases on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.core.errors import IdempotencyError, InsufficientPoints, InvalidState, ValidationError
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import Entry, LedgerTransaction
from fideliza.ledger.service import EarnLine
from fideliza.programs.service import settings_of
from tests.factories import make_member, make_program


def _earn(db: Session, program, member, points: int, at: datetime, now: datetime | None = None):  # type: ignore[no-untyped-def]
    return ledger.earn(
        db,
        program_id=program.id,
        settings=settings_of(program),
        timezone_name=program.timezone,
        member_id=member.id,
        lines=[EarnLine(points=points, reason="test", rule_id=1, rule_version=1)],
        occurred_at=at,
        now=now or at,
        source_type="test",
        source_ref=f"t-{points}-{at.isoformat()}",
        reason="test earning",
    )


def test_earn_then_redeem_first_expiring_first(db: Session, now: datetime) -> None:
    program = make_program(db, now=now, settings={"expiry": {"mode": "days", "days": 100}})
    member = make_member(db, program=program, now=now)
    early = _earn(db, program, member, 50, now - timedelta(days=60))
    late = _earn(db, program, member, 70, now - timedelta(days=10))
    ledger.redeem(
        db, program_id=program.id, member_id=member.id, points=60, now=now, reason="coffee"
    )
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 60
    from fideliza.ledger.models import Lot

    assert early is not None and late is not None
    assert db.get(Lot, early.lot_id).remaining == 0  # type: ignore[union-attr]
    assert db.get(Lot, late.lot_id).remaining == 60  # type: ignore[union-attr]
    assert check_ledger(db, program_id=program.id) == []


def test_cannot_spend_more_than_available(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 10, now)
    with pytest.raises(InsufficientPoints) as error:
        ledger.redeem(
            db, program_id=program.id, member_id=member.id, points=11, now=now, reason="x"
        )
    assert error.value.field == "points"


def test_pending_points_unlock_after_the_return_window(db: Session, now: datetime) -> None:
    program = make_program(db, now=now, settings={"return_window_days": 14})
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 30, now)
    db.commit()
    assert ledger.balance(db, member_id=member.id).pending == 30
    assert ledger.unlock_due(db, program_id=program.id, now=now + timedelta(days=13)) == 0
    assert ledger.unlock_due(db, program_id=program.id, now=now + timedelta(days=14)) == 1
    assert ledger.unlock_due(db, program_id=program.id, now=now + timedelta(days=15)) == 0
    db.commit()
    got = ledger.balance(db, member_id=member.id)
    assert (got.available, got.pending) == (30, 0)
    assert check_ledger(db, program_id=program.id) == []


def test_expiry_takes_only_what_is_left_once(db: Session, now: datetime) -> None:
    program = make_program(db, now=now, settings={"expiry": {"mode": "days", "days": 30}})
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 100, now)
    ledger.redeem(db, program_id=program.id, member_id=member.id, points=40, now=now, reason="x")
    assert ledger.expire_due(db, program_id=program.id, now=now + timedelta(days=29)) == 0
    assert ledger.expire_due(db, program_id=program.id, now=now + timedelta(days=30)) == 60
    assert ledger.expire_due(db, program_id=program.id, now=now + timedelta(days=31)) == 0
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 0
    assert check_ledger(db, program_id=program.id) == []


def test_hold_capture_release(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 100, now)
    kept = ledger.hold(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        points=30,
        reference="r1",
        now=now,
        reason="mug",
    )
    dropped = ledger.hold(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        points=50,
        reference="r2",
        now=now,
        reason="cap",
    )
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(
        available=20, pending=0, held=80
    )
    ledger.capture(db, program_id=program.id, hold_id=kept.id, now=now)
    ledger.release(db, program_id=program.id, hold_id=dropped.id, now=now)
    with pytest.raises(InvalidState):
        ledger.capture(db, program_id=program.id, hold_id=dropped.id, now=now)
    db.commit()
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(
        available=70, pending=0, held=0
    )
    assert check_ledger(db, program_id=program.id) == []


def test_holds_expire_after_their_ttl(db: Session, now: datetime) -> None:
    program = make_program(db, now=now, settings={"hold_ttl_minutes": 10})
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 100, now)
    ledger.hold(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        points=30,
        reference="r1",
        now=now,
        reason="mug",
    )
    assert ledger.expire_holds(db, program_id=program.id, now=now + timedelta(minutes=9)) == 0
    assert ledger.expire_holds(db, program_id=program.id, now=now + timedelta(minutes=10)) == 1
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 100
    assert check_ledger(db, program_id=program.id) == []


def test_adjust_needs_issuer_and_reason_and_is_recorded(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    kwargs = dict(
        program_id=program.id,
        settings=settings_of(program),
        timezone_name=program.timezone,
        member_id=member.id,
        now=now,
    )
    with pytest.raises(ValidationError) as error:
        ledger.adjust(db, points=10, issuer=" ", reason="goodwill", **kwargs)  # type: ignore[arg-type]
    assert error.value.field == "issuer"
    tx = ledger.adjust(db, points=25, issuer="ana@shop", reason="goodwill", **kwargs)  # type: ignore[arg-type]
    ledger.adjust(db, points=-5, issuer="ana@shop", reason="typo", **kwargs)  # type: ignore[arg-type]
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 20
    assert db.get(LedgerTransaction, tx).issuer == "ana@shop"  # type: ignore[union-attr]
    assert check_ledger(db, program_id=program.id) == []


def test_transfer_keeps_expiry_and_sums_to_zero(db: Session, now: datetime) -> None:
    program = make_program(db, now=now, settings={"expiry": {"mode": "days", "days": 365}})
    ana = make_member(db, program=program, now=now)
    bea = make_member(db, program=program, now=now)
    _earn(db, program, ana, 40, now - timedelta(days=100))
    tx = ledger.transfer(
        db,
        program_id=program.id,
        from_member_id=ana.id,
        to_member_id=bea.id,
        points=25,
        reason="gift",
        now=now,
    )
    db.commit()
    assert ledger.balance(db, member_id=ana.id).available == 15
    assert ledger.balance(db, member_id=bea.id).available == 25
    amounts = db.scalars(select(Entry.amount).where(Entry.transaction_id == tx)).all()
    assert sum(amounts) == 0 and sorted(amounts) == [-25, 25]
    from fideliza.ledger.models import Lot

    new_lot = db.scalars(select(Lot).where(Lot.member_id == bea.id)).one()
    assert new_lot.expires_at == now - timedelta(days=100) + timedelta(days=365)
    assert check_ledger(db, program_id=program.id) == []


def test_reversal_after_spending_goes_negative_and_new_points_pay_it_back(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    earned = _earn(db, program, member, 100, now)
    assert earned is not None
    ledger.redeem(db, program_id=program.id, member_id=member.id, points=90, now=now, reason="x")
    tx = ledger.reverse_earning(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        earn_transaction_id=earned.transaction_id,
        points=100,
        occurred_at=now,
        now=now,
        reason="return r1",
        source_type="return",
        source_ref="r1",
    )
    assert ledger.balance(db, member_id=member.id).available == -90
    detail = db.scalars(
        select(Entry.detail).where(Entry.transaction_id == tx, Entry.amount < 0)
    ).one()
    assert detail is not None and "already spent" in detail
    _earn(db, program, member, 120, now + timedelta(days=1))
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 30
    assert check_ledger(db, program_id=program.id) == []


def test_a_return_after_expiry_takes_back_only_what_the_member_still_had(
    db: Session, now: datetime
) -> None:
    """Expired points already left the member: a return gives them back to the program's
    expired account instead of taking them from the member a second time."""
    program = make_program(db, now=now, settings={"expiry": {"mode": "days", "days": 30}})
    member = make_member(db, program=program, now=now)
    earned = _earn(db, program, member, 100, now)
    assert earned is not None
    _earn(db, program, member, 50, now + timedelta(days=20))  # still valid at the return
    ledger.redeem(db, program_id=program.id, member_id=member.id, points=30, now=now, reason="x")
    assert ledger.expire_due(db, program_id=program.id, now=now + timedelta(days=30)) == 70
    later = now + timedelta(days=31)

    def give_back(points: int, ref: str) -> int | None:
        return ledger.reverse_earning(
            db,
            program_id=program.id,
            settings=settings_of(program),
            member_id=member.id,
            earn_transaction_id=earned.transaction_id,
            points=points,
            occurred_at=later,
            now=later,
            reason=f"return {ref}",
            source_type="return",
            source_ref=ref,
        )

    # Two partial returns of 40 + 40: the first 70 were expired points, the last 10 were spent.
    first = give_back(40, "r1")
    assert ledger.balance(db, member_id=member.id).available == 50
    give_back(40, "r2")
    assert ledger.balance(db, member_id=member.id).available == 40
    details = db.scalars(select(Entry.detail).where(Entry.transaction_id == first)).all()
    assert any("had expired" in (d or "") for d in details)
    # The last 20 were spent: they come out of the other lot.
    give_back(20, "r3")
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 20
    assert check_ledger(db, program_id=program.id) == []


def test_a_keyed_adjustment_replays_and_refuses_other_content(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)

    def adjust(points: int, member_id: int = member.id) -> int:
        return ledger.adjust(
            db,
            program_id=program.id,
            settings=settings_of(program),
            timezone_name=program.timezone,
            member_id=member_id,
            points=points,
            issuer="ops",
            reason="goodwill",
            now=now,
            idempotency_key="case:7:goodwill",
        )

    first = adjust(25)
    assert adjust(25) == first  # a retry: the first transaction, nothing more
    assert ledger.balance(db, member_id=member.id).available == 25
    with pytest.raises(IdempotencyError) as refused:
        adjust(30)
    assert refused.value.field == "idempotency_key"
    other = make_member(db, program=program, now=now)
    with pytest.raises(IdempotencyError):
        adjust(25, member_id=other.id)
    db.commit()
    assert check_ledger(db, program_id=program.id) == []


def test_a_closed_member_gets_no_adjustment(db: Session, now: datetime) -> None:
    from fideliza.members import service as members

    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    members.change_status(db, program=program, member=member, status="closed", reason="x", now=now)
    with pytest.raises(InvalidState):
        ledger.adjust(
            db,
            program_id=program.id,
            settings=settings_of(program),
            timezone_name=program.timezone,
            member_id=member.id,
            points=10,
            issuer="ops",
            reason="goodwill",
            now=now,
        )


def test_hold_and_capture_spends_at_once_and_replays_by_reference(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 100, now)

    def spend(points: int, member_id: int = member.id):  # type: ignore[no-untyped-def]
        return ledger.hold_and_capture(
            db,
            program_id=program.id,
            settings=settings_of(program),
            member_id=member_id,
            points=points,
            reference="till-7",
            now=now,
            reason="coffee",
        )

    held, replayed = spend(30)
    assert not replayed and held.status == "captured" and held.final_transaction_id is not None
    kinds = db.scalars(
        select(LedgerTransaction.kind).where(
            LedgerTransaction.id.in_([held.hold_transaction_id, held.final_transaction_id])
        )
    ).all()
    assert sorted(kinds) == ["capture", "reserve"]
    again, replayed = spend(30)
    assert replayed and again.id == held.id
    with pytest.raises(IdempotencyError):
        spend(31)
    other = make_member(db, program=program, now=now)
    with pytest.raises(IdempotencyError):
        spend(30, member_id=other.id)
    balance = ledger.balance(db, member_id=member.id)
    assert (balance.available, balance.held) == (70, 0)
    db.commit()
    with pytest.raises(InsufficientPoints):
        ledger.hold_and_capture(
            db,
            program_id=program.id,
            settings=settings_of(program),
            member_id=member.id,
            points=71,
            reference="till-8",
            now=now,
            reason="coffee",
        )
    db.rollback()
    assert check_ledger(db, program_id=program.id) == []
