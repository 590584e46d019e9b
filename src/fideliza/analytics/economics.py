"""Program economics: points liability, breakage and the return against a holdout (issue 4, part 7).

The ledger tables are those of `sources` (`entries`, `lots`); `as_of` is a date (its midnight)
or a naive local datetime, and only what happened *before* it counts.

- **Outstanding points** of a member as of a moment: the sum of the signed entries on their
  available, pending and held accounts before it (so the figure is historical, not a snapshot).
- **Liability** = outstanding points × `cost_per_point` (a Decimal: what one point costs the
  program when it is redeemed), as decimal(18, 4) money.
- **Breakage** is estimated from the lots, per *earning cohort* (the calendar month of
  `earned_at`, local time). A lot's points are *issued* (`amount`), *expired* (what the expiry
  job took, plus the remainder of a lot whose `expires_at` is at or before `as_of` but that the
  job has not reached yet: those points can no longer be spent), *outstanding* (the remainder
  of a lot not yet due) or *used* (the rest: redeemed, held for a redemption, reversed by a
  return or transferred). A cohort is **mature** when every one of its lots has an expiry and
  has reached it (`expires_at <= as_of`): nothing of it can still be redeemed. The breakage
  rate = Σ expired ÷ Σ issued over the mature cohorts; immature cohorts are shown but do not
  count. Points that lapsed while held for a redemption count as used, not expired (the lots
  table does not tell them apart); the rate is then a slight underestimate.
- **Expected breakage** applies that rate to today's outstanding points: the liability net of
  breakage = liability × (1 − rate), computed exactly in Decimal and rounded half-even to 4
  decimal places.
- **ROI against a holdout**: see `holdout_roi` (numpy) and `holdout_revenue_expr` (Ibis).

The lots are read as they are when the data is opened (`remaining` is not historical); `as_of`
decides which cohorts are mature and which lots are due. A lot earned at or after `as_of` is
left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl

from fideliza.analytics.behaviour import ratio
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import Period, local_timestamp, period_start, within
from fideliza.core.errors import ValidationError

MONEY = "decimal(18, 4)"
_FOUR_PLACES = Decimal("0.0001")
HOLDOUT_GROUPS = ("program", "holdout")


def _cost(value: Decimal, field: str = "cost_per_point") -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValidationError(f"must be a non-negative Decimal, got {value!r}", field=field)
    if value != value.quantize(_FOUR_PLACES):
        raise ValidationError(f"must have at most 4 decimal places, got {value}", field=field)
    return value


def _moment(as_of: date | datetime | str) -> ir.TimestampScalar:
    return ibis.literal(local_timestamp(as_of, field="as_of"), type="timestamp")


def _money(points: ir.IntegerValue, cost: Decimal) -> ir.DecimalValue:
    """points × cost as decimal(18, 4) (exact: the cost has at most 4 decimal places)."""
    return (points.cast("decimal(18, 0)") * ibis.literal(cost, type=MONEY)).cast(MONEY)


# --- liability --------------------------------------------------------------------------------


def member_points_expr(entries: ir.Table, *, as_of: date | datetime | str) -> ir.Table:
    """Per member with ledger entries before `as_of`: member_id, tier, available, pending, held,
    outstanding (= available + pending + held), all int64 points."""
    rows = entries.filter(entries.occurred_at < _moment(as_of))

    def kind(name: str) -> ir.IntegerValue:
        return rows.points.sum(where=rows.account_kind == name).fill_null(0).cast("int64")

    members = rows.group_by("member_id").aggregate(
        tier=rows.tier.max(),
        available=kind("available"),
        pending=kind("pending"),
        held=kind("held"),
    )
    return members.mutate(
        outstanding=(members.available + members.pending + members.held).cast("int64")
    ).order_by("member_id")


def member_points(
    entries: ir.Table, *, as_of: date | datetime | str, output: Output = "pandas"
) -> DataFrame:
    """Each member's outstanding points as of `as_of`, by account."""
    return to_frame(member_points_expr(entries, as_of=as_of), output)


