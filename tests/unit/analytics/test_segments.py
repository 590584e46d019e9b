"""Heavy/medium/low users, their migration, and RFM on hand-computed data (issue 4, parts 2–3)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import polars as pl
import pytest

from fideliza import analytics as fa
from fideliza.core.errors import ValidationError

# January 2025: spend per buyer 100, 50 (30 + 20), 50, 20 (10 + 10), 10, 10, 5, 5, 1, 1.
JANUARY = [
    ("p01", "2025-01-03T10:00:00Z", "100"),
    ("p02", "2025-01-04T10:00:00Z", "30"),
    ("p02", "2025-01-05T10:00:00Z", "20"),
    ("p03", "2025-01-06T10:00:00Z", "50"),
    ("p04", "2025-01-07T10:00:00Z", "10"),
    ("p04", "2025-01-08T10:00:00Z", "10"),
    ("p05", "2025-01-09T10:00:00Z", "10"),
    ("p06", "2025-01-10T10:00:00Z", "10"),
    ("p07", "2025-01-11T10:00:00Z", "5"),
    ("p08", "2025-01-12T10:00:00Z", "5"),
    ("p09", "2025-01-13T10:00:00Z", "1"),
    ("p10", "2025-01-14T10:00:00Z", "1"),
]
# February: p02 200, p11 50 (first purchase ever), p04 20, p12 10 (last bought in December),
# p01 5. December and March buyers p14, p13 bought in neither window.
OTHERS = [
    ("p12", "2024-12-20T10:00:00Z", "40"),
    ("p14", "2024-12-21T10:00:00Z", "40"),
    ("p01", "2025-02-03T10:00:00Z", "5"),
    ("p02", "2025-02-03T10:00:00Z", "200"),
    ("p04", "2025-02-04T10:00:00Z", "20"),
    ("p11", "2025-02-05T10:00:00Z", "50"),
    ("p12", "2025-02-06T10:00:00Z", "10"),
    ("p13", "2025-03-01T10:00:00Z", "70"),
]
JAN = ("2025-01-01", "2025-02-01")
FEB = ("2025-02-01", "2025-03-01")


@pytest.fixture
def tx(open_rows: Any) -> Any:
    return open_rows(JANUARY + OTHERS).transactions


def rows(frame: Any) -> list[dict[str, Any]]:
    assert isinstance(frame, pd.DataFrame)
    return frame.to_dict("records")


def test_quantile_groups_by_spend_never_split_a_tie(tx: Any) -> None:
    groups = rows(fa.usage_groups(tx, start=JAN[0], end=JAN[1]))
    # Top 20% of 10 buyers is 2 slots, but p02 and p03 tie at 50 behind p01: all three heavy.
    # Medium: fewer than 5 buyers spent more (p04 20, p05 and p06 10). Low: the rest.
    assert [(g["usage_group"], g["customers"], g["transactions"]) for g in groups] == [
        ("heavy", 3, 4),
        ("medium", 3, 4),
        ("low", 4, 4),
    ]
    assert [g["revenue"] for g in groups] == [Decimal(200), Decimal(40), Decimal(12)]
    assert [g["customer_share"] for g in groups] == [0.3, 0.3, 0.4]
    assert [g["revenue_share"] for g in groups] == pytest.approx([200 / 252, 40 / 252, 12 / 252])
    assert [(g["measure_min"], g["measure_max"]) for g in groups] == [
        (Decimal(50), Decimal(100)),
        (Decimal(10), Decimal(20)),
        (Decimal(1), Decimal(5)),
    ]
    members = rows(fa.customer_usage(tx, start=JAN[0], end=JAN[1]))
    assert [m["usage_group"] for m in members] == ["heavy"] * 3 + ["medium"] * 3 + ["low"] * 4


def test_quantile_groups_by_frequency_send_the_big_tie_up(tx: Any) -> None:
    rule = fa.UsageRule.quantiles(measure="frequency", heavy_share=0.2, medium_share=0.3)
    groups = rows(fa.usage_groups(tx, start=JAN[0], end=JAN[1], rule=rule))
    # Two buyers bought twice (heavy); the eight single buyers have 2 buyers above them,
    # fewer than 5: all medium, and no low user is left.
    assert [(g["usage_group"], g["customers"]) for g in groups] == [
        ("heavy", 2),
        ("medium", 8),
        ("low", 0),
    ]
    low = groups[2]
    assert low["revenue"] == 0 and low["revenue_share"] == 0.0 and pd.isna(low["measure_min"])


def test_threshold_groups(tx: Any) -> None:
    rule = fa.UsageRule.thresholds(heavy_min=100, medium_min="5")
    groups = rows(fa.usage_groups(tx, start=JAN[0], end=JAN[1], rule=rule))
    assert [(g["usage_group"], g["customers"]) for g in groups] == [
        ("heavy", 1),
        ("medium", 7),
        ("low", 2),
    ]
    by_visits = fa.UsageRule.thresholds(measure="frequency", heavy_min=2, medium_min=1)
    groups = rows(fa.usage_groups(tx, start=JAN[0], end=JAN[1], rule=by_visits))
    assert [g["customers"] for g in groups] == [2, 8, 0]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: fa.UsageRule.quantiles(heavy_share=0), "heavy_share"),
        (lambda: fa.UsageRule.quantiles(heavy_share=0.6, medium_share=0.5), "medium_share"),
        (lambda: fa.UsageRule.thresholds(heavy_min=5, medium_min=10), "medium_min"),
        (
            lambda: fa.UsageRule.thresholds(measure="frequency", heavy_min=2.5, medium_min=1),
            "heavy_min",
        ),
        (lambda: fa.UsageRule.quantiles(measure="visits"), "measure"),
        (lambda: fa.UsageRule.quantiles(heavy_share="lots"), "heavy_share"),
    ],
)
def test_bad_usage_rules_are_refused(build: Any, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        build()
    assert error.value.field == field


def test_migration_matrix_between_two_months(tx: Any) -> None:
    long = rows(fa.usage_migration(tx, before=JAN, after=FEB))
    cells = {(c["from_group"], c["to_group"]): c["customers"] for c in long}
    assert len(long) == 20
    expected = {
        ("heavy", "heavy"): 1,  # p02
        ("heavy", "low"): 1,  # p01
        ("heavy", "inactive"): 1,  # p03
        ("medium", "medium"): 1,  # p04
        ("medium", "inactive"): 2,  # p05, p06
        ("low", "inactive"): 4,  # p07–p10
        ("new", "medium"): 1,  # p11
        ("inactive", "low"): 1,  # p12
    }
    assert {cell: n for cell, n in cells.items() if n} == expected
    shares = {(c["from_group"], c["to_group"]): c["from_share"] for c in long}
    assert shares["medium", "inactive"] == pytest.approx(2 / 3)
    assert shares["heavy", "medium"] == 0.0
    wide = fa.usage_migration(tx, before=JAN, after=FEB, wide=True)
    assert isinstance(wide, pd.DataFrame)
    assert list(wide.index) == list(fa.MIGRATION_FROM)
    assert list(wide.columns) == list(fa.MIGRATION_TO)
    assert wide.loc["heavy"].tolist() == [1, 0, 1, 1]
    assert int(wide.to_numpy().sum()) == 12  # bought in January or February
    polars_wide = fa.usage_migration(tx, before=JAN, after=FEB, wide=True, output="polars")
    assert isinstance(polars_wide, pl.DataFrame)
    assert polars_wide["from_group"].to_list() == list(fa.MIGRATION_FROM)


def test_migration_windows_must_be_ordered(tx: Any) -> None:
    with pytest.raises(ValidationError) as error:
        fa.usage_migration(tx, before=FEB, after=JAN)
    assert error.value.field == "after"
    with pytest.raises(ValidationError) as error:
        fa.usage_migration(tx, before=("2025-02-01", "2025-01-01"), after=FEB)
    assert error.value.field == "before"


# --- RFM --------------------------------------------------------------------------------------

AS_OF = "2025-07-01"
RFM_ROWS = [
    # r1: 5 × 100, last 12 hours before as_of (recency 0)
    *[("r1", f"2025-0{m}-01T00:00:00Z", "100") for m in (2, 3, 4, 5)],
    ("r1", "2025-06-30T12:00:00Z", "100"),
    # r2: 3 × 100, last 11 days before; r3: 1 × 20, the same moment
    ("r2", "2025-03-01T00:00:00Z", "100"),
    ("r2", "2025-04-01T00:00:00Z", "100"),
    ("r2", "2025-06-20T00:00:00Z", "100"),
    ("r3", "2025-06-20T00:00:00Z", "20"),
    # r4: 2 × 150, last 61 days before
    ("r4", "2025-04-01T00:00:00Z", "150"),
    ("r4", "2025-05-01T00:00:00Z", "150"),
    # r5: 4 × 100, last 181 days before
    *[("r5", f"2024-{m}-01T00:00:00Z", "100") for m in (10, 11, 12)],
    ("r5", "2025-01-01T00:00:00Z", "100"),
    # r6: 1 × 10, 212 days before; its purchases at and after as_of do not count
    ("r6", "2024-12-01T00:00:00Z", "10"),
    ("r6", "2025-07-01T00:00:00Z", "999"),
    ("r6", "2025-07-02T00:00:00Z", "999"),
]


@pytest.fixture
def rfm_tx(open_rows: Any) -> Any:
    return open_rows(RFM_ROWS).transactions


def test_rfm_scores_are_tie_safe_quintiles(rfm_tx: Any) -> None:
    table = rows(fa.rfm(rfm_tx, as_of=AS_OF))
    got = [
        (
            r["member_id"],
            r["recency_days"],
            r["frequency"],
            r["spend"],
            r["r_score"],
            r["f_score"],
            r["m_score"],
            r["fm_score"],
            r["rfm_code"],
            r["segment"],
        )
        for r in table
    ]
    # n = 6; score = 1 + floor(5 * (buyers strictly worse) / 6).
    assert got == [
        ("r1", 0, 5, Decimal(500), 5, 5, 5, 5, "555", "champions"),
        ("r2", 11, 3, Decimal(300), 3, 3, 2, 2, "332", "about_to_sleep"),
        ("r3", 11, 1, Decimal(20), 3, 1, 1, 1, "311", "about_to_sleep"),
        ("r4", 61, 2, Decimal(300), 2, 2, 2, 2, "222", "hibernating"),
        ("r5", 181, 4, Decimal(400), 1, 4, 4, 4, "144", "at_risk"),
        ("r6", 212, 1, Decimal(10), 1, 1, 1, 1, "111", "lost"),
    ]
    assert table[0]["last_purchase_at"] == pd.Timestamp("2025-06-30 12:00:00")


def test_rfm_with_average_monetary_value(rfm_tx: Any) -> None:
    table = rows(fa.rfm(rfm_tx, as_of=AS_OF, monetary="average"))
    assert [r["monetary"] for r in table] == [100.0, 100.0, 20.0, 150.0, 100.0, 10.0]
    assert [r["m_score"] for r in table] == [2, 2, 1, 5, 2, 1]
    assert table[0]["segment"] == "potential_loyalists"  # R5, FM = (5 + 2) // 2 = 3


def test_rfm_segment_summary(rfm_tx: Any) -> None:
    summary = rows(fa.rfm_segments(rfm_tx, as_of=AS_OF))
    assert [s["segment"] for s in summary] == [str(r.segment) for r in fa.DEFAULT_RFM_RULES]
    filled = {s["segment"]: s for s in summary if s["customers"]}
    assert {name: s["customers"] for name, s in filled.items()} == {
        "champions": 1,
        "about_to_sleep": 2,
        "at_risk": 1,
        "hibernating": 1,
        "lost": 1,
    }
    sleepy = filled["about_to_sleep"]
    assert sleepy["revenue"] == Decimal(320)
    assert sleepy["revenue_share"] == pytest.approx(320 / 1530)
    assert sleepy["customer_share"] == pytest.approx(2 / 6)
    assert (sleepy["mean_recency_days"], sleepy["mean_frequency"], sleepy["mean_spend"]) == (
        11.0,
        2.0,
        160.0,
    )
    empty = next(s for s in summary if s["segment"] == "loyal")
    assert empty["customers"] == 0 and empty["revenue"] == 0 and empty["revenue_share"] == 0.0


def test_the_default_segments_cover_each_r_fm_cell_once() -> None:
    for r in range(1, 6):
        for fm in range(1, 6):
            matching = [
                rule.segment
                for rule in fa.DEFAULT_RFM_RULES
                if rule.recency[0] <= r <= rule.recency[1]
                and rule.frequency_monetary[0] <= fm <= rule.frequency_monetary[1]
            ]
            assert len(matching) == 1, (r, fm, matching)
    assert {str(rule.segment) for rule in fa.DEFAULT_RFM_RULES} == {
        s.value for s in fa.RfmSegment if s is not fa.RfmSegment.OTHER
    }


def test_custom_segments_and_other(rfm_tx: Any) -> None:
    rules = [fa.RfmRule("best", recency=(4, 5), frequency_monetary=(4, 5))]
    assert [r["segment"] for r in rows(fa.rfm(rfm_tx, as_of=AS_OF, rules=rules))] == [
        "best",
        *["other"] * 5,
    ]
    summary = rows(fa.rfm_segments(rfm_tx, as_of=AS_OF, rules=rules))
    assert [(s["segment"], s["customers"]) for s in summary] == [("best", 1), ("other", 5)]
    with pytest.raises(ValidationError) as error:
        fa.RfmRule("bad", recency=(0, 5), frequency_monetary=(1, 5))
    assert error.value.field == "recency"


def test_rfm_refuses_an_aware_as_of_and_bad_monetary(rfm_tx: Any) -> None:
    with pytest.raises(ValidationError) as error:
        fa.rfm(rfm_tx, as_of=datetime(2025, 7, 1, tzinfo=UTC))
    assert error.value.field == "as_of"
    with pytest.raises(ValidationError) as error:
        fa.rfm(rfm_tx, as_of=AS_OF, monetary="median")  # type: ignore[arg-type]
    assert error.value.field == "monetary"
