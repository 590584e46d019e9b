"""Heavy, medium and low users and how they move (part 2); RFM scores and segments (part 3).

Ties are never split: two buyers with the same measure always get the same group or score, so
no result depends on row order or on member ids. Ranks count the buyers strictly better (for
groups) or strictly worse (for RFM scores) than a buyer, computed with `rank()` on the backend,
and compared in integers, so DuckDB, PostgreSQL and Spark agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
import polars as pl
import pyarrow as pa

from fideliza.analytics.behaviour import ratio
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.periods import elapsed_days, local_timestamp, within
from fideliza.core.errors import ValidationError

Window = tuple[date | datetime | str, date | datetime | str]

# --- heavy / medium / low users ---------------------------------------------------------------


class UsageGroup(StrEnum):
    HEAVY = "heavy"
    MEDIUM = "medium"
    LOW = "low"


class UsageMeasure(StrEnum):
    SPEND = "spend"  # the sum of the amounts in the window
    FREQUENCY = "frequency"  # the number of purchases in the window


# Rows and columns of the migration matrix: a member not yet a buyer at the end of the first
# window is "new"; a buyer with no purchase in a window is "inactive" there.
MIGRATION_FROM = ("heavy", "medium", "low", "new", "inactive")
MIGRATION_TO = ("heavy", "medium", "low", "inactive")

_SHARE_DENOMINATOR_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class UsageRule:
    """How the buyers of a window are split into heavy, medium and low users.

    - `quantiles`: heavy are the top `heavy` share of buyers by the measure, medium the next
      `medium` share, low the rest. A buyer is heavy when fewer than heavy × n buyers have a
      strictly larger measure, medium when fewer than (heavy + medium) × n do (n = the
      window's buyers); so a tie straddling a boundary goes whole to the higher group.
    - `thresholds`: heavy when the measure is at least `heavy`, medium when at least
      `medium`, low otherwise.

    Build one with `UsageRule.quantiles(...)` or `UsageRule.thresholds(...)`.
    """

    measure: UsageMeasure = UsageMeasure.SPEND
    method: Literal["quantiles", "thresholds"] = "quantiles"
    heavy: Decimal = Decimal("0.2")
    medium: Decimal = Decimal("0.3")

    def __post_init__(self) -> None:
        if self.measure not in tuple(UsageMeasure):
            raise ValidationError(
                f"must be 'spend' or 'frequency', got {self.measure!r}", field="measure"
            )
        heavy, medium = self.heavy, self.medium
        if self.method == "quantiles":
            if not 0 < heavy <= 1:
                raise ValidationError(f"must be in (0, 1], got {heavy}", field="heavy_share")
            if medium < 0 or heavy + medium > 1:
                raise ValidationError(
                    f"must be >= 0 with heavy_share + medium_share <= 1, got {medium}",
                    field="medium_share",
                )
        elif self.method == "thresholds":
            if medium < 0 or heavy < medium:
                raise ValidationError(
                    f"must satisfy 0 <= medium_min <= heavy_min, got {medium} and {heavy}",
                    field="medium_min",
                )
            if self.measure == UsageMeasure.FREQUENCY and (
                heavy != heavy.to_integral_value() or medium != medium.to_integral_value()
            ):
                raise ValidationError(
                    "must be whole numbers of purchases for the frequency measure",
                    field="heavy_min",
                )
        else:
            raise ValidationError(
                f"must be 'quantiles' or 'thresholds', got {self.method!r}", field="method"
            )

    @classmethod
    def quantiles(
        cls,
        *,
        measure: UsageMeasure | str = UsageMeasure.SPEND,
        heavy_share: float | Decimal | str = Decimal("0.2"),
        medium_share: float | Decimal | str = Decimal("0.3"),
    ) -> UsageRule:
        """Heavy = top `heavy_share` of buyers, medium = the next `medium_share`, low = rest."""
        heavy = _decimal(heavy_share, field="heavy_share")
        medium = _decimal(medium_share, field="medium_share")
        return cls(_measure(measure), "quantiles", heavy, medium)

    @classmethod
    def thresholds(
        cls,
        *,
        measure: UsageMeasure | str = UsageMeasure.SPEND,
        heavy_min: float | Decimal | str | int,
        medium_min: float | Decimal | str | int,
    ) -> UsageRule:
        """Heavy when the measure >= `heavy_min`, medium when >= `medium_min`, else low."""
        heavy = _decimal(heavy_min, field="heavy_min")
        medium = _decimal(medium_min, field="medium_min")
        return cls(_measure(measure), "thresholds", heavy, medium)


DEFAULT_USAGE_RULE = UsageRule()


def customer_usage_expr(
    transactions: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    rule: UsageRule = DEFAULT_USAGE_RULE,
) -> ir.Table:
    """One row per buyer of [start, end): member_id, transactions, spend, usage_group."""
    rows = within(transactions, start=start, end=end)
    buyers = rows.group_by("member_id").aggregate(
        transactions=rows.count(), spend=rows.amount.sum()
    )
    measure = buyers.spend if rule.measure == UsageMeasure.SPEND else buyers.transactions
    if rule.method == "thresholds":
        kind = "decimal(18, 4)" if rule.measure == UsageMeasure.SPEND else "int64"
        heavy_min = ibis.literal(rule.heavy if kind != "int64" else int(rule.heavy), type=kind)
        medium_min = ibis.literal(rule.medium if kind != "int64" else int(rule.medium), type=kind)
        group = ibis.cases(
            (measure >= heavy_min, UsageGroup.HEAVY.value),
            (measure >= medium_min, UsageGroup.MEDIUM.value),
            else_=UsageGroup.LOW.value,
        )
        return buyers.mutate(usage_group=group)
    better = ibis.rank().over(ibis.window(order_by=measure.desc()))  # buyers strictly above
    counted = buyers.mutate(better=better.cast("int64"), n=buyers.count().over(ibis.window()))
    heavy = _fraction(rule.heavy)
    upper = _fraction(rule.heavy + rule.medium)
    group = ibis.cases(
        (counted.better * heavy.denominator < counted.n * heavy.numerator, "heavy"),
        (counted.better * upper.denominator < counted.n * upper.numerator, "medium"),
        else_="low",
    )
    return counted.select("member_id", "transactions", "spend", usage_group=group)


def customer_usage(
    transactions: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    rule: UsageRule = DEFAULT_USAGE_RULE,
    output: Output = "pandas",
) -> DataFrame:
    """Each buyer's usage group in [start, end)."""
    expr = customer_usage_expr(transactions, start=start, end=end, rule=rule)
    return to_frame(expr.order_by("member_id"), output)


def usage_groups_expr(
    transactions: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    rule: UsageRule = DEFAULT_USAGE_RULE,
) -> ir.Table:
    """Per group (heavy, medium, low, in that order): customers, customer_share, transactions,
    revenue, revenue_share, measure_min, measure_max (the group's range of the measure).
    """
    members = customer_usage_expr(transactions, start=start, end=end, rule=rule)
    measure = members.spend if rule.measure == UsageMeasure.SPEND else members.transactions
    counts = members.group_by("usage_group").aggregate(
        customers=members.count(),
        transactions=members.transactions.sum(),
        revenue=members.spend.sum(),
        measure_min=measure.min(),
        measure_max=measure.max(),
    )
    order = _constant_table(
        {"usage_group": [g.value for g in UsageGroup], "position": list(range(len(UsageGroup)))}
    )
    joined = order.left_join(counts, "usage_group")
    customers = joined.customers.fill_null(0).cast("int64")
    everyone = customers.sum().over(ibis.window())
    revenue = joined.revenue.fill_null(0)
    return (
        joined.select(
            usage_group=joined.usage_group,
            customers=customers,
            customer_share=ratio(customers, everyone),
            transactions=joined.transactions.fill_null(0).cast("int64"),
            revenue=revenue,
            revenue_share=ratio(revenue, revenue.sum().over(ibis.window())),
            measure_min=joined.measure_min,
            measure_max=joined.measure_max,
            position=joined.position,
        )
        .order_by("position")
        .drop("position")
    )


def usage_groups(
    transactions: ir.Table,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    rule: UsageRule = DEFAULT_USAGE_RULE,
    output: Output = "pandas",
) -> DataFrame:
    """Heavy, medium and low users of [start, end): count and share of revenue per group."""
    return to_frame(usage_groups_expr(transactions, start=start, end=end, rule=rule), output)


def usage_migration_expr(
    transactions: ir.Table,
    *,
    before: Window,
    after: Window,
    rule: UsageRule = DEFAULT_USAGE_RULE,
) -> ir.Table:
    """How members move between usage groups from the window `before` to the window `after`.

    Groups are computed in each window separately (with `rule`). Rows (`from_group`): the
    group in `before`; "new" for a member whose first purchase in the data is on or after the
    end of `before`; "inactive" for an earlier buyer with no purchase in `before`. Columns
    (`to_group`): the group in `after`, or "inactive". Members who bought in neither window
    are left out. All 5 × 4 cells are listed (zeros included) with `customers` and
    `from_share` (the cell's share of its row; null for an empty row).
    """
    before_start, before_end = _window(before, field="before")
    after_start, after_end = _window(after, field="after")
    if after_start < before_end:
        raise ValidationError("must start at or after the end of before", field="after")
    first = customer_usage_expr(transactions, start=before_start, end=before_end, rule=rule)
    second = customer_usage_expr(transactions, start=after_start, end=after_end, rule=rule)
    first = first.select("member_id", from_group=first.usage_group)
    second = second.select("member_id", to_group=second.usage_group)
    both = first.outer_join(second, "member_id")
    both = both.select(
        member_id=ibis.coalesce(both.member_id, both.member_id_right),
        from_group=both.from_group,
        to_group=both.to_group,
    )
    starts = transactions.group_by("member_id").aggregate(
        first_purchase_at=transactions.occurred_at.min()
    )
    # A view ends the outer join's chain: Ibis would otherwise extend it, and the coalesced
    # member_id is no column of its tables.
    both = both.view()
    tagged = both.left_join(starts, "member_id")
    boundary = ibis.literal(before_end, type="timestamp")
    from_group = ibis.coalesce(
        tagged.from_group,
        ibis.ifelse(tagged.first_purchase_at >= boundary, "new", "inactive"),
    )
    moves = tagged.select(from_group=from_group, to_group=tagged.to_group.fill_null("inactive"))
    counts = moves.group_by(["from_group", "to_group"]).aggregate(customers=moves.count())
    cells = _constant_table(
        {
            "from_group": [f for f in MIGRATION_FROM for _ in MIGRATION_TO],
            "to_group": [t for _ in MIGRATION_FROM for t in MIGRATION_TO],
            "position": list(range(len(MIGRATION_FROM) * len(MIGRATION_TO))),
        }
    )
    joined = cells.left_join(counts, ["from_group", "to_group"])
    customers = joined.customers.fill_null(0).cast("int64")
    row_total = customers.sum().over(ibis.window(group_by=joined.from_group))
    return (
        joined.select(
            from_group=joined.from_group,
            to_group=joined.to_group,
            customers=customers,
            from_share=ratio(customers, row_total),
            position=joined.position,
        )
        .order_by("position")
        .drop("position")
    )


def usage_migration(
    transactions: ir.Table,
    *,
    before: Window,
    after: Window,
    rule: UsageRule = DEFAULT_USAGE_RULE,
    wide: bool = False,
    output: Output = "pandas",
) -> DataFrame:
    """The migration matrix between two windows: long form, or `wide=True` for the matrix
    (one row per from_group, one column of member counts per to_group)."""
    long = to_frame(
        usage_migration_expr(transactions, before=before, after=after, rule=rule), output
    )
    if not wide:
        return long
    if isinstance(long, pl.DataFrame):
        return long.pivot(on="to_group", index="from_group", values="customers")
    matrix = long.pivot(index="from_group", columns="to_group", values="customers")
    matrix = matrix.reindex(index=list(MIGRATION_FROM), columns=list(MIGRATION_TO))
    matrix.columns.name = None
    return pd.DataFrame(matrix)


# --- RFM --------------------------------------------------------------------------------------


class RfmSegment(StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW = "new"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE_THEM = "cant_lose_them"
    HIBERNATING = "hibernating"
    LOST = "lost"
    OTHER = "other"  # matched by no rule (never, with the default rules)


@dataclass(frozen=True, slots=True)
class RfmRule:
    """A segment for the buyers whose R score and FM score fall in these inclusive ranges."""

    segment: str
    recency: tuple[int, int]
    frequency_monetary: tuple[int, int]

    def __post_init__(self) -> None:
        if not self.segment.strip():
            raise ValidationError("must name a segment", field="segment")
        for field, (low, high) in (
            ("recency", self.recency),
            ("frequency_monetary", self.frequency_monetary),
        ):
            if not 1 <= low <= high <= 5:
                raise ValidationError(
                    f"must be 1 <= low <= high <= 5, got {low}..{high}", field=field
                )


# The R × FM grid, every cell covered exactly once (first matching rule wins anyway):
#
#          FM=1            FM=2             FM=3             FM=4        FM=5
#   R=5    new             potential loy.   potential loy.   champions   champions
#   R=4    promising       potential loy.   potential loy.   loyal       loyal
#   R=3    about to sleep  about to sleep   need attention   loyal       loyal
#   R=2    hibernating     hibernating      at risk          at risk     can't lose them
#   R=1    lost            lost             at risk          at risk     can't lose them
DEFAULT_RFM_RULES: tuple[RfmRule, ...] = (
    RfmRule(RfmSegment.CHAMPIONS, (5, 5), (4, 5)),
    RfmRule(RfmSegment.LOYAL, (3, 4), (4, 5)),
    RfmRule(RfmSegment.POTENTIAL_LOYALISTS, (4, 5), (2, 3)),
    RfmRule(RfmSegment.NEW, (5, 5), (1, 1)),
    RfmRule(RfmSegment.PROMISING, (4, 4), (1, 1)),
    RfmRule(RfmSegment.NEED_ATTENTION, (3, 3), (3, 3)),
    RfmRule(RfmSegment.ABOUT_TO_SLEEP, (3, 3), (1, 2)),
    RfmRule(RfmSegment.CANT_LOSE_THEM, (1, 2), (5, 5)),
    RfmRule(RfmSegment.AT_RISK, (1, 2), (3, 4)),
    RfmRule(RfmSegment.HIBERNATING, (2, 2), (1, 2)),
    RfmRule(RfmSegment.LOST, (1, 1), (1, 2)),
)

Monetary = Literal["total", "average"]


def _score(worse: ir.IntegerValue, n: ir.IntegerValue) -> ir.IntegerValue:
    """1 + ⌊5 · worse / n⌋: the quintile of a buyer with `worse` buyers strictly below."""
    return (1 + (worse * 5) // n).cast("int64")


def rfm_expr(
    transactions: ir.Table,
    *,
    as_of: date | datetime | str,
    monetary: Monetary = "total",
    rules: Sequence[RfmRule] = DEFAULT_RFM_RULES,
) -> ir.Table:
    """Per buyer before `as_of`: recency, frequency, monetary value, their 1–5 scores, segment.

    Only purchases before `as_of` (a date means its midnight, local time) count.
    - recency_days: whole days from the last purchase to `as_of`; frequency: purchases;
      spend: their total; monetary: `spend` (monetary="total") or spend / frequency ("average",
      a float64).
    - Scores are quintiles of the buyers with ties never split: score = 1 + ⌊5·w / n⌋, where n
      is the number of buyers and w the number with a strictly worse value (a longer recency,
      fewer purchases, less money). So equal values always score the same, the best scores 5
      (when n >= 5) and the worst 1; with many ties some scores stay unused (e.g. when most
      buyers bought once, all of them get F = 1, and F jumps to 4 for two purchases).
    - fm_score = ⌊(F + M) / 2⌋; rfm_code = "RFM" as digits (e.g. "545").
    - segment: the first of `rules` whose R range holds r_score and whose FM range holds
      fm_score ("other" if none; the default rules cover every cell, see DEFAULT_RFM_RULES).
    """
    _check_rfm_options(monetary, rules)
    moment = local_timestamp(as_of, field="as_of")
    reference = ibis.literal(moment, type="timestamp")
    rows = transactions.filter(transactions.occurred_at < reference)
    buyers = rows.group_by("member_id").aggregate(
        last_purchase_at=rows.occurred_at.max(),
        frequency=rows.count(),
        spend=rows.amount.sum(),
    )
    return rfm_of(buyers, as_of=moment, monetary=monetary, rules=rules)


def rfm_of(
    buyers: ir.Table,
    *,
    as_of: date | datetime | str,
    monetary: Monetary = "total",
    rules: Sequence[RfmRule] = DEFAULT_RFM_RULES,
) -> ir.Table:
    """`rfm_expr` from one row per buyer before `as_of`: member_id, last_purchase_at,
    frequency (purchases) and spend."""
    _check_rfm_options(monetary, rules)
    reference = ibis.literal(local_timestamp(as_of, field="as_of"), type="timestamp")
    value = (
        buyers.spend
        if monetary == "total"
        else buyers.spend.cast("float64") / buyers.frequency.cast("float64")
    )
    buyers = buyers.mutate(
        recency_days=elapsed_days(reference, buyers.last_purchase_at), monetary=value
    )
    # Recency and frequency take few values: the buyers worse than each value are counted
    # per value, so only the monetary ranks sort every buyer.
    buyers = _with_worse(buyers, "recency_days", "worse_recency", larger_is_worse=True)
    buyers = _with_worse(buyers, "frequency", "worse_frequency", larger_is_worse=False)
    everyone = ibis.window()
    n = buyers.count().over(everyone)
    scored = buyers.mutate(
        r_score=_score(buyers.worse_recency, n),
        f_score=_score(buyers.worse_frequency, n),
        m_score=_score(ibis.rank().over(order_by=buyers.monetary.asc()).cast("int64"), n),
    )
    fm = ((scored.f_score + scored.m_score) // 2).cast("int64")
    scored = scored.mutate(fm_score=fm)
    segment = ibis.cases(
        *[
            (
                scored.r_score.between(*rule.recency)
                & scored.fm_score.between(*rule.frequency_monetary),
                str(rule.segment),
            )
            for rule in rules
        ],
        else_=RfmSegment.OTHER.value,
    )
    code = (
        scored.r_score.cast("string")
        .concat(scored.f_score.cast("string"))
        .concat(scored.m_score.cast("string"))
    )
    return scored.select(
        "member_id",
        "last_purchase_at",
        "recency_days",
        "frequency",
        "spend",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "fm_score",
        rfm_code=code,
        segment=segment,
    )


def _with_worse(buyers: ir.Table, column: str, name: str, *, larger_is_worse: bool) -> ir.Table:
    """Adds `name`: how many buyers have a strictly worse `column` (what `rank()` counts)."""
    counts = buyers.group_by(column).aggregate(buyers_with=buyers.count())
    value = counts[column]
    before = ibis.window(order_by=value.desc() if larger_is_worse else value.asc(), rows=(None, -1))
    worse = counts.select(column, worse=counts.buyers_with.sum().over(before).fill_null(0))
    joined = buyers.join(worse, column)
    return joined.mutate(**{name: joined.worse.cast("int64")}).drop("worse")


def _check_rfm_options(monetary: str, rules: Sequence[RfmRule]) -> None:
    if monetary not in ("total", "average"):
        raise ValidationError(f"must be 'total' or 'average', got {monetary!r}", field="monetary")
    if not rules:
        raise ValidationError("must hold at least one rule", field="rules")


def rfm(
    transactions: ir.Table,
    *,
    as_of: date | datetime | str,
    monetary: Monetary = "total",
    rules: Sequence[RfmRule] = DEFAULT_RFM_RULES,
    output: Output = "pandas",
) -> DataFrame:
    """RFM scores and segment of each buyer, ordered by member_id."""
    expr = rfm_expr(transactions, as_of=as_of, monetary=monetary, rules=rules)
    return to_frame(expr.order_by("member_id"), output)


def rfm_segments_expr(
    transactions: ir.Table,
    *,
    as_of: date | datetime | str,
    monetary: Monetary = "total",
    rules: Sequence[RfmRule] = DEFAULT_RFM_RULES,
) -> ir.Table:
    """Per segment, in the order of `rules`: customers, customer_share, revenue, revenue_share,
    mean_recency_days, mean_frequency, mean_spend. Every segment is listed (zeros included);
    "other" only when some buyer matched no rule.
    """
    scored = rfm_expr(transactions, as_of=as_of, monetary=monetary, rules=rules)
    return rfm_segments_of(scored, rules=rules)


def rfm_segments_of(scored: ir.Table, *, rules: Sequence[RfmRule] = DEFAULT_RFM_RULES) -> ir.Table:
    """`rfm_segments_expr` from `rfm_expr`'s rows (scored with the same `rules`)."""
    counts = scored.group_by("segment").aggregate(
        customers=scored.count(),
        revenue=scored.spend.sum(),
        mean_recency_days=scored.recency_days.cast("float64").mean(),
        mean_frequency=scored.frequency.cast("float64").mean(),
    )
    names = list(dict.fromkeys([str(rule.segment) for rule in rules] + [RfmSegment.OTHER.value]))
    order = _constant_table({"segment": names, "position": list(range(len(names)))})
    joined = order.left_join(counts, "segment")
    customers = joined.customers.fill_null(0).cast("int64")
    revenue = joined.revenue.fill_null(0)
    table = joined.select(
        segment=joined.segment,
        customers=customers,
        customer_share=ratio(customers, customers.sum().over(ibis.window())),
        revenue=revenue,
        revenue_share=ratio(revenue, revenue.sum().over(ibis.window())),
        mean_recency_days=joined.mean_recency_days,
        mean_frequency=joined.mean_frequency,
        # From the exact total: a mean of float spends depends on the order they are added.
        mean_spend=ratio(joined.revenue, joined.customers),
        position=joined.position,
    )
    table = table.filter((table.segment != RfmSegment.OTHER.value) | (table.customers > 0))
    return table.order_by("position").drop("position")


def rfm_segments(
    transactions: ir.Table,
    *,
    as_of: date | datetime | str,
    monetary: Monetary = "total",
    rules: Sequence[RfmRule] = DEFAULT_RFM_RULES,
    output: Output = "pandas",
) -> DataFrame:
    """Customers and revenue per RFM segment."""
    expr = rfm_segments_expr(transactions, as_of=as_of, monetary=monetary, rules=rules)
    return to_frame(expr, output)


# --- helpers ----------------------------------------------------------------------------------


def _constant_table(columns: dict[str, list[Any]]) -> ir.Table:
    """A small constant table (from Arrow: Ibis's pandas path warns under pandas 3)."""
    return ibis.memtable(pa.table(columns))


def _decimal(value: float | Decimal | str | int, *, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValidationError(f"must be a number, got {value!r}", field=field) from None
    if not number.is_finite():
        raise ValidationError(f"must be a finite number, got {value!r}", field=field)
    return number


def _measure(value: UsageMeasure | str) -> UsageMeasure:
    try:
        return UsageMeasure(value)
    except ValueError:
        raise ValidationError(
            f"must be 'spend' or 'frequency', got {value!r}", field="measure"
        ) from None


def _fraction(share: Decimal) -> Fraction:
    """A share as an exact small fraction, so that rank comparisons stay in integers."""
    return Fraction(share).limit_denominator(_SHARE_DENOMINATOR_LIMIT)


def _window(window: Window, *, field: str) -> tuple[datetime, datetime]:
    try:
        start, end = window
    except (TypeError, ValueError):
        raise ValidationError("must be a (start, end) pair", field=field) from None
    low = local_timestamp(start, field=f"{field}.start")
    high = local_timestamp(end, field=f"{field}.end")
    if low >= high:
        raise ValidationError("must end after it starts", field=field)
    return low, high
