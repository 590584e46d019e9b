"""The loyalty matrix: satisfaction × relationship strength (issue 4, part 5).

Satisfied customers still defect; the matrix shows which ones. Each member is judged at an
`as_of` moment (a date means its local midnight) from what happened in the *observation
window* [as_of − window_days, as_of), then followed for `follow_up_days` after it.

**Who is in the matrix.** Members with at least one purchase before `as_of` and at least one
NPS or CSAT answer in the observation window ('custom' answers do not measure satisfaction).

**Satisfaction.** Each NPS or CSAT answer in the window is a *satisfied* answer when
- NPS (0–10): the score is at least `nps_satisfied_min` (default 9: promoters, 9–10; passives
  are 7–8 and detractors 0–6, both dissatisfied by default — "merely satisfied" customers are
  the ones who defect; set 7 to count passives as satisfied);
- CSAT (1–5): the score is at least `csat_satisfied_min` (default 4: "satisfied" or "very
  satisfied").
A member is *satisfied* when their satisfied answers are at least `satisfied_share` (default
1/2) of their NPS and CSAT answers in the window (compared exactly, in integers).

**Relationship strength.** An index from 0 to 1, the weighted mean of three scores in [0, 1]:
- tenure = min(tenure_days / tenure_full_days, 1), tenure_days the whole days from the
  member's first purchase in the data to `as_of` (default full at 720 days);
- regularity = the share of active buckets: the window is cut into consecutive buckets of
  `bucket_days` (default 30) from its start, [start + k·bucket_days, start + (k+1)·bucket_days),
  and a bucket is active when the member bought in it; regularity = active buckets /
  (window_days / bucket_days) (default 12 buckets of 30 days in a 360-day window). A member who
  buys every month scores 1, one who bought once in the year 1/12, whatever they spent;
- engagement = min(events / engagement_full, 1), events the member's program activity in the
  window: survey answers of any kind, rows of the optional `engagement` table (member_id,
  occurred_at as naive local times like the other tables, kind: redemptions, event
  attendance, …; every kind counts one) and referrals they made (rows of the optional
  `referrals` table with them as referrer_id) (default full at 6 events). The engagement
  table must be on the same backend as the others, or an `ibis.memtable`.
relationship_index = (w_t · tenure + w_r · regularity + w_e · engagement) / (w_t + w_r + w_e)
with the weights `tenure_weight`, `regularity_weight`, `engagement_weight` (default 1 each);
a relationship is *strong* when the index is at least `strong_min` (default 0.5).

**Quadrants.** apostles (satisfied, strong), mercenaries (satisfied, weak), hostages
(dissatisfied, strong), terrorists (dissatisfied, weak).

**Revenue and defection.** revenue = the member's spend in the observation window. A member
*defected* when they made no purchase in the follow-up window [as_of, as_of + follow_up_days)
(default 90 days); the data must reach the end of the follow-up window for this to mean what
it says (a member judged on data that stops at `as_of` has always "defected"). The defection
rate of a group is defected / members; for satisfied customers it is the share who did not buy
again.

Days are whole 24-hour spans from epoch seconds (`periods.elapsed_days`), so every backend
agrees; the scores are float64 computed by the same operations everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from fideliza.analytics.behaviour import ratio
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import elapsed_days, local_timestamp
from fideliza.core.errors import ValidationError

Moment = date | datetime | str

_SHARE_DENOMINATOR_LIMIT = 10_000


# --- helpers ----------------------------------------------------------------------------------


def _decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError(f"must be a number, got {value!r}", field=field)
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValidationError(f"must be a number, got {value!r}", field=field) from None
    if not number.is_finite():
        raise ValidationError(f"must be a finite number, got {value!r}", field=field)
    return number


def _fraction(share: Decimal) -> Fraction:
    """A share as an exact small fraction, so that the comparison stays in integers."""
    return Fraction(share).limit_denominator(_SHARE_DENOMINATOR_LIMIT)


class Quadrant(StrEnum):
    APOSTLES = "apostles"  # satisfied, strong relationship
    MERCENARIES = "mercenaries"  # satisfied, weak relationship
    HOSTAGES = "hostages"  # dissatisfied, strong relationship
    TERRORISTS = "terrorists"  # dissatisfied, weak relationship


@dataclass(frozen=True, slots=True)
class LoyaltyRule:
    """The thresholds and windows of the loyalty matrix (see the module's documentation)."""

    nps_satisfied_min: int = 9
    csat_satisfied_min: int = 4
    satisfied_share: Decimal = Decimal("0.5")
    window_days: int = 360
    bucket_days: int = 30
    follow_up_days: int = 90
    tenure_full_days: int = 720
    engagement_full: int = 6
    tenure_weight: Decimal = Decimal(1)
    regularity_weight: Decimal = Decimal(1)
    engagement_weight: Decimal = Decimal(1)
    strong_min: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        for name, low, high in (
            ("nps_satisfied_min", 0, 10),
            ("csat_satisfied_min", 1, 5),
            ("window_days", 1, None),
            ("bucket_days", 1, None),
            ("follow_up_days", 1, None),
            ("tenure_full_days", 1, None),
            ("engagement_full", 1, None),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"must be a whole number, got {value!r}", field=name)
            if value < low or (high is not None and value > high):
                bound = f"from {low} to {high}" if high is not None else f">= {low}"
                raise ValidationError(f"must be {bound}, got {value}", field=name)
        if self.window_days % self.bucket_days:
            raise ValidationError(
                f"must divide window_days ({self.window_days}) exactly, got {self.bucket_days}",
                field="bucket_days",
            )
        for name in ("satisfied_share", "strong_min"):
            value = _decimal(getattr(self, name), field=name)
            if not 0 <= value <= 1:
                raise ValidationError(f"must be from 0 to 1, got {value}", field=name)
            object.__setattr__(self, name, value)
        weights = []
        for name in ("tenure_weight", "regularity_weight", "engagement_weight"):
            value = _decimal(getattr(self, name), field=name)
            if value < 0:
                raise ValidationError(f"must be >= 0, got {value}", field=name)
            object.__setattr__(self, name, value)
            weights.append(value)
        if sum(weights) == 0:
            raise ValidationError("the weights must not all be 0", field="tenure_weight")

    @property
    def buckets(self) -> int:
        """How many regularity buckets the observation window holds."""
        return self.window_days // self.bucket_days


DEFAULT_LOYALTY_RULE = LoyaltyRule()


def loyalty_members_expr(
    transactions: ir.Table,
    surveys: ir.Table,
    *,
    as_of: Moment,
    engagement: ir.Table | None = None,
    referrals: ir.Table | None = None,
    rule: LoyaltyRule = DEFAULT_LOYALTY_RULE,
    first_purchases: ir.Table | None = None,
) -> ir.Table:
    """One row per member in the matrix: member_id, answers, satisfied_answers, satisfied,
    tenure_days, active_buckets, engagement_events, tenure_score, regularity_score,
    engagement_score, relationship_index, strong, quadrant, revenue, follow_up_purchases,
    defected.

    `first_purchases` (member_id, first_purchase_at: each buyer's first purchase in
    `transactions`, e.g. from `behaviour.buyers_expr`) spares a pass over the transactions.
    """
    moment = local_timestamp(as_of, field="as_of")
    reference = ibis.literal(moment, type="timestamp")
    start = ibis.literal(moment - timedelta(days=rule.window_days), type="timestamp")
    follow_end = ibis.literal(moment + timedelta(days=rule.follow_up_days), type="timestamp")

    # Satisfaction from the NPS and CSAT answers in the window.
    in_window = surveys.filter((surveys.answered_at >= start) & (surveys.answered_at < reference))
    rated = in_window.filter(in_window.kind.isin(["nps", "csat"]))
    good = ((rated.kind == "nps") & (rated.score >= float(rule.nps_satisfied_min))) | (
        (rated.kind == "csat") & (rated.score >= float(rule.csat_satisfied_min))
    )
    answers = rated.group_by("member_id").aggregate(
        answers=rated.count(), satisfied_answers=rated.member_id.count(where=good)
    )

    # Tenure from the whole history before as_of.
    history = transactions.filter(transactions.occurred_at < reference)
    if first_purchases is None:
        firsts = history.group_by("member_id").aggregate(
            first_purchase_at=history.occurred_at.min()
        )
    else:  # a first purchase before as_of is the first purchase before as_of
        known = first_purchases.select("member_id", "first_purchase_at")
        firsts = known.filter(known.first_purchase_at < reference)

    # Revenue and regularity in the window, of the members who answered (the only ones in
    # the matrix: filtering first spares aggregating every buyer's purchases).
    surveyed = answers.select("member_id")
    window = history.filter(history.occurred_at >= start).semi_join(surveyed, "member_id")
    bucket = elapsed_days(window.occurred_at, start) // rule.bucket_days
    window = window.mutate(bucket=bucket)
    spend = window.group_by("member_id").aggregate(
        revenue=window.amount.sum(), active_buckets=window.bucket.nunique()
    )

    # Program engagement in the window.
    events = [
        in_window.select(
            member_id=in_window.member_id.cast("string"),
            at=in_window.answered_at.cast("timestamp"),
        )
    ]
    if engagement is not None:
        events.append(
            engagement.select(
                member_id=engagement.member_id.cast("string"),
                at=engagement.occurred_at.cast("timestamp"),
            )
        )
    if referrals is not None:
        events.append(
            referrals.select(
                member_id=referrals.referrer_id.cast("string"),
                at=referrals.referred_at.cast("timestamp"),
            )
        )
    stream = ibis.union(*events, distinct=False) if len(events) > 1 else events[0]
    stream = stream.filter(
        stream.member_id.notnull() & (stream.at >= start) & (stream.at < reference)
    )
    activity = stream.group_by("member_id").aggregate(engagement_events=stream.count())

    # Purchases in the follow-up window.
    later = transactions.filter(
        (transactions.occurred_at >= reference) & (transactions.occurred_at < follow_end)
    ).semi_join(surveyed, "member_id")
    follow = later.group_by("member_id").aggregate(follow_up_purchases=later.count())

    members = answers.join(firsts, "member_id")
    members = members.left_join(spend, "member_id").drop("member_id_right")
    members = members.left_join(activity, "member_id").drop("member_id_right")
    members = members.left_join(follow, "member_id").drop("member_id_right")

    share = _fraction(rule.satisfied_share)
    satisfied = (
        members.satisfied_answers.cast("int64") * share.denominator
        >= members.answers.cast("int64") * share.numerator
    )
    tenure_days = elapsed_days(reference, members.first_purchase_at)
    active_buckets = members.active_buckets.fill_null(0).cast("int64")
    events_count = members.engagement_events.fill_null(0).cast("int64")
    scored = members.select(
        "member_id",
        answers=members.answers.cast("int64"),
        satisfied_answers=members.satisfied_answers.cast("int64"),
        satisfied=satisfied,
        tenure_days=tenure_days,
        active_buckets=active_buckets,
        engagement_events=events_count,
        tenure_score=ibis.least(tenure_days.cast("float64") / float(rule.tenure_full_days), 1.0),
        regularity_score=active_buckets.cast("float64") / float(rule.buckets),
        engagement_score=ibis.least(
            events_count.cast("float64") / float(rule.engagement_full), 1.0
        ),
        revenue=members.revenue.fill_null(0),
        follow_up_purchases=members.follow_up_purchases.fill_null(0).cast("int64"),
    )
    index = _weighted(scored.tenure_score, scored.regularity_score, scored.engagement_score, rule)
    scored = scored.mutate(relationship_index=index)
    strong = scored.relationship_index >= float(rule.strong_min)
    scored = scored.mutate(strong=strong)
    quadrant = ibis.cases(
        (scored.satisfied & scored.strong, Quadrant.APOSTLES.value),
        (scored.satisfied, Quadrant.MERCENARIES.value),
        (scored.strong, Quadrant.HOSTAGES.value),
        else_=Quadrant.TERRORISTS.value,
    )
    return scored.select(
        "member_id",
        "answers",
        "satisfied_answers",
        "satisfied",
        "tenure_days",
        "active_buckets",
        "engagement_events",
        "tenure_score",
        "regularity_score",
        "engagement_score",
        "relationship_index",
        "strong",
        quadrant=quadrant,
        revenue=scored.revenue,
        follow_up_purchases=scored.follow_up_purchases,
        defected=scored.follow_up_purchases == 0,
    )


def _weighted(
    tenure: ir.FloatingValue,
    regularity: ir.FloatingValue,
    engagement: ir.FloatingValue,
    rule: LoyaltyRule,
) -> ir.FloatingValue:
    """The relationship index: the weighted mean of the three scores."""
    weights = (rule.tenure_weight, rule.regularity_weight, rule.engagement_weight)
    return (
        tenure * float(weights[0]) + regularity * float(weights[1]) + engagement * float(weights[2])
    ) / float(sum(weights))


def _relationship_index(
    tenure_days: ir.IntegerValue,
    active_buckets: ir.IntegerValue,
    engagement_events: ir.IntegerValue,
    rule: LoyaltyRule,
) -> ir.FloatingValue:
    """The index of (sums of) capped tenure days, active buckets and capped events."""
    return _weighted(
        tenure_days.cast("float64") / float(rule.tenure_full_days),
        active_buckets.cast("float64") / float(rule.buckets),
        engagement_events.cast("float64") / float(rule.engagement_full),
        rule,
    )


def loyalty_members(
    transactions: ir.Table,
    surveys: ir.Table,
    *,
    as_of: Moment,
    engagement: ir.Table | None = None,
    referrals: ir.Table | None = None,
    rule: LoyaltyRule = DEFAULT_LOYALTY_RULE,
    output: Output = "pandas",
) -> DataFrame:
    """Each surveyed buyer's satisfaction, relationship index and quadrant, by member_id."""
    expr = loyalty_members_expr(
        transactions,
        surveys,
        as_of=as_of,
        engagement=engagement,
        referrals=referrals,
        rule=rule,
    )
    return to_frame(expr.order_by("member_id"), output)


def loyalty_matrix_expr(
    transactions: ir.Table,
    surveys: ir.Table,
    *,
    as_of: Moment,
    engagement: ir.Table | None = None,
    referrals: ir.Table | None = None,
    rule: LoyaltyRule = DEFAULT_LOYALTY_RULE,
) -> ir.Table:
    """Per quadrant (apostles, mercenaries, hostages, terrorists, in that order): satisfied,
    strong, customers, customer_share, revenue, revenue_share, defected, defection_rate,
    mean_relationship_index. Every quadrant is listed (zeros, and null rates, when empty).
    """
    members = loyalty_members_expr(
        transactions,
        surveys,
        as_of=as_of,
        engagement=engagement,
        referrals=referrals,
        rule=rule,
    )
    return loyalty_matrix_of(members, rule)


def loyalty_matrix_of(members: ir.Table, rule: LoyaltyRule = DEFAULT_LOYALTY_RULE) -> ir.Table:
    """`loyalty_matrix_expr` from `loyalty_members_expr`'s rows (judged with `rule`)."""
    # The mean index from whole-number sums of its parts: a mean of the members' float
    # indexes would depend, in its last digit, on the order the rows are added in.
    counts = members.group_by("quadrant").aggregate(
        customers=members.count(),
        revenue=members.revenue.sum(),
        defected=members.member_id.count(where=members.defected),
        tenure_days=ibis.least(members.tenure_days, rule.tenure_full_days).sum(),
        active_buckets=members.active_buckets.sum(),
        engagement_events=ibis.least(members.engagement_events, rule.engagement_full).sum(),
    )
    counts = counts.mutate(
        mean_relationship_index=_relationship_index(
            counts.tenure_days, counts.active_buckets, counts.engagement_events, rule
        )
        / counts.customers.cast("float64")
    )
    order = ibis.memtable(
        pa.table(
            {
                "quadrant": [q.value for q in Quadrant],
                "satisfied": [True, True, False, False],
                "strong": [True, False, True, False],
                "position": list(range(len(Quadrant))),
            }
        )
    )
    joined = order.left_join(counts, "quadrant")
    customers = joined.customers.fill_null(0).cast("int64")
    defected = joined.defected.fill_null(0).cast("int64")
    revenue = joined.revenue.fill_null(0)
    return (
        joined.select(
            quadrant=joined.quadrant,
            satisfied=joined.satisfied,
            strong=joined.strong,
            customers=customers,
            customer_share=ratio(customers, customers.sum().over(ibis.window())),
            revenue=revenue,
            revenue_share=ratio(revenue, revenue.sum().over(ibis.window())),
            defected=defected,
            defection_rate=ratio(defected, customers),
            mean_relationship_index=joined.mean_relationship_index,
            position=joined.position,
        )
        .order_by("position")
        .drop("position")
    )


def loyalty_matrix(
    transactions: ir.Table,
    surveys: ir.Table,
    *,
    as_of: Moment,
    engagement: ir.Table | None = None,
    referrals: ir.Table | None = None,
    rule: LoyaltyRule = DEFAULT_LOYALTY_RULE,
    output: Output = "pandas",
) -> DataFrame:
    """Count, revenue and defection rate of apostles, mercenaries, hostages and terrorists."""
    expr = loyalty_matrix_expr(
        transactions,
        surveys,
        as_of=as_of,
        engagement=engagement,
        referrals=referrals,
        rule=rule,
    )
    return to_frame(expr, output)


def satisfied_defection_expr(
    transactions: ir.Table,
    surveys: ir.Table,
    *,
    as_of: Moment,
    engagement: ir.Table | None = None,
    referrals: ir.Table | None = None,
    rule: LoyaltyRule = DEFAULT_LOYALTY_RULE,
) -> ir.Table:
    """One row: customers, satisfied_customers, satisfied_share, satisfied_defected,
    satisfied_defection_rate (the share of satisfied customers who did not buy again in the
    follow-up window), dissatisfied_customers, dissatisfied_defected,
    dissatisfied_defection_rate. Rates are null when their group is empty.
    """
    members = loyalty_members_expr(
        transactions,
        surveys,
        as_of=as_of,
        engagement=engagement,
        referrals=referrals,
        rule=rule,
    )
    return satisfied_defection_of(members)


def satisfied_defection_of(members: ir.Table) -> ir.Table:
    """`satisfied_defection_expr` from `loyalty_members_expr`'s rows."""
    totals = members.aggregate(
        customers=members.count(),
        satisfied_customers=members.member_id.count(where=members.satisfied),
        satisfied_defected=members.member_id.count(where=members.satisfied & members.defected),
        dissatisfied_defected=members.member_id.count(where=~members.satisfied & members.defected),
    )
    customers = totals.customers.cast("int64")
    satisfied = totals.satisfied_customers.cast("int64")
    satisfied_defected = totals.satisfied_defected.cast("int64")
    dissatisfied = customers - satisfied
    dissatisfied_defected = totals.dissatisfied_defected.cast("int64")
    return totals.select(
        customers=customers,
        satisfied_customers=satisfied,
        satisfied_share=ratio(satisfied, customers),
        satisfied_defected=satisfied_defected,
        satisfied_defection_rate=ratio(satisfied_defected, satisfied),
        dissatisfied_customers=dissatisfied,
        dissatisfied_defected=dissatisfied_defected,
        dissatisfied_defection_rate=ratio(dissatisfied_defected, dissatisfied),
    )


def satisfied_defection(
    transactions: ir.Table,
    surveys: ir.Table,
    *,
    as_of: Moment,
    engagement: ir.Table | None = None,
    referrals: ir.Table | None = None,
    rule: LoyaltyRule = DEFAULT_LOYALTY_RULE,
    output: Output = "pandas",
) -> DataFrame:
    """The share of satisfied customers who did not buy again (and of dissatisfied ones)."""
    expr = satisfied_defection_expr(
        transactions,
        surveys,
        as_of=as_of,
        engagement=engagement,
        referrals=referrals,
        rule=rule,
    )
    return to_frame(expr, output)
