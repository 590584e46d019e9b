"""Referral-driven acquisition per period on hand-computed data (issue 4, part 6)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import pytest

from fideliza import analytics as fa

TRANSACTIONS = [
    ("n0", "2024-12-01T10:00:00Z", "10"),
    ("n1", "2025-01-10T10:00:00Z", "10"),
    ("n1", "2025-03-10T10:00:00Z", "10"),  # a repeat purchase: n1 is not new again
    ("n2", "2025-01-15T10:00:00Z", "10"),
    ("n3", "2025-01-20T10:00:00Z", "10"),
    ("n4", "2025-02-10T10:00:00Z", "10"),
    ("n5", "2025-02-11T10:00:00Z", "10"),
    ("n6", "2025-04-02T10:00:00Z", "10"),
]
REFERRALS = [
    ("n1", "n0", "2025-01-05T10:00:00Z"),  # before n1's first purchase: acquired
    ("n2", "n0", "2025-01-20T10:00:00Z"),  # after n2's first purchase: not acquired by it
    ("n4", "n1", "2025-03-01T10:00:00Z"),  # n4 twice: the earliest (1 February) counts
    ("n4", "n0", "2025-02-01T10:00:00Z"),
    ("n5", "n5", "2025-02-01T10:00:00Z"),  # a self-referral is ignored
    ("n6", "n1", "2025-04-02T10:00:00Z"),  # at the very moment of the first purchase: counts
    ("n7", "n1", "2025-01-01T10:00:00Z"),  # never bought: not a new customer
]


@pytest.fixture
def data(open_rows: Any) -> Any:
    return open_rows(TRANSACTIONS, referrals=REFERRALS)


def test_share_of_new_customers_acquired_through_referrals_per_month(data: Any) -> None:
    frame = fa.referral_acquisition(data.transactions, data.referrals)
    assert isinstance(frame, pd.DataFrame)
    got = [
        (
            row["period"].date(),
            row["new_customers"],
            row["referred_new_customers"],
            row["referral_share"],
        )
        for row in frame.to_dict("records")
    ]
    assert got[:3] == [
        (date(2024, 12, 1), 1, 0, 0.0),
        (date(2025, 1, 1), 3, 1, pytest.approx(1 / 3)),
        (date(2025, 2, 1), 2, 1, 0.5),
    ]
    march = got[3]
    assert march[:3] == (date(2025, 3, 1), 0, 0) and pd.isna(march[3])
    assert got[4] == (date(2025, 4, 1), 1, 1, 1.0)
    assert len(got) == 5


def test_per_quarter(data: Any) -> None:
    frame = fa.referral_acquisition(data.transactions, data.referrals, period="quarter")
    assert isinstance(frame, pd.DataFrame)
    assert frame[["new_customers", "referred_new_customers"]].to_numpy().tolist() == [
        [1, 0],
        [5, 2],
        [1, 1],
    ]
    assert frame["referral_share"].tolist() == [0.0, 0.4, 1.0]
