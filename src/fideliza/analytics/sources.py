"""Opens the data the analytics read as Ibis tables of one shape, from files, frames or a database.

Every source gives the same tables (DESIGN.md, "Data the analytics read"):

- `transactions`: member_id (text), occurred_at (timestamp), amount (decimal(18,4)), currency,
  channel, store (text, may be null), items (JSON text, may be null);
- `surveys` (optional): member_id, answered_at (timestamp), kind ('nps' | 'csat' | 'custom'),
  score (float64);
- `referrals` (optional): member_id (the referred member), referrer_id, referred_at (timestamp);
- `entries` (optional, the points ledger): one row per ledger entry on a member's account —
  member_id, occurred_at (the transaction's time), account_kind ('available' | 'pending' |
  'held'), points (int64, signed), transaction_kind (text: earn, redeem, expire, …, may be null),
  tier (the member's current tier code, may be null);
- `lots` (optional, the points ledger): one row per earned lot — member_id, earned_at,
  expires_at (null: never expires), amount (points earned), remaining (points still in the lot),
  expired (points of the lot the expiry job expired; 0 when absent), state (text, may be null);
- `redemptions` (optional, the rewards catalog): one row per captured redemption — member_id,
  redeemed_at (when it was captured), reward_code, reward_kind (text, may be null), points
  (int64, the points it spent) and value (decimal(18,4), the reward's own money value for
  cashback and charity; null when it has none).

Timestamps are **naive local wall-clock times in the data's `timezone`**, truncated to whole
seconds: a calendar month is then the business's month, and epoch-second arithmetic gives the
same day counts on every backend. Text timestamps must carry an offset (as the purchases file
format requires); `assume_timezone` names the zone of those that do not, which are otherwise
refused. Member ids are the members' external ids (the ids a till or a file knows).

Files, DataFrames and a SQLite database are loaded into DuckDB (in memory, or in a `database`
file for data larger than memory), so the metrics run on DuckDB; a PostgreSQL database is read
where it is, and the metrics run on PostgreSQL through Ibis. DuckDB's SQLite extension cannot
be installed offline and SQLite itself lacks the decimals and window functions the metrics
use, hence the copy. `open_spark` (in `spark.py`) normalizes files and frames with the same
DuckDB SQL, then hands them to PySpark as Parquet.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import ibis.expr.types as ir
import pandas as pd
import polars as pl
import pyarrow as pa
from ibis.backends import BaseBackend
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from fideliza.analytics.frames import quiet_ibis
from fideliza.core.errors import ValidationError

PathLike: TypeAlias = str | Path
FrameLike: TypeAlias = pd.DataFrame | pl.DataFrame | pa.Table
Source: TypeAlias = PathLike | Sequence[PathLike] | FrameLike

TRANSACTIONS_SCHEMA = ibis.schema(
    {
        "member_id": "string",
        "occurred_at": "timestamp",
        "amount": "decimal(18, 4)",
        "currency": "string",
        "channel": "string",
        "store": "string",
        "items": "string",
    }
)
SURVEYS_SCHEMA = ibis.schema(
    {"member_id": "string", "answered_at": "timestamp", "kind": "string", "score": "float64"}
)
REFERRALS_SCHEMA = ibis.schema(
    {"member_id": "string", "referrer_id": "string", "referred_at": "timestamp"}
)
ENTRIES_SCHEMA = ibis.schema(
    {
        "member_id": "string",
        "occurred_at": "timestamp",
        "account_kind": "string",
        "points": "int64",
        "transaction_kind": "string",
        "tier": "string",
    }
)
LOTS_SCHEMA = ibis.schema(
    {
        "member_id": "string",
        "earned_at": "timestamp",
        "expires_at": "timestamp",
        "amount": "int64",
        "remaining": "int64",
        "expired": "int64",
        "state": "string",
    }
)
REDEMPTIONS_SCHEMA = ibis.schema(
    {
        "member_id": "string",
        "redeemed_at": "timestamp",
        "reward_code": "string",
        "reward_kind": "string",
        "points": "int64",
        "value": "decimal(18, 4)",
    }
)
SURVEY_KINDS = ("nps", "csat", "custom")
ACCOUNT_KINDS = ("available", "pending", "held")

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")

# A time of day followed by an offset ("…T10:00:00+01:00", "… 10:00Z"); a bare date has none.
_OFFSET_PATTERN = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([zZ]|[+-]\d{2}(:?\d{2})?)$"
_SQLITE_CHUNK = 100_000
_MONEY_SCALE = 10_000  # fideliza.db.Money stores 1/10,000ths on SQLite


@dataclass(frozen=True, eq=False)
class AnalyticsData:
    """The tables the analytics read, on one Ibis backend; `close()` releases the backend."""

    transactions: ir.Table
    surveys: ir.Table | None
    referrals: ir.Table | None
    timezone: str
    backend: BaseBackend
    entries: ir.Table | None = None
    lots: ir.Table | None = None
    redemptions: ir.Table | None = None
    # What close() does instead of disconnecting, when the backend is not the source's to end
    # (a Spark source leaves the caller's session running and removes its staged files).
    release: Callable[[], None] | None = dataclasses.field(default=None, repr=False)

    def close(self) -> None:
        """Disconnects the backend (an in-memory DuckDB forgets the data), or runs `release`."""
        if self.release is None:
            self.backend.disconnect()
        else:
            self.release()

    def __enter__(self) -> AnalyticsData:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- what each table needs --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: str  # id | timestamp | money | text | json | survey_kind | score | points | account_kind
    required: bool


_TRANSACTION_COLUMNS = (
    _Column("member_id", "id", True),
    _Column("occurred_at", "timestamp", True),
    _Column("amount", "money", True),
    _Column("currency", "text", False),
    _Column("channel", "text", False),
    _Column("store", "text", False),
    _Column("items", "json", False),
)
_SURVEY_COLUMNS = (
    _Column("member_id", "id", True),
    _Column("answered_at", "timestamp", True),
    _Column("kind", "survey_kind", True),
    _Column("score", "score", True),
)
_REFERRAL_COLUMNS = (
    _Column("member_id", "id", True),
    _Column("referrer_id", "id", True),
    _Column("referred_at", "timestamp", True),
)
_ENTRY_COLUMNS = (
    _Column("member_id", "id", True),
    _Column("occurred_at", "timestamp", True),
    _Column("account_kind", "account_kind", True),
    _Column("points", "points", True),
    _Column("transaction_kind", "text", False),
    _Column("tier", "text", False),
)
_LOT_COLUMNS = (
    _Column("member_id", "id", True),
    _Column("earned_at", "timestamp", True),
    _Column("expires_at", "timestamp", False),
    _Column("amount", "points", True),
    _Column("remaining", "points", True),
    _Column("expired", "points", False),
    _Column("state", "text", False),
)
_REDEMPTION_COLUMNS = (
    _Column("member_id", "id", True),
    _Column("redeemed_at", "timestamp", True),
    _Column("reward_code", "id", True),
    _Column("reward_kind", "text", False),
    _Column("points", "points", True),
    _Column("value", "money", False),
)
_TABLES: Mapping[str, tuple[_Column, ...]] = {
    "transactions": _TRANSACTION_COLUMNS,
    "surveys": _SURVEY_COLUMNS,
    "referrals": _REFERRAL_COLUMNS,
    "entries": _ENTRY_COLUMNS,
    "lots": _LOT_COLUMNS,
    "redemptions": _REDEMPTION_COLUMNS,
}
_NULL_TYPES = {
    "score": "DOUBLE",
    "points": "BIGINT",
    "timestamp": "TIMESTAMP",
    "money": "DECIMAL(18, 4)",
}
_PROBLEMS = {
    "id": "is required",
    "timestamp": "is not an ISO 8601 timestamp with a timezone (e.g. 2025-03-01T10:00:00+01:00)",
    "money": "is not a decimal number",
    "survey_kind": f"must be one of {', '.join(SURVEY_KINDS)}",
    "score": "is not a number",
    "points": "is not a whole number of points",
    "account_kind": f"must be one of {', '.join(ACCOUNT_KINDS)}",
}


# --- public openers ---------------------------------------------------------------------------


def open_files(
    transactions: PathLike | Sequence[PathLike],
    *,
    surveys: PathLike | Sequence[PathLike] | None = None,
    referrals: PathLike | Sequence[PathLike] | None = None,
    entries: PathLike | Sequence[PathLike] | None = None,
    lots: PathLike | Sequence[PathLike] | None = None,
    redemptions: PathLike | Sequence[PathLike] | None = None,
    timezone: str = "UTC",
    assume_timezone: str | None = None,
    database: PathLike | None = None,
) -> AnalyticsData:
    """Loads CSV or Parquet files (chosen by extension) into DuckDB and opens them.

    CSV files are the purchases format (header with at least member_id, occurred_at, amount;
    external_id, currency, channel, store and a JSON `items` optional; other columns ignored).
    A missing required column or a value that cannot be read raises a ValidationError naming
    the column and the value, before any table is returned.
    """
    return _open_duckdb(
        {
            "transactions": transactions,
            "surveys": surveys,
            "referrals": referrals,
            "entries": entries,
            "lots": lots,
            "redemptions": redemptions,
        },
        timezone=timezone,
        assume_timezone=assume_timezone,
        database=database,
    )


def open_frames(
    transactions: FrameLike,
    *,
    surveys: FrameLike | None = None,
    referrals: FrameLike | None = None,
    entries: FrameLike | None = None,
    lots: FrameLike | None = None,
    redemptions: FrameLike | None = None,
    timezone: str = "UTC",
    assume_timezone: str | None = None,
    database: PathLike | None = None,
) -> AnalyticsData:
    """Loads pandas/polars DataFrames or Arrow tables (same columns as the files) into DuckDB."""
    return _open_duckdb(
        {
            "transactions": transactions,
            "surveys": surveys,
            "referrals": referrals,
            "entries": entries,
            "lots": lots,
            "redemptions": redemptions,
        },
        timezone=timezone,
        assume_timezone=assume_timezone,
        database=database,
    )


def open_database(
    url: str,
    *,
    program: str | None = None,
    timezone: str | None = None,
    surveys: Source | None = None,
    referrals: Source | None = None,
    assume_timezone: str | None = None,
    ledger: bool = True,
) -> AnalyticsData:
    """Opens one program's purchases in Fideliza's operational database (SQLAlchemy URL).

    `program` is the program's code; it may be left out when the database holds one program.
    `amount` is the purchase amount net of returned items (`amount - amount_returned`), and
    `timezone` defaults to the program's, so periods are the business's calendar periods.
    SQLite databases are copied into an in-memory DuckDB; PostgreSQL is queried in place.
    `surveys` and `referrals`, when given, are files or frames loaded onto the same backend;
    otherwise the program's own survey answers and referral links are read (None if it has
    none).
    With `ledger` (the default) the program's points ledger is opened too, as `entries` (the
    entries on members' available/pending/held accounts) and `lots` (`expired` = the lot's
    allocations of kind 'expire'); `tier` is the member's current tier. The program's captured
    reward redemptions are opened as `redemptions` (None when it has none).
    """
    if url.startswith("sqlite"):
        path = make_url(url).database
        if not path or not Path(path).is_file():  # SQLite would create an empty file
            raise ValidationError(f"names no SQLite database file: {path!r}", field="url")
    elif not url.startswith("postgresql"):
        raise ValidationError("must be a sqlite:// or postgresql:// URL", field="url")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, code, timezone FROM programs")).all()
    except SQLAlchemyError as exc:
        raise ValidationError(
            f"cannot be read as a Fideliza database: {_first_line(exc)}", field="url"
        ) from None
    finally:
        engine.dispose()
    program_id, zone = _choose_program(rows, program)
    zone = _check_zone(timezone or zone, field="timezone")
    extras = {"surveys": surveys, "referrals": referrals}
    if url.startswith("sqlite"):
        return _open_sqlite(url, program_id, zone, extras, assume_timezone, ledger)
    return _open_postgres(url, program_id, zone, extras, assume_timezone, ledger)


# --- DuckDB: files and frames -----------------------------------------------------------------


def _open_duckdb(
    sources: Mapping[str, Source | None],
    *,
    timezone: str,
    assume_timezone: str | None,
    database: PathLike | None,
) -> AnalyticsData:
    zone = _check_zone(timezone, field="timezone")
    assumed = None if assume_timezone is None else _check_zone(assume_timezone, "assume_timezone")
    backend = ibis.duckdb.connect(":memory:" if database is None else str(database))
    try:
        tables = {
            name: None
            if source is None
            else _load_into_duckdb(backend, name, source, zone=zone, assumed=assumed)
            for name, source in sources.items()
        }
    except BaseException:
        backend.disconnect()
        raise
    transactions = tables["transactions"]
    assert transactions is not None
    return AnalyticsData(
        transactions=transactions,
        surveys=tables["surveys"],
        referrals=tables["referrals"],
        timezone=zone,
        backend=backend,
        entries=tables["entries"],
        lots=tables["lots"],
        redemptions=tables["redemptions"],
    )


def _load_into_duckdb(
    backend: Any, name: str, source: Source, *, zone: str, assumed: str | None
) -> ir.Table:
    """Creates the table `fideliza_<name>` from a file list or a frame; returns it."""
    raw = backend.con
    view = f"fideliza_{name}_source"
    if isinstance(source, pd.DataFrame | pl.DataFrame | pa.Table):
        try:
            arrow = _as_arrow(source)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(f"cannot be read: {_first_line(exc)}", field=name) from None
        raw.register(view, arrow)
        relation = view
    else:
        relation = _file_relation(source, field=name)
    try:
        described = raw.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    except Exception as exc:  # duckdb raises IOException, InvalidInputException, …
        raise ValidationError(f"cannot be read: {_first_line(exc)}", field=name) from None
    columns = {row[0]: row[1] for row in described}
    target = f"fideliza_{name}"
    _create_normalized(
        raw, relation, columns, _TABLES[name], target, table=name, zone=zone, assumed=assumed
    )
    if relation == view:
        raw.unregister(view)
    with quiet_ibis():
        return backend.table(target)


def _as_arrow(frame: FrameLike) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.to_arrow()
    return pa.Table.from_pandas(frame, preserve_index=False)


def _file_relation(source: PathLike | Sequence[PathLike], *, field: str) -> str:
    paths = [Path(source)] if isinstance(source, str | Path) else [Path(p) for p in source]
    if not paths:
        raise ValidationError("names no file", field=field)
    for path in paths:
        if not path.is_file():
            raise ValidationError(f"no such file: {path}", field=field)
    names = [path.name.lower() for path in paths]
    listed = "[" + ", ".join(_sql_string(str(path)) for path in paths) + "]"
    if all(name.endswith(CSV_SUFFIXES) for name in names):
        # All text: the values are converted (and checked) below, the same way for every file.
        return (
            f"read_csv({listed}, header = true, all_varchar = true, delim = ',', "
            "quote = '\"', escape = '\"')"
        )
    if all(name.endswith(PARQUET_SUFFIXES) for name in names):
        return f"read_parquet({listed})"
    raise ValidationError(
        f"must all be CSV ({', '.join(CSV_SUFFIXES)}) or all Parquet "
        f"({', '.join(PARQUET_SUFFIXES)}), got {', '.join(p.name for p in paths)}",
        field=field,
    )


def _create_normalized(
    raw: Any,
    relation: str,
    columns: Mapping[str, str],
    spec: Sequence[_Column],
    target: str,
    *,
    table: str,
    zone: str,
    assumed: str | None,
) -> None:
    """CREATE TABLE target AS the normalized columns of `relation`, refusing bad values."""
    present = {name.strip(): name for name in columns}
    missing = [column.name for column in spec if column.required and column.name not in present]
    if missing:
        raise ValidationError(
            f"is a required column of {table} but the input has no {', '.join(missing)} "
            f"(found: {', '.join(present) or 'nothing'})",
            field=missing[0],
        )
    expressions: dict[str, str] = {}
    for column in spec:
        if column.name not in present:
            if column.kind == "points":  # an optional count of points: none
                expressions[column.name] = "CAST(0 AS BIGINT)"
                continue
            kind = _NULL_TYPES.get(column.kind, "VARCHAR")
            expressions[column.name] = f"CAST(NULL AS {kind})"
            continue
        source_name = present[column.name]
        source_type = columns[source_name]
        name = _quote(source_name)
        if source_type.upper() == "NULL":  # e.g. an empty object column of a pandas frame
            name, source_type = f"CAST({name} AS VARCHAR)", "VARCHAR"
        expressions[column.name] = _normalize_sql(
            column, name, source_type, zone=zone, assumed=assumed
        )
    select = ", ".join(f"{sql} AS {_quote(name)}" for name, sql in expressions.items())
    try:
        _run(raw, f"CREATE OR REPLACE TABLE {target} AS SELECT {select} FROM {relation}")
    except Exception as exc:
        raise ValidationError(f"cannot be read: {_first_line(exc)}", field=table) from None
    required = [column for column in spec if column.required]
    counts = _one(
        raw,
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE {_quote(c.name)} IS NULL)" for c in required)
        + f" FROM {target}",
    )
    bad = [column for column, count in zip(required, counts, strict=True) if count]
    # An optional column may be empty, but a value it holds must be readable.
    for column in spec:
        if column.required or column.kind in ("text", "json") or column.name not in present:
            continue
        given = f"NULLIF(TRIM(CAST({_quote(present[column.name])} AS VARCHAR)), '')"
        wrong = f"{given} IS NOT NULL AND ({expressions[column.name]}) IS NULL"
        if _one(raw, f"SELECT 1 FROM {relation} WHERE {wrong} LIMIT 1") is not None:
            bad.append(column)
            expressions[column.name] = f"CASE WHEN {wrong} THEN NULL ELSE 1 END"
    if bad:
        _run(raw, f"DROP TABLE {target}")
        raise _bad_value(raw, relation, present, bad[0], expressions[bad[0].name], assumed)
    if table == "surveys":
        _check_nps_scores(raw, target)


def _normalize_sql(
    column: _Column, name: str, source_type: str, *, zone: str, assumed: str | None
) -> str:
    """The DuckDB SQL that turns a source column into its normalized value (NULL when bad)."""
    kind = column.kind
    is_text = source_type.upper() == "VARCHAR"
    if kind in ("id", "text"):
        return f"NULLIF(TRIM(CAST({name} AS VARCHAR)), '')"
    if kind == "json":
        if is_text:
            return f"NULLIF(TRIM({name}), '')"
        return f"CAST(to_json({name}) AS VARCHAR)"
    if kind == "money":
        value = f"TRIM({name})" if is_text else name
        return f"TRY_CAST({value} AS DECIMAL(18, 4))"
    if kind == "score":
        value = f"TRIM({name})" if is_text else name
        return f"TRY_CAST({value} AS DOUBLE)"
    if kind == "points":
        value = f"TRIM({name})" if is_text else name
        return f"TRY_CAST({value} AS BIGINT)"
    if kind in ("survey_kind", "account_kind"):
        value = f"lower(TRIM(CAST({name} AS VARCHAR)))"
        kinds = SURVEY_KINDS if kind == "survey_kind" else ACCOUNT_KINDS
        allowed = ", ".join(_sql_string(k) for k in kinds)
        return f"CASE WHEN {value} IN ({allowed}) THEN {value} END"
    return f"date_trunc('second', {_timestamp_sql(column, name, source_type, zone, assumed)})"


def _timestamp_sql(
    column: _Column, name: str, source_type: str, zone: str, assumed: str | None
) -> str:
    local = _sql_string(zone)
    kind = source_type.upper()
    if kind == "TIMESTAMP WITH TIME ZONE" and zone == "UTC":
        # The UTC wall-clock time is the epoch itself: no time-zone lookup per row (a quarter
        # of the time to load a Parquet file's purchases). An infinite instant has none (NULL).
        return f"make_timestamp(epoch_us({name}))"
    if kind == "VARCHAR":
        value = f"TRIM({name})"
        naive = (
            "CAST(NULL AS TIMESTAMP)"
            if assumed is None
            else f"timezone({local}, timezone({_sql_string(assumed)}, "
            f"TRY_CAST({value} AS TIMESTAMP)))"
        )
        return (
            f"CASE WHEN regexp_matches({value}, {_sql_string(_OFFSET_PATTERN)}) "
            f"THEN timezone({local}, TRY_CAST({value} AS TIMESTAMPTZ)) ELSE {naive} END"
        )
    if kind == "TIMESTAMP WITH TIME ZONE":
        return f"timezone({local}, {name})"
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        if assumed is None:
            raise ValidationError(
                f"holds timestamps without a timezone ({source_type}): give their zone as "
                "assume_timezone",
                field=column.name,
            )
        return f"timezone({local}, timezone({_sql_string(assumed)}, CAST({name} AS TIMESTAMP)))"
    raise ValidationError(
        f"must be timestamps or ISO 8601 text, the column is {source_type}", field=column.name
    )


def _bad_value(
    raw: Any,
    relation: str,
    present: Mapping[str, str],
    column: _Column,
    expression: str,
    assumed: str | None,
) -> ValidationError:
    """Finds the first row whose `column` is bad and describes it (the slow path, on error)."""
    context = [
        name for name in ("external_id", "member_id") if name in present and name != column.name
    ]
    wanted = [present[column.name], *(present[name] for name in context)]
    row = _one(
        raw,
        f"SELECT {', '.join(f'CAST({_quote(n)} AS VARCHAR)' for n in wanted)} "
        f"FROM {relation} WHERE ({expression}) IS NULL LIMIT 1",
    )
    value, *where = row if row is not None else (None,)
    problem = _PROBLEMS[column.kind]
    if value is None or not str(value).strip():
        problem, shown = "is required", ""
    else:
        shown = f": {value!r}"
        if column.kind == "timestamp" and assumed is None:
            problem += "; for times without an offset, give their zone as assume_timezone"
    located = ", ".join(f"{name} {ident!r}" for name, ident in zip(context, where, strict=True))
    suffix = f" (row with {located})" if located else ""
    return ValidationError(f"{problem}{shown}{suffix}", field=column.name)


def _check_nps_scores(raw: Any, target: str) -> None:
    row = _one(
        raw,
        f"SELECT member_id, score FROM {target} WHERE kind = 'nps' "
        "AND (score < 0 OR score > 10 OR score <> floor(score)) LIMIT 1",
    )
    if row is not None:
        _run(raw, f"DROP TABLE {target}")
        raise ValidationError(
            f"must be a whole number from 0 to 10 for an nps answer: {row[1]!r} "
            f"(member_id {row[0]!r})",
            field="score",
        )


# --- the operational database -----------------------------------------------------------------


def _choose_program(rows: Sequence[Any], program: str | None) -> tuple[int, str]:
    if program is None:
        if len(rows) == 1:
            return int(rows[0][0]), str(rows[0][2])
        codes = ", ".join(sorted(str(row[1]) for row in rows)) or "none"
        raise ValidationError(
            f"is required: the database holds {len(rows)} programs ({codes})", field="program"
        )
    for program_id, code, zone in rows:
        if code == program:
            return int(program_id), str(zone)
    raise ValidationError(f"no program has the code {program!r}", field="program")


_SQLITE_PURCHASES = """
SELECT m.external_id, p.occurred_at, p.amount - p.amount_returned,
       p.currency, p.channel, p.store, p.items
