"""Invariants under any sequence of redemptions, retries and returns (hypothesis, both backends).

Whatever the order: a code's `uses` equals its standing (unrestored) redemptions, never
exceeds its limit, and the money budget spent equals the standing discounts.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.coupons import budget
from fideliza.coupons import service as coupons
from fideliza.coupons.errors import CouponRejected
from fideliza.coupons.models import CouponCode, CouponRedemption
from fideliza.purchases import service as purchases
from tests.integration.coupons.builders import basket, campaign, shop

operations = st.lists(
    st.tuples(st.sampled_from(["redeem", "retry", "return"]), st.integers(0, 4)), max_size=12
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(limit=st.integers(1, 3), steps=operations)
def test_uses_match_standing_redemptions_within_the_limit_and_the_budget(
    session_factory: sessionmaker[Session], now: datetime, limit: int, steps: list[tuple[str, int]]
) -> None:
    with session_factory() as db:
        program, member = shop(db, now)
        offer = campaign(
            db,
            program,
            now,
            max_uses_per_code=limit,
            return_policy="any_return",
            budget_money="1000.00",
        )
        (code,) = coupons.generate_codes(
            db, program_id=program.id, campaign_id=offer.id, count=1, now=now
        )
        bought: dict[int, int] = {}
        for step, (action, index) in enumerate(steps):
            purchase = f"p-{index}"
            if action in ("redeem", "retry"):
                with contextlib.suppress(CouponRejected):  # used up: nothing written
                    coupons.redeem(
                        db,
                        program_id=program.id,
                        code=code,
                        basket=basket("40.00"),
                        now=now,
                        purchase_external_id=purchase,
                    )
            else:
                if index not in bought:
                    purchases.record_purchase(
                        db,
                        program=program,
                        now=now,
                        data={
                            "external_id": purchase,
                            "member_id": member.external_id,
                            "occurred_at": now.isoformat(),
                            "amount": "40.00",
                            "currency": "EUR",
                        },
                    )
                    bought[index] = purchases.get_purchase(
                        db, program_id=program.id, external_id=purchase
                    ).id
                purchases.record_return(
                    db,
                    program=program,
                    purchase_external_id=purchase,
                    external_id=f"r-{step}",
                    occurred_at=now,
                    now=now,
                    amount="1.00",
                )
                coupons.restore_for_return(
                    db, program_id=program.id, purchase_id=bought[index], now=now
                )
            uses = db.scalar(select(CouponCode.uses).where(CouponCode.campaign_id == offer.id))
            standing = db.scalar(
                select(func.count()).where(
                    CouponRedemption.campaign_id == offer.id,
                    CouponRedemption.restored_at.is_(None),
                )
            )
            assert uses == standing and 0 <= uses <= limit
            spent = budget.state(db, campaign=offer, now=now).money_spent
            assert spent == Decimal("10.00") * standing
        db.rollback()
