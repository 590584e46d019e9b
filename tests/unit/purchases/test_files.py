"""Reading purchase files: headers, row errors, batches, resuming, and the fast path's fidelity."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fideliza.core.errors import ValidationError
from fideliza.purchases.domain import Item, PurchaseInput
from fideliza.purchases.files import (
    COLUMNS,
    Batch,
    RowError,
    _Parser,
    file_fingerprint,
    parse_row_reference,
    read_purchases,
)

GOOD_ITEMS = json.dumps(
    [
        {"sku": "COF-ESP", "category": "coffee", "quantity": 2, "unit_price": "1.30"},
        {"sku": "BAK-CRO", "quantity": 1, "unit_price": "1.50"},
    ]
)


def a_row(**cells: str) -> dict[str, str]:
    """A valid CSV row as a dict of cells; keyword arguments replace cells."""
    row = {
        "external_id": "P1",
        "member_id": "M1",
        "occurred_at": "2025-03-01T10:00:00+01:00",
        "amount": "4.10",
        "currency": "EUR",
        "channel": "store",
        "store": "MAD-01",
        "items": GOOD_ITEMS,
    }
    row.update(cells)
    return row


def write_csv(path: Path, rows: Sequence[dict[str, str]], columns: Sequence[str] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(column, "") for column in columns])
    return path


def read_all(path: Path, **options: Any) -> list[Batch]:
    return list(read_purchases(path, program_currency="EUR", **options))


def lines_of(batches: list[Batch]) -> list[int]:
    return [line for batch in batches for line, _ in batch.purchases]


def errors_of(batches: list[Batch]) -> list[RowError]:
    return [error for batch in batches for error in batch.errors]


# --- the header -------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["external_id", "member_id", "occurred_at", "amount"])
def test_a_missing_required_column_is_refused_before_any_row_is_read(
    tmp_path: Path, missing: str
) -> None:
    columns = [c for c in COLUMNS if c != missing]
    path = write_csv(tmp_path / "p.csv", [a_row()], columns)

    with pytest.raises(ValidationError) as raised:
        read_purchases(path, program_currency="EUR")  # no iteration needed

    assert raised.value.field == missing
    assert missing in raised.value.message


def test_optional_columns_may_be_absent_and_columns_come_in_any_order(tmp_path: Path) -> None:
    columns = ["amount", "note", "occurred_at", "member_id", "external_id"]
    path = write_csv(tmp_path / "p.csv", [a_row(note="ignored")], columns)

    [batch] = read_all(path)

    assert batch.errors == []
    [(line, purchase)] = batch.purchases
    assert line == 2
    assert purchase == PurchaseInput(
        external_id="P1",
        member_ref="M1",
        occurred_at=datetime(2025, 3, 1, 9, tzinfo=UTC),
        amount=Decimal("4.10"),
        currency="EUR",
    )


def test_a_duplicated_column_or_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [], [*COLUMNS, "amount"])
    with pytest.raises(ValidationError) as raised:
        read_purchases(path, program_currency="EUR")
    assert raised.value.field == "amount"

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValidationError, match="no header"):
        read_purchases(empty, program_currency="EUR")


def test_a_missing_file_or_a_broken_gzip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as raised:
        read_purchases(tmp_path / "nothing.csv", program_currency="EUR")
    assert raised.value.field == "path"

    broken = tmp_path / "p.csv.gz"
    broken.write_bytes(gzip.compress(b"external_id,member_id,occurred_at,amount\n")[:-9])
    with pytest.raises(ValidationError) as raised:
        read_all(broken)
    assert raised.value.field == "file"


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.xlsx"
    path.write_text("x")
    with pytest.raises(ValidationError) as raised:
        read_purchases(path, program_currency="EUR")
    assert raised.value.field == "path"


def test_a_byte_order_mark_before_the_header_is_ignored(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [a_row()])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    [batch] = read_all(path)

    assert len(batch.purchases) == 1


# --- rows -------------------------------------------------------------------------------------


def test_rows_are_read_with_the_line_a_person_sees(tmp_path: Path) -> None:
    rows = [a_row(external_id=f"P{n}") for n in range(1, 4)]
    path = write_csv(tmp_path / "p.csv", rows)

    [batch] = read_all(path)

    assert (batch.first_line, batch.last_line, batch.rows) == (2, 4, 3)
    assert [(line, p.external_id) for line, p in batch.purchases] == [
        (2, "P1"),
        (3, "P2"),
        (4, "P3"),
    ]
    first = batch.purchases[0][1]
    assert first.occurred_at == datetime(2025, 3, 1, 9, tzinfo=UTC)
    assert first.occurred_at.tzinfo is UTC
    assert first.amount == Decimal("4.10")
    assert first.items == (
        Item(sku="COF-ESP", quantity=2, unit_price=Decimal("1.30"), category="coffee"),
        Item(sku="BAK-CRO", quantity=1, unit_price=Decimal("1.50")),
    )
    assert (first.channel, first.store, first.currency) == ("store", "MAD-01", "EUR")


@pytest.mark.parametrize(
    ("cells", "field", "words"),
    [
        ({"occurred_at": "2025-03-01T10:00:00"}, "occurred_at", "timezone"),
        ({"occurred_at": "yesterday"}, "occurred_at", "ISO 8601"),
        ({"member_id": ""}, "member_id", "required"),
        ({"external_id": "   "}, "external_id", "required"),
        ({"amount": "12,50"}, "amount", "decimal"),
        ({"amount": "1.005"}, "amount", "decimals"),
        ({"amount": "-3.00"}, "amount", "negative"),
        ({"currency": "USD"}, "currency", "program's currency"),
        ({"items": "[{"}, "items", "JSON"),
        ({"items": '{"sku": "A"}'}, "items", "list"),
        ({"items": "[1]"}, "items[0]", "object"),
        ({"items": '[{"quantity": 1, "unit_price": "1"}]'}, "items[0].sku", "required"),
        ({"items": '[{"sku": "A", "quantity": 0, "unit_price": "1"}]'}, "items[0].quantity", ""),
        ({"items": '[{"sku": "A", "unit_price": 1.005}]'}, "items[0].unit_price", "decimals"),
        (
            {"items": '[{"sku": "A", "quantity": "²", "unit_price": "1"}]'},
            "items[0].quantity",
            "integer",
        ),
        ({"amount": "1e30"}, "amount", "too large"),
    ],
)
def test_a_bad_row_names_the_field_and_the_problem_and_spares_the_others(
    tmp_path: Path, cells: dict[str, str], field: str | None, words: str
) -> None:
    rows = [
        a_row(external_id="P1"),
        a_row(**{"external_id": "P2", **cells}),
        a_row(external_id="P3"),
    ]
    path = write_csv(tmp_path / "p.csv", rows)

    [batch] = read_all(path)

    assert [(line, p.external_id) for line, p in batch.purchases] == [(2, "P1"), (4, "P3")]
    [error] = batch.errors
    assert (error.line, error.field) == (3, field)
    assert words in error.message


def test_a_row_with_too_few_or_too_many_fields_is_a_row_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [a_row(external_id="P1")])
    with path.open("a", newline="") as stream:
        stream.write("P2,M1,2025-03-01T10:00:00+01:00\n")
        stream.write("P3,M1,2025-03-01T10:00:00+01:00,1.00,EUR,store,MAD-01,[],extra\n")

    [batch] = read_all(path)

    assert lines_of([batch]) == [2]
    assert [(e.line, e.field) for e in batch.errors] == [(3, "amount"), (4, None)]
    assert "3 fields" in batch.errors[0].message
    assert "9 fields" in batch.errors[1].message


def test_blank_cells_are_absent_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [a_row(currency="", channel=" ", store="", items="")])

    [batch] = read_all(path)

    [(_, purchase)] = batch.purchases
    assert (purchase.currency, purchase.channel, purchase.store, purchase.items) == (
        "EUR",
        None,
        None,
        (),
    )


def test_blank_lines_count_as_lines_but_are_no_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [a_row(external_id="P1")])
    with path.open("a", newline="") as stream:
        stream.write("\n")
    with path.open("a", newline="") as stream:
        csv.writer(stream).writerow(list(a_row(external_id="P2").values()))

    [batch] = read_all(path)

    assert lines_of([batch]) == [2, 4]
    assert batch.errors == []


def test_a_file_that_is_not_text_stops_after_yielding_the_rows_before(tmp_path: Path) -> None:
    rows = [a_row(external_id=f"P{n}") for n in range(1, 301)]
    path = write_csv(tmp_path / "p.csv", rows)
    path.write_bytes(path.read_bytes() + b"P301,\xff\xfe\n")

    batches: list[Batch] = []
    with pytest.raises(ValidationError) as raised:
        batches.extend(read_purchases(path, program_currency="EUR", batch_size=50))

    assert lines_of(batches) == list(range(2, 2 + len(lines_of(batches))))
    assert len(lines_of(batches)) >= 200
    assert raised.value.field == "file"
    assert "UTF-8" in raised.value.message


def test_gzipped_csv_is_read_too(tmp_path: Path) -> None:
    plain = write_csv(tmp_path / "p.csv", [a_row()])
    packed = tmp_path / "p.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))

    assert [p for b in read_all(packed) for p in b.purchases] == [
        p for b in read_all(plain) for p in b.purchases
    ]


# --- batches and resuming ---------------------------------------------------------------------


def test_batches_cover_consecutive_lines(tmp_path: Path) -> None:
    rows = [a_row(external_id=f"P{n}", amount="x" if n == 5 else "1.00") for n in range(1, 8)]
    path = write_csv(tmp_path / "p.csv", rows)

    batches = read_all(path, batch_size=3)

    assert [(b.first_line, b.last_line) for b in batches] == [(2, 4), (5, 7), (8, 8)]
    assert [len(b.purchases) for b in batches] == [3, 2, 1]
    assert [e.line for e in errors_of(batches)] == [6]


@pytest.mark.parametrize("done", [0, 1, 3, 4, 7, 9])
def test_skip_rows_resumes_where_an_earlier_read_stopped(tmp_path: Path, done: int) -> None:
    rows = [a_row(external_id=f"P{n}") for n in range(1, 8)]
    csv_path = write_csv(tmp_path / "p.csv", rows)
    parquet_path = tmp_path / "p.parquet"
    write_parquet(parquet_path, rows, row_group_size=2)

    for path, offset in ((csv_path, 1), (parquet_path, 0)):
        everything = [(line, p) for b in read_all(path) for line, p in b.purchases]
        rest = read_all(path, skip_rows=done, batch_size=2)

        assert [(line, p) for b in rest for line, p in b.purchases] == everything[done:]
        if rest:
            assert rest[0].first_line == done + 1 + offset
        assert sum(b.rows for b in rest) == max(0, 7 - done)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [a_row()])
    with pytest.raises(ValidationError, match="positive"):
        read_purchases(path, program_currency="EUR", batch_size=0)
    with pytest.raises(ValidationError, match="negative"):
        read_purchases(path, program_currency="EUR", skip_rows=-1)
    with pytest.raises(ValidationError) as raised:
        read_purchases(path, program_currency="euro")
    assert raised.value.field == "program_currency"


def test_the_fingerprint_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [a_row()])
    before = file_fingerprint(path)

    assert before == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(path.read_bytes() + b"\n")
    assert file_fingerprint(path) != before


# --- Parquet ----------------------------------------------------------------------------------


def write_parquet(
    path: Path, rows: Sequence[dict[str, Any]], *, row_group_size: int | None = None
) -> Path:
    table = pa.Table.from_pylist([dict(row) for row in rows])
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_parquet_with_text_columns_reads_like_csv(tmp_path: Path) -> None:
    rows = [a_row(external_id="P1"), a_row(external_id="P2", amount="bad")]
    parquet = write_parquet(tmp_path / "p.parquet", rows)
    text = write_csv(tmp_path / "p.csv", rows)

    [from_parquet] = read_all(parquet)
    [from_csv] = read_all(text)

    assert [p for _, p in from_parquet.purchases] == [p for _, p in from_csv.purchases]
    assert [line for line, _ in from_parquet.purchases] == [1]
    assert [(e.line, e.field, e.message) for e in from_parquet.errors] == [
        (2, "amount", from_csv.errors[0].message)
    ]


def test_parquet_with_typed_columns_and_list_of_struct_items(tmp_path: Path) -> None:
    item = pa.struct(
        [
            ("sku", pa.string()),
            ("category", pa.string()),
            ("quantity", pa.int32()),
            ("unit_price", pa.decimal128(10, 2)),
        ]
    )
    madrid = timezone(timedelta(hours=1))
    table = pa.table(
        {
            "external_id": ["P1", "P2", "P3"],
            "member_id": ["M1", "M2", None],
            "occurred_at": pa.array(
                [datetime(2025, 3, 1, 10, tzinfo=madrid)] * 3, pa.timestamp("us", tz="UTC")
            ),
            "amount": pa.array([Decimal("2.60"), Decimal("0.00"), Decimal("1.00")]),
            "items": pa.array(
                [
                    [{"sku": "A", "category": "c", "quantity": 2, "unit_price": Decimal("1.30")}],
                    [],
                    None,
                ],
                pa.list_(item),
            ),
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)

    [batch] = read_all(path)

    assert [(line, p.external_id) for line, p in batch.purchases] == [(1, "P1"), (2, "P2")]
    purchase = batch.purchases[0][1]
    assert purchase.occurred_at == datetime(2025, 3, 1, 9, tzinfo=UTC)
    assert purchase.items == (Item("A", 2, Decimal("1.30"), "c"),)
    assert [(e.line, e.field) for e in batch.errors] == [(3, "member_id")]


def test_parquet_naive_timestamps_and_float_amounts_are_refused_per_row(tmp_path: Path) -> None:
    table = pa.table(
        {
            "external_id": ["P1", "P2"],
            "member_id": ["M1", "M1"],
            "occurred_at": pa.array([datetime(2025, 3, 1, 10)] * 2, pa.timestamp("s")),
            "amount": ["1.00", "1.00"],
        }
    )
    path = tmp_path / "naive.parquet"
    pq.write_table(table, path)
    floats = tmp_path / "floats.parquet"
    pq.write_table(
        table.set_column(2, "occurred_at", pa.array(["2025-03-01T10:00:00Z"] * 2)).set_column(
            3, "amount", pa.array([1.5, 2.0])
        ),
        floats,
    )

    assert {(e.field, "timezone" in e.message) for e in errors_of(read_all(path))} == {
        ("occurred_at", True)
    }
    assert {(e.field, "float" in e.message) for e in errors_of(read_all(floats))} == {
        ("amount", True)
    }


def typed_table() -> pa.Table:
    """Typed columns with every awkward value: nulls, other time units and zones, bad items."""
    item = pa.struct(
        [
            ("sku", pa.string()),
            ("category", pa.string()),
            ("quantity", pa.int64()),
            ("unit_price", pa.decimal128(12, 3)),
        ]
    )
    good = {"sku": "A", "category": "c", "quantity": 2, "unit_price": Decimal("1.300")}
    baskets = [
        [good],
        [],
        None,
        [good, {**good, "sku": " B ", "category": None}],
        [{**good, "unit_price": Decimal("1.005")}],
        [{**good, "quantity": 0}],
        [{**good, "unit_price": None}],
        [good, None],
        [{**good, "unit_price": Decimal("-0.010")}],
    ]
    count = len(baskets)
    base = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
    return pa.table(
        {
            "external_id": [f"P{n}" for n in range(count)],
            "member_id": ["M1"] * (count - 1) + [None],
            "occurred_at": pa.array(
                [base + timedelta(minutes=37 * n, milliseconds=n) for n in range(count - 1)]
                + [None],
                pa.timestamp("ms", tz="Europe/Madrid"),
            ),
            "amount": pa.array([Decimal(f"{n}.50") for n in range(count - 1)] + [None]),
            "items": pa.array(baskets, pa.list_(item)),
        }
    )


@pytest.mark.parametrize(("skip", "size"), [(0, 100), (0, 2), (3, 2), (4, 3), (8, 5)])
def test_typed_parquet_values_mean_what_pyarrow_says_they_mean(
    tmp_path: Path, skip: int, size: int
) -> None:
    table = typed_table()
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path, row_group_size=3)
    rows = [tuple(row.get(c) for c in COLUMNS) for row in table.to_pylist()]
    everything = [(line, outcome(row)) for line, row in enumerate(rows, start=1)]
    assert [line for line, o in everything if o[0] == "ok"] == [1, 2, 3, 4]
    expected = everything[skip:]

    batches = read_all(path, skip_rows=skip, batch_size=size)

    got = sorted(
        [(line, ("ok", repr(p))) for b in batches for line, p in b.purchases]
        + [(e.line, ("error", e.field)) for b in batches for e in b.errors]
    )
    assert got == [(line, o if o[0] == "ok" else ("error", o[1])) for line, o in expected]


def test_parquet_missing_columns_are_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"external_id": ["P1"], "member_id": ["M1"], "amount": ["1"]}), path)

    with pytest.raises(ValidationError) as raised:
        read_purchases(path, program_currency="EUR")

    assert raised.value.field == "occurred_at"


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    path.write_text("external_id\n")
    with pytest.raises(ValidationError) as raised:
        read_purchases(path, program_currency="EUR")
    assert raised.value.field == "file"


# --- the fast path agrees with the reference path ---------------------------------------------


def outcome(row: Sequence[Any]) -> tuple[Any, ...]:
    try:
        return ("ok", repr(parse_row_reference(row, program_currency="EUR")))
    except ValidationError as exc:
        return ("error", exc.field, exc.message)
    except (ArithmeticError, ValueError) as exc:
        return ("crash", type(exc))


def read_one(tmp_path: Path, row: Sequence[Any]) -> tuple[Any, ...]:
    """What read_purchases makes of a single CSV row: its purchase or its error."""
    path = tmp_path / "one.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        writer.writerow(row)
    [batch] = read_all(path)
    if batch.purchases:
        return ("ok", repr(batch.purchases[0][1]))
    [error] = batch.errors
    return ("error", error.field, error.message)


moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
offsets = st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(hours=-5, minutes=-30)])


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(moments).astimezone(timezone(draw(offsets)))
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "microseconds"])))
    return draw(
        st.sampled_from(
            [text, text.replace("+00:00", "Z"), f" {text} ", text[:19], text[:10], "not a date"]
        )
    )


money_texts = st.one_of(
    st.decimals(min_value=-10, max_value=10**6, places=2).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-5, 10**6).map(str),
    st.sampled_from(["", " 1.50 ", "1.500", "1.505", "1e2", "1e30", "0.1e1", "abc", "-0"]),
    st.sampled_from(["-0.50", "-0.01", "-1", "-0.00", "0.00", "1.5", "+2"]),
)
texts = st.sampled_from(["", " ", "A1", " A1 ", "árbol", "M-7"])
item_values = st.one_of(
    money_texts,
    st.integers(-2, 5),
    st.booleans(),
    st.none(),
    st.decimals(min_value=0, max_value=100, places=3),
    st.sampled_from(["2", " 3", "²", "1.0", [], {}]),
)


text_or_value = st.one_of(texts, item_values)
VALUES_BY_KEY = {"quantity": item_values, "unit_price": item_values}


@st.composite
def raw_items(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        keys = draw(st.sets(st.sampled_from(["sku", "category", "quantity", "unit_price"])))
        lines.append({key: draw(VALUES_BY_KEY.get(key, text_or_value)) for key in keys})
    separators = draw(st.sampled_from([(", ", ": "), (",", ":"), (",", ": ")]))
    text = json.dumps(lines, default=str, separators=separators)
    return draw(
        st.sampled_from([text, text, text, f" {text}", "", "[]", "null", "{}", "[1]", "[{"])
    )


CELLS = (
    texts,
    texts,
    timestamps(),
    money_texts,
    st.sampled_from(["", "EUR", "USD", "eur", " EUR", " "]),
    texts,
    texts,
    raw_items(),
)
any_rows = st.tuples(*CELLS)


def good_lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [
        {
            "sku": draw(st.sampled_from(["A", "B-2", "ç"])),
            "category": draw(st.sampled_from(["coffee", "", "x"])),
            "quantity": draw(st.integers(1, 9)),
            "unit_price": str(draw(st.decimals(min_value=0, max_value=999, places=2))),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]


def good_cells(draw: st.DrawFn) -> list[str]:
    moment = draw(moments).astimezone(timezone(draw(offsets)))
    return [
        draw(st.sampled_from(["P1", "P-2"])),
        draw(st.sampled_from(["M1", " M2 "])),
        moment.isoformat(),
        str(draw(st.decimals(min_value=0, max_value=10**6, places=2))),
        draw(st.sampled_from(["", "EUR"])),
        draw(texts),
        draw(texts),
    ]


@st.composite
def good_rows(draw: st.DrawFn) -> tuple[str, ...]:
    separators = draw(st.sampled_from([(", ", ": "), (",", ":")]))
    return (*good_cells(draw), json.dumps(good_lines(draw), separators=separators))


@st.composite
def nearly_good_rows(draw: st.DrawFn) -> tuple[str, ...]:
    """A good row with one cell, or one field of one item, replaced by anything."""
    cells, lines = good_cells(draw), good_lines(draw)
    target = draw(st.integers(0, len(COLUMNS)))
    if target < len(cells):
        cells[target] = draw(CELLS[target])
    elif target == len(cells) or not lines:
        return (*cells, draw(CELLS[-1]))
    else:
        line = draw(st.sampled_from(lines))
        key = draw(st.sampled_from(sorted(line)))
        if draw(st.booleans()):
            del line[key]
        else:
            line[key] = draw(item_values)
    separators = draw(st.sampled_from([(", ", ": "), (",", ":")]))
    return (*cells, json.dumps(lines, default=str, separators=separators))


SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(row=st.one_of(any_rows, nearly_good_rows()))
def test_the_fast_path_never_accepts_what_the_reference_path_refuses(row: tuple[Any, ...]) -> None:
    expected = outcome(row)
    for parser in (_Parser("EUR"), warmed_parser()):
        fast = parser.fast(row)
        if fast is not None:
            assert ("ok", repr(fast)) == expected


@SETTINGS
@given(row=good_rows())
def test_the_fast_path_reads_well_formed_rows_exactly_as_the_reference(
    row: tuple[str, ...],
) -> None:
    expected = outcome(row)
    assert expected[0] == "ok"
    for parser in (_Parser("EUR"), warmed_parser()):
        fast = parser.fast(row)
        assert fast is not None
        assert repr(fast) == expected[1]
        assert fast == parse_row_reference(row, program_currency="EUR")


@settings(SETTINGS, max_examples=120)
@given(row=st.one_of(any_rows, nearly_good_rows(), good_rows()))
def test_read_purchases_gives_each_row_the_reference_outcome(
    tmp_path: Path, row: tuple[Any, ...]
) -> None:
    expected = outcome(row)
    if expected[0] == "crash":
        expected = ("error", None)
    assert read_one(tmp_path, row)[: len(expected)] == expected


TRICKY_CELLS = {
    "external_id": ["", " ", "\t", " P9 ", "P\u00e9"],
    "member_id": ["", " ", " M9 "],
    "occurred_at": [
        "2025-03-01T10:00:00",
        "2025-03-01",
        "2025-03-01T10:00:00Z",
        "2025-03-01T10:00:00.5+05:30",
        " 2025-03-01T10:00:00+01:00 ",
        "2025-13-01T10:00:00+01:00",
        "",
    ],
    "amount": ["", "-0.50", "-1", "-0", "-0.00", "0", "1.5", "1.500", "1.505", "1e2", "1e30",
               "NaN", "Infinity", " 2.00 ", "+2", "1_000", "٣", "٣.٠٠", "².00", ".50",
               "9" * 30 + ".00", "9" * 18 + ".99"],
    "currency": ["", " ", "USD", "eur", " EUR", "EURO"],
    "channel": ["", " ", " app "],
    "store": ["", " ", " X "],
}  # fmt: skip
TRICKY_ITEM_FIELDS = {
    "sku": [None, "", " ", " A ", 7, True, []],
    "category": [None, "", " ", " c ", 7, False, {}],
    "quantity": [None, 0, -1, 1, True, False, 2.0, "2", " 3", "-1", "²", 10**20],
    "unit_price": [None, "", "-0.01", "1", "1.005", "1.50", 1, 1.5, True, "x", "1e30", "-0"],
}
TRICKY_ROWS = (
    [
        tuple(a_row(**{column: value}).values())
        for column, values in TRICKY_CELLS.items()
        for value in values
    ]
    + [
        tuple(a_row(items=json.dumps([{**line, key: value}, dict(line)])).values())
        for line in ({"sku": "A", "category": "c", "quantity": 1, "unit_price": "1.00"},)
        for key, values in TRICKY_ITEM_FIELDS.items()
        for value in values
    ]
    + [
        tuple(a_row(items=json.dumps([{k: v for k, v in line.items() if k != key}])).values())
        for line in ({"sku": "A", "category": "c", "quantity": 1, "unit_price": "1.00"},)
        for key in line
    ]
    + [
        tuple(a_row(items=text).values())
        for text in ["", " ", "[]", " []", "null", "0", "{}", '"x"', "[1]", "[[]]", "[{", "[{}]"]
    ]
    + [
        tuple(a_row(items=text).values())
        for text in [
            '[{"sku":"A},{B","quantity":1,"unit_price":"1.00"}]',
            '[{"sku":"A},{B"},{"sku":"C","quantity":1,"unit_price":"1.00"}]',
            '[{"sku":"A","quantity":1,"unit_price":"1.00"},{"sku":"B}, {C","unit_price":"2.00"}]',
            '[{"sku":"A","x":[{"a":1},{"b":2}],"quantity":1,"unit_price":"1.00"}]',
            '[{"sku":"A","x":{"y":{}},"quantity":1,"unit_price":"1.00"}]',
            '[{"sku":"A","unit_price":"1.00"}, {"sku":"B","unit_price":"1.00"},{"sku":"C"}]',
            '[{"sku":"A","unit_price":"1.00"},{"sku":"B","unit_price":"1.00"}, {"sku":"C"}]',
            '[{"sku":"A","unit_price":"1.00"}, {"sku":"B","unit_price":"1.00"},{"sku":"C",'
            '"unit_price":"1.00"}]',
            '[{ "sku":"A", "unit_price":"1.00" }]',
            '[{"sku":"A","unit_price":"1.00"}] ',
            '[{"sku":"A","unit_price":"1.00"},]',
            '[{"sku":"A","unit_price":"1.00"}{"sku":"B","unit_price":"1.00"}]',
            '[{"sku":"A","unit_price":"1.00"},{"sku":"A","unit_price":"1.00","sku":"B"}]',
            '[{"sku":"A","unit_price":"1.00"},{}]',
            '[{"sku":"A","unit_price":"1.00"},{"sku":"A","unit_price":"1.00"}}]',
            '[{"sku":"A","unit_price":"1.00"}]]',
            '[{"sku":"A","unit_price":"1.00"},{"sku":"B","unit_price":"1.00"} ]',
            "[" * 100_000,
            '[{"sku":"A","x":' + "[" * 100_000 + "}]",
        ]
    ]
)


@pytest.mark.parametrize("row", TRICKY_ROWS, ids=lambda row: repr(row)[:80])
def test_the_fast_path_agrees_with_the_reference_on_edge_values(
    tmp_path: Path, row: tuple[Any, ...]
) -> None:
    expected = outcome(row)
    for parser in (_Parser("EUR"), warmed_parser()):
        fast = parser.fast(row)
        if fast is not None:
            assert ("ok", repr(fast)) == expected
    if expected[0] == "crash":
        expected = ("error", None)
    assert read_one(tmp_path, row)[: len(expected)] == expected


def warmed_parser() -> _Parser:
    """A parser whose caches hold values that look like, but are not, the ones under test."""
    parser = _Parser("EUR")
    for amount in ("1", "1.5", "1.50", "-0", "0.00"):
        parser.fast(("P", "M", "2025-01-01T00:00:00Z", amount, "", "", "", "[]"))
    parser.fast(("P", "M", "2025-01-01T00:00:00Z", "1", "", "", "", GOOD_ITEMS))
    compact = json.dumps(json.loads(GOOD_ITEMS), separators=(",", ":"))
    parser.fast(("P", "M", "2025-01-01T00:00:00Z", "1", "", "", "", compact))
    return parser
