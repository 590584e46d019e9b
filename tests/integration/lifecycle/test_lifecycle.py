"""Lifecycle bonuses end to end on SQLite and PostgreSQL: welcome, birthday, anniversary and
customer appreciation days, each granted once per period."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.core.errors import Conflict, ValidationError
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.history import member_history
from fideliza.lifecycle import service as lifecycle
from fideliza.lifecycle.models import LifecycleGrant
from fideliza.members import service as members
from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.purchases import service as purchases
from fideliza.rules import service as rules
from tests.factories import make_member, make_program

NOON = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # 13:00 in Madrid


def points(db: Session, member: Member) -> int:
    return ledger.balance(db, member_id=member.id).total


def run(db: Session, program: Program, at: datetime) -> dict[str, int]:
    counts = lifecycle.run_due(db, program_id=program.id, now=at)
    db.commit()
    return counts


def configured(db: Session, config: dict[str, Any], at: datetime = NOON) -> Program:
    program = make_program(db, now=at - timedelta(days=800))
    lifecycle.configure(db, program=program, config=config, now=at)
    db.commit()
    return program


def test_welcome_is_given_once_to_members_enrolled_after_it_was_switched_on(db: Session) -> None:
    program = make_program(db, now=NOON - timedelta(days=1))
    before = make_member(db, program=program, now=NOON - timedelta(hours=1))
    lifecycle.configure(db, program=program, config={"welcome_points": 100}, now=NOON)
    newcomer = make_member(db, program=program, now=NOON + timedelta(minutes=5))
    db.commit()
    assert run(db, program, NOON + timedelta(minutes=10))["welcome"] == 1
    assert run(db, program, NOON + timedelta(minutes=20))["welcome"] == 0
    assert run(db, program, NOON + timedelta(days=3))["welcome"] == 0
    assert (points(db, newcomer), points(db, before)) == (100, 0)
    [line] = member_history(db, member_id=newcomer.id)
    assert (line.source_type, line.why) == ("bonus", "welcome bonus (once)")
    later = make_member(db, program=program, now=NOON + timedelta(days=3, hours=1))
    db.commit()
    assert run(db, program, NOON + timedelta(days=3, hours=2))["welcome"] == 1
    assert points(db, later) == 100
    # Switched off, then on again: those who joined in between get no welcome.
    lifecycle.configure(db, program=program, config={}, now=NOON + timedelta(days=4))
    between = make_member(db, program=program, now=NOON + timedelta(days=5))
    lifecycle.configure(
        db, program=program, config={"welcome_points": 100}, now=NOON + timedelta(days=6)
    )
    db.commit()
    assert run(db, program, NOON + timedelta(days=6, hours=1))["welcome"] == 0
    assert points(db, between) == 0
    assert check_ledger(db, program_id=program.id) == []


def test_birthday_on_the_day_in_the_programs_timezone_once_a_year(db: Session) -> None:
    program = configured(db, {"birthday": {"points": 50}})
    today = make_member(db, program=program, now=NOON, birthday=date(1990, 3, 10))
    tomorrow = make_member(db, program=program, now=NOON, birthday=date(1990, 3, 11))
    no_birthday = make_member(db, program=program, now=NOON)
    db.commit()
    # 23:30 UTC on the 9th is already the 10th in Madrid.
    assert run(db, program, datetime(2025, 3, 9, 23, 30, tzinfo=UTC))["birthday"] == 1
    assert run(db, program, NOON)["birthday"] == 0
    assert (points(db, today), points(db, tomorrow), points(db, no_birthday)) == (50, 0, 0)
    assert run(db, program, NOON + timedelta(days=1))["birthday"] == 1
    assert points(db, tomorrow) == 50
    assert run(db, program, NOON + timedelta(days=365))["birthday"] == 1  # 2026-03-10
    assert points(db, today) == 100


def test_a_29_february_birthday_is_celebrated_on_28_february_in_common_years(
    db: Session,
) -> None:
    at = datetime(2025, 2, 28, 12, tzinfo=UTC)
    program = configured(db, {"birthday": {"points": 50}}, at=at)
    leapling = make_member(db, program=program, now=at, birthday=date(2000, 2, 29))
    db.commit()
    assert run(db, program, at)["birthday"] == 1
    assert points(db, leapling) == 50
    assert run(db, program, at + timedelta(days=1))["birthday"] == 0  # 1 March: no second one


def test_birth_month_mode_gives_once_in_the_month(db: Session) -> None:
    program = configured(db, {"birthday": {"points": 30, "mode": "month"}})
    march = make_member(db, program=program, now=NOON, birthday=date(1985, 3, 28))
    april = make_member(db, program=program, now=NOON, birthday=date(1985, 4, 2))
    db.commit()
    assert run(db, program, NOON)["birthday"] == 1
    assert run(db, program, NOON + timedelta(days=1))["birthday"] == 0
    assert (points(db, march), points(db, april)) == (30, 0)
    assert run(db, program, datetime(2025, 4, 1, 9, tzinfo=UTC))["birthday"] == 1
    assert points(db, april) == 30
    assert points(db, march) == 30


def test_missed_days_are_caught_up(db: Session) -> None:
    program = configured(db, {"birthday": {"points": 10}})
    run(db, program, NOON)  # first run: today only
    missed = make_member(db, program=program, now=NOON, birthday=date(1970, 3, 12))
    db.commit()
    assert run(db, program, NOON + timedelta(days=4))["birthday"] == 1  # job was down 3 days
    assert points(db, missed) == 10


def test_membership_anniversary_once_per_membership_year(db: Session) -> None:
    program = configured(db, {"anniversary_points": 75})
    veteran = make_member(db, program=program, now=NOON - timedelta(days=365 * 2))  # 2023-03-11
    one_year = make_member(db, program=program, now=datetime(2024, 3, 10, 8, tzinfo=UTC))
    newcomer = make_member(db, program=program, now=NOON - timedelta(hours=2))
    db.commit()
    assert run(db, program, NOON)["anniversary"] == 1
    assert (points(db, one_year), points(db, veteran), points(db, newcomer)) == (75, 0, 0)
    assert run(db, program, NOON + timedelta(days=1))["anniversary"] == 1  # veteran, 11 March
    assert points(db, veteran) == 75
    assert run(db, program, NOON + timedelta(days=1, hours=3))["anniversary"] == 0


def test_suspended_members_get_nothing(db: Session) -> None:
    program = configured(db, {"birthday": {"points": 10}})
    member = make_member(db, program=program, now=NOON, birthday=date(1990, 3, 10))
    members.change_status(
        db, program=program, member=member, status="suspended", reason="check", now=NOON
    )
    db.commit()
    assert run(db, program, NOON)["birthday"] == 0
    assert points(db, member) == 0


def basket(member: Member, at: datetime, amount: str = "20.00", ref: str = "") -> dict[str, Any]:
    return {
        "external_id": f"t-{member.id}-{at.isoformat()}{ref}",
        "member_id": member.external_id,
        "occurred_at": at.isoformat(),
        "amount": amount,
        "currency": "EUR",
    }


APPRECIATION = {
    "appreciation_days": [
        {"name": "Spring", "start": "2025-03-14", "end": "2025-03-15", "multiplier": "2"}
    ]
}


def test_an_appreciation_multiplier_is_an_earning_rule_kept_in_step(db: Session) -> None:
    program = configured(db, APPRECIATION)
    rules.create(
        db,
        program=program,
        definition={"name": "1 per euro", "actions": [{"type": "points_per_amount", "points": 1}]},
        now=NOON,
    )
    member = make_member(db, program=program, now=NOON)
    inside = datetime(2025, 3, 14, 10, tzinfo=UTC)
    outside = datetime(2025, 3, 16, 10, tzinfo=UTC)
    earned_inside = purchases.record_purchase(
        db, program=program, data=basket(member, inside), now=inside
    )
    earned_outside = purchases.record_purchase(
        db, program=program, data=basket(member, outside), now=outside
    )
    assert (earned_inside.points, earned_outside.points) == (40, 20)
    (rule,) = [r for r in rules.list_rules(db, program_id=program.id) if r.name.startswith("Appr")]
    assert rule.active and rule.name == "Appreciation day: Spring"

    lifecycle.configure(
        db,
        program=program,
        config={"appreciation_days": [{**APPRECIATION["appreciation_days"][0], "multiplier": "3"}]},
        now=NOON,
    )
    assert rules.get(db, program_id=program.id, rule_id=rule.id).current_version == 2
    lifecycle.configure(db, program=program, config={}, now=NOON)
    assert not rules.get(db, program_id=program.id, rule_id=rule.id).active
    db.commit()


def test_an_appreciation_day_name_clashing_with_a_rule_names_the_field(db: Session) -> None:
    program = make_program(db, now=NOON)
    rules.create(
        db,
        program=program,
        definition={
            "name": "Appreciation day: Spring",
            "actions": [{"type": "fixed_bonus", "points": 1}],
        },
        now=NOON,
    )
    with pytest.raises(Conflict) as raised:
        lifecycle.configure(db, program=program, config=APPRECIATION, now=NOON)
    assert raised.value.field == "config.appreciation_days[0].name"


def test_an_appreciation_bonus_goes_once_to_members_who_bought_in_the_range(
    db: Session,
) -> None:
    config = {
        "appreciation_days": [
            {"name": "Thanks", "start": "2025-03-14", "end": "2025-03-15", "bonus_points": 25}
        ]
    }
    program = configured(db, config)
    buyer = make_member(db, program=program, now=NOON)
    twice = make_member(db, program=program, now=NOON)
    early = make_member(db, program=program, now=NOON)
    returned = make_member(db, program=program, now=NOON)
    day_one = datetime(2025, 3, 14, 9, tzinfo=UTC)
    for member, at in [(buyer, day_one), (twice, day_one), (twice, day_one + timedelta(days=1))]:
        purchases.record_purchase(db, program=program, data=basket(member, at), now=at)
    purchases.record_purchase(db, program=program, data=basket(early, NOON), now=NOON)
    sale = basket(returned, day_one)
    purchases.record_purchase(db, program=program, data=sale, now=day_one)
    purchases.record_return(
        db,
        program=program,
        purchase_external_id=sale["external_id"],
        external_id="r1",
        occurred_at=day_one,
        now=day_one,
        amount="20.00",
    )
    db.commit()
    assert run(db, program, NOON)["appreciation"] == 0  # before the range
    assert run(db, program, datetime(2025, 3, 14, 20, tzinfo=UTC))["appreciation"] == 2
    assert run(db, program, datetime(2025, 3, 16, 8, tzinfo=UTC))["appreciation"] == 0
    assert [points(db, m) for m in (buyer, twice, early, returned)] == [25, 25, 0, 0]
    grants = db.scalars(
        select(LifecycleGrant.period).where(LifecycleGrant.program_id == program.id)
    ).all()
    assert grants == ["2025-03-14:Thanks", "2025-03-14:Thanks"]


def test_a_program_without_configuration_does_nothing(db: Session) -> None:
    program = make_program(db, now=NOON)
    assert lifecycle.run_due(db, program_id=program.id, now=NOON) == {
        "welcome": 0,
        "birthday": 0,
        "anniversary": 0,
        "appreciation": 0,
    }


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"welcome_points": -1}, "config.welcome_points"),
        ({"welcome_points": "100"}, "config.welcome_points"),
        ({"birthday": {"points": 10, "mode": "week"}}, "config.birthday.mode"),
        ({"birthday": {"points": 0}}, "config.birthday.points"),
        ({"gift": 1}, "config.gift"),
        (
            {
                "appreciation_days": [
                    {"name": "X", "start": "2025-03-02", "end": "2025-03-01", "bonus_points": 1}
                ]
            },
            "config.appreciation_days[0].end",
        ),
        (
            {"appreciation_days": [{"name": "X", "start": "2025-03-01", "end": "2025-03-01"}]},
            "config.appreciation_days[0]",
        ),
        (
            {
                "appreciation_days": [
                    {"name": "X", "start": "2025-03-01", "end": "2025-03-01", "multiplier": "1"}
                ]
            },
            "config.appreciation_days[0].multiplier",
        ),
    ],
)
def test_bad_configuration_names_the_field(db: Session, config: dict[str, Any], field: str) -> None:
    program = make_program(db, now=NOON)
    with pytest.raises(ValidationError) as raised:
        lifecycle.configure(db, program=program, config=config, now=NOON)
    assert raised.value.field == field
    assert lifecycle.get_config(db, program_id=program.id) is None
