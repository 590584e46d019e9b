"""Campaign budgets per period: spent in one conditional UPDATE, backed by CHECKs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fideliza.coupons.domain import BudgetPeriod, period_start
from fideliza.coupons.errors import BudgetExhausted
from fideliza.coupons.models import CouponBudgetUsage, CouponCampaign
from fideliza.programs import service as programs


@dataclass(frozen=True, slots=True)
class BudgetState:
    """What a campaign spent in the current period, against its budget."""

    period_start: date
    points_spent: int
    money_spent: Decimal
    points_budget: int | None
    money_budget: Decimal | None

    @property
    def exhausted(self) -> bool:
        return (self.points_budget is not None and self.points_spent >= self.points_budget) or (
            self.money_budget is not None and self.money_spent >= self.money_budget
        )


def state(db: Session, *, campaign: CouponCampaign, now: datetime) -> BudgetState:
    """The campaign's spending in the period containing `now`."""
    start = period_start_of(db, campaign, now)
    row = db.get(CouponBudgetUsage, (campaign.id, start))
    return BudgetState(
        period_start=start,
        points_spent=row.points_spent if row else 0,
        money_spent=row.money_spent if row else Decimal(0),
        points_budget=campaign.budget_points,
        money_budget=campaign.budget_money,
    )


def period_start_of(db: Session, campaign: CouponCampaign, now: datetime) -> date:
    program = programs.get(db, program_id=campaign.program_id)
    return period_start(BudgetPeriod(campaign.budget_period), now, program.timezone)


def spend(
    db: Session,
    *,
    campaign: CouponCampaign,
    now: datetime,
    points: int = 0,
    money: Decimal = Decimal(0),
) -> date | None:
    """Adds to the period's spending in one conditional UPDATE; raises if it would overspend."""
    if campaign.budget_points is None and campaign.budget_money is None:
        return None
    start = period_start_of(db, campaign, now)
    open_period(db, campaign=campaign, start=start)
    usage = CouponBudgetUsage
    fits = [usage.campaign_id == campaign.id, usage.period_start == start]
    if campaign.budget_points is not None:
        fits.append(usage.points_spent + points <= usage.points_budget)
    if campaign.budget_money is not None:
        # "Once spent, the campaign stops issuing": nothing more once the money is gone.
        fits.append(usage.money_spent + money <= usage.money_budget)
        fits.append(usage.money_spent < usage.money_budget)
    result = db.execute(
        update(usage)
        .where(*fits)
        .values(points_spent=usage.points_spent + points, money_spent=usage.money_spent + money)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise BudgetExhausted(
            f"campaign {campaign.code!r} has spent its {campaign.budget_period} budget",
            field="campaign",
        )
    return start


def open_period(db: Session, *, campaign: CouponCampaign, start: date) -> None:
    """Creates the period's counter row if missing (concurrent openers do not collide)."""
    postgres = db.get_bind().dialect.name == "postgresql"
    statement: Any = (postgresql.insert if postgres else sqlite.insert)(CouponBudgetUsage)
    db.execute(
        statement.values(
            campaign_id=campaign.id,
            period_start=start,
            points_spent=0,
            money_spent=Decimal(0),
            points_budget=campaign.budget_points,
            money_budget=campaign.budget_money,
        ).on_conflict_do_nothing(index_elements=["campaign_id", "period_start"])
    )


def refund(db: Session, *, campaign: CouponCampaign, start: date | None, money: Decimal) -> None:
    if start is None or not money:
        return
    usage = CouponBudgetUsage
    db.execute(
        update(usage)
        .where(
            usage.campaign_id == campaign.id,
            usage.period_start == start,
            usage.money_spent >= money,
        )
        .values(money_spent=usage.money_spent - money)
        .execution_options(synchronize_session=False)
    )
