"""What the rewards cost and what members must do to earn them (issue 4, part 7).

- **Reward cost** (`reward_cost_expr`): per period of `redeemed_at` and reward kind, the
  captured redemptions, the points they spent and their cost in money. A redemption's cost is
  the reward's own money `value` when it has one (cashback, charity: that is what leaves the
  business) and otherwise points × `cost_per_point` (the program's stated cost of a point).
- **Effort vs reward** (`effort_vs_reward_expr`): per tier, how much members spend for each
  unit of reward value they earn. See the function for the formula.

Money columns are decimal(18, 4) and exact; ratios are float64 (null when undefined).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import ibis
import ibis.expr.types as ir

from fideliza.analytics.behaviour import ratio
from fideliza.analytics.economics import MONEY, _cost, _money
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import Period, as_period, period_start, within

# The ledger transactions whose entries are points earned through spend: earning, and its
# reversal when the purchase is returned (spend is net of returns too).
EARNING_KINDS = ("earn", "reverse")


def reward_cost_expr(
    redemptions: ir.Table,
    *,
    cost_per_point: Decimal,
    period: Period | str = Period.MONTH,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
) -> ir.Table:
    """Per period (its start) and reward_kind (null last): redemptions (int64), points (int64),
    valued (int64: redemptions priced at the reward's own value), points_cost = points of the
    others × cost_per_point, value_cost = Σ value, and cost = points_cost + value_cost (all
    decimal(18, 4)). Only redemptions with start <= redeemed_at < end count."""
    cost = _cost(cost_per_point)
    unit = as_period(period)
    rows = within(redemptions, start=start, end=end, column="redeemed_at")
    has_value = rows.value.notnull()
    rows = rows.mutate(
        period=period_start(rows.redeemed_at, unit),
        valued=ibis.ifelse(has_value, 1, 0),
        priced_points=ibis.ifelse(has_value, 0, rows.points).cast("int64"),
        own_value=rows.value.fill_null(0).cast(MONEY),
    )
    totals = rows.group_by("period", "reward_kind").aggregate(
        redemptions=rows.count(),
        points=rows.points.sum(),
        valued=rows.valued.sum(),
        priced_points=rows.priced_points.sum(),
        value_cost=rows.own_value.sum(),
    )
    points_cost = _money(totals.priced_points.cast("int64"), cost)
    value_cost = totals.value_cost.cast(MONEY)
    return totals.select(
        "period",
        "reward_kind",
        redemptions=totals.redemptions.cast("int64"),
        points=totals.points.cast("int64"),
        valued=totals.valued.cast("int64"),
        points_cost=points_cost,
        value_cost=value_cost,
        cost=(points_cost + value_cost).cast(MONEY),
    ).order_by("period", ibis._.reward_kind.isnull(), "reward_kind")


def reward_cost(
    redemptions: ir.Table,
    *,
    cost_per_point: Decimal,
    period: Period | str = Period.MONTH,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    output: Output = "pandas",
) -> DataFrame:
    """What captured redemptions cost, per period and reward kind (see `reward_cost_expr`)."""
    expr = reward_cost_expr(
        redemptions, cost_per_point=cost_per_point, period=period, start=start, end=end
    )
    return to_frame(expr, output)


def effort_vs_reward_expr(
    transactions: ir.Table,
    entries: ir.Table,
    *,
    cost_per_point: Decimal,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
) -> ir.Table:
    """Per tier (the member's current tier from `entries`; null last, also for members with
    no ledger entries), over [start, end) of the transactions' occurred_at and the entries'
    occurred_at:

    - members (int64): those who bought or earned in the window;
    - spend (decimal(18, 4)) = Σ transaction amounts;
    - points_earned (int64) = Σ points of the entries of the earning kinds (`EARNING_KINDS`:
      earn, less the reversals of returned purchases);
    - reward_value (decimal(18, 4)) = points_earned × cost_per_point;
    - spend_per_reward_unit (float64) = spend ÷ reward_value: what a member of the tier spends
      to earn one unit of money of reward (100 = a 1 % return); null when nothing was earned
      or points cost nothing;
    - points_per_currency_unit (float64) = points_earned ÷ spend; null without spend.
    """
    cost = _cost(cost_per_point)
    tiers = entries.group_by("member_id").aggregate(tier=entries.tier.max())
    bought = within(transactions, start=start, end=end)
    # Cast: the id is varchar(100) in PostgreSQL's purchases view, text in the ledger's.
    spend = bought.select(
        member_id=bought.member_id.cast("string"),
        spend=bought.amount.cast(MONEY),
        points_earned=ibis.literal(0, "int64"),
    )
    ledger = within(entries, start=start, end=end)
    earning = ledger.filter(ledger.transaction_kind.isin(EARNING_KINDS))
    earned = earning.select(
        member_id=earning.member_id.cast("string"),
        spend=ibis.literal(Decimal(0), MONEY),
        points_earned=earning.points.cast("int64"),
    )
    both = spend.union(earned)
    members = both.group_by("member_id").aggregate(
        spend=both.spend.sum().cast(MONEY), points_earned=both.points_earned.sum().cast("int64")
    )
    placed = members.left_join(tiers, members.member_id == tiers.member_id).select(
        members.member_id, members.spend, members.points_earned, tiers.tier
    )
    totals = placed.group_by("tier").aggregate(
        members=placed.count(),
        spend=placed.spend.sum().cast(MONEY),
        points_earned=placed.points_earned.sum().cast("int64"),
    )
    value = _money(totals.points_earned, cost)
    return totals.select(
        "tier",
        members=totals.members.cast("int64"),
        spend=totals.spend,
        points_earned=totals.points_earned,
        reward_value=value,
        spend_per_reward_unit=ratio(totals.spend, value),
        points_per_currency_unit=ratio(totals.points_earned, totals.spend),
    ).order_by(ibis._.tier.isnull(), "tier")


def effort_vs_reward(
    transactions: ir.Table,
    entries: ir.Table,
    *,
    cost_per_point: Decimal,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    output: Output = "pandas",
) -> DataFrame:
    """Spend needed per unit of reward value, per tier (see `effort_vs_reward_expr`)."""
    expr = effort_vs_reward_expr(
        transactions, entries, cost_per_point=cost_per_point, start=start, end=end
    )
    return to_frame(expr, output)
