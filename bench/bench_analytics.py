"""Times each analytics aggregation against the same computation written by hand in DuckDB SQL.

    python bench/bench_analytics.py [--transactions 2000000] [--customers 200000] [--repeat 3]

Transactions are generated in DuckDB (a fixed seed): customers drawn with a skew (a few buy
often, most rarely) over three years, amounts 1.00–150.00, one customer in ten referred. For
each aggregation it runs the `fideliza.analytics` Ibis expression (compiled and executed to
Arrow) and a hand-written DuckDB query of the same result (to Arrow), interleaved, best of
`--repeat`, checks that both give the same rows, and prints both times and their ratio (issue
4 asks for at most 1.3×). It also times loading a CSV and a Parquet file with `open_files`
(validation, time zones, exact decimals) against a bare `CREATE TABLE AS read_csv/parquet`.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fideliza import analytics as fa
from fideliza.analytics.frames import quiet_ibis

START, END = "2023-01-01", "2026-01-01"
WINDOW = ("2025-01-01", "2026-01-01")
BEFORE, AFTER = ("2024-01-01", "2025-01-01"), WINDOW


def generate(con: Any, transactions: int, customers: int, seed: float) -> None:
    """Creates the tables `tx` and `referrals` in the DuckDB connection `con`."""
    con.execute(f"SELECT setseed({seed})").fetchall()
    seconds = 3 * 365 * 86_400
    con.execute(
        f"""
        CREATE TABLE tx AS
        SELECT 'm' || lpad(CAST(member AS VARCHAR), 7, '0') AS member_id,
               TIMESTAMP '{START}' + to_seconds(CAST(floor(random() * {seconds}) AS BIGINT))
                   AS occurred_at,
               CAST(round(1 + random() * 149, 2) AS DECIMAL(18, 4)) AS amount,
               'EUR' AS currency,
               CASE WHEN random() < 0.7 THEN 'store' ELSE 'web' END AS channel,
               'S' || CAST(CAST(floor(random() * 20) AS INTEGER) AS VARCHAR) AS store,
               CAST(NULL AS VARCHAR) AS items
        FROM (SELECT CAST(floor(pow(random(), 2.5) * {customers}) AS BIGINT) AS member
              FROM range({transactions}))
        """
    ).fetchall()
    con.execute(
        """
        CREATE TABLE referrals AS
        SELECT member_id, 'm0000000' AS referrer_id,
               min(occurred_at) - to_seconds(CAST(floor(random() * 30 * 86400) AS BIGINT))
                   + to_seconds(CASE WHEN random() < 0.2 THEN 40 * 86400 ELSE 0 END)
                   AS referred_at
        FROM tx GROUP BY member_id HAVING hash(member_id) % 10 = 0
        """
    ).fetchall()


# --- the same computations written by hand in DuckDB SQL -------------------------------------


def _spine(source: str, unit: str = "month") -> str:
    step = f"INTERVAL 1 {unit.upper()}"
    return (
        f"SELECT unnest(range(min(period), max(period) + {step}, {step})) AS period FROM {source}"
    )


def _segment_case() -> str:
    branches = " ".join(
        f"WHEN r_score BETWEEN {r.recency[0]} AND {r.recency[1]} AND fm_score BETWEEN "
        f"{r.frequency_monetary[0]} AND {r.frequency_monetary[1]} THEN '{r.segment}'"
        for r in fa.DEFAULT_RFM_RULES
    )
    return f"CASE {branches} ELSE 'other' END"


_RFM = f"""
WITH b AS (
  SELECT member_id, max(occurred_at) AS last_purchase_at, count(*) AS frequency,
         sum(amount) AS spend
  FROM tx WHERE occurred_at < TIMESTAMP '{END}' GROUP BY member_id),
s AS (
  SELECT *, CAST(epoch(TIMESTAMP '{END}') - epoch(last_purchase_at) AS BIGINT) // 86400
         AS recency_days FROM b),
sc AS (
  SELECT *,
    1 + 5 * (rank() OVER (ORDER BY recency_days DESC) - 1) // count(*) OVER () AS r_score,
    1 + 5 * (rank() OVER (ORDER BY frequency) - 1) // count(*) OVER () AS f_score,
    1 + 5 * (rank() OVER (ORDER BY spend) - 1) // count(*) OVER () AS m_score
  FROM s),