FROM purchases AS p JOIN members AS m ON m.id = p.member_id
WHERE p.program_id = ?
"""
_SQLITE_SCHEMA = pa.schema(
    [
        ("member_id", pa.string()),
        ("occurred_at", pa.string()),
        ("amount", pa.int64()),
        ("currency", pa.string()),
        ("channel", pa.string()),
        ("store", pa.string()),
        ("items", pa.string()),
    ]
)
# Survey answers and referral links the program recorded itself (used when no file is given).
_OPERATIONAL_EXTRAS = {
    "surveys": (
        "SELECT m.external_id AS member_id, r.answered_at AS happened_at, r.kind AS kind, "
        "r.score AS score FROM survey_responses AS r JOIN members AS m ON m.id = r.member_id "
        "WHERE r.program_id = {program} AND r.score IS NOT NULL",
        ("member_id", "answered_at", "kind", "score"),
    ),
    "referrals": (
        "SELECT m.external_id AS member_id, r.linked_at AS happened_at, "
        "s.external_id AS referrer_id FROM referrals AS r "
        "JOIN members AS m ON m.id = r.referred_member_id "
        "JOIN members AS s ON s.id = r.referrer_member_id WHERE r.program_id = {program}",
        ("member_id", "referred_at", "referrer_id"),
    ),
}

# The ledger: entries on members' accounts, and lots with the points the expiry job took.
_LEDGER_ENTRIES = """
SELECT m.external_id AS member_id, t.occurred_at AS occurred_at, a.kind AS account_kind,
       e.amount AS points, t.kind AS transaction_kind, m.tier_code AS tier
