"""CLV at a date from a transactions table: the per-buyer summary by hand, the CDNOW fits through
the Ibis path, CLV equal to the model functions, and the report's CLV section.

The summary by hand (UTC, as_of 2025-03-01, so the data ends at 2025-03-01 00:00):

    a: Jan 31 23:59:59 (1.00), Feb 1 00:00 (20.00), Feb 28 08:00 (5.00) + 23:00 (10.00)
       purchase days 29, 28 and 1 days back (a midnight is the start of its day):
       frequency 2, recency 28 days, T 28 days, spend 36.00, first day 1.00
    b: Jan 15 12:00 (7.50)                      45 days back: frequency 0, T 44 days
    c: Feb 10 10:00 (4.00) + 11:00 (6.00), Mar 1 00:00 (99.00, at as_of: left out)
       one purchase day, 19 days back: frequency 0, T 18 days, spend 10.00
    d: Mar 2 (3.00)                             after as_of: not a buyer
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fideliza import analytics as fa
from fideliza.analytics.clv import customer_lifetime_value, summarize_transactions
from fideliza.analytics.lifetime import (
    buyer_days_expr,
    customer_base_expr,
    estimate_lifetime_values,
    with_segments,
)
from fideliza.analytics.report import build_report
from fideliza.analytics.report_clv import clv_figures, exact_sum, exact_sums
from fideliza.analytics.report_i18n import LABELS
from fideliza.core.errors import ValidationError
from tests.unit.analytics.conftest import OpenRows
from tests.unit.analytics.test_clv import CDNOW, PUBLISHED_BGNBD, PUBLISHED_GAMMA_GAMMA, sig3

ROWS = [
    ("a", "2025-01-31T23:59:59Z", "1.00"),
    ("a", "2025-02-01T00:00:00Z", "20.00"),
    ("a", "2025-02-28T08:00:00Z", "5.00"),
    ("a", "2025-02-28T23:00:00Z", "10.00"),
    ("b", "2025-01-15T12:00:00Z", "7.50"),
    ("c", "2025-02-10T10:00:00Z", "4.00"),
    ("c", "2025-02-10T11:00:00Z", "6.00"),
    ("c", "2025-03-01T00:00:00Z", "99.00"),
    ("d", "2025-03-02T10:00:00Z", "3.00"),
]
CDNOW_AS_OF = "1997-10-01"  # the calibration period ends on 1997-09-30 (39 weeks)


def _base(data: fa.AnalyticsData, as_of: str) -> list[dict[str, object]]:
    frame = fa.to_frame(customer_base_expr(data.transactions, as_of=as_of).order_by("member_id"))
    assert isinstance(frame, pd.DataFrame)
    return frame.drop(columns="segment").to_dict("records")


def test_the_buyer_summary_by_hand(open_rows: OpenRows) -> None:
    data = open_rows(ROWS)
    assert _base(data, "2025-03-01") == [
        {
            "member_id": "a",
            "days_before_first": 29,
            "days_before_last": 1,
            "purchase_days": 3,
            "spend": Decimal("36.00"),
            "first_day_spend": Decimal("1.00"),
        },
        {
            "member_id": "b",
            "days_before_first": 45,
            "days_before_last": 45,
            "purchase_days": 1,
            "spend": Decimal("7.50"),
            "first_day_spend": Decimal("7.50"),
        },
        {
            "member_id": "c",
            "days_before_first": 19,
            "days_before_last": 19,
            "purchase_days": 1,
            "spend": Decimal("10.00"),
            "first_day_spend": Decimal("10.00"),
        },
    ]


def test_an_as_of_within_a_day_counts_that_day_up_to_it(open_rows: OpenRows) -> None:
    """At noon on Mar 1 the data ends at the next midnight: c's Mar 1 purchase is 1 day back."""
    data = open_rows(ROWS)
    c = next(row for row in _base(data, "2025-03-01T12:00:00") if row["member_id"] == "c")
    assert (c["days_before_first"], c["days_before_last"], c["purchase_days"]) == (20, 1, 2)
    assert (c["spend"], c["first_day_spend"]) == (Decimal("109.00"), Decimal("10.00"))


