"""`fideliza report`: from files and from the database, it writes the page and its figures."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from fideliza import cli
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.members import service as members
from fideliza.programs import service as programs

PURCHASES = [
    ("a", "2025-01-05T10:00:00+00:00", "10.00"),
    ("a", "2025-01-20T10:00:00+00:00", "20.00"),
    ("a", "2025-03-02T10:00:00+00:00", "30.00"),
    ("b", "2025-01-10T10:00:00+00:00", "5.00"),
    ("b", "2025-02-01T10:00:00+00:00", "5.50"),
    ("c", "2025-02-15T10:00:00+00:00", "100.00"),
]
SURVEYS = [
    ("a", "2025-01-06T10:00:00+00:00", "nps", "10"),
    ("b", "2025-01-11T10:00:00+00:00", "nps", "3"),
]


def invoke(*args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    return runner.invoke(cli.app, list(args))


def write(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FIDELIZA_DATABASE_URL", raising=False)
    yield


def test_report_from_files_writes_the_page_and_its_figures(tmp_path: Path) -> None:
    purchases = write(tmp_path / "p.csv", ["member_id", "occurred_at", "amount"], PURCHASES)
    surveys = write(tmp_path / "s.csv", ["member_id", "answered_at", "kind", "score"], SURVEYS)
    out = tmp_path / "out"
    result = invoke(
        "report",
        "--transactions",
        str(purchases),
        "--surveys",
        str(surveys),
        "--out",
        str(out),
        "--lang",
        "it",
        "--as-of",
        "2025-04-01",
    )
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    figures = json.loads((out / "report.json").read_text())
    assert "Rapporto fedeltà" in html and "Matrice della fedeltà" in html
    assert html.count("<svg") == 6
    assert figures["meta"]["lang"] == "it"
    assert figures["summary"]["buyers"] == 3
    assert figures["summary"]["revenue"] == 170.5
    assert figures["loyalty_matrix"] is not None
    assert "cohort retention" in result.stderr  # a progress line per section


def test_report_from_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fideliza.db'}"
    assert (
        invoke("init", "--database-url", url, "--code", "cafe", "--timezone", "UTC").exit_code == 0
    )
    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as db:
            program = programs.get_by_code(db, code="cafe")
            rows = [{"external_id": e} for e in ("a", "b", "c")]
            members.enrol_many(db, program=program, rows=rows, now=datetime.now(UTC))
    finally:
        engine.dispose()
    purchases = write(
        tmp_path / "p.csv",
        ["external_id", "member_id", "occurred_at", "amount"],
        [(f"T{i}", *row) for i, row in enumerate(PURCHASES)],
    )
    imported = invoke(
        "import", "purchases", str(purchases), "--database-url", url, "--program", "cafe"
    )
    assert imported.exit_code == 0, imported.output
    out = tmp_path / "out"
    result = invoke(
        "report", "--database-url", url, "--program", "cafe", "--out", str(out), "--lang", "en"
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "report.json").read_text())
    assert figures["summary"]["transactions"] == len(PURCHASES)
    assert figures["loyalty_matrix"] is None
    assert figures["points_liability"] is None  # no cost per point given
    assert "Loyalty report" in (out / "report.html").read_text()
    priced = invoke("report", "--database-url", url, "--out", str(out), "--cost-per-point", "0.01")
    assert priced.exit_code == 0, priced.output
    figures = json.loads((out / "report.json").read_text())
    assert figures["points_liability"] is not None
    bad = invoke("report", "--database-url", url, "--out", str(out), "--cost-per-point", "-1")
    assert bad.exit_code == 2 and "--cost-per-point" in bad.stderr


def test_a_bad_language_exits_2_naming_the_option(tmp_path: Path) -> None:
    purchases = write(tmp_path / "p.csv", ["member_id", "occurred_at", "amount"], PURCHASES)
    out = tmp_path / "out"
    result = invoke("report", "--transactions", str(purchases), "--out", str(out), "--lang", "fr")
    assert result.exit_code == 2
    assert "--lang" in result.stderr
    assert not out.exists()


def test_a_bad_engine_or_spark_without_files_exits_2(tmp_path: Path) -> None:
    purchases = write(tmp_path / "p.csv", ["member_id", "occurred_at", "amount"], PURCHASES)
    bogus = invoke("report", "--transactions", str(purchases), "--out", "o", "--engine", "dask")
    assert bogus.exit_code == 2 and "--engine" in bogus.stderr and "dask" in bogus.stderr
    no_files = invoke("report", "--out", str(tmp_path / "o"), "--engine", "spark")
    assert no_files.exit_code == 2 and "give --transactions" in no_files.stderr


@pytest.mark.spark
def test_the_report_on_spark_has_the_figures_of_duckdb(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    purchases = write(tmp_path / "p.csv", ["member_id", "occurred_at", "amount"], PURCHASES)
    surveys = write(tmp_path / "s.csv", ["member_id", "answered_at", "kind", "score"], SURVEYS)
    figures = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / engine
        result = invoke(
            "report",
            "--transactions",
            str(purchases),
            "--surveys",
            str(surveys),
            "--out",
            str(out),
            "--as-of",
            "2025-04-01",
            "--engine",
            engine,
        )
        assert result.exit_code == 0, result.output
        figures[engine] = json.loads((out / "report.json").read_text())
    assert figures["spark"] == figures["duckdb"]


def test_bad_clv_options_exit_2_naming_the_option(tmp_path: Path) -> None:
    purchases = write(tmp_path / "p.csv", ["member_id", "occurred_at", "amount"], PURCHASES)
    out = tmp_path / "out"
    for option, value in (
        ("--discount-rate", "x"),
        ("--discount-rate", "-1"),
        ("--clv-horizon-months", "0"),
    ):
        result = invoke(
            "report", "--transactions", str(purchases), "--out", str(out), option, value
        )
        assert result.exit_code == 2, result.output
        assert option in result.stderr and value in result.stderr
    assert not out.exists()


def test_the_clv_options_reach_the_section(tmp_path: Path) -> None:
    # 40 members with 1 to 8 purchases each on distinct days: enough for the models to fit.
    rows = [
        (
            f"m{n}",
            f"2025-{1 + (n * 7 + k * 23) % 10:02d}-{1 + (n + k * 5) % 27:02d}T12:00:00+00:00",
            f"{5 + n % 9}.50",
        )
        for n in range(40)
        for k in range(1 + n % 8)
    ]
    purchases = write(tmp_path / "p.csv", ["member_id", "occurred_at", "amount"], rows)
    out = tmp_path / "out"
    result = invoke(
        "report",
        "--transactions",
        str(purchases),
        "--out",
        str(out),
        "--as-of",
        "2025-11-01",
        "--clv-horizon-months",
        "6",
        "--discount-rate",
        "0.02",
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "report.json").read_text())
    assert figures["meta"]["clv_not_estimable"] is None
    section = figures["customer_lifetime_value"]
    assert (section["horizon_months"], section["monthly_discount_rate"]) == (6, 0.02)
