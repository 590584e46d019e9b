"""Members against matched non-members on a small hand-computed history (DuckDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import ibis
import pandas as pd
import pytest

from fideliza import analytics as fa
from fideliza.core.errors import ValidationError

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

PURCHASES = [
    # stratum (2024-01, band 1): m1, m2 against n1
    ("m1", "2024-01-05", "10"), ("m1", "2024-08-01", "10"),
    ("m2", "2024-01-20", "10"), ("m2", "2024-09-01", "20"),
    ("n1", "2024-01-10", "10"), ("n1", "2024-08-10", "5"),
    # stratum (2024-02, band 2): m3 against n2, n3
    ("m3", "2024-02-01", "1"), ("m3", "2024-03-01", "1"),
    ("m3", "2024-07-01", "10"), ("m3", "2024-12-31", "20"),
    ("n2", "2024-02-03", "1"), ("n2", "2024-04-01", "1"), ("n2", "2024-10-01", "10"),
    ("n3", "2024-02-05", "1"), ("n3", "2024-02-06", "1"), ("n3", "2024-11-01", "20"),
    # (2024-03, band 1): m4 has no comparable non-member
    ("m4", "2024-03-03", "1"), ("m4", "2024-08-03", "50"),
    # (2023-12, band 0): first bought before the pre-period; no member to compare with
    ("n4", "2023-12-15", "3"), ("n4", "2024-08-04", "7"),
    # first bought after the program started: cannot be matched
    ("n5", "2024-08-01", "99"),
    # after the end: not counted
    ("m1", "2025-01-01", "1000"),
]  # fmt: skip
MEMBERS = ["m1", "m2", "m3", "m4", "m9"]
WINDOW = {"pre_start": "2024-01-01", "program_start": "2024-07-01", "end": "2025-01-01"}


@pytest.fixture
def data() -> Iterator[fa.AnalyticsData]:
    frame = pd.DataFrame(PURCHASES, columns=["member_id", "occurred_at", "amount"])
    frame["occurred_at"] = frame["occurred_at"] + "T12:00:00Z"
    with fa.open_frames(frame) as opened:
        yield opened


@pytest.fixture
def customers(data: fa.AnalyticsData) -> pd.DataFrame:
    members = ibis.memtable({"member_id": MEMBERS})
    frame: Any = fa.matched_customers(data.transactions, members, **WINDOW)
    return frame


def test_each_customer_gets_a_group_a_stratum_and_the_later_revenue(
    customers: pd.DataFrame,
) -> None:
    columns = ["member_id", "group", "band", "pre_purchases", "purchases", "revenue"]
    assert customers[columns].values.tolist() == [
        ["n1", "comparison", 1, 1, 1, Decimal("5")],
        ["n2", "comparison", 2, 2, 1, Decimal("10")],
        ["n3", "comparison", 2, 2, 1, Decimal("20")],
        ["n4", "comparison", 0, 0, 1, Decimal("7")],
        ["m1", "program", 1, 1, 1, Decimal("10")],
        ["m2", "program", 1, 1, 1, Decimal("20")],
        ["m3", "program", 2, 2, 2, Decimal("30")],
        ["m4", "program", 1, 1, 1, Decimal("50")],
    ]
    assert customers["cohort"].dt.strftime("%Y-%m").tolist() == [
        "2024-01", "2024-02", "2024-02", "2023-12", "2024-01", "2024-01", "2024-02", "2024-03",
    ]  # fmt: skip


def test_the_stratified_estimate_by_hand(customers: pd.DataFrame) -> None:
    result = fa.matched_roi(customers, cost=Decimal(10), margin_rate=0.5, resamples=2_000)
    # 2 × (15 − 5) + 1 × (30 − 15) = 35 over the three matched members; m4 is unmatched.
    assert (result.strata, result.members, result.comparison) == (2, 3, 3)
    assert result.unmatched_members == 1
    assert result.incremental_revenue == pytest.approx(35.0)
    assert result.incremental_per_member == pytest.approx(35 / 3)
    assert result.incremental_margin == pytest.approx(17.5)
    assert result.roi == pytest.approx(0.75)  # (17.5 − 10) / 10
    # Resampled totals lie between 2 × (10 − 5) + (30 − 20) = 20 and 2 × (20 − 5) + 20 = 50.
    assert 20 / 3 <= result.incremental_low <= 35 / 3 <= result.incremental_high <= 50 / 3
    assert (20 * 0.5 - 10) / 10 <= result.roi_low <= 0.75 <= result.roi_high <= 1.5
    again = fa.matched_roi(customers, cost=Decimal(10), margin_rate=0.5, resamples=2_000)
    assert again == result


def test_the_bands_decide_the_strata(data: fa.AnalyticsData) -> None:
    members = ibis.memtable({"member_id": MEMBERS})
    coarse: Any = fa.matched_customers(data.transactions, members, bands=(1, 3), **WINDOW)
    assert dict(zip(coarse["member_id"], coarse["band"], strict=True))["m3"] == 1
    result = fa.matched_roi(coarse, cost=10, resamples=10)
    assert result.strata == 2 and result.incremental_revenue == pytest.approx(35.0)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"bands": ()}, "bands"),
        ({"bands": (2, 1)}, "bands"),
        ({"bands": (0, 1)}, "bands"),
        ({"pre_start": "2024-07-01"}, "pre_start"),
        ({"end": "2024-06-01"}, "end"),
    ],
)
def test_a_bad_window_or_band_is_refused(
    data: fa.AnalyticsData, arguments: dict[str, Any], field: str
) -> None:
    members = ibis.memtable({"member_id": MEMBERS})
    with pytest.raises(ValidationError) as caught:
        fa.matched_customers(data.transactions, members, **{**WINDOW, **arguments})
    assert caught.value.field == field


def test_without_a_comparable_pair_or_with_a_bad_cost_it_is_refused(
    customers: pd.DataFrame,
) -> None:
    with pytest.raises(ValidationError) as caught:
        fa.matched_roi(customers[customers["member_id"] == "m4"], cost=10)
    assert caught.value.field == "customers"
    with pytest.raises(ValidationError) as caught:
        fa.matched_roi(customers, cost=0)
    assert caught.value.field == "cost"
    with pytest.raises(ValidationError) as caught:
        fa.matched_roi(customers.assign(group="holdout"), cost=10)
    assert caught.value.field == "group"


def test_the_cohort_counts_purchases_before_the_pre_period(customers: pd.DataFrame) -> None:
    assert customers.loc[customers["member_id"] == "n4", "cohort"].iloc[0] == datetime(2023, 12, 1)