def test_the_segment_is_the_buyers_rfm_segment(open_rows: OpenRows) -> None:
    data = open_rows(ROWS)
    base = fa.to_frame(customer_base_expr(data.transactions, as_of="2025-03-01"))
    rfm = fa.rfm(data.transactions, as_of="2025-03-01")
    assert isinstance(base, pd.DataFrame) and isinstance(rfm, pd.DataFrame)
    assert dict(zip(base.member_id, base.segment, strict=True)) == dict(
        zip(rfm.member_id, rfm.segment, strict=True)
    )


def test_without_a_repeat_buyer_there_is_no_estimate(open_rows: OpenRows) -> None:
    data = open_rows([r for r in ROWS if r[0] != "a"])
    with pytest.raises(fa.NotEstimable) as error:
        estimate_lifetime_values(data.transactions, as_of="2025-03-01")
    assert error.value.field == "transactions"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"months": 0}, "months"),
        ({"months": 1.5}, "months"),
        ({"monthly_discount_rate": -1}, "discount_rate"),
    ],
)
def test_bad_horizons_and_rates_are_refused(
    open_rows: OpenRows, arguments: dict[str, object], field: str
) -> None:
    data = open_rows(ROWS)
    with pytest.raises(ValidationError) as error:
        estimate_lifetime_values(data.transactions, as_of="2025-03-01", **arguments)  # type: ignore[arg-type]
    assert error.value.field == field


# ------------------------------------------------------------------------------ CDNOW


