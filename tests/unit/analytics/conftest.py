"""Builders for the analytics tests: small transaction tables opened on DuckDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa
import pytest

from fideliza.analytics import AnalyticsData, open_frames

Row = tuple[str, str, str]  # member_id, occurred_at (ISO with offset), amount

OpenRows = Callable[..., AnalyticsData]


@pytest.fixture
def open_rows() -> Iterator[OpenRows]:
    """Opens (member_id, occurred_at, amount) rows, plus optional referral rows, on DuckDB."""
    opened: list[AnalyticsData] = []

    def build(
        rows: Sequence[Row],
        *,
        timezone: str = "UTC",
        referrals: Sequence[tuple[str, str, str]] | None = None,
    ) -> AnalyticsData:
        transactions = pa.table(
            {
                "member_id": pa.array([r[0] for r in rows], pa.string()),
                "occurred_at": pa.array([r[1] for r in rows], pa.string()),
                "amount": pa.array([r[2] for r in rows], pa.string()),
            }
        )
        referral_table = None
        if referrals is not None:
            referral_table = pa.table(
                {
                    "member_id": pa.array([r[0] for r in referrals], pa.string()),
                    "referrer_id": pa.array([r[1] for r in referrals], pa.string()),
                    "referred_at": pa.array([r[2] for r in referrals], pa.string()),
                }
            )
        data = open_frames(transactions, referrals=referral_table, timezone=timezone)
        opened.append(data)
        return data

    yield build
    for data in opened:
        data.close()
