"""The report (issue 4, part 8): its figures are the analytics functions' results, its page is
self-contained and labelled in the chosen language.

The history (UTC), judged as of 2025-06-01 (the usage window is the 365 days before it; the
loyalty matrix is judged 90 days earlier, at 2025-03-03):

    a: Jan 5 (10.00), Jan 20 (20.00), Mar 2 (30.00)      nps 10 on Jan 6
    b: Jan 10 (5.00), Feb 1 (5.50)                       nps 3 on Jan 11
    c: Feb 15 (100.00)                                   csat 5 on Feb 16
    d: Apr 30 (2.25)
    e: Jun 5 (7.00)                                       after as_of: left out
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from fideliza import analytics as fa
from fideliza.analytics.report import SECTIONS, Report, build_report
from fideliza.analytics.report_i18n import LABELS
from fideliza.core.errors import ValidationError

ROWS = [
    ("a", "2025-01-05T10:00:00Z", "10.00"),
    ("a", "2025-01-20T10:00:00Z", "20.00"),
    ("a", "2025-03-02T10:00:00Z", "30.00"),
    ("b", "2025-01-10T10:00:00Z", "5.00"),
    ("b", "2025-02-01T10:00:00Z", "5.50"),
    ("c", "2025-02-15T10:00:00Z", "100.00"),
    ("d", "2025-04-30T22:30:00Z", "2.25"),
    ("e", "2025-06-05T10:00:00Z", "7.00"),
]
SURVEYS = [
    ("a", "2025-01-06T10:00:00Z", "nps", 10.0),
    ("b", "2025-01-11T10:00:00Z", "nps", 3.0),
    ("c", "2025-02-16T10:00:00Z", "csat", 5.0),
]
AS_OF = "2025-06-01"
CHARTS_WITH_SURVEYS = 6  # active, defection, usage, RFM, loyalty matrix, cohorts


def _table(rows: list[tuple[str, str, str]]) -> pa.Table:
    return pa.table(
        {
            "member_id": [r[0] for r in rows],
            "occurred_at": [r[1] for r in rows],
            "amount": [r[2] for r in rows],
        }
    )


def _surveys() -> pa.Table:
    return pa.table(
        {
            "member_id": [s[0] for s in SURVEYS],
            "answered_at": [s[1] for s in SURVEYS],
            "kind": [s[2] for s in SURVEYS],
            "score": [s[3] for s in SURVEYS],
        }
    )


@pytest.fixture(scope="module")
def data() -> Iterator[fa.AnalyticsData]:
    opened = fa.open_frames(_table(ROWS), surveys=_surveys())
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def report(data: fa.AnalyticsData) -> Report:
    return build_report(data, as_of=AS_OF, lang="en")


def expected_rows(frame: Any) -> list[dict[str, Any]]:
    """A frame's rows as the JSON would hold them: numbers as float/int, dates as ISO text."""
    out = []
    for row in pd.DataFrame(frame).to_dict("records"):
        plain: dict[str, Any] = {}
        for key, value in row.items():
            if hasattr(value, "item") and not isinstance(value, pd.Timestamp):
                value = value.item()  # numpy scalars
            if isinstance(value, pd.Timestamp):
                plain[str(key)] = value.date().isoformat()
            elif value is None or (isinstance(value, float) and value != value):
                plain[str(key)] = None
            elif isinstance(value, bool | int | str):
                plain[str(key)] = value
            else:
                plain[str(key)] = float(value)  # Decimal
        out.append(plain)
    return out


def test_the_figures_are_the_analytics_results(data: fa.AnalyticsData, report: Report) -> None:
    before = fa.within(data.transactions, end=AS_OF)
    moment = datetime(2025, 6, 1)
    loyalty_at = moment - timedelta(days=90)
    surveys = fa.within(data.surveys, end=AS_OF, column="answered_at")  # type: ignore[arg-type]
    figures = json.loads(report.json())  # what the CLI writes
    assert figures == report.figures
    assert figures["summary"] == expected_rows(fa.buyer_summary(before))[0]
    assert figures["active_customers"] == expected_rows(fa.active_customers(before))
    assert figures["defection"] == expected_rows(fa.defection(before))
    assert figures["usage_groups"] == expected_rows(
        fa.usage_groups(before, start=moment - timedelta(days=365), end=moment)
    )
    assert figures["rfm_segments"] == expected_rows(fa.rfm_segments(before, as_of=moment))
    assert figures["loyalty_matrix"] == expected_rows(
        fa.loyalty_matrix(before, surveys, as_of=loyalty_at)
    )
    assert (
        figures["satisfied_defection"]
        == expected_rows(fa.satisfied_defection(before, surveys, as_of=loyalty_at))[0]
    )
    assert figures["cohort_retention"] == expected_rows(fa.cohort_retention(before))
    assert figures["meta"]["loyalty_as_of"] == "2025-03-03T00:00:00"