FROM ledger_entries AS e
JOIN accounts AS a ON a.id = e.account_id
JOIN ledger_transactions AS t ON t.id = e.transaction_id
JOIN members AS m ON m.id = a.member_id
WHERE a.program_id = {program} AND a.kind IN ('available', 'pending', 'held')
"""
_LEDGER_LOTS = """
SELECT m.external_id AS member_id, l.earned_at AS earned_at, l.expires_at AS expires_at,
       l.amount AS amount, l.remaining AS remaining,
       COALESCE((SELECT sum(x.amount) FROM lot_allocations AS x
                 WHERE x.lot_id = l.id AND x.kind = 'expire'), 0) AS expired,
       l.state AS state
FROM point_lots AS l JOIN members AS m ON m.id = l.member_id
WHERE l.program_id = {program}
"""
# Captured reward redemptions: the moment of capture, the reward, the points and money value.
_REDEMPTIONS = """
SELECT m.external_id AS member_id, r.settled_at AS redeemed_at, w.code AS reward_code,
       w.kind AS reward_kind, r.points AS points, r.value AS value
FROM reward_redemptions AS r
JOIN rewards AS w ON w.id = r.reward_id
JOIN members AS m ON m.id = r.member_id
WHERE r.program_id = {program} AND r.status = 'captured' AND r.settled_at IS NOT NULL
"""
_SQLITE_REDEMPTIONS_SCHEMA = pa.schema(
    [
        ("member_id", pa.string()),
        ("redeemed_at", pa.string()),
        ("reward_code", pa.string()),
        ("reward_kind", pa.string()),
        ("points", pa.int64()),
        ("value", pa.int64()),
    ]
)
_SQLITE_ENTRIES_SCHEMA = pa.schema(
    [
        ("member_id", pa.string()),
        ("occurred_at", pa.string()),
        ("account_kind", pa.string()),
        ("points", pa.int64()),
        ("transaction_kind", pa.string()),
        ("tier", pa.string()),
    ]
)
_SQLITE_LOTS_SCHEMA = pa.schema(
    [
        ("member_id", pa.string()),
        ("earned_at", pa.string()),
        ("expires_at", pa.string()),
        ("amount", pa.int64()),
        ("remaining", pa.int64()),
        ("expired", pa.int64()),
        ("state", pa.string()),
    ]
)


def _open_sqlite(
    url: str,
    program_id: int,
    zone: str,
    extras: Mapping[str, Source | None],
    assumed: str | None,
    ledger: bool,
) -> AnalyticsData:
    path = make_url(url).database
    if not path:
        raise ValidationError("must name a SQLite database file", field="url")
    backend = ibis.duckdb.connect()
    try:
        # Read-only, so an analysis never takes the operational database's write lock; DuckDB
        # pulls the batches from its own thread, one at a time.
        source = sqlite3.connect(
            f"file:{Path(path).resolve()}?mode=ro", uri=True, check_same_thread=False
        )
        try:
            reader = pa.RecordBatchReader.from_batches(
                _SQLITE_SCHEMA,
                _sqlite_batches(source, _SQLITE_PURCHASES, _SQLITE_SCHEMA, program_id),
            )
            backend.con.register("fideliza_sqlite_purchases", reader)
            # SQLite keeps UTC text without a zone and money as integer 1/10,000ths.
            _run(
                backend.con,
                "CREATE OR REPLACE TABLE fideliza_transactions AS SELECT member_id, "
                f"date_trunc('second', timezone({_sql_string(zone)}, "
                "timezone('UTC', CAST(occurred_at AS TIMESTAMP)))) AS occurred_at, "
                f"CAST(CAST(amount AS DECIMAL(18, 0)) * CAST({1 / _MONEY_SCALE} AS DECIMAL(5, 4))"
                " AS DECIMAL(18, 4)) AS amount, currency, channel, store, items "
                "FROM fideliza_sqlite_purchases",
            )
            backend.con.unregister("fideliza_sqlite_purchases")
            redemptions = None
            if ledger:
                _copy_sqlite_ledger(backend, source, program_id, zone)
                redemptions = _copy_sqlite_redemptions(backend, source, program_id, zone)
            recorded = {
                name: _copy_sqlite_extra(backend, source, name, program_id, zone)
                for name, extra in extras.items()
                if extra is None
            }
        finally:
            source.close()
        tables = {
            name: recorded.get(name)
            if extra is None
            else _load_into_duckdb(backend, name, extra, zone=zone, assumed=assumed)
            for name, extra in extras.items()
        }
    except BaseException:
        backend.disconnect()
        raise
    with quiet_ibis():
        transactions = backend.table("fideliza_transactions")
        entries = backend.table("fideliza_entries") if ledger else None
        lots = backend.table("fideliza_lots") if ledger else None
    return AnalyticsData(
        transactions=transactions,
        surveys=tables["surveys"],
        referrals=tables["referrals"],
        timezone=zone,
        backend=backend,
        entries=entries,
        lots=lots,
        redemptions=redemptions,
    )


def _copy_sqlite_ledger(
    backend: Any, source: sqlite3.Connection, program_id: int, zone: str
) -> None:
    """Copies the ledger's entries and lots into DuckDB, UTC text turned into local times."""

    def local(column: str) -> str:
        return (
            f"date_trunc('second', timezone({_sql_string(zone)}, "
            f"timezone('UTC', CAST({column} AS TIMESTAMP)))) AS {column}"
        )

    copies = (
        ("entries", _LEDGER_ENTRIES, _SQLITE_ENTRIES_SCHEMA, ("occurred_at",)),
        ("lots", _LEDGER_LOTS, _SQLITE_LOTS_SCHEMA, ("earned_at", "expires_at")),
    )
    for name, query, schema, times in copies:
        sql = query.format(program="?")
        reader = pa.RecordBatchReader.from_batches(
            schema, _sqlite_batches(source, sql, schema, program_id)
        )
        view = f"fideliza_sqlite_{name}"
        backend.con.register(view, reader)
        columns = ", ".join(local(f.name) if f.name in times else f.name for f in schema)
        _run(
            backend.con, f"CREATE OR REPLACE TABLE fideliza_{name} AS SELECT {columns} FROM {view}"
        )
        backend.con.unregister(view)


