"""Properties of the rules evaluator that must hold for any rules, activity, member and usage."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from fideliza.core.points import Rounding, round_points
from fideliza.purchases.domain import Item
from fideliza.rules.domain import (
    Activity,
    CompiledRule,
    MemberContext,
    ProgramContext,
    RuleUsage,
    compile_rule,
    evaluate,
)
from fideliza.rules.schemas import dump_rule_definition, parse_rule_definition

SKUS = ("ESP", "LAT", "CAKE", "BEANS", "MUG")
CATEGORIES = ("coffee", "food", "merch")
EXCLUDED_SKU = "TOBACCO"
EXCLUDED_CATEGORY = "gift_cards"
TIMEZONES = tuple(
    ZoneInfo(name) for name in ("Europe/Madrid", "America/New_York", "Asia/Tokyo", "UTC")
)
KINDS = st.sampled_from(["purchase", "purchase", "purchase", "store_visit"])
CAP_NAMES = ("per_transaction", "per_day", "per_month", "per_member", "budget")

# Enough examples to explore the combinations, few enough to keep the suite fast.
RULES = settings(max_examples=120, deadline=None)
FEWER = settings(max_examples=50, deadline=None)

money = st.decimals(min_value=0, max_value=2000, places=2, allow_nan=False, allow_infinity=False)
small_points = st.integers(min_value=1, max_value=50)
roundings = st.sampled_from([r.value for r in Rounding])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def items_filters(draw: st.DrawFn, *, excluding: bool = False) -> dict[str, Any]:
    bits = st.integers(min_value=0, max_value=0b111)
    present = draw(bits) & draw(bits)  # two draws pick the fields, each one time in four
    data: dict[str, Any] = {}
    if present & 0b001:
        data["include_skus"] = draw(st.lists(st.sampled_from(SKUS), max_size=3, unique=True))
    if present & 0b010:
        data["include_categories"] = draw(
            st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True)
        )
    if present & 0b100:
        data["min_quantity"] = draw(st.integers(min_value=1, max_value=4))
    if excluding:
        data["exclude_skus"] = [EXCLUDED_SKU]
        data["exclude_categories"] = [EXCLUDED_CATEGORY]
    return data


WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@st.composite
def conditions(draw: st.DrawFn, *, excluding: bool = False) -> dict[str, Any]:
    # A few draws pick which conditions are present (each one time in eight, so that rules
    # match often enough to exercise the arithmetic); few draws keep the suite fast.
    bits = st.integers(min_value=0, max_value=0xFF)
    present = draw(bits) & draw(bits) & draw(bits)
    data: dict[str, Any] = {}
    if present & 0x01:
        data["min_amount"] = str(draw(st.decimals(min_value=0, max_value=100, places=2)))
    if excluding or present & 0x02:
        data["items"] = draw(items_filters(excluding=excluding))
    if present & 0x04:
        data["channels"] = draw(st.lists(st.sampled_from(["store", "web", "app"]), min_size=1))
    if present & 0x08:
        data["weekdays"] = draw(st.lists(st.sampled_from(WEEKDAY_NAMES), min_size=1))
    if present & 0x10:
        start, end = draw(st.sampled_from(TIME_WINDOWS))
        data["time_window"] = {"start": start, "end": end}
    if present & 0x20:
        data["tiers"] = draw(st.lists(st.sampled_from(["GOLD", "SILVER"]), min_size=1))
    if present & 0x40:
        data["birthday"] = draw(st.sampled_from(["day", "month"]))
    if present & 0x80:
        data["first_purchase"] = draw(st.booleans())
    return data


TIME_WINDOWS = (("08:00", "11:00"), ("22:00", "02:00"), ("00:00", "12:00"), ("12:30", "23:59"))

action_strategies = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("points_per_amount"),
            "points": small_points,
            "per": st.sampled_from(["0.50", "1.00", "2.00", "3.00", "10"]),
            "rounding": roundings,
        }
    ),
    st.fixed_dictionaries({"type": st.just("points_per_item"), "points": small_points}),
    st.fixed_dictionaries({"type": st.just("fixed_bonus"), "points": small_points}),
    st.fixed_dictionaries(
        {
            "type": st.just("multiplier"),
            "factor": st.sampled_from(["1.25", "1.5", "2", "3"]),
            "rounding": roundings,
        }
    ),
)


@st.composite
def caps(draw: st.DrawFn) -> dict[str, int] | None:
    if not draw(st.booleans()):
        return None
    chosen = draw(st.lists(st.sampled_from(CAP_NAMES), min_size=1, unique=True))
    return {name: draw(st.integers(min_value=0, max_value=300)) for name in chosen}


@st.composite
def rule_sets(draw: st.DrawFn, *, excluding: bool = False) -> list[CompiledRule]:
    count = draw(st.integers(min_value=1, max_value=5))
    rules = []
    for rule_id in range(1, count + 1):
        data: dict[str, Any] = {
            "name": f"Rule {rule_id}",
            "priority": draw(st.integers(min_value=0, max_value=3)),
            "activity": draw(KINDS),
            "conditions": draw(conditions(excluding=excluding)),
            "actions": draw(st.lists(action_strategies, min_size=1, max_size=3)),
        }
        rule_caps = draw(caps())
        if rule_caps is not None:
            data["caps"] = rule_caps
        version = draw(st.integers(min_value=1, max_value=3))
        rules.append(compile_rule(rule_id, version, parse_rule_definition(data)))
    return rules


basket_items = st.builds(
    Item,
    sku=st.sampled_from(SKUS),
    quantity=st.integers(min_value=1, max_value=5),
    unit_price=st.decimals(min_value=0, max_value=200, places=2),
    category=optional(st.sampled_from(CATEGORIES)),
)
instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@st.composite
def activities(draw: st.DrawFn) -> Activity:
    items = tuple(draw(st.one_of(st.just([]), st.lists(basket_items, min_size=1, max_size=5))))
    listed = sum((item.total for item in items), Decimal(0))
    return Activity(
        kind=draw(KINDS),
        occurred_at=draw(instants),
        amount=listed if items else draw(money),
        channel=draw(optional(st.sampled_from(["store", "web", "app"]))),
        store=draw(optional(st.sampled_from(["S1", "S2"]))),
        items=items,
    )


members = st.builds(
    MemberContext,
    tier_code=optional(st.sampled_from(["GOLD", "SILVER", "BASIC"])),
    tier_multiplier=st.sampled_from([Decimal(1), Decimal("1.25"), Decimal("1.5"), Decimal(2)]),
    attributes=st.just({}),
    birthday=optional(st.dates(min_value=date(1940, 1, 1), max_value=date(2010, 12, 31))),
    is_first_purchase=st.booleans(),
)
programs = st.builds(
    ProgramContext, timezone=st.sampled_from(TIMEZONES), rounding=st.sampled_from(list(Rounding))
)
usages = st.dictionaries(
    st.integers(min_value=1, max_value=5),
    st.builds(
        RuleUsage,
        member_day=st.integers(0, 400),
        member_month=st.integers(0, 400),
        member_total=st.integers(0, 400),
        budget_spent=st.integers(0, 400),
    ),
)


@RULES
@given(rule_sets(), activities(), members, programs, usages)
def test_points_are_positive_within_every_cap_and_in_rule_order(
    rules: list[CompiledRule],
    activity: Activity,
    member: MemberContext,
    program: ProgramContext,
    usage: dict[int, RuleUsage],
) -> None:
    # Three properties of one evaluation, checked together to generate the inputs once.
    postings = evaluate(activity, member, program, rules, usage)

    # 1. Points are positive integers (0-point postings are dropped, none is negative).
    for posting in postings:
        assert isinstance(posting.points, int)
        assert posting.points > 0
        assert (posting.rule_id is None) == (posting.tier_code is not None)

    # 2. No rule gives more than any of its caps leaves room for, whatever the usage.
    given_by_rule: dict[int, int] = {}
    for posting in postings:
        if posting.rule_id is not None:
            assert posting.rule_id not in given_by_rule  # one posting per rule
            given_by_rule[posting.rule_id] = posting.points
    for rule in rules:
        caps = rule.definition.caps
        if caps is None:
            continue
        given_now = given_by_rule.get(rule.rule_id, 0)
        used = usage.get(rule.rule_id, RuleUsage())
        for cap, already in (
            (caps.per_transaction, 0),
            (caps.per_day, used.member_day),
            (caps.per_month, used.member_month),
            (caps.per_member, used.member_total),
            (caps.budget, used.budget_spent),
        ):
            if cap is not None:
                assert given_now <= max(0, cap - already)

    # 3. Rule postings come by (priority, rule_id); the tier posting, if any, comes last.
    priority = {rule.rule_id: rule.definition.priority for rule in rules}
    keys = [(priority[p.rule_id], p.rule_id) for p in postings if p.rule_id is not None]
    assert keys == sorted(keys)
    assert all(p.rule_id is None for p in postings[len(keys) :])
    assert len(postings) - len(keys) <= 1


@RULES
@given(rule_sets(excluding=True), activities(), members, programs, usages, st.data())
def test_adding_an_excluded_item_never_changes_the_points(
    rules: list[CompiledRule],
    activity: Activity,
    member: MemberContext,
    program: ProgramContext,
    usage: dict[int, RuleUsage],
    data: st.DataObject,
) -> None:
    excluded = data.draw(
        st.one_of(
            st.builds(
                Item,
                sku=st.just(EXCLUDED_SKU),
                quantity=st.integers(1, 5),
                unit_price=st.decimals(min_value=0, max_value=500, places=2),
                category=optional(st.sampled_from((*CATEGORIES, EXCLUDED_CATEGORY))),
            ),
            st.builds(
                Item,
                sku=st.sampled_from(SKUS),
                quantity=st.integers(1, 5),
                unit_price=st.decimals(min_value=0, max_value=500, places=2),
                category=st.just(EXCLUDED_CATEGORY),
            ),
        )
    )
    position = data.draw(st.integers(min_value=0, max_value=len(activity.items)))
    items = (*activity.items[:position], excluded, *activity.items[position:])
    with_excluded = Activity(
        kind=activity.kind,
        occurred_at=activity.occurred_at,
        amount=activity.amount + excluded.total,  # the till's total includes the line
        channel=activity.channel,
        store=activity.store,
        items=items,
        attributes=activity.attributes,
    )

    assert evaluate(with_excluded, member, program, rules, usage) == evaluate(
        activity, member, program, rules, usage
    )


@settings(max_examples=80, deadline=None)
@given(rule_sets(), activities(), members, programs, usages, st.randoms(use_true_random=False))
def test_evaluation_is_deterministic_and_independent_of_the_rules_order(
    rules: list[CompiledRule],
    activity: Activity,
    member: MemberContext,
    program: ProgramContext,
    usage: dict[int, RuleUsage],
    shuffler: random.Random,
) -> None:
    first = evaluate(activity, member, program, rules, usage)
    shuffled = list(rules)
    shuffler.shuffle(shuffled)

    assert evaluate(activity, member, program, rules, usage) == first
    assert evaluate(activity, member, program, tuple(shuffled), usage) == first
    assert evaluate(activity, member, program, list(reversed(rules)), usage) == first


@RULES
@given(
    st.decimals(min_value=0, max_value=100_000, places=2),
    st.sampled_from(["0.25", "1.00", "3.00", "7"]),
    st.integers(min_value=1, max_value=100),
    st.sampled_from(list(Rounding)),
)
def test_points_per_amount_rounds_like_the_core_round_points(
    amount: Decimal, per: str, points: int, rounding: Rounding
) -> None:
    rule = compile_rule(
        1,
        1,
        parse_rule_definition(
            {
                "name": "Per amount",
                "actions": [
                    {
                        "type": "points_per_amount",
                        "points": points,
                        "per": per,
                        "rounding": rounding,
                    }
                ],
            }
        ),
    )
    activity = Activity(
        kind="purchase", occurred_at=datetime(2025, 3, 4, tzinfo=UTC), amount=amount
    )
    program = ProgramContext(timezone=ZoneInfo("UTC"))

    earned = sum(p.points for p in evaluate(activity, MemberContext(), program, [rule], {}))

    assert earned == round_points(points * amount / Decimal(per), rounding)


@FEWER
@given(rule_sets())
def test_a_dumped_definition_parses_back_to_the_same_rule(rules: list[CompiledRule]) -> None:
    for rule in rules:
        assert parse_rule_definition(dump_rule_definition(rule.definition)) == rule.definition


@FEWER
@given(rule_sets(), activities(), members, programs)
def test_the_same_instant_in_any_offset_earns_the_same(
    rules: list[CompiledRule], activity: Activity, member: MemberContext, program: ProgramContext
) -> None:
    elsewhere = activity.occurred_at.astimezone(ZoneInfo("Pacific/Kiritimati"))
    moved = Activity(
        kind=activity.kind,
        occurred_at=elsewhere,
        amount=activity.amount,
        channel=activity.channel,
        store=activity.store,
        items=activity.items,
    )

    assert moved.occurred_at - activity.occurred_at == timedelta(0)
    assert evaluate(moved, member, program, rules, {}) == evaluate(
        activity, member, program, rules, {}
    )
