"""The bulk paths of an ingest batch read and write what the ORM paths would (both backends)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.db import in_values, upsert_add
from fideliza.ledger import service as ledger
from fideliza.ledger.domain import AccountKind
from fideliza.ledger.models import Account
from fideliza.members.models import Member, MemberMonth
from fideliza.purchases import batch_io
from tests.factories import make_member, make_program


def test_member_rows_convert_like_the_mapped_types(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    plain = make_member(db, program=program, now=now)
    full = make_member(db, program=program, now=now, birthday="1990-02-28")
    full.attributes = {"vip": True, "city": "Madrid", "visits": 3}
    full.first_purchase_at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=now.tzinfo)
    full.tier_code = "SILVER"
    db.flush()
    rows = {row[0]: row for row in batch_io.member_rows(db, member_ids=[plain.id, full.id])}
    expected = {
        member_id: tuple(row)
        for member_id, *row in db.execute(
            select(
                Member.id,
                Member.id,
                Member.status,
                Member.attributes,
                Member.birthday,
                Member.first_purchase_at,
                Member.tier_code,
            ).where(Member.id.in_([plain.id, full.id]))
        )
    }
    assert rows == expected
    assert rows[full.id][3] == date(1990, 2, 28)
    assert rows[full.id][4] == datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=now.tzinfo)
    assert rows[full.id][2] == {"vip": True, "city": "Madrid", "visits": 3}
    db.rollback()


def test_member_ids_by_ref_leave_unknown_and_other_programs_out(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    other = make_program(db, now=now)
    mine = make_member(db, program=program, now=now)
    theirs = make_member(db, program=other, now=now)
    found = batch_io.member_ids_by_ref(
        db, program_id=program.id, refs=[mine.external_id, theirs.external_id, "nobody"]
    )
    assert found == {mine.external_id: mine.id}
    db.rollback()


def test_balances_and_first_purchases_and_tiers_are_set(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    first = make_member(db, program=program, now=now)
    second = make_member(db, program=program, now=now)
    accounts = ledger.lock_member_accounts(db, member_ids=[first.id, second.id])
    available = accounts[first.id][AccountKind.AVAILABLE][0]
    pending = accounts[second.id][AccountKind.PENDING][0]
    batch_io.add_to_balances(db, {available: 12, pending: 7})
    batch_io.add_to_balances(db, {available: -2})
    batch_io.set_first_purchases(db, {first.id: now})
    batch_io.set_tiers(db, [{"member": second.id, "code": "GOLD", "since": now}])
    balances = {
        account_id: balance
        for account_id, balance in db.execute(
            select(Account.id, Account.balance).where(Account.id.in_([available, pending]))
        )
    }
    assert balances == {available: 10, pending: 7}
    db.expire_all()
    assert db.get(Member, first.id).first_purchase_at == now  # type: ignore[union-attr]
    assert db.get(Member, first.id).tier_code is None  # type: ignore[union-attr]
    changed = db.get(Member, second.id)
    assert changed is not None
    assert (changed.tier_code, changed.tier_since, changed.tier_grace_used) == ("GOLD", now, 0)
    db.rollback()


def test_upsert_add_sums_repeated_keys_and_adds_to_existing_rows(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    march, april = date(2025, 3, 1), date(2025, 4, 1)

    def add(rows: list[tuple[date, str, int]]) -> None:
        upsert_add(
            db,
            MemberMonth.__table__,
            keys=("member_id", "month"),
            add=("spend", "points_earned", "purchases"),
            rows=[
                {
                    "member_id": member.id,
                    "month": month,
                    "program_id": program.id,
                    "spend": Decimal(spend),
                    "points_earned": points,
                    "purchases": 1,
                }
                for month, spend, points in rows
            ],
        )

    add([(march, "10.50", 10), (april, "1.25", 1), (march, "2.25", 2)])
    add([(march, "0.25", 5)])
    found = {
        month: (spend, points, count)
        for month, spend, points, count in db.execute(
            select(
                MemberMonth.month,
                MemberMonth.spend,
                MemberMonth.points_earned,
                MemberMonth.purchases,
            ).where(MemberMonth.member_id == member.id)
        )
    }
    assert found == {
        march: (Decimal("13.0000"), 17, 3),
        april: (Decimal("1.2500"), 1, 1),
    }
    db.rollback()


def test_in_values_selects_exactly_the_values_given(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    members = [make_member(db, program=program, now=now) for _ in range(3)]
    wanted = [members[0].id, members[2].id, -1]
    found = db.scalars(select(Member.id).where(in_values(db, Member.id, wanted))).all()
    assert sorted(found) == sorted([members[0].id, members[2].id])
    refs = db.scalars(
        select(Member.id).where(in_values(db, Member.external_id, [members[1].external_id]))
    ).all()
    assert refs == [members[1].id]
    db.rollback()