def _copy_sqlite_redemptions(
    backend: Any, source: sqlite3.Connection, program_id: int, zone: str
) -> ir.Table | None:
    """The program's captured redemptions in DuckDB; None when it has none (or no catalog)."""
    sql = _REDEMPTIONS.format(program="?")
    try:
        if source.execute(f"SELECT 1 FROM ({sql}) LIMIT 1", (program_id,)).fetchone() is None:
            return None
    except sqlite3.OperationalError:  # a database from before the rewards catalog
        return None
    schema = _SQLITE_REDEMPTIONS_SCHEMA
    reader = pa.RecordBatchReader.from_batches(
        schema, _sqlite_batches(source, sql, schema, program_id)
    )
    view = "fideliza_sqlite_redemptions"
    backend.con.register(view, reader)
    _run(
        backend.con,
        "CREATE OR REPLACE TABLE fideliza_redemptions AS SELECT member_id, "
        f"date_trunc('second', timezone({_sql_string(zone)}, "
        "timezone('UTC', CAST(redeemed_at AS TIMESTAMP)))) AS redeemed_at, reward_code, "
        "reward_kind, points, "
        f"CAST(CAST(value AS DECIMAL(18, 0)) * CAST({1 / _MONEY_SCALE} AS DECIMAL(5, 4))"
        f" AS DECIMAL(18, 4)) AS value FROM {view}",
    )
    backend.con.unregister(view)
    with quiet_ibis():
        return backend.table("fideliza_redemptions")


