"""Customer lifetime value at a date: BG/NBD + Gamma-Gamma fitted on the buyers before it.

    from fideliza import analytics as fa
    from fideliza.analytics.lifetime import estimate_lifetime_values

    values = estimate_lifetime_values(data.transactions, as_of="2026-01-01", months=12)
    values.purchases, values.spend          # the fitted models (time unit: weeks)
    values.clv, values.probability_alive    # one value per buyer, in `values.member_id` order
    fa.lifetime_values(data.transactions, as_of="2026-01-01")   # the same, as a DataFrame

The per-buyer summary (purchase days, first and last, spend) is an Ibis expression run where
the data lives (DuckDB, PostgreSQL, PySpark); the models are fitted in numpy/scipy. As in
`clv.summarize_transactions`, purchases on the same day count as one: `frequency` is the
purchase days after the first, `recency` the time from the first purchase day to the last,
`T` from the first purchase day to the last day before `as_of`, in weeks; `monetary_value`
the mean spend of the repeat purchase days.

Every figure is computed in an order that does not depend on the order the backend returns
rows in (exact sums, a sorted fit), so DuckDB, PostgreSQL and Spark give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from fideliza.analytics.clv import discount_by_month
from fideliza.analytics.frames import DataFrame, Output, quiet_ibis
from fideliza.analytics.models import BgNbd, GammaGamma, fit_bgnbd, fit_gamma_gamma
from fideliza.analytics.models._common import FloatArray
from fideliza.analytics.periods import local_timestamp
from fideliza.analytics.segments import rfm_expr
from fideliza.core.errors import ValidationError

DAYS_PER_WEEK = 7.0
SECONDS_PER_DAY = 86_400


class NotEstimable(ValidationError):
    """The data cannot support the models (e.g. nobody bought twice)."""


@dataclass(frozen=True, slots=True)
class LifetimeValues:
    """The fitted models and, per buyer (arrays in the same order), what they predict."""

    purchases: BgNbd
    spend: GammaGamma
    months: int
    monthly_discount_rate: float
    member_id: pa.Array
    segment: pa.Array
    frequency: NDArray[np.int64]
    recency_days: NDArray[np.int64]
    age_days: NDArray[np.int64]
    monetary_value: FloatArray
    probability_alive: FloatArray
    expected_purchases: FloatArray  # over the horizon, undiscounted
    expected_average_spend: FloatArray
    clv: FloatArray  # discounted


def end_of_data(as_of: date | datetime | str) -> datetime:
    """The midnight after the last instant before `as_of`: the end of the last day observed."""
    moment = local_timestamp(as_of, field="as_of")
    midnight = datetime.combine(moment.date(), time())
    return midnight if moment == midnight else midnight + timedelta(days=1)


def customer_base_expr(
    transactions: ir.Table, *, as_of: date | datetime | str, segments: ir.Table | None = None
) -> ir.Table:
    """Per buyer before `as_of`: RFM segment, purchase days, first/last day, spend.

    `days_before_first` and `days_before_last` count calendar days from a purchase day to the
    end of the data (1 for the last day before `as_of`); `spend` is the total, and
    `first_day_spend` what was spent on the first purchase day. `segments` (member_id,
    segment: `segments.rfm_expr` at `as_of`, computed already) spares computing them again.
    """
    moment = local_timestamp(as_of, field="as_of")
    if segments is None:
        segments = rfm_expr(transactions, as_of=moment)
    buyers = buyer_days_expr(transactions, as_of=moment)
    return buyers.join(segments.select("member_id", "segment"), "member_id")


def buyer_days_expr(transactions: ir.Table, *, as_of: date | datetime | str) -> ir.Table:
    """`customer_base_expr` without the segment (see `with_segments`)."""
    moment = local_timestamp(as_of, field="as_of")
    rows = transactions.filter(transactions.occurred_at < ibis.literal(moment, type="timestamp"))
    end = ibis.literal(end_of_data(moment), type="timestamp")
    # ceil, not floor: a purchase at any time of day d is (end − d) days back, midnight included.
    seconds = (end.epoch_seconds() - rows.occurred_at.epoch_seconds()).cast("float64")
    back = (seconds / SECONDS_PER_DAY).ceil().cast("int64")
    days = rows.group_by(rows.member_id, back=back).aggregate(day_spend=rows.amount.sum())
    return days.group_by("member_id").aggregate(
        days_before_first=days.back.max(),
        days_before_last=days.back.min(),
        purchase_days=days.count(),
        spend=days.day_spend.sum(),
        # One row per day, so the day furthest back is unique: no join back to the days.
        first_day_spend=_spend_furthest_back(days),
    )


@ibis.udf.agg.builtin(name="arg_max")
def _duckdb_arg_max(
    arg: dt.Decimal(38, 4),  # type: ignore[valid-type]  # Ibis reads the types from these
    key: dt.int64,
) -> dt.Decimal(38, 4):  # type: ignore[valid-type]
    """DuckDB's arg_max: `arg` where `key` is largest."""


