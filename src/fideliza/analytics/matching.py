"""The program's return without a holdout: members against matched non-members (issue 4, part 7).

When no members were held out at random, non-members (customers whose purchases carry no
program membership, e.g. identified by card or e-mail at the till) are the comparison. The two
groups differ before the program too, so they are compared only within **strata** of the same
pre-period behaviour — exact matching on:

- `cohort`: the calendar month of the customer's first purchase (before `program_start`);
- `band`: the pre-period frequency band, the number of `bands` thresholds the count of
  purchases in [pre_start, program_start) reaches (bands=(1, 2, 4): 0 → band 0, 1 → 1, 2–3 →
  2, 4+ → 3).

Customers with no purchase before `program_start` cannot be matched and are left out. The
estimate, per stratum s with both groups present (`matched_roi`):

    incremental_revenue = Σ_s n_members_s × (mean member revenue_s − mean comparison revenue_s)

i.e. what the matched members spent in [program_start, end) beyond what comparable
non-members did; members in strata without a comparison are counted as `unmatched_members`.
The interval is a stratified percentile bootstrap (each group resampled within its stratum).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from fideliza.analytics.economics import MONEY, ProgramCost
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import Period, local_timestamp, period_start, within
from fideliza.core.errors import ValidationError

MATCHED_GROUPS = ("program", "comparison")
DEFAULT_BANDS = (1, 2, 4)

Moment = date | datetime | str


def _bands(bands: tuple[int, ...]) -> tuple[int, ...]:
    if not bands or any(not isinstance(b, int) or b < 1 for b in bands):
        raise ValidationError(f"must be positive whole numbers, got {bands!r}", field="bands")
    if list(bands) != sorted(set(bands)):
        raise ValidationError(f"must be strictly increasing, got {bands!r}", field="bands")
    return bands


def matched_customers_expr(
    transactions: ir.Table,
    members: ir.Table,
    *,
    pre_start: Moment,
    program_start: Moment,
    end: Moment,
    bands: tuple[int, ...] = DEFAULT_BANDS,
) -> ir.Table:
    """Per customer who bought before `program_start`: member_id, group ('program' when the id
    is in `members.member_id`, else 'comparison'), cohort (month of first purchase), band,
    pre_purchases (in [pre_start, program_start)), purchases and revenue (decimal(18, 4)) in
    [program_start, end), 0 when none. Ordered by group, member_id."""
    thresholds = _bands(bands)
    start = local_timestamp(program_start, field="program_start")
    if local_timestamp(pre_start, field="pre_start") >= start:
        raise ValidationError("must be before program_start", field="pre_start")
    history = within(transactions, end=start)
    before = history.group_by("member_id").aggregate(first=history.occurred_at.min())
    pre = within(transactions, start=pre_start, end=start)
    pre_counts = pre.group_by("member_id").aggregate(pre_purchases=pre.count())
    post = within(transactions, start=start, end=end)
    post_totals = post.group_by("member_id").aggregate(
        purchases=post.count(), revenue=post.amount.sum()
    )
    ids = members.select(member_id=members.member_id.cast("string")).distinct()
    ids = ids.mutate(is_member=ibis.literal(1))
    joined = (
        before.left_join(pre_counts, "member_id")
        .select(before.member_id, before.first, pre_counts.pre_purchases)
        .left_join(post_totals, "member_id")
        .select("member_id", "first", "pre_purchases", post_totals.purchases, post_totals.revenue)
    )
    joined = joined.left_join(ids, joined.member_id.cast("string") == ids.member_id).select(
        joined.member_id, "first", "pre_purchases", "purchases", "revenue", ids.is_member
    )
    frequency = joined.pre_purchases.fill_null(0)
    band = sum(
        (ibis.ifelse(frequency >= threshold, 1, 0) for threshold in thresholds[1:]),
        ibis.ifelse(frequency >= thresholds[0], 1, 0),
    )
    return joined.select(
        "member_id",
        group=ibis.ifelse(joined.is_member.notnull(), "program", "comparison"),
        cohort=period_start(joined.first, Period.MONTH),
        band=band.cast("int64"),
        pre_purchases=frequency.cast("int64"),
        purchases=joined.purchases.fill_null(0).cast("int64"),
        revenue=joined.revenue.fill_null(0).cast(MONEY),
    ).order_by("group", "member_id")


def matched_customers(
    transactions: ir.Table,
    members: ir.Table,
    *,
    pre_start: Moment,
    program_start: Moment,
    end: Moment,
    bands: tuple[int, ...] = DEFAULT_BANDS,
    output: Output = "pandas",
) -> DataFrame:
    """Each customer with their group, stratum and revenue (see `matched_customers_expr`)."""
    expr = matched_customers_expr(
        transactions, members, pre_start=pre_start, program_start=program_start, end=end,
        bands=bands,
    )  # fmt: skip
    return to_frame(expr, output)


@dataclass(frozen=True, slots=True)
class MatchedRoi:
    """The program's return against matched non-members (see `matched_roi`)."""

    strata: int
    members: int
    comparison: int
    unmatched_members: int
    incremental_revenue: float
    incremental_per_member: float
    incremental_low: float
    incremental_high: float
    incremental_margin: float
    cost: float
    roi: float
    roi_low: float
    roi_high: float
    confidence: float
    resamples: int
    seed: int