def _copy_sqlite_extra(
    backend: Any, source: sqlite3.Connection, name: str, program_id: int, zone: str
) -> ir.Table | None:
    """The program's own survey answers or referral links, in DuckDB; None when it has none."""
    query, columns = _OPERATIONAL_EXTRAS[name]
    try:
        rows = source.execute(query.format(program="?"), (program_id,)).fetchall()
    except sqlite3.OperationalError:  # a database from before these tables existed
        return None
    if not rows:
        return None
    fields = [pa.field(column, pa.string()) for column in ("member_id", "happened_at")]
    if name == "surveys":
        fields += [pa.field("kind", pa.string()), pa.field("score", pa.float64())]
    else:
        fields += [pa.field("referrer_id", pa.string())]
    frame = pa.Table.from_pylist(
        [dict(zip([f.name for f in fields], row, strict=True)) for row in rows],
        schema=pa.schema(fields),
    )
    view = f"fideliza_sqlite_{name}"
    backend.con.register(view, frame)
    local = (
        f"date_trunc('second', timezone({_sql_string(zone)}, "
        f"timezone('UTC', CAST(happened_at AS TIMESTAMP)))) AS {columns[1]}"
    )
    rest = ", ".join(c for c in columns if c not in ("member_id", columns[1]))
    _run(
        backend.con,
        f"CREATE OR REPLACE TABLE fideliza_{name} AS SELECT member_id, {local}, {rest} FROM {view}",
    )
    backend.con.unregister(view)
    with quiet_ibis():
        return backend.table(f"fideliza_{name}")


