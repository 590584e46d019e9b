"""Opening transactions, surveys and referrals from CSV, Parquet and frames on DuckDB."""

from __future__ import annotations

import gzip
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fideliza import analytics as fa
from fideliza.core.errors import ValidationError

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

HEADER = "external_id,member_id,occurred_at,amount,currency,channel,store,items\n"
CSV = HEADER + (
    't1,m1,2025-01-31T23:30:00Z,10.50,EUR,store,S1,"[{""sku"": ""A, big"", ""quantity"": 1, '
    '""unit_price"": 10.50}]"\n'
    "t2,m1,2025-02-03T10:00:00.7+01:00,4,EUR,,,\n"
    "t3, m2 ,2025-07-03 10:00:00-0300,3.3333,EUR,web,,\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_in_the_purchases_format(tmp_path: Path) -> None:
    with fa.open_files(write(tmp_path / "p.csv", CSV), timezone="Europe/Madrid") as data:
        table = data.transactions
        assert table.columns == tuple(fa.TRANSACTIONS_SCHEMA.names)
        for name, kind in fa.TRANSACTIONS_SCHEMA.items():
            assert table.schema()[name].is_timestamp() == kind.is_timestamp()
            if not kind.is_timestamp():
                assert table.schema()[name] == kind
        rows = table.to_pandas().to_dict("records")
    # Local Madrid wall-clock times, to the second; money exact.
    assert [r["occurred_at"] for r in rows] == [
        pd.Timestamp("2025-02-01 00:30:00"),
        pd.Timestamp("2025-02-03 10:00:00"),
        pd.Timestamp("2025-07-03 15:00:00"),
    ]
    assert [r["amount"] for r in rows] == [Decimal("10.5"), Decimal(4), Decimal("3.3333")]
    assert [r["member_id"] for r in rows] == ["m1", "m1", "m2"]
    assert rows[0]["items"] == '[{"sku": "A, big", "quantity": 1, "unit_price": 10.50}]'
    assert pd.isna(rows[1]["channel"]) and rows[2]["channel"] == "web"


def test_gzipped_csv_and_several_files(tmp_path: Path) -> None:
    packed = tmp_path / "p.csv.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as stream:
        stream.write(CSV)
    other = write(tmp_path / "q.csv", HEADER + "t9,m9,2025-03-01T00:00:00Z,1,EUR,,,\n")
    with fa.open_files([packed, other]) as data:
        assert data.transactions.count().execute() == 4


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "member_id": pa.array([7, 8], pa.int64()),
            "occurred_at": pa.array(
                [datetime(2025, 1, 31, 23, 30), datetime(2025, 2, 1, 9, 0)],
                pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array([Decimal("10.50"), Decimal("2")], pa.decimal128(10, 2)),
            "items": pa.array([[{"sku": "A", "quantity": 1}], []]),
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    with fa.open_files(path, timezone="Europe/Madrid") as data:
        rows = data.transactions.to_pandas().to_dict("records")
    assert [r["member_id"] for r in rows] == ["7", "8"]
    assert rows[0]["occurred_at"] == pd.Timestamp("2025-02-01 00:30:00")
    assert rows[0]["amount"] == Decimal("10.5")
    assert rows[0]["items"] == '[{"sku":"A","quantity":1}]'
    assert pd.isna(rows[0]["currency"])


def test_a_missing_required_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "external_id,member_id,occurred_at\nt1,m1,2025-01-01Z\n")
    with pytest.raises(ValidationError) as error:
        fa.open_files(path)
    assert error.value.field == "amount"
    assert "required column" in error.value.message


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("t7,m1,2025-01-01T10:00:00Z,12;50,EUR,,,", "amount", ["decimal", "'12;50'", "'t7'"]),
        ("t7,m1,yesterday,1,EUR,,,", "occurred_at", ["ISO 8601", "'yesterday'"]),
        ("t7,,2025-01-01T10:00:00Z,1,EUR,,,", "member_id", ["required", "'t7'"]),
        ("t7,m1,2025-01-01T10:00:00,1,EUR,,,", "occurred_at", ["assume_timezone"]),
    ],
)
def test_a_bad_value_is_named_with_its_row(
    tmp_path: Path, line: str, field: str, words: list[str]
) -> None:
    good = "t1,m1,2025-01-01T10:00:00Z,1,EUR,,,\n"
    path = write(tmp_path / "p.csv", HEADER + good + line + "\n")
    with pytest.raises(ValidationError) as error:
        fa.open_files(path)
    assert error.value.field == field
    for word in words:
        assert word in error.value.message