def _spend_furthest_back(days: ir.Table) -> ir.DecimalValue:
    """Each buyer's `day_spend` on the day furthest back. DuckDB's own arg_max there: Ibis
    writes an argmax as FIRST(… ORDER BY …), which builds a sort key for every day (a third
    of the CLV query's time on DuckDB); the other backends take Ibis's argmax."""
    if ibis.get_backend(days).name == "duckdb":
        return _duckdb_arg_max(days.day_spend.cast(dt.Decimal(38, 4)), days.back)
    return days.day_spend.argmax(days.back)


def with_segments(buyers: pa.Table, segments: pa.Table) -> pa.Table:
    """`buyer_days_expr`'s rows, fetched, with each buyer's segment from `segments` (member_id,
    segment): `customer_base_expr`'s rows, matched in Arrow rather than joined by the
    backend. Buyers without a segment are left out, as by the join."""
    found = pc.index_in(buyers.column("member_id"), value_set=segments.column("member_id"))
    known = pc.is_valid(found)
    if not pc.all(known).as_py():
        buyers, found = buyers.filter(known), found.filter(known)
    return buyers.append_column("segment", segments.column("segment").take(found))


def check_clv_options(months: object, monthly_discount_rate: object) -> float:
    """Refuses a horizon that is not a whole number of months >= 1 or a rate <= -1."""
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise ValidationError(f"must be a whole number >= 1, got {months!r}", field="months")
    try:
        rate = float(monthly_discount_rate)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = math.nan
    if not math.isfinite(rate) or rate <= -1.0:
        raise ValidationError(
            f"must be a number > -1 (per month), got {monthly_discount_rate!r}",
            field="discount_rate",
        )
    return rate


def estimate_lifetime_values(
    transactions: ir.Table,
    *,
    as_of: date | datetime | str,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    segments: ir.Table | None = None,
) -> LifetimeValues:
    """Fits BG/NBD and Gamma-Gamma on the buyers before `as_of` and predicts `months` ahead.

    CLV = E[spend per purchase] × Σ discounted expected purchases per month (see
    `clv.customer_lifetime_value`). Repeat buyers whose repeat days sum to no positive spend
    (returns) are left out of the spend fit and get the population's mean spend.
    Raises NotEstimable when there is no repeat buyer or the spend model has no finite mean.
    `segments`: the buyers' RFM segments at `as_of`, if computed already (`customer_base_expr`).
    """
    check_clv_options(months, monthly_discount_rate)
    with quiet_ibis():
        table = customer_base_expr(transactions, as_of=as_of, segments=segments).to_pyarrow()
    return lifetime_values_of(table, months=months, monthly_discount_rate=monthly_discount_rate)


def lifetime_values_of(
    table: pa.Table, *, months: int = 12, monthly_discount_rate: float = 0.01
) -> LifetimeValues:
    """`estimate_lifetime_values` from `customer_base_expr`'s rows, fetched already (numpy
    and scipy only: no query, so it can run while the backend answers another)."""
    rate = check_clv_options(months, monthly_discount_rate)
    if table.num_rows == 0:
        raise NotEstimable("has no purchases before as_of", field="transactions")
    first = _ints(table, "days_before_first")
    last = _ints(table, "days_before_last")
    frequency = _ints(table, "purchase_days") - 1
    spend = _floats(table, "spend")
    repeat_spend = spend - _floats(table, "first_day_spend")
    if not np.any(frequency > 0):
        raise NotEstimable("no buyer bought on two different days", field="transactions")
    recency_days, age_days = first - last, first - 1
    monetary = np.divide(repeat_spend, frequency, out=np.zeros(frequency.size), where=frequency > 0)
    recency, age = recency_days / DAYS_PER_WEEK, age_days / DAYS_PER_WEEK
    purchases = fit_bgnbd(frequency, recency, age)
    spend_model = _fit_spend(frequency, monetary)
    known = (frequency > 0) & (monetary > 0)
    spend_frequency = np.where(known, frequency, 0)
    expected_spend = spend_model.expected_average_spend(
        spend_frequency, np.where(known, monetary, 0)
    )
    with np.errstate(invalid="ignore", over="ignore"):  # checked just below
        alive = purchases.probability_alive(frequency, recency, age)
        discounted, expected = _discounted_purchases(
            purchases, frequency, recency_days, age_days, months=months, rate=rate, alive=alive
        )
    clv = expected_spend * discounted
    if not (np.all(np.isfinite(clv)) and np.all(np.isfinite(alive))):
        # Parameters at the optimizer's bounds (a handful of buyers) make the closed forms
        # overflow: there is no estimate to show rather than a wrong one.
        raise NotEstimable(
            f"BG/NBD does not fit these {frequency.size} buyers (r={purchases.r:.3g}, "
            f"alpha={purchases.alpha:.3g}, a={purchases.a:.3g}, b={purchases.b:.3g})",
            field="transactions",
        )
    return LifetimeValues(
        purchases=purchases,
        spend=spend_model,
        months=months,
        monthly_discount_rate=rate,
        member_id=table.column("member_id").combine_chunks(),
        segment=table.column("segment").combine_chunks(),
        frequency=frequency,
        recency_days=recency_days,
        age_days=age_days,
        monetary_value=monetary,
        probability_alive=alive,
        expected_purchases=expected,
        expected_average_spend=expected_spend,
        clv=clv,
    )