def _sqlite_batches(
    source: sqlite3.Connection, query: str, schema: pa.Schema, program_id: int
) -> Iterator[pa.RecordBatch]:
    cursor = source.execute(query, (program_id,))
    while rows := cursor.fetchmany(_SQLITE_CHUNK):
        columns = list(zip(*rows, strict=True))
        yield pa.RecordBatch.from_arrays(
            [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)],
            schema=schema,
        )


def _open_postgres(
    url: str,
    program_id: int,
    zone: str,
    extras: Mapping[str, Source | None],
    assumed: str | None,
    ledger: bool,
) -> AnalyticsData:
    parts = make_url(url)
    backend = ibis.postgres.connect(
        host=parts.host or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        database=parts.database,
    )
    try:
        local = _sql_string(zone)
        # A temporary view rather than `backend.sql(...)`: Ibis 12 with sqlglot 30 renders the
        # DROP VIEW it issues there without the view's name.
        with backend.raw_sql(
            "CREATE TEMPORARY VIEW fideliza_transactions AS "
            "SELECT CAST(m.external_id AS TEXT) AS member_id, "
            f"date_trunc('second', p.occurred_at AT TIME ZONE {local}) AS occurred_at, "
            "CAST(p.amount - p.amount_returned AS NUMERIC(18, 4)) AS amount, "
            "CAST(p.currency AS TEXT) AS currency, CAST(p.channel AS TEXT) AS channel, "
            "CAST(p.store AS TEXT) AS store, CAST(p.items AS TEXT) AS items "
            "FROM purchases AS p JOIN members AS m ON m.id = p.member_id "
            f"WHERE p.program_id = {int(program_id)}"
        ):
            pass
        transactions = backend.table("fideliza_transactions")
        entries = lots = redemptions = None
        if ledger:
            entries, lots = _postgres_ledger(backend, program_id, local)
            redemptions = _postgres_redemptions(backend, program_id, local)
        tables: dict[str, ir.Table | None] = {}
        for name, extra in extras.items():
            if extra is None:
                tables[name] = _postgres_extra(backend, name, program_id, local)
                continue
            # Normalized in a scratch DuckDB, then uploaded as a temporary table.
            scratch = ibis.duckdb.connect()
            try:
                loaded = _load_into_duckdb(scratch, name, extra, zone=zone, assumed=assumed)
                rows = loaded.to_pyarrow()
            finally:
                scratch.disconnect()
            tables[name] = backend.create_table(f"fideliza_{name}", rows, temp=True)
    except BaseException:
        backend.disconnect()
        raise
    return AnalyticsData(
        transactions=transactions,
        surveys=tables["surveys"],
        referrals=tables["referrals"],
        timezone=zone,
        backend=backend,
        entries=entries,
        lots=lots,
        redemptions=redemptions,
    )


