"""Tier logic: qualification, windows, upgrades, period-end reviews and configuration checks."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from fideliza.core.errors import ValidationError
from fideliza.core.validation import field_path
from fideliza.tiers.domain import (
    ReviewOutcome,
    TierBasis,
    TierChange,
    TierLevel,
    TierPeriod,
    TierPolicy,
    TierReview,
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
from fideliza.tiers.schemas import TierConfig, TierPolicyConfig, parse_tier_config

D = Decimal


def level(code: str, rank: int, threshold: int | str, multiplier: str = "1") -> TierLevel:
    """Builds a level named after its code."""
    return TierLevel(
        code=code,
        name=code.title(),
        rank=rank,
        threshold=D(threshold),
        multiplier=D(multiplier),
    )


# Everyone qualifies for bronze.
LADDER = (
    level("bronze", 1, 0),
    level("silver", 2, 500, "1.25"),
    level("gold", 3, 1000, "1.5"),
    level("platinum", 4, 5000, "2"),
)
# Below 500 a member has no tier.
NO_FLOOR = (level("silver", 1, 500), level("gold", 2, 1000), level("platinum", 3, 5000))


def policy(
    period: str = "calendar_year",
    *,
    months: int | None = None,
    grace: int = 0,
    basis: str = "points",
) -> TierPolicy:
    return TierPolicy(
        basis=TierBasis(basis), period=TierPeriod(period), months=months, grace_periods=grace
    )


YEAR = policy()
QUARTER = policy("calendar_quarter")
MONTH = policy("calendar_month")
ROLLING_12 = policy("rolling_months", months=12)


# --- qualifying_level ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("0", "bronze"),
        ("499.99", "bronze"),
        ("500", "silver"),
        ("999", "silver"),
        ("1000", "gold"),
        ("4999.99", "gold"),
        ("5000", "platinum"),
        ("1000000", "platinum"),
    ],
)
def test_qualifying_level_is_the_highest_threshold_met(metric: str, expected: str) -> None:
    found = qualifying_level(LADDER, D(metric))
    assert found is not None
    assert found.code == expected


def test_qualifying_level_is_none_below_the_lowest_threshold() -> None:
    assert qualifying_level(NO_FLOOR, D("499.99")) is None
    assert qualifying_level(NO_FLOOR, D(0)) is None
    assert qualifying_level((), D(10**6)) is None


def test_qualifying_level_does_not_depend_on_the_order_of_the_levels() -> None:
    found = qualifying_level(tuple(reversed(LADDER)), D(1200))
    assert found is not None
    assert found.code == "gold"


def test_negative_metric_after_returns_qualifies_for_nothing_above_zero() -> None:
    assert qualifying_level(NO_FLOOR, D(-20)) is None
    assert qualifying_level(LADDER, D(-20)) is None


# --- current_window --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pol", "today", "first", "last"),
    [
        (YEAR, date(2024, 12, 31), date(2024, 1, 1), date(2024, 12, 1)),
        (YEAR, date(2025, 1, 1), date(2025, 1, 1), date(2025, 12, 1)),
        (QUARTER, date(2025, 1, 1), date(2025, 1, 1), date(2025, 3, 1)),
        (QUARTER, date(2025, 3, 31), date(2025, 1, 1), date(2025, 3, 1)),
        (QUARTER, date(2025, 4, 1), date(2025, 4, 1), date(2025, 6, 1)),
        (QUARTER, date(2025, 8, 15), date(2025, 7, 1), date(2025, 9, 1)),
        (QUARTER, date(2025, 12, 31), date(2025, 10, 1), date(2025, 12, 1)),
        (MONTH, date(2024, 2, 29), date(2024, 2, 1), date(2024, 2, 1)),
        (MONTH, date(2024, 12, 31), date(2024, 12, 1), date(2024, 12, 1)),
        (ROLLING_12, date(2025, 1, 15), date(2024, 2, 1), date(2025, 1, 1)),
        (ROLLING_12, date(2024, 12, 31), date(2024, 1, 1), date(2024, 12, 1)),
        (ROLLING_12, date(2025, 1, 1), date(2024, 2, 1), date(2025, 1, 1)),
        (policy("rolling_months", months=1), date(2025, 3, 9), date(2025, 3, 1), date(2025, 3, 1)),
        (
            policy("rolling_months", months=3),
            date(2025, 2, 28),
            date(2024, 12, 1),
            date(2025, 2, 1),
        ),
        (policy("rolling_months", months=24), date(2025, 6, 1), date(2023, 7, 1), date(2025, 6, 1)),
    ],
)
def test_current_window(pol: TierPolicy, today: date, first: date, last: date) -> None:
    assert current_window(pol, today) == (first, last)


# --- period_end ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pol", "today", "expected"),
    [
        (YEAR, date(2024, 1, 1), date(2024, 12, 31)),
        (YEAR, date(2024, 12, 31), date(2024, 12, 31)),
        (YEAR, date(2025, 1, 1), date(2025, 12, 31)),
        (QUARTER, date(2024, 2, 29), date(2024, 3, 31)),
        (QUARTER, date(2024, 4, 1), date(2024, 6, 30)),
        (QUARTER, date(2024, 9, 30), date(2024, 9, 30)),
        (QUARTER, date(2024, 10, 1), date(2024, 12, 31)),
        (MONTH, date(2024, 2, 1), date(2024, 2, 29)),  # leap year
        (MONTH, date(2025, 2, 1), date(2025, 2, 28)),
        (MONTH, date(2100, 2, 10), date(2100, 2, 28)),  # not a leap year (century)
        (MONTH, date(2000, 2, 10), date(2000, 2, 29)),  # a leap year (400)
        (MONTH, date(2025, 4, 30), date(2025, 4, 30)),
        (ROLLING_12, date(2024, 2, 3), date(2024, 2, 29)),
        (ROLLING_12, date(2024, 12, 31), date(2024, 12, 31)),
        (ROLLING_12, date(2025, 1, 1), date(2025, 1, 31)),
    ],
)
def test_period_end(pol: TierPolicy, today: date, expected: date) -> None:
    assert period_end(pol, today) == expected


# --- window_metric ---------------------------------------------------------------------------

BUCKETS = {
    date(2023, 12, 1): D(1000),
    date(2024, 1, 1): D(100),
    date(2024, 2, 1): D(200),
    date(2024, 3, 1): D(300),
    date(2024, 4, 1): D(400),
    date(2024, 12, 1): D("50.50"),
    date(2025, 1, 1): D(7),
}


@pytest.mark.parametrize(
    ("pol", "today", "expected"),
    [
        (YEAR, date(2024, 12, 31), D("1050.50")),
        (YEAR, date(2025, 1, 1), D(7)),
        (YEAR, date(2022, 6, 1), D(0)),
        (QUARTER, date(2024, 3, 31), D(600)),
        (QUARTER, date(2024, 4, 1), D(400)),
        (QUARTER, date(2024, 12, 31), D("50.50")),
        (MONTH, date(2024, 2, 29), D(200)),
        # Rolling 12 months across a year boundary: Feb 2024 .. Jan 2025.
        (ROLLING_12, date(2025, 1, 31), D("957.50")),
        # Jan 2024 .. Dec 2024: December 2023 has just left the window.
        (ROLLING_12, date(2024, 12, 31), D("1050.50")),
        # Jan 2023 .. Dec 2023.
        (ROLLING_12, date(2023, 12, 1), D(1000)),
        (policy("rolling_months", months=2), date(2024, 1, 10), D(1100)),
    ],
)
def test_window_metric_sums_the_buckets_of_the_window(
    pol: TierPolicy, today: date, expected: Decimal
) -> None:
    assert window_metric(pol, BUCKETS, today) == expected


def test_window_metric_of_no_buckets_is_zero() -> None:
    assert window_metric(YEAR, {}, date(2025, 5, 5)) == D(0)


def test_window_metric_refuses_a_bucket_not_keyed_by_the_first_of_a_month() -> None:
    with pytest.raises(ValidationError) as caught:
        window_metric(YEAR, {date(2024, 3, 15): D(1)}, date(2024, 3, 31))
    assert caught.value.field == "buckets[2024-03-15]"


# --- upgrade_on_activity ---------------------------------------------------------------------


def test_upgrade_as_soon_as_a_higher_level_is_met() -> None:
    change = upgrade_on_activity(LADDER, "bronze", D(1000))
    assert change is not None
    assert (change.from_code, change.to_code) == ("bronze", "gold")
    assert "Gold" in change.reason and "1000" in change.reason


def test_upgrade_may_skip_levels() -> None:
    change = upgrade_on_activity(LADDER, "silver", D(5000))
    assert change == TierChange(from_code="silver", to_code="platinum", reason=change.reason)


def test_upgrade_from_no_tier() -> None:
    change = upgrade_on_activity(NO_FLOOR, None, D(600))
    assert change is not None
    assert (change.from_code, change.to_code) == (None, "silver")


def test_no_upgrade_while_below_the_next_threshold() -> None:
    assert upgrade_on_activity(LADDER, "silver", D(999)) is None
    assert upgrade_on_activity(NO_FLOOR, None, D(499)) is None


def test_activity_never_downgrades() -> None:
    assert upgrade_on_activity(LADDER, "platinum", D(0)) is None
    assert upgrade_on_activity(LADDER, "gold", D(600)) is None
    assert upgrade_on_activity(NO_FLOOR, "gold", D(0)) is None


def test_no_change_when_already_at_the_qualifying_level() -> None:
    assert upgrade_on_activity(LADDER, "gold", D(1000)) is None


def test_unknown_current_code_is_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        upgrade_on_activity(LADDER, "diamond", D(0))
    assert caught.value.field == "current_code"
    with pytest.raises(ValidationError):
        find_level(LADDER, "diamond")
    assert find_level(LADDER, None) is None


# --- review_at_period_end --------------------------------------------------------------------


def review(
    current: str | None, metric: int | str, grace_used: int = 0, *, grace: int = 0
) -> TierReview:
    return review_at_period_end(policy(grace=grace), LADDER, current, D(metric), grace_used)


def test_review_keeps_a_level_still_met_and_resets_grace() -> None:
    result = review("gold", 1200, grace_used=1, grace=2)
    assert result.outcome is ReviewOutcome.KEEP
    assert (result.from_code, result.to_code, result.grace_used) == ("gold", "gold", 0)
    assert result.change is None


def test_review_upgrades() -> None:
    result = review("silver", 1000, grace_used=1, grace=2)
    assert result.outcome is ReviewOutcome.UPGRADE
    assert (result.to_code, result.grace_used) == ("gold", 0)
    assert result.change == TierChange("silver", "gold", result.reason)


def test_review_without_grace_downgrades_at_the_first_failing_period() -> None:
    result = review("gold", 600)
    assert result.outcome is ReviewOutcome.DOWNGRADE
    assert (result.from_code, result.to_code, result.grace_used) == ("gold", "silver", 0)
    assert "600" in result.reason and "Gold" in result.reason
    assert result.change == TierChange("gold", "silver", result.reason)


def test_review_downgrade_goes_to_the_qualifying_level_even_several_levels_down() -> None:
    result = review("platinum", 10)
    assert result.outcome is ReviewOutcome.DOWNGRADE
    assert result.to_code == "bronze"


def test_review_downgrade_may_leave_the_member_without_a_tier() -> None:
    result = review_at_period_end(YEAR, NO_FLOOR, "gold", D(100), 0)
    assert result.outcome is ReviewOutcome.DOWNGRADE
    assert (result.to_code, result.grace_used) == (None, 0)
    assert "no tier" in result.reason


def test_review_with_one_grace_period() -> None:
    first = review("gold", 600, grace_used=0, grace=1)
    assert first.outcome is ReviewOutcome.GRACE
    assert (first.to_code, first.grace_used) == ("gold", 1)
    assert first.change is None
    assert "1 of 1" in first.reason

    second = review("gold", 600, grace_used=first.grace_used, grace=1)
    assert second.outcome is ReviewOutcome.DOWNGRADE
    assert (second.to_code, second.grace_used) == ("silver", 0)


def test_review_with_two_grace_periods() -> None:
    outcomes = []
    code: str | None = "platinum"
    grace_used = 0
    for _ in range(3):
        result = review(code, 700, grace_used=grace_used, grace=2)
        outcomes.append((result.outcome, result.to_code, result.grace_used))
        code, grace_used = result.to_code, result.grace_used
    assert outcomes == [
        (ReviewOutcome.GRACE, "platinum", 1),
        (ReviewOutcome.GRACE, "platinum", 2),
        (ReviewOutcome.DOWNGRADE, "silver", 0),
    ]


def test_requalifying_resets_grace_so_failures_must_be_consecutive() -> None:
    fail_1 = review("gold", 0, grace_used=0, grace=1)
    assert (fail_1.outcome, fail_1.grace_used) == (ReviewOutcome.GRACE, 1)
    met = review("gold", 1000, grace_used=fail_1.grace_used, grace=1)
    assert (met.outcome, met.grace_used) == (ReviewOutcome.KEEP, 0)
    fail_2 = review("gold", 0, grace_used=met.grace_used, grace=1)
    assert (fail_2.outcome, fail_2.to_code) == (ReviewOutcome.GRACE, "gold")


def test_review_after_grace_was_shortened_downgrades() -> None:
    # The program cut its grace from 3 to 1 while the member had used 2.
    result = review("gold", 0, grace_used=2, grace=1)
    assert result.outcome is ReviewOutcome.DOWNGRADE


def test_review_of_a_member_without_tier() -> None:
    kept = review_at_period_end(YEAR, NO_FLOOR, None, D(10), 0)
    assert (kept.outcome, kept.to_code, kept.grace_used, kept.change) == (
        ReviewOutcome.KEEP,
        None,
        0,
        None,
    )
    up = review_at_period_end(YEAR, NO_FLOOR, None, D(1000), 0)
    assert (up.outcome, up.to_code) == (ReviewOutcome.UPGRADE, "gold")


def test_review_refuses_negative_grace_used() -> None:
    with pytest.raises(ValidationError) as caught:
        review("gold", 1000, grace_used=-1)
    assert caught.value.field == "grace_used"


def test_review_of_a_closed_rolling_month() -> None:
    pol = policy("rolling_months", months=12, grace=1, basis="spend")
    buckets = {date(2024, 1, 1): D(600), date(2024, 6, 1): D(500)}
    # At the end of January 2025, January 2024 has left the 12-month window.
    closing = date(2025, 1, 31)
    metric = window_metric(pol, buckets, closing)
    assert metric == D(500)
    result = review_at_period_end(pol, LADDER, "gold", metric, 0)
    assert (result.outcome, result.to_code, result.grace_used) == (ReviewOutcome.GRACE, "gold", 1)
    assert "spend 500" in result.reason


# --- points_to_next_tier ---------------------------------------------------------------------


def test_points_to_next_tier() -> None:
    assert points_to_next_tier(LADDER, "bronze", D(120)) == (LADDER[1], D(380))
    assert points_to_next_tier(LADDER, "silver", D("999.50")) == (LADDER[2], D("0.50"))
    assert points_to_next_tier(NO_FLOOR, None, D(0)) == (NO_FLOOR[0], D(500))


def test_points_to_next_tier_is_none_at_the_top() -> None:
    assert points_to_next_tier(LADDER, "platinum", D(0)) is None


def test_points_to_next_tier_is_never_negative() -> None:
    # Qualified for gold already, but a calendar policy only moves the member at the review.
    assert points_to_next_tier(LADDER, "bronze", D(2000)) == (LADDER[1], D(0))


def test_points_to_next_tier_counts_from_the_current_level_during_grace() -> None:
    assert points_to_next_tier(LADDER, "gold", D(600)) == (LADDER[3], D(4400))


# --- domain validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"code": ""}, "code"),
        ({"name": "  "}, "name"),
        ({"rank": True}, "rank"),
        ({"threshold": D(-1)}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": D("NaN")}, "threshold"),
        ({"multiplier": D("0.99")}, "multiplier"),
        ({"benefits": ["lounge"]}, "benefits"),
    ],
)
def test_tier_level_refuses_bad_fields(kwargs: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"code": "gold", "name": "Gold", "rank": 1, "threshold": D(1)}
    values.update(kwargs)
    with pytest.raises(ValidationError) as caught:
        TierLevel(**values)
    assert caught.value.field == field


def test_tier_level_accepts_integers_as_decimals() -> None:
    gold = TierLevel(code="gold", name="Gold", rank=3, threshold=D(1000), multiplier=2)
    assert gold.multiplier == D(2) and isinstance(gold.multiplier, Decimal)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"period": "rolling_months"}, "policy.months"),
        ({"period": "rolling_months", "months": 0}, "policy.months"),
        ({"period": "rolling_months", "months": 121}, "policy.months"),
        ({"period": "calendar_year", "months": 12}, "policy.months"),
        ({"grace_periods": -1}, "policy.grace_periods"),
        ({"basis": "visits"}, "policy.basis"),
        ({"period": "weekly"}, "policy.period"),
    ],
)
def test_tier_policy_refuses_bad_fields(kwargs: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"basis": "points", "period": "calendar_year"}
    values.update(kwargs)
    with pytest.raises(ValidationError) as caught:
        TierPolicy(**values)
    assert caught.value.field == field


def test_tier_policy_coerces_strings_to_enums() -> None:
    pol = TierPolicy(basis="spend", period="rolling_months", months=6)
    assert pol.basis is TierBasis.SPEND and pol.period is TierPeriod.ROLLING_MONTHS


@pytest.mark.parametrize(
    ("levels", "field", "words"),
    [
        ((), "levels", "at least one"),
        ((level("gold", 1, 0), level("gold", 2, 10)), "levels[1].code", "duplicates"),
        ((level("a", 1, 0), level("b", 1, 10)), "levels[1].rank", "duplicates"),
        ((level("a", 1, 0), level("b", 2, 0)), "levels[1].threshold", "greater than 0"),
        # Out of rank order in the list: the higher rank (index 0) has the lower threshold.
        ((level("b", 2, 10), level("a", 1, 100)), "levels[0].threshold", "greater than 100"),
    ],
)
def test_validate_levels(levels: tuple[TierLevel, ...], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_levels(levels)
    assert caught.value.field == field
    assert words in caught.value.message


def test_validate_levels_wants_whole_thresholds_for_counted_bases() -> None:
    levels = (level("a", 1, 0), level("b", 2, "10.5"))
    validate_levels(levels, basis=TierBasis.SPEND)
    for basis in (TierBasis.POINTS, TierBasis.PURCHASES):
        with pytest.raises(ValidationError) as caught:
            validate_levels(levels, basis=basis)
        assert caught.value.field == "levels[1].threshold"


def test_validate_levels_accepts_a_ladder_in_any_order() -> None:
    validate_levels(LADDER)
    validate_levels(tuple(reversed(LADDER)))


# --- configuration schema --------------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "levels": [
        {"code": "bronze", "name": "Bronze", "rank": 1, "threshold": 0},
        {"code": "silver", "name": "Silver", "rank": 2, "threshold": "500", "multiplier": 1.25},
        {
            "code": "gold",
            "name": "Gold",
            "rank": 3,
            "threshold": 1000,
            "multiplier": "1.5",
            "benefits": {"lounge": True, "free_shipping": True},
        },
    ],
    "policy": {"basis": "points", "period": "rolling_months", "months": 12, "grace_periods": 1},
}


def with_change(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """Returns a copy of CONFIG with the value at `path` replaced (or removed if ...)."""
    raw = copy.deepcopy(CONFIG)
    target: Any = raw
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


def test_config_parses_into_domain_objects() -> None:
    levels, pol = parse_tier_config(CONFIG).to_domain()
    assert [lv.code for lv in levels] == ["bronze", "silver", "gold"]
    assert levels[1].multiplier == D("1.25")
    assert levels[2].benefits == {"lounge": True, "free_shipping": True}
    assert pol == TierPolicy(TierBasis.POINTS, TierPeriod.ROLLING_MONTHS, 12, 1)


def test_config_round_trips_through_json_and_domain() -> None:
    config = parse_tier_config(CONFIG)
    assert parse_tier_config(config.model_dump_json()) == config
    assert TierConfig.from_domain(*config.to_domain()) == config


def test_config_to_domain_sorts_levels_by_rank() -> None:
    raw = copy.deepcopy(CONFIG)
    raw["levels"].reverse()
    levels, _ = parse_tier_config(raw).to_domain()
    assert [lv.rank for lv in levels] == [1, 2, 3]


def test_calendar_policy_needs_no_months() -> None:
    raw = with_change(("policy",), {"basis": "spend", "period": "calendar_quarter"})
    raw["levels"][1]["threshold"] = "499.99"
    _, pol = parse_tier_config(raw).to_domain()
    assert (pol.months, pol.grace_periods) == (None, 0)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("levels",), [], "levels"),
        (("levels", 1, "code"), "bronze", "levels[1].code"),
        (("levels", 1, "code"), "has space", "levels[1].code"),
        (("levels", 2, "rank"), 2, "levels[2].rank"),
        (("levels", 2, "rank"), "3", "levels[2].rank"),
        (("levels", 2, "threshold"), 500, "levels[2].threshold"),
        (("levels", 2, "threshold"), "-1", "levels[2].threshold"),
        (("levels", 2, "threshold"), "abc", "levels[2].threshold"),
        (("levels", 2, "threshold"), "1000.5", "levels[2].threshold"),  # points are whole
        (("levels", 1, "multiplier"), "0.5", "levels[1].multiplier"),
        (("levels", 1, "multiplier"), "1.00001", "levels[1].multiplier"),  # NUMERIC(18, 4)
        (("levels", 2, "threshold"), "1" * 19, "levels[2].threshold"),
        (("levels", 1, "name"), ..., "levels[1].name"),
        (("levels", 1, "colour"), "silver", "levels[1].colour"),
        (("levels", 2, "benefits"), ["lounge"], "levels[2].benefits"),
        (("policy", "basis"), "visits", "policy.basis"),
        (("policy", "period"), "weekly", "policy.period"),
        (("policy", "months"), 0, "policy.months"),
        (("policy", "months"), ..., "policy.months"),
        (("policy", "months"), 12.5, "policy.months"),
        (("policy", "grace_periods"), -1, "policy.grace_periods"),
        (("policy", "extra"), 1, "policy.extra"),
        (("policy",), ..., "policy"),
        (("unknown",), 1, "unknown"),
    ],
)
def test_invalid_config_names_the_field(
    path: tuple[str | int, ...], value: Any, field: str
) -> None:
    raw = with_change(path, value)
    with pytest.raises(ValidationError) as caught:
        parse_tier_config(raw)
    assert caught.value.field == field
    assert caught.value.message
    # The Pydantic model itself (as FastAPI uses it) locates the error at the same place.
    with pytest.raises(pydantic.ValidationError) as located:
        TierConfig.model_validate(raw)
    assert field_path(tuple(located.value.errors()[0]["loc"])) == field


def test_calendar_policy_with_months_names_the_field() -> None:
    raw = with_change(("policy",), {"basis": "points", "period": "calendar_year", "months": 12})
    with pytest.raises(ValidationError) as caught:
        parse_tier_config(raw)
    assert caught.value.field == "policy.months"
    assert "rolling_months" in caught.value.message
    with pytest.raises(pydantic.ValidationError) as located:
        TierPolicyConfig.model_validate(raw["policy"])
    assert located.value.errors()[0]["loc"] == ("months",)


def test_unknown_and_missing_fields_get_plain_messages() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_tier_config(with_change(("levels", 1, "colour"), "silver"))
    assert caught.value.message == "is not a known field"
    with pytest.raises(ValidationError) as caught:
        parse_tier_config(with_change(("levels", 1, "name"), ...))
    assert caught.value.message == "is required"


def test_invalid_json_text_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        parse_tier_config("{not json")
