"""The report's referral, liability and reward sections: present with their input, else absent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from fideliza import analytics as fa
from fideliza.analytics.report import SECTIONS, build_report
from fideliza.analytics.report_i18n import LABELS
from tests.unit.analytics.test_economics import entries_frame, lots_frame
from tests.unit.analytics.test_report import expected_rows
from tests.unit.analytics.test_rewards import REDEMPTIONS

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

TRANSACTIONS = pd.DataFrame(
    [
        ("a", "2025-01-10T10:00:00Z", "10"),
        ("a", "2025-03-05T10:00:00Z", "5"),
        ("b", "2025-02-01T10:00:00Z", "20"),
        ("c", "2025-02-03T10:00:00Z", "8"),
    ],
    columns=["member_id", "occurred_at", "amount"],
)
REFERRALS = pd.DataFrame(
    {"member_id": ["b"], "referrer_id": ["a"], "referred_at": ["2025-01-20T10:00:00Z"]}
)
AS_OF = "2025-04-01"
COST = Decimal("0.0125")
NEW_SECTIONS = ("referral_acquisition", "points_liability", "breakage_cohorts", "reward_cost")


@pytest.fixture(scope="module")
def data() -> Iterator[fa.AnalyticsData]:
    with fa.open_frames(
        TRANSACTIONS,
        referrals=REFERRALS,
        entries=entries_frame(),
        lots=lots_frame(),
        redemptions=REDEMPTIONS,
    ) as opened:
        yield opened


def test_the_figures_are_the_analytics_results(data: fa.AnalyticsData) -> None:
    assert data.entries is not None and data.lots is not None and data.redemptions is not None
    report = build_report(data, as_of=AS_OF, lang="en", cost_per_point=COST)
    figures = json.loads(report.json())
    assert figures == report.figures
    before = fa.within(data.transactions, end=AS_OF)
    moment = datetime(2025, 4, 1)
    assert figures["meta"]["cost_per_point"] == "0.0125"
    assert figures["referral_acquisition"] == expected_rows(
        fa.referral_acquisition(before, data.referrals)  # type: ignore[arg-type]
    )
    liability = fa.expected_liability(
        data.entries, data.lots, as_of=moment, cost_per_point=COST, by_tier=True
    )
    assert figures["points_liability"] == expected_rows(liability)
    cohorts: Any = fa.breakage_cohorts(data.lots, as_of=moment)
    shown = [
        {k: v for k, v in row.items() if k != "last_expiry"} for row in figures["breakage_cohorts"]
    ]
    assert shown == expected_rows(cohorts.drop(columns=["last_expiry"]))
    assert [row["last_expiry"] for row in figures["breakage_cohorts"]] == [
        None if pd.isna(value) else str(value) for value in cohorts["last_expiry"]
    ]
    assert figures["reward_cost"] == expected_rows(
        fa.reward_cost(data.redemptions, cost_per_point=COST, end=moment)
    )
    assert figures["effort_vs_reward"] == expected_rows(
        fa.effort_vs_reward(before, data.entries, cost_per_point=COST, end=moment)
    )
    # By hand: all six redemptions are before April (5 + 2.50 + 380 points × 0.0125).
    assert sum(row["cost"] for row in figures["reward_cost"]) == pytest.approx(12.25)
    referred = {row["period"]: row["referral_share"] for row in figures["referral_acquisition"]}
    assert referred["2025-02-01"] == 0.5  # b (referred) and c were new in February


@pytest.mark.parametrize("lang", ["es", "en", "it"])
def test_the_sections_are_labelled_with_their_figures(data: fa.AnalyticsData, lang: str) -> None:
    report = build_report(data, as_of=AS_OF, lang=lang, cost_per_point=COST)
    labels = LABELS[lang]
    for key in (
        "referral_acquisition",
        "points_liability",
        "breakage_cohorts",
        "reward_cost",
        "effort_vs_reward",
        "spend_per_reward_unit",
    ):
        assert labels[key].replace("'", "&#x27;") in report.html, key
    liability = report.figures["points_liability"]
    assert f"{liability[0]['liability']:,.2f}" in report.html
    assert "<script" not in report.html


def test_without_a_cost_per_point_the_money_sections_are_left_off(data: fa.AnalyticsData) -> None:
    seen: list[str] = []
    report = build_report(data, as_of=AS_OF, lang="en", progress=seen.append)
    assert seen == list(SECTIONS)
    assert report.figures["referral_acquisition"] is not None
    for name in ("points_liability", "breakage_cohorts", "reward_cost", "effort_vs_reward"):
        assert report.figures[name] is None, name
    assert LABELS["en"]["points_liability"] not in report.html
    assert LABELS["en"]["reward_cost"] not in report.html


def test_without_the_inputs_the_sections_are_none_and_absent() -> None:
    with fa.open_frames(TRANSACTIONS) as bare:
        report = build_report(bare, as_of=AS_OF, lang="es", cost_per_point=COST)
    figures: dict[str, Any] = report.figures
    assert all(figures[name] is None for name in (*NEW_SECTIONS, "effort_vs_reward"))
    for key in ("referral_acquisition", "points_liability", "reward_cost", "effort_vs_reward"):
        assert LABELS["es"][key] not in report.html, key
