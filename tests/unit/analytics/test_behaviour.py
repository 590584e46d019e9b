"""Purchase behaviour on a small hand-computed history (issue 4, part 1).

The history, in Madrid local time (UTC+1 until 30 March 2025):

    a: Jan 5 11:00 (10.00), Jan 20 11:00 (20.00), Mar 2 11:00 (30.00)
    b: Jan 10 11:00 (5.00), Feb 1 00:30 (5.50)   <- 2025-01-31T23:30Z: January in UTC
    c: Feb 15 11:00 (100.00), Feb 16 10:00 (1.00) <- 23 hours later: 0 days
    d: May 1 00:30 (2.25)                         <- 2025-04-30T22:30Z; April has no purchase
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from fideliza import analytics as fa
from fideliza.analytics.behaviour import (
    active_customers_of,
    buyer_summary_of,
    buyers_expr,
    cohort_retention_of,
    defection_of,
    member_activity_expr,
)
from fideliza.analytics.periods import period_start
from fideliza.core.errors import ValidationError

ROWS = [
    ("a", "2025-01-05T10:00:00Z", "10.00"),
    ("a", "2025-01-20T10:00:00Z", "20.00"),
    ("a", "2025-03-02T10:00:00Z", "30.00"),
    ("b", "2025-01-10T10:00:00Z", "5.00"),
    ("b", "2025-01-31T23:30:00Z", "5.50"),
    ("c", "2025-02-15T10:00:00+00:00", "100.00"),
    ("c", "2025-02-16T10:00:00+01:00", "1.00"),
    ("d", "2025-04-30T22:30:00Z", "2.25"),
]
NAN = float("nan")


@pytest.fixture
def tx(open_rows: Any) -> Any:
    return open_rows(ROWS, timezone="Europe/Madrid").transactions


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts, dates as `date`, NaN kept (compare with `same`)."""
    out = []
    for row in frame.to_dict("records"):
        out.append(
            {
                key: value.date() if isinstance(value, pd.Timestamp) else value
                for key, value in row.items()
            }
        )
    return out


def same(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected), actual
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float) and np.isnan(value):
                assert pd.isna(got[key]), (key, got)
            elif isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12, abs=0), (key, got)
            else:
                assert got[key] == value, (key, got)


def test_buyer_summary_separates_customers_from_one_time_buyers(tx: Any) -> None:
    same(
        records(fa.buyer_summary(tx)),
        [
            {
                "buyers": 4,
                "one_time_buyers": 1,
                "repeat_customers": 3,
                "repeat_purchase_rate": 0.75,
                "transactions": 8,
                "revenue": Decimal("173.75"),
                "purchases_per_buyer": 2.0,
            }
        ],
    )


def test_purchase_frequency_distribution(tx: Any) -> None:
    same(
        records(fa.purchase_frequency(tx)),
        [
            {"purchases": 1, "buyers": 1, "share": 0.25, "cumulative_share": 0.25},
            {"purchases": 2, "buyers": 2, "share": 0.5, "cumulative_share": 0.75},
            {"purchases": 3, "buyers": 1, "share": 0.25, "cumulative_share": 1.0},
        ],
    )


def test_inter_purchase_times_count_whole_24_hour_days(tx: Any) -> None:
    # a: 15 and 41 days; b: 21 days 13.5 hours -> 21; c: 23 hours -> 0.
    same(
        records(fa.inter_purchase_times(tx)),
        [
            {"days": 0, "intervals": 1, "share": 0.25, "cumulative_share": 0.25},
            {"days": 15, "intervals": 1, "share": 0.25, "cumulative_share": 0.5},
            {"days": 21, "intervals": 1, "share": 0.25, "cumulative_share": 0.75},
            {"days": 41, "intervals": 1, "share": 0.25, "cumulative_share": 1.0},
        ],
    )
    same(
        records(fa.inter_purchase_times(tx, bin_days=20)),
        [
            {"days": 0, "intervals": 2, "share": 0.5, "cumulative_share": 0.5},
            {"days": 20, "intervals": 1, "share": 0.25, "cumulative_share": 0.75},
            {"days": 40, "intervals": 1, "share": 0.25, "cumulative_share": 1.0},
        ],
    )
    with pytest.raises(ValidationError) as error:
        fa.inter_purchase_times(tx, bin_days=0)
    assert error.value.field == "bin_days"


