"""Purchase behaviour: who buys again, how often, how soon, and who stops (issue 4, part 1).

Every function takes a transactions table (see `sources`) and works on all of its rows: filter
it first (`periods.within`) to study a window. A *purchase* is one transaction row; a *buyer*
is a member with at least one purchase; a *customer* (a repeat buyer) one with at least two. A
period is a calendar period of the data's local time (`periods.Period`, monthly by default).

Each metric is an Ibis expression (`*_expr`, run on whatever backend holds the table) and a
function of the same name that runs it into a pandas or polars DataFrame.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd
import polars as pl

from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import (
    Period,
    as_period,
    elapsed_days,
    next_period,
    period_spine,
    period_start,
    periods_between,
)
from fideliza.core.errors import ValidationError


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """numerator / denominator as float64; null when the denominator is 0 (never an error)."""
    return numerator.cast("float64") / denominator.cast("float64").nullif(0.0)


def member_activity_expr(transactions: ir.Table, period: Period | str = "month") -> ir.Table:
    """Per member and period in which they bought: member_id, period (its start),
    transactions, revenue."""
    unit = as_period(period)
    tagged = transactions.mutate(period=period_start(transactions.occurred_at, unit))
    return tagged.group_by(["member_id", "period"]).aggregate(
        transactions=tagged.count(), revenue=tagged.amount.sum()
    )


def buyers_expr(transactions: ir.Table) -> ir.Table:
    """One row per buyer: member_id, purchases, spend, first_purchase_at, last_purchase_at."""
    return transactions.group_by("member_id").aggregate(
        purchases=transactions.count(),
        spend=transactions.amount.sum(),
        first_purchase_at=transactions.occurred_at.min(),
        last_purchase_at=transactions.occurred_at.max(),
    )


def active_member_periods(transactions: ir.Table, period: Period | str = "month") -> ir.Table:
    """The distinct (member_id, period) pairs in which a member bought (period = its start)."""
    unit = as_period(period)
    return transactions.select(
        "member_id", period=period_start(transactions.occurred_at, unit)
    ).distinct()


# --- customers vs one-time buyers -------------------------------------------------------------


def buyer_summary_expr(transactions: ir.Table) -> ir.Table:
    """One row: buyers, one_time_buyers, repeat_customers, repeat_purchase_rate, transactions,
    revenue, purchases_per_buyer.

    repeat_purchase_rate = repeat_customers / buyers (null without buyers).
    """
    members = transactions.group_by("member_id").aggregate(
        purchases=transactions.count(), spend=transactions.amount.sum()
    )
    return buyer_summary_of(members)


def buyer_summary_of(members: ir.Table) -> ir.Table:
    """`buyer_summary_expr` from one row per buyer with their `purchases` and `spend`."""
    totals = members.aggregate(
        buyers=members.count(),
        one_time_buyers=members.member_id.count(where=members.purchases == 1),
        repeat_customers=members.member_id.count(where=members.purchases >= 2),
        transactions=members.purchases.sum().fill_null(0),
        revenue=members.spend.sum(),
    )
    return totals.select(
        "buyers",
        "one_time_buyers",
        "repeat_customers",
        repeat_purchase_rate=ratio(totals.repeat_customers, totals.buyers),
        transactions=totals.transactions.cast("int64"),
        revenue=totals.revenue.fill_null(0),
        purchases_per_buyer=ratio(totals.transactions, totals.buyers),
    )


def buyer_summary(transactions: ir.Table, *, output: Output = "pandas") -> DataFrame:
    """Customers vs one-time buyers and the repeat-purchase rate, as one row."""
    return to_frame(buyer_summary_expr(transactions), output)


# --- distributions ----------------------------------------------------------------------------


def _with_shares(counts: ir.Table, key: str, count: str) -> ir.Table:
    """Adds `<count>`'s share of the total and the cumulative share in `key` order."""
    total = counts[count].sum().over(ibis.window())
    running = counts[count].sum().over(ibis.window(order_by=counts[key], rows=(None, 0)))
    return counts.mutate(share=ratio(counts[count], total), cumulative_share=ratio(running, total))


def purchase_frequency_expr(transactions: ir.Table) -> ir.Table:
    """How many buyers made each number of purchases: purchases, buyers, share, cumulative_share.

    `share` is the buyers' share of all buyers; `cumulative_share` the share with at most that
    many purchases. Ordered by purchases.
    """
    members = transactions.group_by("member_id").aggregate(purchases=transactions.count())
    counts = members.group_by("purchases").aggregate(buyers=members.count())
    return _with_shares(counts, "purchases", "buyers").order_by("purchases")