def test_times_without_an_offset_need_their_zone(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", HEADER + "t1,m1,2025-01-01 10:00:00,1,EUR,,,\n")
    with fa.open_files(path, timezone="UTC", assume_timezone="Europe/Madrid") as data:
        assert data.transactions.occurred_at.max().execute() == pd.Timestamp("2025-01-01 09:00")
    frame = pd.DataFrame(
        {"member_id": ["m1"], "occurred_at": [pd.Timestamp("2025-01-01 10:00")], "amount": [1]}
    )
    with pytest.raises(ValidationError) as error:
        fa.open_frames(frame)
    assert error.value.field == "occurred_at" and "assume_timezone" in error.value.message
    with fa.open_frames(frame, assume_timezone="UTC") as data:
        assert data.transactions.count().execute() == 1


def test_surveys_and_referrals(tmp_path: Path) -> None:
    tx = write(tmp_path / "p.csv", CSV)
    surveys = write(
        tmp_path / "s.csv",
        "member_id,answered_at,kind,score\nm1,2025-02-05T10:00:00Z,NPS,9\n"
        "m2,2025-02-06T10:00:00Z,csat,4.5\n",
    )
    referrals = write(
        tmp_path / "r.csv", "member_id,referrer_id,referred_at\nm2,m1,2025-06-01T10:00:00Z\n"
    )
    with fa.open_files(tx, surveys=surveys, referrals=referrals) as data:
        assert data.surveys is not None and data.referrals is not None
        assert data.surveys.columns == tuple(fa.SURVEYS_SCHEMA.names)
        assert data.surveys.to_pandas()[["kind", "score"]].to_numpy().tolist() == [
            ["nps", 9.0],
            ["csat", 4.5],
        ]
        assert data.referrals.columns == tuple(fa.REFERRALS_SCHEMA.names)
        assert data.referrals.count().execute() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("m1,2025-02-05T10:00:00Z,ces,3\n", "kind"),
        ("m1,2025-02-05T10:00:00Z,nps,11\n", "score"),
        ("m1,2025-02-05T10:00:00Z,nps,8.5\n", "score"),
        ("m1,2025-02-05T10:00:00Z,nps,lots\n", "score"),
    ],
)
def test_bad_survey_answers_are_refused(tmp_path: Path, body: str, field: str) -> None:
    tx = write(tmp_path / "p.csv", CSV)
    surveys = write(tmp_path / "s.csv", "member_id,answered_at,kind,score\n" + body)
    with pytest.raises(ValidationError) as error:
        fa.open_files(tx, surveys=surveys)
    assert error.value.field == field


def test_bad_paths_and_zones(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as error:
        fa.open_files(tmp_path / "nothing.csv")
    assert error.value.field == "transactions"
    csv = write(tmp_path / "p.csv", CSV)
    text = write(tmp_path / "p.txt", CSV)
    with pytest.raises(ValidationError) as error:
        fa.open_files([csv, text])
    assert error.value.field == "transactions"
    with pytest.raises(ValidationError) as error:
        fa.open_files(csv, timezone="Mars/Olympus")
    assert error.value.field == "timezone"


def test_a_duckdb_file_can_hold_the_data_and_be_loaded_again(tmp_path: Path) -> None:
    csv = write(tmp_path / "p.csv", CSV)
    for _ in range(2):
        with fa.open_files(csv, database=tmp_path / "analytics.duckdb") as data:
            assert data.transactions.count().execute() == 3


def test_database_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as error:
        fa.open_database(f"sqlite:///{tmp_path / 'missing.db'}")
    assert error.value.field == "url" and not (tmp_path / "missing.db").exists()
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ValidationError) as error:
        fa.open_database(f"sqlite:///{tmp_path / 'other.db'}")
    assert error.value.field == "url" and "Fideliza database" in error.value.message
    with pytest.raises(ValidationError) as error:
        fa.open_database("mysql://localhost/shop")
    assert error.value.field == "url"


def test_a_frame_of_mixed_values_is_refused_clearly() -> None:
    frame = pd.DataFrame(
        {"member_id": ["m1", "m2"], "occurred_at": ["2025-01-01T00:00:00Z"] * 2, "amount": [1, "x"]}
    )
    with pytest.raises(ValidationError) as error:
        fa.open_frames(frame)
    assert error.value.field in ("transactions", "amount")


def test_parquet_instants_in_utc_keep_their_second(tmp_path: Path) -> None:
    """UTC takes a shortcut (no zone lookup): the same truncation to the second, before 1970
    too, as any other zone."""
    instants = [
        datetime(2025, 3, 30, 0, 59, 59, 999_999),
        datetime(1969, 12, 31, 23, 59, 59, 500_000),
        datetime(2025, 10, 26, 1, 30),
    ]
    table = pa.table(
        {
            "member_id": ["a", "b", "c"],
            "occurred_at": pa.array(instants, pa.timestamp("us", tz="UTC")),
            "amount": pa.array([Decimal("1")] * 3, pa.decimal128(10, 2)),
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    with fa.open_files(path, timezone="UTC") as data:
        got = data.transactions.order_by("member_id").to_pandas()["occurred_at"].tolist()
    assert got == [pd.Timestamp(i.replace(microsecond=0)) for i in instants]
    with fa.open_files(path, timezone="Europe/Madrid") as data:
        madrid = data.transactions.order_by("member_id").to_pandas()["occurred_at"].tolist()
    assert [str(t) for t in madrid] == [
        "2025-03-30 01:59:59",  # CET, an hour before the clocks go forward
        "1970-01-01 00:59:59",
        "2025-10-26 02:30:00",  # CET again after 01:00 UTC
    ]