def points_liability_expr(
    entries: ir.Table,
    *,
    as_of: date | datetime | str,
    cost_per_point: Decimal,
    by_tier: bool = False,
) -> ir.Table:
    """The points liability as of `as_of`: one row (or one per tier, ordered, null tier last).

    Columns: [tier,] members (with outstanding points ≠ 0), available, pending, held,
    outstanding_points (int64) and liability = outstanding_points × cost_per_point
    (decimal(18, 4)). `tier` is the member's current tier (null when they have none).
    """
    cost = _cost(cost_per_point)
    members = member_points_expr(entries, as_of=as_of)
    metrics = {
        "members": members.member_id.count(where=members.outstanding != 0),
        "available": members.available.sum().fill_null(0).cast("int64"),
        "pending": members.pending.sum().fill_null(0).cast("int64"),
        "held": members.held.sum().fill_null(0).cast("int64"),
        "outstanding_points": members.outstanding.sum().fill_null(0).cast("int64"),
    }
    if by_tier:
        totals = members.group_by("tier").aggregate(**metrics)
        ordered = totals.order_by(totals.tier.isnull(), totals.tier)
    else:
        ordered = members.aggregate(**metrics)
    return ordered.mutate(
        members=ordered.members.cast("int64"),
        liability=_money(ordered.outstanding_points, cost),
    )


def points_liability(
    entries: ir.Table,
    *,
    as_of: date | datetime | str,
    cost_per_point: Decimal,
    by_tier: bool = False,
    output: Output = "pandas",
) -> DataFrame:
    """Outstanding points × cost per point, in total or per tier (see `points_liability_expr`)."""
    expr = points_liability_expr(
        entries, as_of=as_of, cost_per_point=cost_per_point, by_tier=by_tier
    )
    return to_frame(expr, output)


# --- breakage ---------------------------------------------------------------------------------


def breakage_cohorts_expr(lots: ir.Table, *, as_of: date | datetime | str) -> ir.Table:
    """Per earning cohort (month of earned_at): cohort, lots, issued, expired, outstanding, used
    (int64 points; issued = expired + outstanding + used), mature (bool), last_expiry (the
    latest expires_at, null when a lot never expires) and breakage_rate = expired ÷ issued
    (float64; null unless the cohort is mature). See the module for the definitions."""
    moment = _moment(as_of)
    rows = lots.filter(lots.earned_at < moment)
    due = rows.expires_at.notnull() & (rows.expires_at <= moment)
    rows = rows.mutate(
        cohort=period_start(rows.earned_at, Period.MONTH),
        gone=(rows.expired.fill_null(0) + ibis.ifelse(due, rows.remaining, 0)).cast("int64"),
        open=ibis.ifelse(due, 0, rows.remaining).cast("int64"),
        waiting=ibis.ifelse(due, 0, 1),
        never=ibis.ifelse(rows.expires_at.isnull(), 1, 0),
    )
    cohorts = rows.group_by("cohort").aggregate(
        lots=rows.count(),
        issued=rows.amount.sum().cast("int64"),
        expired=rows.gone.sum().cast("int64"),
        outstanding=rows.open.sum().cast("int64"),
        not_due=rows.waiting.sum(),
        never=rows.never.sum(),
        last_expiry=rows.expires_at.max(),
    )
    mature = cohorts.not_due == 0
    return cohorts.select(
        "cohort",
        lots=cohorts.lots.cast("int64"),
        issued=cohorts.issued,
        expired=cohorts.expired,
        outstanding=cohorts.outstanding,
        used=(cohorts.issued - cohorts.expired - cohorts.outstanding).cast("int64"),
        mature=mature,
        last_expiry=ibis.ifelse(cohorts.never > 0, ibis.null("timestamp"), cohorts.last_expiry),
        breakage_rate=ibis.ifelse(
            mature, ratio(cohorts.expired, cohorts.issued), ibis.null("float64")
        ),
    ).order_by("cohort")


def breakage_cohorts(
    lots: ir.Table, *, as_of: date | datetime | str, output: Output = "pandas"
) -> DataFrame:
    """Issued, expired, outstanding and used points per earning month, with maturity."""
    return to_frame(breakage_cohorts_expr(lots, as_of=as_of), output)


