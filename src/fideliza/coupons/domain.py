"""Coupons as plain values: discount rules, a basket's discount, usage and budget periods.

Pure: no I/O, no clock. The service decides *whether* a code may be used; this module decides
*how much* it takes off a basket, and never more than the basket is worth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fideliza.core.errors import ValidationError
from fideliza.core.money import minor_units, to_money
from fideliza.core.validation import field_path
from fideliza.purchases.domain import Item, parse_item


class Trigger(StrEnum):
    """How a campaign's codes come to exist."""

    MANUAL = "manual"  # generated in bulk or issued one by one (rewards, CRM, …)
    PURCHASE = "purchase"  # next-order coupon: issued by a qualifying purchase


class ReturnPolicy(StrEnum):
    """What a return of the purchase a coupon was used on does to the coupon."""

    KEEP = "keep"  # the coupon stays used
    FULL_RETURN = "full_return"  # restored once the whole purchase is returned
    ANY_RETURN = "any_return"  # restored by the first return, even partial


class BudgetPeriod(StrEnum):
    TOTAL = "total"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Reason(StrEnum):
    """Why a code cannot be used: exact for the admin, one generic answer for a till."""

    UNKNOWN = "unknown"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    USED_UP = "used_up"
    VOIDED = "voided"
    CAMPAIGN_INACTIVE = "campaign_inactive"
    OTHER_MEMBER = "other_member"
    ALREADY_USED_BY_MEMBER = "already_used_by_member"
    BUDGET_EXHAUSTED = "budget_exhausted"


_Strict = ConfigDict(extra="forbid", frozen=True)
Positive = Annotated[Decimal, Field(gt=0)]


class PercentOff(BaseModel):
    """`percent` % off the basket (or off the items of `categories`), capped by `max_amount`."""

    model_config = _Strict
    type: Literal["percent"]
    percent: Annotated[Decimal, Field(gt=0, le=100)]
    max_amount: Positive | None = None
    categories: tuple[str, ...] = ()


class AmountOff(BaseModel):
    """A fixed amount off the basket (never more than the basket)."""

    model_config = _Strict
    type: Literal["fixed"]
    amount: Positive


class FreeItem(BaseModel):
    """`quantity` units of `sku` free, if the basket has them."""

    model_config = _Strict
    type: Literal["free_item"]
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1


class BuyXGetY(BaseModel):
    """For every `buy` + `get` units of the `skus`, the `get` cheapest are free."""

    model_config = _Strict
    type: Literal["buy_x_get_y"]
    skus: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=64)], ...], Field(min_length=1)
    ]
    buy: Annotated[int, Field(ge=1, le=1000)]
    get: Annotated[int, Field(ge=1, le=1000)]


DiscountRule = Annotated[PercentOff | AmountOff | FreeItem | BuyXGetY, Field(discriminator="type")]


class _DiscountHolder(BaseModel):
    model_config = _Strict
    discount: DiscountRule


class CampaignInput(BaseModel):
    """What a program manager sets on a campaign (validated as a whole before any write)."""

    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    discount: DiscountRule
    min_spend: Positive | None = None
    max_uses_per_code: Annotated[int, Field(ge=1)] | None = 1
    once_per_member: bool = False
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    code_valid_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    code_prefix: Annotated[str, Field(max_length=12)] = ""
    code_bits: Annotated[int, Field(ge=60, le=128)] = 65
    trigger: Trigger = Trigger.MANUAL
    trigger_min_amount: Annotated[Decimal, Field(ge=0)] | None = None
    return_policy: ReturnPolicy = ReturnPolicy.FULL_RETURN
    budget_points: Annotated[int, Field(ge=1)] | None = None
    budget_money: Positive | None = None
    budget_period: BudgetPeriod = BudgetPeriod.TOTAL
    points_per_code: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _coherent(self) -> CampaignInput:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must carry a timezone")
        if self.budget_points is not None and not self.points_per_code:
            raise ValueError("budget_points needs points_per_code (the points each code costs)")
        if self.trigger is Trigger.PURCHASE and self.max_uses_per_code is None:
            raise ValueError("a next-order coupon must have max_uses_per_code")
        return self


