"""Runs the analytics on PySpark, for data that outgrows one machine (issue 4, "Engine").

    from fideliza import analytics as fa

    with fa.open_spark("purchases.csv", timezone="Europe/Madrid") as data:   # a local session
        fa.rfm_segments(data.transactions, as_of="2025-07-01")

The metrics are the same Ibis expressions as on DuckDB and PostgreSQL; only the backend
changes (`ibis.pyspark.connect`). Inputs come in two ways:

- **Files or frames** (CSV/Parquet paths, pandas/polars/Arrow): validated and normalized exactly
  as `open_files` does them — by the same DuckDB SQL, so the same errors — then written as
  Parquet to a staging directory that Spark reads.
- **A directory or a glob of Parquet files already in the normalized shape** (the
  `*_SCHEMA` columns and types in `fideliza.analytics.sources`; timestamps as naive local
  times, Parquet `TIMESTAMP` without UTC adjustment): read by Spark directly, never through
  DuckDB or this machine's memory. Only the schema is checked (names and types); the values
  are trusted, since checking them would mean scanning the whole data set.

Spark runs with its session time zone set to UTC, so naive local timestamps stay as they are.
A caller's session is never changed: the source works on `session.newSession()` (its own SQL
settings and temporary views, the same SparkContext), and `close()` leaves it running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir

from fideliza.analytics.frames import quiet_ibis
from fideliza.analytics.sources import (
    ENTRIES_SCHEMA,
    LOTS_SCHEMA,
    REDEMPTIONS_SCHEMA,
    REFERRALS_SCHEMA,
    SURVEYS_SCHEMA,
    TRANSACTIONS_SCHEMA,
    AnalyticsData,
    PathLike,
    Source,
    _check_zone,
    _load_into_duckdb,
    _run,
    _sql_string,
)
from fideliza.core.errors import ValidationError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMAS: Mapping[str, ibis.Schema] = {
    "transactions": TRANSACTIONS_SCHEMA,
    "surveys": SURVEYS_SCHEMA,
    "referrals": REFERRALS_SCHEMA,
    "entries": ENTRIES_SCHEMA,
    "lots": LOTS_SCHEMA,
    "redemptions": REDEMPTIONS_SCHEMA,
}
# Loopback only: a laptop or CI runner need not resolve its own host name, and nothing listens
# outside the machine. The UI would open a port too.
LOCAL_SETTINGS: Mapping[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
_GLOB_CHARACTERS = frozenset("*?[")


def spark_session(
    cores: int = 2,
    *,
    partitions: int = 4,
    app_name: str = "fideliza-analytics",
    settings: Mapping[str, str] | None = None,
) -> SparkSession:
    """A local-mode SparkSession (`local[cores]`) bound to the loopback interface.

    `partitions` is `spark.sql.shuffle.partitions` (Spark's default of 200 is meant for a
    cluster and makes small local jobs slow); `settings` are more Spark settings. Starting the
    JVM takes seconds: share the session. If a session is already running in this process,
    Spark returns that one.
    """
    if cores < 1:
        raise ValidationError(f"must be at least 1, got {cores}", field="cores")
    if partitions < 1:
        raise ValidationError(f"must be at least 1, got {partitions}", field="partitions")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ValidationError("needs Java (17 or later) on PATH or in JAVA_HOME", field="spark")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ValidationError(
            "needs PySpark: pip install 'pyspark==4.0.5'", field="spark"
        ) from None
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # read when the JVM starts
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app_name)
    chosen = {**LOCAL_SETTINGS, "spark.sql.shuffle.partitions": str(partitions), **(settings or {})}
    for key, value in chosen.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def open_spark(
    transactions: Source,
    *,
    surveys: Source | None = None,
    referrals: Source | None = None,
    entries: Source | None = None,
    lots: Source | None = None,
    redemptions: Source | None = None,
    timezone: str = "UTC",
    assume_timezone: str | None = None,
    session: SparkSession | None = None,
    staging: PathLike | None = None,
) -> AnalyticsData:
    """Opens the data on PySpark; the metrics then run on Spark.

    Each input is a CSV/Parquet file or list of them, or a DataFrame (validated and normalized
    as `open_files`/`open_frames` do, then staged as Parquet), or a directory or glob of Parquet
    files already in the normalized shape (read by Spark directly; only the schema is checked).
    `session` is the caller's SparkSession (default: the one already running in this process,
    else a local one from `spark_session()` that `close()` stops); `staging` is an existing
    directory for the normalized Parquet (default: the system's temporary directory; on a
    cluster, a path every executor can read). `close()` removes what it staged.
    """
    zone = _check_zone(timezone, field="timezone")
    assumed = None if assume_timezone is None else _check_zone(assume_timezone, "assume_timezone")
    if staging is not None and not Path(staging).is_dir():
        raise ValidationError(f"is not a directory: {staging}", field="staging")
    owned = session is None and not _spark_running()
    base = spark_session() if session is None else session
    # A child session: its own SQL settings (Ibis sets the time zone to UTC) and temporary
    # views, so the caller's session and other sources stay untouched.
    spark = _child_session(base)
    staged = Path(tempfile.mkdtemp(prefix="fideliza-spark-", dir=staging))
    views: list[str] = []

    def release() -> None:
        for view in views:
            spark.catalog.dropTempView(view)
        views.clear()
        shutil.rmtree(staged, ignore_errors=True)
        if owned:
            base.stop()

    try:
        backend = ibis.pyspark.connect(spark)
        sources = {
            "transactions": transactions,
            "surveys": surveys,
            "referrals": referrals,
            "entries": entries,
            "lots": lots,
            "redemptions": redemptions,
        }
        tables: dict[str, ir.Table | None] = {}
        for name, source in sources.items():
            if source is None:
                tables[name] = None
                continue
            view = f"fideliza_{name}"
            if _is_normalized_parquet(source):
                frame = _read_normalized(spark, name, str(source))
            else:
                frame = spark.read.parquet(_stage(name, source, staged, zone=zone, assumed=assumed))
            frame.createOrReplaceTempView(view)
            views.append(view)
            with quiet_ibis():
                tables[name] = backend.table(view)
    except BaseException:
        release()
        raise
    opened = tables["transactions"]
    assert opened is not None
    return AnalyticsData(
        transactions=opened,
        surveys=tables["surveys"],
        referrals=tables["referrals"],
        timezone=zone,
        backend=backend,
        entries=tables["entries"],
        lots=tables["lots"],
        redemptions=tables["redemptions"],
        release=release,
    )


def _child_session(base: Any) -> Any:
    """A new session on `base`'s SparkContext with the SQL settings `base` has at run time
    (a child starts from the context's settings, without those set with `conf.set`)."""
    child = base.newSession()
    for key, value in base.conf.getAll.items():
        if base.conf.isModifiable(key):
            child.conf.set(key, value)
    # Parquet TIMESTAMP without UTC adjustment is a naive local time (TIMESTAMP_NTZ) here.
    child.conf.set("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
    return child


def _spark_running() -> bool:
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def _is_normalized_parquet(source: Source) -> bool:
    """A directory or a glob: Parquet files already in the normalized shape."""
    if not isinstance(source, str | Path):
        return False
    return Path(source).is_dir() or bool(_GLOB_CHARACTERS & set(str(source)))


def _stage(name: str, source: Source, staged: Path, *, zone: str, assumed: str | None) -> str:
    """Normalizes `source` with the DuckDB SQL every other source uses; writes it as Parquet.

    The scratch DuckDB is a file in the staging directory, so a large input need not fit in
    memory; it is deleted once the Parquet file is written.
    """
    scratch_path = staged / f"{name}.duckdb"
    scratch = ibis.duckdb.connect(str(scratch_path))
    target = staged / f"{name}.parquet"
    try:
        _load_into_duckdb(scratch, name, source, zone=zone, assumed=assumed)
        _run(
            scratch.con,
            f"COPY fideliza_{name} TO {_sql_string(str(target))} (FORMAT parquet)",
        )
    finally:
        scratch.disconnect()
        scratch_path.unlink(missing_ok=True)
        Path(f"{scratch_path}.wal").unlink(missing_ok=True)
    return str(target)


def _read_normalized(spark: Any, name: str, location: str) -> Any:
    """Spark's reading of normalized Parquet, its schema checked against the analytics shape."""
    from pyspark.errors import PySparkException

    try:
        frame = spark.read.parquet(location)
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(f"cannot be read: {first}", field=name) from None
    from ibis.backends.pyspark.datatypes import PySparkType

    found = {field.name: PySparkType.to_ibis(field.dataType) for field in frame.schema.fields}
    expected = SCHEMAS[name]
    for column, dtype in expected.items():
        if column not in found:
            raise ValidationError(
                f"is a column of the normalized {name} shape but {location} has no {column} "
                f"(found: {', '.join(found) or 'nothing'})",
                field=column,
            )
        if not found[column].copy(nullable=True).equals(dtype.copy(nullable=True)):
            raise ValidationError(
                f"must be {dtype} in normalized {name} (naive local timestamps), "
                f"{location} has {found[column]}",
                field=column,
            )
    return frame.select(*expected.names)
