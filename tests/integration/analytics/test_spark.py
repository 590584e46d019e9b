"""The analytics on PySpark (local mode) give the DuckDB reference's results, row for row.

One SparkSession serves the whole test session (a JVM takes seconds to start). The history,
metrics and comparison are `test_backends`'s; the ledger economics use the hand-computed
ledger of the unit tests. Spark jobs on tiny data are slow: keep this file small.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fideliza import analytics as fa
from fideliza.core.errors import ValidationError
from tests.integration.analytics.test_backends import (
    METRICS,
    REFERRALS,
    SURVEYS,
    TIMEZONE,
    assert_same,
    reference_frame,
)
from tests.unit.analytics.test_economics import AS_OF, CENT, TRANSACTIONS, entries_frame, lots_frame

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:The 'future.infer_string' option"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),  # PySpark 4.0, pandas 3
]
pytest.importorskip("pyspark", reason="PySpark is not installed (pip install -e '.[dev]')")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java (17 or later) on PATH", allow_module_level=True)

# Tiny data: one shuffle partition, no code generation, no adaptive re-planning and no
# broadcast joins (each broadcast is one more job) make the file about twice as fast.
FAST_SMALL_JOBS = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.autoBroadcastJoinThreshold": "-1",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    session = fa.spark_session(cores=2, partitions=1, settings=FAST_SMALL_JOBS)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def reference() -> Iterator[dict[str, pd.DataFrame]]:
    with fa.open_frames(
        reference_frame(), referrals=REFERRALS, surveys=SURVEYS, timezone=TIMEZONE
    ) as data:
        yield {name: metric(data) for name, metric in METRICS.items()}


@pytest.fixture(scope="module")
def on_spark(spark: Any) -> Iterator[fa.AnalyticsData]:
    with fa.open_spark(
        reference_frame(), referrals=REFERRALS, surveys=SURVEYS, timezone=TIMEZONE, session=spark
    ) as data:
        yield data


def test_the_data_is_on_spark_in_the_analytics_shape(on_spark: fa.AnalyticsData) -> None:
    assert on_spark.backend.name == "pyspark"
    assert on_spark.transactions.schema() == fa.TRANSACTIONS_SCHEMA
    assert on_spark.surveys is not None and on_spark.surveys.schema() == fa.SURVEYS_SCHEMA
    table = on_spark.transactions
    edge = fa.to_frame(
        table.filter((table.member_id == "m-00") & (table.amount == Decimal("12.34")))
    )
    # 23:30:59.999999 UTC on 31 October is 00:30:59 on 1 November in Madrid, kept as it is.
    assert edge["occurred_at"].tolist() == [pd.Timestamp("2024-11-01 00:30:59")]


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_matches_the_reference(
    on_spark: fa.AnalyticsData, reference: dict[str, pd.DataFrame], name: str
) -> None:
    assert_same(METRICS[name](on_spark), reference[name], name)


def test_the_ledger_economics_match_the_reference(spark: Any) -> None:
    frames = {"entries": entries_frame(), "lots": lots_frame()}
    groups = {
        "member_id": ["a", "b", "c", "d"],
        "group": ["program", "holdout", "holdout", "program"],
    }

    def figures(data: fa.AnalyticsData) -> dict[str, Any]:
        assert data.entries is not None and data.lots is not None
        chosen = fa.sources.ibis.memtable(groups)
        return {
            "member_points": fa.member_points(data.entries, as_of=AS_OF),
            "liability_by_tier": fa.points_liability(
                data.entries, as_of=AS_OF, cost_per_point=CENT, by_tier=True
            ),
            "breakage_cohorts": fa.breakage_cohorts(data.lots, as_of=AS_OF),
            "expected_liability": fa.expected_liability(
                data.entries, data.lots, as_of=AS_OF, cost_per_point=CENT, by_tier=True
            ),
            "holdout_revenue": fa.holdout_revenue(
                data.transactions, chosen, start="2025-01-01", end="2025-03-01"
            ),
        }

    with fa.open_frames(TRANSACTIONS, **frames, timezone=TIMEZONE) as duck:
        want = figures(duck)
    with fa.open_spark(TRANSACTIONS, **frames, timezone=TIMEZONE, session=spark) as data:
        got = figures(data)
    for name, frame in want.items():
        assert len(frame) > 0, name
        assert_same(got[name], frame, name)


def test_normalized_parquet_is_read_by_spark_directly(
    spark: Any, tmp_path: Path, reference: dict[str, pd.DataFrame]
) -> None:
    """A directory (or glob) of Parquet in the normalized shape skips DuckDB altogether."""
    with fa.open_frames(reference_frame(), timezone=TIMEZONE) as duck:
        normalized = duck.transactions.to_pyarrow()
    folder = tmp_path / "transactions"
    folder.mkdir()
    half = normalized.num_rows // 2
    pq.write_table(normalized.slice(0, half), folder / "part-0.parquet")
    pq.write_table(normalized.slice(half), folder / "part-1.parquet")
    for location in (folder, str(folder / "part-*.parquet")):
        with fa.open_spark(location, timezone=TIMEZONE, session=spark) as data:
            assert_same(fa.buyer_summary(data.transactions), reference["buyer_summary"], "direct")


def test_normalized_parquet_of_another_shape_is_refused(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "transactions"
    folder.mkdir()
    with fa.open_frames(reference_frame(), timezone=TIMEZONE) as duck:
        normalized = duck.transactions.to_pyarrow()
    wrong = normalized.set_column(2, "amount", normalized["amount"].cast(pa.float64()))
    pq.write_table(wrong, folder / "part-0.parquet")
    with pytest.raises(ValidationError) as error:
        fa.open_spark(folder, session=spark)
    assert error.value.field == "amount"
    assert "decimal(18, 4)" in str(error.value) and "float64" in str(error.value)

    pq.write_table(normalized.drop_columns(["channel"]), folder / "part-0.parquet")
    with pytest.raises(ValidationError) as error:
        fa.open_spark(folder, session=spark)
    assert error.value.field == "channel"


def test_bad_files_get_the_same_errors_as_open_files(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "purchases.csv"
    path.write_text(
        "external_id,member_id,occurred_at,amount\n"
        "t-1,m-1,2025-01-01T10:00:00+01:00,10.00\n"
        "t-2,m-2,2025-01-02T10:00:00+01:00,ten\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError) as on_duckdb:
        fa.open_files(path)
    with pytest.raises(ValidationError) as on_spark:
        fa.open_spark(path, session=spark, staging=tmp_path)
    assert on_spark.value.field == on_duckdb.value.field == "amount"
    assert str(on_spark.value) == str(on_duckdb.value)
    assert "'ten'" in str(on_spark.value) and "t-2" in str(on_spark.value)
    assert list(tmp_path.iterdir()) == [path]  # nothing staged was left behind

    with pytest.raises(ValidationError) as error:
        fa.open_spark(path, session=spark, staging=tmp_path / "missing")
    assert error.value.field == "staging"


def test_close_leaves_the_callers_session_running(spark: Any, tmp_path: Path) -> None:
    purchases = tmp_path / "purchases.csv"
    reference_frame().to_csv(purchases, index=False)
    staging = tmp_path / "staging"
    staging.mkdir()
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        data = fa.open_spark(purchases, timezone=TIMEZONE, session=spark, staging=staging)
        staged = list(staging.iterdir())
        assert len(staged) == 1 and [p.name for p in staged[0].iterdir()] == [
            "transactions.parquet"  # the scratch DuckDB is gone already
        ]
        assert data.transactions.count().execute() == len(reference_frame())
        data.close()
        assert list(staging.iterdir()) == []  # the staged Parquet is gone
        assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"  # untouched
        assert spark.range(3).count() == 3  # still running
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_the_report_has_the_same_figures_on_spark(on_spark: fa.AnalyticsData) -> None:
    """`fideliza report --engine spark` would build the same page (every section runs on Spark)."""
    from fideliza.analytics.report import build_report

    with fa.open_frames(
        reference_frame(), referrals=REFERRALS, surveys=SURVEYS, timezone=TIMEZONE
    ) as duck:
        want = build_report(duck, lang="en")
    got = build_report(on_spark, lang="en")
    assert got.figures["meta"]["as_of"] == want.figures["meta"]["as_of"]
    assert got.json() == want.json()
    assert got.html == want.html


def test_without_a_session_a_running_one_is_used_and_left_running(spark: Any) -> None:
    """open_spark stops only a session it started itself."""
    with fa.open_spark(reference_frame(), timezone=TIMEZONE) as data:
        assert data.backend._session.sparkContext is spark.sparkContext  # no second JVM
    assert spark.range(2).count() == 2


@pytest.mark.parametrize(("argument", "value"), [("cores", 0), ("partitions", 0)])
def test_a_local_session_needs_a_core_and_a_partition(argument: str, value: int) -> None:
    with pytest.raises(ValidationError) as error:
        fa.spark_session(**{argument: value})
    assert error.value.field == argument


def test_the_reward_metrics_match_the_reference(spark: Any) -> None:
    from tests.unit.analytics import test_rewards as hand

    frames = {"entries": hand.ENTRIES, "redemptions": hand.REDEMPTIONS}

    def figures(data: fa.AnalyticsData) -> dict[str, Any]:
        assert data.entries is not None and data.redemptions is not None
        return {
            "reward_cost": fa.reward_cost(data.redemptions, cost_per_point=hand.COST),
            "effort_vs_reward": fa.effort_vs_reward(
                data.transactions, data.entries, cost_per_point=CENT
            ),
            "matched_customers": fa.matched_customers(
                data.transactions,
                fa.sources.ibis.memtable({"member_id": ["a", "c"]}),
                pre_start="2025-01-01",
                program_start="2025-02-01",
                end="2025-03-01",
            ),
        }

    with fa.open_frames(hand.TRANSACTIONS, **frames, timezone=TIMEZONE) as duck:
        want = figures(duck)
    with fa.open_spark(hand.TRANSACTIONS, **frames, timezone=TIMEZONE, session=spark) as data:
        got = figures(data)
    for name, frame in want.items():
        assert len(frame) > 0, name
        assert_same(got[name], frame, name)