fm AS (SELECT *, (f_score + m_score) // 2 AS fm_score FROM sc)
SELECT member_id, last_purchase_at, recency_days, frequency, spend, spend AS monetary,
       r_score, f_score, m_score, fm_score,
       CAST(r_score AS VARCHAR) || CAST(f_score AS VARCHAR) || CAST(m_score AS VARCHAR)
           AS rfm_code,
       {_segment_case()} AS segment
FROM fm
"""


def _usage(start: str, end: str) -> str:
    return f"""
  SELECT member_id, transactions, spend,
         CASE WHEN better * 5 < n THEN 'heavy' WHEN better * 2 < n THEN 'medium'
              ELSE 'low' END AS usage_group
  FROM (SELECT *, rank() OVER (ORDER BY spend DESC) - 1 AS better, count(*) OVER () AS n
        FROM (SELECT member_id, count(*) AS transactions, sum(amount) AS spend FROM tx
              WHERE occurred_at >= TIMESTAMP '{start}' AND occurred_at < TIMESTAMP '{end}'
              GROUP BY member_id))"""


HAND: dict[str, str] = {
    "buyer_summary": """
WITH m AS (SELECT member_id, count(*) AS purchases, sum(amount) AS spend
           FROM tx GROUP BY member_id)
SELECT count(*) AS buyers,
       count(*) FILTER (WHERE purchases = 1) AS one_time_buyers,
       count(*) FILTER (WHERE purchases >= 2) AS repeat_customers,
       CAST(count(*) FILTER (WHERE purchases >= 2) AS DOUBLE) / NULLIF(count(*), 0)
           AS repeat_purchase_rate,
       CAST(coalesce(sum(purchases), 0) AS BIGINT) AS transactions,
       coalesce(sum(spend), 0) AS revenue,
       CAST(sum(purchases) AS DOUBLE) / NULLIF(count(*), 0) AS purchases_per_buyer
FROM m""",
    "purchase_frequency": """
WITH c AS (SELECT purchases, count(*) AS buyers
           FROM (SELECT member_id, count(*) AS purchases FROM tx GROUP BY member_id)
           GROUP BY purchases)
SELECT purchases, buyers, buyers / sum(buyers) OVER () AS share,
       sum(buyers) OVER (ORDER BY purchases) / sum(buyers) OVER () AS cumulative_share
FROM c ORDER BY purchases""",
    "inter_purchase_times": """
WITH g AS (
  SELECT CAST(epoch(occurred_at)
              - epoch(lag(occurred_at) OVER (PARTITION BY member_id ORDER BY occurred_at))
              AS BIGINT) // 86400 AS days
  FROM tx),
c AS (SELECT days, count(*) AS intervals FROM g WHERE days IS NOT NULL GROUP BY days)
SELECT days, intervals, intervals / sum(intervals) OVER () AS share,
       sum(intervals) OVER (ORDER BY days) / sum(intervals) OVER () AS cumulative_share
FROM c ORDER BY days""",
    "active_customers": f"""
WITH pm AS (SELECT member_id, date_trunc('month', occurred_at) AS period,
                   count(*) AS transactions, sum(amount) AS revenue
            FROM tx GROUP BY ALL),
f AS (SELECT member_id, min(period) AS first_period FROM pm GROUP BY member_id),
c AS (SELECT period, count(*) AS active_customers,
             count(*) FILTER (WHERE period = first_period) AS new_customers,
             sum(transactions) AS transactions, sum(revenue) AS revenue
      FROM pm JOIN f USING (member_id) GROUP BY period),
s AS ({_spine("c")})
SELECT CAST(s.period AS DATE) AS period,
       coalesce(active_customers, 0) AS active_customers,
       coalesce(new_customers, 0) AS new_customers,
       coalesce(active_customers, 0) - coalesce(new_customers, 0) AS returning_customers,
       CAST(coalesce(transactions, 0) AS BIGINT) AS transactions,
       coalesce(revenue, 0) AS revenue
FROM s LEFT JOIN c USING (period) ORDER BY period""",
    "defection": f"""
WITH a AS (SELECT DISTINCT member_id, date_trunc('month', occurred_at) AS period FROM tx),
c AS (SELECT p.period + INTERVAL 1 MONTH AS period, count(*) AS active_previous,
             count(n.member_id) AS retained
      FROM a AS p LEFT JOIN a AS n
        ON n.member_id = p.member_id AND n.period = p.period + INTERVAL 1 MONTH
      GROUP BY 1),
s AS ({_spine("a")})
SELECT CAST(s.period AS DATE) AS period,
       coalesce(active_previous, 0) AS active_previous, coalesce(retained, 0) AS retained,
       coalesce(active_previous, 0) - coalesce(retained, 0) AS defected,
       CAST(coalesce(active_previous, 0) - coalesce(retained, 0) AS DOUBLE)
           / NULLIF(coalesce(active_previous, 0), 0) AS defection_rate
FROM s LEFT JOIN c USING (period) ORDER BY period""",
    "cohort_retention": """
WITH a AS (SELECT DISTINCT member_id, date_trunc('month', occurred_at) AS period FROM tx),
c AS (SELECT member_id, min(period) AS cohort FROM a GROUP BY member_id),
ac AS (SELECT cohort, date_diff('month', cohort, period) AS "offset",
              count(*) AS active_customers
       FROM a JOIN c USING (member_id) GROUP BY ALL),
sz AS (SELECT cohort, count(*) AS cohort_size FROM c GROUP BY cohort),
cells AS (SELECT cohort, cohort_size,
                 unnest(range(0, date_diff('month', cohort, last) + 1)) AS "offset"
          FROM sz, (SELECT max(period) AS last FROM a))
SELECT CAST(cohort AS DATE) AS cohort, "offset", cohort_size,
       coalesce(active_customers, 0) AS active_customers,
       CAST(coalesce(active_customers, 0) AS DOUBLE) / cohort_size AS retention
FROM cells LEFT JOIN ac USING (cohort, "offset") ORDER BY cohort, "offset" """,
    "usage_groups": f"""
WITH g AS ({_usage(*WINDOW)}),
c AS (SELECT usage_group, count(*) AS customers, sum(transactions) AS transactions,
             sum(spend) AS revenue, min(spend) AS measure_min, max(spend) AS measure_max
      FROM g GROUP BY usage_group),
o AS (SELECT * FROM (VALUES ('heavy', 0), ('medium', 1), ('low', 2)) o(usage_group, position))
SELECT usage_group, coalesce(customers, 0) AS customers,
       coalesce(customers, 0) / sum(coalesce(customers, 0)) OVER () AS customer_share,
       coalesce(transactions, 0) AS transactions, coalesce(revenue, 0) AS revenue,
       CAST(coalesce(revenue, 0) AS DOUBLE) / sum(coalesce(revenue, 0)) OVER ()
           AS revenue_share,
       measure_min, measure_max
FROM o LEFT JOIN c USING (usage_group) ORDER BY position""",
    "usage_migration": f"""
WITH b AS ({_usage(*BEFORE)}), a AS ({_usage(*AFTER)}),
f AS (SELECT member_id, min(occurred_at) AS first_purchase_at FROM tx GROUP BY member_id),
m AS (SELECT coalesce(b.usage_group,
                      CASE WHEN f.first_purchase_at >= TIMESTAMP '{BEFORE[1]}' THEN 'new'
                           ELSE 'inactive' END) AS from_group,
             coalesce(a.usage_group, 'inactive') AS to_group
      FROM b FULL JOIN a USING (member_id) LEFT JOIN f USING (member_id)),
c AS (SELECT from_group, to_group, count(*) AS customers FROM m GROUP BY ALL),
cells AS (SELECT * FROM (VALUES {
        ", ".join(
            f"('{f}', '{t}', {i * 4 + j})"
            for i, f in enumerate(fa.MIGRATION_FROM)
            for j, t in enumerate(fa.MIGRATION_TO)
        )
    }) v(from_group, to_group, position))
SELECT from_group, to_group, coalesce(customers, 0) AS customers,
       coalesce(customers, 0)
         / NULLIF(sum(coalesce(customers, 0)) OVER (PARTITION BY from_group), 0) AS from_share
FROM cells LEFT JOIN c USING (from_group, to_group) ORDER BY position""",
    "rfm": _RFM,
    "rfm_segments": f"""
WITH r AS ({_RFM}),
c AS (SELECT segment, count(*) AS customers, sum(spend) AS revenue,
             avg(CAST(recency_days AS DOUBLE)) AS mean_recency_days,
             avg(CAST(frequency AS DOUBLE)) AS mean_frequency,
             avg(CAST(spend AS DOUBLE)) AS mean_spend
      FROM r GROUP BY segment),
o AS (SELECT * FROM (VALUES {
        ", ".join(f"('{r.segment}', {i})" for i, r in enumerate(fa.DEFAULT_RFM_RULES))
    }, ('other', {len(fa.DEFAULT_RFM_RULES)})) o(segment, position))
SELECT segment, customers, customer_share, revenue, revenue_share,
       mean_recency_days, mean_frequency, mean_spend
FROM (SELECT o.segment, o.position, coalesce(customers, 0) AS customers,
             coalesce(customers, 0) / sum(coalesce(customers, 0)) OVER () AS customer_share,
             coalesce(revenue, 0) AS revenue,
             CAST(coalesce(revenue, 0) AS DOUBLE) / sum(coalesce(revenue, 0)) OVER ()
                 AS revenue_share,
             mean_recency_days, mean_frequency, mean_spend
      FROM o LEFT JOIN c USING (segment))
WHERE segment <> 'other' OR customers > 0 ORDER BY position""",
    "referral_acquisition": f"""
WITH f AS (SELECT member_id, min(occurred_at) AS first_purchase_at FROM tx GROUP BY member_id),
r AS (SELECT member_id, min(referred_at) AS referred_at FROM referrals
      WHERE referrer_id IS NULL OR referrer_id <> member_id GROUP BY member_id),
c AS (SELECT date_trunc('month', first_purchase_at) AS period, count(*) AS new_customers,
             count(*) FILTER (WHERE r.referred_at <= f.first_purchase_at)
                 AS referred_new_customers
      FROM f LEFT JOIN r USING (member_id) GROUP BY 1),
s AS ({_spine("c")})
SELECT CAST(period AS DATE) AS period, coalesce(new_customers, 0) AS new_customers,
       coalesce(referred_new_customers, 0) AS referred_new_customers,
       CAST(coalesce(referred_new_customers, 0) AS DOUBLE)
           / NULLIF(coalesce(new_customers, 0), 0) AS referral_share
FROM s LEFT JOIN c USING (period) ORDER BY period""",
}


def ours(tx: Any, referrals: Any) -> dict[str, Any]:
    """The fideliza.analytics expressions, by the same names."""
    return {
        "buyer_summary": fa.buyer_summary_expr(tx),
        "purchase_frequency": fa.purchase_frequency_expr(tx),
        "inter_purchase_times": fa.inter_purchase_times_expr(tx),
        "active_customers": fa.active_customers_expr(tx),
        "defection": fa.defection_expr(tx),
        "cohort_retention": fa.cohort_retention_expr(tx),
        "usage_groups": fa.usage_groups_expr(tx, start=WINDOW[0], end=WINDOW[1]),
        "usage_migration": fa.usage_migration_expr(tx, before=BEFORE, after=AFTER),
        "rfm": fa.rfm_expr(tx, as_of=END),
        "rfm_segments": fa.rfm_segments_expr(tx, as_of=END),
        "referral_acquisition": fa.referral_acquisition_expr(tx, referrals),
    }


# --- timing -----------------------------------------------------------------------------------


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def run_sql(con: Any, sql: str) -> Any:
    """Runs hand-written SQL on the DuckDB connection into an Arrow table."""
    return con.sql(sql).to_arrow_table()


def run_statement(con: Any, sql: str) -> None:
    con.execute(sql).fetchall()


def same_rows(left: pa.Table, right: pa.Table, *, sort: bool) -> bool:
    """Whether two results hold the same rows (floats to 1e-9 relative)."""
    a, b = left.to_pandas(), right.to_pandas()
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    if sort:  # row-level results come in no particular order
        a = a.sort_values(list(a.columns[:1])).reset_index(drop=True)
        b = b.sort_values(list(b.columns[:1])).reset_index(drop=True)
    for column in a.columns:
        for x, y in zip(a[column].tolist(), b[column].tolist(), strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if not (math.isclose(x, y, rel_tol=1e-9) or (math.isnan(x) and math.isnan(y))):
                    return False
            elif x != y and not (x is None and y is None):
                return False
    return True


def compare(backend: Any, repeat: int) -> None:
    con = backend.con
    with quiet_ibis():
        exprs = ours(backend.table("tx"), backend.table("referrals"))
    print(f"{'aggregation':<22} {'fideliza':>10} {'hand SQL':>10} {'ratio':>7}  same")
    total_ours = total_hand = 0.0
    for name, expr in exprs.items():
        best_ours = best_hand = float("inf")
        mine = theirs = None
        for _ in range(repeat):
            with quiet_ibis():
                seconds, mine = timed(expr.to_pyarrow)
            best_ours = min(best_ours, seconds)
            seconds, theirs = timed(partial(run_sql, con, HAND[name]))
            best_hand = min(best_hand, seconds)
        total_ours += best_ours
        total_hand += best_hand
        same = same_rows(mine, theirs, sort=name == "rfm")
        print(
            f"{name:<22} {best_ours:>9.3f}s {best_hand:>9.3f}s {best_ours / best_hand:>6.2f}x  "
            f"{'yes' if same else 'NO'}"
        )
    print(
        f"{'all of the above':<22} {total_ours:>9.3f}s {total_hand:>9.3f}s "
        f"{total_ours / total_hand:>6.2f}x"
    )


def compare_loading(backend: Any, repeat: int) -> None:
    con = backend.con
    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(folder) / "purchases.csv"
        parquet_path = Path(folder) / "purchases.parquet"
        con.execute(
            "COPY (SELECT 't' || CAST(row_number() OVER () AS VARCHAR) AS external_id, "
            "member_id, strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') AS occurred_at, amount, "
            f"currency, channel, store, items FROM tx) TO '{csv_path}' (HEADER)"
        ).fetchall()
        con.execute(
            "COPY (SELECT member_id, timezone('UTC', occurred_at) AS occurred_at, amount, "
            f"currency, channel, store, items FROM tx) TO '{parquet_path}' (FORMAT parquet)"
        ).fetchall()
        print(f"\n{'loading':<22} {'fideliza':>10} {'bare load':>10} {'ratio':>7}")
        for label, path, reader in (
            ("CSV", csv_path, "read_csv"),
            ("Parquet", parquet_path, "read_parquet"),
        ):
            best_ours = best_bare = float("inf")
            for attempt in range(repeat):

                def load(path: Path = path) -> None:
                    fa.open_files(path, timezone="Europe/Madrid").close()

                best_ours = min(best_ours, timed(load)[0])
                table = f"bare_{label.lower()}_{attempt}"
                bare = f"CREATE TABLE {table} AS SELECT * FROM {reader}('{path}')"
                best_bare = min(best_bare, timed(partial(run_statement, con, bare))[0])
                con.execute(f"DROP TABLE {table}").fetchall()
            print(
                f"open_files {label:<11} {best_ours:>9.3f}s {best_bare:>9.3f}s "
                f"{best_ours / best_bare:>6.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--skip-loading", action="store_true", help="skip the file loading part")
    args = parser.parse_args()

    import ibis

    backend = ibis.duckdb.connect()
    seconds, _ = timed(lambda: generate(backend.con, args.transactions, args.customers, args.seed))
    buyers = backend.con.execute("SELECT count(DISTINCT member_id) FROM tx").fetchall()[0][0]
    threads = backend.con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(
        f"generated {args.transactions:,} transactions of {buyers:,} buyers in {seconds:.1f} s "
        f"(DuckDB, {threads} threads); best of {args.repeat}\n"
    )
    compare(backend, args.repeat)
    if not args.skip_loading:
        compare_loading(backend, args.repeat)


if __name__ == "__main__":
    main()
