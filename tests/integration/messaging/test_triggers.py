"""Triggers on SQLite and PostgreSQL: who is due, once per member and period."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from fideliza.core.errors import NotFound, ValidationError
from fideliza.ledger import service as ledger
from fideliza.messaging import service as messaging
from fideliza.messaging.models import Message
from fideliza.programs import service as programs
from fideliza.purchases import service as purchases
from fideliza.tiers.models import TierHistory, TierLevelRow
from tests.integration.messaging.support import Shop

ONLY = {
    "welcome": ["welcome"],
    "birthday": ["birthday"],
    "tiers": ["tier_up", "tier_down"],
    "expiring": ["points_expiring"],
    "win_back": ["win_back"],
}


def _only(shop: Shop, name: str) -> None:
    messaging.set_config(
        shop.db, program_id=shop.program.id, changes={"triggers": ONLY[name]}, now=shop.now
    )
    shop.db.commit()


def _messages(db: Session, program_id: int, kind: str) -> list[Message]:
    query = select(Message).where(Message.program_id == program_id, Message.kind == kind)
    return list(db.scalars(query.order_by(Message.member_id)))


def test_welcome_once_per_member(shop: Shop) -> None:
    _only(shop, "welcome")
    new = shop.member()
    shop.member(email=None)  # also new, even without an address (checked at send)
    counts = messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=shop.now)
    shop.db.commit()
    assert counts == {"welcome": 2}
    again = messaging.evaluate_triggers(
        shop.db, program_id=shop.program.id, now=shop.now + timedelta(days=1)
    )
    assert again == {"welcome": 0}
    rows = _messages(shop.db, shop.program.id, "welcome")
    assert new.id in {row.member_id for row in rows} and len(rows) == 2
    assert all(
        row.status == "pending" and row.idempotency_key.startswith("welcome:") for row in rows
    )
    # A week later nobody is new.
    later = messaging.evaluate_triggers(
        shop.db, program_id=shop.program.id, now=shop.now + timedelta(days=8)
    )
    assert later == {"welcome": 0}


def test_birthday_is_today_in_the_program_time_zone(shop: Shop) -> None:
    _only(shop, "birthday")
    # 23:30 UTC on 10 March is already 11 March in Madrid.
    late = datetime(2025, 3, 10, 23, 30, tzinfo=UTC)
    eleventh = shop.member(birthday=date(1990, 3, 11))
    tenth = shop.member(birthday=date(1985, 3, 10))
    shop.member(birthday=None)
    counts = messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=late)
    shop.db.commit()
    due = {row.member_id for row in _messages(shop.db, shop.program.id, "birthday")}
    assert eleventh.id in due and tenth.id not in due
    assert counts["birthday"] == len(due) >= 1
    assert messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=late) == {
        "birthday": 0
    }
    key = f"birthday:{eleventh.id}:2025"
    assert key in {row.idempotency_key for row in _messages(shop.db, shop.program.id, "birthday")}


def test_leap_day_birthdays_are_greeted_on_28_february(db: Session, now: datetime) -> None:
    from tests.factories import make_program

    program = make_program(db, now=now, timezone="UTC")
    messaging.set_config(db, program_id=program.id, changes={"triggers": ["birthday"]}, now=now)
    shop = Shop(db=db, program=program, now=now)
    leap = shop.member(birthday=date(2000, 2, 29))
    counts = messaging.evaluate_triggers(
        db, program_id=program.id, now=datetime(2025, 2, 28, 10, tzinfo=UTC)
    )
    db.commit()
    assert counts == {"birthday": 1}
    assert [row.member_id for row in _messages(db, program.id, "birthday")] == [leap.id]


def test_tier_changes_up_and_down(shop: Shop) -> None:
    _only(shop, "tiers")
    db, program = shop.db, shop.program
    for rank, code in enumerate(("silver", "gold"), start=1):
        db.execute(
            insert(TierLevelRow),
            {
                "program_id": program.id,
                "code": code,
                "name": code.title(),
                "rank": rank,
                "threshold": Decimal(rank * 100),
                "multiplier": Decimal(1),
                "benefits": {},
            },
        )
    up, down, old = shop.member(), shop.member(), shop.member()
    changes = [
        (up.id, "silver", "gold", shop.now - timedelta(hours=1)),
        (down.id, "gold", "silver", shop.now - timedelta(days=1)),
        (old.id, None, "silver", shop.now - timedelta(days=30)),  # too old to announce
    ]
    for member_id, source, target, at in changes:
        db.execute(
            insert(TierHistory),
            {
                "program_id": program.id,
                "member_id": member_id,
                "from_code": source,
                "to_code": target,
                "changed_at": at,
                "reason": "review",
            },
        )
    counts = messaging.evaluate_triggers(db, program_id=program.id, now=shop.now)
    db.commit()
    assert counts == {"tier_up": 1, "tier_down": 1}
    [raised] = _messages(db, program.id, "tier_up")
    [lowered] = _messages(db, program.id, "tier_down")
    assert raised.member_id == up.id and raised.context == {
        "tier": {"from": "Silver", "to": "Gold"}
    }
    assert lowered.member_id == down.id
    assert messaging.evaluate_triggers(db, program_id=program.id, now=shop.now) == {
        "tier_up": 0,
        "tier_down": 0,
    }


def test_points_expiring_from_the_lots(shop: Shop) -> None:
    _only(shop, "expiring")
    db, program = shop.db, shop.program
    programs.update_settings(
        db, program=program, changes={"expiry": {"mode": "days", "days": 10}}, now=shop.now
    )
    soon, never = shop.member(), shop.member()
    for points in (30, 70):
        ledger.adjust(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            timezone_name=program.timezone,
            member_id=soon.id,
            points=points,
            issuer="test",
            reason="goodwill",
            now=shop.now,
        )
    db.commit()
    counts = messaging.evaluate_triggers(db, program_id=program.id, now=shop.now)
    db.commit()
    assert counts == {"points_expiring": 1}
    [row] = _messages(db, program.id, "points_expiring")
    assert row.member_id == soon.id and row.member_id != never.id
    assert row.context == {"points": 100, "expires_on": "2025-03-20"}
    # The next day the same lots are still expiring: no second message.
    next_day = shop.now + timedelta(days=1)
    assert messaging.evaluate_triggers(db, program_id=program.id, now=next_day) == {
        "points_expiring": 0
    }
    # Three weeks earlier the lots were outside the 14-day window.
    far = shop.now - timedelta(days=20)
    assert messaging.evaluate_triggers(db, program_id=program.id, now=far) == {"points_expiring": 0}


def _purchase(shop: Shop, member_ref: str, external_id: str, at: datetime) -> None:
    purchases.record_purchase(
        shop.db,
        program=shop.program,
        data={
            "external_id": external_id,
            "member_id": member_ref,
            "occurred_at": at.isoformat(),
            "amount": "10.00",
            "currency": "EUR",
        },
        now=at,
    )


def test_win_back_once_per_lapse(shop: Shop) -> None:
    _only(shop, "win_back")
    lapsed, active, long_gone = shop.member(), shop.member(), shop.member()
    _purchase(shop, lapsed.external_id, "t1", shop.now - timedelta(days=120))
    _purchase(shop, lapsed.external_id, "t2", shop.now - timedelta(days=95))
    _purchase(shop, active.external_id, "t3", shop.now - timedelta(days=95))
    _purchase(shop, active.external_id, "t4", shop.now - timedelta(days=3))
    _purchase(shop, long_gone.external_id, "t5", shop.now - timedelta(days=400))
    shop.db.commit()
    counts = messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=shop.now)
    shop.db.commit()
    assert counts == {"win_back": 1}
    [row] = _messages(shop.db, shop.program.id, "win_back")
    assert row.member_id == lapsed.id
    assert row.context == {"last_purchase_on": "2024-12-05", "days_since": 95}
    later = shop.now + timedelta(days=5)
    assert messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=later) == {
        "win_back": 0
    }


def test_enqueue_is_idempotent_and_checks_its_input(shop: Shop) -> None:
    member = shop.member()
    db, program_id = shop.db, shop.program.id
    context = {"survey": {"name": "NPS", "url": "https://example.com/s/1"}}
    first = messaging.enqueue(
        db,
        program_id=program_id,
        member_id=member.id,
        template="survey_invitation",
        context=context,
        key="survey:1:member",
        now=shop.now,
    )
    again = messaging.enqueue(
        db,
        program_id=program_id,
        member_id=member.id,
        template="survey_invitation",
        context=context,
        key="survey:1:member",
        now=shop.now,
    )
    assert first.id == again.id and not first.transactional
    with pytest.raises(ValidationError) as missing:
        messaging.enqueue(
            db,
            program_id=program_id,
            member_id=member.id,
            template="survey_invitation",
            context={},
            key="survey:2",
            now=shop.now,
        )
    assert missing.value.field == "context.survey"
    with pytest.raises(ValidationError) as unknown:
        messaging.enqueue(
            db,
            program_id=program_id,
            member_id=member.id,
            template="newsletter",
            context={},
            key="x",
            now=shop.now,
        )
    assert unknown.value.field == "template" and "newsletter" in unknown.value.message
    with pytest.raises(NotFound):
        messaging.enqueue(
            db,
            program_id=program_id,
            member_id=10**12,
            template="welcome",
            context={},
            key="y",
            now=shop.now,
        )
    case = messaging.enqueue(
        db,
        program_id=program_id,
        member_id=member.id,
        template="complaint_update",
        context={"case": {"reference": "C-9", "status": "open", "note": ""}},
        key="case:9:open",
        now=shop.now,
    )
    assert case.transactional


def test_reward_within_reach_of_the_cheapest_reward(shop: Shop) -> None:
    rewards = pytest.importorskip("fideliza.rewards.service")
    messaging.set_config(
        shop.db,
        program_id=shop.program.id,
        changes={"triggers": ["reward_within_reach"], "reward_gap_points": 100},
        now=shop.now,
    )
    db, program = shop.db, shop.program
    rewards.create_reward(
        db,
        program=program,
        data={"code": "coffee", "name": "Café", "kind": "gift", "points_cost": 500},
        now=shop.now,
    )
    rewards.create_reward(
        db,
        program=program,
        data={"code": "cake", "name": "Tarta", "kind": "gift", "points_cost": 900},
        now=shop.now,
    )
    close, far, rich = shop.member(), shop.member(), shop.member()
    for member, points in ((close, 450), (far, 300), (rich, 600)):
        ledger.adjust(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            timezone_name=program.timezone,
            member_id=member.id,
            points=points,
            issuer="test",
            reason="goodwill",
            now=shop.now,
        )
    db.commit()
    counts = messaging.evaluate_triggers(db, program_id=program.id, now=shop.now)
    db.commit()
    assert counts == {"reward_within_reach": 1}
    [row] = _messages(db, program.id, "reward_within_reach")
    assert row.member_id == close.id
    assert row.context == {
        "reward": {"code": "coffee", "name": "Café", "points_cost": 500},
        "balance": 450,
        "points_missing": 50,
    }
    assert messaging.evaluate_triggers(db, program_id=program.id, now=shop.now) == {
        "reward_within_reach": 0
    }


def test_win_back_also_finds_repeat_buyers_the_model_thinks_are_gone(shop: Shop) -> None:
    """Regular buyers who went quiet recently (before the 90-day rule would notice) are found by
    their BG/NBD probability of being alive; those still buying, and one-time buyers, are not."""
    _only(shop, "win_back")
    shop.configure(win_back_p_alive_percent=30)
    week = timedelta(days=7)
    regulars = [shop.member() for _ in range(32)]
    gone = [shop.member() for _ in range(8)]
    once = shop.member()
    for index, member in enumerate(regulars):  # every two weeks, up to last week
        for k in range(6):
            at = shop.now - week - 2 * k * week - timedelta(hours=index)
            _purchase(shop, member.external_id, f"r{index}-{k}", at)
    for index, member in enumerate(gone):  # every week for ten weeks, silent for ten
        for k in range(10):
            at = shop.now - 10 * week - k * week - timedelta(hours=index)
            _purchase(shop, member.external_id, f"g{index}-{k}", at)
    _purchase(shop, once.external_id, "o-1", shop.now - 10 * week)
    shop.db.commit()
    counts = messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=shop.now)
    shop.db.commit()
    assert {row.member_id for row in _messages(shop.db, shop.program.id, "win_back")} == {
        member.id for member in gone
    }
    assert counts == {"win_back": 8}
    # Once per lapse, whichever rule finds it later (the 90-day one included); by then some
    # regulars, five weeks without a purchase, may be flagged in turn.
    later = shop.now + 4 * week
    messaging.evaluate_triggers(shop.db, program_id=shop.program.id, now=later)
    shop.db.commit()
    rows = _messages(shop.db, shop.program.id, "win_back")
    assert sorted(row.member_id for row in rows if row.member_id in {m.id for m in gone}) == sorted(
        member.id for member in gone
    )