def cdnow_table(*, shuffle_seed: int | None = None) -> pa.Table:
    raw = pd.read_csv(
        CDNOW / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    if shuffle_seed is not None:
        raw = raw.sample(frac=1.0, random_state=shuffle_seed)
    return pa.table(
        {
            "member_id": raw["customer_id"].map(lambda i: f"c{i:05d}"),
            "occurred_at": pd.to_datetime(raw["date"], format="%Y%m%d").dt.strftime(
                "%Y-%m-%dT00:00:00Z"
            ),
            "amount": raw["amount"].map(lambda a: f"{a:.2f}"),
        }
    )


@pytest.fixture(scope="module")
def cdnow() -> Iterator[fa.AnalyticsData]:
    with fa.open_frames(cdnow_table()) as data:
        yield data


def test_the_fits_reproduce_the_published_cdnow_figures(cdnow: fa.AnalyticsData) -> None:
    values = estimate_lifetime_values(cdnow.transactions, as_of=CDNOW_AS_OF)
    for name in ("r", "alpha", "a", "b"):
        assert sig3(getattr(values.purchases, name)) == sig3(getattr(PUBLISHED_BGNBD, name)), name
    assert round(values.purchases.log_likelihood, 1) == -9582.4
    spend, want = values.spend, PUBLISHED_GAMMA_GAMMA
    assert (sig3(spend.p), sig3(spend.q), round(spend.gamma, 2)) == (want.p, want.q, want.gamma)
    assert values.purchases.n_customers == 2357 and spend.n_customers == 946


def test_clv_is_the_model_functions_on_the_lifetimes_style_summary(cdnow: fa.AnalyticsData) -> None:
    """Per customer, CLV and P(alive) equal clv.customer_lifetime_value and the model's own
    function on `summarize_transactions` (the lifetimes-style summary, checked against the
    published CDNOW summary in test_clv), with the same fitted models."""
    got = fa.lifetime_values(
        cdnow.transactions, as_of=CDNOW_AS_OF, months=6, monthly_discount_rate=0.02
    )
    values = estimate_lifetime_values(
        cdnow.transactions, as_of=CDNOW_AS_OF, months=6, monthly_discount_rate=0.02
    )
    raw = cdnow_table().to_pandas()
    raw["date"] = pd.to_datetime(raw["occurred_at"].str[:10])
    raw["amount"] = raw["amount"].astype(float)
    summary = summarize_transactions(
        raw, calibration_end="1997-09-30", customer_id_column="member_id"
    ).loc[got["member_id"]]
    want = customer_lifetime_value(
        values.purchases,
        values.spend,
        summary["frequency"],
        summary["recency"],
        summary["T"],
        summary["monetary_value"],
        months=6,
        monthly_discount_rate=0.02,
    )
    np.testing.assert_allclose(got["clv"], want, rtol=1e-9)
    np.testing.assert_allclose(
        got["probability_alive"],
        values.purchases.probability_alive(summary["frequency"], summary["recency"], summary["T"]),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        got["expected_purchases"],
        values.purchases.expected_purchases(
            6 * 4.345, summary["frequency"], summary["recency"], summary["T"]
        ),
        rtol=1e-9,
    )
    assert got["frequency"].tolist() == summary["frequency"].tolist()


def test_the_figures_do_not_depend_on_row_order() -> None:
    """What lets DuckDB, PostgreSQL and Spark, which return rows in any order, agree exactly."""
    figures = []
    for seed in (None, 7):
        with fa.open_frames(cdnow_table(shuffle_seed=seed)) as data:
            values = estimate_lifetime_values(data.transactions, as_of=CDNOW_AS_OF)
            figures.append(json.dumps(clv_figures(values), allow_nan=False))
    assert figures[0] == figures[1]


@pytest.fixture(scope="module")
def cdnow_report(cdnow: fa.AnalyticsData) -> dict[str, object]:
    report = build_report(
        cdnow, as_of=CDNOW_AS_OF, lang="en", clv_months=24, monthly_discount_rate=0.015
    )
    figures = json.loads(report.json())
    assert figures == report.figures
    return {"figures": figures, "html": report.html}


def test_the_report_section_sums_the_buyers_values(
    cdnow: fa.AnalyticsData, cdnow_report: dict[str, object]
) -> None:
    clv = cdnow_report["figures"]["customer_lifetime_value"]  # type: ignore[index]
    values = fa.lifetime_values(
        cdnow.transactions, as_of=CDNOW_AS_OF, months=24, monthly_discount_rate=0.015
    )
    assert isinstance(values, pd.DataFrame)
    assert (clv["horizon_months"], clv["monthly_discount_rate"]) == (24, 0.015)
    assert clv["customers"] == len(values) == 2357
    assert clv["total_clv"] == pytest.approx(values["clv"].sum(), rel=1e-12)
    assert clv["mean_probability_alive"] == pytest.approx(
        values["probability_alive"].mean(), rel=1e-12
    )
    assert clv["expected_purchases"] == pytest.approx(values["expected_purchases"].sum(), rel=1e-12)
    bins = [row["customers"] for row in clv["alive_distribution"]]
    assert bins == np.histogram(values["probability_alive"], bins=10, range=(0, 1))[0].tolist()
    # P(alive) is exactly 1 for the 1411 who never bought again: the top bin holds them all.
    assert bins[-1] >= int((values["frequency"] == 0).sum()) == 1411
    top = values.sort_values(["clv", "member_id"], ascending=[False, True]).head(10)
    assert [row["member_id"] for row in clv["top_customers"]] == top["member_id"].tolist()
    assert [row["clv"] for row in clv["top_customers"]] == top["clv"].tolist()
    by_segment = {row["segment"]: row for row in clv["by_segment"]}
    counts = values.groupby("segment")["clv"].agg(["count", "sum"])
    for segment, row in counts.iterrows():
        assert by_segment[segment]["customers"] == row["count"]
        assert by_segment[segment]["clv"] == pytest.approx(row["sum"], rel=1e-12)
    assert sum(row["customers"] for row in clv["by_segment"]) == 2357
    assert math.fsum(row["clv_share"] or 0 for row in clv["by_segment"]) == pytest.approx(1.0)


def test_the_section_is_on_the_page_in_each_language(cdnow: fa.AnalyticsData) -> None:
    for lang in ("es", "en", "it"):
        report = build_report(cdnow, as_of=CDNOW_AS_OF, lang=lang)
        html = report.html
        labels = LABELS[lang]
        for key in ("clv", "alive_distribution", "clv_by_segment", "top_customers", "total_clv"):
            assert labels[key].replace("'", "&#x27;") in html, (lang, key)
        top = report.figures["customer_lifetime_value"]["top_customers"][0]
        assert top["member_id"] in html
        assert f"{report.figures['customer_lifetime_value']['total_clv']:,.2f}" in html


def test_a_report_without_an_estimate_says_why(open_rows: OpenRows) -> None:
    data = open_rows([r for r in ROWS if r[0] != "a"])
    report = build_report(data, as_of="2025-03-01", lang="it")
    assert report.figures["customer_lifetime_value"] is None
    reason = report.figures["meta"]["clv_not_estimable"]
    assert "two different days" in reason
    assert LABELS["it"]["clv_not_estimable"] in report.html


def test_the_report_refuses_a_bad_horizon(cdnow: fa.AnalyticsData) -> None:
    with pytest.raises(ValidationError) as error:
        build_report(cdnow, as_of=CDNOW_AS_OF, clv_months=0)
    assert error.value.field == "months"


def test_exact_sums_are_fsums_per_group() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.normal(size=600) * 2.0 ** rng.integers(-1070, 1000, 600),  # subnormals to huge
            np.round(rng.normal(size=300) * 100, 2),
            [0.1] * 50,
            [1e16, 1.0, -1e16],  # a naive sum loses the 1.0
            [5e-324, -0.0, 0.0],
        ]
    )
    groups = rng.integers(0, 5, values.size)  # group 5 stays empty
    assert exact_sums(values, groups, 6) == [math.fsum(values[groups == g]) for g in range(6)]
    assert exact_sum(values) == math.fsum(values)
    assert exact_sum([1e16, 1.0, -1e16]) == 1.0
    assert exact_sum([]) == 0.0
    assert exact_sum([math.inf, 1.0]) == math.inf
    with pytest.raises(ValueError):  # as math.fsum
        exact_sum([math.inf, -math.inf])


