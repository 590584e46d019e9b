"""Coupons against a real database (SQLite and PostgreSQL): issue, validate, redeem, restore."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fideliza.core.errors import IdempotencyError, InvalidState, NotFound, ValidationError
from fideliza.coupons import budget
from fideliza.coupons import service as coupons
from fideliza.coupons.domain import Reason
from fideliza.coupons.errors import BudgetExhausted, CouponNotApplicable, CouponRejected
from fideliza.coupons.models import CouponCode
from fideliza.programs.models import OutboxEvent
from fideliza.purchases import service as purchases
from tests.factories import make_member
from tests.integration.coupons.builders import basket, campaign, shop


def _one_code(db: Session, program_id: int, campaign_id: int, now: datetime) -> str:
    (code,) = coupons.generate_codes(
        db, program_id=program_id, campaign_id=campaign_id, count=1, now=now
    )
    return code


def test_a_single_use_code_is_redeemed_once_then_refused_generically(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    quote = coupons.validate(db, program_id=program.id, code=code, basket=basket(), now=now)
    assert quote.discount == Decimal("10.00")
    done = coupons.redeem(
        db,
        program_id=program.id,
        code=code,
        basket=basket(),
        now=now,
        member_id=member.id,
        purchase_external_id="t-1",
    )
    assert (done.discount, done.replayed) == (Decimal("10.00"), False)
    with pytest.raises(CouponRejected) as error:
        coupons.redeem(
            db,
            program_id=program.id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id="t-2",
        )
    assert error.value.reason is Reason.USED_UP
    assert error.value.as_dict()["code"] == "coupon_not_valid"
    assert coupons.inspect(db, program_id=program.id, code=code, now=now).state == "used_up"


def test_unknown_expired_and_used_codes_get_the_same_answer(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    offer = campaign(db, program, now, valid_until=(now + timedelta(days=1)).isoformat())
    expired, used = (_one_code(db, program.id, offer.id, now) for _ in range(2))
    coupons.redeem(db, program_id=program.id, code=used, basket=basket(), now=now)
    from fideliza.core.codes import new_code

    answers = []
    for code, when in ((new_code(), now), (expired, now + timedelta(days=2)), (used, now)):
        with pytest.raises(CouponRejected) as error:
            coupons.validate(db, program_id=program.id, code=code, basket=basket(), now=when)
        answers.append((error.value.as_dict(), error.value.status))
    assert answers[0] == answers[1] == answers[2]
    reasons = [
        coupons.inspect(db, program_id=program.id, code=expired, now=now + timedelta(days=2)),
        coupons.inspect(db, program_id=program.id, code=used, now=now),
    ]
    assert [state.reason for state in reasons] == [Reason.EXPIRED, Reason.USED_UP]


def test_a_typo_is_refused_by_its_check_character(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    typo = code[:-1] + ("2" if code[-1] != "2" else "3")
    with pytest.raises(ValidationError) as error:
        coupons.redeem(db, program_id=program.id, code=typo, basket=basket(), now=now)
    assert (error.value.code, error.value.field) == ("malformed_code", "code")
    # Lower case, spaces and no dashes are the same code.
    messy = code.replace("-", " ").lower()
    assert coupons.validate(db, program_id=program.id, code=messy, basket=basket(), now=now)


def test_a_multi_use_code_stops_at_its_limit(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now, max_uses_per_code=3).id, now)
    for index in range(3):
        coupons.redeem(
            db,
            program_id=program.id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id=f"p-{index}",
        )
    with pytest.raises(CouponRejected):
        coupons.redeem(db, program_id=program.id, code=code, basket=basket(), now=now)
    row = db.scalar(select(CouponCode).where(CouponCode.code == code))
    assert row is not None and row.uses == 3


def test_the_database_refuses_more_uses_than_allowed(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    row = db.scalar(select(CouponCode).where(CouponCode.code == code))
    assert row is not None
    row.uses = 2
    with pytest.raises(IntegrityError):
        db.flush()
    db.rollback()


def test_once_per_member_needs_the_member_and_refuses_a_second_use(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    other = make_member(db, program=program, now=now)
    offer = campaign(db, program, now, max_uses_per_code=None, once_per_member=True)
    code = _one_code(db, program.id, offer.id, now)
    with pytest.raises(ValidationError) as error:
        coupons.redeem(db, program_id=program.id, code=code, basket=basket(), now=now)
    assert error.value.field == "member_id"
    coupons.redeem(
        db, program_id=program.id, code=code, basket=basket(), now=now, member_id=member.id
    )
    coupons.redeem(
        db, program_id=program.id, code=code, basket=basket(), now=now, member_id=other.id
    )
    with pytest.raises(CouponRejected) as rejected:
        coupons.redeem(
            db, program_id=program.id, code=code, basket=basket(), now=now, member_id=member.id
        )
    assert rejected.value.reason is Reason.ALREADY_USED_BY_MEMBER


def test_a_code_issued_to_a_member_is_refused_to_another(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    other = make_member(db, program=program, now=now)
    offer = campaign(db, program, now, code_valid_days=30)
    issued = coupons.issue_code(
        db,
        program_id=program.id,
        campaign_id=offer.id,
        member_id=member.id,
        now=now,
        source="reward",
    )
    assert issued.valid_until == now + timedelta(days=30)
    with pytest.raises(CouponRejected) as error:
        coupons.validate(
            db,
            program_id=program.id,
            code=issued.code,
            basket=basket(),
            now=now,
            member_id=other.id,
        )
    assert error.value.reason is Reason.OTHER_MEMBER
    assert coupons.validate(
        db, program_id=program.id, code=issued.code, basket=basket(), now=now, member_id=member.id
    ).discount == Decimal("10.00")
    events = db.scalars(
        select(OutboxEvent.event_type).where(OutboxEvent.program_id == program.id)
    ).all()
    assert "coupon.issued" in events


def test_minimum_spend_and_basket_rules_are_told_precisely(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    offer = campaign(
        db, program, now, min_spend="30.00", discount={"type": "free_item", "sku": "COFFEE"}
    )
    code = _one_code(db, program.id, offer.id, now)
    with pytest.raises(CouponNotApplicable) as error:
        coupons.validate(db, program_id=program.id, code=code, basket=basket("20.00"), now=now)
    assert "30" in error.value.message
    with pytest.raises(CouponNotApplicable):
        coupons.validate(db, program_id=program.id, code=code, basket=basket("40.00"), now=now)
    lines = [
        {"sku": "COFFEE", "quantity": 2, "unit_price": "2.50"},
        {"sku": "CAKE", "quantity": 1, "unit_price": "35.00"},
    ]
    quote = coupons.validate(
        db, program_id=program.id, code=code, basket=basket("40.00", lines), now=now
    )
    assert quote.discount == Decimal("2.50")


def test_validate_consumes_nothing(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    for _ in range(3):
        coupons.validate(db, program_id=program.id, code=code, basket=basket(), now=now)
    assert coupons.inspect(db, program_id=program.id, code=code, now=now).uses == 0


def test_a_till_retry_replays_and_another_basket_is_refused(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    first = coupons.redeem(
        db, program_id=program.id, code=code, basket=basket(), now=now, purchase_external_id="t-9"
    )
    again = coupons.redeem(
        db, program_id=program.id, code=code, basket=basket(), now=now, purchase_external_id="t-9"
    )
    assert again.replayed and again.redemption_id == first.redemption_id
    with pytest.raises(IdempotencyError):
        coupons.redeem(
            db,
            program_id=program.id,
            code=code,
            basket=basket("60.00"),
            now=now,
            purchase_external_id="t-9",
        )
    events = db.scalars(
        select(OutboxEvent).where(
            OutboxEvent.program_id == program.id, OutboxEvent.event_type == "coupon.redeemed"
        )
    ).all()
    assert len(events) == 1 and events[0].payload["discount"] == "10.00"


def test_a_paused_campaign_neither_issues_nor_redeems(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now)
    code = _one_code(db, program.id, offer.id, now)
    coupons.set_campaign_active(
        db, program_id=program.id, campaign_id=offer.id, active=False, now=now
    )
    with pytest.raises(CouponRejected):
        coupons.validate(db, program_id=program.id, code=code, basket=basket(), now=now)
    with pytest.raises(InvalidState):
        coupons.issue_code(
            db,
            program_id=program.id,
            campaign_id=offer.id,
            member_id=member.id,
            now=now,
            source="crm",
        )


def test_a_voided_code_is_refused(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    state = coupons.void_code(db, program_id=program.id, code=code, now=now)
    assert state.reason is Reason.VOIDED
    with pytest.raises(CouponRejected):
        coupons.redeem(db, program_id=program.id, code=code, basket=basket(), now=now)


def test_points_budget_stops_issuing_once_spent(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now, budget_points=250, points_per_code=100)
    for _ in range(2):
        coupons.issue_code(
            db,
            program_id=program.id,
            campaign_id=offer.id,
            member_id=member.id,
            now=now,
            source="reward",
        )
    with pytest.raises(BudgetExhausted):
        coupons.issue_code(
            db,
            program_id=program.id,
            campaign_id=offer.id,
            member_id=member.id,
            now=now,
            source="reward",
        )
    with pytest.raises(BudgetExhausted):
        coupons.generate_codes(db, program_id=program.id, campaign_id=offer.id, count=1, now=now)
    assert budget.state(db, campaign=offer, now=now).points_spent == 200


def test_money_budget_per_day_is_spent_by_discounts_and_renews_next_day(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(
        db, program, now, budget_money="25.00", budget_period="day", max_uses_per_code=None
    )
    code = _one_code(db, program.id, offer.id, now)
    for index in range(2):
        coupons.redeem(
            db,
            program_id=program.id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id=f"b-{index}",
        )
    with pytest.raises(CouponRejected) as error:  # 20 spent: 10 more would overspend 25
        coupons.redeem(
            db,
            program_id=program.id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id="b-2",
        )
    assert error.value.reason is Reason.BUDGET_EXHAUSTED
    assert coupons.inspect(db, program_id=program.id, code=code, now=now).uses == 2
    tomorrow = now + timedelta(days=1)
    coupons.redeem(
        db,
        program_id=program.id,
        code=code,
        basket=basket(),
        now=tomorrow,
        purchase_external_id="b-3",
    )
    state = budget.state(db, campaign=offer, now=tomorrow)
    assert state.money_spent == Decimal("10.00")
    assert coupons.issue_code(
        db,
        program_id=program.id,
        campaign_id=offer.id,
        member_id=member.id,
        now=tomorrow,
        source="crm",
    )


def _purchase(db: Session, program, member, external_id: str, amount: str, now: datetime):  # type: ignore[no-untyped-def]
    purchases.record_purchase(
        db,
        program=program,
        data={
            "external_id": external_id,
            "member_id": member.external_id,
            "occurred_at": now.isoformat(),
            "amount": amount,
            "currency": "EUR",
        },
        now=now,
    )
    return purchases.get_purchase(db, program_id=program.id, external_id=external_id)


def test_a_full_return_restores_the_coupon_used_on_the_purchase(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    coupons.redeem(
        db,
        program_id=program.id,
        code=code,
        basket=basket(),
        now=now,
        member_id=member.id,
        purchase_external_id="r-1",
    )
    purchase = _purchase(db, program, member, "r-1", "40.00", now)
    purchases.record_return(
        db,
        program=program,
        purchase_external_id="r-1",
        external_id="ret-1",
        occurred_at=now,
        now=now,
        amount="10.00",
    )
    assert (
        coupons.restore_for_return(db, program_id=program.id, purchase_id=purchase.id, now=now) == 0
    )  # partial: full_return policy keeps it
    purchases.record_return(
        db,
        program=program,
        purchase_external_id="r-1",
        external_id="ret-2",
        occurred_at=now,
        now=now,
        amount="30.00",
    )
    # The full return restored it (record_return calls restore_for_return): only once.
    assert (
        coupons.restore_for_return(db, program_id=program.id, purchase_id=purchase.id, now=now) == 0
    )
    assert coupons.inspect(db, program_id=program.id, code=code, now=now).state == "usable"
    coupons.redeem(
        db, program_id=program.id, code=code, basket=basket(), now=now, purchase_external_id="r-2"
    )


def test_keep_policy_never_restores(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now, return_policy="keep").id, now)
    coupons.redeem(
        db, program_id=program.id, code=code, basket=basket(), now=now, purchase_external_id="k-1"
    )
    purchase = _purchase(db, program, member, "k-1", "40.00", now)
    purchases.record_return(
        db,
        program=program,
        purchase_external_id="k-1",
        external_id="kr-1",
        occurred_at=now,
        now=now,
        amount="40.00",
    )
    assert (
        coupons.restore_for_return(db, program_id=program.id, purchase_id=purchase.id, now=now) == 0
    )


def test_restoring_gives_back_the_money_budget_and_the_once_per_member(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(
        db,
        program,
        now,
        budget_money="10.00",
        once_per_member=True,
        max_uses_per_code=None,
        return_policy="any_return",
    )
    code = _one_code(db, program.id, offer.id, now)
    coupons.redeem(
        db,
        program_id=program.id,
        code=code,
        basket=basket(),
        now=now,
        member_id=member.id,
        purchase_external_id="o-1",
    )
    purchase = _purchase(db, program, member, "o-1", "40.00", now)
    purchases.record_return(
        db,
        program=program,
        purchase_external_id="o-1",
        external_id="or-1",
        occurred_at=now,
        now=now,
        amount="5.00",
    )
    # Restored by the return itself (any_return policy): nothing left to do.
    assert (
        coupons.restore_for_return(db, program_id=program.id, purchase_id=purchase.id, now=now) == 0
    )
    assert budget.state(db, campaign=offer, now=now).money_spent == 0
    coupons.redeem(
        db,
        program_id=program.id,
        code=code,
        basket=basket(),
        now=now,
        member_id=member.id,
        purchase_external_id="o-2",
    )


def test_next_order_coupons_are_issued_once_per_qualifying_purchase(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(
        db,
        program,
        now,
        trigger="purchase",
        trigger_min_amount="30.00",
        code_valid_days=14,
        discount={"type": "percent", "percent": "10"},
    )
    small = _purchase(db, program, member, "n-1", "20.00", now)
    big = _purchase(db, program, member, "n-2", "35.00", now)
    assert (
        coupons.issue_for_purchase(
            db,
            program_id=program.id,
            purchase_id=small.id,
            member_id=member.id,
            amount=small.amount,
            now=now,
        )
        == []
    )
    issued = coupons.issue_for_purchase(
        db,
        program_id=program.id,
        purchase_id=big.id,
        member_id=member.id,
        amount=big.amount,
        now=now,
    )
    again = coupons.issue_for_purchase(
        db,
        program_id=program.id,
        purchase_id=big.id,
        member_id=member.id,
        amount=big.amount,
        now=now,
    )
    assert len(issued) == 1 and issued == again
    assert issued[0].campaign_id == offer.id and issued[0].member_id == member.id
    quote = coupons.validate(
        db,
        program_id=program.id,
        code=issued[0].code,
        basket=basket("80.00"),
        now=now,
        member_id=member.id,
    )
    assert quote.discount == Decimal("8.00")
    with pytest.raises(InvalidState):
        coupons.generate_codes(db, program_id=program.id, campaign_id=offer.id, count=5, now=now)


def test_generated_codes_are_stored_normalized_unique_and_usable(
    db: Session, now: datetime
) -> None:
    program, _ = shop(db, now)
    offer = campaign(db, program, now, code_prefix="XMAS")
    ticks: list[int] = []
    batch = coupons.generate_codes(
        db,
        program_id=program.id,
        campaign_id=offer.id,
        count=1200,
        now=now,
        on_progress=ticks.append,
    )
    assert len(set(batch)) == 1200 and sum(ticks) == 1200
    assert all(coupons.display(code, offer).startswith("XMAS-") for code in batch)
    stored = db.scalars(select(CouponCode.code).where(CouponCode.campaign_id == offer.id)).all()
    assert sorted(stored) == sorted(batch)
    assert coupons.validate(db, program_id=program.id, code=batch[-1], basket=basket(), now=now)


def test_campaign_input_errors_name_the_field(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    cases = [
        ({"discount": {"type": "percent", "percent": "120"}}, "discount.percent"),
        ({"max_uses_per_code": 0}, "max_uses_per_code"),
        ({"discount": {"type": "bogus"}}, "discount"),
        ({"code_prefix": "GOLD"}, "code_prefix"),
        ({"colour": "red"}, "colour"),
        ({"min_spend": "1.234"}, "min_spend"),
    ]
    for fields, field in cases:
        with pytest.raises(ValidationError) as error:
            campaign(db, program, now, **fields)
        assert error.value.field == field, fields
    assert coupons.list_campaigns(db, program_id=program.id) == []


def test_a_member_of_another_program_is_not_found(db: Session, now: datetime) -> None:
    program, _ = shop(db, now)
    _, stranger = shop(db, now)
    code = _one_code(db, program.id, campaign(db, program, now).id, now)
    with pytest.raises(NotFound) as error:
        coupons.redeem(
            db, program_id=program.id, code=code, basket=basket(), now=now, member_id=stranger.id
        )
    assert error.value.field == "member_id"


def test_a_next_order_campaign_issues_nothing_before_it_starts(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    later = (now + timedelta(days=1)).isoformat()
    campaign(db, program, now, trigger="purchase", valid_from=later)
    early = _purchase(db, program, member, "e-1", "50.00", now)
    assert (
        coupons.issue_for_purchase(
            db,
            program_id=program.id,
            purchase_id=early.id,
            member_id=member.id,
            amount=early.amount,
            now=now,
        )
        == []
    )
    assert coupons.issue_for_purchase(
        db,
        program_id=program.id,
        purchase_id=early.id,
        member_id=member.id,
        amount=early.amount,
        now=now + timedelta(days=2),
    )