def test_active_customers_per_local_month_with_an_empty_month(tx: Any) -> None:
    same(
        records(fa.active_customers(tx)),
        [
            {
                "period": date(2025, 1, 1),
                "active_customers": 2,
                "new_customers": 2,
                "returning_customers": 0,
                "transactions": 3,
                "revenue": Decimal("35.00"),
            },
            {
                "period": date(2025, 2, 1),
                "active_customers": 2,
                "new_customers": 1,
                "returning_customers": 1,
                "transactions": 3,
                "revenue": Decimal("106.50"),
            },
            {
                "period": date(2025, 3, 1),
                "active_customers": 1,
                "new_customers": 0,
                "returning_customers": 1,
                "transactions": 1,
                "revenue": Decimal("30.00"),
            },
            {
                "period": date(2025, 4, 1),
                "active_customers": 0,
                "new_customers": 0,
                "returning_customers": 0,
                "transactions": 0,
                "revenue": Decimal("0"),
            },
            {
                "period": date(2025, 5, 1),
                "active_customers": 1,
                "new_customers": 1,
                "returning_customers": 0,
                "transactions": 1,
                "revenue": Decimal("2.25"),
            },
        ],
    )


def test_months_follow_the_data_timezone(open_rows: Any) -> None:
    utc = open_rows(ROWS, timezone="UTC").transactions
    january, february = records(fa.active_customers(utc))[:2]
    assert (january["transactions"], january["revenue"]) == (4, Decimal("40.50"))
    assert (february["active_customers"], february["transactions"]) == (1, 2)


def test_defection_rate_is_the_share_of_last_periods_buyers_who_did_not_buy(tx: Any) -> None:
    same(
        records(fa.defection(tx)),
        [
            {
                "period": date(2025, 1, 1),
                "active_previous": 0,
                "retained": 0,
                "defected": 0,
                "defection_rate": NAN,
            },
            {
                "period": date(2025, 2, 1),
                "active_previous": 2,
                "retained": 1,
                "defected": 1,
                "defection_rate": 0.5,
            },
            {
                "period": date(2025, 3, 1),
                "active_previous": 2,
                "retained": 0,
                "defected": 2,
                "defection_rate": 1.0,
            },
            {
                "period": date(2025, 4, 1),
                "active_previous": 1,
                "retained": 0,
                "defected": 1,
                "defection_rate": 1.0,
            },
            {
                "period": date(2025, 5, 1),
                "active_previous": 0,
                "retained": 0,
                "defected": 0,
                "defection_rate": NAN,
            },
        ],
    )


def test_cohort_retention_by_first_purchase_month(tx: Any) -> None:
    jan, feb, may = date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)
    expected = [
        (jan, 0, 2, 2, 1.0),
        (jan, 1, 2, 1, 0.5),
        (jan, 2, 2, 1, 0.5),
        (jan, 3, 2, 0, 0.0),
        (jan, 4, 2, 0, 0.0),
        (feb, 0, 1, 1, 1.0),
        (feb, 1, 1, 0, 0.0),
        (feb, 2, 1, 0, 0.0),
        (feb, 3, 1, 0, 0.0),
        (may, 0, 1, 1, 1.0),
    ]
    names = ("cohort", "offset", "cohort_size", "active_customers", "retention")
    same(
        records(fa.cohort_retention(tx)),
        [dict(zip(names, row, strict=True)) for row in expected],
    )
    wide = fa.cohort_retention(tx, wide=True)
    assert isinstance(wide, pd.DataFrame)
    assert list(wide.columns) == ["cohort", "cohort_size", 0, 1, 2, 3, 4]
    assert wide.iloc[0, 2:].tolist() == [1.0, 0.5, 0.5, 0.0, 0.0]
    assert wide.iloc[2, 2:3].tolist() == [1.0] and wide.iloc[2, 3:].isna().all()
    polars_wide = fa.cohort_retention(tx, wide=True, output="polars")
    assert isinstance(polars_wide, pl.DataFrame)
    assert polars_wide.columns == ["cohort", "cohort_size", "0", "1", "2", "3", "4"]


