"""Customer lifetime value from the customer-base models, and the per-customer summary
(frequency, recency, T, monetary value) those models read from a transactions table.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

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

    frame = pd.DataFrame({"customer": customer, "day": days, "amount": amount})
    frame = frame[frame["day"] <= end_day]
    daily = frame.groupby(["customer", "day"], sort=True, as_index=False)["amount"].sum()
    by_customer = daily.groupby("customer", sort=True)
    first_day = by_customer["day"].min()
    last_day = by_customer["day"].max()
    frequency = by_customer["day"].count() - 1
    is_repeat = daily["day"].to_numpy() != first_day.reindex(daily["customer"]).to_numpy()
    repeat_mean = daily[is_repeat].groupby("customer", sort=True)["amount"].mean()

    unit_days = _DAYS_PER_UNIT[time_unit]
    summary = pd.DataFrame(
        {
            "frequency": frequency.astype("int64"),
            "recency": (last_day - first_day).dt.days / unit_days,
            "T": (end_day - first_day).dt.days / unit_days,
            "monetary_value": repeat_mean.reindex(first_day.index, fill_value=0.0),
        }
    )
    summary.index.name = customer_id_column
    return summary.astype({"recency": "float64", "T": "float64", "monetary_value": "float64"})


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
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise ValidationError(f"must be a whole number >= 1, got {months!r}", field="months")
    rate = float(as_float_array(monthly_discount_rate, field="monthly_discount_rate"))
    if rate <= -1.0:
        raise ValidationError("must be > -1", field="monthly_discount_rate")
    if time_unit not in _UNITS_PER_MONTH:
        raise ValidationError(f"must be 'days' or 'weeks', got {time_unit!r}", field="time_unit")
    x, t_x, age = check_rfm(frequency, recency, T)
    average_spend = spend.expected_average_spend(x, monetary_value)
    per_month = _UNITS_PER_MONTH[time_unit]

    value = np.zeros(np.broadcast_shapes(x.shape, average_spend.shape))
    cumulative = np.zeros_like(value)
    for month in range(1, months + 1):
        now = purchases.expected_purchases(month * per_month, x, t_x, age)
        value += average_spend * (now - cumulative) / (1.0 + rate) ** month
        cumulative = now
    return value


def _days_and_end(
    dates: pd.Series, calibration_end: date | datetime | str | pd.Timestamp, *, field: str
) -> tuple[pd.Series, pd.Timestamp]:
    """Returns the transactions' days and the calibration end day, both as naive midnights.

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
    return stamps.dt.normalize(), end.normalize()
