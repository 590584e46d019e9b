"""Engine and session factory, with the SQLite and PostgreSQL specifics in one place."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    any_,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING)


# 64-bit ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
# The program of a row in a high-volume table (purchases, ledger transactions, lots …), without
# a foreign key: a key would make every insert lock the one program row (FOR KEY SHARE on
# PostgreSQL), a queue all writers of a program wait in. The member's key already ties the
# row to a real member, and services only ever write a member's own program id.
ProgramId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always gives them back aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: timestamps must carry a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """Exact money: NUMERIC(18,4) on PostgreSQL; on SQLite, an integer of 1/10,000ths.

    SQLite has no decimal type and would store NUMERIC as a binary float.
    """

    impl = Numeric(18, 4)
    cache_ok = True
    SCALE = 10_000

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, 4))

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return money_to_sqlite(value)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return money_from_sqlite(value)
        return Decimal(value).quantize(_FOUR_PLACES)


_FOUR_PLACES = Decimal("0.0001")


def money_to_sqlite(value: Decimal | int) -> int:
    """Decimal money → SQLite's integer of 1/10,000ths (refusing sub-1/10,000 fractions)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"money must be a Decimal or an int, not {type(value).__name__}")
    scaled = Decimal(value) * Money.SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"money with more than 4 decimals: {value}")
    return int(scaled)


def money_from_sqlite(value: int) -> Decimal:
    return (Decimal(int(value)) / Money.SCALE).quantize(_FOUR_PLACES)


def sqlite_timestamp(value: datetime) -> str:
    """The text SQLAlchemy stores for a UTC datetime on SQLite (for raw bulk inserts)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]  # drop "+00:00"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """Creates an engine; SQLite gets WAL, foreign keys and BEGIN IMMEDIATE transactions."""
    if is_sqlite(url):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event open the transaction (pysqlite would defer it).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at the start: a read-then-write transaction can then never
            # fail half-way with "database is locked", and balance checks see the final state.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Opens a session, commits if the block succeeds, rolls back otherwise."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def upsert_add(
    db: Session,
    table: Any,
    *,
    keys: tuple[str, ...],
    add: tuple[str, ...],
    rows: list[dict[str, Any]],
) -> None:
    """Inserts counter rows, or adds their `add` columns to the rows already there.

    `INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n` on both SQLite and PostgreSQL: the
    addition happens in the database, so concurrent writers never lose an update. Rows may
    repeat a key: their `add` columns are summed, the first row's other columns are kept (what
    inserting them one after the other would do).
    """
    if not rows:
        return
    columns = tuple(rows[0])
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        into = merged.get(key)
        if into is None:
            merged[key] = dict(row)
        else:
            for name in add:
                into[name] += row[name]
    # Sorted, so two writers upserting overlapping counters lock them in the same order.
    ordered = [merged[key] for key in sorted(merged)]
    connection = db.connection()
    raw = connection.connection.driver_connection
    assert raw is not None
    names = ", ".join(columns)
    updates = ", ".join(f"{name} = {table.name}.{name} + excluded.{name}" for name in add)
    conflict = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    if connection.dialect.name == "sqlite":
        converters = [_bulk_converter(table.c[name], True) for name in columns]
        values = [
            tuple(
                value if convert is None else convert(value)
                for value, convert in zip((row[c] for c in columns), converters, strict=True)
            )
            for row in ordered
        ]
        marks = ", ".join("?" for _ in columns)
        cursor = raw.cursor()
        cursor.executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks}) {conflict}", values
        )
        cursor.close()
        return
    # PostgreSQL: one statement for all the rows (arrays unnested in order), not one per row.
    arrays = ", ".join(
        f"%s::{table.c[name].type.compile(dialect=connection.dialect)}[]" for name in columns
    )
    with raw.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) {conflict}",
            [[row[name] for row in ordered] for name in columns],
        )


def in_values(db: Session, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, one parameter, not thousands.

    A query with thousands of parameters costs more to build and parse than to run. One value
    is `column = value`: PostgreSQL's generic plan for `= ANY` guesses ten rows and may scan a
    small table instead of using its index.
    """
    if len(values) == 1:
        return column == values[0]
    if db.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def among(dialect: str, column: Any, single: bool) -> Any:
    """`column IN :values`, for a statement built once and run with its values as a parameter
    (`among_values`): building a statement costs more CPU than running it for one member. On
    PostgreSQL one array parameter (`= ANY`, see in_values); one value as `column =
    :values`, since the server's cached plan for `= ANY` guesses ten rows and may scan a small
    table instead of its index."""
    if single:
        return column == bindparam("values")
    if dialect == "postgresql":
        return column == any_(bindparam("values", type_=ARRAY(column.type)))
    return column.in_(bindparam("values", expanding=True))


