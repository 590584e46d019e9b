"""Members end to end on SQLite and PostgreSQL: enrol, look up, update, statuses, bulk enrol."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fideliza.core.errors import IdempotencyError, InvalidState, NotFound, ValidationError
from fideliza.ledger import service as ledger
from fideliza.ledger.models import Account
from fideliza.members import service as members
from fideliza.members.domain import is_card_number
from fideliza.members.models import Card, Member
from fideliza.programs.models import AuditLog, OutboxEvent
from fideliza.purchases import service as purchases
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from tests.factories import make_member, make_program

ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}


def profile(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "external_id": f"C-{secrets.token_hex(4)}",
        "first_name": "Lucía",
        "last_name": "García",
        "email": "Lucia.Garcia@Example.ES",
        "phone": "+34 600 12 34 56",
        "birthday": "1990-05-17",
        "locale": "es",
        "consent": {"email": True, "sms": False},
        "attributes": {"segment": "students", "interests": ["coffee", "cake"]},
    }
    data.update(extra)
    return data


def audit_rows(db: Session, program_id: int, action: str) -> list[AuditLog]:
    return list(
        db.scalars(
            select(AuditLog)
            .where(AuditLog.program_id == program_id, AuditLog.action == action)
            .order_by(AuditLog.id)
        )
    )


def basket(external_id: str, member_ref: str, at: datetime) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "member_id": member_ref,
        "occurred_at": at.isoformat(),
        "amount": "12.50",
        "currency": "EUR",
        "items": [],
    }


# --- enrolment ---------------------------------------------------------------------------------


def test_enrol_is_idempotent_by_external_id(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    data = profile()
    first, created = members.enrol(db, program=program, data=data, now=now)
    db.commit()
    assert created is True
    assert first.email == "lucia.garcia@example.es"
    assert first.phone == "+34600123456"
    assert first.birthday == date(1990, 5, 17)
    # A retry with the same profile, written differently (case, spaces), is the same member.
    again, created = members.enrol(
        db,
        program=program,
        data={**data, "email": "LUCIA.GARCIA@example.es", "phone": "+34 600 123 456"},
        now=now + timedelta(minutes=5),
    )
    assert created is False and again.id == first.id
    with pytest.raises(IdempotencyError) as error:
        members.enrol(db, program=program, data={**data, "first_name": "Lucas"}, now=now)
    assert error.value.field == "external_id"
    assert error.value.code == "idempotency_error"
    db.commit()
    count = db.scalar(
        select(func.count())
        .select_from(Member)
        .where(Member.program_id == program.id, Member.external_id == data["external_id"])
    )
    assert count == 1
    assert db.get(Member, first.id).first_name == "Lucía"  # type: ignore[union-attr]
    assert len(audit_rows(db, program.id, "fideliza.member.enrolled")) == 1
    events = db.scalars(
        select(OutboxEvent.event_type).where(OutboxEvent.program_id == program.id)
    ).all()
    assert events == ["member.enrolled"]


def test_the_same_external_id_in_another_program_is_another_member(
    db: Session, now: datetime
) -> None:
    one, other = make_program(db, now=now), make_program(db, now=now)
    data = profile()
    a, _ = members.enrol(db, program=one, data=data, now=now)
    b, created = members.enrol(db, program=other, data=data, now=now)
    db.commit()
    assert created is True and a.id != b.id
    with pytest.raises(NotFound) as error:
        members.get(db, program_id=one.id, member_id=b.id)
    assert error.value.field == "member_id"


def test_enrol_opens_three_empty_accounts_and_issues_an_active_card(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    db.commit()
    accounts = db.execute(
        select(Account.kind, Account.balance, Account.code)
        .where(Account.member_id == member.id)
        .order_by(Account.kind)
    ).all()
    assert [tuple(a) for a in accounts] == [
        ("available", 0, f"member:{member.id}:available"),
        ("held", 0, f"member:{member.id}:held"),
        ("pending", 0, f"member:{member.id}:pending"),
    ]
    balance = ledger.balance(db, member_id=member.id)
    assert (balance.available, balance.pending, balance.held) == (0, 0, 0)
    card = members.active_card(db, member_id=member.id)
    assert card is not None and card.status == "active" and card.program_id == program.id
    assert len(card.number) == 16 and is_card_number(card.number)
    assert member.status == "active" and member.tier_code is None and member.locale == "es"


# --- look-ups ----------------------------------------------------------------------------------


def test_lookups_by_card_email_phone_and_external_id(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    data = profile()
    member, _ = members.enrol(db, program=program, data=data, now=now)
    make_member(db, program=program, now=now, email="someone.else@example.es")
    db.commit()
    card = members.active_card(db, member_id=member.id)
    assert card is not None
    spaced = " ".join(card.number[i : i + 4] for i in range(0, 16, 4))
    found = {
        "card": members.find(db, program_id=program.id, card=spaced),
        "card dashes": members.find(
            db, program_id=program.id, card="-".join(card.number[i : i + 4] for i in (0, 4, 8, 12))
        ),
        "email": members.find(db, program_id=program.id, email="  LUCIA.garcia@example.ES "),
        "phone": members.find(db, program_id=program.id, phone="+34 (600) 12-34-56"),
        "external id": members.find(db, program_id=program.id, external_id=data["external_id"]),
    }
    assert {name: m.id for name, m in found.items()} == dict.fromkeys(found, member.id)


@pytest.mark.parametrize(
    ("lookup", "field"),
    [
        ({"external_id": "nobody"}, "external_id"),
        ({"email": "nobody@example.es"}, "email"),
        ({"phone": "+34699999999"}, "phone"),
        ({"card": "7000 0000 0000 0005"}, "card"),  # a valid number nobody holds
    ],
)
def test_not_found_names_the_field(
    db: Session, now: datetime, lookup: dict[str, str], field: str
) -> None:
    program = make_program(db, now=now)
    make_member(db, program=program, now=now)
    with pytest.raises(NotFound) as error:
        members.find(db, program_id=program.id, **lookup)
    assert error.value.field == field
    assert error.value.code == "not_found"


@pytest.mark.parametrize(
    ("lookup", "field"),
    [
        ({"card": "7123 4567 8901 2343"}, "card"),  # check digit wrong
        ({"card": "²" * 16}, "card"),
        ({}, "lookup"),
        ({"email": "a@example.es", "phone": "+34600000000"}, "lookup"),
    ],
)
def test_bad_lookups_name_the_field(
    db: Session, now: datetime, lookup: dict[str, str], field: str
) -> None:
    program = make_program(db, now=now)
    with pytest.raises(ValidationError) as error:
        members.find(db, program_id=program.id, **lookup)
    assert error.value.field == field


def test_a_replaced_card_no_longer_finds_the_member(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    old = members.active_card(db, member_id=member.id)
    assert old is not None
    new = members.issue_card(db, program=program, member=member, now=now)
    db.commit()
    assert members.find(db, program_id=program.id, card=new.number).id == member.id
    with pytest.raises(NotFound) as error:
        members.find(db, program_id=program.id, card=old.number)
    assert error.value.field == "card"
    statuses = db.scalars(
        select(Card.status).where(Card.member_id == member.id).order_by(Card.id)
    ).all()
    assert statuses == ["replaced", "active"]
    with pytest.raises(ValidationError) as taken:
        members.issue_card(db, program=program, member=member, now=now, number=new.number)
    assert taken.value.field == "number"


def test_two_members_with_one_email_are_not_guessed_between(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    make_member(db, program=program, now=now, email="family@example.es")
    make_member(db, program=program, now=now, email="family@example.es")
    with pytest.raises(ValidationError) as error:
        members.find(db, program_id=program.id, email="family@example.es")
    assert error.value.field == "email"


# --- profile updates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("points", 1_000_000),
        ("tier_code", "GOLD"),
        ("status", "active"),
        ("program_id", 1),
        ("external_id", "someone-else"),
        ("first_purchase_at", "2020-01-01T00:00:00+00:00"),
        ("id", 1),
    ],
)
def test_update_profile_refuses_fields_that_are_not_profile(
    db: Session, now: datetime, field: str, value: Any
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    db.commit()
    before = (member.external_id, member.status, member.tier_code, member.program_id)
    with pytest.raises(ValidationError) as error:
        members.update_profile(
            db, program=program, member=member, changes={"first_name": "Eva", field: value}, now=now
        )
    assert error.value.field == field
    assert error.value.message == "is not a known field"
    db.commit()
    db.refresh(member)
    assert (member.external_id, member.status, member.tier_code, member.program_id) == before
    assert member.first_name == "Ana"  # nothing of the refused update was written
    assert audit_rows(db, program.id, "fideliza.member.updated") == []


def test_update_profile_changes_the_profile_and_writes_an_audit_row(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    members.update_profile(
        db,
        program=program,
        member=member,
        changes={"email": "Eva@Example.ES", "first_name": "Eva", "consent": {"email": True}},
        now=now,
        actor="staff:12",
    )
    db.commit()
    db.refresh(member)
    assert (member.first_name, member.email, member.consent) == (
        "Eva",
        "eva@example.es",
        {"email": True},
    )
    (row,) = audit_rows(db, program.id, "fideliza.member.updated")
    assert row.subject == member.external_id and row.actor == "staff:12"
    assert row.data == {"fields": ["consent", "email", "first_name"]}
    assert members.find(db, program_id=program.id, email="eva@example.es").id == member.id


@pytest.mark.parametrize(
    ("field", "cleared"), [("locale", "es"), ("consent", {}), ("attributes", {})]
)
def test_update_profile_clearing_a_field_that_cannot_be_empty(
    db: Session, now: datetime, field: str, cleared: Any
) -> None:
    program = make_program(db, now=now)
    member = make_member(
        db, program=program, now=now, locale="it", consent={"sms": True}, attributes={"a": 1}
    )
    db.commit()
    # `null` must not reach a NOT NULL column (an IntegrityError, a 500): it means "reset".
    members.update_profile(db, program=program, member=member, changes={field: None}, now=now)
    db.commit()
    db.refresh(member)
    assert getattr(member, field) == cleared


# --- statuses ----------------------------------------------------------------------------------


def test_status_transitions_and_closed_is_final(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    for status in ("suspended", "active", "suspended", "closed"):
        members.change_status(
            db, program=program, member=member, status=status, reason=f"to {status}", now=now
        )
        assert member.status == status
    for status in ("active", "suspended", "closed"):
        with pytest.raises(InvalidState) as error:
            members.change_status(
                db, program=program, member=member, status=status, reason="again", now=now
            )
        assert error.value.field == "status"
    db.commit()
    db.refresh(member)
    assert member.status == "closed"
    rows = db.execute(
        select(AuditLog.action, AuditLog.data)
        .where(AuditLog.program_id == program.id, AuditLog.action.like("fideliza.member.%"))
        .where(AuditLog.action != "fideliza.member.enrolled")
        .order_by(AuditLog.id)
    ).all()
    assert [(a, d["from"], d["reason"]) for a, d in rows] == [
        ("fideliza.member.suspended", "active", "to suspended"),
        ("fideliza.member.active", "suspended", "to active"),
        ("fideliza.member.suspended", "active", "to suspended"),
        ("fideliza.member.closed", "suspended", "to closed"),
    ]


@pytest.mark.parametrize(
    ("status", "reason", "error_type", "field"),
    [
        ("active", "no change", InvalidState, "status"),
        ("deleted", "typo", ValidationError, "status"),
        ("suspended", "   ", ValidationError, "reason"),
    ],
)
def test_bad_status_changes_name_the_field(
    db: Session,
    now: datetime,
    status: str,
    reason: str,
    error_type: type[Exception],
    field: str,
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    with pytest.raises(error_type) as error:
        members.change_status(
            db, program=program, member=member, status=status, reason=reason, now=now
        )
    assert error.value.field == field  # type: ignore[attr-defined]
    assert member.status == "active"


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_a_member_who_is_not_active_cannot_earn(db: Session, now: datetime, status: str) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    member = make_member(db, program=program, now=now)
    members.change_status(db, program=program, member=member, status=status, reason="x", now=now)
    db.commit()
    with pytest.raises(InvalidState) as error:
        purchases.record_purchase(
            db, program=program, data=basket("t1", member.external_id, now), now=now
        )
    assert error.value.field == "member_id"
    assert status in error.value.message
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 0
    count = db.scalar(
        select(func.count()).select_from(Purchase).where(Purchase.program_id == program.id)
    )
    assert count == 0
    if status == "suspended":  # reactivated, the member earns again
        members.change_status(
            db, program=program, member=member, status="active", reason="ok", now=now
        )
        outcome = purchases.record_purchase(
            db, program=program, data=basket("t1", member.external_id, now), now=now
        )
        db.commit()
        assert outcome.points == 12
        assert ledger.balance(db, member_id=member.id).available == 12


# --- bulk enrolment ----------------------------------------------------------------------------


def test_enrol_many_skips_known_ids_and_gives_everyone_accounts_and_a_unique_card(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    known = make_member(db, program=program, now=now)
    db.commit()
    rows = [
        {"external_id": known.external_id, "first_name": "Changed"},
        *({"external_id": f"B-{n}", "email": f"b{n}@example.es"} for n in range(25)),
        {"external_id": "B-0", "email": "again@example.es"},  # repeated in the batch
    ]
    assert members.enrol_many(db, program=program, rows=rows, now=now) == 25
    db.commit()
    assert members.enrol_many(db, program=program, rows=rows, now=now) == 0
    db.commit()
    db.refresh(known)
    assert known.first_name == "Ana"
    enrolled = db.scalars(
        select(Member).where(Member.program_id == program.id, Member.external_id.like("B-%"))
    ).all()
    assert len(enrolled) == 25
    by_id = {m.external_id: m for m in enrolled}
    assert by_id["B-0"].email == "b0@example.es"  # the first row of a repeated id wins
    ids = [m.id for m in enrolled]
    accounts = db.execute(
        select(Account.member_id, Account.kind, Account.balance).where(Account.member_id.in_(ids))
    ).all()
    assert len(accounts) == 75
    assert {(kind, balance) for _, kind, balance in accounts} == {
        ("available", 0),
        ("pending", 0),
        ("held", 0),
    }
    cards = db.execute(
        select(Card.member_id, Card.number, Card.status).where(Card.program_id == program.id)
    ).all()
    numbers = [number for _, number, _ in cards]
    assert len(numbers) == len(set(numbers)) == 26
    assert all(is_card_number(n) for n in numbers)
    assert {member_id for member_id, _, _ in cards} >= set(ids)
    assert members.find(db, program_id=program.id, email="b7@example.es").external_id == "B-7"
    (bulk,) = audit_rows(db, program.id, "fideliza.member.enrolled_in_bulk")
    assert bulk.subject == "25 members"


def test_enrol_many_refuses_a_bad_row_and_names_it(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rows = [{"external_id": "ok-1"}, {"external_id": "ok-2"}, {"external_id": "x", "email": "no"}]
    with pytest.raises(ValidationError) as error:
        members.enrol_many(db, program=program, rows=rows, now=now)
    assert error.value.field == "rows[2].email"
    db.rollback()
    count = db.scalar(
        select(func.count()).select_from(Member).where(Member.program_id == program.id)
    )
    assert count == 0


# --- bad profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "lucia.example.es"}, "email"),
        ({"email": "lucia@example"}, "email"),
        ({"phone": "12345"}, "phone"),
        ({"phone": "+34 600 CALL ME"}, "phone"),
        ({"locale": "fr"}, "locale"),
        ({"consent": {"fax": True}}, "consent"),
        ({"consent": {"email": "maybe"}}, "consent.email"),
        ({"birthday": "1850-01-01"}, "birthday"),
        ({"birthday": "17/05/1990"}, "birthday"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": None}, "external_id"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"points": 500}, "points"),
        ({"tier_code": "GOLD"}, "tier_code"),
    ],
)
def test_bad_profiles_name_the_field(
    db: Session, now: datetime, change: dict[str, Any], field: str
) -> None:
    program = make_program(db, now=now)
    with pytest.raises(ValidationError) as error:
        members.enrol(db, program=program, data=profile(**change), now=now)
    assert error.value.field == field
    member = make_member(db, program=program, now=now)
    update = {k: v for k, v in change.items() if k != "external_id"}
    if update:
        with pytest.raises(ValidationError) as error:
            members.update_profile(db, program=program, member=member, changes=update, now=now)
        assert error.value.field == field
