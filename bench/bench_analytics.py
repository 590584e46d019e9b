"""The loyalty report end to end at the issue's scale, and each aggregation against the same
computation written by hand in DuckDB SQL, in the same run.

    python bench/bench_analytics.py [--transactions 10000000] [--customers 1000000]
                                    [--repeat 3] [--only rfm,customer_base] [--skip-report]

Data (generated once, in DuckDB, a fixed seed, and kept as Parquet under bench/out/): customers
drawn with a skew (a few buy often, most rarely), each active from a joining date for an
exponential while (mean about a year) within three years, amounts 1.00–150.00, one customer
in ten referred, one in three with an NPS answer. Then:

1. the report as `fideliza report --transactions … --surveys …` makes it: `open_files` on the
   Parquet (validation, time zones, exact decimals), every section of `build_report` (timed
   one by one through its progress callback; the CLV section fits BG/NBD and Gamma-Gamma on
   every buyer: its query is read within the summary step and its models fitted in a worker
   thread while the later sections run, so its own step is short), the HTML and JSON
   written; printed with and without the HTML rendering;
2. on the data it loaded, each aggregation's `fideliza.analytics` Ibis expression (compiled and
   executed to Arrow) against a hand-written DuckDB query of the same result, interleaved,
   best of `--repeat`, checking both give the same rows (issue 4 asks for at most 1.3×);
3. (`--loading`) loading a CSV and a Parquet file with `open_files` against a bare
   `CREATE TABLE AS read_csv/parquet`.
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

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fideliza import analytics as fa
from fideliza.analytics.frames import quiet_ibis
from fideliza.analytics.lifetime import customer_base_expr
from fideliza.analytics.report import SECTIONS, build_report, default_as_of, render_html

OUT = Path(__file__).resolve().parent / "out"
START, END = "2023-01-01", "2026-01-01"
WINDOW = ("2025-01-01", "2026-01-01")
BEFORE, AFTER = ("2024-01-01", "2025-01-01"), WINDOW


def generate(con: Any, transactions: int, customers: int, seed: float) -> None:
    """Creates the tables `tx`, `referrals` and `surveys` in the DuckDB connection `con`."""
    con.execute(f"SELECT setseed({seed})").fetchall()
    seconds = 3 * 365 * 86_400
    # Each customer joins at some point of the first 90% of the three years and stays a while
    # (exponential, mean about a year), so that customers drop out as the models expect.
    con.execute(
        f"""
        CREATE TEMPORARY TABLE members AS
        SELECT range AS member, random() * 0.9 AS joined,
               -ln(1 - random()) * 0.35 AS life
        FROM range({customers})
        """
    ).fetchall()
    con.execute(
        f"""
        CREATE TABLE tx AS
        SELECT 'm' || lpad(CAST(member AS VARCHAR), 7, '0') AS member_id,
               TIMESTAMP '{START}' + to_seconds(CAST(floor(
                   (joined + random() * (least(1.0, joined + life) - joined)) * {seconds})
                   AS BIGINT)) AS occurred_at,
               CAST(round(1 + random() * 149, 2) AS DECIMAL(18, 4)) AS amount,
               'EUR' AS currency,
               CASE WHEN random() < 0.7 THEN 'store' ELSE 'web' END AS channel,
               'S' || CAST(CAST(floor(random() * 20) AS INTEGER) AS VARCHAR) AS store,
               CAST(NULL AS VARCHAR) AS items
        FROM (SELECT CAST(floor(pow(random(), 2.5) * {customers}) AS BIGINT) AS member
              FROM range({transactions}))
        JOIN members USING (member)
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
    # One NPS answer for a third of the buyers, somewhere between their first and last purchase.
    con.execute(
        """
        CREATE TABLE surveys AS
        SELECT member_id,
               first + to_seconds(CAST(floor(random() * (epoch(last) - epoch(first)))
                                       AS BIGINT)) AS answered_at,
               'nps' AS kind, CAST(floor(random() * 11) AS DOUBLE) AS score
        FROM (SELECT member_id, min(occurred_at) AS first, max(occurred_at) AS last
              FROM tx GROUP BY member_id HAVING hash(member_id) % 3 = 0)
        """
    ).fetchall()


