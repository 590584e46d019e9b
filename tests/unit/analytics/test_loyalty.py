"""The loyalty matrix on hand-computed data (issue 4, part 5).

Judged at 2025-01-01 (UTC) with a 120-day window, [2024-09-03, 2025-01-01), cut into four
30-day buckets starting 3 September, 3 October, 2 November and 2 December; the follow-up window
is [2025-01-01, 2025-03-02). Tenure is full at 400 days, engagement at 4 events.

member  tenure          buckets  events                          answers           quadrant
a       365 d (0.9125)  4 (1)    nps + redemption = 2 (0.5)      nps 10            apostle
b       200 d (0.5)     2 (0.5)  nps + redemption = 2 (0.5)      nps 9             apostle (0.5)
m       11 d (0.0275)   1 (.25)  csat + nps = 2 (0.5)            csat 5, nps 8     mercenary
h       >400 d (1)      3 (.75)  nps + custom + referral = 3     nps 6             hostage
t       120 d (0.3)     1 (.25)  csat + nps = 2 (0.5)            csat 2, nps 7     terrorist
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import ibis
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from fideliza import analytics as fa
from fideliza.analytics.behaviour import buyers_expr
from fideliza.analytics.loyalty import loyalty_matrix_of, satisfied_defection_of
from fideliza.core.errors import ValidationError

TRANSACTIONS = [
    ("a", "2024-01-01T10:00:00Z", "50"),  # before the window: tenure only
    ("a", "2024-09-10T10:00:00Z", "10"),
    ("a", "2024-10-10T10:00:00Z", "10"),
    ("a", "2024-11-10T10:00:00Z", "10"),
    ("a", "2024-12-10T10:00:00Z", "10"),
    ("a", "2025-01-15T10:00:00Z", "10"),  # follow-up: stays
    ("b", "2024-06-15T00:00:00Z", "30"),
    ("b", "2024-11-05T10:00:00Z", "10"),
    ("b", "2024-12-05T10:00:00Z", "10"),
    ("b", "2025-03-01T23:59:59Z", "10"),  # the follow-up's last second: stays
    ("m", "2024-12-20T10:00:00Z", "80"),
    ("h", "2023-06-01T10:00:00Z", "99"),
    ("h", "2024-09-05T10:00:00Z", "20"),
    ("h", "2024-10-20T10:00:00Z", "20"),
    ("h", "2024-11-20T10:00:00Z", "20"),
    ("h", "2025-02-20T10:00:00Z", "20"),
    ("t", "2024-09-03T00:00:00Z", "15"),  # the window's first second
    ("t", "2025-03-02T00:00:00Z", "15"),  # after the follow-up: defected
    ("x", "2025-01-05T10:00:00Z", "10"),  # bought only after as_of: not in the matrix
    ("y", "2024-12-01T10:00:00Z", "10"),
    ("z", "2024-12-01T10:00:00Z", "10"),
]
SURVEYS = [
    ("a", "2024-12-01T10:00:00Z", "nps", 10.0),
    ("b", "2024-12-06T10:00:00Z", "nps", 9.0),
    ("m", "2024-12-22T10:00:00Z", "csat", 5.0),
    ("m", "2024-12-28T10:00:00Z", "nps", 8.0),
    ("h", "2024-12-15T10:00:00Z", "nps", 6.0),
    ("h", "2024-11-15T10:00:00Z", "custom", 3.0),
    ("t", "2024-10-01T10:00:00Z", "csat", 2.0),
    ("t", "2024-11-01T10:00:00Z", "nps", 7.0),
    ("x", "2024-12-01T10:00:00Z", "nps", 10.0),
    ("y", "2024-08-01T10:00:00Z", "nps", 10.0),  # before the window
    ("y", "2024-12-02T10:00:00Z", "custom", 5.0),  # custom answers measure no satisfaction
    ("z", "2025-01-01T00:00:00Z", "nps", 10.0),  # at as_of: outside the window
]
REFERRALS = [("r1", "h", "2024-10-01T10:00:00Z")]
ENGAGEMENT = [
    ("a", datetime(2024, 11, 1, 10), "redemption"),
    ("a", datetime(2025, 1, 2, 10), "redemption"),  # after as_of
    ("b", datetime(2024, 12, 7, 10), "redemption"),
    ("t", datetime(2024, 8, 1, 10), "event"),  # before the window
]
AS_OF = "2025-01-01"
RULE = fa.LoyaltyRule(
    window_days=120,
    bucket_days=30,
    follow_up_days=60,
    tenure_full_days=400,
    engagement_full=4,
)


def index(tenure: float, regularity: float, engagement: float) -> float:
    return (tenure * 1.0 + regularity * 1.0 + engagement * 1.0) / 3.0


A_INDEX = index(365 / 400, 1.0, 0.5)
M_INDEX = index(11 / 400, 0.25, 0.5)
H_INDEX = index(1.0, 0.75, 0.75)
T_INDEX = index(120 / 400, 0.25, 0.5)


def table(rows: list[tuple[Any, ...]], names: list[str]) -> pa.Table:
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


@pytest.fixture
def data() -> Iterator[fa.AnalyticsData]:
    with fa.open_frames(
        table(TRANSACTIONS, ["member_id", "occurred_at", "amount"]),
        surveys=table(SURVEYS, ["member_id", "answered_at", "kind", "score"]),
        referrals=table(REFERRALS, ["member_id", "referrer_id", "referred_at"]),
    ) as opened:
        yield opened


@pytest.fixture
def engagement() -> Any:
    return ibis.memtable(
        pa.table(
            {
                "member_id": [row[0] for row in ENGAGEMENT],
                "occurred_at": pa.array([row[1] for row in ENGAGEMENT], pa.timestamp("s")),
                "kind": [row[2] for row in ENGAGEMENT],
            }
        )
    )


def rows(frame: Any) -> list[dict[Any, Any]]:
    assert isinstance(frame, pd.DataFrame)
    return frame.to_dict("records")


def full(data: fa.AnalyticsData, engagement: Any, **rule: Any) -> dict[str, Any]:
    return {
        "transactions": data.transactions,
        "surveys": data.surveys,
        "as_of": AS_OF,
        "engagement": engagement,
        "referrals": data.referrals,
        "rule": replace(RULE, **rule),
    }


def test_members_get_their_satisfaction_relationship_and_quadrant(
    data: fa.AnalyticsData, engagement: Any
) -> None:
    args = full(data, engagement)
    got = rows(fa.loyalty_members(args.pop("transactions"), args.pop("surveys"), **args))
    assert [r["member_id"] for r in got] == ["a", "b", "h", "m", "t"]
    by = {r["member_id"]: r for r in got}
    assert [
        (
            by[m]["answers"],
            by[m]["satisfied_answers"],
            by[m]["satisfied"],
            by[m]["tenure_days"],
            by[m]["active_buckets"],
            by[m]["engagement_events"],
        )
        for m in "abmht"
    ] == [
        (1, 1, True, 365, 4, 2),
        (1, 1, True, 200, 2, 2),
        (2, 1, True, 11, 1, 2),  # one satisfied answer of two meets the default half
        (1, 0, False, 579, 3, 3),
        (2, 0, False, 120, 1, 2),  # a passive (7) is not satisfied by default
    ]
    assert by["a"]["tenure_score"] == 365 / 400
    assert by["h"]["tenure_score"] == 1.0  # capped
    assert by["h"]["regularity_score"] == 0.75 and by["h"]["engagement_score"] == 0.75
    assert [by[m]["relationship_index"] for m in "abmht"] == pytest.approx(
        [A_INDEX, 0.5, M_INDEX, H_INDEX, T_INDEX], rel=1e-15
    )
    assert by["b"]["relationship_index"] == 0.5 and by["b"]["strong"]  # at the threshold
    assert [(by[m]["strong"], by[m]["quadrant"]) for m in "abmht"] == [
        (True, "apostles"),
        (True, "apostles"),
        (False, "mercenaries"),
        (True, "hostages"),
        (False, "terrorists"),
    ]
    assert [by[m]["revenue"] for m in "abmht"] == [Decimal(v) for v in (40, 20, 80, 60, 15)]
    assert [(by[m]["follow_up_purchases"], by[m]["defected"]) for m in "abmht"] == [
        (1, False),
        (1, False),
        (0, True),
        (1, False),
        (0, True),
    ]


def test_matrix_counts_revenue_and_defection_per_quadrant(
    data: fa.AnalyticsData, engagement: Any
) -> None:
    args = full(data, engagement)
    got = rows(fa.loyalty_matrix(args.pop("transactions"), args.pop("surveys"), **args))
    assert [
        (r["quadrant"], r["satisfied"], r["strong"], r["customers"], r["revenue"], r["defected"])
        for r in got
    ] == [
        ("apostles", True, True, 2, Decimal(60), 0),
        ("mercenaries", True, False, 1, Decimal(80), 1),
        ("hostages", False, True, 1, Decimal(60), 0),
        ("terrorists", False, False, 1, Decimal(15), 1),
    ]
    assert [r["customer_share"] for r in got] == [0.4, 0.2, 0.2, 0.2]
    assert [r["revenue_share"] for r in got] == pytest.approx(
        [60 / 215, 80 / 215, 60 / 215, 15 / 215]
    )
    assert [r["defection_rate"] for r in got] == [0.0, 1.0, 0.0, 1.0]
    assert [r["mean_relationship_index"] for r in got] == pytest.approx(
        [(A_INDEX + 0.5) / 2, M_INDEX, H_INDEX, T_INDEX], rel=1e-15
    )


def test_share_of_satisfied_customers_who_did_not_buy_again(
    data: fa.AnalyticsData, engagement: Any
) -> None:
    args = full(data, engagement)
    (got,) = rows(fa.satisfied_defection(args.pop("transactions"), args.pop("surveys"), **args))
    assert got == {
        "customers": 5,
        "satisfied_customers": 3,
        "satisfied_share": 0.6,
        "satisfied_defected": 1,
        "satisfied_defection_rate": pytest.approx(1 / 3),
        "dissatisfied_customers": 2,
        "dissatisfied_defected": 1,
        "dissatisfied_defection_rate": 0.5,
    }


def test_engagement_without_the_optional_tables_counts_survey_answers_only(
    data: fa.AnalyticsData,
) -> None:
    got = rows(fa.loyalty_members(data.transactions, data.surveys, as_of=AS_OF, rule=RULE))
    by = {r["member_id"]: r for r in got}
    # a and b lose their redemption, h its referral: b falls below 0.5 and becomes a mercenary.
    assert [by[m]["engagement_events"] for m in "abmht"] == [1, 1, 2, 2, 2]
    assert by["b"]["relationship_index"] == pytest.approx(index(0.5, 0.5, 0.25), rel=1e-15)
    assert [by[m]["quadrant"] for m in "abmht"] == [
        "apostles",
        "mercenaries",
        "mercenaries",
        "hostages",
        "terrorists",
    ]


def test_thresholds_are_configurable(data: fa.AnalyticsData, engagement: Any) -> None:
    # Passives count as satisfied: t (csat 2, nps 7) has half its answers satisfied.
    args = full(data, engagement, nps_satisfied_min=7, strong_min=Decimal("0.8"))
    got = rows(fa.loyalty_members(args.pop("transactions"), args.pop("surveys"), **args))
    by = {r["member_id"]: r for r in got}
    assert by["m"]["satisfied_answers"] == 2 and by["t"]["satisfied_answers"] == 1
    # Only a (0.804…) and h (0.833…) reach 0.8.
    assert [by[m]["quadrant"] for m in "abmht"] == [
        "apostles",
        "mercenaries",
        "mercenaries",
        "hostages",
        "mercenaries",
    ]
    # A stricter share: m's one satisfied CSAT answer of two is no longer enough.
    args = full(data, engagement, satisfied_share=Decimal("0.75"))
    got = rows(fa.loyalty_members(args.pop("transactions"), args.pop("surveys"), **args))
    assert {r["member_id"]: r["satisfied"] for r in got}["m"] is False
    # Weights: tenure only.
    args = full(data, engagement, regularity_weight=0, engagement_weight=0)
    got = rows(fa.loyalty_members(args.pop("transactions"), args.pop("surveys"), **args))
    assert {r["member_id"]: r["relationship_index"] for r in got} == {
        "a": 365 / 400,
        "b": 0.5,
        "h": 1.0,
        "m": 11 / 400,
        "t": 0.3,
    }


def test_an_empty_matrix_lists_every_quadrant(data: fa.AnalyticsData) -> None:
    frame = fa.loyalty_matrix(data.transactions, data.surveys, as_of="2024-01-01", rule=RULE)
    got = rows(frame)
    assert [r["quadrant"] for r in got] == ["apostles", "mercenaries", "hostages", "terrorists"]
    assert [r["customers"] for r in got] == [0, 0, 0, 0]
    assert all(pd.isna(r["defection_rate"]) for r in got)
    (summary,) = rows(fa.satisfied_defection(data.transactions, data.surveys, as_of="2024-01-01"))
    assert summary["customers"] == 0 and pd.isna(summary["satisfied_defection_rate"])


def test_polars_output(data: fa.AnalyticsData) -> None:
    frame = fa.loyalty_matrix(data.transactions, data.surveys, as_of=AS_OF, output="polars")
    assert isinstance(frame, pl.DataFrame)
    assert frame["quadrant"].to_list() == ["apostles", "mercenaries", "hostages", "terrorists"]


def test_default_rule_judges_a_year() -> None:
    rule = fa.DEFAULT_LOYALTY_RULE
    assert (rule.window_days, rule.buckets, rule.follow_up_days) == (360, 12, 90)
    assert (rule.nps_satisfied_min, rule.csat_satisfied_min) == (9, 4)
    assert rule.strong_min == Decimal("0.5") and rule.satisfied_share == Decimal("0.5")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"nps_satisfied_min": 11}, "nps_satisfied_min"),
        ({"csat_satisfied_min": 0}, "csat_satisfied_min"),
        ({"window_days": 0}, "window_days"),
        ({"bucket_days": 7}, "bucket_days"),  # 360 is no whole number of weeks
        ({"follow_up_days": 1.5}, "follow_up_days"),
        ({"satisfied_share": "1.5"}, "satisfied_share"),
        ({"strong_min": "x"}, "strong_min"),
        ({"engagement_weight": -1}, "engagement_weight"),
        ({"tenure_weight": 0, "regularity_weight": 0, "engagement_weight": 0}, "tenure_weight"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        fa.LoyaltyRule(**changes)
    assert error.value.field == field


def test_an_aware_as_of_is_refused(data: fa.AnalyticsData) -> None:
    with pytest.raises(ValidationError) as error:
        fa.loyalty_matrix(data.transactions, data.surveys, as_of="2025-01-01T00:00:00+01:00")
    assert error.value.field == "as_of"


def test_first_purchases_known_already_give_the_same_members(
    data: fa.AnalyticsData, engagement: Any
) -> None:
    """The report passes each buyer's first purchase over all its data: x's is after as_of,
    so x stays out of the matrix all the same."""
    args = full(data, engagement)
    firsts = buyers_expr(data.transactions).select("member_id", "first_purchase_at")
    want = rows(fa.loyalty_members(args.pop("transactions"), args.pop("surveys"), **args))
    got = fa.loyalty_members_expr(
        data.transactions, data.surveys, first_purchases=firsts, **args
    ).order_by("member_id")
    assert rows(fa.to_frame(got)) == want
    assert "x" not in {r["member_id"] for r in want}
    members = fa.loyalty_members_expr(data.transactions, data.surveys, **args)
    assert rows(fa.to_frame(loyalty_matrix_of(members, args["rule"]))) == rows(
        fa.loyalty_matrix(data.transactions, data.surveys, **args)
    )
    assert rows(fa.to_frame(satisfied_defection_of(members))) == rows(
        fa.satisfied_defection(data.transactions, data.surveys, **args)
    )