def test_the_figures_by_hand(report: Report) -> None:
    figures = report.figures
    # e bought after as_of: four buyers, seven purchases.
    assert figures["summary"] == {
        "buyers": 4,
        "one_time_buyers": 2,
        "repeat_customers": 2,
        "repeat_purchase_rate": 0.5,
        "transactions": 7,
        "revenue": 172.75,
        "purchases_per_buyer": 1.75,
    }
    assert [r["active_customers"] for r in figures["active_customers"]] == [2, 2, 1, 1]
    assert [r["defection_rate"] for r in figures["defection"]] == [None, 0.5, 1.0, 1.0]
    quadrants = {r["quadrant"]: r["customers"] for r in figures["loyalty_matrix"]}
    assert sum(quadrants.values()) == 3  # a, b, c answered in the window before 2025-03-03
    january = [r for r in figures["cohort_retention"] if r["cohort"] == "2025-01-01"]
    assert [r["active_customers"] for r in january] == [2, 1, 1, 0]


@pytest.mark.parametrize("lang", ["es", "en", "it"])
def test_the_page_is_labelled_self_contained_and_has_a_chart_per_section(
    data: fa.AnalyticsData, lang: str
) -> None:
    html = build_report(data, as_of=AS_OF, lang=lang).html
    labels = LABELS[lang]
    for key in (
        "title",
        "active_customers",
        "defection",
        "usage_groups",
        "rfm_segments",
        "loyalty_matrix",
        "cohort_retention",
        "apostles",
        "heavy",
        "repeat_purchase_rate",
    ):
        assert labels[key].replace("'", "&#x27;") in html, key
    assert f'<html lang="{lang}">' in html
    assert html.count("<svg") == CHARTS_WITH_SURVEYS
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*[^"'>\s]*http""", html, re.IGNORECASE)
    assert "<script" not in html and "<link" not in html and "url(" not in html


def test_the_labels_differ_between_languages(data: fa.AnalyticsData) -> None:
    pages = {lang: build_report(data, as_of=AS_OF, lang=lang).html for lang in ("es", "en", "it")}
    assert "Matriz de lealtad" in pages["es"] and "Matriz de lealtad" not in pages["en"]
    assert "Loyalty matrix" in pages["en"] and "Matrice della fedeltà" in pages["it"]


def test_every_number_on_the_page_comes_from_the_figures(report: Report) -> None:
    html = report.html
    assert "172.75" in html  # revenue
    assert "50.0%" in html  # repeat-purchase rate
    assert "1.75" in html  # purchases per buyer


def test_without_surveys_there_is_no_matrix_and_one_chart_less() -> None:
    with fa.open_frames(_table(ROWS)) as data:
        seen: list[str] = []
        report = build_report(data, as_of=AS_OF, lang="es", progress=seen.append)
    assert seen == list(SECTIONS)
    assert report.figures["loyalty_matrix"] is None
    assert report.figures["satisfied_defection"] is None
    assert report.html.count("<svg") == CHARTS_WITH_SURVEYS - 1
    assert LABELS["es"]["no_surveys"] in report.html


def test_as_of_defaults_to_the_day_after_the_last_purchase(data: fa.AnalyticsData) -> None:
    report = build_report(data, lang="en")
    assert report.figures["meta"]["as_of"] == "2025-06-06T00:00:00"
    assert report.figures["summary"]["buyers"] == 5


def test_an_unknown_language_is_refused_naming_it(data: fa.AnalyticsData) -> None:
    with pytest.raises(ValidationError) as error:
        build_report(data, as_of=AS_OF, lang="fr")
    assert error.value.field == "lang"


def test_the_tables_kept_for_the_report_are_dropped_even_on_an_error(
    data: fa.AnalyticsData,
) -> None:
    con = data.backend.con  # type: ignore[attr-defined]

    def tables() -> list[str]:
        return sorted(
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        )

    before = tables()
    made: list[list[str]] = []

    def stop_at_cohorts(section: str) -> None:
        if section == "cohort_retention":
            made.append(tables())
            raise RuntimeError("stopped")

    build_report(data, as_of=AS_OF, lang="en")
    assert tables() == before
    with pytest.raises(RuntimeError):
        build_report(data, as_of=AS_OF, lang="en", progress=stop_at_cohorts)
    assert len(made[0]) > len(before)  # the buyers, RFM and monthly tables were kept
    assert tables() == before