def data_files(transactions: int, customers: int, seed: float) -> dict[str, Path]:
    """The Parquet files of the generated data under bench/out/, generated on first use."""
    folder = OUT / f"analytics-v2-{transactions}-{customers}-{seed}"
    files = {name: folder / f"{name}.parquet" for name in ("transactions", "surveys", "referrals")}
    if all(path.exists() for path in files.values()):
        print(f"data: {folder} (generated earlier)")
        return files
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    started = time.perf_counter()
    generate(con, transactions, customers, seed)
    # Instants with their zone, as a till would export them.
    exports = {
        "transactions": "SELECT member_id, timezone('UTC', occurred_at) AS occurred_at, amount, "
        "currency, channel, store, items FROM tx",
        "surveys": "SELECT member_id, timezone('UTC', answered_at) AS answered_at, kind, score "
        "FROM surveys",
        "referrals": "SELECT member_id, referrer_id, timezone('UTC', referred_at) AS referred_at "
        "FROM referrals",
    }
    for name, query in exports.items():
        partial_path = files[name].with_suffix(".partial")
        con.execute(f"COPY ({query}) TO '{partial_path}' (FORMAT parquet)").fetchall()
        partial_path.rename(files[name])
    con.close()
    print(f"data: generated {folder} in {time.perf_counter() - started:.1f} s")
    return files


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
    # The per-buyer summary the CLV section fits its models on (lifetime.customer_base_expr).
    "customer_base": f"""
WITH d AS (
  SELECT member_id,
         CAST(ceil((epoch(TIMESTAMP '{END}') - epoch(occurred_at)) / 86400) AS BIGINT) AS back,
         sum(amount) AS day_spend
  FROM tx WHERE occurred_at < TIMESTAMP '{END}' GROUP BY ALL),
b AS (
  SELECT member_id, max(back) AS days_before_first, min(back) AS days_before_last,
         count(*) AS purchase_days, sum(day_spend) AS spend,
         arg_max(day_spend, back) AS first_day_spend
  FROM d GROUP BY member_id)
SELECT b.*, r.segment FROM b JOIN ({_RFM}) AS r USING (member_id)""",
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
        "customer_base": customer_base_expr(tx, as_of=END),
        "rfm_segments": fa.rfm_segments_expr(tx, as_of=END),
        "referral_acquisition": fa.referral_acquisition_expr(tx, referrals),
    }


# --- timing -----------------------------------------------------------------------------------


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process's threads, result) of `run()`."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - started, time.process_time() - cpu, result


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


def compare(backend: Any, repeat: int, only: set[str] | None) -> None:
    """Prints, per aggregation, the best wall and CPU seconds of ours and of the hand SQL.

    CPU seconds (all of DuckDB's threads, `time.process_time`) are the fair ratio on a shared
    machine: wall time there mostly measures the other processes.
    """
    con = backend.con
    with quiet_ibis():
        exprs = ours(backend.table("tx"), backend.table("referrals"))
    exprs = {name: expr for name, expr in exprs.items() if only is None or name in only}
    print(
        f"{'aggregation':<22} {'fideliza':>9} {'hand SQL':>9} {'ratio':>6}   "
        f"{'CPU ours':>9} {'CPU hand':>9} {'ratio':>6}  same"
    )
    totals = [0.0, 0.0, 0.0, 0.0]
    for name, expr in exprs.items():
        best = [math.inf, math.inf, math.inf, math.inf]  # wall ours, wall hand, cpu ours, cpu hand
        mine = theirs = None
        for _ in range(repeat):
            with quiet_ibis():
                wall, cpu, mine = timed(expr.to_pyarrow)
            best[0], best[2] = min(best[0], wall), min(best[2], cpu)
            wall, cpu, theirs = timed(partial(run_sql, con, HAND[name]))
            best[1], best[3] = min(best[1], wall), min(best[3], cpu)
        totals = [t + b for t, b in zip(totals, best, strict=True)]
        same = same_rows(mine, theirs, sort=name in ("rfm", "customer_base"))
        print(f"{name:<22} {_figures(best)}  {'yes' if same else 'NO'}")
    print(f"{'all of the above':<22} {_figures(totals)}")


