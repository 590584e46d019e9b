"""Coupons through the purchase flow: a purchase issues next-order coupons, a return restores.

Runs once `purchases.service` calls `coupons.issue_for_purchase` and
`coupons.restore_for_return` (the wiring is the lead's, in a shared file).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.coupons import service as coupons
from fideliza.coupons.models import CouponCode
from fideliza.purchases import service as purchases
from tests.integration.coupons.builders import basket, campaign, shop

pytestmark = pytest.mark.skipif(
    not hasattr(purchases, "coupons"), reason="purchases.service does not call coupons yet"
)


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
