"""Referral payloads: the program's referral configuration and what a referral reads as."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fideliza.core.validation import WholeNumber
from fideliza.referrals.domain import CapPeriod, Trigger

Points = Annotated[WholeNumber, Field(ge=0, le=1_000_000_000)]


class ReferralCap(BaseModel):
    """At most `max_referrals` rewarded-or-pending referrals per referrer per `period`."""

    model_config = ConfigDict(extra="forbid")

    max_referrals: Annotated[WholeNumber, Field(ge=1, le=1_000_000)]
    period: CapPeriod = CapPeriod.MONTH


class ReferralConfig(BaseModel):
    """Who gets what, and when.

    `trigger`: `enrolment`, or `first_purchase` — the referred member's first purchase whose
    amount (less what was returned) is at least `min_purchase_amount`. Rewards are paid once the
    program's return window has passed since the trigger.
    """

    model_config = ConfigDict(extra="forbid")

    active: bool = True
    trigger: Trigger = Trigger.FIRST_PURCHASE
    min_purchase_amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4)] = Decimal(
        0
    )
    referrer_points: Points = 0
    referred_points: Points = 0
    cap: ReferralCap | None = None

    @model_validator(mode="after")
    def _rewards_someone(self) -> ReferralConfig:
        if self.referrer_points == 0 and self.referred_points == 0:
            raise ValueError("give referrer_points, referred_points or both (> 0)")
        if self.trigger is Trigger.ENROLMENT and self.min_purchase_amount:
            raise ValueError("min_purchase_amount only applies to the first_purchase trigger")
        return self


class ReferralRead(BaseModel):
    """A referral as the API shows it."""

    id: int
    referrer_member_id: int
    referred_member_id: int
    state: str
    reject_reason: str | None
    linked_at: datetime
    qualified_at: datetime | None
    due_at: datetime | None
    rewarded_at: datetime | None
    referrer_points: int
    referred_points: int
