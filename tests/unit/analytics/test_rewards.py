"""Reward cost and effort vs reward on small hand-computed data (DuckDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fideliza import analytics as fa
from fideliza.core.errors import ValidationError

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

TRANSACTIONS = pd.DataFrame(
    [
        ("a", "2025-01-10T10:00:00Z", "100.00"),
        ("a", "2025-02-10T10:00:00Z", "60.00"),
        ("b", "2025-01-15T10:00:00Z", "80.00"),
        ("c", "2025-01-20T10:00:00Z", "40.00"),
        ("e", "2025-01-25T10:00:00Z", "25.00"),  # no ledger entries: no tier
    ],
    columns=["member_id", "occurred_at", "amount"],
)
ENTRIES = pd.DataFrame(
    [
        ("a", "2025-01-10T10:00:00Z", "available", 100, "earn", "gold"),
        ("a", "2025-02-10T10:00:00Z", "pending", 30, "earn", "gold"),
        ("a", "2025-02-20T10:00:00Z", "pending", -30, "unlock", "gold"),  # not earned again
        ("a", "2025-02-20T10:00:00Z", "available", 30, "unlock", "gold"),
        ("b", "2025-01-15T10:00:00Z", "available", 80, "earn", "gold"),
        ("b", "2025-01-30T10:00:00Z", "available", -50, "redeem", "gold"),
        ("c", "2025-01-20T10:00:00Z", "available", 40, "earn", "silver"),
        ("c", "2025-01-25T10:00:00Z", "available", -10, "reverse", "silver"),  # a return
        ("d", "2025-01-05T10:00:00Z", "available", 500, "adjust", "silver"),  # not through spend
        ("f", "2025-01-03T10:00:00Z", "available", 5, "earn", None),  # earned by an event
    ],
    columns=["member_id", "occurred_at", "account_kind", "points", "transaction_kind", "tier"],
)
REDEMPTIONS = pd.DataFrame(
    [
        ("a", "2025-01-05T10:00:00Z", "coffee", "gift", 100, None),
        ("b", "2025-01-20T10:00:00Z", "coffee", "gift", 150, None),
        # 23:30 UTC on 31 January is 00:30 on 1 February in Madrid.
        ("a", "2025-01-31T23:30:00Z", "cash5", "cashback", 500, "5.00"),
        ("c", "2025-02-10T10:00:00Z", "trees", "charity", 200, "2.50"),
        ("c", "2025-02-11T10:00:00Z", "mystery", None, 30, None),
        ("b", "2025-03-01T10:00:00Z", "coffee", "gift", 100, None),
    ],
    columns=["member_id", "redeemed_at", "reward_code", "reward_kind", "points", "value"],
)
COST = Decimal("0.0125")
COST_COLUMNS = ["reward_kind", "redemptions", "points", "valued", "points_cost", "value_cost"]


@pytest.fixture
def data() -> Iterator[fa.AnalyticsData]:
    with fa.open_frames(
        TRANSACTIONS, entries=ENTRIES, redemptions=REDEMPTIONS, timezone="Europe/Madrid"
    ) as opened:
        yield opened


def rows(frame: Any, columns: list[str]) -> list[tuple[Any, ...]]:
    return [
        tuple(None if pd.isna(value) else value for value in row)
        for row in frame[columns].itertuples(index=False)
    ]


def test_reward_cost_per_month_and_kind_prices_points_or_the_rewards_own_value(
    data: fa.AnalyticsData,
) -> None:
    assert data.redemptions is not None
    frame: Any = fa.reward_cost(data.redemptions, cost_per_point=COST)
    assert list(frame["period"]) == [datetime(2025, m, 1) for m in (1, 2, 2, 2, 3)]
    d = Decimal
    assert rows(frame, [*COST_COLUMNS, "cost"]) == [
        ("gift", 2, 250, 0, d("3.1250"), d("0"), d("3.1250")),  # 250 × 0.0125
        ("cashback", 1, 500, 1, d("0"), d("5.00"), d("5.00")),  # local month: February
        ("charity", 1, 200, 1, d("0"), d("2.50"), d("2.50")),
        (None, 1, 30, 0, d("0.375"), d("0"), d("0.375")),  # no kind: last
        ("gift", 1, 100, 0, d("1.25"), d("0"), d("1.25")),
    ]


def test_reward_cost_by_quarter_within_a_window(data: fa.AnalyticsData) -> None:
    assert data.redemptions is not None
    quarter: Any = fa.reward_cost(data.redemptions, cost_per_point=COST, period="quarter")
    assert set(quarter["period"]) == {datetime(2025, 1, 1)}
    assert rows(quarter, ["reward_kind", "redemptions", "points", "cost"]) == [
        ("cashback", 1, 500, Decimal("5")),
        ("charity", 1, 200, Decimal("2.5")),
        ("gift", 3, 350, Decimal("4.375")),
        (None, 1, 30, Decimal("0.375")),
    ]
    february: Any = fa.reward_cost(
        data.redemptions, cost_per_point=COST, start="2025-02-01", end="2025-03-01"
    )
    assert rows(february, ["reward_kind", "cost"]) == [
        ("cashback", Decimal("5")),
        ("charity", Decimal("2.5")),
        (None, Decimal("0.375")),
    ]


def test_reward_cost_refuses_a_bad_cost_or_period(data: fa.AnalyticsData) -> None:
    assert data.redemptions is not None
    with pytest.raises(ValidationError) as caught:
        fa.reward_cost(data.redemptions, cost_per_point=Decimal("-0.01"))
    assert caught.value.field == "cost_per_point"
    with pytest.raises(ValidationError) as caught:
        fa.reward_cost(data.redemptions, cost_per_point=Decimal("0.00001"))
    assert caught.value.field == "cost_per_point"
    with pytest.raises(ValidationError) as caught:
        fa.reward_cost(data.redemptions, cost_per_point=COST, period="fortnight")
    assert caught.value.field == "period"


def test_effort_vs_reward_per_tier(data: fa.AnalyticsData) -> None:
    assert data.entries is not None
    frame: Any = fa.effort_vs_reward(
        data.transactions, data.entries, cost_per_point=Decimal("0.01")
    )
    d = Decimal
    # gold: a + b spent 240 and earned 100 + 30 + 80 = 210 points = 2.10 of reward;
    # silver: c spent 40 and earned 40 − 10 (returned) = 30 points; d's adjustment is no
    # earning; no tier: e (spend, no entries) and f (earned by an event, no spend).
    assert rows(frame, ["tier", "members", "spend", "points_earned", "reward_value"]) == [
        ("gold", 2, d("240"), 210, d("2.10")),
        ("silver", 1, d("40"), 30, d("0.30")),
        (None, 2, d("25"), 5, d("0.05")),
    ]
    assert list(frame["spend_per_reward_unit"]) == pytest.approx([240 / 2.1, 40 / 0.3, 500.0])
    assert list(frame["points_per_currency_unit"]) == pytest.approx([0.875, 0.75, 0.2])


def test_effort_vs_reward_within_a_window_and_at_no_cost(data: fa.AnalyticsData) -> None:
    assert data.entries is not None
    january: Any = fa.effort_vs_reward(
        data.transactions, data.entries, cost_per_point=Decimal("0.01"), end="2025-02-01"
    )
    assert rows(january, ["tier", "members", "spend", "points_earned"]) == [
        ("gold", 2, Decimal("180"), 180),
        ("silver", 1, Decimal("40"), 30),
        (None, 2, Decimal("25"), 5),
    ]
    free: Any = fa.effort_vs_reward(data.transactions, data.entries, cost_per_point=Decimal(0))
    assert free["spend_per_reward_unit"].isna().all()
    assert list(free["reward_value"]) == [Decimal(0)] * 3


def test_redemptions_are_optional_and_absent_without_input() -> None:
    with fa.open_frames(TRANSACTIONS) as opened:
        assert opened.redemptions is None


def test_redemptions_read_from_csv_files(tmp_path: Path) -> None:
    purchases = tmp_path / "purchases.csv"
    TRANSACTIONS.to_csv(purchases, index=False)
    redemptions = tmp_path / "redemptions.csv"
    REDEMPTIONS.drop(columns=["reward_kind"]).to_csv(redemptions, index=False)
    with fa.open_files(purchases, redemptions=redemptions, timezone="Europe/Madrid") as opened:
        assert opened.redemptions is not None
        assert tuple(opened.redemptions.columns) == tuple(fa.REDEMPTIONS_SCHEMA.names)
        frame: Any = fa.reward_cost(opened.redemptions, cost_per_point=COST)
    assert rows(frame, ["reward_kind", "redemptions", "cost"]) == [
        (None, 2, Decimal("3.125")),
        (None, 3, Decimal("7.875")),  # 5 + 2.5 + 30 × 0.0125
        (None, 1, Decimal("1.25")),
    ]


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("points", "many", "is not a whole number of points: 'many'"),
        ("value", "five", "is not a decimal number: 'five'"),
        ("reward_code", "", "is required"),
        ("redeemed_at", "2025-01-05 10:00", "is not an ISO 8601 timestamp"),
    ],
)
def test_bad_redemption_values_are_refused_naming_the_column(
    column: str, value: str, problem: str
) -> None:
    bad = REDEMPTIONS.astype({"points": "object"}).copy()
    bad.loc[0, column] = value
    with pytest.raises(ValidationError) as caught:
        fa.open_frames(TRANSACTIONS, redemptions=bad.astype(str).replace("None", ""))
    assert caught.value.field == column
    assert problem in caught.value.message


def test_a_missing_redemption_column_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        fa.open_frames(TRANSACTIONS, redemptions=REDEMPTIONS.drop(columns=["points"]))
    assert caught.value.field == "points"
    assert "required column of redemptions" in caught.value.message
