"""Calendar periods and elapsed days as Ibis expressions that give the same answer on every backend.

Timestamps in the analytics tables are naive local wall-clock times (see `sources`), so a
period is a calendar period in the data's timezone. Elapsed days are whole 24-hour spans
computed from epoch seconds, `(epoch(later) - epoch(earlier)) // 86400`: backends disagree on
`date_diff` (DuckDB counts day boundaries, PySpark and Polars truncate), never on this.
"""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum

import ibis
import ibis.expr.types as ir

from fideliza.core.errors import ValidationError

SECONDS_PER_DAY = 86_400


class Period(StrEnum):
    """A calendar period; weeks start on Monday (ISO), quarters in January, April, July, October."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_TRUNCATE_UNIT = {
    Period.DAY: "D",
    Period.WEEK: "W",
    Period.MONTH: "M",
    Period.QUARTER: "Q",
    Period.YEAR: "Y",
}
_MONTHS_PER_PERIOD = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}
_DAYS_PER_PERIOD = {Period.DAY: 1, Period.WEEK: 7}


def as_period(value: Period | str, *, field: str = "period") -> Period:
    """Returns `value` as a Period, refusing anything else with an error naming `field`."""
    try:
        return Period(value)
    except ValueError:
        allowed = ", ".join(p.value for p in Period)
        raise ValidationError(f"must be one of {allowed}, got {value!r}", field=field) from None


def period_step(period: Period) -> ir.IntervalScalar:
    """The length of one period as an interval literal."""
    if period in _MONTHS_PER_PERIOD:
        return ibis.interval(months=_MONTHS_PER_PERIOD[period])
    return ibis.interval(days=_DAYS_PER_PERIOD[period])


def period_start(ts: ir.TimestampValue, period: Period) -> ir.TimestampValue:
    """The start (a midnight timestamp) of the period that contains `ts`."""
    return ts.truncate(_TRUNCATE_UNIT[period])


def next_period(start: ir.TimestampValue, period: Period) -> ir.TimestampValue:
    """The start of the period after the one starting at `start`."""
    return start + period_step(period)


def periods_between(
    first: ir.TimestampValue, later: ir.TimestampValue, period: Period
) -> ir.IntegerValue:
    """How many whole periods `later` is after `first` (both period starts): 0 for the same."""
    if period in _MONTHS_PER_PERIOD:
        months = (later.year() - first.year()) * 12 + (later.month() - first.month())
        return (months // _MONTHS_PER_PERIOD[period]).cast("int64")
    return elapsed_days(later, first) // _DAYS_PER_PERIOD[period]


def elapsed_days(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """Whole 24-hour spans from `earlier` to `later`, from epoch seconds (same on all backends)."""
    seconds = later.epoch_seconds() - earlier.epoch_seconds()
    return (seconds // SECONDS_PER_DAY).cast("int64")


def period_spine(starts: ir.Table, period: Period) -> ir.Table:
    """Every period start from the first to the last `period` value of `starts`, gaps included.

    `starts` must have a `period` column of period starts; the result has one `period` column.
    """
    bounds = starts.aggregate(first=starts.period.min(), last=starts.period.max())
    step = period_step(period)
    return bounds.select(period=ibis.range(bounds.first, bounds.last + step, step).unnest()).filter(
        ibis._.period.notnull()
    )


def local_timestamp(value: date | datetime | str, *, field: str) -> datetime:
    """A filter bound as a naive local datetime: a date means its midnight.

    The data's timestamps are local times without a zone, so an aware bound is refused rather
    than silently compared in another zone.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"is not an ISO 8601 date: {value!r}", field=field) from None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValidationError(
                "must be a date or a naive local datetime: the data's timestamps are local "
                "times in the data's timezone",
                field=field,
            )
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    raise ValidationError(f"must be a date, got {value!r}", field=field)


def within(
    table: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    column: str = "occurred_at",
) -> ir.Table:
    """The rows of `table` with `start <= column < end` (either bound optional)."""
    low = None if start is None else local_timestamp(start, field="start")
    high = None if end is None else local_timestamp(end, field="end")
    if low is not None and high is not None and low >= high:
        raise ValidationError(f"must be after start ({low:%Y-%m-%d %H:%M})", field="end")
    ts = table[column]
    if low is not None:
        table = table.filter(ts >= ibis.literal(low, type="timestamp"))
    if high is not None:
        table = table.filter(ts < ibis.literal(high, type="timestamp"))
    return table
