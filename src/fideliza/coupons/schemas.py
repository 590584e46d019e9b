"""Coupon payloads for the API and CLI: what comes in, what is shown."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fideliza.coupons.domain import CampaignInput


class CampaignCreate(CampaignInput):
    """A new campaign (see `CampaignInput` for each field)."""


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool


class BudgetRead(BaseModel):
    period_start: str
    points_spent: int
    money_spent: Decimal
    points_budget: int | None
    money_budget: Decimal | None
    exhausted: bool


class CampaignRead(BaseModel):
    id: int
    code: str
    name: str
    description: str | None
    discount: dict[str, Any]
    min_spend: Decimal | None
    max_uses_per_code: int | None
    once_per_member: bool
    valid_from: datetime | None
    valid_until: datetime | None
    code_valid_days: int | None
    code_prefix: str
    code_bits: int
    trigger: str
    trigger_min_amount: Decimal | None
    return_policy: str
    budget_period: str
    points_per_code: int
    active: bool
    created_at: datetime
    budget: BudgetRead | None = None


class GenerateIn(BaseModel):
    """How many unassigned codes to generate (the API returns them: at most 10,000 a call)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=10_000, strict=True)


class GeneratedRead(BaseModel):
    campaign_id: int
    count: int
    codes: list[str]


class IssueIn(BaseModel):
    """Issue one code of the campaign to a member (a CRM action, a gift)."""

    model_config = ConfigDict(extra="forbid")

    member_id: int | None = Field(default=None, ge=1, strict=True)
    source: str = Field(default="api", min_length=1, max_length=30)


class IssuedRead(BaseModel):
    id: int
    code: str
    campaign_id: int
    member_id: int | None
    valid_until: datetime | None


class BasketLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, strict=True)
    unit_price: str = Field(min_length=1, max_length=20)
    category: str | None = Field(default=None, max_length=64)


class CouponCheckIn(BaseModel):
    """A code and the basket it is for (amounts as decimal strings, in the program currency)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=80)
    amount: str = Field(min_length=1, max_length=20)
    items: list[BasketLineIn] = Field(default_factory=list, max_length=500)
    member_id: int | None = Field(default=None, ge=1, strict=True)


class CouponRedeemIn(CouponCheckIn):
    """Use the code on a purchase; `purchase_id` is the till's transaction id (a retry with
    the same code and purchase replays the first redemption)."""

    purchase_id: str | None = Field(default=None, min_length=1, max_length=100)


class QuoteRead(BaseModel):
    code: str
    campaign: str
    discount: Decimal
    currency: str


class RedemptionRead(BaseModel):
    id: int
    code: str
    campaign: str
    discount: Decimal
    currency: str
    purchase_id: str | None
    replayed: bool


class CodeIn(BaseModel):
    """A code, in a body so that it stays out of URLs and access logs."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=80)


class CodeStateRead(BaseModel):
    """The admin's view: the exact state (`usable`, `expired`, `used_up`, `unknown` …)."""

    code: str
    found: bool
    state: str
    campaign: str | None
    member_id: int | None
    uses: int
    max_uses: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    source: str | None
    redemptions: list[dict[str, Any]]
