"""Program economics on small hand-computed ledgers: liability, breakage, ROI against a holdout."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fideliza import analytics as fa
from fideliza.core.errors import ValidationError

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

TRANSACTIONS = pa.table(
    {
        "member_id": ["a", "a", "b"],
        "occurred_at": ["2025-01-10T10:00:00Z", "2025-03-05T10:00:00Z", "2025-02-01T10:00:00Z"],
        "amount": ["10", "5", "20"],
    }
)
# member, occurred_at, account_kind, points, transaction_kind, tier
ENTRIES = [
    ("a", "2025-01-10T10:00:00Z", "available", 100, "earn", "gold"),
    ("a", "2025-02-05T10:00:00Z", "available", -30, "redeem", "gold"),
    ("a", "2025-03-01T10:00:00Z", "available", -20, "reserve", "gold"),
    ("a", "2025-03-01T10:00:00Z", "held", 20, "reserve", "gold"),
    ("b", "2025-02-20T10:00:00Z", "pending", 40, "earn", "silver"),
    ("b", "2025-03-10T10:00:00Z", "pending", -40, "unlock", "silver"),
    ("b", "2025-03-10T10:00:00Z", "available", 40, "unlock", "silver"),
    ("b", "2025-03-20T10:00:00Z", "available", -10, "expire", "silver"),
    ("c", "2025-01-05T10:00:00Z", "available", 25, "earn", None),
    ("c", "2025-01-20T10:00:00Z", "available", -25, "redeem", None),
    ("d", "2025-05-01T10:00:00Z", "available", 10, "earn", "gold"),
]
# member, earned_at, expires_at, amount, remaining, expired, state
LOTS = [
    ("a", "2024-01-10T10:00:00Z", "2024-07-10T10:00:00Z", 100, 0, 40, "expired"),
    ("a", "2024-01-20T10:00:00Z", "2024-07-20T10:00:00Z", 50, 10, 0, "available"),  # due
    ("b", "2024-02-05T10:00:00Z", "2025-02-05T10:00:00Z", 200, 0, 20, "expired"),
    ("b", "2024-12-01T10:00:00Z", "2025-06-01T10:00:00Z", 80, 30, 0, "available"),
    ("c", "2024-12-15T10:00:00Z", "2025-03-15T10:00:00Z", 20, 5, 0, "available"),  # due
    ("c", "2025-01-10T10:00:00Z", None, 60, 60, 0, "available"),  # never expires
    ("d", "2025-04-05T10:00:00Z", "2025-10-05T10:00:00Z", 10, 10, 0, "pending"),  # after as_of
]
AS_OF = "2025-04-01"
CENT = Decimal("0.01")


def entries_frame() -> pd.DataFrame:
    columns = ["member_id", "occurred_at", "account_kind", "points", "transaction_kind", "tier"]
    return pd.DataFrame(ENTRIES, columns=columns)


def lots_frame() -> pd.DataFrame:
    columns = ["member_id", "earned_at", "expires_at", "amount", "remaining", "expired", "state"]
    return pd.DataFrame(LOTS, columns=columns)


@pytest.fixture
def data() -> Iterator[fa.AnalyticsData]:
    with fa.open_frames(TRANSACTIONS, entries=entries_frame(), lots=lots_frame()) as opened:
        yield opened


def rows(frame: Any) -> list[tuple[Any, ...]]:
    """The rows as tuples, missing values (None, NaN, NaT) as None."""
    assert isinstance(frame, pd.DataFrame)
    return [
        tuple(None if pd.api.types.is_scalar(v) and pd.isna(v) else v for v in row)
        for row in frame.itertuples(index=False)
    ]


def test_the_ledger_tables_have_their_schema(data: fa.AnalyticsData) -> None:
    assert data.entries is not None and data.lots is not None
    for table, schema in ((data.entries, fa.ENTRIES_SCHEMA), (data.lots, fa.LOTS_SCHEMA)):
        got = table.schema()
        assert got.names == schema.names
        for name in schema.names:
            if schema[name].is_timestamp():
                assert got[name].is_timestamp() and got[name].timezone is None
            else:
                assert got[name] == schema[name], name


def test_member_points_sum_the_accounts_before_as_of(data: fa.AnalyticsData) -> None:
    assert data.entries is not None
    assert rows(fa.member_points(data.entries, as_of="2025-03-01")) == [
        ("a", "gold", 70, 0, 0, 70),
        ("b", "silver", 0, 40, 0, 40),
        ("c", None, 0, 0, 0, 0),
    ]
    assert rows(fa.member_points(data.entries, as_of=AS_OF)) == [
        ("a", "gold", 50, 0, 20, 70),
        ("b", "silver", 30, 0, 0, 30),
        ("c", None, 0, 0, 0, 0),
    ]


def test_points_liability_in_total_and_per_tier(data: fa.AnalyticsData) -> None:
    assert data.entries is not None
    total: Any = fa.points_liability(data.entries, as_of=AS_OF, cost_per_point=CENT)
    assert list(total.columns) == [
        "members",
        "available",
        "pending",
        "held",
        "outstanding_points",
        "liability",
    ]
    assert rows(total) == [(2, 80, 0, 20, 100, Decimal("1.0000"))]
    tiers: Any = fa.points_liability(data.entries, as_of=AS_OF, cost_per_point=CENT, by_tier=True)
    assert rows(tiers) == [
        ("gold", 1, 50, 0, 20, 70, Decimal("0.7000")),
        ("silver", 1, 30, 0, 0, 30, Decimal("0.3000")),
        (None, 0, 0, 0, 0, 0, Decimal("0.0000")),
    ]


@pytest.mark.parametrize("cost", [Decimal("-1"), Decimal("0.00001"), 0.01, Decimal("NaN")])
def test_the_cost_per_point_must_be_a_small_decimal(data: fa.AnalyticsData, cost: Any) -> None:
    assert data.entries is not None
    with pytest.raises(ValidationError) as error:
        fa.points_liability(data.entries, as_of=AS_OF, cost_per_point=cost)
    assert error.value.field == "cost_per_point"


def test_breakage_per_earning_cohort(data: fa.AnalyticsData) -> None:
    assert data.lots is not None
    frame: Any = fa.breakage_cohorts(data.lots, as_of=AS_OF)
    assert list(frame.columns) == [
        "cohort",
        "lots",
        "issued",
        "expired",
        "outstanding",
        "used",
        "mature",
        "last_expiry",
        "breakage_rate",
    ]
    got = rows(frame)
    assert [r[:7] for r in got] == [
        (pd.Timestamp("2024-01-01"), 2, 150, 50, 0, 100, True),
        (pd.Timestamp("2024-02-01"), 1, 200, 20, 0, 180, True),
        (pd.Timestamp("2024-12-01"), 2, 100, 5, 30, 65, False),
        (pd.Timestamp("2025-01-01"), 1, 60, 0, 60, 0, False),
    ]
    assert [r[7] for r in got] == [
        pd.Timestamp("2024-07-20 10:00"),
        pd.Timestamp("2025-02-05 10:00"),
        pd.Timestamp("2025-06-01 10:00"),
        None,
    ]
    rates = frame["breakage_rate"].tolist()
    assert rates[:2] == [50 / 150, 20 / 200] and all(np.isnan(rates[2:]))


def test_breakage_rate_counts_the_mature_cohorts_only(data: fa.AnalyticsData) -> None:
    assert data.lots is not None
    assert rows(fa.breakage_rate(data.lots, as_of=AS_OF)) == [(2, 350, 70, 0.2)]
    # Before July 2024 no cohort had reached its expiry: no estimate.
    early: Any = fa.breakage_rate(data.lots, as_of="2024-07-01")
    assert early["mature_cohorts"].tolist() == [0] and np.isnan(early["breakage_rate"].iloc[0])


def test_expected_liability_takes_the_breakage_off(data: fa.AnalyticsData) -> None:
    assert data.entries is not None and data.lots is not None
    total: Any = fa.expected_liability(data.entries, data.lots, as_of=AS_OF, cost_per_point=CENT)
    assert rows(total[["outstanding_points", "liability", "breakage_rate"]]) == [
        (100, Decimal("1.0000"), 0.2)
    ]
    assert total["expected_breakage_points"].tolist() == [Decimal("20.0000")]
    assert total["net_liability"].tolist() == [Decimal("0.8000")]
    tiers: Any = fa.expected_liability(
        data.entries, data.lots, as_of=AS_OF, cost_per_point=CENT, by_tier=True
    )
    assert tiers["expected_breakage_points"].tolist() == [
        Decimal("14.0000"),
        Decimal("6.0000"),
        Decimal("0.0000"),
    ]
    assert tiers["net_liability"].tolist() == [
        Decimal("0.5600"),
        Decimal("0.2400"),
        Decimal("0.0000"),
    ]


def test_without_a_mature_cohort_the_liability_is_kept_whole(data: fa.AnalyticsData) -> None:
    assert data.entries is not None and data.lots is not None
    frame: Any = fa.expected_liability(
        data.entries, data.lots, as_of="2024-07-01", cost_per_point=CENT, output="polars"
    )
    assert frame["net_liability"].to_list() == frame["liability"].to_list()


def test_ledger_files_are_read_and_checked(tmp_path: Path) -> None:
    transactions = tmp_path / "purchases.csv"
    pd.DataFrame(
        {"member_id": ["a"], "occurred_at": ["2025-01-10T10:00:00Z"], "amount": ["1"]}
    ).to_csv(transactions, index=False)
    lots = tmp_path / "lots.csv"
    frame = lots_frame().drop(columns=["expired", "state"])
    frame.to_csv(lots, index=False)
    entries = tmp_path / "entries.csv"
    entries_frame().to_csv(entries, index=False)
    with fa.open_files(transactions, entries=entries, lots=lots) as data:
        assert data.lots is not None and data.entries is not None
        # Without an expired column nothing expired but the due remainders.
        assert rows(fa.breakage_rate(data.lots, as_of=AS_OF)) == [(2, 350, 10, 10 / 350)]
        liability: Any = fa.points_liability(data.entries, as_of=AS_OF, cost_per_point=CENT)
        assert liability["outstanding_points"].tolist() == [100]
    frame.loc[1, "expires_at"] = "soon"
    frame.to_csv(lots, index=False)
    with pytest.raises(ValidationError) as error:
        fa.open_files(transactions, lots=lots)
    assert error.value.field == "expires_at" and "'soon'" in str(error.value)
    bad = entries_frame().astype({"points": "object"})
    bad.loc[2, "points"] = "ten"
    bad.to_csv(entries, index=False)
    with pytest.raises(ValidationError) as error:
        fa.open_files(transactions, entries=entries)
    assert error.value.field == "points"
    bad = entries_frame()
    bad.loc[0, "account_kind"] = "issuance"
    with pytest.raises(ValidationError) as error:
        fa.open_frames(TRANSACTIONS, entries=bad)
    assert error.value.field == "account_kind"


# --- ROI against a holdout --------------------------------------------------------------------

COST = fa.ProgramCost(points=Decimal("4"), rewards=Decimal("3"), running=Decimal("3"))


def test_holdout_roi_by_hand() -> None:
    result = fa.holdout_roi([10, 20, 30, 40], [10, 20], cost=COST, margin_rate=0.5, resamples=500)
    # Means 25 and 15: 10 more per member × 4 members = 40 of revenue, 20 of margin, cost 10.
    assert (result.members, result.holdout) == (4, 2)
    assert (result.member_mean, result.holdout_mean) == (25.0, 15.0)
    assert (result.incremental_revenue, result.incremental_margin, result.cost) == (40, 20, 10)
    assert result.roi == 1.0
    assert result.roi_low <= result.roi <= result.roi_high
    again = fa.holdout_roi([10, 20, 30, 40], [10, 20], cost=COST, margin_rate=0.5, resamples=500)
    assert again == result


def test_holdout_roi_bootstrap_is_the_documented_one() -> None:
    members, holdout = np.array([3.0, 0.0, 7.0, 12.0, 1.0]), np.array([2.0, 0.0, 4.0])
    result = fa.holdout_roi(members, holdout, cost=2.0, confidence=0.9, resamples=200, seed=7)
    rng = np.random.default_rng(7)
    m = members[rng.integers(0, 5, size=(200, 5))].mean(axis=1)
    h = holdout[rng.integers(0, 3, size=(200, 3))].mean(axis=1)
    spread = ((m - h) * 5 - 2.0) / 2.0
    assert (result.roi_low, result.roi_high) == tuple(
        np.quantile(spread, [(1 - 0.9) / 2, (1 + 0.9) / 2])
    )


def test_identical_members_give_a_point_interval() -> None:
    result = fa.holdout_roi([25.0] * 4, [15.0] * 3, cost=COST, margin_rate=0.5, resamples=50)
    assert result.roi_low == result.roi == result.roi_high == 1.0


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"cost": Decimal(0)}, "cost"),
        ({"cost": 1.0, "confidence": 1.0}, "confidence"),
        ({"cost": 1.0, "resamples": 0}, "resamples"),
        ({"cost": 1.0, "margin_rate": float("nan")}, "margin_rate"),
    ],
)
def test_holdout_roi_refuses_bad_parameters(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        fa.holdout_roi([1.0], [1.0], **arguments)
    assert error.value.field == field
    with pytest.raises(ValidationError) as error:
        fa.holdout_roi([], [1.0], cost=1.0)
    assert error.value.field == "member_revenue"


def test_holdout_revenue_splits_the_transactions_by_group(data: fa.AnalyticsData) -> None:
    groups = fa.sources.ibis.memtable(
        {"member_id": ["a", "b", "c", "d"], "group": ["program", "holdout", "holdout", "program"]}
    )
    frame: Any = fa.holdout_revenue(data.transactions, groups, start="2025-01-01", end="2025-03-01")
    assert rows(frame) == [
        ("b", "holdout", 1, Decimal("20.0000")),
        ("c", "holdout", 0, Decimal("0.0000")),
        ("a", "program", 1, Decimal("10.0000")),
        ("d", "program", 0, Decimal("0.0000")),
    ]
    assert isinstance(frame, pd.DataFrame)
    # Members 10 and 0 (mean 5), holdout 20 and 0 (mean 10): −5 × 2 members = −10; cost 1.
    result = fa.holdout_roi_from(frame, cost=Decimal(1), resamples=20)
    assert (result.incremental_revenue, result.roi) == (-10.0, -11.0)
    with pytest.raises(ValidationError) as error:
        fa.holdout_roi_from(frame.assign(group="members"), cost=1.0)
    assert error.value.field == "group"
