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
import ibis.expr.types as ir
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from fideliza.analytics.clv import discounted_expected_purchases
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


def customer_base_expr(transactions: ir.Table, *, as_of: date | datetime | str) -> ir.Table:
    """Per buyer before `as_of`: RFM segment, purchase days, first/last day, spend.

    `days_before_first` and `days_before_last` count calendar days from a purchase day to the
    end of the data (1 for the last day before `as_of`); `spend` is the total, and
    `first_day_spend` what was spent on the first purchase day.
    """
    moment = local_timestamp(as_of, field="as_of")
    rows = transactions.filter(transactions.occurred_at < ibis.literal(moment, type="timestamp"))
    end = ibis.literal(end_of_data(moment), type="timestamp")
    # ceil, not floor: a purchase at any time of day d is (end − d) days back, midnight included.
    seconds = (end.epoch_seconds() - rows.occurred_at.epoch_seconds()).cast("float64")
    back = (seconds / SECONDS_PER_DAY).ceil().cast("int64")
    days = rows.group_by(rows.member_id, back=back).aggregate(day_spend=rows.amount.sum())
    buyers = days.group_by("member_id").aggregate(
        days_before_first=days.back.max(),
        days_before_last=days.back.min(),
        purchase_days=days.count(),
        spend=days.day_spend.sum(),
        # One row per day, so the day furthest back is unique: no join back to the days.
        first_day_spend=days.day_spend.argmax(days.back),
    )
    segments = rfm_expr(transactions, as_of=moment).select("member_id", "segment")
    return buyers.join(segments, "member_id")


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
) -> LifetimeValues:
    """Fits BG/NBD and Gamma-Gamma on the buyers before `as_of` and predicts `months` ahead.

    CLV = E[spend per purchase] × Σ discounted expected purchases per month (see
    `clv.customer_lifetime_value`). Repeat buyers whose repeat days sum to no positive spend
    (returns) are left out of the spend fit and get the population's mean spend.
    Raises NotEstimable when there is no repeat buyer or the spend model has no finite mean.
    """
    rate = check_clv_options(months, monthly_discount_rate)
    with quiet_ibis():
        table = customer_base_expr(transactions, as_of=as_of).to_pyarrow()
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
        discounted, expected = _discounted_purchases(
            purchases, frequency, recency_days, age_days, months=months, rate=rate
        )
        alive = purchases.probability_alive(frequency, recency, age)
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
) -> tuple[FloatArray, FloatArray]:
    """`clv.discounted_expected_purchases`, evaluated once per distinct (x, t_x, T) in days."""
    span = int(age_days.max()) + 1
    key = (frequency * span + recency_days) * span + age_days
    unique, inverse = np.unique(key, return_inverse=True)
    x, rest = np.divmod(unique, span * span)
    t_x, t = np.divmod(rest, span)
    discounted, expected = discounted_expected_purchases(
        model,
        x,
        t_x / DAYS_PER_WEEK,
        t / DAYS_PER_WEEK,
        months=months,
        monthly_discount_rate=rate,
        time_unit="weeks",
    )
    return discounted[inverse], expected[inverse]


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