def breakage_rate_expr(lots: ir.Table, *, as_of: date | datetime | str) -> ir.Table:
    """One row over the mature cohorts: mature_cohorts, issued, expired (int64) and
    breakage_rate = expired ÷ issued (float64, null when no cohort is mature)."""
    cohorts = breakage_cohorts_expr(lots, as_of=as_of)
    mature = cohorts.filter(cohorts.mature)
    totals = mature.aggregate(
        mature_cohorts=mature.count(),
        issued=mature.issued.sum().fill_null(0).cast("int64"),
        expired=mature.expired.sum().fill_null(0).cast("int64"),
    )
    return totals.mutate(
        mature_cohorts=totals.mature_cohorts.cast("int64"),
        breakage_rate=ratio(totals.expired, totals.issued),
    )


def breakage_rate(
    lots: ir.Table, *, as_of: date | datetime | str, output: Output = "pandas"
) -> DataFrame:
    """The breakage rate estimated from the mature cohorts, as one row."""
    return to_frame(breakage_rate_expr(lots, as_of=as_of), output)


def expected_liability(
    entries: ir.Table,
    lots: ir.Table,
    *,
    as_of: date | datetime | str,
    cost_per_point: Decimal,
    by_tier: bool = False,
    output: Output = "pandas",
) -> DataFrame:
    """The liability with the expected breakage taken off, in total or per tier.

    The liability's columns (`points_liability_expr`), plus: breakage_rate (float64, from
    `breakage_rate_expr`; the same rate for every tier), expected_breakage_points =
    outstanding_points × expired ÷ issued (Decimal, 4 places) and net_liability = liability ×
    (issued − expired) ÷ issued (Decimal, 4 places). Without a mature cohort there is no
    estimate: the rate is null and net_liability equals liability.
    """
    liability = to_frame(
        points_liability_expr(entries, as_of=as_of, cost_per_point=cost_per_point, by_tier=by_tier)
    )
    rate = to_frame(breakage_rate_expr(lots, as_of=as_of))
    assert isinstance(liability, pd.DataFrame) and isinstance(rate, pd.DataFrame)
    issued, expired = int(rate["issued"].iloc[0]), int(rate["expired"].iloc[0])
    share = Decimal(expired) / Decimal(issued) if issued else Decimal(0)
    frame = liability.copy()
    frame["breakage_rate"] = float(rate["breakage_rate"].iloc[0]) if issued else np.nan
    breakage = [
        (Decimal(int(points)) * share).quantize(_FOUR_PLACES, ROUND_HALF_EVEN)
        for points in frame["outstanding_points"]
    ]
    net = [
        (Decimal(value) * (1 - share)).quantize(_FOUR_PLACES, ROUND_HALF_EVEN)
        for value in frame["liability"]
    ]
    frame["expected_breakage_points"] = pd.Series(breakage, index=frame.index, dtype=object)
    frame["net_liability"] = pd.Series(net, index=frame.index, dtype=object)
    return frame if output == "pandas" else pl.from_pandas(frame)


# --- ROI against a holdout --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgramCost:
    """What the program cost over the period: points redeemed (at cost), rewards, running."""

    points: Decimal = Decimal(0)
    rewards: Decimal = Decimal(0)
    running: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.points + self.rewards + self.running


@dataclass(frozen=True, slots=True)
class HoldoutRoi:
    """The program's return against its holdout group (see `holdout_roi`)."""

    members: int
    holdout: int
    member_mean: float
    holdout_mean: float
    incremental_revenue: float
    incremental_margin: float
    cost: float
    roi: float
    roi_low: float
    roi_high: float
    confidence: float
    resamples: int
    seed: int


def _values(values: npt.ArrayLike, field: str) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValidationError("must hold at least one member", field=field)
    if not np.all(np.isfinite(array)):
        raise ValidationError("must hold finite numbers only", field=field)
    return array