def _postgres_extra(backend: Any, name: str, program_id: int, local: str) -> ir.Table | None:
    """A view of the program's own survey answers or referral links; None when it has none."""
    query, columns = _OPERATIONAL_EXTRAS[name]
    select = query.format(program=int(program_id))
    with backend.raw_sql(f"SELECT 1 FROM ({select}) AS x LIMIT 1") as cursor:
        if cursor.fetchone() is None:
            return None
    at = f"date_trunc('second', happened_at AT TIME ZONE {local}) AS {columns[1]}"
    if name == "surveys":
        rest = "CAST(kind AS TEXT) AS kind, CAST(score AS DOUBLE PRECISION) AS score"
    else:
        rest = "CAST(referrer_id AS TEXT) AS referrer_id"
    with backend.raw_sql(
        f"CREATE TEMPORARY VIEW fideliza_{name} AS "
        f"SELECT CAST(member_id AS TEXT) AS member_id, {at}, {rest} FROM ({select}) AS x"
    ):
        pass
    return backend.table(f"fideliza_{name}")


def _postgres_redemptions(backend: Any, program_id: int, local: str) -> ir.Table | None:
    """A view of the program's captured redemptions; None when it has none (or no catalog)."""
    select = _REDEMPTIONS.format(program=int(program_id))
    with backend.raw_sql("SELECT to_regclass('reward_redemptions')") as cursor:
        row = cursor.fetchone()
    if row is None or row[0] is None:  # a database from before the rewards catalog
        return None
    with backend.raw_sql(f"SELECT 1 FROM ({select}) AS x LIMIT 1") as cursor:
        if cursor.fetchone() is None:
            return None
    with backend.raw_sql(
        "CREATE TEMPORARY VIEW fideliza_redemptions AS "
        "SELECT CAST(member_id AS TEXT) AS member_id, "
        f"date_trunc('second', redeemed_at AT TIME ZONE {local}) AS redeemed_at, "
        "CAST(reward_code AS TEXT) AS reward_code, CAST(reward_kind AS TEXT) AS reward_kind, "
        "CAST(points AS BIGINT) AS points, CAST(value AS NUMERIC(18, 4)) AS value "
        f"FROM ({select}) AS x"
    ):
        pass
    return backend.table("fideliza_redemptions")


