"""Rewards, pure: kinds, periods, the points a member pays and whether they may redeem now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo


class RewardKind(StrEnum):
    """What a reward gives, and so how a captured redemption is fulfilled."""

    GIFT = "gift"  # a physical item: the redemption is the record of what to hand over
    DISCOUNT = "discount"  # issues a coupon of a coupon campaign
    EXPERIENCE = "experience"  # an event, a training session, a publication, club access
    CASHBACK = "cashback"  # credits the member's e-wallet with the reward's value
    CHARITY = "charity"  # a donation in the member's name


class RedemptionStatus(StrEnum):
    """`held` (points and stock reserved), then `captured`, `released` or `expired`, once."""

    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class Period(StrEnum):
    """A calendar period in the program's time zone (`ever` is one period without end)."""

    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday first
    MONTH = "month"
    YEAR = "year"
    EVER = "ever"


class Refusal(StrEnum):
    """Why a member may not redeem a reward now (stable codes for clients)."""

    INACTIVE = "reward_inactive"
    NOT_YET_AVAILABLE = "reward_not_yet_available"
    NO_LONGER_AVAILABLE = "reward_no_longer_available"
    TIER = "reward_tier_not_eligible"
    OUT_OF_STOCK = "reward_out_of_stock"
    MEMBER_LIMIT = "reward_member_limit_reached"
    BUDGET_SPENT = "reward_budget_spent"


# Kinds whose fulfilment moves money: their `value` is required (and counts for money budgets).
KINDS_WITH_VALUE = frozenset({RewardKind.CASHBACK, RewardKind.CHARITY})


@dataclass(frozen=True, slots=True)
class Terms:
    """What decides who may redeem a reward, when, and for how many points."""

    points_cost: int
    active: bool = True
    tier_costs: Mapping[str, int] = field(default_factory=dict)
    eligible_tiers: Sequence[str] = ()  # empty: every member, with or without a tier
    stock: int | None = None  # None: unlimited
    limit_per_member: int | None = None
    limit_period: Period = Period.EVER
    available_from: datetime | None = None
    available_until: datetime | None = None
    budget_points: int | None = None
    budget_money: Decimal | None = None
    budget_period: Period = Period.EVER
    value: Decimal | None = None

    def cost_for(self, tier_code: str | None) -> int:
        """The points a member of `tier_code` pays (the tier's price, else the base price)."""
        if tier_code is not None and tier_code in self.tier_costs:
            return self.tier_costs[tier_code]
        return self.points_cost


@dataclass(frozen=True, slots=True)
class Usage:
    """What has been used up so far: by this member in the limit's period, and of the budget."""

    member_redemptions: int = 0
    budget_points_spent: int = 0
    budget_money_spent: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the member may redeem now, and if not, why (a code and a sentence)."""

    refusal: Refusal | None = None
    reason: str | None = None

    @property
    def eligible(self) -> bool:
        return self.refusal is None


ELIGIBLE = Verdict()


def judge(terms: Terms, *, tier_code: str | None, now: datetime, usage: Usage) -> Verdict:
    """Whether a member of `tier_code` may redeem a reward with `terms` at `now`.

    Affordability is not judged here: it depends on the balance, read under the member's lock.
    """
    if not terms.active:
        return Verdict(Refusal.INACTIVE, "the reward is not active")
    if terms.available_from is not None and now < terms.available_from:
        return Verdict(
            Refusal.NOT_YET_AVAILABLE,
            f"the reward is available from {terms.available_from.isoformat()}",
        )
    if terms.available_until is not None and now >= terms.available_until:
        return Verdict(
            Refusal.NO_LONGER_AVAILABLE,
            f"the reward was available until {terms.available_until.isoformat()}",
        )
    if terms.eligible_tiers and tier_code not in terms.eligible_tiers:
        tiers = ", ".join(terms.eligible_tiers)
        held = f"tier {tier_code!r}" if tier_code else "no tier"
        return Verdict(Refusal.TIER, f"the reward is for tiers {tiers}; the member has {held}")
    if terms.stock is not None and terms.stock <= 0:
        return Verdict(Refusal.OUT_OF_STOCK, "the reward is out of stock")
    if terms.limit_per_member is not None and usage.member_redemptions >= terms.limit_per_member:
        per = "in total" if terms.limit_period is Period.EVER else f"per {terms.limit_period}"
        return Verdict(
            Refusal.MEMBER_LIMIT,
            f"the member has redeemed it {usage.member_redemptions} times; "
            f"the limit is {terms.limit_per_member} {per}",
        )
    if not budget_allows(terms, usage=usage, tier_code=tier_code):
        return Verdict(Refusal.BUDGET_SPENT, f"the reward's budget {_budget_span(terms)} is spent")
    return ELIGIBLE


def budget_allows(terms: Terms, *, usage: Usage, tier_code: str | None) -> bool:
    """Whether one more redemption fits in the reward's budgets of the current period."""
    points = usage.budget_points_spent + terms.cost_for(tier_code)
    if terms.budget_points is not None and points > terms.budget_points:
        return False
    money = usage.budget_money_spent + (terms.value or Decimal(0))
    return terms.budget_money is None or money <= terms.budget_money


def _budget_span(terms: Terms) -> str:
    return "in total" if terms.budget_period is Period.EVER else f"for this {terms.budget_period}"


def period_window(
    period: Period, now: datetime, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """The [start, end) of the local calendar period holding `now`, in UTC (None: unbounded)."""
    if period is Period.EVER:
        return None, None
    today = now.astimezone(zone).date()
    if period is Period.DAY:
        start, end = today, today + timedelta(days=1)
    elif period is Period.WEEK:
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    elif period is Period.MONTH:
        start = today.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        start = today.replace(month=1, day=1)
        end = start.replace(year=start.year + 1)
    return _local_midnight(start, zone), _local_midnight(end, zone)


def period_key(period: Period, now: datetime, zone: ZoneInfo) -> str:
    """A stable name of the local period holding `now` (`2025-03`, `2025-W11`, `ever`, …)."""
    if period is Period.EVER:
        return "ever"
    today = now.astimezone(zone).date()
    if period is Period.DAY:
        return today.isoformat()
    if period is Period.WEEK:
        year, week, _ = today.isocalendar()
        return f"{year}-W{week:02d}"
    if period is Period.MONTH:
        return f"{today.year}-{today.month:02d}"
    return str(today.year)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Offer:
    """A reward as one member sees it: its price for them and whether they can take it now."""

    reward_id: int
    points_cost: int
    verdict: Verdict
    points_available: int

    @property
    def affordable(self) -> bool:
        return self.points_available >= self.points_cost

    @property
    def points_missing(self) -> int:
        return max(0, self.points_cost - self.points_available)


def next_within_reach(offers: Sequence[Offer]) -> Offer | None:
    """The eligible reward the member cannot afford yet that needs the fewest more points."""
    waiting = [o for o in offers if o.verdict.eligible and not o.affordable]
    return min(waiting, key=lambda o: (o.points_missing, o.reward_id), default=None)
