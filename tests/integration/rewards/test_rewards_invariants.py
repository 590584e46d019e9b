"""Whatever tills and jobs do, in any order, nothing is created or lost (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fideliza.core.errors import FidelizaError
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.rewards import service as rewards
from fideliza.rewards.models import Redemption, Reward, RewardBudgetSpend
from tests.factories import make_member, make_program
from tests.integration.rewards.builders import fund, make_reward

STOCK = 3
COST = 40
OPEN = ("held", "captured")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("redeem"), st.integers(0, 1)),
        st.tuples(st.just("capture"), st.integers(0, 5)),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("wait"), st.integers(1, 20)),  # minutes; holds live 15
        st.tuples(st.just("expire_ledger"), st.just(0)),
        st.tuples(st.just("expire_rewards"), st.just(0)),
    ),
    max_size=14,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_stock_budget_and_points_always_add_up(db: Session, now: datetime, plan: list) -> None:
    program = make_program(db, now=now, settings={"hold_ttl_minutes": 15})
    people = [make_member(db, program=program, now=now) for _ in range(2)]
    for person in people:
        fund(db, program=program, member=person, points=100, now=now)
    reward = make_reward(db, program=program, now=now, points_cost=COST, stock=STOCK,
                         budget_points=COST * 4)  # fmt: skip
    db.commit()
    clock = now
    made: list[int] = []
    for action, arg in plan:
        try:
            if action == "redeem":
                redemption, _ = rewards.redeem(
                    db, program=program, member_id=people[arg].id, reward_id=reward.id,
                    reference=f"ref-{len(made)}", now=clock,
                )  # fmt: skip
                made.append(redemption.id)
            elif action in ("capture", "release") and arg < len(made):
                settle = rewards.capture if action == "capture" else rewards.release
                settle(db, program=program, redemption_id=made[arg], now=clock)
            elif action == "wait":
                clock += timedelta(minutes=arg)
            elif action == "expire_ledger":
                ledger.expire_holds(db, program_id=program.id, now=clock)
            elif action == "expire_rewards":
                rewards.expire_due(db, program_id=program.id, now=clock)
            db.commit()
        except FidelizaError:
            db.rollback()
    # The jobs run in the order the lead wires them; either order must settle everything.
    ledger.expire_holds(db, program_id=program.id, now=clock + timedelta(days=1))
    rewards.expire_due(db, program_id=program.id, now=clock + timedelta(days=1))
    db.commit()

    open_redemptions = db.scalars(
        select(Redemption).where(Redemption.reward_id == reward.id, Redemption.status.in_(OPEN))
    ).all()
    assert all(r.status == "captured" for r in open_redemptions)
    stock = db.scalar(select(Reward.stock).where(Reward.id == reward.id))
    assert stock == STOCK - len(open_redemptions)
    spent = db.scalar(
        select(func.coalesce(func.sum(RewardBudgetSpend.points_spent), 0)).where(
            RewardBudgetSpend.reward_id == reward.id
        )
    )
    assert spent == COST * len(open_redemptions)
    for person in people:
        balance = ledger.balance(db, member_id=person.id)
        captured = sum(1 for r in open_redemptions if r.member_id == person.id)
        assert (balance.available, balance.held) == (100 - COST * captured, 0)
    assert check_ledger(db, program_id=program.id) == []
