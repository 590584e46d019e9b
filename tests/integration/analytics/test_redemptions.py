"""Captured reward redemptions feed the reward cost, on SQLite and PostgreSQL alike.

Redemptions go through the rewards service (hold, then capture, release or nothing); only the
captured ones are read, at the local time of their capture, with the reward's kind and value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fideliza import analytics as fa
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.rewards import service as rewards
from tests.factories import make_member, make_program
from tests.integration.rewards.builders import fund, make_reward

pytestmark = pytest.mark.filterwarnings("ignore:The 'future.infer_string' option")

# 23:50 UTC on 31 March is 01:50 on 1 April in Madrid (summer time): April counts.
START = datetime(2025, 3, 31, 23, 50, tzinfo=UTC)


def test_captured_redemptions_come_from_the_database(database_url: str) -> None:
    engine = make_engine(database_url)
    with unit_of_work(make_session_factory(engine)) as db:
        program = make_program(db, now=START, timezone="Europe/Madrid")
        ana = make_member(db, program=program, now=START, external_id=f"ana-{program.id}")
        fund(db, program=program, member=ana, points=2_000, now=START)
        coffee = make_reward(db, program=program, now=START, code="coffee", points_cost=120)
        cash = make_reward(
            db, program=program, now=START, code="cash", kind="cashback", value="5.50",
            points_cost=600,
        )  # fmt: skip

        def redeem(reward: Any, reference: str, at: datetime) -> Any:
            redemption, _ = rewards.redeem(
                db, program=program, member_id=ana.id, reward_id=reward.id,
                reference=reference, now=at,
            )  # fmt: skip
            return redemption

        for number, reward in enumerate((coffee, coffee, cash)):
            redemption = redeem(reward, f"r-{number}", START)
            rewards.capture(
                db, program=program, redemption_id=redemption.id, now=START + timedelta(minutes=1)
            )
        released = redeem(coffee, "r-released", START)
        rewards.release(db, program=program, redemption_id=released.id, now=START)
        redeem(cash, "r-held", START)  # still held: not yet a cost
        code, member = program.code, ana.external_id
    engine.dispose()

    with fa.open_database(database_url, program=code) as data:
        assert data.redemptions is not None
        rows = data.redemptions.to_pandas().sort_values("reward_code")
        cost: Any = fa.reward_cost(data.redemptions, cost_per_point=Decimal("0.01"))
    rows["value"] = rows["value"].astype(object).where(rows["value"].notna(), None)
    assert rows.to_dict("records") == [
        {
            "member_id": member,
            "redeemed_at": datetime(2025, 4, 1, 1, 51),
            "reward_code": "cash",
            "reward_kind": "cashback",
            "points": 600,
            "value": Decimal("5.5"),
        },
        *[
            {
                "member_id": member,
                "redeemed_at": datetime(2025, 4, 1, 1, 51),
                "reward_code": "coffee",
                "reward_kind": "gift",
                "points": 120,
                "value": None,
            }
        ]
        * 2,
    ]
    assert cost[["reward_kind", "redemptions", "points", "cost"]].values.tolist() == [
        ["cashback", 1, 600, Decimal("5.5")],
        ["gift", 2, 240, Decimal("2.4")],  # 240 × 0.01
    ]
    assert cost["period"].tolist() == [datetime(2025, 4, 1)] * 2


def test_a_program_without_captured_redemptions_has_none(database_url: str) -> None:
    engine = make_engine(database_url)
    with unit_of_work(make_session_factory(engine)) as db:
        program = make_program(db, now=START)
        code = program.code
    engine.dispose()
    with fa.open_database(database_url, program=code) as data:
        assert data.redemptions is None
