"""A rule definition as the API takes it: the shape of `fideliza.rules.schemas.RuleDefinition`,
stated tightly enough for the OpenAPI document (decimal strings with patterns, bounded integers,
enums, no unknown fields).

The domain's parser stays the judge: what passes here is dumped back to JSON and validated by
`parse_rule_definition`, which also checks what no schema can state (min_amount ≤ max_amount,
a time window that is not empty, a date range in order, a code both included and excluded).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr

from fideliza.api.validation import MAX_POINTS
from fideliza.core.points import Rounding
from fideliza.core.validation import whole_number

# Text the domain strips and then needs non-empty: at least one character that is neither
# whitespace (as Python's str.strip sees it) nor NUL.
TEXT = r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"
MONEY = r"^(0|[1-9]\d{0,13})(\.\d{1,4})?$"  # ≥ 0, at most 4 decimals
POSITIVE_MONEY = r"^([1-9]\d{0,13}(\.\d{1,4})?|0\.\d{0,3}[1-9])$"  # > 0
FACTOR = r"^(1\.\d{0,3}[1-9]|[2-9](\.\d{1,4})?|[1-9]\d(\.\d{1,4})?|100(\.0{1,4})?)$"  # ]1, 100]
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


# Bounds before the validator, so that the schema states them as minimum and maximum.
Int = Annotated[int, Field(strict=True), BeforeValidator(whole_number)]
Points = Annotated[int, Field(strict=True, ge=1, le=MAX_POINTS), BeforeValidator(whole_number)]
CapPoints = Annotated[int, Field(strict=True, ge=0, le=MAX_POINTS), BeforeValidator(whole_number)]
Priority = Annotated[
    int, Field(strict=True, ge=-1_000_000, le=1_000_000), BeforeValidator(whole_number)
]


def iso_date(value: object) -> object:
    """A date is written YYYY-MM-DD (a JSON string): no timestamps, no datetimes."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


LocalDate = Annotated[date, BeforeValidator(iso_date)]
Code = Annotated[str, Field(min_length=1, max_length=100, pattern=TEXT)]
Codes = Annotated[list[Code], Field(max_length=200)]
SomeCodes = Annotated[list[Code], Field(min_length=1, max_length=200)]
Money = Annotated[str, Field(pattern=MONEY, examples=["20.00"])]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AttributeScalar = StrictStr | Int | StrictBool
AttributeValue = AttributeScalar | Annotated[list[AttributeScalar], Field(min_length=1)]
AttributeName = Annotated[str, Field(min_length=1, max_length=100)]
AttributeMatch = Annotated[dict[AttributeName, AttributeValue], Field(max_length=50)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemFilterIn(_Model):
    """Which basket lines count (a code may not be both included and excluded)."""

    include_skus: Codes = []
    exclude_skus: Codes = []
    include_categories: Codes = []
    exclude_categories: Codes = []
    min_quantity: Points | None = None


class TimeWindowIn(_Model):
    """Local time of day, start inclusive to end exclusive (end ≠ start; wraps midnight)."""

    start: str = Field(pattern=HHMM, examples=["08:00"])
    end: str = Field(pattern=HHMM, examples=["11:00"])


class DateRangeIn(_Model):
    """Local dates, both inclusive (end not before start); give at least one of them."""

    start: LocalDate | None = None
    end: LocalDate | None = None


class ConditionsIn(_Model):
    """All given conditions must hold; see `fideliza.rules.schemas.Conditions`."""

    min_amount: Money | None = None
    max_amount: Money | None = None
    items: ItemFilterIn | None = None
    channels: SomeCodes | None = None
    stores: SomeCodes | None = None
    weekdays: Annotated[list[Weekday], Field(min_length=1, max_length=7)] | None = None
    time_window: TimeWindowIn | None = None
    date_range: DateRangeIn | None = None
    tiers: SomeCodes | None = None
    attributes: AttributeMatch | None = None
    event_attributes: AttributeMatch | None = None
    first_purchase: StrictBool | None = None
    birthday: Literal["day", "month"] | None = None


class PointsPerAmountIn(_Model):
    """`points` × eligible amount / `per`."""

    type: Literal["points_per_amount"]
    points: Points
    per: str = Field(default="1.00", pattern=POSITIVE_MONEY)
    rounding: Rounding | None = None


class PointsPerItemIn(_Model):
    """`points` × the quantity of matching lines."""

    type: Literal["points_per_item"]
    points: Points


class FixedBonusIn(_Model):
    """`points` once per matching activity."""

    type: Literal["fixed_bonus"]
    points: Points


class MultiplierIn(_Model):
    """Adds (`factor` − 1) × the base points of the matching rules (1 < factor ≤ 100)."""

    type: Literal["multiplier"]
    factor: str = Field(pattern=FACTOR, examples=["2"])
    rounding: Rounding | None = None


ActionIn = Annotated[
    PointsPerAmountIn | PointsPerItemIn | FixedBonusIn | MultiplierIn,
    Field(discriminator="type"),
]


class CapsIn(_Model):
    """Upper bounds on what the rule gives, in points."""

    per_transaction: CapPoints | None = None
    per_day: CapPoints | None = None
    per_month: CapPoints | None = None
    per_member: CapPoints | None = None
    budget: CapPoints | None = None
    budget_period: Literal["total", "day", "month"] = "total"


class RuleDefinitionIn(_Model):
    """One version of an earning rule (schema_version 1)."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=200, pattern=TEXT, examples=["Coffee lovers"])
    priority: Priority = 100
    activity: str = Field(
        default="purchase",
        pattern=r"^[a-z_]{1,64}$",
        description='"purchase" or a custom event type ("store_visit").',
    )
    conditions: ConditionsIn = Field(default_factory=ConditionsIn)
    actions: list[ActionIn] = Field(min_length=1, max_length=20)
    caps: CapsIn | None = None
