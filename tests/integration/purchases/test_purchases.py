"""Purchases, returns, rules, tiers and events end to end on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.core.errors import Conflict, IdempotencyError, NotFound, ValidationError
from fideliza.events.service import record_event
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import Entry
from fideliza.purchases import service as purchases
from fideliza.rules import service as rules
from fideliza.tiers import service as tiers
from fideliza.tiers.models import TierHistory
from tests.factories import make_member, make_program

ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}


def basket(
    external_id: str, member_ref: str, at: datetime, amount: str = "25.00", **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "external_id": external_id,
        "member_id": member_ref,
        "occurred_at": at.isoformat(),
        "amount": amount,
        "currency": "EUR",
        "channel": "store",
        "store": "S1",
        "items": [
            {"sku": "COF", "category": "coffee", "quantity": 2, "unit_price": "5.00"},
            {"sku": "CAK", "category": "cake", "quantity": 3, "unit_price": "5.00"},
        ],
    }
    data.update(extra)
    return data


def test_purchase_earns_by_the_rules_and_says_why(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    member = make_member(db, program=program, now=now)
    outcome = purchases.record_purchase(
        db, program=program, data=basket("t1", member.external_id, now), now=now
    )
    db.commit()
    assert outcome.points == 25
    assert ledger.balance(db, member_id=member.id).available == 25
    entry = db.scalars(
        select(Entry).where(Entry.transaction_id == outcome.transaction_id, Entry.amount > 0)
    ).one()
    assert entry.rule_id is not None and entry.rule_version == 1 and entry.detail
    assert check_ledger(db, program_id=program.id) == []


def test_same_id_same_content_replays_other_content_is_refused(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    member = make_member(db, program=program, now=now)
    first = purchases.record_purchase(
        db, program=program, data=basket("t1", member.external_id, now), now=now
    )
    again = purchases.record_purchase(
        db, program=program, data=basket("t1", member.external_id, now), now=now
    )
    assert (
        again.replayed and again.purchase_id == first.purchase_id and again.points == first.points
    )
    with pytest.raises(IdempotencyError) as error:
        purchases.record_purchase(
            db, program=program, data=basket("t1", member.external_id, now, amount="26.00"), now=now
        )
    assert error.value.field == "external_id"
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 25


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"member_id": "nobody"}, "member_id"),
        ({"currency": "USD"}, "currency"),
        ({"occurred_at": "2025-03-10T10:00:00"}, "occurred_at"),
        ({"amount": "-3"}, "amount"),
        ({"items": [{"sku": "X", "quantity": -1, "unit_price": "1.00"}]}, "items[0].quantity"),
    ],
)
def test_bad_purchases_name_the_field(
    db: Session, now: datetime, change: dict[str, Any], field: str
) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    with pytest.raises((ValidationError, NotFound)) as error:
        purchases.record_purchase(
            db, program=program, data=basket("t1", member.external_id, now, **change), now=now
        )
    assert error.value.field == field


def test_partial_returns_reverse_proportionally_and_add_up(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    member = make_member(db, program=program, now=now)
    purchases.record_purchase(
        db, program=program, data=basket("t1", member.external_id, now), now=now
    )
    one = purchases.record_return(
        db,
        program=program,
        purchase_external_id="t1",
        external_id="r1",
        occurred_at=now,
        now=now,
        items=[{"sku": "CAK", "quantity": 1}],
    )
    assert one.points_reversed == 5
    with pytest.raises(ValidationError) as error:
        purchases.record_return(
            db,
            program=program,
            purchase_external_id="t1",
            external_id="r2",
            occurred_at=now,
            now=now,
            items=[{"sku": "CAK", "quantity": 3}],
        )
    assert error.value.field == "items[0].quantity"
    rest = purchases.record_return(
        db,
        program=program,
        purchase_external_id="t1",
        external_id="r3",
        occurred_at=now,
        now=now,
        items=[{"sku": "CAK", "quantity": 2}, {"sku": "COF", "quantity": 2}],
    )
    assert rest.points_reversed == 20
    replay = purchases.record_return(
        db,
        program=program,
        purchase_external_id="t1",
        external_id="r1",
        occurred_at=now,
        now=now,
        items=[{"sku": "CAK", "quantity": 1}],
    )
    assert replay.replayed and replay.points_reversed == 5
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 0
    assert check_ledger(db, program_id=program.id) == []


def test_tier_upgrade_applies_its_multiplier_to_later_purchases(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    tiers.configure(
        db,
        program=program,
        now=now,
        config={
            "levels": [
                {
                    "code": "BRONZE",
                    "name": "Bronze",
                    "rank": 1,
                    "threshold": "0",
                    "multiplier": "1",
                },
                {"code": "GOLD", "name": "Gold", "rank": 2, "threshold": "40", "multiplier": "2"},
            ],
            "policy": {"basis": "points", "period": "calendar_year"},
        },
    )
    member = make_member(db, program=program, now=now)
    first = purchases.record_purchase(
        db, program=program, data=basket("t1", member.external_id, now), now=now
    )
    second = purchases.record_purchase(
        db,
        program=program,
        data=basket("t2", member.external_id, now + timedelta(hours=1)),
        now=now,
    )
    third = purchases.record_purchase(
        db,
        program=program,
        data=basket("t3", member.external_id, now + timedelta(hours=2)),
        now=now,
    )
    db.commit()
    assert (first.points, second.points, third.points) == (25, 25, 50)
    assert second.tier_change is not None and second.tier_change.to_code == "GOLD"
    history = db.scalars(
        select(TierHistory.to_code).where(TierHistory.member_id == member.id)
    ).all()
    assert history == ["BRONZE", "GOLD"]
    status = tiers.status(
        db, program=program, member=db.merge(member), now=now + timedelta(hours=3)
    )
    assert status is not None and status.code == "GOLD" and status.metric == 100


def test_dry_run_explains_without_writing(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    rules.create(
        db,
        program=program,
        now=now,
        definition={
            "name": "web bonus",
            "conditions": {"channels": ["web"]},
            "actions": [{"type": "fixed_bonus", "points": 50}],
        },
    )
    result = purchases.dry_run(db, program=program, data=basket("x", "y", now))
    assert result.points == 25
    assert [c.matched for c in result.checks] == [True, False]
    assert result.checks[1].failed_condition == "channels"


def test_custom_events_earn_through_rules_once(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    rules.create(
        db,
        program=program,
        now=now,
        definition={
            "name": "visit",
            "activity": "store_visit",
            "actions": [{"type": "fixed_bonus", "points": 10}],
            "caps": {"per_day": 10},
        },
    )
    member = make_member(db, program=program, now=now)
    first = record_event(
        db,
        program=program,
        external_id="v1",
        member_ref=member.external_id,
        event_type="store_visit",
        occurred_at=now,
        now=now,
    )
    again = record_event(
        db,
        program=program,
        external_id="v1",
        member_ref=member.external_id,
        event_type="store_visit",
        occurred_at=now,
        now=now,
    )
    capped = record_event(
        db,
        program=program,
        external_id="v2",
        member_ref=member.external_id,
        event_type="store_visit",
        occurred_at=now + timedelta(hours=1),
        now=now,
    )
    db.commit()
    assert (first.points, again.replayed, capped.points) == (10, True, 0)
    assert ledger.balance(db, member_id=member.id).available == 10
    assert check_ledger(db, program_id=program.id) == []


def test_a_new_rule_version_is_used_and_old_postings_keep_theirs(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    rule = rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    rules.create(
        db,
        program=program,
        now=now,
        definition={"name": "other", "actions": [{"type": "fixed_bonus", "points": 1}]},
    )
    member = make_member(db, program=program, now=now)
    first = purchases.record_purchase(
        db, program=program, data=basket("t1", member.external_id, now), now=now
    )
    doubled = {
        **ONE_PER_EURO,
        "actions": [{"type": "points_per_amount", "points": 2, "per": "1.00"}],
    }
    rules.update(db, program=program, rule_id=rule.id, definition=doubled, now=now)
    second = purchases.record_purchase(
        db, program=program, data=basket("t2", member.external_id, now), now=now
    )
    with pytest.raises(Conflict) as error:
        rules.update(
            db, program=program, rule_id=rule.id, definition={**doubled, "name": "other"}, now=now
        )
    assert error.value.field == "definition.name"
    db.commit()
    assert [(p.rule_version, p.points) for p in first.postings if p.rule_id == rule.id] == [(1, 25)]
    assert [(p.rule_version, p.points) for p in second.postings if p.rule_id == rule.id] == [
        (2, 50)
    ]