_KINDS = {"percent", "fixed", "free_item", "buy_x_get_y"}
M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], data: Any) -> M:
    """Like core.validation.validate, naming `discount.percent` rather than pydantic's
    `discount.percent.percent` (the union's tag in the path says nothing to a user)."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        location = tuple(first["loc"])
        if len(location) > 2 and location[0] == "discount" and location[1] in _KINDS:
            location = (location[0], *location[2:])
        message = {"extra_forbidden": "is not a known field", "missing": "is required"}.get(
            first["type"], first["msg"]
        )
        raise ValidationError(message, field=field_path(location) or None) from None


def parse_campaign(data: Mapping[str, Any] | CampaignInput) -> CampaignInput:
    """Validates a campaign; the error names the field (e.g. `discount.percent`)."""
    return data if isinstance(data, CampaignInput) else _validate(CampaignInput, data)


def parse_discount(raw: Mapping[str, Any]) -> DiscountRule:
    """Validates a stored or submitted discount rule."""
    return _validate(_DiscountHolder, {"discount": raw}).discount


@dataclass(frozen=True, slots=True)
class Basket:
    """What the discount applies to: the amount to pay and, optionally, its lines."""

    total: Decimal
    currency: str
    items: tuple[Item, ...] = ()


def parse_basket(
    amount: object, currency: str, items: Sequence[Mapping[str, Any]] | None = None
) -> Basket:
    """Validates a basket as a till sends it (`amount` and optional `items`)."""
    total = to_money(amount, currency, field="amount")
    if total < 0:
        raise ValidationError("must not be negative", field="amount")
    lines = tuple(
        parse_item(raw, currency, field_prefix=f"items[{index}]")
        for index, raw in enumerate(items or ())
    )
    return Basket(total=total, currency=currency, items=lines)


@dataclass(frozen=True, slots=True)
class Discount:
    """The amount a coupon takes off a basket; `applicable` False says why it took nothing."""

    amount: Decimal
    applicable: bool
    problem: str | None = None


def discount_for(
    rule: DiscountRule, basket: Basket, *, min_spend: Decimal | None = None
) -> Discount:
    """How much `rule` takes off `basket`: never negative, never more than the basket total."""
    unit = Decimal(1).scaleb(-minor_units(basket.currency))
    if min_spend is not None and basket.total < min_spend:
        return Discount(Decimal(0).quantize(unit), False, f"minimum spend is {min_spend}")
    raw, problem = _raw_discount(rule, basket)
    if problem is not None:
        return Discount(Decimal(0).quantize(unit), False, problem)
    # Rounded down to the currency unit, and capped: never more than what is being paid.
    amount = min(max(raw, Decimal(0)), basket.total).quantize(unit, rounding=ROUND_DOWN)
    return Discount(amount, True)


def _raw_discount(rule: DiscountRule, basket: Basket) -> tuple[Decimal, str | None]:
    if isinstance(rule, PercentOff):
        base = basket.total
        if rule.categories:
            base = sum(
                (item.total for item in basket.items if item.category in rule.categories),
                Decimal(0),
            )
            if not base:
                return Decimal(0), "no item of the coupon's categories in the basket"
        amount = base * rule.percent / 100
        if rule.max_amount is not None:
            amount = min(amount, rule.max_amount)
        return amount, None
    if isinstance(rule, AmountOff):
        return rule.amount, None
    if isinstance(rule, FreeItem):
        prices = _unit_prices(basket, {rule.sku})
        if not prices:
            return Decimal(0), f"no {rule.sku} in the basket"
        return sum(sorted(prices)[: rule.quantity], Decimal(0)), None
    prices = _unit_prices(basket, set(rule.skus))
    free_units = len(prices) // (rule.buy + rule.get) * rule.get
    if not free_units:
        return Decimal(0), f"buy {rule.buy + rule.get} of {', '.join(rule.skus)} to get {rule.get}"
    return sum(sorted(prices)[:free_units], Decimal(0)), None


def _unit_prices(basket: Basket, skus: set[str]) -> list[Decimal]:
    """One price per unit of the matching lines (quantities are small: a basket, not a ledger)."""
    return [
        item.unit_price for item in basket.items if item.sku in skus for _ in range(item.quantity)
    ]


def refusal(
    *,
    now: datetime,
    exists: bool,
    campaign_active: bool = True,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    uses: int = 0,
    max_uses: int | None = None,
    voided: bool = False,
    assigned_member_id: int | None = None,
    member_id: int | None = None,
) -> Reason | None:
    """The exact reason a code cannot be used now, or None if it can (budget checked apart)."""
    if not exists:
        return Reason.UNKNOWN
    if voided:
        return Reason.VOIDED
    if not campaign_active:
        return Reason.CAMPAIGN_INACTIVE
    if valid_from is not None and now < valid_from:
        return Reason.NOT_YET_VALID
    if valid_until is not None and now >= valid_until:
        return Reason.EXPIRED
    if max_uses is not None and uses >= max_uses:
        return Reason.USED_UP
    if assigned_member_id is not None and assigned_member_id != member_id:
        return Reason.OTHER_MEMBER
    return None


def code_window(
    *,
    issued_at: datetime,
    campaign_from: datetime | None,
    campaign_until: datetime | None,
    valid_days: int | None,
) -> tuple[datetime | None, datetime | None]:
    """The validity of one issued code: the campaign's, shortened to `valid_days` after issue."""
    until = campaign_until
    if valid_days is not None:
        relative = issued_at + timedelta(days=valid_days)
        until = relative if until is None else min(until, relative)
    return campaign_from, until


def period_start(period: BudgetPeriod, now: datetime, timezone: str) -> date:
    """The first day of the budget period containing `now`, in the program's timezone."""
    if period is BudgetPeriod.TOTAL:
        return date(2000, 1, 1)
    today = now.astimezone(ZoneInfo(timezone)).date()
    if period is BudgetPeriod.DAY:
        return today
    if period is BudgetPeriod.WEEK:
        return today - timedelta(days=today.weekday())
    return today.replace(day=1)
