"""Coupons through the purchase flow: a purchase issues next-order coupons, a return restores
the coupons used on it and voids the unused ones it no longer earns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.coupons import service as coupons
from fideliza.coupons.models import CouponCode
from fideliza.purchases import service as purchases
from tests.integration.coupons.builders import basket, campaign, shop


def _buy(db: Session, program, member, external_id: str, amount: str, now: datetime) -> None:  # type: ignore[no-untyped-def]
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


def test_a_qualifying_purchase_issues_its_next_order_coupon_once(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now, trigger="purchase", trigger_min_amount="30.00")
    _buy(db, program, member, "p-1", "29.99", now)
    _buy(db, program, member, "p-2", "30.00", now)
    _buy(db, program, member, "p-2", "30.00", now)  # the till's retry: replayed
    issued = db.scalars(select(CouponCode).where(CouponCode.campaign_id == offer.id)).all()
    assert [(c.member_id, c.source) for c in issued] == [(member.id, "purchase")]


def test_a_full_return_gives_the_coupon_back(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now)
    (code,) = coupons.generate_codes(
        db, program_id=program.id, campaign_id=offer.id, count=1, now=now
    )
    coupons.redeem(
        db,
        program_id=program.id,
        code=code,
        basket=basket("40.00"),
        now=now,
        purchase_external_id="p-9",
    )
    _buy(db, program, member, "p-9", "30.00", now)
    purchases.record_return(
        db,
        program=program,
        purchase_external_id="p-9",
        external_id="r-9",
        occurred_at=now,
        now=now,
        amount=Decimal("30.00"),
    )
    assert coupons.inspect(db, program_id=program.id, code=code, now=now).state == "usable"


def _return(db: Session, program, purchase: str, amount: str, now: datetime) -> None:  # type: ignore[no-untyped-def]
    purchases.record_return(
        db,
        program=program,
        purchase_external_id=purchase,
        external_id=f"r-{purchase}-{amount}",
        occurred_at=now,
        now=now,
        amount=Decimal(amount),
    )


def _issued_state(db: Session, program, offer, now: datetime) -> list[str]:  # type: ignore[no-untyped-def]
    found = db.scalars(select(CouponCode).where(CouponCode.campaign_id == offer.id)).all()
    return [
        coupons.inspect(db, program_id=program.id, code=code.code, now=now).state for code in found
    ]


def test_a_return_below_the_threshold_voids_the_unused_next_order_coupon(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now, trigger="purchase", trigger_min_amount="30.00")
    _buy(db, program, member, "p-1", "50.00", now)
    _return(db, program, "p-1", "20.00", now)  # keeps 30.00: still earned
    assert _issued_state(db, program, offer, now) == ["usable"]
    _return(db, program, "p-1", "0.01", now)  # keeps 29.99: no longer
    assert _issued_state(db, program, offer, now) == ["voided"]


def test_a_full_return_voids_a_next_order_coupon_without_threshold(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now, trigger="purchase")
    _buy(db, program, member, "p-1", "10.00", now)
    _return(db, program, "p-1", "9.99", now)
    assert _issued_state(db, program, offer, now) == ["usable"]
    _return(db, program, "p-1", "0.01", now)
    assert _issued_state(db, program, offer, now) == ["voided"]


def test_a_next_order_coupon_already_used_stays_used_after_the_return(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now, trigger="purchase")
    _buy(db, program, member, "p-1", "10.00", now)
    (issued,) = db.scalars(select(CouponCode).where(CouponCode.campaign_id == offer.id)).all()
    coupons.redeem(
        db,
        program_id=program.id,
        code=issued.code,
        basket=basket("40.00"),
        now=now,
        member_id=member.id,
        purchase_external_id="p-2",
    )
    _return(db, program, "p-1", "10.00", now)
    assert _issued_state(db, program, offer, now) == ["used_up"]
