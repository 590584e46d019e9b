"""Customer insight: who is loyal and why, as DataFrames (issue 4).

    from fideliza import analytics as fa

    data = fa.open_files("purchases.csv", timezone="Europe/Madrid")   # or fa.open_database(url)
    fa.buyer_summary(data.transactions)                # customers vs one-time buyers
    fa.defection(data.transactions, period="month")    # defection rate per month
    fa.rfm_segments(data.transactions, as_of="2025-07-01")
    fa.loyalty_matrix(data.transactions, data.surveys, as_of="2025-07-01")  # apostles, …
    fa.expected_liability(data.entries, data.lots, as_of="2025-07-01",
                          cost_per_point=Decimal("0.01"))  # points liability net of breakage

Each metric is an Ibis expression (`*_expr`) run on the backend that holds the data (DuckDB
for files, frames and SQLite; PostgreSQL in place; PySpark with `open_spark`), returned as a
pandas DataFrame or, with `output="polars"`, a polars one. The customer-base models (BG/NBD,
Pareto/NBD, Gamma-Gamma, CLV) are in `fideliza.analytics.models` and `fideliza.analytics.clv`;
`lifetime_values` fits BG/NBD and Gamma-Gamma on a transactions table at a date and gives
each buyer's P(alive), expected purchases and CLV (see `fideliza.analytics.lifetime`).

Program economics (part 7) are in `economics`: points liability, breakage per earning cohort
and the ROI against a holdout group; what rewards cost and the spend needed per unit of reward
value per tier are in `rewards` (`reward_cost`, `effort_vs_reward`); without a holdout,
`matching` compares members with non-members matched on pre-period behaviour.

For data that outgrows one machine, `open_spark` runs the same expressions on PySpark (see
`fideliza.analytics.spark`): files and frames are normalized as above and staged as Parquet;
a directory or glob of Parquet already in the normalized shape is read by Spark directly.
"""

from fideliza.analytics.behaviour import (
    active_customers,
    active_customers_expr,
    buyer_summary,
    buyer_summary_expr,
    cohort_retention,
    cohort_retention_expr,
    defection,
    defection_expr,
    inter_purchase_times,
    inter_purchase_times_expr,
    purchase_frequency,
    purchase_frequency_expr,
)
from fideliza.analytics.economics import (
    HOLDOUT_GROUPS,
    HoldoutRoi,
    ProgramCost,
    breakage_cohorts,
    breakage_cohorts_expr,
    breakage_rate,
    breakage_rate_expr,
    expected_liability,
    holdout_revenue,
    holdout_revenue_expr,
    holdout_roi,
    holdout_roi_from,
    member_points,
    member_points_expr,
    points_liability,
    points_liability_expr,
)
from fideliza.analytics.frames import DataFrame, Output, to_frame
from fideliza.analytics.lifetime import (
    LifetimeValues,
    NotEstimable,
    customer_base_expr,
    estimate_lifetime_values,
    lifetime_values,
)
from fideliza.analytics.loyalty import (
    DEFAULT_LOYALTY_RULE,
    LoyaltyRule,
    Quadrant,
    loyalty_matrix,
    loyalty_matrix_expr,
    loyalty_members,
    loyalty_members_expr,
    satisfied_defection,
    satisfied_defection_expr,
)
from fideliza.analytics.matching import (
    DEFAULT_BANDS,
    MATCHED_GROUPS,
    MatchedRoi,
    matched_customers,
    matched_customers_expr,
    matched_roi,
)
from fideliza.analytics.periods import Period, within
from fideliza.analytics.referrals import referral_acquisition, referral_acquisition_expr
from fideliza.analytics.rewards import (
    EARNING_KINDS,
    effort_vs_reward,
    effort_vs_reward_expr,
    reward_cost,
    reward_cost_expr,
)
from fideliza.analytics.segments import (
    DEFAULT_RFM_RULES,
    MIGRATION_FROM,
    MIGRATION_TO,
    RfmRule,
    RfmSegment,
    UsageGroup,
    UsageMeasure,
    UsageRule,
    customer_usage,
    customer_usage_expr,
    rfm,
    rfm_expr,
    rfm_segments,
    rfm_segments_expr,
    usage_groups,
    usage_groups_expr,
    usage_migration,
    usage_migration_expr,
)
from fideliza.analytics.sources import (
    ENTRIES_SCHEMA,
    LOTS_SCHEMA,
    REDEMPTIONS_SCHEMA,
    REFERRALS_SCHEMA,
    SURVEYS_SCHEMA,
    TRANSACTIONS_SCHEMA,
    AnalyticsData,
    open_database,
    open_files,
    open_frames,
)
from fideliza.analytics.spark import open_spark, spark_session

__all__ = [
    "DEFAULT_BANDS",
    "DEFAULT_LOYALTY_RULE",
    "DEFAULT_RFM_RULES",
    "EARNING_KINDS",
    "ENTRIES_SCHEMA",
    "HOLDOUT_GROUPS",
    "LOTS_SCHEMA",
    "MATCHED_GROUPS",
    "MIGRATION_FROM",
    "MIGRATION_TO",
    "REDEMPTIONS_SCHEMA",
    "REFERRALS_SCHEMA",
    "SURVEYS_SCHEMA",
    "TRANSACTIONS_SCHEMA",
    "AnalyticsData",
    "DataFrame",
    "HoldoutRoi",
    "LifetimeValues",
    "LoyaltyRule",
    "MatchedRoi",
    "NotEstimable",
    "Output",
    "Period",
    "ProgramCost",
    "Quadrant",
    "RfmRule",
    "RfmSegment",
    "UsageGroup",
    "UsageMeasure",
    "UsageRule",
    "active_customers",
    "active_customers_expr",
    "breakage_cohorts",
    "breakage_cohorts_expr",
    "breakage_rate",
    "breakage_rate_expr",
    "buyer_summary",
    "buyer_summary_expr",
    "cohort_retention",
    "cohort_retention_expr",
    "customer_base_expr",
    "customer_usage",
    "customer_usage_expr",
    "defection",
    "defection_expr",
    "effort_vs_reward",
    "effort_vs_reward_expr",
    "estimate_lifetime_values",
    "expected_liability",
    "holdout_revenue",
    "holdout_revenue_expr",
    "holdout_roi",
    "holdout_roi_from",
    "inter_purchase_times",
    "inter_purchase_times_expr",
    "lifetime_values",
    "loyalty_matrix",
    "loyalty_matrix_expr",
    "loyalty_members",
    "loyalty_members_expr",
    "matched_customers",
    "matched_customers_expr",
    "matched_roi",
    "member_points",
    "member_points_expr",
    "open_database",
    "open_files",
    "open_frames",
    "open_spark",
    "points_liability",
    "points_liability_expr",
    "purchase_frequency",
    "purchase_frequency_expr",
    "referral_acquisition",
    "referral_acquisition_expr",
    "reward_cost",
    "reward_cost_expr",
    "rfm",
    "rfm_expr",
    "rfm_segments",
    "rfm_segments_expr",
    "satisfied_defection",
    "satisfied_defection_expr",
    "spark_session",
    "to_frame",
    "usage_groups",
    "usage_groups_expr",
    "usage_migration",
    "usage_migration_expr",
    "within",
]
