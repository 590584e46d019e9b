"""Rewards on SQLite and PostgreSQL: catalog, two-phase redemptions, limits, budgets, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fideliza.core.errors import (
    Conflict,
    FidelizaError,
    IdempotencyError,
    InsufficientPoints,
    InvalidState,
    ValidationError,
)
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import Hold
from fideliza.programs.models import OutboxEvent
from fideliza.programs.service import settings_of
from fideliza.rewards import service as rewards
from fideliza.rewards.models import Redemption, Reward, RewardBudgetSpend
from tests.factories import make_member, make_program
from tests.integration.rewards.builders import add_tiers, fund, make_reward


@pytest.fixture
def shop(db: Session, now: datetime) -> tuple:
    """A program (15-minute holds) and a member with 500 points."""
    program = make_program(db, now=now, settings={"hold_ttl_minutes": 15})
    member = make_member(db, program=program, now=now)
    fund(db, program=program, member=member, points=500, now=now)
    db.commit()
    return program, member


def stock_of(db: Session, reward: Reward) -> int | None:
    return db.scalar(select(Reward.stock).where(Reward.id == reward.id))


# --- the catalog ----------------------------------------------------------------------------


def test_a_reward_is_created_with_its_terms(db: Session, now: datetime, shop: tuple) -> None:
    program, _ = shop
    reward = make_reward(
        db, program=program, now=now, kind="cashback", value="5.00", stock=3, budget_money="50"
    )
    db.commit()
    again = rewards.get_reward(db, program_id=program.id, reward_id=reward.id)
    assert (again.kind, again.stock, again.value) == ("cashback", 3, Decimal("5.0000"))
    assert again.budget_money == Decimal("50.0000")
    assert (again.limit_period, again.budget_period, again.active) == ("ever", "ever", True)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"kind": "cashback"}, None, "`value` is required"),
        ({"kind": "discount"}, None, "`campaign_id` is required"),
        ({"budget_money": "10"}, None, "`value` is required with `budget_money`"),
        ({"kind": "voucher"}, "kind", "Input should be"),
        ({"points_cost": 0}, "points_cost", "greater than 0"),
        ({"points_cost": 1.5}, "points_cost", "integer"),
        ({"stock": -1}, "stock", "greater than or equal to 0"),
        ({"value": "1.23456"}, "value", "decimal places"),
        ({"eligible_tiers": ["gold"]}, "eligible_tiers[0]", "unknown tier 'gold'"),
        ({"tier_costs": {"gold": 50}}, "tier_costs.gold", "unknown tier 'gold'"),
        ({"colour": "red"}, "colour", "is not a known field"),
        (
            {
                "available_from": "2025-03-10T00:00:00+00:00",
                "available_until": "2025-03-01T00:00:00+00:00",
            },
            "available_until",
            "must be after available_from",
        ),
    ],
)
def test_bad_rewards_are_refused_naming_the_field(
    db: Session, now: datetime, shop: tuple, fields: dict, field: str | None, words: str
) -> None:
    program, _ = shop
    with pytest.raises(ValidationError) as caught:
        make_reward(db, program=program, now=now, **fields)
    assert caught.value.field == field
    assert words in caught.value.message
    db.rollback()
    assert rewards.list_rewards(db, program_id=program.id) == []


def test_codes_are_unique_within_a_program(db: Session, now: datetime, shop: tuple) -> None:
    program, _ = shop
    make_reward(db, program=program, now=now, code="coffee")
    with pytest.raises(Conflict) as caught:
        make_reward(db, program=program, now=now, code="coffee")
    assert caught.value.field == "code"


def test_an_update_changes_only_what_is_given_and_is_validated_whole(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, _ = shop
    reward = make_reward(db, program=program, now=now, kind="charity", value="2.00", stock=5)
    rewards.update_reward(
        db, program=program, reward_id=reward.id, data={"stock": 9, "name": "Trees"}, now=now
    )
    assert (reward.stock, reward.name, reward.value) == (9, "Trees", Decimal("2.0000"))
    with pytest.raises(ValidationError) as caught:
        rewards.update_reward(
            db, program=program, reward_id=reward.id, data={"value": None}, now=now
        )
    assert "`value` is required" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        rewards.update_reward(
            db, program=program, reward_id=reward.id, data={"points_cost": None}, now=now
        )
    assert caught.value.field == "points_cost"


# --- two-phase redemption -------------------------------------------------------------------


def test_redeem_holds_points_and_stock_and_capture_fulfils_and_publishes(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(
        db, program=program, now=now, kind="experience", stock=2, points_cost=200,
        attributes={"event": "Barista workshop", "date": "2025-04-02"},
    )  # fmt: skip
    redemption, created = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="till-1",
        now=now, attributes={"seat": "B7"},
    )  # fmt: skip
    db.commit()
    assert created and redemption.status == "held"
    assert redemption.expires_at == now + timedelta(minutes=15)
    assert ledger.balance(db, member_id=member.id).available == 300
    assert ledger.balance(db, member_id=member.id).held == 200
    assert stock_of(db, reward) == 1

    later = now + timedelta(minutes=5)
    rewards.capture(db, program=program, redemption_id=redemption.id, now=later)
    db.commit()
    assert (redemption.status, redemption.settled_at) == ("captured", later)
    balance = ledger.balance(db, member_id=member.id)
    assert (balance.available, balance.held) == (300, 0)
    assert stock_of(db, reward) == 1  # the unit stays taken
    assert redemption.fulfilment["details"] == {
        "event": "Barista workshop",
        "date": "2025-04-02",
        "seat": "B7",
    }
    hold = db.get(Hold, redemption.hold_id)
    assert hold is not None and (hold.status, hold.reference) == ("captured", "reward:till-1")
    event = db.scalar(
        select(OutboxEvent).where(
            OutboxEvent.program_id == program.id, OutboxEvent.event_type == "reward.redeemed"
        )
    )
    assert event is not None
    assert event.payload["id"] == redemption.id and event.payload["points"] == 200
    assert event.payload["reward_code"] == reward.code
    assert check_ledger(db, program_id=program.id) == []

    with pytest.raises(InvalidState) as caught:
        rewards.capture(db, program=program, redemption_id=redemption.id, now=later)
    assert "is captured, not held" in caught.value.message


def test_release_gives_points_stock_and_budget_back_exactly_once(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=1, budget_points=1000)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="r1", now=now
    )
    db.commit()
    assert stock_of(db, reward) == 0
    rewards.release(db, program=program, redemption_id=redemption.id, now=now)
    db.commit()
    assert redemption.status == "released"
    assert ledger.balance(db, member_id=member.id).available == 500
    assert stock_of(db, reward) == 1
    spend = db.get(RewardBudgetSpend, (reward.id, "ever"))
    assert spend is not None and spend.points_spent == 0
    with pytest.raises(InvalidState):
        rewards.release(db, program=program, redemption_id=redemption.id, now=now)
    db.rollback()
    assert stock_of(db, reward) == 1
    assert check_ledger(db, program_id=program.id) == []


def test_a_reference_makes_a_redemption_idempotent(db: Session, now: datetime, shop: tuple) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=5)
    other = make_reward(db, program=program, now=now)
    first, created = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="same", now=now
    )
    again, created_again = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="same", now=now
    )
    assert created and not created_again and again.id == first.id
    assert stock_of(db, reward) == 4
    assert ledger.balance(db, member_id=member.id).held == 100
    with pytest.raises(IdempotencyError) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=other.id, reference="same", now=now
        )
    assert caught.value.field == "reference"


def test_a_points_hold_s_reference_is_not_taken_over(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=1)
    ledger.hold(
        db, program_id=program.id, settings=settings_of(program), member_id=member.id,
        points=100, reference="reward:sneaky", now=now, reason="by hand",
    )  # fmt: skip
    with pytest.raises(IdempotencyError) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="sneaky",
            now=now,
        )  # fmt: skip
    assert caught.value.field == "reference"


def test_what_the_member_cannot_afford_is_refused_saying_why_and_nothing_is_written(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, points_cost=800, stock=1)
    db.commit()
    with pytest.raises(InsufficientPoints) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="x", now=now
        )
    assert caught.value.message == (
        "the reward costs 800 points; the member has 500 available (300 missing)"
    )
    db.rollback()
    assert stock_of(db, reward) == 1
    assert db.scalar(select(Redemption.id).where(Redemption.member_id == member.id)) is None


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"active": False}, "reward_inactive", "not active"),
        (
            {"available_from": "2025-04-01T00:00:00+02:00"},
            "reward_not_yet_available",
            "available from 2025-03-31T22:00:00+00:00",
        ),
        (
            {"available_until": "2025-03-10T12:00:00+00:00"},
            "reward_no_longer_available",
            "available until",
        ),
        ({"stock": 0}, "reward_out_of_stock", "out of stock"),
        ({"budget_points": 50}, "reward_budget_spent", "budget in total is spent"),
    ],
)
def test_ineligible_redemptions_are_refused_saying_why(
    db: Session, now: datetime, shop: tuple, fields: dict, code: str, words: str
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, **fields)
    with pytest.raises(InvalidState) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="x", now=now
        )
    assert (caught.value.code, caught.value.field) == (code, "reward_id")
    assert words in caught.value.message


def test_tiers_set_the_price_and_who_may_redeem(db: Session, now: datetime, shop: tuple) -> None:
    program, member = shop
    add_tiers(db, program=program, codes=("silver", "gold"))
    reward = make_reward(
        db, program=program, now=now, points_cost=300, tier_costs={"gold": 200},
        eligible_tiers=["silver", "gold"],
    )  # fmt: skip
    with pytest.raises(InvalidState) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
        )
    assert caught.value.code == "reward_tier_not_eligible"
    assert "for tiers silver, gold; the member has no tier" in caught.value.message
    member.tier_code = "gold"
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="b", now=now
    )
    assert redemption.points == 200
    member.tier_code = "silver"
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="c", now=now
    )
    assert redemption.points == 300


def test_the_per_member_limit_counts_within_the_local_period(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(
        db, program=program, now=now, points_cost=10, limit_per_member=2, limit_period="month"
    )
    for reference in ("a", "b"):
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference=reference,
            now=now,
        )  # fmt: skip
    with pytest.raises(InvalidState) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="c", now=now
        )
    assert caught.value.code == "reward_member_limit_reached"
    assert "redeemed it 2 times; the limit is 2 per month" in caught.value.message
    # A released redemption does not count; nor does last month's.
    first = db.scalar(select(Redemption).where(Redemption.reference == "a"))
    assert first is not None
    rewards.release(db, program=program, redemption_id=first.id, now=now)
    rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="d", now=now
    )
    # 1 April 00:30 in Madrid is 31 March 22:30 UTC: already April's period.
    april = datetime(2025, 3, 31, 22, 30, tzinfo=UTC)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="e", now=april
    )
    assert redemption.status == "held"


def test_a_budget_stops_issuing_once_spent_and_refills_next_period(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(
        db, program=program, now=now, kind="charity", value="4.00", points_cost=10,
        budget_money="10.00", budget_period="day",
    )  # fmt: skip
    for reference in ("a", "b"):
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference=reference,
            now=now,
        )  # fmt: skip
    with pytest.raises(InvalidState) as caught:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="c", now=now
        )
    assert caught.value.code == "reward_budget_spent"
    assert "budget for this day is spent" in caught.value.message
    spend = db.get(RewardBudgetSpend, (reward.id, "2025-03-10"))
    assert spend is not None and spend.money_spent == Decimal("8.0000")
    tomorrow = now + timedelta(days=1)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="d",
        now=tomorrow,
    )  # fmt: skip
    assert redemption.budget_period_key == "2025-03-11"


def test_the_database_refuses_an_overspent_budget_or_negative_stock(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=1, budget_points=100)
    rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    db.commit()
    with pytest.raises(IntegrityError):
        reward.stock = -1
        db.flush()
    db.rollback()
    spend = db.get(RewardBudgetSpend, (reward.id, "ever"))
    assert spend is not None
    with pytest.raises(IntegrityError):
        spend.points_spent = 101
        db.flush()
    db.rollback()


def test_a_budget_cannot_be_lowered_below_what_was_spent(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, points_cost=100, budget_points=500)
    rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    with pytest.raises(ValidationError) as caught:
        rewards.update_reward(
            db, program=program, reward_id=reward.id, data={"budget_points": 50}, now=now
        )
    assert caught.value.field == "budget_points"
    rewards.update_reward(
        db, program=program, reward_id=reward.id, data={"budget_points": 100}, now=now
    )
    with pytest.raises(InvalidState) as refused:
        rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="b", now=now
        )
    assert refused.value.code == "reward_budget_spent"


# --- expiry ---------------------------------------------------------------------------------


def test_expired_redemptions_give_everything_back_once(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=1, budget_points=100)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    db.commit()
    assert rewards.expire_due(db, program_id=program.id, now=now + timedelta(minutes=14)) == 0
    later = now + timedelta(minutes=15)
    with pytest.raises(InvalidState) as caught:
        rewards.capture(db, program=program, redemption_id=redemption.id, now=later)
    assert "expired at" in caught.value.message
    db.rollback()
    assert rewards.expire_due(db, program_id=program.id, now=later) == 1
    db.commit()
    assert rewards.expire_due(db, program_id=program.id, now=later) == 0
    assert ledger.expire_holds(db, program_id=program.id, now=later) == 0
    db.refresh(redemption)
    assert redemption.status == "expired"
    assert stock_of(db, reward) == 1
    assert ledger.balance(db, member_id=member.id).available == 500
    hold = db.get(Hold, redemption.hold_id)
    assert hold is not None and hold.status == "expired"
    assert check_ledger(db, program_id=program.id) == []


def test_when_the_ledger_expires_the_hold_first_the_stock_still_comes_back_once(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=1)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    db.commit()
    later = now + timedelta(hours=1)
    assert ledger.expire_holds(db, program_id=program.id, now=later) == 1
    db.commit()
    assert stock_of(db, reward) == 0  # stranded until the rewards job runs
    assert rewards.expire_due(db, program_id=program.id, now=later) == 1
    assert rewards.expire_due(db, program_id=program.id, now=later) == 0
    db.commit()
    assert stock_of(db, reward) == 1
    assert ledger.balance(db, member_id=member.id).available == 500
    db.refresh(redemption)
    assert redemption.status == "expired"


def test_a_hold_released_through_the_points_api_frees_the_stock_at_the_next_run(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, stock=1)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    ledger.release(db, program_id=program.id, hold_id=redemption.hold_id, now=now)
    with pytest.raises(InvalidState) as caught:
        rewards.capture(db, program=program, redemption_id=redemption.id, now=now)
    assert "were released" in caught.value.message
    assert rewards.expire_due(db, program_id=program.id, now=now) == 1
    assert stock_of(db, reward) == 1
    assert ledger.balance(db, member_id=member.id).available == 500


# --- fulfilment by kind ---------------------------------------------------------------------


def test_a_discount_issues_a_coupon_of_its_campaign(
    db: Session, now: datetime, shop: tuple
) -> None:
    from fideliza.coupons import service as coupons

    program, member = shop
    campaign = coupons.create_campaign(
        db,
        program_id=program.id,
        data={
            "code": "ten-off",
            "name": "10% off",
            "discount": {"type": "percent", "percent": "10"},
        },
        now=now,
    )
    reward = make_reward(db, program=program, now=now, kind="discount", campaign_id=campaign.id)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    rewards.capture(db, program=program, redemption_id=redemption.id, now=now)
    db.commit()
    code = redemption.fulfilment["coupon_code"]
    state = coupons.inspect(db, program_id=program.id, code=code, now=now)
    assert (state.found, state.state, state.campaign_code) == (True, "usable", "ten-off")
    assert (state.member_id, state.source) == (member.id, f"reward:{redemption.id}")


def test_a_discount_of_an_unknown_campaign_is_refused_and_nothing_is_spent(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    reward = make_reward(db, program=program, now=now, kind="discount", campaign_id=999_999)
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    db.commit()
    with pytest.raises(FidelizaError):
        rewards.capture(db, program=program, redemption_id=redemption.id, now=now)
    db.rollback()
    db.refresh(redemption)
    assert redemption.status == "held"
    assert ledger.balance(db, member_id=member.id).held == 100


def test_cashback_credits_the_member_s_wallet_once(db: Session, now: datetime, shop: tuple) -> None:
    from fideliza.giftcards import service as giftcards

    program, member = shop
    reward = make_reward(db, program=program, now=now, kind="cashback", value="5.00")
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    rewards.capture(db, program=program, redemption_id=redemption.id, now=now)
    db.commit()
    (wallet,) = giftcards.wallets(db, program_id=program.id, member_id=member.id)
    assert (wallet.currency, wallet.balance) == ("EUR", Decimal("5.0000"))
    assert redemption.fulfilment["wallet_credit"] == "5.0000"


def test_a_charity_donation_records_what_was_given(db: Session, now: datetime, shop: tuple) -> None:
    program, member = shop
    reward = make_reward(
        db, program=program, now=now, kind="charity", value="3.50",
        attributes={"cause": "Food bank"},
    )  # fmt: skip
    redemption, _ = rewards.redeem(
        db, program=program, member_id=member.id, reward_id=reward.id, reference="a", now=now
    )
    rewards.capture(db, program=program, redemption_id=redemption.id, now=now)
    assert redemption.fulfilment["donation"] == "3.5000"
    assert redemption.fulfilment["cause"] == "Food bank"


# --- a member's catalog ---------------------------------------------------------------------


def test_the_member_catalog_shows_price_affordability_eligibility_and_the_next_reward(
    db: Session, now: datetime, shop: tuple
) -> None:
    program, member = shop
    add_tiers(db, program=program, codes=("gold",))
    cheap = make_reward(db, program=program, now=now, code="a-cheap", points_cost=300)
    near = make_reward(db, program=program, now=now, code="b-near", points_cost=600)
    far = make_reward(db, program=program, now=now, code="c-far", points_cost=2000)
    gold = make_reward(
        db, program=program, now=now, code="d-gold", points_cost=550, eligible_tiers=["gold"]
    )
    empty = make_reward(db, program=program, now=now, code="e-empty", points_cost=10, stock=0)
    make_reward(db, program=program, now=now, code="f-off", active=False)
    catalog = rewards.member_catalog(db, program=program, member_id=member.id, now=now)
    assert catalog.points_available == 500
    seen = {entry.reward.id: entry for entry in catalog.rewards}
    assert list(seen) == [cheap.id, near.id, far.id, gold.id, empty.id]
    assert (seen[cheap.id].affordable, seen[cheap.id].eligible) == (True, True)
    assert (seen[near.id].affordable, seen[near.id].points_missing) == (False, 100)
    assert seen[far.id].points_missing == 1500
    assert (seen[gold.id].eligible, seen[gold.id].reason_code) == (
        False,
        "reward_tier_not_eligible",
    )
    assert seen[empty.id].reason == "the reward is out of stock"
    # The gold reward is closer (50 missing) but not for this member.
    assert catalog.next_reward is not None and catalog.next_reward.reward.id == near.id
