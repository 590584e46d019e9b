"""Discounts on a basket (pure): each kind, minimum spend, and the invariants under hypothesis."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.core.errors import ValidationError
from fideliza.coupons.domain import (
    Basket,
    BudgetPeriod,
    Reason,
    code_window,
    discount_for,
    parse_basket,
    parse_campaign,
    parse_discount,
    period_start,
    refusal,
)
from fideliza.purchases.domain import Item

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def basket(total: str, *lines: tuple[str, int, str]) -> Basket:
    items = [{"sku": sku, "quantity": qty, "unit_price": price} for sku, qty, price in lines]
    return parse_basket(total, "EUR", items)


def off(rule: dict[str, object], cart: Basket, min_spend: str | None = None) -> Decimal:
    outcome = discount_for(
        parse_discount(rule), cart, min_spend=Decimal(min_spend) if min_spend else None
    )
    assert outcome.applicable, outcome.problem
    return outcome.amount


def test_percent_rounds_down_to_the_cent_and_respects_its_cap() -> None:
    assert off({"type": "percent", "percent": "15"}, basket("33.33")) == Decimal("4.99")
    capped = {"type": "percent", "percent": "50", "max_amount": "20"}
    assert off(capped, basket("100.00")) == Decimal("20.00")


def test_percent_on_categories_counts_only_their_items() -> None:
    cart = parse_basket(
        "30.00",
        "EUR",
        [
            {"sku": "A", "quantity": 2, "unit_price": "5.00", "category": "drinks"},
            {"sku": "B", "quantity": 1, "unit_price": "20.00", "category": "food"},
        ],
    )
    assert off({"type": "percent", "percent": "10", "categories": ["drinks"]}, cart) == Decimal(
        "1.00"
    )


def test_fixed_amount_never_exceeds_the_basket() -> None:
    assert off({"type": "fixed", "amount": "10"}, basket("50.00")) == Decimal("10.00")
    assert off({"type": "fixed", "amount": "10"}, basket("6.50")) == Decimal("6.50")


def test_free_item_takes_the_cheapest_units_of_the_sku() -> None:
    cart = basket("20.00", ("COFFEE", 2, "2.50"), ("COFFEE", 1, "1.80"), ("CAKE", 1, "4.00"))
    assert off({"type": "free_item", "sku": "COFFEE"}, cart) == Decimal("1.80")
    assert off({"type": "free_item", "sku": "COFFEE", "quantity": 2}, cart) == Decimal("4.30")
    missing = discount_for(parse_discount({"type": "free_item", "sku": "TEA"}), cart)
    assert not missing.applicable and "TEA" in (missing.problem or "")


def test_buy_x_get_y_gives_the_cheapest_of_each_group() -> None:
    rule = {"type": "buy_x_get_y", "skus": ["A", "B"], "buy": 2, "get": 1}
    cart = basket("100.00", ("A", 4, "10.00"), ("B", 3, "6.00"))  # 7 units: 2 groups of 3
    assert off(rule, cart) == Decimal("12.00")  # the two cheapest units (B at 6.00)
    too_few = discount_for(parse_discount(rule), basket("20.00", ("A", 2, "10.00")))
    assert not too_few.applicable


def test_minimum_spend_is_checked_on_the_total() -> None:
    rule = parse_discount({"type": "fixed", "amount": "5"})
    below = discount_for(rule, basket("19.99"), min_spend=Decimal("20"))
    assert (below.applicable, below.amount) == (False, Decimal("0.00"))
    assert discount_for(rule, basket("20.00"), min_spend=Decimal("20")).amount == Decimal("5.00")


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"type": "percent", "percent": "0"}, "discount.percent"),
        ({"type": "fixed", "amount": "-1"}, "discount.amount"),
        ({"type": "buy_x_get_y", "skus": [], "buy": 1, "get": 1}, "discount.skus"),
        ({"type": "cashback"}, "discount"),
    ],
)
def test_bad_rules_name_their_field(rule: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_discount(rule)
    assert error.value.field == field


def test_campaign_rules_that_contradict_each_other_are_refused() -> None:
    base = {"code": "spring", "name": "Spring", "discount": {"type": "fixed", "amount": "5"}}
    with pytest.raises(ValidationError):
        parse_campaign(
            {**base, "valid_from": "2025-03-02T00:00:00Z", "valid_until": "2025-03-01T00:00:00Z"}
        )
    with pytest.raises(ValidationError):
        parse_campaign({**base, "budget_points": 100})  # no points_per_code
    with pytest.raises(ValidationError):
        parse_campaign({**base, "valid_until": "2025-03-01T00:00:00"})  # naive
    assert parse_campaign(base).max_uses_per_code == 1


def test_refusal_reasons_in_order() -> None:
    assert refusal(now=NOW, exists=False) is Reason.UNKNOWN
    assert refusal(now=NOW, exists=True, voided=True) is Reason.VOIDED
    assert refusal(now=NOW, exists=True, valid_from=NOW + timedelta(1)) is Reason.NOT_YET_VALID
    assert refusal(now=NOW, exists=True, valid_until=NOW) is Reason.EXPIRED
    assert refusal(now=NOW, exists=True, uses=1, max_uses=1) is Reason.USED_UP
    assert refusal(now=NOW, exists=True, uses=9, max_uses=None) is None
    assert refusal(now=NOW, exists=True, assigned_member_id=1, member_id=2) is Reason.OTHER_MEMBER
    assert refusal(now=NOW, exists=True, assigned_member_id=1, member_id=1) is None


def test_a_code_window_is_the_campaigns_shortened_to_its_days() -> None:
    end = NOW + timedelta(days=10)
    assert code_window(issued_at=NOW, campaign_from=None, campaign_until=end, valid_days=30) == (
        None,
        end,
    )
    assert code_window(issued_at=NOW, campaign_from=None, campaign_until=None, valid_days=3)[
        1
    ] == NOW + timedelta(days=3)


def test_budget_periods_start_in_the_programs_timezone() -> None:
    late_sunday_utc = datetime(2025, 3, 9, 23, 30, tzinfo=UTC)  # Monday 00:30 in Madrid
    assert period_start(BudgetPeriod.DAY, late_sunday_utc, "Europe/Madrid") == date(2025, 3, 10)
    assert period_start(BudgetPeriod.WEEK, late_sunday_utc, "Europe/Madrid") == date(2025, 3, 10)
    assert period_start(BudgetPeriod.WEEK, late_sunday_utc, "UTC") == date(2025, 3, 3)
    assert period_start(BudgetPeriod.MONTH, late_sunday_utc, "UTC") == date(2025, 3, 1)
    assert period_start(BudgetPeriod.TOTAL, late_sunday_utc, "UTC") == date(2000, 1, 1)


money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2)
items = st.lists(
    st.builds(
        lambda sku, qty, price: Item(sku=sku, quantity=qty, unit_price=price),
        st.sampled_from(["A", "B", "C"]),
        st.integers(1, 5),
        money,
    ),
    max_size=6,
)
rules = st.one_of(
    st.builds(
        lambda p, cap: {
            "type": "percent",
            "percent": str(p),
            **({"max_amount": str(cap)} if cap else {}),
        },
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2),
        st.none() | money,
    ),
    st.builds(lambda a: {"type": "fixed", "amount": str(a)}, money),
    st.builds(
        lambda s, q: {"type": "free_item", "sku": s, "quantity": q},
        st.sampled_from(["A", "B", "Z"]),
        st.integers(1, 3),
    ),
    st.builds(
        lambda x, y: {"type": "buy_x_get_y", "skus": ["A", "B"], "buy": x, "get": y},
        st.integers(1, 3),
        st.integers(1, 2),
    ),
)


@given(rules, items, st.decimals(min_value=Decimal("0"), max_value=Decimal("50"), places=2))
def test_a_discount_is_never_negative_never_beyond_the_total_and_in_cents(
    rule: dict[str, object], lines: list[Item], extra: Decimal
) -> None:
    total = sum((line.total for line in lines), Decimal(0)) + extra
    outcome = discount_for(
        parse_discount(rule), Basket(total=total, currency="EUR", items=tuple(lines))
    )
    assert Decimal(0) <= outcome.amount <= total
    assert outcome.amount == outcome.amount.quantize(Decimal("0.01"))
    if not outcome.applicable:
        assert outcome.amount == 0 and outcome.problem


@given(rules, items, money)
def test_a_bigger_minimum_spend_never_gives_more(
    rule: dict[str, object], lines: list[Item], min_spend: Decimal
) -> None:
    cart = Basket(
        total=sum((i.total for i in lines), Decimal(0)), currency="EUR", items=tuple(lines)
    )
    parsed = parse_discount(rule)
    assert (
        discount_for(parsed, cart, min_spend=min_spend).amount <= discount_for(parsed, cart).amount
    )
