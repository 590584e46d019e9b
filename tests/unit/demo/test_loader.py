"""The demo end to end on SQLite and PostgreSQL: a small Café Fideliza with every product part."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza import analytics as fa
from fideliza.demo.engagement import nps_of
from fideliza.demo.loader import DEMO_CODE, load_demo
from fideliza.members.models import Member
from fideliza.messaging.models import MessageTemplate
from fideliza.programs import service as programs
from fideliza.referrals.models import Referral
from fideliza.rewards.models import Redemption, Reward
from fideliza.surveys.models import SurveyResponse


@pytest.fixture(scope="module")
def summary(database_url: str) -> dict[str, Any]:
    return load_demo(database_url, member_count=200, seed=7, console=Console(quiet=True))


def test_the_ledger_check_is_clean_and_the_summary_counts_what_was_made(
    summary: dict[str, Any],
) -> None:
    assert summary["ledger_check"] == "consistent"
    assert summary["members"] == 200
    assert summary["rewards_redeemed"]["captured"] > 0
    assert set(summary["rewards_redeemed"]) <= {"captured", "held", "released", "expired"}
    assert summary["coupon_codes"] >= 300
    assert 0 < summary["coupons_redeemed"] < summary["coupon_codes"]
    assert sum(summary["referrals"].values()) > 0
    assert summary["survey_answers"]["nps"] > 0
    assert summary["survey_answers"].get("csat", 0) > 0
    assert summary["nps"] is not None and -100 <= summary["nps"] <= 100
    assert sum(summary["cases"].values()) == 36
    assert summary["cases"]["resolved"] > 0 and summary["cases"]["open"] > 0
    assert summary["cases_breaching_sla"] > 0
    assert summary["gift_cards"] == 2


def test_loading_again_only_shows_the_summary(summary: dict[str, Any], database_url: str) -> None:
    again = load_demo(database_url, member_count=200, seed=7, console=Console(quiet=True))
    assert again["members"] == summary["members"]
    assert again["survey_answers"] == summary["survey_answers"]


def test_referred_members_joined_through_an_earlier_members_code(
    summary: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        links = db.execute(
            select(Referral.referrer_member_id, Referral.referred_member_id).where(
                Referral.program_id == program.id
            )
        ).all()
        enrolled = dict(
            db.execute(
                select(Member.id, Member.external_id).where(Member.program_id == program.id)
            ).all()
        )
    assert 5 <= len(links) <= 40  # about one member in ten
    for referrer, referred in links:
        assert enrolled[referrer] < enrolled[referred]  # external ids follow enrolment order


def test_the_catalog_is_redeemed_and_the_gold_tasting_only_by_gold_members(
    summary: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        catalog = {
            r.code: r for r in db.scalars(select(Reward).where(Reward.program_id == program.id))
        }
        assert set(catalog) == {"cafe", "tarta", "desayuno", "dos-euros", "donacion", "cata"}
        assert catalog["cata"].stock is not None
        tasting_tiers = set(
            db.scalars(
                select(Member.tier_code)
                .join(Redemption, Redemption.member_id == Member.id)
                .where(Redemption.reward_id == catalog["cata"].id)
            )
        )
        assert tasting_tiers <= {"GOLD"}
        templates = {
            (t.kind, t.locale)
            for t in db.scalars(
                select(MessageTemplate).where(MessageTemplate.program_id == program.id)
            )
        }
    assert {(k, loc) for k in ("welcome", "birthday") for loc in ("es", "en", "it")} <= templates


def test_heavy_users_are_happier_and_the_loyalty_matrix_is_filled(
    summary: dict[str, Any], session_factory: sessionmaker[Session], database_url: str
) -> None:
    with session_factory() as db:
        program = programs.get_by_code(db, code=DEMO_CODE)
        rows = db.execute(
            select(Member.attributes, SurveyResponse.score)
            .join(SurveyResponse, SurveyResponse.member_id == Member.id)
            .where(SurveyResponse.program_id == program.id, SurveyResponse.kind == "nps")
        ).all()
    by_group: dict[str, list[int]] = {}
    for attributes, score in rows:
        by_group.setdefault(attributes["usage"], []).append(score)
    assert sum(by_group["heavy"]) / len(by_group["heavy"]) > sum(by_group["low"]) / len(
        by_group["low"]
    )
    data = fa.open_database(database_url, program=DEMO_CODE)
    assert data.surveys is not None
    matrix = fa.loyalty_matrix(
        data.transactions, data.surveys, as_of=datetime.now(UTC).date().isoformat()
    )
    customers = dict(zip(matrix["quadrant"], matrix["customers"], strict=True))
    assert sum(customers.values()) >= 10
    assert customers["apostles"] > 0
    assert sum(count > 0 for count in customers.values()) >= 3  # not everyone in one corner


def test_nps_is_promoters_minus_detractors() -> None:
    assert nps_of([]) is None
    assert nps_of([10, 9, 8, 7, 0]) == 20
    assert nps_of([6, 6, 10, 10]) == 0