def test_clv_with_the_segments_known_already_is_the_same(cdnow: fa.AnalyticsData) -> None:
    """The report passes the RFM segments it computed for its RFM section."""
    segments = fa.rfm_expr(cdnow.transactions, as_of=CDNOW_AS_OF)
    plain = estimate_lifetime_values(cdnow.transactions, as_of=CDNOW_AS_OF)
    known = estimate_lifetime_values(cdnow.transactions, as_of=CDNOW_AS_OF, segments=segments)
    assert clv_figures(known) == clv_figures(plain)


def test_segments_matched_in_arrow_are_the_joined_ones(open_rows: OpenRows) -> None:
    """The report fetches the buyers' purchase days and their segments apart."""
    data = open_rows(ROWS)
    joined = fa.to_frame(customer_base_expr(data.transactions, as_of="2025-03-01"))
    days = buyer_days_expr(data.transactions, as_of="2025-03-01").to_pyarrow()
    segments = fa.rfm_expr(data.transactions, as_of="2025-03-01").to_pyarrow()
    matched = with_segments(days, segments.filter(pc.field("member_id") != "b"))
    assert matched.column("member_id").to_pylist() == [
        m for m in days.column("member_id").to_pylist() if m != "b"
    ]  # the buyers' order kept; b, without a segment, left out as by the join
    want = joined.set_index("member_id")["segment"].to_dict()
    got = dict(zip(*(matched.column(c).to_pylist() for c in ("member_id", "segment")), strict=True))
    assert got == {m: s for m, s in want.items() if m != "b"}