def _postgres_ledger(backend: Any, program_id: int, local: str) -> tuple[ir.Table, ir.Table]:
    """Temporary views of the ledger's entries and lots, in the analytics' types."""

    def at(column: str) -> str:
        return f"date_trunc('second', {column} AT TIME ZONE {local})"

    entries = _LEDGER_ENTRIES.format(program=int(program_id))
    lots = _LEDGER_LOTS.format(program=int(program_id))
    views = {
        "entries": (
            "SELECT CAST(member_id AS TEXT) AS member_id, "
            f"{at('occurred_at')} AS occurred_at, CAST(account_kind AS TEXT) AS account_kind, "
            "CAST(points AS BIGINT) AS points, CAST(transaction_kind AS TEXT) AS "
            f"transaction_kind, CAST(tier AS TEXT) AS tier FROM ({entries}) AS e"
        ),
        "lots": (
            f"SELECT CAST(member_id AS TEXT) AS member_id, {at('earned_at')} AS earned_at, "
            f"{at('expires_at')} AS expires_at, CAST(amount AS BIGINT) AS amount, "
            "CAST(remaining AS BIGINT) AS remaining, CAST(expired AS BIGINT) AS expired, "
            f"CAST(state AS TEXT) AS state FROM ({lots}) AS l"
        ),
    }
    for name, select in views.items():
        with backend.raw_sql(f"CREATE TEMPORARY VIEW fideliza_{name} AS {select}"):
            pass
    return backend.table("fideliza_entries"), backend.table("fideliza_lots")


# --- small helpers ----------------------------------------------------------------------------


def _run(raw: Any, sql: str) -> None:
    """Runs a statement to completion (DuckDB 2 refuses new work while a result is unread)."""
    raw.execute(sql).fetchall()


def _one(raw: Any, sql: str) -> Any:
    """The first row of a query (or None), reading the result to its end."""
    rows = raw.execute(sql).fetchall()
    return rows[0] if rows else None


def _check_zone(zone: str, field: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"is not a known IANA timezone: {zone!r}", field=field) from None
    return zone


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
