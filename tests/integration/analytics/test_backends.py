"""The same analytics expressions give the same results on every source and backend.

A program's purchases (and returns) are recorded through the purchases service in the
operational database, SQLite and PostgreSQL alike, then read back with `open_database`: on
SQLite they are copied into DuckDB, on PostgreSQL the metrics run on PostgreSQL itself. The
reference is the same history built as a DataFrame and opened on DuckDB; CSV and Parquet files
of it must agree too. Every metric must match the reference row for row: counts, dates and
money exactly; floats to 1e-12 relative (a sum of doubles may round differently per backend).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fideliza import analytics as fa
from fideliza.db import make_engine, make_session_factory
from fideliza.purchases import service as purchases
from tests.factories import make_member, make_program

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

TIMEZONE = "Europe/Madrid"
NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
MEMBERS = 36
CENT = Decimal("0.01")


def build_history(seed: int = 4) -> tuple[list[dict[str, Any]], list[tuple[str, Decimal]]]:
    """Purchases (with sub-second times, some across local midnight at a month's end) and the
    returns to record against some of them: (purchase external id, amount returned)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for index in range(MEMBERS):
        member = f"m-{index:02d}"
        at = start + timedelta(days=rng.randrange(0, 540), seconds=rng.randrange(0, 86_400))
        for visit in range(rng.choice([1, 1, 1, 2, 2, 3, 5, 8])):
            if visit:
                at += timedelta(days=rng.choice([0, 1, 6, 13, 27, 40, 95]), hours=rng.randrange(24))
            moment = at.replace(microsecond=rng.choice([0, 400_000, 999_999]))
            rows.append(
                {
                    "external_id": f"t-{index:02d}-{visit}",
                    "member_id": member,
                    "occurred_at": moment,
                    "amount": Decimal(rng.randrange(100, 20_000)) / 100,
                }
            )
    # 23:30 UTC on the last day of October is 00:30 on 1 November in Madrid.
    rows.append(
        {
            "external_id": "t-edge",
            "member_id": "m-00",
            "occurred_at": datetime(2024, 10, 31, 23, 30, 59, 999_999, tzinfo=UTC),
            "amount": Decimal("12.34"),
        }
    )
    returns = [(row["external_id"], (row["amount"] / 4).quantize(CENT)) for row in rows[::9]]
    return rows, returns


HISTORY, RETURNS = build_history()
REFERRALS = pd.DataFrame(
    {
        "member_id": [f"m-{i:02d}" for i in range(1, MEMBERS, 3)],
        "referrer_id": ["m-00"] * len(range(1, MEMBERS, 3)),
        "referred_at": ["2024-03-01T00:00:00Z"] * len(range(1, MEMBERS, 3)),
    }
)


def build_surveys(seed: int = 5) -> pd.DataFrame:
    """NPS, CSAT and custom answers from 2024-02 to 2025-03, 0–3 per member."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    start = datetime(2024, 2, 1, tzinfo=UTC)
    for index in range(MEMBERS):
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            kind = rng.choice(["nps", "nps", "csat", "custom"])
            score = rng.randrange(0, 11) if kind == "nps" else rng.randrange(1, 6)
            at = start + timedelta(days=rng.randrange(0, 420), seconds=rng.randrange(0, 86_400))
            rows.append(
                {
                    "member_id": f"m-{index:02d}",
                    "answered_at": at.isoformat(),
                    "kind": kind,
                    "score": float(score),
                }
            )
    return pd.DataFrame(rows)


SURVEYS = build_surveys()
# Program activity (redemptions, events) as local times, on whichever backend runs the metric.
ENGAGEMENT = ibis.memtable(
    pa.table(
        {
            "member_id": [f"m-{i:02d}" for i in range(0, MEMBERS, 2)],
            "occurred_at": pa.array(
                [datetime(2024, 3 + i % 10, 1 + i % 28, 12) for i in range(0, MEMBERS, 2)],
                pa.timestamp("s"),
            ),
            "kind": ["redemption", "event"] * (len(range(0, MEMBERS, 2)) // 2),
        }
    )
)
LOYALTY_AS_OF = "2025-02-01"
STRICT_LOYALTY = fa.LoyaltyRule(
    nps_satisfied_min=7, csat_satisfied_min=5, strong_min=Decimal("0.3"), follow_up_days=180
)


def reference_frame() -> pd.DataFrame:
    """The history as the analytics should see it: amounts net of returns."""
    returned = {external_id: amount for external_id, amount in RETURNS}
    return pd.DataFrame(
        {
            "member_id": [row["member_id"] for row in HISTORY],
            "occurred_at": [row["occurred_at"].isoformat() for row in HISTORY],
            "amount": [
                str(row["amount"] - returned.get(row["external_id"], Decimal(0))) for row in HISTORY
            ],
        }
    )


METRICS: dict[str, Callable[[fa.AnalyticsData], Any]] = {
    "buyer_summary": lambda d: fa.buyer_summary(d.transactions),
    "purchase_frequency": lambda d: fa.purchase_frequency(d.transactions),
    "inter_purchase_times": lambda d: fa.inter_purchase_times(d.transactions, bin_days=7),
    "active_customers": lambda d: fa.active_customers(d.transactions),
    "active_customers_weekly": lambda d: fa.active_customers(d.transactions, period="week"),
    "defection": lambda d: fa.defection(d.transactions),
    "defection_quarterly": lambda d: fa.defection(d.transactions, period="quarter"),
    "cohort_retention": lambda d: fa.cohort_retention(d.transactions),
    "customer_usage": lambda d: fa.customer_usage(
        d.transactions, start="2024-07-01", end="2025-01-01"
    ),
    "usage_groups": lambda d: fa.usage_groups(d.transactions, start="2024-07-01"),
    "usage_groups_frequency": lambda d: fa.usage_groups(
        d.transactions, rule=fa.UsageRule.thresholds(measure="frequency", heavy_min=4, medium_min=2)
    ),
    "usage_migration": lambda d: fa.usage_migration(
        d.transactions, before=("2024-07-01", "2025-01-01"), after=("2025-01-01", "2025-07-01")
    ),
    "rfm": lambda d: fa.rfm(d.transactions, as_of="2025-06-01"),
    "rfm_average": lambda d: fa.rfm(d.transactions, as_of="2025-06-01", monetary="average"),
    "rfm_segments": lambda d: fa.rfm_segments(d.transactions, as_of="2025-06-01"),
    "referral_acquisition": lambda d: fa.referral_acquisition(d.transactions, d.referrals),
    "customer_base": lambda d: fa.to_frame(
        fa.customer_base_expr(d.transactions, as_of="2025-06-01").order_by("member_id")
    ),
    # The fitted models' predictions: the same summary gives the same fit, to the last digit.
    "lifetime_values": lambda d: fa.lifetime_values(
        d.transactions, as_of="2025-06-01", months=6, monthly_discount_rate=0.02
    ),
    "loyalty_members": lambda d: fa.loyalty_members(
        d.transactions,
        d.surveys,
        as_of=LOYALTY_AS_OF,
        engagement=ENGAGEMENT,
        referrals=d.referrals,
    ),
    "loyalty_matrix": lambda d: fa.loyalty_matrix(
        d.transactions,
        d.surveys,
        as_of=LOYALTY_AS_OF,
        engagement=ENGAGEMENT,
        referrals=d.referrals,
    ),
    "loyalty_matrix_strict": lambda d: fa.loyalty_matrix(
        d.transactions, d.surveys, as_of=LOYALTY_AS_OF, rule=STRICT_LOYALTY
    ),
    "satisfied_defection": lambda d: fa.satisfied_defection(
        d.transactions, d.surveys, as_of=LOYALTY_AS_OF, engagement=ENGAGEMENT
    ),
}


@pytest.fixture(scope="module")
def reference() -> Iterator[dict[str, pd.DataFrame]]:
    with fa.open_frames(
        reference_frame(), referrals=REFERRALS, surveys=SURVEYS, timezone=TIMEZONE
    ) as data:
        yield {name: metric(data) for name, metric in METRICS.items()}


@pytest.fixture(scope="module")
def program_code(database_url: str) -> str:
    """Records the history through the purchases service in a fresh program; returns its code."""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as db:
            program = make_program(db, now=NOW, timezone=TIMEZONE)
            for member in sorted({row["member_id"] for row in HISTORY}):
                make_member(db, program=program, now=NOW, external_id=member)
            for row in HISTORY:
                purchases.record_purchase(
                    db,
                    program=program,
                    data={**row, "occurred_at": row["occurred_at"].isoformat(), "currency": "EUR"},
                    now=NOW,
                )
            for external_id, amount in RETURNS:
                purchases.record_return(
                    db,
                    program=program,
                    purchase_external_id=external_id,
                    external_id=f"r-{external_id}",
                    occurred_at=NOW.isoformat(),
                    amount=amount,
                    now=NOW,
                )
            db.commit()
            return program.code
    finally:
        engine.dispose()


def assert_same(got: Any, want: pd.DataFrame, name: str) -> None:
    assert isinstance(got, pd.DataFrame)
    assert list(got.columns) == list(want.columns), name
    assert len(got) == len(want), name
    for column in want.columns:
        mine, theirs = got[column], want[column]
        if pd.api.types.is_float_dtype(theirs):
            pd.testing.assert_series_equal(
                mine, theirs, check_exact=False, rtol=1e-12, atol=0, obj=f"{name}.{column}"
            )
        else:
            assert mine.tolist() == theirs.tolist(), f"{name}.{column}"


@pytest.fixture(scope="module")
def opened(database_url: str, program_code: str) -> Iterator[fa.AnalyticsData]:
    with fa.open_database(
        database_url, program=program_code, referrals=REFERRALS, surveys=SURVEYS
    ) as data:
        yield data


def test_database_runs_on_the_expected_backend(database_url: str, opened: Any) -> None:
    assert opened.timezone == TIMEZONE  # the program's
    backend = "postgres" if database_url.startswith("postgresql") else "duckdb"
    assert opened.backend.name == backend


@pytest.mark.parametrize("name", list(METRICS))
def test_database_matches_the_reference(
    opened: fa.AnalyticsData, reference: dict[str, pd.DataFrame], name: str
) -> None:
    assert_same(METRICS[name](opened), reference[name], name)


MADRID_JUNE_1 = datetime(2025, 5, 31, 22, 0, tzinfo=UTC)  # 2025-06-01 00:00 in Madrid (CEST)


def test_database_gives_the_reference_clv_section(opened: fa.AnalyticsData) -> None:
    """The report's CLV section (fits, totals, top customers, segments) to the last digit."""
    from fideliza.analytics.report import build_report

    with fa.open_frames(reference_frame(), timezone=TIMEZONE) as reference_data:
        want = build_report(reference_data, as_of="2025-06-01", lang="en")
    got = build_report(opened, as_of="2025-06-01", lang="en")
    section = want.figures["customer_lifetime_value"]
    assert section is not None and section["customers"] == len(
        {row["member_id"] for row in HISTORY if row["occurred_at"] < MADRID_JUNE_1}
    )
    assert got.figures["customer_lifetime_value"] == section


def test_database_source_has_the_analytics_shape(database_url: str, program_code: str) -> None:
    with fa.open_database(database_url, program=program_code) as data:
        schema = data.transactions.schema()
        assert schema.names == fa.TRANSACTIONS_SCHEMA.names
        assert schema["amount"] == fa.TRANSACTIONS_SCHEMA["amount"]
        assert schema["occurred_at"].is_timestamp() and schema["occurred_at"].timezone is None
        table = data.transactions
        edge = table.filter((table.member_id == "m-00") & (table.amount == Decimal("12.34")))
        frame = fa.to_frame(edge)
        assert isinstance(frame, pd.DataFrame)
        assert frame["occurred_at"].tolist() == [pd.Timestamp("2024-11-01 00:30:59")]


def test_database_needs_the_program_when_it_holds_several(database_url: str) -> None:
    with pytest.raises(fa.sources.ValidationError) as error:
        fa.open_database(database_url, program="no-such-program")
    assert error.value.field == "program"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_files_match_the_reference(
    tmp_path: Path, reference: dict[str, pd.DataFrame], kind: str
) -> None:
    frame = reference_frame()
    if kind == "csv":
        path = tmp_path / "purchases.csv"
        frame.to_csv(path, index=False)
    else:
        path = tmp_path / "purchases.parquet"
        table = pa.table(
            {
                "member_id": frame["member_id"].tolist(),
                "occurred_at": pa.array(
                    [datetime.fromisoformat(value) for value in frame["occurred_at"]],
                    pa.timestamp("us", tz="UTC"),
                ),
                "amount": pa.array([Decimal(v) for v in frame["amount"]], pa.decimal128(18, 4)),
            }
        )
        pq.write_table(table, path)
    referrals = tmp_path / "referrals.csv"
    REFERRALS.to_csv(referrals, index=False)
    surveys = tmp_path / "surveys.csv"
    SURVEYS.to_csv(surveys, index=False)
    with fa.open_files(path, referrals=referrals, surveys=surveys, timezone=TIMEZONE) as data:
        for name, metric in METRICS.items():
            assert_same(metric(data), reference[name], name)


# --- the points ledger: liability and breakage ------------------------------------------------


def _ledger_at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T12:00:00+00:00")


@pytest.fixture(scope="module")
def ledger_program(database_url: str) -> str:
    """A program with a hand-known ledger (expiry after 100 days, a 14-day return window):
    x earns 100 on 10 Jan, redeems 30, the rest (70) expires on 20 Apr; y earns 50 on 1 Mar and
    redeems 20; z earns 40 on 1 May, still pending at the end of May."""
    from fideliza.ledger import service as ledger
    from fideliza.programs.service import settings_of

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as db:
            settings = {"expiry": {"mode": "days", "days": 100}, "return_window_days": 14}
            program = make_program(db, now=NOW, timezone=TIMEZONE, settings=settings)
            members = {
                name: make_member(
                    db, program=program, now=_ledger_at("2025-01-01"), external_id=name
                )
                for name in ("x", "y", "z")
            }

            def earn(name: str, points: int, day: str) -> None:
                ledger.earn(
                    db,
                    program_id=program.id,
                    settings=settings_of(program),
                    timezone_name=program.timezone,
                    member_id=members[name].id,
                    lines=[ledger.EarnLine(points=points, reason="test")],
                    occurred_at=_ledger_at(day),
                    now=_ledger_at(day),
                    source_type="test",
                    source_ref=f"{name}-{day}",
                    reason="test earning",
                )

            def redeem(name: str, points: int, day: str) -> None:
                ledger.redeem(
                    db,
                    program_id=program.id,
                    member_id=members[name].id,
                    points=points,
                    now=_ledger_at(day),
                    reason="reward",
                )

            earn("x", 100, "2025-01-10")
            ledger.unlock_due(db, program_id=program.id, now=_ledger_at("2025-01-25"))
            redeem("x", 30, "2025-02-01")
            earn("y", 50, "2025-03-01")
            ledger.unlock_due(db, program_id=program.id, now=_ledger_at("2025-03-16"))
            redeem("y", 20, "2025-03-20")
            assert ledger.expire_due(db, program_id=program.id, now=_ledger_at("2025-04-25")) == 70
            earn("z", 40, "2025-05-01")
            db.commit()
            return program.code
    finally:
        engine.dispose()


def test_ledger_liability_and_breakage_by_hand(database_url: str, ledger_program: str) -> None:
    cost = Decimal("0.01")
    with fa.open_database(database_url, program=ledger_program) as data:
        assert data.entries is not None and data.lots is not None
        members: Any = fa.member_points(data.entries, as_of="2025-06-01")
        assert members["tier"].isna().all()  # no tiers in this program
        numbers = ["member_id", "available", "pending", "held", "outstanding"]
        assert members[numbers].values.tolist() == [
            ["x", 0, 0, 0, 0],
            ["y", 30, 0, 0, 30],
            ["z", 0, 40, 0, 40],
        ]
        # Before x's points expired: 70 of x, 30 of y.
        early: Any = fa.points_liability(data.entries, as_of="2025-04-01", cost_per_point=cost)
        assert early[["outstanding_points", "liability"]].values.tolist() == [
            [100, Decimal("1.0000")]
        ]
        cohorts: Any = fa.breakage_cohorts(data.lots, as_of="2025-06-01")
        assert cohorts["cohort"].tolist() == [
            pd.Timestamp("2025-01-01"),
            pd.Timestamp("2025-03-01"),
            pd.Timestamp("2025-05-01"),
        ]
        columns = ["lots", "issued", "expired", "outstanding", "used", "mature"]
        assert cohorts[columns].values.tolist() == [
            [1, 100, 70, 0, 30, True],
            [1, 50, 0, 30, 20, False],
            [1, 40, 0, 40, 0, False],
        ]
        # Earned at 13:00 in Madrid on 10 January, expired 100 × 24 h later (14:00, summer time).
        assert cohorts["last_expiry"].iloc[0] == pd.Timestamp("2025-04-20 14:00")
        assert cohorts["breakage_rate"].iloc[0] == 0.7
        rate: Any = fa.breakage_rate(data.lots, as_of="2025-06-01")
        assert rate.values.tolist() == [[1, 100, 70, 0.7]]
        for by_tier in (False, True):
            got: Any = fa.expected_liability(
                data.entries, data.lots, as_of="2025-06-01", cost_per_point=cost, by_tier=by_tier
            )
            assert got["members"].tolist() == [2]
            assert got["outstanding_points"].tolist() == [70]
            assert got["liability"].tolist() == [Decimal("0.7000")]
            assert got["expected_breakage_points"].tolist() == [Decimal("49.0000")]
            assert got["net_liability"].tolist() == [Decimal("0.2100")]


# --- rewards: reward cost and effort vs reward, PostgreSQL in place vs DuckDB -----------------

REWARD_METRICS: dict[str, Callable[[fa.AnalyticsData], Any]] = {
    "reward_cost": lambda d: fa.reward_cost(d.redemptions, cost_per_point=Decimal("0.0125")),
    "reward_cost_quarterly": lambda d: fa.reward_cost(
        d.redemptions, cost_per_point=Decimal("0.0125"), period="quarter", start="2025-02-01"
    ),
    "effort_vs_reward": lambda d: fa.effort_vs_reward(
        d.transactions, d.entries, cost_per_point=Decimal("0.01")
    ),
    "effort_vs_reward_window": lambda d: fa.effort_vs_reward(
        d.transactions, d.entries, cost_per_point=Decimal("0.01"), end="2025-03-01"
    ),
}


@pytest.fixture(scope="module")
def rewards_program(database_url: str) -> str:
    """Purchases, earnings, tiers and captured redemptions of cashback and gifts."""
    from fideliza.ledger import service as ledger
    from fideliza.programs.service import settings_of
    from fideliza.rewards import service as rewards
    from tests.integration.rewards.builders import make_reward

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as db:
            program = make_program(db, now=NOW, timezone=TIMEZONE)
            gift = make_reward(db, program=program, now=NOW, code="mug", points_cost=90)
            cash = make_reward(
                db, program=program, now=NOW, code="cash", kind="cashback", value="3.30",
                points_cost=300,
            )  # fmt: skip
            for index, tier in enumerate(["gold", "gold", "silver", None, None]):
                member = make_member(
                    db, program=program, now=_ledger_at("2025-01-01"), external_id=f"w-{index}"
                )
                member.tier_code = tier
                for visit in range(index + 1):
                    day = f"2025-0{1 + visit % 4}-{10 + index:02d}"
                    amount = Decimal(17 * (index + 3) + visit) + Decimal("0.45")
                    purchases.record_purchase(
                        db, program=program, now=NOW,
                        data={"external_id": f"w-{index}-{visit}", "member_id": member.external_id,
                              "occurred_at": _ledger_at(day).isoformat(), "amount": amount,
                              "currency": "EUR"},
                    )  # fmt: skip
                    ledger.earn(
                        db, program_id=program.id, settings=settings_of(program),
                        timezone_name=program.timezone, member_id=member.id,
                        lines=[ledger.EarnLine(points=400 + 37 * visit, reason="spend")],
                        occurred_at=_ledger_at(day), now=_ledger_at(day), source_type="test",
                        source_ref=f"w-{index}-{visit}", reason="test earning",
                    )  # fmt: skip
                ledger.unlock_due(db, program_id=program.id, now=_ledger_at("2025-06-01"))
                for number, reward in enumerate([gift, cash][: 1 + index % 2]):
                    at = _ledger_at(f"2025-0{2 + number + index % 3}-{5 + index:02d}")
                    redemption, _ = rewards.redeem(
                        db, program=program, member_id=member.id, reward_id=reward.id,
                        reference=f"w-{index}-{number}", now=at,
                    )  # fmt: skip
                    rewards.capture(db, program=program, redemption_id=redemption.id, now=at)
            db.commit()
            return program.code
    finally:
        engine.dispose()


def test_reward_metrics_match_on_every_backend(database_url: str, rewards_program: str) -> None:
    """The metrics on the database's backend equal those on DuckDB over the same rows."""
    with fa.open_database(database_url, program=rewards_program) as data:
        assert data.redemptions is not None and data.entries is not None
        got = {name: metric(data) for name, metric in REWARD_METRICS.items()}
        tables = {
            name: getattr(data, name).to_pyarrow()
            for name in ("transactions", "entries", "redemptions")
        }
    with fa.open_frames(
        tables["transactions"],
        entries=tables["entries"],
        redemptions=tables["redemptions"],
        timezone=TIMEZONE,
        assume_timezone=TIMEZONE,
    ) as frames:
        for name, metric in REWARD_METRICS.items():
            assert_same(got[name], metric(frames), name)
    cost = got["reward_cost"]
    assert cost["redemptions"].sum() == 7  # 5 mugs and 2 cashbacks
    assert set(cost["reward_kind"]) == {"gift", "cashback"}
    cashback = cost[cost["reward_kind"] == "cashback"]
    assert cashback["cost"].sum() == Decimal("6.60")  # 2 × 3.30, whatever the points
    tiers = got["effort_vs_reward"]
    assert tiers["tier"].tolist()[:2] == ["gold", "silver"] and pd.isna(tiers["tier"].iloc[2])
    assert tiers["members"].tolist() == [2, 1, 2]
    assert (tiers["spend"] > 0).all() and (tiers["points_earned"] > 0).all()


# --- matched comparison: members against non-members, on every backend -----------------------

MATCHED_MEMBERS = [f"m-{i:02d}" for i in range(0, MEMBERS, 2)]  # the others play non-members


def matched(data: fa.AnalyticsData) -> Any:
    return fa.matched_customers(
        data.transactions,
        ibis.memtable({"member_id": MATCHED_MEMBERS}),
        pre_start="2024-01-01",
        program_start="2024-10-01",
        end="2025-07-01",
        bands=(1, 2),
    )


def test_matched_customers_match_the_reference(opened: fa.AnalyticsData) -> None:
    with fa.open_frames(reference_frame(), timezone=TIMEZONE) as data:
        want = matched(data)
    got = matched(opened)
    assert_same(got, want, "matched_customers")
    assert set(got["group"]) == {"program", "comparison"}
    result = fa.matched_roi(got, cost=Decimal(100), resamples=200)
    assert result == fa.matched_roi(want, cost=Decimal(100), resamples=200)
