"""How many new customers come through referrals, per period (issue 4, part 6).

A *new customer* of period p is a member whose first purchase in the transactions falls in p.
They were *acquired through a referral* when the referrals table names them as the referred
member with a `referred_at` at or before that first purchase (a referral recorded after they
had already bought did not bring them). A member referred several times counts once, by their
earliest referral; self-referrals (referrer_id = member_id) are ignored. Referred members who
never bought are not new customers and do not count.
"""

from __future__ import annotations

import ibis.expr.types as ir

from fideliza.analytics.behaviour import ratio
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import Period, as_period, period_spine, period_start


def referral_acquisition_expr(
    transactions: ir.Table, referrals: ir.Table, *, period: Period | str = "month"
) -> ir.Table:
    """Per period: new_customers, referred_new_customers, referral_share.

    referral_share = referred_new_customers / new_customers (null in a period without new
    customers). Every period from the first to the last first purchase is listed.
    """
    firsts = transactions.group_by("member_id").aggregate(
        first_purchase_at=transactions.occurred_at.min()
    )
    return referral_acquisition_of(firsts, referrals, period=period)


def referral_acquisition_of(
    firsts: ir.Table, referrals: ir.Table, *, period: Period | str = "month"
) -> ir.Table:
    """`referral_acquisition_expr` from each buyer's first purchase (member_id,
    first_purchase_at, e.g. from `behaviour.buyers_expr`)."""
    unit = as_period(period)
    firsts = firsts.select("member_id", "first_purchase_at")
    valid = referrals.filter(
        referrals.referrer_id.isnull() | (referrals.referrer_id != referrals.member_id)
    )
    earliest = valid.group_by("member_id").aggregate(referred_at=valid.referred_at.min())
    joined = firsts.left_join(earliest, "member_id")
    acquired = joined.select(
        period=period_start(joined.first_purchase_at, unit),
        referred=joined.referred_at.notnull() & (joined.referred_at <= joined.first_purchase_at),
    )
    counts = acquired.group_by("period").aggregate(
        new_customers=acquired.count(),
        referred_new_customers=acquired.period.count(where=acquired.referred),
    )
    spine = period_spine(counts, unit)
    table = spine.left_join(counts, "period")
    new = table.new_customers.fill_null(0).cast("int64")
    referred = table.referred_new_customers.fill_null(0).cast("int64")
    return table.select(
        period=table.period.date(),
        new_customers=new,
        referred_new_customers=referred,
        referral_share=ratio(referred, new),
    ).order_by("period")


def referral_acquisition(
    transactions: ir.Table,
    referrals: ir.Table,
    *,
    period: Period | str = "month",
    output: Output = "pandas",
) -> DataFrame:
    """The share of new customers acquired through referrals, per period."""
    return to_frame(referral_acquisition_expr(transactions, referrals, period=period), output)