def _fit_spend(frequency: NDArray[np.int64], monetary: FloatArray) -> GammaGamma:
    """Gamma-Gamma on the repeat buyers with a positive mean, in a fixed (sorted) order."""
    keep = (frequency > 0) & (monetary > 0)
    x, m_x = frequency[keep], monetary[keep]
    if x.size == 0:
        raise NotEstimable("no repeat buyer spent a positive amount", field="amount")
    order = np.lexsort((m_x, x))  # the fit's sums then do not depend on the rows' order
    model = fit_gamma_gamma(x[order], m_x[order])
    if model.q <= 1.0:
        raise NotEstimable(
            "the spend model has no finite mean (q <= 1): too few repeat buyers", field="amount"
        )
    return model


def _discounted_purchases(
    model: BgNbd,
    frequency: NDArray[np.int64],
    recency_days: NDArray[np.int64],
    age_days: NDArray[np.int64],
    *,
    months: int,
    rate: float,
    alive: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """`clv.discounted_expected_purchases` in weeks, per buyer.

    The expected purchases of a buyer still alive (a hypergeometric function, the costly
    part) depend on frequency and age alone: they are computed once per distinct (x, T)
    and times each buyer's P(alive) (`alive`, if computed already), the same floats as
    `BgNbd.expected_purchases` gives.
    """
    span = int(age_days.max()) + 1
    pairs, inverse = np.unique(frequency * span + age_days, return_inverse=True)
    x, t = np.divmod(pairs, span)
    weights = (
        model.probability_alive(frequency, recency_days / DAYS_PER_WEEK, age_days / DAYS_PER_WEEK)
        if alive is None
        else alive
    )

    def expected_within(horizon: float) -> FloatArray:
        if_alive = model.expected_purchases_if_alive(horizon, x, t / DAYS_PER_WEEK)
        return np.asarray(if_alive[inverse] * weights, dtype=np.float64)

    return discount_by_month(
        expected_within,
        frequency.shape,
        months=months,
        monthly_discount_rate=rate,
        time_unit="weeks",
    )


def _ints(table: pa.Table, name: str) -> NDArray[np.int64]:
    return np.asarray(table.column(name).to_numpy(), dtype=np.int64)


def _floats(table: pa.Table, name: str) -> FloatArray:
    column = table.column(name)
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(), dtype=np.float64)


def lifetime_values(
    transactions: ir.Table,
    *,
    as_of: date | datetime | str,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    output: Output = "pandas",
) -> DataFrame:
    """Per buyer before `as_of`, by member_id: segment, frequency, recency_days, age_days,
    monetary_value, probability_alive, expected_purchases, expected_average_spend, clv."""
    if output not in ("pandas", "polars"):
        raise ValidationError(f"must be 'pandas' or 'polars', got {output!r}", field="output")
    values = estimate_lifetime_values(
        transactions, as_of=as_of, months=months, monthly_discount_rate=monthly_discount_rate
    )
    table = pa.table(
        {
            "member_id": values.member_id,
            "segment": values.segment,
            "frequency": values.frequency,
            "recency_days": values.recency_days,
            "age_days": values.age_days,
            "monetary_value": values.monetary_value,
            "probability_alive": values.probability_alive,
            "expected_purchases": values.expected_purchases,
            "expected_average_spend": values.expected_average_spend,
            "clv": values.clv,
        }
    ).sort_by("member_id")
    if output == "pandas":
        return table.to_pandas()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a table, not a single column
    return frame