def among_values(values: Sequence[Any]) -> Any:
    """The parameter of an `among` condition built for these values."""
    return values[0] if len(values) == 1 else list(values)


def add_by_id(db: Session, table: str, column: str, amounts: dict[int, int]) -> None:
    """`column += amount` for each row id of `table`, in id order (callers hold the rows' locks).

    Many rows: one statement on PostgreSQL. One row (a batch of one, the usual case when requests
    do not overlap): a plain UPDATE by id, which the server plans cheaper than a join with unnest
    (~10 % of its CPU per redemption, measured with bench_redemptions).
    """
    if not amounts:
        return
    ordered = sorted(amounts.items())
    connection = db.connection()
    if connection.dialect.name == "postgresql" and len(ordered) > 1:
        connection.execute(
            text(
                f"UPDATE {table} SET {column} = {table}.{column} + moves.amount "
                "FROM unnest(CAST(:ids AS BIGINT[]), CAST(:amounts AS BIGINT[])) "
                f"AS moves(id, amount) WHERE {table}.id = moves.id"
            ),
            {"ids": [row_id for row_id, _ in ordered], "amounts": [a for _, a in ordered]},
        )
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    cursor = raw.cursor()
    cursor.executemany(
        f"UPDATE {table} SET {column} = {column} + {mark} WHERE id = {mark}",
        [(amount, row_id) for row_id, amount in ordered],
    )
    cursor.close()


def _nullable(convert: Any) -> Any:
    return lambda value: None if value is None else convert(value)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _bulk_converter(column: Any, sqlite: bool) -> Any:
    """How one column's Python value is written by `bulk_insert` (no SQLAlchemy per row)."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        if sqlite:
            return _nullable(sqlite_timestamp)
        return None
    if isinstance(kind, Money):
        if sqlite:
            return _nullable(money_to_sqlite)
        return None
    if isinstance(kind, JSON):
        return _nullable(_compact_json)
    if column.type.__class__.__name__ == "Date" and sqlite:
        return _nullable(date.isoformat)
    return None


def _convert_column(values: Sequence[Any], convert: Any, known: dict[Any, Any]) -> tuple[Any, ...]:
    """Converts a column's values, each distinct value once (dates and amounts repeat a lot),
    remembering them in `known` (the same instants go into several tables of a batch).

    Only for conversions that give equal values equal results (an instant in any zone, 1.5 and
    1.50), never for JSON (True == 1, but "true" != "1").
    """
    for value in set(values).difference(known):
        known[value] = convert(value)
    return tuple(map(known.__getitem__, values))


def bulk_insert(
    db: Session,
    table: Any,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    converted: dict[str, dict[Any, Any]] | None = None,
) -> None:
    """Inserts many rows fast: executemany on SQLite, COPY on PostgreSQL.

    Values are the Python values of the mapped types (aware datetimes, Decimal money, dicts for
    JSON); they are converted here once per column instead of through SQLAlchemy per row.
    `converted`, shared by the calls of one batch, keeps the conversions of values that repeat
    across tables (by type: keep it to one connection's dialect).
    """
    if not rows:
        return
    connection = db.connection()
    sqlite = connection.dialect.name == "sqlite"
    converters = [_bulk_converter(table.c[name], sqlite) for name in columns]
    if any(converters):
        memo = {} if converted is None else converted
        # Column by column: one map() per converted column is much cheaper than a Python
        # expression per value.
        values = list(zip(*rows, strict=True))
        for index, convert in enumerate(converters):
            if convert is None:
                continue
            kind = table.c[columns[index]].type
            if isinstance(kind, JSON):
                values[index] = tuple(map(convert, values[index]))
            else:  # datetimes, dates, money: equal values convert alike
                known = memo.setdefault(type(kind).__name__, {})
                values[index] = _convert_column(values[index], convert, known)
        rows = list(zip(*values, strict=True))
    raw = connection.connection.driver_connection
    assert raw is not None
    if sqlite:
        marks = ", ".join("?" for _ in columns)
        cursor = raw.cursor()
        cursor.executemany(
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows
        )
        cursor.close()
        return
    if len(rows) <= _FEW_ROWS:
        # A COPY costs two round trips to the server, one INSERT one: what counts for the
        # batch of one a single purchase is.
        marks = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
        with raw.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {marks}",
                [value for row in rows for value in row],
            )
        return
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


_FEW_ROWS = 16