def purchase_frequency(transactions: ir.Table, *, output: Output = "pandas") -> DataFrame:
    """The purchase-frequency distribution (buyers per number of purchases)."""
    return to_frame(purchase_frequency_expr(transactions), output)


def inter_purchase_times_expr(transactions: ir.Table, *, bin_days: int = 1) -> ir.Table:
    """The distribution of days between a member's consecutive purchases.

    For each purchase after a member's first, the elapsed whole days since their previous one
    (`periods.elapsed_days`: 24-hour spans, so two purchases 23 hours apart are 0 days apart).
    Days are grouped in bins of `bin_days` (`days` is a bin's lower bound). Columns: days,
    intervals, share, cumulative_share (share of intervals at most that bin); ordered by days.
    """
    if isinstance(bin_days, bool) or not isinstance(bin_days, int) or bin_days < 1:
        raise ValidationError(f"must be a whole number >= 1, got {bin_days!r}", field="bin_days")
    previous = transactions.occurred_at.lag().over(
        ibis.window(group_by=transactions.member_id, order_by=transactions.occurred_at)
    )
    gaps = transactions.select(days=elapsed_days(transactions.occurred_at, previous))
    gaps = gaps.filter(gaps.days.notnull())
    if bin_days > 1:
        gaps = gaps.mutate(days=(gaps.days // bin_days * bin_days).cast("int64"))
    counts = gaps.group_by("days").aggregate(intervals=gaps.count())
    return _with_shares(counts, "days", "intervals").order_by("days")


def inter_purchase_times(
    transactions: ir.Table, *, bin_days: int = 1, output: Output = "pandas"
) -> DataFrame:
    """The inter-purchase time distribution (intervals per number of days)."""
    return to_frame(inter_purchase_times_expr(transactions, bin_days=bin_days), output)


# --- activity per period ----------------------------------------------------------------------


def active_customers_expr(transactions: ir.Table, *, period: Period | str = "month") -> ir.Table:
    """Per period: active_customers, new_customers, returning_customers, transactions, revenue.

    Active: bought in the period. New: their first purchase in the data is in the period.
    Returning: active but not new. Every period from the first to the last with a purchase is
    listed, empty ones with zeros. `period` is the period's start date.
    """
    unit = as_period(period)
    return active_customers_of(member_activity_expr(transactions, unit), unit)


def active_customers_of(
    activity: ir.Table, period: Period | str = "month", *, first_periods: ir.Table | None = None
) -> ir.Table:
    """`active_customers_expr` from `member_activity_expr`'s rows for the same period.

    `first_periods` (member_id, first_period: the period of each member's first purchase,
    e.g. from `buyers_expr`) spares finding them in `activity`.
    """
    unit = as_period(period)
    if first_periods is None:
        first_periods = first_periods_of(activity)
    # New customers counted per first period: no join of the (member, period) rows.
    newcomers = first_periods.group_by(period=first_periods.first_period).aggregate(
        new_customers=first_periods.count()
    )
    counts = activity.group_by("period").aggregate(
        active_customers=activity.count(),
        transactions=activity.transactions.sum(),
        revenue=activity.revenue.sum(),
    )
    spine = period_spine(counts, unit)
    joined = spine.left_join(counts, "period").select(
        "period", "active_customers", "transactions", "revenue"
    )
    joined = joined.left_join(newcomers, "period").select(
        "period", "active_customers", "transactions", "revenue", "new_customers"
    )
    active = joined.active_customers.fill_null(0)
    new = joined.new_customers.fill_null(0)
    return joined.select(
        period=joined.period.date(),
        active_customers=active.cast("int64"),
        new_customers=new.cast("int64"),
        returning_customers=(active - new).cast("int64"),
        transactions=joined.transactions.fill_null(0).cast("int64"),
        revenue=joined.revenue.fill_null(0),
    ).order_by("period")


def first_periods_of(active: ir.Table) -> ir.Table:
    """member_id, first_period: each member's first period in (member_id, period) rows."""
    return active.group_by("member_id").aggregate(first_period=active.period.min())


def active_customers(
    transactions: ir.Table, *, period: Period | str = "month", output: Output = "pandas"
) -> DataFrame:
    """Active, new and returning customers per period."""
    return to_frame(active_customers_expr(transactions, period=period), output)


def defection_expr(transactions: ir.Table, *, period: Period | str = "month") -> ir.Table:
    """Per period p: active_previous, retained, defected, defection_rate.

    active_previous = members who bought in period p−1; retained = those of them who also
    bought in p; defected = active_previous − retained; defection_rate = defected /
    active_previous (null when nobody bought in p−1, e.g. the first period). Retention in p is
    1 − defection_rate. Periods run from the first to the last period with a purchase; the
    last may be incomplete (filter the data to whole periods to avoid an inflated last rate).
    """
    unit = as_period(period)
    return defection_of(active_member_periods(transactions, unit), unit)


def defection_of(active: ir.Table, period: Period | str = "month") -> ir.Table:
    """`defection_expr` from the distinct (member_id, period) pairs of the same period."""
    unit = as_period(period)
    # Each (member, p−1) pair, moved to the period p in which it is judged.
    judged = active.select("member_id", period=next_period(active.period, unit))
    kept = active.select("member_id", "period", stayed=ibis.literal(1, type="int64"))
    joined = judged.left_join(kept, ["member_id", "period"])
    counts = joined.group_by("period").aggregate(
        active_previous=joined.count(), retained=joined.stayed.count()
    )
    spine = period_spine(active, unit)
    table = spine.left_join(counts, "period")
    previous = table.active_previous.fill_null(0).cast("int64")
    retained = table.retained.fill_null(0).cast("int64")
    return table.select(
        period=table.period.date(),
        active_previous=previous,
        retained=retained,
        defected=previous - retained,
        defection_rate=ratio(previous - retained, previous),
    ).order_by("period")


def defection(
    transactions: ir.Table, *, period: Period | str = "month", output: Output = "pandas"
) -> DataFrame:
    """The defection rate per period (share of p−1's buyers who did not buy in p)."""
    return to_frame(defection_expr(transactions, period=period), output)


# --- cohorts ----------------------------------------------------------------------------------


def cohort_retention_expr(transactions: ir.Table, *, period: Period | str = "month") -> ir.Table:
    """Retention of each first-purchase cohort: cohort, offset, cohort_size, active_customers,
    retention.

    A member's cohort is the period of their first purchase; `offset` counts periods since it
    (0 = the cohort's own period, where retention is 1); active_customers are the cohort's
    members who bought in period cohort + offset; retention = active_customers / cohort_size.
    Every offset from 0 up to the last period with a purchase is listed (zeros included).
    """
    unit = as_period(period)
    return cohort_retention_of(active_member_periods(transactions, unit), unit)


def cohort_retention_of(
    active: ir.Table, period: Period | str = "month", *, first_periods: ir.Table | None = None
) -> ir.Table:
    """`cohort_retention_expr` from the distinct (member_id, period) pairs of the same period
    (and, if known, each member's `first_periods`, as in `active_customers_of`)."""
    unit = as_period(period)
    firsts = first_periods_of(active) if first_periods is None else first_periods
    cohorts = firsts.select("member_id", cohort=firsts.first_period)
    joined = active.join(cohorts, "member_id")
    joined = joined.mutate(offset=periods_between(joined.cohort, joined.period, unit))
    counts = joined.group_by(["cohort", "offset"]).aggregate(active_customers=joined.count())
    sizes = cohorts.group_by("cohort").aggregate(cohort_size=cohorts.count())
    last = active.period.max().as_scalar()
    sizes = sizes.mutate(horizon=periods_between(sizes.cohort, last, unit))
    cells = sizes.select(
        "cohort", "cohort_size", offset=ibis.range(0, sizes.horizon + 1).unnest().cast("int64")
    )
    joined = cells.left_join(counts, ["cohort", "offset"])
    customers = joined.active_customers.fill_null(0).cast("int64")
    return joined.select(
        cohort=joined.cohort.date(),
        offset=joined.offset,
        cohort_size=joined.cohort_size.cast("int64"),
        active_customers=customers,
        retention=ratio(customers, joined.cohort_size),
    ).order_by(["cohort", "offset"])


def cohort_retention(
    transactions: ir.Table,
    *,
    period: Period | str = "month",
    wide: bool = False,
    output: Output = "pandas",
) -> DataFrame:
    """The cohort retention table by first-purchase period.

    Long form (one row per cohort and offset) by default; `wide=True` gives the classic
    triangle: one row per cohort (with its size), one retention column per offset.
    """
    long = to_frame(cohort_retention_expr(transactions, period=period), output)
    if not wide:
        return long
    if isinstance(long, pl.DataFrame):
        return long.pivot(
            on="offset", index=["cohort", "cohort_size"], values="retention", sort_columns=True
        ).sort("cohort")
    table = long.pivot(index=["cohort", "cohort_size"], columns="offset", values="retention")
    table.columns = [int(offset) for offset in table.columns]
    return pd.DataFrame(table.reset_index())