def test_quarters_and_weeks(tx: Any) -> None:
    quarters = records(fa.active_customers(tx, period="quarter"))
    assert [(q["period"], q["active_customers"], q["transactions"]) for q in quarters] == [
        (date(2025, 1, 1), 3, 7),
        (date(2025, 4, 1), 1, 1),
    ]
    assert records(fa.defection(tx, period="quarter"))[1]["defection_rate"] == 1.0
    cohorts = records(fa.cohort_retention(tx, period="quarter"))
    assert [(c["offset"], c["active_customers"]) for c in cohorts] == [(0, 3), (1, 0), (0, 1)]
    weeks = records(fa.active_customers(tx, period="week"))
    # Monday 2024-12-30 (the week of Sunday 5 January) to Monday 28 April: 18 weeks.
    assert weeks[0]["period"] == date(2024, 12, 30) and weeks[-1]["period"] == date(2025, 4, 28)
    assert len(weeks) == 18
    # Distinct (member, week) pairs: a 3, b 2, c 1 (Saturday and Sunday), d 1.
    assert sum(w["active_customers"] for w in weeks) == 7


def test_polars_output_keeps_money_exact(tx: Any) -> None:
    frame = fa.active_customers(tx, output="polars")
    assert isinstance(frame, pl.DataFrame)
    assert isinstance(frame.schema["revenue"], pl.Decimal)
    assert frame["revenue"].sum() == Decimal("173.75")


def test_a_window_is_studied_by_filtering_first(tx: Any) -> None:
    february = fa.within(tx, start="2025-02-01", end=date(2025, 3, 1))
    summary = records(fa.buyer_summary(february))[0]
    assert (summary["buyers"], summary["repeat_customers"], summary["transactions"]) == (2, 1, 3)
    with pytest.raises(ValidationError) as error:
        fa.within(tx, start="2025-03-01", end="2025-02-01")
    assert error.value.field == "end"


def test_no_transactions_gives_empty_tables_not_errors(open_rows: Any) -> None:
    tx = open_rows([]).transactions
    summary = records(fa.buyer_summary(tx))[0]
    assert summary["buyers"] == 0 and summary["transactions"] == 0
    assert summary["revenue"] == Decimal(0) and pd.isna(summary["repeat_purchase_rate"])
    for frame in (
        fa.purchase_frequency(tx),
        fa.inter_purchase_times(tx),
        fa.active_customers(tx),
        fa.defection(tx),
        fa.cohort_retention(tx),
    ):
        assert len(frame) == 0


def test_unknown_period_is_refused(tx: Any) -> None:
    with pytest.raises(ValidationError) as error:
        fa.active_customers(tx, period="fortnight")
    assert error.value.field == "period"


@pytest.mark.parametrize("period", ["month", "week"])
def test_the_sections_from_per_buyer_and_per_period_tables_are_the_same(
    tx: Any, period: str
) -> None:
    """The report computes them from tables it keeps (first periods from the buyers' rows)."""
    activity = member_activity_expr(tx, period)
    buyers = buyers_expr(tx)
    unit = fa.Period(period)
    firsts = buyers.select("member_id", first_period=period_start(buyers.first_purchase_at, unit))
    pairs = activity.select("member_id", "period")
    for got, want in (
        (buyer_summary_of(buyers), fa.buyer_summary(tx)),
        (
            active_customers_of(activity, period, first_periods=firsts),
            fa.active_customers(tx, period=period),
        ),
        (defection_of(pairs, period), fa.defection(tx, period=period)),
        (
            cohort_retention_of(pairs, period, first_periods=firsts),
            fa.cohort_retention(tx, period=period),
        ),
    ):
        same(records(fa.to_frame(got)), records(want))


def test_buyers_have_their_first_and_last_purchase(tx: Any) -> None:
    frame = fa.to_frame(buyers_expr(tx).order_by("member_id"))
    assert isinstance(frame, pd.DataFrame)
    got = frame.to_dict("records")
    assert [(r["member_id"], r["purchases"], r["spend"]) for r in got] == [
        ("a", 3, Decimal("60.00")),
        ("b", 2, Decimal("10.50")),
        ("c", 2, Decimal("101.00")),
        ("d", 1, Decimal("2.25")),
    ]
    # b, in Madrid time: Jan 10 11:00 and Feb 1 00:30.
    assert got[1]["first_purchase_at"] == pd.Timestamp("2025-01-10 11:00:00")
    assert got[1]["last_purchase_at"] == pd.Timestamp("2025-02-01 00:30:00")
