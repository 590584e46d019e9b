"""Tier levels, qualification windows, upgrades and period-end reviews: pure, no I/O.

The qualifying metric reaches these functions as a mapping of month (the 1st of the month, in
the program's local time) to the metric of that month, already projected on the policy's basis
(points earned, spend or purchases); the database keeps those monthly buckets.

Semantics chosen here (the service and the docs rely on them):
- A member qualifies for the highest-ranked level whose threshold is <= the metric; below the
  lowest threshold the member has no tier (`None`).
- Upgrades happen as soon as the current period's metric qualifies (`upgrade_on_activity`) and
  at a review; nothing but a review ever lowers a tier.
- At the end of each period (a calendar year, quarter or month; every month for rolling windows)
  a review keeps, upgrades or downgrades. A member who does not re-qualify keeps the tier for
  `grace_periods` consecutive failing periods; the next failing period downgrades.
- A downgrade goes straight to the level the closed period's metric qualifies for, which may be
  several levels down or no tier at all (not one step at a time): the tier then says what the
  member actually did, and the next review starts from a level the member has just met.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Any, TypeVar

from fideliza.core.errors import ValidationError

# A rolling window longer than ten years is almost certainly a typo (months vs days).
MAX_ROLLING_MONTHS = 120


class TierBasis(StrEnum):
    """What the qualifying metric counts."""

    POINTS = "points"
    SPEND = "spend"
    PURCHASES = "purchases"


class TierPeriod(StrEnum):
    """Which months count toward qualification, and how often tiers are reviewed."""

    CALENDAR_YEAR = "calendar_year"
    CALENDAR_QUARTER = "calendar_quarter"
    CALENDAR_MONTH = "calendar_month"
    ROLLING_MONTHS = "rolling_months"


class ReviewOutcome(StrEnum):
    """What a period-end review decided."""

    KEEP = "keep"  # the metric still qualifies for the current level (or no tier, and none met)
    UPGRADE = "upgrade"  # the metric qualifies for a higher level
    GRACE = "grace"  # the metric fails, but a grace period keeps the current level
    DOWNGRADE = "downgrade"  # the metric failed for longer than the grace allows


@dataclass(frozen=True, slots=True)
class TierLevel:
    """One level of a program's ladder; `threshold` is in the unit of the policy's basis."""

    code: str
    name: str
    rank: int
    threshold: Decimal
    multiplier: Decimal = Decimal(1)
    benefits: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code.strip():
            raise ValidationError(f"must be a non-empty string, got {self.code!r}", field="code")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError(f"must be a non-empty string, got {self.name!r}", field="name")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int):
            raise ValidationError(f"must be an integer, got {self.rank!r}", field="rank")
        object.__setattr__(self, "threshold", _decimal(self.threshold, field="threshold"))
        object.__setattr__(self, "multiplier", _decimal(self.multiplier, field="multiplier"))
        if self.threshold < 0:
            raise ValidationError(f"must not be negative, got {self.threshold}", field="threshold")
        if self.multiplier < 1:
            raise ValidationError(f"must be at least 1, got {self.multiplier}", field="multiplier")
        if not isinstance(self.benefits, Mapping):
            raise ValidationError("must be an object", field="benefits")


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """How a program qualifies members: the basis, the window and the grace before a downgrade.

    `months` is the length of a rolling window and must be None for calendar periods.
    """

    basis: TierBasis
    period: TierPeriod
    months: int | None = None
    grace_periods: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "basis", _enum(TierBasis, self.basis, field="policy.basis"))
        object.__setattr__(self, "period", _enum(TierPeriod, self.period, field="policy.period"))
        if self.period is TierPeriod.ROLLING_MONTHS:
            if isinstance(self.months, bool) or not isinstance(self.months, int):
                raise ValidationError(
                    f"is required (an integer) for a rolling window, got {self.months!r}",
                    field="policy.months",
                )
            if not 1 <= self.months <= MAX_ROLLING_MONTHS:
                raise ValidationError(
                    f"must be between 1 and {MAX_ROLLING_MONTHS}, got {self.months}",
                    field="policy.months",
                )
        elif self.months is not None:
            raise ValidationError(
                f"applies only to period 'rolling_months', not '{self.period}'",
                field="policy.months",
            )
        if isinstance(self.grace_periods, bool) or not isinstance(self.grace_periods, int):
            raise ValidationError(
                f"must be an integer, got {self.grace_periods!r}", field="policy.grace_periods"
            )
        if self.grace_periods < 0:
            raise ValidationError(
                f"must not be negative, got {self.grace_periods}", field="policy.grace_periods"
            )


@dataclass(frozen=True, slots=True)
class TierChange:
    """A move between tiers (`None` is no tier); the service writes it as a history row."""

    from_code: str | None
    to_code: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class TierReview:
    """The decision of a period-end review: the tier to hold next and the grace used so far."""

    outcome: ReviewOutcome
    from_code: str | None
    to_code: str | None
    grace_used: int
    reason: str

    @property
    def change(self) -> TierChange | None:
        """The tier change to record, or None when the member keeps the same tier."""
        if self.from_code == self.to_code:
            return None
        return TierChange(from_code=self.from_code, to_code=self.to_code, reason=self.reason)


# --- configuration ---------------------------------------------------------------------------


def validate_levels(
    levels: Sequence[TierLevel], *, basis: TierBasis | None = None, field: str = "levels"
) -> None:
    """Checks a ladder: unique codes and ranks, thresholds increasing with rank.

    Errors name the offending entry by its position, e.g. `levels[2].threshold`. With a basis of
    points or purchases, thresholds must also be whole numbers.
    """
    if not levels:
        raise ValidationError("must contain at least one level", field=field)
    codes: dict[str, int] = {}
    ranks: dict[int, int] = {}
    for index, level in enumerate(levels):
        if level.code in codes:
            raise ValidationError(
                f"duplicates the code of {field}[{codes[level.code]}] ({level.code!r})",
                field=f"{field}[{index}].code",
            )
        if level.rank in ranks:
            raise ValidationError(
                f"duplicates the rank of {field}[{ranks[level.rank]}] ({level.rank})",
                field=f"{field}[{index}].rank",
            )
        codes[level.code] = index
        ranks[level.rank] = index
        if basis in (TierBasis.POINTS, TierBasis.PURCHASES) and level.threshold != int(
            level.threshold
        ):
            raise ValidationError(
                f"must be a whole number for basis '{basis}', got {level.threshold}",
                field=f"{field}[{index}].threshold",
            )
    by_rank = sorted(range(len(levels)), key=lambda i: levels[i].rank)
    for lower, higher in pairwise(by_rank):
        if levels[higher].threshold <= levels[lower].threshold:
            raise ValidationError(
                f"must be greater than {levels[lower].threshold}, the threshold of the "
                f"lower-ranked level {levels[lower].code!r} ({field}[{lower}]), "
                f"got {levels[higher].threshold}",
                field=f"{field}[{higher}].threshold",
            )


def find_level(levels: Iterable[TierLevel], code: str | None) -> TierLevel | None:
    """Returns the level with `code` (None for no tier); an unknown code is an error."""
    if code is None:
        return None
    for level in levels:
        if level.code == code:
            return level
    raise ValidationError(f"is not a level of this program: {code!r}", field="current_code")


def qualifying_level(levels: Iterable[TierLevel], metric: Decimal) -> TierLevel | None:
    """Returns the highest-ranked level whose threshold is <= `metric`, or None."""
    best: TierLevel | None = None
    for level in levels:
        if level.threshold <= metric and (best is None or level.rank > best.rank):
            best = level
    return best


# --- periods and windows ---------------------------------------------------------------------


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def current_window(policy: TierPolicy, today: date) -> tuple[date, date]:
    """Returns the first and last month (1st-of-month dates, inclusive) counting toward today."""
    month = _month_start(today)
    if policy.period is TierPeriod.CALENDAR_YEAR:
        return date(today.year, 1, 1), date(today.year, 12, 1)
    if policy.period is TierPeriod.CALENDAR_QUARTER:
        first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        return first, _add_months(first, 2)
    if policy.period is TierPeriod.CALENDAR_MONTH:
        return month, month
    assert policy.months is not None  # TierPolicy requires months for a rolling window
    return _add_months(month, -(policy.months - 1)), month


def period_end(policy: TierPolicy, today: date) -> date:
    """Returns the last day of the period containing `today` (a month's end for rolling)."""
    if policy.period is TierPeriod.CALENDAR_YEAR:
        return date(today.year, 12, 31)
    if policy.period is TierPeriod.CALENDAR_QUARTER:
        return _month_end(current_window(policy, today)[1])
    # Rolling windows slide every month, so downgrades are reviewed at each month's end.
    return _month_end(today)


def window_metric(policy: TierPolicy, buckets: Mapping[date, Decimal], today: date) -> Decimal:
    """Returns the sum of the monthly buckets inside the current window.

    For a review, pass the last day of the period just closed as `today`.
    """
    first, last = current_window(policy, today)
    total = Decimal(0)
    for month, value in buckets.items():
        if month.day != 1:
            # A mid-month key means the caller bucketed by day: summing it would miscount.
            raise ValidationError(
                "bucket keys must be the 1st of a month", field=f"buckets[{month.isoformat()}]"
            )
        if first <= month <= last:
            total += value
    return total


# --- decisions -------------------------------------------------------------------------------


def _label(level: TierLevel | None) -> str:
    return "no tier" if level is None else f"{level.name} ({level.code})"


def upgrade_on_activity(
    levels: Sequence[TierLevel], current_code: str | None, metric: Decimal
) -> TierChange | None:
    """Returns the upgrade earned by the current period's `metric`, or None; never downgrades."""
    current = find_level(levels, current_code)
    target = qualifying_level(levels, metric)
    if target is None or (current is not None and target.rank <= current.rank):
        return None
    return TierChange(
        from_code=current_code,
        to_code=target.code,
        reason=(
            f"upgraded from {_label(current)} to {_label(target)}: qualifying metric {metric} "
            f"reached the threshold {target.threshold}"
        ),
    )


def review_at_period_end(
    policy: TierPolicy,
    levels: Sequence[TierLevel],
    current_code: str | None,
    closed_period_metric: Decimal,
    grace_used: int,
) -> TierReview:
    """Decides keep, upgrade, grace or downgrade from the metric of the period just closed.

    `grace_used` counts the consecutive failing periods already forgiven; re-qualifying resets it.
    """
    if isinstance(grace_used, bool) or not isinstance(grace_used, int) or grace_used < 0:
        raise ValidationError(
            f"must be a non-negative integer, got {grace_used!r}", field="grace_used"
        )
    current = find_level(levels, current_code)
    target = qualifying_level(levels, closed_period_metric)
    metric = f"{policy.basis} {closed_period_metric}"

    if target is not None and (current is None or target.rank > current.rank):
        return TierReview(
            outcome=ReviewOutcome.UPGRADE,
            from_code=current_code,
            to_code=target.code,
            grace_used=0,
            reason=(
                f"upgraded from {_label(current)} to {_label(target)}: {metric} in the closed "
                f"period reached the threshold {target.threshold}"
            ),
        )
    if current is None or (target is not None and target.rank == current.rank):
        reason = f"kept {_label(current)}: {metric} in the closed period " + (
            "is below every threshold" if current is None else f"met {current.threshold}"
        )
        return TierReview(
            outcome=ReviewOutcome.KEEP,
            from_code=current_code,
            to_code=current_code,
            grace_used=0,
            reason=reason,
        )

    failing = grace_used + 1
    shortfall = f"{metric} in the closed period is below {_label(current)}'s {current.threshold}"
    if failing <= policy.grace_periods:
        return TierReview(
            outcome=ReviewOutcome.GRACE,
            from_code=current_code,
            to_code=current_code,
            grace_used=failing,
            reason=(
                f"kept {_label(current)} on grace ({failing} of {policy.grace_periods}): "
                f"{shortfall}"
            ),
        )
    target_code = None if target is None else target.code
    return TierReview(
        outcome=ReviewOutcome.DOWNGRADE,
        from_code=current_code,
        to_code=target_code,
        grace_used=0,
        reason=(
            f"downgraded from {_label(current)} to {_label(target)}: {shortfall}"
            + (f" after {policy.grace_periods} grace period(s)" if policy.grace_periods else "")
        ),
    )


def points_to_next_tier(
    levels: Sequence[TierLevel], current_code: str | None, metric: Decimal
) -> tuple[TierLevel, Decimal] | None:
    """Returns the level above the current one and how much of the basis is still missing.

    None at the top. The missing amount is never negative: a member who already qualifies but
    has not been moved up yet (e.g. on a calendar review) is told 0.
    """
    current = find_level(levels, current_code)
    above = [level for level in levels if current is None or level.rank > current.rank]
    if not above:
        return None
    following = min(above, key=lambda level: level.rank)
    return following, max(following.threshold - metric, Decimal(0))


# --- helpers ---------------------------------------------------------------------------------


def _decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValidationError(f"must be a Decimal or an integer, got {value!r}", field=field)
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValidationError(f"must be a finite number, got {value!r}", field=field)
    return amount


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: object, *, field: str) -> _E:
    if isinstance(value, str):
        for member in kind:
            if member.value == value:
                return member
    allowed = ", ".join(repr(member.value) for member in kind)
    raise ValidationError(f"must be one of {allowed}, got {value!r}", field=field)
