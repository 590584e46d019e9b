"""A reward's budget per period: reserved when a redemption is held, given back on release.

Each period has a counter row holding what was spent and a copy of the limits, so a single
conditional UPDATE reserves (concurrent redeemers queue on the row) and the row's CHECK
constraints refuse an overspend even if a check here were wrong.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fideliza.core.errors import InvalidState, ValidationError
from fideliza.rewards.domain import Refusal, Terms, period_key
from fideliza.rewards.models import Redemption, Reward, RewardBudgetSpend
from fideliza.rewards.schemas import RewardCreate


def charge(
    db: Session, *, reward: Reward, terms: Terms, points: int, now: datetime, zone: ZoneInfo
) -> str | None:
    """Reserves this redemption's share of the reward's budget, refused once it would overspend.

    One conditional UPDATE on the period's counter: concurrent redemptions queue on its row, and
    the counter's CHECK constraints refuse an overspend even if this check were wrong.
    """
    if terms.budget_points is None and terms.budget_money is None:
        return None
    key = period_key(terms.budget_period, now, zone)
    _ensure_row(db, reward=reward, key=key)
    money = terms.value or Decimal(0)
    row = RewardBudgetSpend
    charged = db.execute(
        update(row)
        .where(
            row.reward_id == reward.id,
            row.period_key == key,
            or_(row.points_limit.is_(None), row.points_spent + points <= row.points_limit),
            or_(row.money_limit.is_(None), row.money_spent + money <= row.money_limit),
        )
        .values(points_spent=row.points_spent + points, money_spent=row.money_spent + money)
        .execution_options(synchronize_session=False)
    )
    if charged.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidState(
            "the reward's budget is spent", field="reward_id", code=Refusal.BUDGET_SPENT.value
        )
    return key


def _ensure_row(db: Session, *, reward: Reward, key: str) -> None:
    """Creates the period's counter if missing (`INSERT … ON CONFLICT DO NOTHING`)."""
    values = {
        "reward_id": reward.id,
        "period_key": key,
        "points_spent": 0,
        "money_spent": Decimal(0),
        "points_limit": reward.budget_points,
        "money_limit": reward.budget_money,
    }
    statement: Any = (
        postgresql.insert(RewardBudgetSpend)
        if db.get_bind().dialect.name == "postgresql"
        else sqlite.insert(RewardBudgetSpend)
    )
    db.execute(statement.values(values).on_conflict_do_nothing())


def apply_limits(db: Session, *, reward: Reward, payload: RewardCreate) -> None:
    """Applies new budget limits to the counters (refused below what a period already spent)."""
    for spend in db.scalars(
        select(RewardBudgetSpend).where(RewardBudgetSpend.reward_id == reward.id)
    ):
        if payload.budget_points is not None and spend.points_spent > payload.budget_points:
            raise ValidationError(
                f"is below the {spend.points_spent} points already spent in {spend.period_key}",
                field="budget_points",
            )
        if payload.budget_money is not None and spend.money_spent > payload.budget_money:
            raise ValidationError(
                f"is below the {spend.money_spent} already spent in {spend.period_key}",
                field="budget_money",
            )
        spend.points_limit = payload.budget_points
        spend.money_limit = payload.budget_money


def refund(db: Session, *, redemption: Redemption) -> None:
    """Gives a released or expired redemption's share back to the period it was charged to."""
    if redemption.budget_period_key is None:
        return
    row = RewardBudgetSpend
    db.execute(
        update(row)
        .where(
            row.reward_id == redemption.reward_id,
            row.period_key == redemption.budget_period_key,
        )
        .values(
            points_spent=row.points_spent - redemption.points,
            money_spent=row.money_spent - (redemption.value or Decimal(0)),
        )
        .execution_options(synchronize_session=False)
    )
