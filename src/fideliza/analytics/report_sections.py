"""The report's sections (`fideliza report`): the tables they share, computed once per report
and kept on the backend, and the figures each section computes from them.

Most sections start from the same figures of the purchases before `as_of`:

- one row per buyer (`behaviour.buyers_expr`): the summary, RFM, the first purchases the
  loyalty matrix and referral acquisition read;
- their RFM scores and segments (`segments.rfm_of`): the RFM section and the CLV segments;
- one row per member and month with a purchase (`behaviour.member_activity_expr`): active
  customers, defection and cohorts (with the buyers' first months).

Each is computed on first use and kept on the backend (a temporary table on DuckDB and
PostgreSQL, a cached DataFrame on Spark), sparing every other section its own pass over all
the purchases; `release()` drops them. The sections then compute what their `*_expr`
functions compute, from the same rows, so the figures are the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import uuid4

import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from fideliza.analytics.behaviour import (
    active_customers_of,
    buyers_expr,
    cohort_retention_of,
    defection_of,
    member_activity_expr,
)
from fideliza.analytics.frames import quiet_ibis, to_frame
from fideliza.analytics.lifetime import NotEstimable, lifetime_values_of, with_segments
from fideliza.analytics.loyalty import (
    DEFAULT_LOYALTY_RULE,
    loyalty_matrix_of,
    loyalty_members_expr,
    satisfied_defection_of,
)
from fideliza.analytics.periods import Period, period_start, within
from fideliza.analytics.referrals import referral_acquisition_of
from fideliza.analytics.report_clv import clv_figures
from fideliza.analytics.segments import rfm_of, rfm_segments_of, usage_groups
from fideliza.analytics.sources import AnalyticsData

Figures = dict[str, Any]
USAGE_WINDOW_DAYS = 365

REPORT_PERIOD = Period.MONTH


class SharedTables:
    """The cached per-buyer and per-month tables of one report (see the module docstring)."""

    def __init__(self, transactions: ir.Table, *, as_of: datetime, backend: Any) -> None:
        self._transactions = transactions
        self._as_of = as_of
        self._backend = backend
        self._tables: dict[str, ir.Table] = {}
        self._releases: list[Callable[[], None]] = []

    @property
    def buyers(self) -> ir.Table:
        """member_id, purchases, spend, first_purchase_at, last_purchase_at."""
        return self._cache("buyers", lambda: buyers_expr(self._transactions))

    @property
    def first_purchases(self) -> ir.Table:
        """member_id, first_purchase_at."""
        return self.buyers.select("member_id", "first_purchase_at")

    @property
    def first_periods(self) -> ir.Table:
        """member_id, first_period (the month of the first purchase)."""
        buyers = self.buyers
        return buyers.select(
            "member_id", first_period=period_start(buyers.first_purchase_at, REPORT_PERIOD)
        )

    @property
    def rfm(self) -> ir.Table:
        """`segments.rfm_expr`'s rows at as_of with the default rules: member_id, segment and
        what `segments.rfm_segments_of` reads (frequency, spend, recency_days)."""

        def scored() -> ir.Table:
            buyers = self.buyers
            return rfm_of(
                buyers.select(
                    "member_id", "last_purchase_at", frequency=buyers.purchases, spend=buyers.spend
                ),
                as_of=self._as_of,
            ).select("member_id", "segment", "frequency", "spend", "recency_days")

        return self._cache("rfm", scored)

    @property
    def activity(self) -> ir.Table:
        """member_id, period (a month's start), transactions, revenue."""
        return self._cache(
            "activity", lambda: member_activity_expr(self._transactions, REPORT_PERIOD)
        )

    @property
    def active_periods(self) -> ir.Table:
        """The distinct (member_id, period) pairs with a purchase."""
        return self.activity.select("member_id", "period")

    def cached(self, name: str, build: Callable[[], ir.Table]) -> ir.Table:
        """The table `build()` makes, cached under `name` on first use (e.g. one that two
        sections read)."""
        return self._cache(name, build)

    def release(self) -> None:
        """Drops the kept tables from the backend."""
        self._tables.clear()
        while self._releases:
            self._releases.pop()()

    def _cache(self, name: str, build: Callable[[], ir.Table]) -> ir.Table:
        if name not in self._tables:
            with quiet_ibis():
                table, release = _keep(self._backend, name, build())
            self._tables[name] = table
            self._releases.append(release)
        return self._tables[name]


def _keep(backend: Any, name: str, expr: ir.Table) -> tuple[ir.Table, Callable[[], None]]:
    """`expr` computed into a temporary table (a cached DataFrame on Spark), and how to drop it.

    Not `Table.cache()` on the SQL backends: Ibis 12 with sqlglot 30 renders the DROP TABLE
    that releases it without the table's name.
    """
    if backend.name == "pyspark":
        cached = expr.cache()
        return cached, cached.release
    table_name = f"fideliza_report_{name}_{uuid4().hex}"
    table = backend.create_table(table_name, expr, temp=True)
    return table, partial(_drop_table, backend, table_name)


def _drop_table(backend: Any, name: str) -> None:
    statement = f'DROP TABLE IF EXISTS "{name}"'
    if backend.name == "duckdb":
        backend.con.execute(statement).fetchall()
    else:
        with backend.raw_sql(statement):
            pass


# --- the sections ---------------------------------------------------------------------------


def purchase_sections(
    figures: Figures,
    tx: Any,
    shared: SharedTables,
    moment: datetime,
    notify: Callable[[str], None],
) -> None:
    """The sections from active customers to RFM, from the shared tables."""
    notify("active_customers")
    figures["active_customers"] = figure_rows(
        to_frame(
            active_customers_of(shared.activity, REPORT_PERIOD, first_periods=shared.first_periods)
        )
    )
    notify("defection")
    figures["defection"] = figure_rows(to_frame(defection_of(shared.active_periods, REPORT_PERIOD)))
    notify("usage_groups")
    start = moment - timedelta(days=USAGE_WINDOW_DAYS)
    figures["usage_groups"] = figure_rows(usage_groups(tx, start=start, end=moment))
    notify("rfm_segments")
    figures["rfm_segments"] = figure_rows(to_frame(rfm_segments_of(shared.rfm)))


def loyalty_sections(
    figures: Figures,
    data: AnalyticsData,
    tx: Any,
    shared: SharedTables,
    moment: datetime,
    notify: Callable[[str], None],
) -> None:
    """The loyalty matrix (None without surveys), cohorts and referral acquisition."""
    notify("loyalty_matrix")
    figures.update(_loyalty_matrix(data, tx, shared, moment))
    notify("cohort_retention")
    figures["cohort_retention"] = figure_rows(
        to_frame(
            cohort_retention_of(
                shared.active_periods, REPORT_PERIOD, first_periods=shared.first_periods
            )
        )
    )
    notify("referral_acquisition")
    figures["referral_acquisition"] = (
        None
        if data.referrals is None
        else figure_rows(
            to_frame(
                referral_acquisition_of(
                    shared.first_purchases, data.referrals, period=REPORT_PERIOD
                )
            )
        )
    )


def _loyalty_matrix(
    data: AnalyticsData, tx: Any, shared: SharedTables, moment: datetime
) -> Figures:
    """The loyalty matrix and the satisfied customers' defection (None without surveys)."""
    if data.surveys is None:
        return {"loyalty_matrix": None, "satisfied_defection": None}
    surveys = within(data.surveys, end=moment, column="answered_at")
    members = shared.cached(
        "loyalty_members",
        lambda: loyalty_members_expr(
            tx,
            surveys,
            as_of=moment - timedelta(days=DEFAULT_LOYALTY_RULE.follow_up_days),
            referrals=data.referrals,
            first_purchases=shared.first_purchases,
        ),
    )
    return {
        "loyalty_matrix": figure_rows(to_frame(loyalty_matrix_of(members))),
        "satisfied_defection": figure_rows(to_frame(satisfied_defection_of(members)))[0],
    }


def clv_section(
    buyers: pa.Table, segments: pa.Table, months: int, rate: float
) -> tuple[Figures | None, str | None]:
    """The CLV figures from the buyers' purchase days (`lifetime.buyer_days_expr`) and RFM
    segments, fetched; or None and why the models cannot say."""
    try:
        base = with_segments(buyers, segments)
        values = lifetime_values_of(base, months=months, monthly_discount_rate=rate)
    except NotEstimable as error:
        return None, str(error)
    return clv_figures(values), None


def figure_rows(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows, JSON-ready (see `_plain`)."""
    return [
        {str(k): _plain(v) for k, v in row.items()}
        for row in pd.DataFrame(frame).to_dict("records")
    ]


def _plain(value: Any) -> Any:
    """A JSON-ready copy of one cell."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, pd.Timestamp | datetime):
        moment = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        return moment.date().isoformat() if moment.time() == datetime.min.time() else str(moment)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