def matched_roi(
    customers: pd.DataFrame,
    *,
    cost: ProgramCost | Decimal | float,
    margin_rate: float = 1.0,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> MatchedRoi:
    """The stratified estimate on the frame `matched_customers` returns (see the module).

    incremental_margin = incremental_revenue × margin_rate; roi = (incremental_margin − cost)
    / cost. The bootstrap draws, with numpy `default_rng(seed)`, stratum by stratum in
    (cohort, band) order, members then comparison, `resamples` × n indices each; the bounds are
    the (1 − confidence)/2 and (1 + confidence)/2 quantiles, of the incremental revenue per
    matched member and of the ROI.
    """
    unknown = set(customers["group"]) - set(MATCHED_GROUPS)
    if unknown:
        raise ValidationError(
            f"must be 'program' or 'comparison', got {', '.join(sorted(map(str, unknown)))}",
            field="group",
        )
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
    rng = np.random.default_rng(seed)
    point = 0.0
    spread = np.zeros(resamples)
    strata = members = comparison = unmatched = 0
    for _key, stratum in customers.groupby(["cohort", "band"], sort=True):
        revenue = stratum["revenue"].astype("float64").to_numpy()
        mine = revenue[(stratum["group"] == "program").to_numpy()]
        theirs = revenue[(stratum["group"] == "comparison").to_numpy()]
        if mine.size == 0:
            continue
        if theirs.size == 0:
            unmatched += mine.size
            continue
        strata, members, comparison = strata + 1, members + mine.size, comparison + theirs.size
        point += mine.size * (mine.mean() - theirs.mean())
        mine_means = mine[rng.integers(0, mine.size, size=(resamples, mine.size))].mean(axis=1)
        their_means = theirs[rng.integers(0, theirs.size, size=(resamples, theirs.size))].mean(
            axis=1
        )
        spread += mine.size * (mine_means - their_means)
    if members == 0:
        raise ValidationError(
            "has no member with a comparable non-member (same first-purchase month and "
            "frequency band)",
            field="customers",
        )
    quantiles = [(1 - confidence) / 2, (1 + confidence) / 2]
    low, high = np.quantile(spread, quantiles)
    roi_low, roi_high = np.quantile((spread * margin_rate - spent) / spent, quantiles)
    return MatchedRoi(
        strata=strata,
        members=members,
        comparison=comparison,
        unmatched_members=unmatched,
        incremental_revenue=point,
        incremental_per_member=point / members,
        incremental_low=float(low) / members,
        incremental_high=float(high) / members,
        incremental_margin=point * margin_rate,
        cost=spent,
        roi=(point * margin_rate - spent) / spent,
        roi_low=float(roi_low),
        roi_high=float(roi_high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
