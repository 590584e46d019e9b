"""The rules evaluator: every condition, action, cap and rounding, with hand-computed points."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fideliza.core.errors import ValidationError
from fideliza.core.points import Rounding
from fideliza.purchases.domain import Item
from fideliza.rules.domain import (
    Activity,
    CompiledRule,
    MemberContext,
    Posting,
    ProgramContext,
    RuleCheck,
    RuleUsage,
    compile_rule,
    evaluate,
    explain,
)
from fideliza.rules.schemas import parse_rule_definition

MADRID = ZoneInfo("Europe/Madrid")
PROGRAM = ProgramContext(timezone=MADRID)
# Tuesday 4 March 2025, 10:00 UTC = 11:00 in Madrid (CET, UTC+1).
TUESDAY = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
PER_EURO = {"type": "points_per_amount", "points": 1, "per": "1.00"}


def rule(rule_id: int = 1, version: int = 1, **fields: Any) -> CompiledRule:
    """A compiled rule: 1 pt per 1.00 on purchases unless `fields` say otherwise."""
    data: dict[str, Any] = {"name": f"Rule {rule_id}", "actions": [PER_EURO]}
    data.update(fields)
    return compile_rule(rule_id, version, parse_rule_definition(data))


def purchase(amount: str = "23.50", at: datetime = TUESDAY, **fields: Any) -> Activity:
    return Activity(kind="purchase", occurred_at=at, amount=Decimal(amount), **fields)


def item(sku: str, quantity: int, unit_price: str, category: str | None = None) -> Item:
    return Item(sku=sku, quantity=quantity, unit_price=Decimal(unit_price), category=category)


def member(**fields: Any) -> MemberContext:
    return MemberContext(**fields)


def run(
    activity: Activity,
    *rules: CompiledRule,
    who: MemberContext | None = None,
    program: ProgramContext = PROGRAM,
    usage: dict[int, RuleUsage] | None = None,
) -> list[Posting]:
    return evaluate(activity, who or member(), program, list(rules), usage or {})


def points(postings: list[Posting]) -> list[tuple[int | None, int]]:
    """(rule_id, points) per posting; rule_id None is the tier bonus."""
    return [(p.rule_id, p.points) for p in postings]


def earned(activity: Activity, *rules: CompiledRule, **kwargs: Any) -> int:
    return sum(p.points for p in run(activity, *rules, **kwargs))


BASKET = (
    item("ESP", 2, "2.50", "coffee"),  # 5.00
    item("CAKE", 1, "3.50", "food"),  # 3.50
    item("BEANS", 1, "15.00", "coffee"),  # 15.00
)  # 23.50 in all


# --- activity kinds ---


def test_a_purchase_rule_ignores_custom_events_and_the_reverse() -> None:
    on_purchase = rule(1)
    on_visit = rule(2, activity="store_visit", actions=[{"type": "fixed_bonus", "points": 10}])
    visit = Activity(kind="store_visit", occurred_at=TUESDAY)

    assert points(run(purchase(), on_purchase, on_visit)) == [(1, 23)]
    assert points(run(visit, on_purchase, on_visit)) == [(2, 10)]


def test_a_custom_event_matches_its_event_attributes() -> None:
    review = rule(
        1,
        activity="review_written",
        conditions={"event_attributes": {"stars": [4, 5], "verified": True}},
        actions=[{"type": "fixed_bonus", "points": 50}],
    )

    def review_of(**attributes: Any) -> Activity:
        return Activity(kind="review_written", occurred_at=TUESDAY, attributes=attributes)

    assert earned(review_of(stars=5, verified=True), review) == 50
    assert earned(review_of(stars=4, verified=True), review) == 50
    assert earned(review_of(stars=3, verified=True), review) == 0
    assert earned(review_of(stars=5, verified=1), review) == 0  # 1 is not True
    assert earned(review_of(stars=5), review) == 0


# --- amount conditions ---


def test_min_amount_is_inclusive() -> None:
    big_baskets = rule(conditions={"min_amount": "20.00"})

    assert earned(purchase("19.99"), big_baskets) == 0
    assert earned(purchase("20.00"), big_baskets) == 20


def test_max_amount_is_inclusive() -> None:
    small_baskets = rule(conditions={"max_amount": "500.00"})

    assert earned(purchase("500.00"), small_baskets) == 500
    assert earned(purchase("500.01"), small_baskets) == 0


def test_amount_thresholds_compare_the_matching_items_total_when_items_are_filtered() -> None:
    coffee_over_20 = rule(
        conditions={"min_amount": "20.00", "items": {"include_categories": ["coffee"]}}
    )
    coffee_over_10 = rule(
        conditions={"min_amount": "10.00", "items": {"include_categories": ["coffee"]}}
    )

    # The basket is 23.50 but only 20.00 of it is coffee... and 20.00 is enough.
    assert earned(purchase(items=BASKET), coffee_over_20) == 20
    # Without the beans, coffee is 5.00 of a 23.50 basket: below 10.00.
    small = (item("ESP", 2, "2.50", "coffee"), item("CAKE", 1, "18.50", "food"))
    assert earned(purchase(items=small), coffee_over_10) == 0


# --- item conditions ---


@pytest.mark.parametrize(
    ("items_filter", "expected"),
    [
        ({"include_skus": ["ESP"]}, 5),  # 2 × 2.50
        ({"include_skus": ["ESP", "CAKE"]}, 8),  # 5.00 + 3.50 = 8.50 → 8
        ({"include_categories": ["coffee"]}, 20),  # 5.00 + 15.00
        ({"include_categories": ["food"], "include_skus": ["ESP"]}, 8),  # union: 3.50 + 5.00
        ({"exclude_skus": ["BEANS"]}, 8),  # everything but the beans
        ({"exclude_categories": ["coffee"]}, 3),  # the cake only
        ({"include_categories": ["coffee"], "exclude_skus": ["BEANS"]}, 5),  # exclusion wins
        ({}, 23),  # an empty filter: every line, so the items' total
        ({"include_skus": ["TEA"]}, 0),  # no line matches: the rule does not apply
    ],
)
def test_points_per_amount_counts_only_matching_lines(
    items_filter: dict[str, Any], expected: int
) -> None:
    assert earned(purchase(items=BASKET), rule(conditions={"items": items_filter})) == expected


def test_lines_without_a_category_match_sku_filters_only() -> None:
    uncategorised = (item("ESP", 1, "2.00"), item("X", 1, "9.00"))

    assert earned(purchase(items=uncategorised), rule(conditions={"items": {}})) == 11
    assert (
        earned(
            purchase(items=uncategorised),
            rule(conditions={"items": {"exclude_categories": ["coffee"]}}),
        )
        == 11
    )
    assert (
        earned(
            purchase(items=uncategorised),
            rule(conditions={"items": {"include_categories": ["coffee"]}}),
        )
        == 0
    )


def test_min_quantity_counts_the_matching_units() -> None:
    two_coffees = rule(
        conditions={"items": {"include_categories": ["coffee"], "min_quantity": 3}},
        actions=[{"type": "fixed_bonus", "points": 30}],
    )

    assert earned(purchase(items=BASKET), two_coffees) == 30  # 2 espressos + 1 beans
    assert earned(purchase(items=BASKET[:2]), two_coffees) == 0  # 2 espressos only


def test_an_items_filter_never_matches_a_basket_sent_without_lines() -> None:
    assert earned(purchase("23.50"), rule(conditions={"items": {"exclude_skus": ["X"]}})) == 0


# --- channel, store, tier, member ---


def test_channels_and_stores() -> None:
    in_store = rule(conditions={"channels": ["store", "app"], "stores": ["S1"]})

    assert earned(purchase(channel="store", store="S1"), in_store) == 23
    assert earned(purchase(channel="app", store="S1"), in_store) == 23
    assert earned(purchase(channel="web", store="S1"), in_store) == 0
    assert earned(purchase(channel="store", store="S2"), in_store) == 0
    assert earned(purchase(store="S1"), in_store) == 0  # no channel sent


def test_tiers() -> None:
    gold_only = rule(conditions={"tiers": ["GOLD"]})

    assert earned(purchase(), gold_only, who=member(tier_code="GOLD")) == 23
    assert earned(purchase(), gold_only, who=member(tier_code="SILVER")) == 0
    assert earned(purchase(), gold_only, who=member()) == 0


def test_member_attributes_equal_or_in_list() -> None:
    students_in_madrid = rule(
        conditions={"attributes": {"segment": ["student", "senior"], "city": "Madrid"}}
    )

    def who(**attributes: Any) -> MemberContext:
        return member(attributes=attributes)

    assert earned(purchase(), students_in_madrid, who=who(segment="student", city="Madrid")) == 23
    assert earned(purchase(), students_in_madrid, who=who(segment="senior", city="Madrid")) == 23
    assert earned(purchase(), students_in_madrid, who=who(segment="adult", city="Madrid")) == 0
    assert earned(purchase(), students_in_madrid, who=who(segment="student", city="madrid")) == 0
    assert earned(purchase(), students_in_madrid, who=who(segment="student")) == 0
    # A member attribute holding several values matches when any of them does.
    tags = who(segment=["adult", "student"], city="Madrid")
    assert earned(purchase(), students_in_madrid, who=tags) == 23


def test_attribute_values_compare_by_type() -> None:
    age_30 = rule(conditions={"attributes": {"age": 30, "vip": True}})

    assert earned(purchase(), age_30, who=member(attributes={"age": 30, "vip": True})) == 23
    assert earned(purchase(), age_30, who=member(attributes={"age": "30", "vip": True})) == 0
    assert earned(purchase(), age_30, who=member(attributes={"age": 30, "vip": 1})) == 0
    assert earned(purchase(), age_30, who=member(attributes={"age": 30.0, "vip": True})) == 0


def test_first_purchase_true_and_false() -> None:
    welcome = rule(
        1, conditions={"first_purchase": True}, actions=[{"type": "fixed_bonus", "points": 200}]
    )
    returning = rule(
        2, conditions={"first_purchase": False}, actions=[{"type": "fixed_bonus", "points": 5}]
    )

    assert points(run(purchase(), welcome, returning, who=member(is_first_purchase=True))) == [
        (1, 200)
    ]
    assert points(run(purchase(), welcome, returning, who=member(is_first_purchase=False))) == [
        (2, 5)
    ]


# --- local dates and times (Europe/Madrid) ---


def test_weekdays_use_the_programs_local_date() -> None:
    mondays = rule(1, conditions={"weekdays": ["mon"]})
    tuesdays = rule(2, conditions={"weekdays": ["tue"]})
    # Monday 23:30 UTC is already Tuesday 00:30 in Madrid.
    late_monday_utc = purchase(at=datetime(2025, 3, 3, 23, 30, tzinfo=UTC))

    assert points(run(late_monday_utc, mondays, tuesdays)) == [(2, 23)]
    # ...but still Monday for a program on New York time.
    new_york = ProgramContext(timezone=ZoneInfo("America/New_York"))
    assert points(run(late_monday_utc, mondays, tuesdays, program=new_york)) == [(1, 23)]


def test_an_activity_given_in_another_offset_is_localised_the_same() -> None:
    tuesdays = rule(
        conditions={"weekdays": ["tue"], "time_window": {"start": "00:00", "end": "01:00"}}
    )
    same_instant = datetime(2025, 3, 3, 18, 30, tzinfo=ZoneInfo("America/New_York"))

    assert earned(purchase(at=same_instant), tuesdays) == 23


@pytest.mark.parametrize(
    ("utc_time", "expected"),
    [
        ((6, 59), 0),  # 07:59 local
        ((7, 0), 23),  # 08:00 local: start is inclusive
        ((9, 59), 23),  # 10:59 local
        ((10, 0), 0),  # 11:00 local: end is exclusive
    ],
)
def test_time_window_start_inclusive_end_exclusive(
    utc_time: tuple[int, int], expected: int
) -> None:
    breakfast = rule(conditions={"time_window": {"start": "08:00", "end": "11:00"}})
    at = datetime(2025, 3, 4, *utc_time, tzinfo=UTC)

    assert earned(purchase(at=at), breakfast) == expected


def test_the_last_second_before_the_end_is_inside_the_window() -> None:
    breakfast = rule(conditions={"time_window": {"start": "08:00", "end": "11:00"}})

    assert earned(purchase(at=datetime(2025, 3, 4, 9, 59, 59, 999999, tzinfo=UTC)), breakfast) == 23


@pytest.mark.parametrize(
    ("local_time", "expected"),
    [
        ((21, 59), 0),
        ((22, 0), 23),
        ((23, 30), 23),
        ((0, 0), 23),
        ((1, 59), 23),
        ((2, 0), 0),
        ((12, 0), 0),
    ],
)
def test_time_windows_may_wrap_midnight(local_time: tuple[int, int], expected: int) -> None:
    night = rule(conditions={"time_window": {"start": "22:00", "end": "02:00"}})
    at = datetime(2025, 3, 4, *local_time, tzinfo=MADRID)

    assert earned(purchase(at=at), night) == expected


def test_time_windows_follow_daylight_saving_time() -> None:
    breakfast = rule(conditions={"time_window": {"start": "08:00", "end": "11:00"}})

    # 06:30 UTC is 07:30 in winter (CET) and 08:30 in summer (CEST).
    assert earned(purchase(at=datetime(2025, 1, 15, 6, 30, tzinfo=UTC)), breakfast) == 0
    assert earned(purchase(at=datetime(2025, 7, 15, 6, 30, tzinfo=UTC)), breakfast) == 23


def test_date_range_is_inclusive_in_local_dates() -> None:
    january = rule(conditions={"date_range": {"start": "2025-01-01", "end": "2025-01-31"}})

    # 31 Dec 23:30 UTC is 1 Jan 00:30 in Madrid; 31 Jan 23:30 UTC is already 1 Feb.
    assert earned(purchase(at=datetime(2024, 12, 31, 23, 30, tzinfo=UTC)), january) == 23
    assert earned(purchase(at=datetime(2024, 12, 31, 22, 59, tzinfo=UTC)), january) == 0
    assert earned(purchase(at=datetime(2025, 1, 31, 22, 59, tzinfo=UTC)), january) == 23
    assert earned(purchase(at=datetime(2025, 1, 31, 23, 30, tzinfo=UTC)), january) == 0


def test_open_ended_date_ranges() -> None:
    from_march = rule(1, conditions={"date_range": {"start": "2025-03-01"}})
    until_march = rule(2, conditions={"date_range": {"end": "2025-03-01"}})

    assert points(
        run(purchase(at=datetime(2025, 3, 1, 12, tzinfo=UTC)), from_march, until_march)
    ) == [
        (1, 23),
        (2, 23),
    ]
    assert points(
        run(purchase(at=datetime(2025, 2, 28, 12, tzinfo=UTC)), from_march, until_march)
    ) == [(2, 23)]
    assert points(
        run(purchase(at=datetime(2025, 3, 2, 12, tzinfo=UTC)), from_march, until_march)
    ) == [(1, 23)]


def test_birthday_day_uses_the_local_date() -> None:
    birthday = rule(
        conditions={"birthday": "day"}, actions=[{"type": "fixed_bonus", "points": 100}]
    )
    born_5_march = member(birthday=date(1990, 3, 5))

    # 4 March 23:30 UTC is 5 March 00:30 in Madrid.
    assert (
        earned(purchase(at=datetime(2025, 3, 4, 23, 30, tzinfo=UTC)), birthday, who=born_5_march)
        == 100
    )
    assert (
        earned(purchase(at=datetime(2025, 3, 4, 22, 30, tzinfo=UTC)), birthday, who=born_5_march)
        == 0
    )
    assert (
        earned(purchase(at=datetime(2025, 3, 5, 22, 59, tzinfo=UTC)), birthday, who=born_5_march)
        == 100
    )
    assert earned(purchase(), birthday, who=member()) == 0  # birthday unknown


def test_birthday_month() -> None:
    birthday_month = rule(
        conditions={"birthday": "month"}, actions=[{"type": "fixed_bonus", "points": 100}]
    )

    assert earned(purchase(), birthday_month, who=member(birthday=date(1990, 3, 31))) == 100
    assert earned(purchase(), birthday_month, who=member(birthday=date(1990, 4, 1))) == 0
    # 28 Feb 23:30 UTC is 1 March in Madrid: already the March birthday month.
    late_february = purchase(at=datetime(2025, 2, 28, 23, 30, tzinfo=UTC))
    assert earned(late_february, birthday_month, who=member(birthday=date(2000, 3, 15))) == 100


def test_leap_day_birthdays_are_celebrated_on_28_february_in_common_years() -> None:
    birthday = rule(
        conditions={"birthday": "day"}, actions=[{"type": "fixed_bonus", "points": 100}]
    )
    leapling = member(birthday=date(2000, 2, 29))

    def on(year: int, month: int, day: int) -> Activity:
        return purchase(at=datetime(year, month, day, 12, tzinfo=UTC))

    assert earned(on(2025, 2, 28), birthday, who=leapling) == 100
    assert earned(on(2025, 3, 1), birthday, who=leapling) == 0
    assert earned(on(2028, 2, 28), birthday, who=leapling) == 0
    assert earned(on(2028, 2, 29), birthday, who=leapling) == 100
    assert earned(on(2100, 2, 28), birthday, who=leapling) == 100  # 2100 is not a leap year


def test_all_conditions_must_hold() -> None:
    combined = rule(
        conditions={
            "channels": ["store"],
            "weekdays": ["tue"],
            "time_window": {"start": "08:00", "end": "12:00"},
            "min_amount": "20.00",
        }
    )

    assert earned(purchase(channel="store"), combined) == 23
    assert earned(purchase(channel="web"), combined) == 0
    assert earned(purchase("19.00", channel="store"), combined) == 0
    assert earned(purchase(channel="store", at=datetime(2025, 3, 5, 10, tzinfo=UTC)), combined) == 0
    assert earned(purchase(channel="store", at=datetime(2025, 3, 4, 12, tzinfo=UTC)), combined) == 0


# --- actions and rounding ---


@pytest.mark.parametrize(
    ("rounding", "amount", "expected"),
    [
        ("floor", "23.50", 23),
        ("floor", "23.99", 23),
        ("ceiling", "23.01", 24),
        ("ceiling", "23.00", 23),
        ("half_up", "23.50", 24),
        ("half_up", "23.49", 23),
        ("half_even", "22.50", 22),
        ("half_even", "23.50", 24),
    ],
)
def test_points_per_amount_rounding_modes(rounding: str, amount: str, expected: int) -> None:
    per_euro = rule(actions=[{"type": "points_per_amount", "points": 1, "rounding": rounding}])

    assert earned(purchase(amount), per_euro) == expected


def test_points_per_amount_is_proportional_to_per() -> None:
    three_per_two_euros = rule(actions=[{"type": "points_per_amount", "points": 3, "per": "2.00"}])
    ten_per_cent = rule(actions=[{"type": "points_per_amount", "points": 10, "per": "0.01"}])

    assert earned(purchase("23.50"), three_per_two_euros) == 35  # 3 × 23.50 / 2 = 35.25
    assert earned(purchase("23.50"), ten_per_cent) == 23500
    assert (
        earned(
            purchase("0.90"),
            rule(actions=[{"type": "points_per_amount", "points": 1, "per": "0.30"}]),
        )
        == 3
    )


def test_actions_without_rounding_use_the_programs_rounding() -> None:
    per_euro = rule(1)
    per_euro_floor = rule(
        2, actions=[{"type": "points_per_amount", "points": 1, "rounding": "floor"}]
    )
    half_up = ProgramContext(timezone=MADRID, rounding=Rounding.HALF_UP)

    assert points(run(purchase("23.50"), per_euro, per_euro_floor, program=half_up)) == [
        (1, 24),
        (2, 23),
    ]
    assert points(run(purchase("23.50"), per_euro, per_euro_floor)) == [(1, 23), (2, 23)]


def test_points_per_item_times_the_matching_quantity() -> None:
    per_coffee = rule(
        1,
        conditions={"items": {"include_categories": ["coffee"]}},
        actions=[{"type": "points_per_item", "points": 5}],
    )
    per_any_item = rule(2, actions=[{"type": "points_per_item", "points": 2}])

    # 3 coffee units (2 espressos, 1 beans) × 5; 4 units in the basket × 2.
    assert points(run(purchase(items=BASKET), per_coffee, per_any_item)) == [(1, 15), (2, 8)]
    assert points(run(purchase(), per_coffee, per_any_item)) == []


def test_fixed_bonus_and_several_actions_in_one_rule_add_up() -> None:
    combo = rule(
        actions=[
            {"type": "points_per_amount", "points": 2},
            {"type": "points_per_item", "points": 1},
            {"type": "fixed_bonus", "points": 10},
        ]
    )

    [posting] = run(purchase(items=BASKET), combo)

    assert posting.points == 47 + 4 + 10
    assert posting.reason == (
        "2 pts per 1.00 on 23.50 → 47 + 1 pt per item × 4 → 4 + bonus 10 = 61 (Rule 1 v1)"
    )


def test_each_action_rounds_on_its_own() -> None:
    two_halves = rule(
        actions=[
            {"type": "points_per_amount", "points": 1, "per": "2.00"},
            {"type": "points_per_amount", "points": 1, "per": "2.00"},
        ]
    )

    # 2 × floor(1.50) = 2, not floor(3.00) = 3.
    assert earned(purchase("3.00"), two_halves) == 2


def test_negative_amounts_earn_nothing() -> None:
    assert run(purchase("-10.00"), rule()) == []


def test_zero_point_postings_are_dropped() -> None:
    assert run(purchase("0.99"), rule()) == []
    assert (
        run(purchase("0.00"), rule(1), rule(2, actions=[{"type": "points_per_item", "points": 3}]))
        == []
    )


# --- multipliers and the tier ---


def test_a_multiplier_adds_factor_minus_one_times_the_base_of_all_matching_rules() -> None:
    per_euro = rule(1)
    welcome = rule(2, actions=[{"type": "fixed_bonus", "points": 7}])
    double = rule(3, actions=[{"type": "multiplier", "factor": "2"}])

    postings = run(purchase("23.50"), per_euro, welcome, double)

    assert points(postings) == [(1, 23), (2, 7), (3, 30)]
    assert postings[2].reason == "×2 on 30 base → 30 (Rule 3 v1)"


def test_multipliers_stack_additively() -> None:
    per_euro = rule(1, actions=[{"type": "points_per_amount", "points": 1}])
    double = rule(2, actions=[{"type": "multiplier", "factor": "2"}])
    and_a_half = rule(3, actions=[{"type": "multiplier", "factor": "1.5"}])

    # Base 23: +23 (×2) and +11 (×1.5, floor of 11.5): 57, not 23 × 2 × 1.5 = 69.
    assert points(run(purchase("23.50"), per_euro, double, and_a_half)) == [
        (1, 23),
        (2, 23),
        (3, 11),
    ]


def test_a_multiplier_rounds_with_its_own_rounding() -> None:
    per_euro = rule(1)
    half_more = rule(2, actions=[{"type": "multiplier", "factor": "1.5", "rounding": "half_up"}])

    assert points(run(purchase("23.00"), per_euro, half_more)) == [(1, 23), (2, 12)]  # 11.5 → 12


def test_a_multiplier_alone_gives_nothing() -> None:
    assert run(purchase(), rule(actions=[{"type": "multiplier", "factor": "3"}])) == []


def test_a_multiplier_whose_conditions_fail_gives_nothing() -> None:
    per_euro = rule(1)
    gold_double = rule(
        2, conditions={"tiers": ["GOLD"]}, actions=[{"type": "multiplier", "factor": "2"}]
    )

    assert points(run(purchase(), per_euro, gold_double, who=member(tier_code="SILVER"))) == [
        (1, 23)
    ]
    assert points(run(purchase(), per_euro, gold_double, who=member(tier_code="GOLD"))) == [
        (1, 23),
        (2, 23),
    ]


def test_a_multiplier_only_multiplies_rules_that_matched_the_same_activity() -> None:
    per_euro = rule(1, conditions={"channels": ["web"]})
    visit = rule(2, activity="store_visit", actions=[{"type": "fixed_bonus", "points": 10}])
    double = rule(3, actions=[{"type": "multiplier", "factor": "2"}])

    assert points(run(purchase(channel="store"), per_euro, visit, double)) == []


def test_a_rule_with_base_actions_and_a_multiplier_multiplies_its_own_base_too() -> None:
    per_euro = rule(1)
    bonus_and_double = rule(
        2,
        actions=[{"type": "fixed_bonus", "points": 10}, {"type": "multiplier", "factor": "2"}],
    )

    postings = run(purchase("23.50"), per_euro, bonus_and_double)

    # Base 23 + 10 = 33; rule 2 gives its 10 and ×2 on 33.
    assert points(postings) == [(1, 23), (2, 43)]
    assert postings[1].reason == "bonus 10 + ×2 on 33 base → 33 = 43 (Rule 2 v1)"


def test_the_tier_multiplier_adds_a_posting_on_the_base_only() -> None:
    per_euro = rule(1)
    double = rule(2, actions=[{"type": "multiplier", "factor": "2"}])
    gold = member(tier_code="GOLD", tier_multiplier=Decimal("1.5"))

    postings = run(purchase("23.50"), per_euro, double, who=gold)

    # Base 23; campaign +23; tier +11 (0.5 × 23 = 11.5, floor), not 0.5 × 46.
    assert points(postings) == [(1, 23), (2, 23), (None, 11)]
    tier = postings[2]
    assert (tier.rule_id, tier.rule_version, tier.tier_code) == (None, None, "GOLD")
    assert tier.reason == "tier GOLD ×1.5 on 23 base → 11"


def test_the_tier_bonus_uses_the_programs_rounding() -> None:
    gold = member(tier_code="GOLD", tier_multiplier=Decimal("1.5"))
    half_up = ProgramContext(timezone=MADRID, rounding=Rounding.HALF_UP)

    assert points(run(purchase("23.50"), rule(), who=gold, program=half_up)) == [
        (1, 24),
        (None, 12),
    ]


def test_no_tier_posting_without_a_tier_code_a_multiplier_above_one_or_a_base() -> None:
    assert points(run(purchase(), rule(), who=member(tier_multiplier=Decimal(2)))) == [(1, 23)]
    assert points(run(purchase(), rule(), who=member(tier_code="BASIC"))) == [(1, 23)]
    shrink = member(tier_code="ODD", tier_multiplier=Decimal("0.5"))
    assert points(run(purchase(), rule(), who=shrink)) == [(1, 23)]
    gold = member(tier_code="GOLD", tier_multiplier=Decimal(2))
    assert run(purchase("0.50"), rule(), who=gold) == []


# --- caps and budgets ---


def test_per_transaction_cap() -> None:
    capped = rule(caps={"per_transaction": 500})

    [posting] = run(purchase("600.00"), capped)

    assert posting.points == 500
    assert (
        posting.reason
        == "1 pt per 1.00 on 600.00 → 600, capped to 500 by the per_transaction cap (Rule 1 v1)"
    )
    assert earned(purchase("499.00"), capped) == 499


@pytest.mark.parametrize(
    ("caps", "usage", "expected", "binding"),
    [
        ({"per_day": 100}, RuleUsage(member_day=90), 10, "per_day"),
        ({"per_day": 100}, RuleUsage(member_day=70), 23, None),
        ({"per_month": 1000}, RuleUsage(member_month=990), 10, "per_month"),
        ({"per_member": 5000}, RuleUsage(member_total=4995), 5, "per_member"),
        ({"budget": 1_000_000}, RuleUsage(budget_spent=999_980), 20, "budget"),
        # The smallest room wins, whatever the order of the caps.
        ({"per_transaction": 20, "per_day": 100}, RuleUsage(member_day=95), 5, "per_day"),
        ({"per_transaction": 4, "per_day": 100}, RuleUsage(member_day=95), 4, "per_transaction"),
        ({"per_day": 100, "budget": 50}, RuleUsage(member_day=90, budget_spent=47), 3, "budget"),
    ],
)
def test_caps_clip_to_the_room_left(
    caps: dict[str, int], usage: RuleUsage, expected: int, binding: str | None
) -> None:
    postings = run(purchase("23.50"), rule(7, caps=caps), usage={7: usage})

    assert points(postings) == [(7, expected)]
    if binding is None:
        assert "capped" not in postings[0].reason
    else:
        assert f", capped to {expected} by the {binding} cap" in postings[0].reason


@pytest.mark.parametrize(
    "usage",
    [
        RuleUsage(member_day=100),
        RuleUsage(member_day=250),  # over the cap (it was lowered): still 0, never negative
        RuleUsage(member_month=1000),
        RuleUsage(member_total=5000),
        RuleUsage(budget_spent=2_000_000),
    ],
)
def test_an_exhausted_cap_gives_nothing_and_takes_nothing(usage: RuleUsage) -> None:
    capped = rule(
        7, caps={"per_day": 100, "per_month": 1000, "per_member": 5000, "budget": 1_000_000}
    )

    assert run(purchase(), capped, usage={7: usage}) == []


def test_a_zero_cap_pauses_the_rule() -> None:
    assert run(purchase(), rule(caps={"budget": 0})) == []


def test_usage_of_one_rule_does_not_limit_another() -> None:
    capped = rule(1, caps={"per_day": 10})
    uncapped = rule(2)

    assert points(run(purchase(), capped, uncapped, usage={2: RuleUsage(member_day=10_000)})) == [
        (1, 10),
        (2, 23),
    ]


def test_a_multiplier_multiplies_the_capped_base() -> None:
    per_euro = rule(1, caps={"per_transaction": 10})
    double = rule(2, actions=[{"type": "multiplier", "factor": "2"}])
    gold = member(tier_code="GOLD", tier_multiplier=Decimal(2))

    assert points(run(purchase("23.50"), per_euro, double, who=gold)) == [
        (1, 10),
        (2, 10),
        (None, 10),
    ]


def test_a_multipliers_rule_caps_its_own_multiplied_points() -> None:
    per_euro = rule(1)
    capped_triple = rule(2, actions=[{"type": "multiplier", "factor": "3"}], caps={"per_day": 50})

    postings = run(purchase("23.50"), per_euro, capped_triple, usage={2: RuleUsage(member_day=20)})

    assert points(postings) == [(1, 23), (2, 30)]
    assert postings[1].reason == "×3 on 23 base → 46, capped to 30 by the per_day cap (Rule 2 v1)"


def test_caps_cover_a_rules_base_and_multiplier_together() -> None:
    bonus_and_double = rule(
        actions=[{"type": "fixed_bonus", "points": 40}, {"type": "multiplier", "factor": "2"}],
        caps={"per_transaction": 60},
    )

    postings = run(purchase(), bonus_and_double)

    # 40 base + 40 from ×2 on its own base = 80, capped to 60.
    assert points(postings) == [(1, 60)]
    assert (
        postings[0].reason
        == "bonus 40 + ×2 on 40 base → 40 = 80, capped to 60 by the per_transaction cap (Rule 1 v1)"
    )


def test_day_month_and_member_caps_count_the_rules_base_before_its_multiplier() -> None:
    bonus_and_double = rule(
        actions=[{"type": "fixed_bonus", "points": 40}, {"type": "multiplier", "factor": "2"}],
        caps={"per_day": 100},
    )

    postings = run(purchase(), bonus_and_double, usage={1: RuleUsage(member_day=30)})

    # Room 70 today: the base takes 40, the ×2 gets only the 30 left.
    assert points(postings) == [(1, 70)]
    assert postings[0].reason.endswith("= 80, capped to 70 by the per_day cap (Rule 1 v1)")


def test_an_exhausted_cap_does_not_shrink_other_rules_multipliers() -> None:
    exhausted = rule(1, caps={"per_day": 100})
    bonus = rule(2, actions=[{"type": "fixed_bonus", "points": 10}])
    double = rule(3, actions=[{"type": "multiplier", "factor": "2"}])

    postings = run(
        purchase("23.50"), exhausted, bonus, double, usage={1: RuleUsage(member_day=250)}
    )

    assert points(postings) == [(2, 10), (3, 10)]


# --- order, determinism and explanations ---


def test_postings_follow_priority_then_rule_id_and_the_tier_comes_last() -> None:
    late = rule(1, priority=200, actions=[{"type": "fixed_bonus", "points": 1}])
    early_b = rule(3, priority=10, actions=[{"type": "fixed_bonus", "points": 3}])
    early_a = rule(2, priority=10, actions=[{"type": "fixed_bonus", "points": 2}])
    gold = member(tier_code="GOLD", tier_multiplier=Decimal(2))

    expected = [(2, 2), (3, 3), (1, 1), (None, 6)]
    assert points(run(purchase(), late, early_b, early_a, who=gold)) == expected
    assert points(run(purchase(), early_a, late, early_b, who=gold)) == expected


def test_postings_name_the_rule_version() -> None:
    [posting] = run(purchase(), rule(4, version=3, name="Coffee lovers"))

    assert posting == Posting(
        points=23,
        rule_id=4,
        rule_version=3,
        tier_code=None,
        reason="1 pt per 1.00 on 23.50 → 23 (Coffee lovers v3)",
    )


def test_points_per_item_reason() -> None:
    per_coffee = rule(
        name="Coffee card",
        conditions={"items": {"include_skus": ["ESP"]}},
        actions=[{"type": "points_per_item", "points": 5}],
    )

    [posting] = run(purchase(items=BASKET), per_coffee)

    assert posting.reason == "5 pts per item × 2 → 10 (Coffee card v1)"


def test_a_rule_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="rule 1 is given more than once"):
        run(purchase(), rule(1, version=1), rule(1, version=2))


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Activity(kind="purchase", occurred_at=datetime(2025, 3, 4, 10, 0))

    assert caught.value.field == "occurred_at"


def test_compile_rule_builds_the_same_rule_as_the_constructor() -> None:
    definition = parse_rule_definition({"name": "Base", "actions": [PER_EURO]})

    compiled = compile_rule(1, 2, definition)

    assert compiled == CompiledRule(rule_id=1, version=2, definition=definition)
    assert hash(compiled) == hash(CompiledRule(rule_id=1, version=2, definition=definition))
    assert evaluate(purchase(), member(), PROGRAM, [compiled], {}) == run(
        purchase(), rule(1, 2, name="Base")
    )


def test_explain_says_which_condition_failed() -> None:
    rules = [
        rule(1, name="Base"),
        rule(2, name="App only", conditions={"channels": ["app"]}),
        rule(3, name="Students", conditions={"attributes": {"segment": "student"}}),
        rule(4, name="Visits", activity="store_visit"),
        rule(5, name="Breakfast", conditions={"time_window": {"start": "07:00", "end": "10:00"}}),
        rule(6, name="Big baskets", conditions={"min_amount": "50.00"}),
    ]

    checks = explain(purchase(channel="store"), member(), PROGRAM, rules)

    assert checks[0] == RuleCheck(1, 1, "Base", True, None, "all conditions hold")
    assert [(c.rule_id, c.matched, c.failed_condition) for c in checks] == [
        (1, True, None),
        (2, False, "channels"),
        (3, False, "attributes"),
        (4, False, "activity"),
        (5, False, "time_window"),
        (6, False, "min_amount"),
    ]
    assert checks[2].detail == "a member attribute does not have the required value (segment)"
    assert checks[3].detail == "the rule is for 'store_visit' activities, not 'purchase'"


def test_evaluating_under_other_rules_never_reuses_the_previous_rules() -> None:
    # The evaluator remembers the last rule set's order: a new set, or the same list with a
    # rule replaced, must be evaluated under its own rules.
    per_euro = [rule(1)]
    bonus = [rule(2, actions=[{"type": "fixed_bonus", "points": 5}])]
    member = MemberContext()
    assert [p.points for p in evaluate(purchase(), member, PROGRAM, per_euro, {})] == [23]
    assert [p.points for p in evaluate(purchase(), member, PROGRAM, bonus, {})] == [5]
    per_euro[0] = rule(1, version=2, actions=[{"type": "fixed_bonus", "points": 9}])
    postings = evaluate(purchase(), member, PROGRAM, per_euro, {})
    assert [(p.points, p.rule_version) for p in postings] == [(9, 2)]
    both = [*bonus, rule(3, priority=-1)]
    assert [p.rule_id for p in evaluate(purchase(), member, PROGRAM, both, {})] == [3, 2]
    with pytest.raises(ValueError, match="more than once"):
        evaluate(purchase(), member, PROGRAM, [rule(4), rule(4, version=2)], {})
    with pytest.raises(ValueError, match="more than once"):
        evaluate(purchase(), member, PROGRAM, [rule(4), rule(4, version=2)], {})
