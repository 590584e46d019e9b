"""Referrals end to end on SQLite and PostgreSQL: codes, linking, anti-abuse, payouts."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fideliza.core import codes
from fideliza.core.errors import Conflict, InvalidState, NotFound, ValidationError
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import LedgerTransaction
from fideliza.members import service as members
from fideliza.members.models import Member
from fideliza.programs.models import OutboxEvent, Program
from fideliza.purchases import service as purchases
from fideliza.referrals import service as referrals
from tests.factories import make_member, make_program

FIRST_PURCHASE = {"trigger": "first_purchase", "referrer_points": 500, "referred_points": 200}


def newcomer(**profile: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"external_id": f"new-{secrets.token_hex(4)}", "first_name": "Bea"}
    data.update(profile)
    return data


def buy(db: Session, program: Program, member: Member, at: datetime, amount: str = "30.00") -> str:
    external_id = f"t-{secrets.token_hex(4)}"
    purchases.record_purchase(
        db,
        program=program,
        data={
            "external_id": external_id,
            "member_id": member.external_id,
            "occurred_at": at.isoformat(),
            "amount": amount,
            "currency": "EUR",
        },
        now=at,
    )
    return external_id


def setup(
    db: Session, now: datetime, config: dict[str, Any] | None = None, window_days: int = 14
) -> tuple[Program, Member, str]:
    program = make_program(db, now=now, settings={"return_window_days": window_days})
    referrals.configure(db, program=program, config=config or FIRST_PURCHASE, now=now)
    referrer = make_member(
        db, program=program, now=now, email="ana@example.com", phone="+34600111222"
    )
    code = referrals.code_for(db, program=program, member=referrer, now=now)
    db.commit()
    return program, referrer, code


def test_a_members_code_is_created_once_and_well_formed(db: Session, now: datetime) -> None:
    program, referrer, code = setup(db, now)
    assert referrals.code_for(db, program=program, member=referrer, now=now) == code
    assert codes.check(referrals.display(code)) == code
    assert len(code) * codes.BITS_PER_CHAR >= 60
    other = make_member(db, program=program, now=now)
    assert referrals.code_for(db, program=program, member=other, now=now) != code


def test_enrolment_with_a_code_links_and_typed_variants_work(db: Session, now: datetime) -> None:
    program, referrer, code = setup(db, now)
    typed = referrals.display(code).lower()  # people type lower case and dashes
    member, referral, created = referrals.enrol_with_referral(
        db, program=program, data=newcomer(email="bea@example.com"), referral_code=typed, now=now
    )
    db.commit()
    assert created
    assert (referral.referrer_member_id, referral.referred_member_id) == (referrer.id, member.id)
    assert referral.state == "pending"
    again, same, created_again = referrals.enrol_with_referral(
        db,
        program=program,
        data={"external_id": member.external_id, "first_name": "Bea", "email": "bea@example.com"},
        referral_code=code,
        now=now,
    )
    assert (again.id, same.id, created_again) == (member.id, referral.id, False)


@pytest.mark.parametrize(
    ("code_text", "error"),
    [("", ValidationError), ("NOT-A-CODE-0000", ValidationError), (None, ValidationError)],
)
def test_a_bad_code_names_the_field_and_writes_nothing(
    db: Session, now: datetime, code_text: str | None, error: type[Exception]
) -> None:
    program, _, _ = setup(db, now)
    before = db.scalar(select(func.count()).select_from(Member))
    data = newcomer()
    with pytest.raises(error) as raised:
        referrals.enrol_with_referral(
            db, program=program, data=data, referral_code=code_text, now=now
        )
    db.rollback()
    assert getattr(raised.value, "field", None) == "referral_code"
    assert db.scalar(select(func.count()).select_from(Member)) == before


def test_an_unknown_but_well_formed_code_is_not_found(db: Session, now: datetime) -> None:
    program, _, _ = setup(db, now)
    unknown = codes.new_code(bits=60)
    with pytest.raises(NotFound) as raised:
        referrals.enrol_with_referral(
            db, program=program, data=newcomer(), referral_code=unknown, now=now
        )
    assert raised.value.field == "referral_code"


def test_a_code_of_another_program_is_unknown(db: Session, now: datetime) -> None:
    _, _, code = setup(db, now)
    other, _, _ = setup(db, now)
    with pytest.raises(NotFound):
        referrals.enrol_with_referral(
            db, program=other, data=newcomer(), referral_code=code, now=now
        )


@pytest.mark.parametrize(
    ("profile", "shared"),
    [
        ({"email": "ANA+promo@Example.com"}, "email"),
        ({"phone": "+34 600 111 222"}, "phone"),
    ],
)
def test_self_referral_is_refused(
    db: Session, now: datetime, profile: dict[str, Any], shared: str
) -> None:
    program, _, code = setup(db, now)
    with pytest.raises(ValidationError) as raised:
        referrals.enrol_with_referral(
            db, program=program, data=newcomer(**profile), referral_code=code, now=now
        )
    assert raised.value.field == "referral_code"
    assert shared in raised.value.message


def test_an_existing_member_cannot_be_referred(db: Session, now: datetime) -> None:
    program, _, code = setup(db, now)
    existing = make_member(db, program=program, now=now, email="carla@example.com")
    db.commit()
    with pytest.raises(Conflict) as by_id:
        referrals.enrol_with_referral(
            db,
            program=program,
            data={"external_id": existing.external_id, "first_name": "Ana"},
            referral_code=code,
            now=now,
        )
    assert by_id.value.field == "external_id"
    with pytest.raises(Conflict) as by_email:
        referrals.enrol_with_referral(
            db,
            program=program,
            data=newcomer(email="carla@example.com"),
            referral_code=code,
            now=now,
        )
    assert by_email.value.field == "email"


def test_no_cycles_a_referred_member_cannot_refer_their_referrer(
    db: Session, now: datetime
) -> None:
    program, referrer, code = setup(db, now)
    bea, _, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=now
    )
    bea_code = referrals.code_for(db, program=program, member=bea, now=now)
    db.commit()
    # Ana is already a member: Bea's code can never link her (A → B → A).
    with pytest.raises(Conflict):
        referrals.enrol_with_referral(
            db,
            program=program,
            data={"external_id": referrer.external_id, "first_name": "Ana"},
            referral_code=bea_code,
            now=now,
        )


def test_a_suspended_referrer_or_inactive_scheme_is_refused(db: Session, now: datetime) -> None:
    program, referrer, code = setup(db, now)
    members.change_status(
        db, program=program, member=referrer, status="suspended", reason="fraud check", now=now
    )
    with pytest.raises(InvalidState) as raised:
        referrals.enrol_with_referral(
            db, program=program, data=newcomer(), referral_code=code, now=now
        )
    assert raised.value.field == "referral_code"
    db.rollback()
    referrals.configure(db, program=program, config={**FIRST_PURCHASE, "active": False}, now=now)
    with pytest.raises(InvalidState):
        referrals.enrol_with_referral(
            db, program=program, data=newcomer(), referral_code=code, now=now
        )


def test_the_cap_per_referrer_rejects_with_a_reason_and_resets_next_month(
    db: Session, now: datetime
) -> None:
    config = {**FIRST_PURCHASE, "cap": {"max_referrals": 2, "period": "month"}}
    program, _, code = setup(db, now, config)
    states = [
        referrals.enrol_with_referral(
            db, program=program, data=newcomer(), referral_code=code, now=now
        )[1]
        for _ in range(3)
    ]
    assert [r.state for r in states] == ["pending", "pending", "rejected"]
    assert states[2].reject_reason == "referrer_cap"
    next_month = now + timedelta(days=31)
    _, fresh, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=next_month
    )
    assert fresh.state == "pending"


def test_payout_waits_for_the_first_purchase_and_the_return_window(
    db: Session, now: datetime
) -> None:
    program, referrer, code = setup(db, now)
    bea, referral, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=now
    )
    db.commit()
    assert referrals.pay_due(db, program_id=program.id, now=now + timedelta(days=30)) == 0
    bought_at = now + timedelta(days=2)
    buy(db, program, bea, bought_at)
    assert referrals.pay_due(db, program_id=program.id, now=bought_at + timedelta(days=13)) == 0
    db.refresh(referral)
    assert referral.state == "qualified"
    assert referral.due_at == bought_at + timedelta(days=14)
    paid_at = bought_at + timedelta(days=14)
    assert referrals.pay_due(db, program_id=program.id, now=paid_at) == 1
    db.commit()
    db.refresh(referral)
    assert (referral.state, referral.referrer_points, referral.referred_points) == (
        "rewarded",
        500,
        200,
    )
    assert ledger.balance(db, member_id=referrer.id).available == 500
    assert ledger.balance(db, member_id=bea.id).total == 200  # no earning rule in this program
    event = db.scalar(
        select(OutboxEvent).where(
            OutboxEvent.program_id == program.id, OutboxEvent.event_type == "referral.completed"
        )
    )
    assert event is not None and event.payload["referral_id"] == referral.id
    # A second run pays nothing more.
    assert referrals.pay_due(db, program_id=program.id, now=paid_at + timedelta(days=1)) == 0
    keys = db.scalars(
        select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.program_id == program.id,
            LedgerTransaction.idempotency_key.like("referral:%"),
        )
    ).all()
    assert sorted(keys) == [f"referral:{referral.id}:referred", f"referral:{referral.id}:referrer"]
    assert check_ledger(db, program_id=program.id) == []


def test_a_first_purchase_returned_within_the_window_does_not_count(
    db: Session, now: datetime
) -> None:
    program, referrer, code = setup(db, now)
    bea, referral, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=now
    )
    first = buy(db, program, bea, now)
    referrals.pay_due(db, program_id=program.id, now=now + timedelta(hours=1))
    db.refresh(referral)
    assert referral.state == "qualified"
    purchases.record_return(
        db,
        program=program,
        purchase_external_id=first,
        external_id=f"r-{first}",
        occurred_at=now + timedelta(days=3),
        now=now + timedelta(days=3),
        amount="30.00",
    )
    assert referrals.pay_due(db, program_id=program.id, now=now + timedelta(days=15)) == 0
    db.refresh(referral)
    assert referral.state == "pending" and referral.purchase_id is None
    second_at = now + timedelta(days=20)
    buy(db, program, bea, second_at)
    assert referrals.pay_due(db, program_id=program.id, now=second_at + timedelta(days=14)) == 1
    assert ledger.balance(db, member_id=referrer.id).available == 500


def test_a_minimum_amount_skips_small_first_purchases(db: Session, now: datetime) -> None:
    config = {**FIRST_PURCHASE, "min_purchase_amount": "50.00"}
    program, referrer, code = setup(db, now, config, window_days=0)
    bea, referral, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=now
    )
    buy(db, program, bea, now, amount="49.99")
    assert referrals.pay_due(db, program_id=program.id, now=now + timedelta(days=1)) == 0
    later = now + timedelta(days=2)
    big = buy(db, program, bea, later, amount="50.00")
    assert referrals.pay_due(db, program_id=program.id, now=later) == 1
    assert ledger.balance(db, member_id=referrer.id).available == 500
    db.refresh(referral)
    assert (
        referral.purchase_id
        == purchases.get_purchase(db, program_id=program.id, external_id=big).id
    )


def test_an_enrolment_trigger_pays_after_the_window(db: Session, now: datetime) -> None:
    config = {"trigger": "enrolment", "referred_points": 100}
    program, referrer, code = setup(db, now, config, window_days=7)
    bea, referral, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=now
    )
    assert referral.state == "qualified"
    assert referrals.pay_due(db, program_id=program.id, now=now + timedelta(days=6)) == 0
    assert referrals.pay_due(db, program_id=program.id, now=now + timedelta(days=7)) == 1
    assert ledger.balance(db, member_id=bea.id).available == 100
    assert ledger.balance(db, member_id=referrer.id).available == 0


def test_a_closed_member_is_rejected_at_payout(db: Session, now: datetime) -> None:
    config = {"trigger": "enrolment", "referrer_points": 100}
    program, referrer, code = setup(db, now, config, window_days=0)
    bea, referral, _ = referrals.enrol_with_referral(
        db, program=program, data=newcomer(), referral_code=code, now=now
    )
    members.change_status(db, program=program, member=bea, status="closed", reason="gone", now=now)
    assert referrals.pay_due(db, program_id=program.id, now=now) == 0
    db.refresh(referral)
    assert (referral.state, referral.reject_reason) == ("rejected", "member_inactive")
    assert ledger.balance(db, member_id=referrer.id).available == 0


def test_listing_a_members_referrals(db: Session, now: datetime) -> None:
    program, referrer, code = setup(db, now)
    made = [
        referrals.enrol_with_referral(
            db, program=program, data=newcomer(), referral_code=code, now=now
        )[1].id
        for _ in range(3)
    ]
    listed = referrals.list_referrals(db, program_id=program.id, member_id=referrer.id)
    assert [r.id for r in listed] == made
    assert referrals.list_referrals(db, program_id=program.id, state="rewarded") == []
    with pytest.raises(ValidationError) as raised:
        referrals.list_referrals(db, program_id=program.id, state="paid")
    assert raised.value.field == "state"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"trigger": "signup", "referrer_points": 1}, "config.trigger"),
        ({"trigger": "enrolment"}, "config"),
        ({"referrer_points": -5}, "config.referrer_points"),
        ({"referrer_points": 1.5}, "config.referrer_points"),
        ({"referrer_points": 1, "bonus": 3}, "config.bonus"),
        ({"referrer_points": 1, "cap": {"max_referrals": 0}}, "config.cap.max_referrals"),
    ],
)
def test_bad_configuration_names_the_field(
    db: Session, now: datetime, config: dict[str, Any], field: str
) -> None:
    program = make_program(db, now=now)
    with pytest.raises(ValidationError) as raised:
        referrals.configure(db, program=program, config=config, now=now)
    assert raised.value.field == field
    assert referrals.get_config(db, program_id=program.id) is None
