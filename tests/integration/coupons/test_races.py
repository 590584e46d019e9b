"""Coupon races for real: threads on PostgreSQL, each with its own connection, at one instant.

Only the conditional UPDATEs and the CHECK/UNIQUE constraints keep the threads apart, so these
tests fail if a limit is checked in Python and written later.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from fideliza.coupons import budget
from fideliza.coupons import service as coupons
from fideliza.coupons.models import CouponCampaign
from fideliza.db import make_engine, make_session_factory, unit_of_work
from tests.factories import make_member
from tests.integration.coupons.builders import basket, campaign, shop

T = TypeVar("T")
TIMEOUT_SECONDS = 90


@pytest.fixture(scope="module")
def racing(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on PostgreSQL with as many connections as the server can spare (up to 50)."""
    engine = make_engine(postgres_url, pool_size=1)
    with engine.connect() as connection:
        spare = connection.execute(
            text("SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity")
        ).scalar_one()
    engine.dispose()
    connections = max(4, min(50, int(spare) - 15))  # leave room for the other test runs
    engine = make_engine(postgres_url, pool_size=(connections + 1) // 2)
    yield make_session_factory(engine)
    engine.dispose()


def race(
    factory: sessionmaker[Session], count: int, work: Callable[[Session, int], T]
) -> list[T | Exception]:
    """Runs `work(db, i)` in `count` threads released together; each commits or rolls back."""
    barrier = threading.Barrier(count)

    def one(index: int) -> T | Exception:
        barrier.wait(timeout=TIMEOUT_SECONDS)
        try:
            with unit_of_work(factory) as db:
                return work(db, index)
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one, index) for index in range(count)]
        return [future.result(timeout=TIMEOUT_SECONDS) for future in futures]


def kinds(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def _setup(
    factory: sessionmaker[Session], now: datetime, **fields: Any
) -> tuple[int, CouponCampaign, str, list[int]]:
    with unit_of_work(factory) as db:
        program, member = shop(db, now)
        others = [make_member(db, program=program, now=now).id for _ in range(4)]
        offer = campaign(db, program, now, **fields)
        (code,) = coupons.generate_codes(
            db, program_id=program.id, campaign_id=offer.id, count=1, now=now
        )
    return program.id, offer, code, [member.id, *others]


def _uses(factory: sessionmaker[Session], program_id: int, code: str, now: datetime) -> int:
    with factory() as db:
        state = coupons.inspect(db, program_id=program_id, code=code, now=now)
        return state.uses


@pytest.mark.postgres
def test_a_single_use_coupon_redeemed_50_times_at_once_is_used_exactly_once(
    racing: sessionmaker[Session], now: datetime
) -> None:
    program_id, _, code, _ = _setup(racing, now)

    def redeem(db: Session, index: int) -> Any:
        return coupons.redeem(
            db,
            program_id=program_id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id=f"till-{index}",
        )

    results = race(racing, 50, redeem)
    assert kinds(results) == Counter({"ok": 1, "CouponRejected": 49})
    assert _uses(racing, program_id, code, now) == 1


@pytest.mark.postgres
def test_a_coupon_limited_to_n_uses_redeemed_5n_times_at_once_is_used_exactly_n_times(
    racing: sessionmaker[Session], now: datetime
) -> None:
    limit = 6
    program_id, _, code, _ = _setup(racing, now, max_uses_per_code=limit)

    def redeem(db: Session, index: int) -> Any:
        return coupons.redeem(
            db,
            program_id=program_id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id=f"till-{index}",
        )

    results = race(racing, 5 * limit, redeem)
    assert kinds(results) == Counter({"ok": limit, "CouponRejected": 4 * limit})
    assert _uses(racing, program_id, code, now) == limit


@pytest.mark.postgres
def test_once_per_member_holds_when_the_member_tries_at_every_till_at_once(
    racing: sessionmaker[Session], now: datetime
) -> None:
    program_id, _, code, member_ids = _setup(
        racing, now, max_uses_per_code=None, once_per_member=True
    )

    def redeem(db: Session, index: int) -> Any:
        return coupons.redeem(
            db,
            program_id=program_id,
            code=code,
            basket=basket(),
            now=now,
            member_id=member_ids[index % len(member_ids)],
            purchase_external_id=f"till-{index}",
        )

    results = race(racing, 20, redeem)
    assert kinds(results) == Counter(
        {"ok": len(member_ids), "CouponRejected": 20 - len(member_ids)}
    )


@pytest.mark.postgres
def test_a_money_budget_is_never_overspent_by_concurrent_redemptions(
    racing: sessionmaker[Session], now: datetime
) -> None:
    """€45 of budget, €10 per redemption, 20 tills at once: exactly 4 discounts granted."""
    program_id, offer, code, _ = _setup(racing, now, max_uses_per_code=None, budget_money="45.00")

    def redeem(db: Session, index: int) -> Any:
        return coupons.redeem(
            db,
            program_id=program_id,
            code=code,
            basket=basket(),
            now=now,
            purchase_external_id=f"till-{index}",
        )

    results = race(racing, 20, redeem)
    assert kinds(results) == Counter({"ok": 4, "CouponRejected": 16})
    with racing() as db:
        assert budget.state(db, campaign=offer, now=now).money_spent == Decimal("40.00")


@pytest.mark.postgres
def test_a_points_budget_stops_concurrent_issuing_at_exactly_the_budget(
    racing: sessionmaker[Session], now: datetime
) -> None:
    program_id, offer, _, member_ids = _setup(
        racing, now, budget_points=500, points_per_code=100
    )  # the one generated code already spent 100

    def issue(db: Session, index: int) -> Any:
        return coupons.issue_code(
            db,
            program_id=program_id,
            campaign_id=offer.id,
            member_id=member_ids[0],
            now=now,
            source="reward",
        )

    results = race(racing, 20, issue)
    assert kinds(results) == Counter({"ok": 4, "BudgetExhausted": 16})
