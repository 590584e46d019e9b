"""Rewards input and output: the catalog entry, its changes, redemptions and a member's catalog."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from fideliza.core.validation import Timestamp, WholeNumber, whole_number
from fideliza.rewards.domain import KINDS_WITH_VALUE, Period, RewardKind

MAX_POINTS = 10**12
_FOUR_PLACES = Decimal("0.0001")
PositivePoints = Annotated[WholeNumber, Field(gt=0, le=MAX_POINTS)]
Count = Annotated[WholeNumber, Field(ge=0, le=2**31 - 1)]
PositiveCount = Annotated[WholeNumber, Field(gt=0, le=2**31 - 1)]


def _not_float(value: object) -> object:
    value = whole_number(value)  # 5.0 is the JSON integer 5
    if isinstance(value, float):
        raise ValueError('must be written as a string, such as "12.50" (never a float)')
    return value


# Money as a string or an integer, never a float; four decimals at most (the columns' scale).
Amount = Annotated[
    Decimal,
    BeforeValidator(_not_float),
    Field(gt=0, max_digits=18, decimal_places=4, allow_inf_nan=False),
    AfterValidator(lambda value: value.quantize(_FOUR_PLACES)),  # as the database gives it back
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 10**14 - 1},
                {
                    "type": "string",
                    # Above zero: 14 digits at most before the point, 4 after it.
                    "pattern": r"^0*([1-9][0-9]{0,13}(\.[0-9]{1,4})?"
                    r"|0?\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$",
                    "examples": ["12.50"],
                },
            ]
        }
    ),
]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
TierCode = Annotated[str, Field(min_length=1, max_length=32)]


class _Terms(BaseModel):
    """Fields shared by a new reward and a change to one (None: not given)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    tier_costs: dict[TierCode, PositivePoints] | None = None
    eligible_tiers: list[TierCode] | None = Field(default=None, max_length=50)
    stock: Count | None = None
    limit_per_member: PositiveCount | None = None
    limit_period: Period | None = None
    available_from: Timestamp | None = None
    available_until: Timestamp | None = None
    budget_points: PositivePoints | None = None
    budget_money: Amount | None = None
    budget_period: Period | None = None
    value: Amount | None = None
    campaign_id: Annotated[WholeNumber, Field(gt=0, le=2**63 - 1)] | None = None
    attributes: dict[str, Any] | None = None
    active: bool | None = None

    @field_validator("available_from", "available_until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


class RewardCreate(_Terms):
    """A new catalog entry. `stock` omitted: unlimited."""

    code: Code
    name: str = Field(min_length=1, max_length=200)
    kind: RewardKind
    points_cost: PositivePoints

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind in KINDS_WITH_VALUE and self.value is None:
            raise ValueError(f"`value` is required for a {self.kind} reward (the amount it gives)")
        if self.budget_money is not None and self.value is None:
            raise ValueError(
                "`value` is required with `budget_money` (what each redemption spends)"
            )
        if self.kind is RewardKind.DISCOUNT and self.campaign_id is None:
            raise ValueError("`campaign_id` is required for a discount reward (its coupons)")
        return self


def _not_nullable(*names: str) -> Callable[[dict[str, Any]], None]:
    """States in the schema that these fields, if given, are not null (the service refuses it)."""

    def amend(schema: dict[str, Any]) -> None:
        for name in names:
            field = schema["properties"][name]
            branches = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
            field.update(branches[0])

    return amend


class RewardUpdate(_Terms):
    """A change to a catalog entry: only the fields given change (`null` clears a limit)."""

    model_config = ConfigDict(
        json_schema_extra=_not_nullable(
            "name", "points_cost", "limit_period", "budget_period", "active"
        )
    )

    points_cost: PositivePoints | None = None


class RewardRead(BaseModel):
    """A catalog entry as stored."""

    id: int
    code: str
    name: str
    description: str | None
    kind: str
    points_cost: int
    tier_costs: dict[str, int]
    eligible_tiers: list[str]
    stock: int | None
    limit_per_member: int | None
    limit_period: str
    available_from: datetime | None
    available_until: datetime | None
    budget_points: int | None
    budget_money: Decimal | None
    budget_period: str
    value: Decimal | None
    campaign_id: int | None
    attributes: dict[str, Any]
    active: bool
    created_at: datetime
    updated_at: datetime


class RedemptionRead(BaseModel):
    """A redemption: `held` (points and stock reserved) → `captured`, `released` or `expired`."""

    id: int
    reward_id: int
    reward_code: str
    kind: str
    member_id: int
    reference: str
    status: str
    points: int
    value: Decimal | None
    hold_id: int
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None
    attributes: dict[str, Any]
    fulfilment: dict[str, Any]


class CatalogEntry(BaseModel):
    """A reward as one member sees it now."""

    reward: RewardRead
    points_cost: int = Field(description="What this member pays (their tier's price)")
    affordable: bool
    points_missing: int
    eligible: bool
    reason_code: str | None = None
    reason: str | None = None


class MemberCatalog(BaseModel):
    """The catalog for a member: what they can afford and take, and the next reward in reach."""

    member_id: int
    tier_code: str | None
    points_available: int
    rewards: list[CatalogEntry]
    next_reward: CatalogEntry | None
