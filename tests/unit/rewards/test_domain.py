"""Rewards, pure: prices by tier, eligibility with its reason, periods, the next reward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.rewards.domain import (
    Offer,
    Period,
    Refusal,
    Terms,
    Usage,
    Verdict,
    judge,
    next_within_reach,
    period_key,
    period_window,
)

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
MADRID = ZoneInfo("Europe/Madrid")


def test_a_tier_price_applies_to_its_tier_only() -> None:
    terms = Terms(points_cost=300, tier_costs={"gold": 200})
    assert (terms.cost_for("gold"), terms.cost_for("silver"), terms.cost_for(None)) == (
        200,
        300,
        300,
    )


@pytest.mark.parametrize(
    ("terms", "usage", "tier", "refusal"),
    [
        (Terms(points_cost=1), Usage(), None, None),
        (Terms(points_cost=1, active=False), Usage(), None, Refusal.INACTIVE),
        (Terms(points_cost=1, available_from=NOW + timedelta(seconds=1)), Usage(), None,
         Refusal.NOT_YET_AVAILABLE),
        (Terms(points_cost=1, available_from=NOW), Usage(), None, None),
        (Terms(points_cost=1, available_until=NOW), Usage(), None, Refusal.NO_LONGER_AVAILABLE),
        (Terms(points_cost=1, eligible_tiers=("gold",)), Usage(), "silver", Refusal.TIER),
        (Terms(points_cost=1, eligible_tiers=("gold",)), Usage(), "gold", None),
        (Terms(points_cost=1, stock=0), Usage(), None, Refusal.OUT_OF_STOCK),
        (Terms(points_cost=1, stock=1), Usage(), None, None),
        (Terms(points_cost=1, limit_per_member=2), Usage(member_redemptions=2), None,
         Refusal.MEMBER_LIMIT),
        (Terms(points_cost=1, limit_per_member=2), Usage(member_redemptions=1), None, None),
        (Terms(points_cost=10, budget_points=100), Usage(budget_points_spent=90), None, None),
        (Terms(points_cost=10, budget_points=100), Usage(budget_points_spent=91), None,
         Refusal.BUDGET_SPENT),
        # The member's own price is what the budget pays.
        (Terms(points_cost=20, tier_costs={"gold": 10}, budget_points=100),
         Usage(budget_points_spent=90), "gold", None),
        (Terms(points_cost=1, value=Decimal("5"), budget_money=Decimal("10")),
         Usage(budget_money_spent=Decimal("5.01")), None, Refusal.BUDGET_SPENT),
    ],
)  # fmt: skip
def test_judge_gives_the_first_reason_to_refuse(
    terms: Terms, usage: Usage, tier: str | None, refusal: Refusal | None
) -> None:
    verdict = judge(terms, tier_code=tier, now=NOW, usage=usage)
    assert verdict.refusal == refusal
    assert verdict.eligible == (refusal is None)
    assert (verdict.reason is None) == (refusal is None)


def test_reasons_are_sentences_a_member_understands() -> None:
    tier = judge(Terms(points_cost=1, eligible_tiers=("gold", "vip")), tier_code=None, now=NOW,
                 usage=Usage())  # fmt: skip
    assert tier.reason == "the reward is for tiers gold, vip; the member has no tier"
    limit = judge(
        Terms(points_cost=1, limit_per_member=1, limit_period=Period.WEEK),
        tier_code=None,
        now=NOW,
        usage=Usage(member_redemptions=1),
    )
    assert limit.reason == "the member has redeemed it 1 times; the limit is 1 per week"


def test_periods_are_local_calendar_periods() -> None:
    # 00:30 on 1 April in Madrid is 22:30 UTC on 31 March.
    late = datetime(2025, 3, 31, 22, 30, tzinfo=UTC)
    assert period_key(Period.MONTH, late, MADRID) == "2025-04"
    assert period_key(Period.DAY, late, MADRID) == "2025-04-01"
    assert period_key(Period.WEEK, late, MADRID) == "2025-W14"
    assert period_key(Period.YEAR, late, MADRID) == "2025"
    assert period_key(Period.EVER, late, MADRID) == "ever"
    start, end = period_window(Period.MONTH, late, MADRID)
    assert start == datetime(2025, 3, 31, 22, 0, tzinfo=UTC)  # summer time began on 30 March
    assert end == datetime(2025, 4, 30, 22, 0, tzinfo=UTC)
    assert period_window(Period.EVER, late, MADRID) == (None, None)


@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    period=st.sampled_from([Period.DAY, Period.WEEK, Period.MONTH, Period.YEAR]),
)
def test_a_period_window_holds_its_moment_and_one_key(moment: datetime, period: Period) -> None:
    start, end = period_window(period, moment, MADRID)
    assert start is not None and end is not None
    assert start <= moment < end
    assert period_key(period, start, MADRID) == period_key(period, moment, MADRID)
    assert period_key(period, end, MADRID) != period_key(period, moment, MADRID)


def _offer(reward_id: int, cost: int, available: int, refusal: Refusal | None = None) -> Offer:
    verdict = Verdict(refusal, "no") if refusal else Verdict()
    return Offer(reward_id=reward_id, points_cost=cost, verdict=verdict, points_available=available)


def test_the_next_reward_is_the_closest_eligible_one_not_yet_affordable() -> None:
    offers = [
        _offer(1, 100, 500),  # affordable already
        _offer(2, 520, 500, Refusal.TIER),  # closest, but not for this member
        _offer(3, 700, 500),
        _offer(4, 600, 500),
    ]
    found = next_within_reach(offers)
    assert found is not None and (found.reward_id, found.points_missing) == (4, 100)
    assert next_within_reach(offers[:2]) is None


@given(
    costs=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=20),
    available=st.integers(min_value=0, max_value=10_000),
)
def test_the_next_reward_needs_the_fewest_points(costs: list[int], available: int) -> None:
    offers = [_offer(index, cost, available) for index, cost in enumerate(costs)]
    found = next_within_reach(offers)
    missing = [cost - available for cost in costs if cost > available]
    if not missing:
        assert found is None
    else:
        assert found is not None and found.points_missing == min(missing)
        assert not found.affordable