def holdout_roi(
    member_revenue: npt.ArrayLike,
    holdout_revenue: npt.ArrayLike,
    *,
    cost: ProgramCost | Decimal | float,
    margin_rate: float = 1.0,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> HoldoutRoi:
    """The program's ROI from per-member revenue of program members and of a holdout group.

    Both arrays hold one value per member of the group over the same period, zeros included
    for members who bought nothing (`holdout_revenue_expr` gives them). Pass margins and
    margin_rate=1 to work on margin directly.

    - incremental_revenue = (mean(member_revenue) − mean(holdout_revenue)) × members: what the
      program's members spent beyond what they would have, judged by the holdout;
    - incremental_margin = incremental_revenue × margin_rate;
    - roi = (incremental_margin − cost) / cost, cost = `ProgramCost.total` (must be > 0).

    The interval is a percentile bootstrap: `resamples` times, each group is resampled with
    replacement to its own size (numpy `default_rng(seed)`, members first, then the holdout,
    in one (resamples, n) draw each) and the ROI recomputed; roi_low and roi_high are the
    (1 − confidence)/2 and (1 + confidence)/2 quantiles (numpy's default linear interpolation).
    The same inputs and seed always give the same interval.
    """
    members = _values(member_revenue, "member_revenue")
    holdout = _values(holdout_revenue, "holdout_revenue")
    total = cost.total if isinstance(cost, ProgramCost) else cost
    spent = float(total)
    if not spent > 0:
        raise ValidationError(f"must be positive, got {total}", field="cost")
    if not 0 < confidence < 1:
        raise ValidationError(f"must be between 0 and 1, got {confidence}", field="confidence")
    if resamples < 1:
        raise ValidationError(f"must be at least 1, got {resamples}", field="resamples")
    if not np.isfinite(margin_rate):
        raise ValidationError(f"must be a finite number, got {margin_rate}", field="margin_rate")
    n = members.size

    def roi_of(
        member_mean: npt.NDArray[np.float64], holdout_mean: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        return ((member_mean - holdout_mean) * n * margin_rate - spent) / spent

    rng = np.random.default_rng(seed)
    member_means = members[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    holdout_means = holdout[rng.integers(0, holdout.size, size=(resamples, holdout.size))].mean(
        axis=1
    )
    spread = roi_of(member_means, holdout_means)
    low, high = np.quantile(spread, [(1 - confidence) / 2, (1 + confidence) / 2])
    member_mean, holdout_mean = float(members.mean()), float(holdout.mean())
    incremental = (member_mean - holdout_mean) * n
    return HoldoutRoi(
        members=n,
        holdout=int(holdout.size),
        member_mean=member_mean,
        holdout_mean=holdout_mean,
        incremental_revenue=incremental,
        incremental_margin=incremental * margin_rate,
        cost=spent,
        roi=(incremental * margin_rate - spent) / spent,
        roi_low=float(low),
        roi_high=float(high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def holdout_revenue_expr(
    transactions: ir.Table,
    groups: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
) -> ir.Table:
    """Per member of `groups` (member_id, group ∈ 'program' | 'holdout'): member_id, group,
    purchases (int64) and revenue (decimal(18, 4)) from the transactions in [start, end);
    members who bought nothing get 0. Ordered by group then member_id."""
    rows = within(transactions, start=start, end=end)
    spend = rows.group_by("member_id").aggregate(purchases=rows.count(), revenue=rows.amount.sum())
    assigned = groups.select("member_id", "group")
    joined = assigned.left_join(spend, "member_id")
    return joined.select(
        member_id=assigned.member_id,
        group=assigned.group,
        purchases=joined.purchases.fill_null(0).cast("int64"),
        revenue=joined.revenue.fill_null(0).cast(MONEY),
    ).order_by("group", "member_id")


def holdout_revenue(
    transactions: ir.Table,
    groups: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    output: Output = "pandas",
) -> DataFrame:
    """Each member's revenue in the period with their group (see `holdout_revenue_expr`)."""
    return to_frame(holdout_revenue_expr(transactions, groups, start=start, end=end), output)


def holdout_roi_from(
    revenue: pd.DataFrame,
    *,
    cost: ProgramCost | Decimal | float,
    margin_rate: float = 1.0,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> HoldoutRoi:
    """`holdout_roi` on the frame `holdout_revenue` returns (groups 'program' and 'holdout')."""
    unknown = set(revenue["group"]) - set(HOLDOUT_GROUPS)
    if unknown:
        raise ValidationError(
            f"must be 'program' or 'holdout', got {', '.join(sorted(map(str, unknown)))}",
            field="group",
        )
    values = revenue["revenue"].astype("float64")
    return holdout_roi(
        values[revenue["group"] == "program"].to_numpy(),
        values[revenue["group"] == "holdout"].to_numpy(),
        cost=cost,
        margin_rate=margin_rate,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