def _figures(best: list[float]) -> str:
    wall_ours, wall_hand, cpu_ours, cpu_hand = best
    return (
        f"{wall_ours:>8.3f}s {wall_hand:>8.3f}s {wall_ours / wall_hand:>5.2f}x   "
        f"{cpu_ours:>8.3f}s {cpu_hand:>8.3f}s {cpu_ours / cpu_hand:>5.2f}x"
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


def time_report(files: dict[str, Path]) -> Any:
    """Runs what `fideliza report --transactions … --surveys … --out …` runs; prints each step
    in wall and CPU seconds, then where the CLV section's time goes.

    Returns the opened data (left open for the comparisons, which run on the same tables).
    """
    steps: list[tuple[str, float, float]] = []

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    start = clock()
    data = fa.open_files(files["transactions"], surveys=files["surveys"], timezone="UTC")
    steps.append(("open_files (load + checks)", *_since(start)))
    marks: list[tuple[str, tuple[float, float]]] = []
    begun = clock()
    report = build_report(data, lang="en", progress=lambda name: marks.append((name, clock())))
    finished = clock()
    render_start = clock()
    render_html(report.figures, "en")
    rendering = _since(render_start)
    # Before the first mark, `as_of` was found (a query of its own).
    steps.append(("default as_of (max date)", *_between(begun, marks[0][1])))
    ends = [at for _, at in marks[1:]] + [finished]
    for (name, at), end in zip(marks, ends, strict=True):
        wall, cpu = _between(at, end)
        if name == SECTIONS[-1]:  # build_report renders the page after the last section
            wall, cpu = max(0.0, wall - rendering[0]), max(0.0, cpu - rendering[1])
        steps.append((f"  {name}", wall, cpu))
    steps.append(("render HTML", *rendering))
    with tempfile.TemporaryDirectory() as folder:
        written = clock()
        (Path(folder) / "report.html").write_text(report.html, encoding="utf-8")
        (Path(folder) / "report.json").write_text(report.json(), encoding="utf-8")
        steps.append(("write HTML + JSON", *_since(written)))
    total = _since(start)
    print(f"{'report step':<34} {'wall s':>8} {'CPU s':>8}")
    for name, wall, cpu in steps:
        print(f"{name:<34} {wall:>8.3f} {cpu:>8.3f}")
    html_wall, html_cpu = rendering[0] + steps[-1][1], rendering[1] + steps[-1][2]
    print(f"{'report end to end':<34} {total[0]:>8.3f} {total[1]:>8.3f}   (issue 4: <= 10 s)")
    print(f"{'  without HTML rendering/writing':<34} {total[0] - html_wall:>8.3f} "
          f"{total[1] - html_cpu:>8.3f}")  # fmt: skip
    clv = report.figures["customer_lifetime_value"]
    if clv is not None:
        print(
            f"CLV: {clv['customers']:,} buyers, BG/NBD converged={clv['bgnbd']['converged']}, "
            f"mean CLV {clv['mean_clv']:.2f}, mean P(alive) {clv['mean_probability_alive']:.3f}"
        )
    clv_breakdown(data)
    print()
    return data


def clv_breakdown(data: Any) -> None:
    """The CLV section's parts, run again one by one (the RFM segments it reads as the report
    keeps them, the query, each fit, the predictions)."""
    from fideliza.analytics import lifetime
    from fideliza.analytics.models import fit_bgnbd
    from fideliza.analytics.report_sections import SharedTables

    as_of = default_as_of(data)
    tx = fa.within(data.transactions, end=as_of)
    shared = SharedTables(tx, as_of=as_of, backend=data.backend)
    try:
        wall, cpu, segments = timed(lambda: shared.rfm)
        print(f"  RFM scores kept (buyers + ranks)   {wall:>8.3f} {cpu:>8.3f}")
        with quiet_ibis():
            expr = lifetime.customer_base_expr(tx, as_of=as_of, segments=segments)
            wall, cpu, table = timed(expr.to_pyarrow)
    finally:
        shared.release()
    print(f"  CLV per-buyer summary query        {wall:>8.3f} {cpu:>8.3f}")
    first = lifetime._ints(table, "days_before_first")
    last = lifetime._ints(table, "days_before_last")
    frequency = lifetime._ints(table, "purchase_days") - 1
    repeat_spend = lifetime._floats(table, "spend") - lifetime._floats(table, "first_day_spend")
    monetary = np.divide(repeat_spend, frequency, out=np.zeros(frequency.size), where=frequency > 0)
    recency, age = (first - last) / 7.0, (first - 1) / 7.0
    wall, cpu, model = timed(partial(fit_bgnbd, frequency, recency, age))
    print(f"  CLV BG/NBD fit ({frequency.size:,} buyers)   {wall:>8.3f} {cpu:>8.3f}")
    wall, cpu, _ = timed(partial(lifetime._fit_spend, frequency, monetary))
    print(f"  CLV Gamma-Gamma fit                {wall:>8.3f} {cpu:>8.3f}")
    wall, cpu, _ = timed(
        partial(
            lifetime._discounted_purchases, model, frequency, first - last, first - 1,
            months=12, rate=0.01,
        )
    )  # fmt: skip
    print(f"  CLV 12 months of predictions       {wall:>8.3f} {cpu:>8.3f}")


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def _between(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    return end[0] - start[0], end[1] - start[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--only", help="comma-separated aggregation names to compare")
    parser.add_argument("--skip-report", action="store_true", help="skip the end-to-end report")
    parser.add_argument("--loading", action="store_true", help="also time CSV/Parquet loading")
    args = parser.parse_args()

    files = data_files(args.transactions, args.customers, args.seed)
    if args.skip_report:
        data = fa.open_files(files["transactions"], timezone="UTC")
    else:
        data = time_report(files)
    backend = data.backend
    con = backend.con
    # The hand-written queries read the same loaded tables, under short names.
    con.execute("CREATE VIEW tx AS SELECT * FROM fideliza_transactions").fetchall()
    con.execute(
        "CREATE TABLE referrals AS SELECT member_id, referrer_id, "
        f"timezone('UTC', referred_at) AS referred_at FROM read_parquet('{files['referrals']}')"
    ).fetchall()
    buyers = con.execute("SELECT count(DISTINCT member_id) FROM tx").fetchall()[0][0]
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(
        f"{args.transactions:,} transactions of {buyers:,} buyers (DuckDB, {threads} threads); "
        f"best of {args.repeat}\n"
    )
    only = None if args.only is None else set(args.only.split(","))
    compare(backend, args.repeat, only)
    if args.loading:
        compare_loading(backend, args.repeat)
    data.close()


if __name__ == "__main__":
    main()
