"""One by one or in one batch, the same purchases earn exactly the same points.

A till sends one purchase at a time (`purchases.service.record_purchase`, a batch of one); a file
import sends thousands at once (`purchases.ingest.ingest_purchases`). The same purchases, in the
same order, recorded both ways in two programs configured alike, must give every purchase the
same points for the same reasons, and every member the same balances, tier, lots and counters:
with caps per transaction/day/month/member, a budget, a multiplier, a first-purchase and a
birthday bonus, a tier ladder with its multiplier, a return window and expiry.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import Lot
from fideliza.members import service as members
from fideliza.members.models import Member, MemberMonth
from fideliza.programs.models import Program
from fideliza.purchases import service as purchases
from fideliza.purchases.domain import PurchaseInput, parse_purchase
from fideliza.purchases.ingest import Outcome, ingest_purchases
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from fideliza.rules.models import Rule
from fideliza.rules.models import RuleUsage as RuleUsageRow
from fideliza.tiers import service as tiers
from fideliza.tiers.models import TierHistory
from tests.factories import make_program

NOW = datetime(2025, 4, 20, 12, 0, tzinfo=UTC)
START = datetime(2025, 2, 20, 0, 0, tzinfo=UTC)  # purchases fall in the 60 days before NOW
SETTINGS = {"return_window_days": 7, "expiry": {"mode": "end_of_month", "months": 2}}
RULES: list[dict[str, Any]] = [
    {
        "name": "1 pt per euro",
        "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
        "caps": {"per_transaction": 40, "per_day": 60},
    },
    {
        "name": "coffee doubles",
        "conditions": {"items": {"include_categories": ["coffee"]}},
        "actions": [{"type": "multiplier", "factor": "2"}],
        "caps": {"per_month": 50},
    },
    {
        "name": "welcome",
        "conditions": {"first_purchase": True},
        "actions": [{"type": "fixed_bonus", "points": 25}],
    },
    {
        "name": "birthday month",
        "conditions": {"birthday": "month"},
        "actions": [{"type": "fixed_bonus", "points": 15}],
        "caps": {"per_member": 30},
    },
    {
        "name": "cake campaign",
        "conditions": {"items": {"include_categories": ["cake"], "min_quantity": 2}},
        "actions": [{"type": "points_per_item", "points": 4}],
        "caps": {"budget": 80},
    },
    {
        "name": "gold coffee",
        "conditions": {"tiers": ["GOLD"], "items": {"include_categories": ["coffee"]}},
        "actions": [{"type": "fixed_bonus", "points": 5}],
    },
]
LADDER = {
    "levels": [
        {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0"},
        {"code": "SILVER", "name": "Silver", "rank": 2, "threshold": "80", "multiplier": "1.5"},
        {"code": "GOLD", "name": "Gold", "rank": 3, "threshold": "200", "multiplier": "2"},
    ],
    "policy": {"basis": "points", "period": "calendar_month"},
}
MEMBERS: list[dict[str, Any]] = [
    {"external_id": "M0", "birthday": "1990-03-14"},
    {"external_id": "M1", "birthday": "1985-04-02"},
    {"external_id": "M2"},
    {"external_id": "M3", "birthday": "2000-02-29", "attributes": {"segment": "staff"}},
]

# (member index, minutes after START, extra cents, coffees, cakes)
Spec = tuple[int, int, int, int, int]
specs = st.lists(
    st.tuples(
        st.integers(0, len(MEMBERS) - 1),
        st.integers(0, 60 * 24 * 60 - 1),
        st.integers(0, 4000),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=24,
)


def purchase_of(number: int, spec: Spec, currency: str) -> PurchaseInput:
    member, minutes, cents, coffees, cakes = spec
    items = []
    if coffees:
        items.append(
            {"sku": "COF", "category": "coffee", "quantity": coffees, "unit_price": "2.50"}
        )
    if cakes:
        items.append({"sku": "CAK", "category": "cake", "quantity": cakes, "unit_price": "4.00"})
    amount = Decimal(cents) / 100 + Decimal("2.50") * coffees + Decimal("4.00") * cakes
    return parse_purchase(
        {
            "external_id": f"T{number:03d}",
            "member_id": MEMBERS[member]["external_id"],
            "occurred_at": (START + timedelta(minutes=minutes)).isoformat(),
            "amount": str(amount),
            "currency": "EUR",
            "channel": "store",
            "store": "S1",
            "items": items,
        },
        program_currency=currency,
    )


def ladder_for(basis: str, period: str) -> dict[str, Any]:
    """LADDER on another basis and period (thresholds in the basis's unit)."""
    silver, gold = {"points": ("80", "200"), "spend": ("60", "150"), "purchases": ("3", "6")}[basis]
    config: dict[str, Any] = {
        "levels": [
            {**LADDER["levels"][0]},
            {**LADDER["levels"][1], "threshold": silver},
            {**LADDER["levels"][2], "threshold": gold},
        ],
        "policy": {"basis": basis, "period": period},
    }
    if period == "rolling_months":
        config["policy"]["months"] = 2
    return config


ladders = st.builds(
    ladder_for,
    st.sampled_from(["points", "spend", "purchases"]),
    st.sampled_from(["calendar_month", "calendar_quarter", "rolling_months"]),
)


def set_up(db: Session, ladder: dict[str, Any] = LADDER) -> Program:
    program = make_program(db, now=START, code=f"eq-{secrets.token_hex(5)}", settings=SETTINGS)
    for definition in RULES:
        rules.create(db, program=program, definition=definition, now=START)
    tiers.configure(db, program=program, config=ladder, now=START)
    members.enrol_many(db, program=program, rows=MEMBERS, now=START)
    db.commit()
    return program


def postings_of(db: Session, program: Program, outcome: Outcome) -> list[tuple[Any, ...]]:
    names = dict(db.execute(select(Rule.id, Rule.name).where(Rule.program_id == program.id)).all())
    return [
        (p.points, names.get(p.rule_id), p.rule_version, p.tier_code, p.reason)
        for p in outcome.postings
    ]


def outcome_view(db: Session, program: Program, outcome: Outcome) -> tuple[Any, ...]:
    change = outcome.tier_change
    return (
        outcome.external_id,
        outcome.points,
        outcome.pending,
        outcome.replayed,
        outcome.transaction_id is not None,
        postings_of(db, program, outcome),
        None if change is None else (change.from_code, change.to_code, change.reason),
    )


def state_of(db: Session, program: Program) -> dict[str, Any]:
    """Everything the purchases left behind, keyed by external ids and rule names."""
    db.expire_all()
    by_member = {m.id: m for m in db.scalars(select(Member).where(Member.program_id == program.id))}
    ext = {member_id: m.external_id for member_id, m in by_member.items()}
    names = dict(db.execute(select(Rule.id, Rule.name).where(Rule.program_id == program.id)).all())
    balances = {
        m.external_id: ledger.balance(db, member_id=member_id) for member_id, m in by_member.items()
    }
    return {
        "members": {
            m.external_id: (m.tier_code, m.tier_since, m.first_purchase_at)
            for m in by_member.values()
        },
        "balances": {k: (b.available, b.pending, b.held) for k, b in balances.items()},
        "purchases": sorted(
            (p.external_id, ext[p.member_id], p.points_earned, p.amount, p.occurred_at)
            for p in db.scalars(select(Purchase).where(Purchase.program_id == program.id))
        ),
        "lots": sorted(
            (
                ext[lot.member_id],
                lot.amount,
                lot.remaining,
                lot.state,
                lot.earned_at,
                lot.available_at,
                lot.expires_at,
            )
            for lot in db.scalars(select(Lot).where(Lot.program_id == program.id))
        ),
        "months": sorted(
            (ext[m.member_id], m.month, m.spend, m.points_earned, m.purchases)
            for m in db.scalars(select(MemberMonth).where(MemberMonth.program_id == program.id))
        ),
        "usage": sorted(
            (names[u.rule_id], ext.get(u.member_id, "everyone"), u.period, u.points)
            for u in db.scalars(select(RuleUsageRow).where(RuleUsageRow.rule_id.in_(list(names))))
        ),
        "tier_history": [
            (ext[h.member_id], h.from_code, h.to_code, h.changed_at, h.reason)
            for h in db.scalars(
                select(TierHistory)
                .where(TierHistory.program_id == program.id)
                .order_by(TierHistory.id)
            )
        ],
    }


def record_both_ways(
    session_factory: sessionmaker[Session], specs_: list[Spec], ladder: dict[str, Any] = LADDER
) -> tuple[list[Any], list[Any], dict[str, Any], dict[str, Any]]:
    with session_factory() as db:
        one_by_one, batched = set_up(db, ladder), set_up(db, ladder)
        wanted = [purchase_of(n, spec, "EUR") for n, spec in enumerate(specs_)]
        singles = []
        for purchase in wanted:  # like a till: one purchase, one transaction
            outcome = purchases.record_purchase(db, program=one_by_one, data=purchase, now=NOW)
            db.commit()
            singles.append(outcome_view(db, one_by_one, outcome))
        result = ingest_purchases(db, program=batched, purchases=wanted, now=NOW)
        db.commit()
        assert result.errors == []
        batch = [outcome_view(db, batched, outcome) for outcome in result.outcomes]
        assert check_ledger(db, program_id=one_by_one.id) == []
        assert check_ledger(db, program_id=batched.id) == []
        return singles, batch, state_of(db, one_by_one), state_of(db, batched)


# Two members' first purchases, caps reached within a day and a month, the cake budget spent
# by several members, birthdays in March and April, tiers climbing to GOLD, out of order.
BUSY: list[Spec] = [
    (0, 22 * 24 * 60, 3000, 2, 0),  # M0, 14 March (her birthday month), coffee
    (0, 22 * 24 * 60 + 30, 4000, 0, 3),  # same day: the day cap of "1 pt per euro"
    (1, 5 * 24 * 60, 1000, 3, 2),
    (1, 45 * 24 * 60, 4000, 3, 3),  # April: M1's birthday month
    (2, 10, 0, 0, 0),  # an empty basket
    (2, 40 * 24 * 60, 4000, 3, 3),
    (0, 23 * 24 * 60, 4000, 3, 3),
    (0, 24 * 24 * 60, 4000, 3, 3),
    (0, 25 * 24 * 60, 4000, 3, 0),
    (3, 59 * 24 * 60, 2500, 1, 2),  # pending: within the return window of NOW
    (0, 2 * 24 * 60, 500, 1, 0),  # earlier than M0's other purchases, recorded after them
    (0, 55 * 24 * 60, 4000, 3, 3),
]


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    # Each example builds two programs: shrinking a failure would take minutes. A failing
    # example (at most 24 purchases) is readable as it is.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(specs_=BUSY, ladder=LADDER)
@example(specs_=BUSY, ladder=ladder_for("purchases", "rolling_months"))
@given(specs_=specs, ladder=ladders)
def test_one_by_one_and_in_one_batch_earn_the_same(
    session_factory: sessionmaker[Session], specs_: list[Spec], ladder: dict[str, Any]
) -> None:
    singles, batch, one_by_one, batched = record_both_ways(session_factory, specs_, ladder)
    assert batch == singles
    assert batched == one_by_one


def test_the_busy_example_exercises_what_it_claims(
    session_factory: sessionmaker[Session],
) -> None:
    singles, _, state, _ = record_both_ways(session_factory, BUSY)
    reasons = " | ".join(reason for view in singles for *_, reason in view[5])
    for cap in ("per_transaction", "per_day", "per_month", "budget"):
        assert f"by the {cap} cap" in reasons
    for rule in ("welcome", "birthday month", "cake campaign", "coffee doubles", "gold coffee"):
        assert f"({rule} v1)" in reasons
    assert "tier SILVER ×1.5" in reasons and "tier GOLD ×2" in reasons
    assert [view[2] for view in singles].count(True) == 2  # T009 and T011 are still pending
    budget = [u for u in state["usage"] if u[0] == "cake campaign" and u[1] == "everyone"]
    assert budget == [("cake campaign", "everyone", "total", 80)]
    birthday = [u for u in state["usage"] if u[:3] == ("birthday month", "M0", "total")]
    assert birthday == [("birthday month", "M0", "total", 30)]  # 4 March purchases, capped
    assert [(m, to) for m, _, to, _, _ in state["tier_history"]] == [
        ("M0", "SILVER"),
        ("M0", "GOLD"),
        ("M1", "SILVER"),
        ("M2", "BRONZE"),
        ("M2", "SILVER"),
        ("M3", "SILVER"),
    ]
    assert state["members"]["M2"][2] == START + timedelta(minutes=10)


def repeated_twice(
    session_factory: sessionmaker[Session],
) -> tuple[list[Outcome], list[Outcome], dict[str, Any], dict[str, Any]]:
    """One purchase sent twice: one by one to a program, in one batch to another."""
    with session_factory() as db:
        one_by_one, batched = set_up(db), set_up(db)
        purchase = purchase_of(1, (0, 60, 1000, 1, 0), "EUR")
        singles = [
            purchases.record_purchase(db, program=one_by_one, data=purchase, now=NOW)
            for _ in range(2)
        ]
        result = ingest_purchases(db, program=batched, purchases=[purchase, purchase], now=NOW)
        db.commit()
        assert result.errors == []
        return singles, result.outcomes, state_of(db, one_by_one), state_of(db, batched)


def test_a_purchase_repeated_in_a_batch_is_recorded_once(
    session_factory: sessionmaker[Session],
) -> None:
    singles, _, one_by_one, batched = repeated_twice(session_factory)
    assert [(o.replayed, o.points) for o in singles] == [(False, 74), (True, 74)]
    assert batched == one_by_one
    assert one_by_one["balances"]["M0"] == (74, 0, 0)
    assert len(batched["purchases"]) == 1


def test_a_purchase_repeated_in_a_batch_replays_as_it_would_one_by_one(
    session_factory: sessionmaker[Session],
) -> None:
    singles, batch, _, _ = repeated_twice(session_factory)
    assert [(o.replayed, o.points) for o in batch] == [(o.replayed, o.points) for o in singles]


def test_a_spend_upgrade_gives_the_same_reason_one_by_one_and_in_a_batch(
    session_factory: sessionmaker[Session],
) -> None:
    spend = ladder_for("spend", "calendar_month")
    with session_factory() as db:
        one_by_one, batched = set_up(db, spend), set_up(db, spend)
        # 26.91 € then 60.88 €: 87.79 € reaches SILVER (60 €) on the second purchase.
        two = [
            purchase_of(n, spec, "EUR")
            for n, spec in enumerate([(0, 0, 691, 0, 5), (0, 3, 4138, 3, 3)])
        ]
        singles = [purchases.record_purchase(db, program=one_by_one, data=p, now=NOW) for p in two]
        batch = ingest_purchases(db, program=batched, purchases=two, now=NOW).outcomes
        db.rollback()
    reasons = [[o.tier_change and o.tier_change.reason for o in way] for way in (singles, batch)]
    assert reasons[1][1] is not None and "qualifying metric 87.79 reached" in reasons[1][1]
    assert reasons[0] == reasons[1]
