"""Customer lifetime value from the customer-base models, and the per-customer summary
(frequency, recency, T, monetary value) those models read from a transactions table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from fideliza.analytics.models import GammaGamma
from fideliza.analytics.models._common import FloatArray, as_float_array, check_rfm
from fideliza.core.errors import ValidationError

TimeUnit = Literal["days", "weeks"]

_DAYS_PER_UNIT: dict[str, int] = {"days": 1, "weeks": 7}
# Time units per month, as lifetimes' customer_lifetime_value counts them.
_UNITS_PER_MONTH: dict[str, float] = {"days": 30.0, "weeks": 4.345}

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")


class PurchaseModel(Protocol):
    """A fitted purchase model (BG/NBD, Pareto/NBD): conditional expected purchases."""

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray: ...


def summarize_transactions(
    transactions: pd.DataFrame,
    *,
    calibration_end: date | datetime | str | pd.Timestamp,
    time_unit: TimeUnit = "weeks",
    customer_id_column: str = "customer_id",
    date_column: str = "date",
    amount_column: str = "amount",
) -> pd.DataFrame:
    """Builds one row per customer (frequency, recency, T, monetary_value) from transactions.

    Only transactions on or before the `calibration_end` day count. Purchases on the same day
    count as one purchase whose amount is their sum (as lifetimes does). `frequency` is the
    number of purchase days after the first, `recency` the time from the first to the last,
    `T` the time from the first to the start of the `calibration_end` day, both in `time_unit`
    (weeks are 7 days, so values are fractional); `monetary_value` is the mean amount of the
    repeat purchase days (0 without any). The index is the customer id, sorted.
    """
    if time_unit not in _DAYS_PER_UNIT:
        raise ValidationError(f"must be 'days' or 'weeks', got {time_unit!r}", field="time_unit")
    for column in (customer_id_column, date_column, amount_column):
        if column not in transactions.columns:
            raise ValidationError("column is missing from the transactions table", field=column)
    customer = transactions[customer_id_column]
    if customer.isna().any():
        raise ValidationError("must not be empty", field=customer_id_column)
    days, end_day = _days_and_end(transactions[date_column], calibration_end, field=date_column)
    try:
        amount = transactions[amount_column].astype("float64")
    except (TypeError, ValueError):
        raise ValidationError("must be numbers", field=amount_column) from None
    if not np.all(np.isfinite(amount.to_numpy())):
        raise ValidationError("must be finite numbers", field=amount_column)

    codes, ids = pd.factorize(customer, sort=True)
    keep = days <= end_day
    codes, days, amounts = codes[keep], days[keep], amount.to_numpy()[keep]
    # One argsort of a single (customer, day) int64 key, then run boundaries: faster than a
    # two-key pandas groupby or np.lexsort on millions of rows.
    first = int(days.min()) if days.size else 0
    order = np.argsort(codes * (int(end_day) - first + 1) + (days - first))
    codes, days, amounts = codes[order], days[order], amounts[order]
    day_starts = _run_starts(codes, days)
    day_codes, day_numbers = codes[day_starts], days[day_starts]
    day_amounts = np.add.reduceat(amounts, day_starts) if day_starts.size else amounts

    starts = _run_starts(day_codes)
    ends = np.append(starts[1:], day_codes.size)[: starts.size] - 1
    frequency = ends - starts
    repeat_amounts = day_amounts.copy()
    repeat_amounts[starts] = 0.0  # monetary value is the mean of the repeat purchase days
    repeat_total = np.add.reduceat(repeat_amounts, starts) if starts.size else repeat_amounts
    first_day, last_day = day_numbers[starts], day_numbers[ends]
    unit_days = _DAYS_PER_UNIT[time_unit]
    return pd.DataFrame(
        {
            "frequency": frequency.astype(np.int64),
            "recency": (last_day - first_day) / unit_days,
            "T": (end_day - first_day) / unit_days,
            "monetary_value": np.divide(
                repeat_total, frequency, out=np.zeros(starts.size), where=frequency > 0
            ),
        },
        index=pd.Index(ids[day_codes[starts]], name=customer_id_column),
    )


def customer_lifetime_value(
    purchases: PurchaseModel,
    spend: GammaGamma,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    time_unit: TimeUnit = "weeks",
) -> FloatArray:
    """Discounted expected value of each customer's purchases over the next `months`.

    Σ_{k=1..months} E[spend] · (E[Y(k·u)] − E[Y((k−1)·u)]) / (1 + d)^k, where Y is the
    purchase model's conditional expected purchases, u the time units in a month (30 days,
    4.345 weeks) and E[spend] the Gamma-Gamma conditional expected average spend, the way
    lifetimes' customer_lifetime_value computes it. `time_unit` is the unit the model was fit in.
    """
    x, t_x, age = check_rfm(frequency, recency, T)
    average_spend = spend.expected_average_spend(x, monetary_value)
    discounted, _ = discounted_expected_purchases(
        purchases,
        x,
        t_x,
        age,
        months=months,
        monthly_discount_rate=monthly_discount_rate,
        time_unit=time_unit,
    )
    return np.asarray(average_spend * discounted, dtype=np.float64)


def discounted_expected_purchases(
    purchases: PurchaseModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    time_unit: TimeUnit = "weeks",
) -> tuple[FloatArray, FloatArray]:
    """(Σ_{k=1..months} (E[Y(k·u)] − E[Y((k−1)·u)]) / (1 + d)^k, E[Y(months·u)]) per customer.

    The discounted expected purchases over the next `months` (what CLV multiplies by the
    expected spend) and the undiscounted ones; u is the time units in a month.
    """
    _check_discounting(months, monthly_discount_rate, time_unit)
    x, t_x, age = check_rfm(frequency, recency, T)
    return discount_by_month(
        lambda t: purchases.expected_purchases(t, x, t_x, age),
        x.shape,
        months=months,
        monthly_discount_rate=monthly_discount_rate,
        time_unit=time_unit,
    )


def discount_by_month(
    expected_within: Callable[[float], FloatArray],
    shape: tuple[int, ...],
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    time_unit: TimeUnit = "weeks",
) -> tuple[FloatArray, FloatArray]:
    """`discounted_expected_purchases` of any `expected_within(t)`: the expected purchases
    in the next t time units of customers in an array of `shape`."""
    rate = _check_discounting(months, monthly_discount_rate, time_unit)
    per_month = _UNITS_PER_MONTH[time_unit]
    discounted = np.zeros(shape)
    cumulative = np.zeros(shape)
    for month in range(1, months + 1):
        now = expected_within(month * per_month)
        discounted += (now - cumulative) / (1.0 + rate) ** month
        cumulative = now
    return discounted, cumulative


def _check_discounting(months: object, monthly_discount_rate: float, time_unit: str) -> float:
    """The monthly rate, after refusing a horizon below one month, a rate <= -1 or a unit."""
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise ValidationError(f"must be a whole number >= 1, got {months!r}", field="months")
    rate = float(as_float_array(monthly_discount_rate, field="monthly_discount_rate"))
    if rate <= -1.0:
        raise ValidationError("must be > -1", field="monthly_discount_rate")
    if time_unit not in _UNITS_PER_MONTH:
        raise ValidationError(f"must be 'days' or 'weeks', got {time_unit!r}", field="time_unit")
    return rate


def _run_starts(*keys: NDArray[np.int64]) -> NDArray[np.intp]:
    """Positions where any of the (sorted) key arrays changes value, starting with 0."""
    if keys[0].size == 0:
        return np.zeros(0, dtype=np.intp)
    changes = np.zeros(keys[0].size - 1, dtype=bool)
    for key in keys:
        changes |= key[1:] != key[:-1]
    return np.concatenate(([0], np.flatnonzero(changes) + 1))


def _days_and_end(
    dates: pd.Series, calibration_end: date | datetime | str | pd.Timestamp, *, field: str
) -> tuple[NDArray[np.int64], int]:
    """Returns the transactions' days and the calibration end day as day numbers (epoch days).

    Days are counted in the timezone the dates carry; an aware `calibration_end` is first
    converted to it.
    """
    try:
        stamps = pd.to_datetime(dates)
    except (TypeError, ValueError):
        raise ValidationError("must be dates or timestamps", field=field) from None
    if stamps.isna().any():
        raise ValidationError("must not be empty", field=field)
    try:
        end = pd.Timestamp(calibration_end)
    except (TypeError, ValueError):
        raise ValidationError("must be a date", field="calibration_end") from None
    if pd.isna(end):
        raise ValidationError("must be a date", field="calibration_end")
    zone = stamps.dt.tz
    if zone is not None:
        stamps = stamps.dt.tz_convert(zone).dt.tz_localize(None)
        end = end.tz_convert(zone).tz_localize(None) if end.tzinfo else end
    elif end.tzinfo is not None:
        raise ValidationError(
            "carries a timezone but the transaction dates do not", field="calibration_end"
        )
    days = stamps.to_numpy().astype("datetime64[D]").astype(np.int64)
    return days, int(np.datetime64(end.date(), "D").astype(np.int64))
