"""Tier invariants: activity never lowers a tier, grace is honoured, qualification is monotone."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from fideliza.tiers.domain import (
    ReviewOutcome,
    TierBasis,
    TierLevel,
    TierPeriod,
    TierPolicy,
    current_window,
    find_level,
    period_end,
    points_to_next_tier,
    qualifying_level,
    review_at_period_end,
    upgrade_on_activity,
    validate_levels,
    window_metric,
)


@st.composite
def ladders(draw: st.DrawFn) -> tuple[TierLevel, ...]:
    """A valid ladder of 1 to 6 levels, listed in any order."""
    size = draw(st.integers(min_value=1, max_value=6))
    ranks = sorted(draw(st.sets(st.integers(-3, 30), min_size=size, max_size=size)))
    cents = sorted(draw(st.sets(st.integers(0, 1_000_000), min_size=size, max_size=size)))
    levels = [
        TierLevel(
            code=f"l{rank}",
            name=f"Level {rank}",
            rank=rank,
            threshold=Decimal(amount).scaleb(-2),
            multiplier=Decimal(1) + Decimal(index) / 4,
        )
        for index, (rank, amount) in enumerate(zip(ranks, cents, strict=True))
    ]
    return tuple(draw(st.permutations(levels)))


metrics = st.integers(-10_000, 1_200_000).map(lambda cents: Decimal(cents).scaleb(-2))


@st.composite
def policies(draw: st.DrawFn) -> TierPolicy:
    period = draw(st.sampled_from(TierPeriod))
    rolling = period is TierPeriod.ROLLING_MONTHS
    return TierPolicy(
        basis=draw(st.sampled_from(TierBasis)),
        period=period,
        months=draw(st.integers(1, 36)) if rolling else None,
        grace_periods=draw(st.integers(0, 4)),
    )


days = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))


def rank_of(level: TierLevel | None) -> float:
    return float("-inf") if level is None else level.rank


@st.composite
def ladder_and_code(draw: st.DrawFn) -> tuple[tuple[TierLevel, ...], str | None]:
    levels = draw(ladders())
    return levels, draw(st.sampled_from([None, *(level.code for level in levels)]))


@given(ladders())
def test_generated_ladders_are_valid(levels: tuple[TierLevel, ...]) -> None:
    validate_levels(levels)


@given(ladders(), metrics, metrics)
def test_qualifying_level_is_monotone_in_the_metric(
    levels: tuple[TierLevel, ...], a: Decimal, b: Decimal
) -> None:
    low, high = min(a, b), max(a, b)
    assert rank_of(qualifying_level(levels, low)) <= rank_of(qualifying_level(levels, high))


@given(ladders(), metrics)
def test_qualifying_level_meets_its_threshold_and_the_next_is_not_met(
    levels: tuple[TierLevel, ...], metric: Decimal
) -> None:
    found = qualifying_level(levels, metric)
    higher = [lv for lv in levels if lv.rank > rank_of(found)]
    if found is not None:
        assert found.threshold <= metric
    assert all(lv.threshold > metric for lv in higher)


@given(ladder_and_code(), metrics)
def test_upgrade_on_activity_never_lowers_the_rank(
    ladder: tuple[tuple[TierLevel, ...], str | None], metric: Decimal
) -> None:
    levels, code = ladder
    change = upgrade_on_activity(levels, code, metric)
    if change is None:
        return
    assert change.from_code == code
    assert rank_of(find_level(levels, change.to_code)) > rank_of(find_level(levels, code))
    assert change.to_code == getattr(qualifying_level(levels, metric), "code", None)


@given(policies(), ladder_and_code(), metrics, st.integers(0, 6))
def test_review_never_downgrades_before_grace_is_exhausted(
    policy: TierPolicy,
    ladder: tuple[tuple[TierLevel, ...], str | None],
    metric: Decimal,
    grace_used: int,
) -> None:
    levels, code = ladder
    result = review_at_period_end(policy, levels, code, metric, grace_used)
    before = rank_of(find_level(levels, code))
    after = rank_of(find_level(levels, result.to_code))
    if after < before:
        assert result.outcome is ReviewOutcome.DOWNGRADE
        assert grace_used >= policy.grace_periods
    if grace_used < policy.grace_periods:
        assert after >= before
    # A tier changes only to the level the closed period's metric qualifies for.
    if result.to_code != code:
        assert result.to_code == getattr(qualifying_level(levels, metric), "code", None)
    assert 0 <= result.grace_used <= policy.grace_periods
    assert (result.grace_used > 0) == (result.outcome is ReviewOutcome.GRACE)


@given(policies(), ladders(), st.lists(metrics, min_size=1, max_size=12))
def test_downgrade_comes_exactly_after_grace_periods_consecutive_failures(
    policy: TierPolicy, levels: tuple[TierLevel, ...], period_metrics: list[Decimal]
) -> None:
    top = max(levels, key=lambda level: level.rank)
    code: str | None = top.code
    grace_used = 0
    failing = 0
    for metric in period_metrics:
        held = find_level(levels, code)
        meets = rank_of(qualifying_level(levels, metric)) >= rank_of(held)
        failing = 0 if meets else failing + 1
        result = review_at_period_end(policy, levels, code, metric, grace_used)
        downgraded = result.outcome is ReviewOutcome.DOWNGRADE
        assert downgraded == (failing > policy.grace_periods)
        if downgraded:
            failing = 0
        code, grace_used = result.to_code, result.grace_used
        assert grace_used == failing


@given(ladder_and_code(), metrics)
def test_points_to_next_tier_names_the_next_rank_and_a_non_negative_gap(
    ladder: tuple[tuple[TierLevel, ...], str | None], metric: Decimal
) -> None:
    levels, code = ladder
    current_rank = rank_of(find_level(levels, code))
    result = points_to_next_tier(levels, code, metric)
    above = [lv for lv in levels if lv.rank > current_rank]
    if result is None:
        assert not above
        return
    following, missing = result
    assert following == min(above, key=lambda lv: lv.rank)
    assert missing >= 0
    assert rank_of(qualifying_level(levels, metric + missing)) >= following.rank


@given(policies(), days)
def test_window_and_period_end_contain_today(policy: TierPolicy, today: date) -> None:
    first, last = current_window(policy, today)
    end = period_end(policy, today)
    assert first.day == 1 and last.day == 1
    assert first <= today.replace(day=1) <= last
    assert today <= end and (end.year, end.month) == (last.year, last.month)
    assert period_end(policy, end) == end
    # The day after a period's end belongs to the next period.
    following = end + timedelta(days=1)
    assert period_end(policy, following) > end
    if policy.period is not TierPeriod.ROLLING_MONTHS:
        assert current_window(policy, following)[0] == following


@given(policies(), days, st.dictionaries(days.map(lambda d: d.replace(day=1)), metrics))
def test_window_metric_sums_exactly_the_buckets_in_the_window(
    policy: TierPolicy, today: date, buckets: dict[date, Decimal]
) -> None:
    first, last = current_window(policy, today)
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    assert (
        months
        == {
            TierPeriod.CALENDAR_YEAR: 12,
            TierPeriod.CALENDAR_QUARTER: 3,
            TierPeriod.CALENDAR_MONTH: 1,
            TierPeriod.ROLLING_MONTHS: policy.months,
        }[policy.period]
    )
    expected = sum((v for k, v in buckets.items() if first <= k <= last), Decimal(0))
    assert window_metric(policy, buckets, today) == expected
