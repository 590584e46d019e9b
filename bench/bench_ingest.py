"""Bulk ingest benchmark: N purchases for M members, 5 active rules and 3 tiers.

For each backend (SQLite; PostgreSQL when reachable) it measures, in the same run:
- the baseline: a bare INSERT of the same purchases (the same CSV read with the csv module,
  one row per purchase into a plain table: executemany on SQLite, COPY on PostgreSQL);
- the engine: `fideliza import purchases` (file reading, validation, rules, tiers, ledger);
- the floor: the rows the engine wrote (purchases, ledger transactions, entries, lots, rule
  usage, monthly buckets, tier history, events) copied as they are into a second prepared
  database (SQLite: INSERT … SELECT from the attached engine database; PostgreSQL: COPY out
  of one and into the other), with every index and constraint: the writes alone, no Python
  per row, what no engine writing those rows can beat;
and prints purchases/s, peak memory (RSS of the process that did the work) and the ratios.

    python -m bench.bench_ingest --purchases 1000000 --members 100000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.databases import create_postgres, drop_postgres

OUT = Path(__file__).parent / "out"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

RULES: list[dict[str, Any]] = [
    {
        "name": "1 point per euro",
        "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
    },
    {
        "name": "coffee",
        "conditions": {"items": {"include_categories": ["coffee"]}},
        "actions": [{"type": "points_per_item", "points": 2}],
        "caps": {"per_day": 10},
    },
    {
        "name": "weekend double",
        "conditions": {"weekdays": ["sat", "sun"]},
        "actions": [{"type": "multiplier", "factor": "2"}],
    },
    {
        "name": "big basket",
        "conditions": {"min_amount": "30.00"},
        "actions": [{"type": "fixed_bonus", "points": 20}],
    },
    {
        "name": "welcome",
        "conditions": {"first_purchase": True},
        "actions": [{"type": "fixed_bonus", "points": 50}],
    },
]
TIERS: dict[str, Any] = {
    "levels": [
        {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0"},
        {"code": "SILVER", "name": "Silver", "rank": 2, "threshold": "500", "multiplier": "1.25"},
        {"code": "GOLD", "name": "Gold", "rank": 3, "threshold": "1500", "multiplier": "1.5"},
    ],
    "policy": {"basis": "points", "period": "calendar_year", "grace_periods": 1},
}


def _data_file(purchases: int, members: int, seed: int) -> Path:
    from fideliza.demo.generator import write_bench_csv

    OUT.mkdir(exist_ok=True)
    path = OUT / f"purchases-{purchases}-{members}-{seed}.csv"
    if not path.exists():
        started = time.perf_counter()
        write_bench_csv(path, members, purchases, seed)
        print(f"  generated {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def _prepare(url: str, members: int) -> None:
    """Schema, the program with its rules and tiers, and the members (not timed)."""
    from fideliza.db import make_engine, make_session_factory, unit_of_work
    from fideliza.demo.generator import generate_members
    from fideliza.members import service as member_service
    from fideliza.migrations import upgrade
    from fideliza.programs import service as programs
    from fideliza.rules import service as rules
    from fideliza.tiers import service as tiers

    upgrade(url)
    factory = make_session_factory(make_engine(url))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    people = generate_members(members, seed=1, start=start, end=datetime(2026, 1, 1, tzinfo=UTC))
    with unit_of_work(factory) as db:
        program = programs.create(
            db,
            code="bench",
            name="Bench",
            currency="EUR",
            timezone="Europe/Madrid",
            now=start,
            settings={"return_window_days": 14, "expiry": {"mode": "end_of_month", "months": 12}},
        )
        for rule in RULES:
            rules.create(db, program=program, definition=rule, now=start)
        tiers.configure(db, program=program, config=TIERS, now=start)
    for chunk in range(0, len(people), 20_000):
        with unit_of_work(factory) as db:
            program = programs.get_by_code(db, code="bench")
            member_service.enrol_many(
                db,
                program=program,
                now=start,
                rows=[{"external_id": p.external_id} for p in people[chunk : chunk + 20_000]],
            )


def _peak_mib() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux keeps that across
    exec, so a phase would report the parent's peak (the parent generated the data file)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _phase_baseline(url: str, path: Path) -> dict[str, float]:
    """The same purchases, read from the same file, inserted bare: one row each."""
    engine = create_engine(url)
    columns = "external_id, member_id, occurred_at, amount, currency, channel, store, items"
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS bare_purchases"))
        connection.execute(
            text(
                "CREATE TABLE bare_purchases (external_id TEXT, member_id TEXT, occurred_at TEXT, "
                "amount TEXT, currency TEXT, channel TEXT, store TEXT, items TEXT)"
            )
        )
    started = time.perf_counter()
    rows = 0
    with engine.begin() as connection, path.open(newline="") as stream:
        raw: Any = connection.connection.driver_connection
        reader = csv.reader(stream)
        next(reader)
        if engine.dialect.name == "sqlite":
            cursor = raw.cursor()
            while batch := [row for _, row in zip(range(5000), reader, strict=False)]:
                cursor.executemany(
                    f"INSERT INTO bare_purchases ({columns}) VALUES (?,?,?,?,?,?,?,?)", batch
                )
                rows += len(batch)
        else:
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY bare_purchases ({columns}) FROM STDIN") as copy,
            ):
                for row in reader:
                    copy.write_row(row)
                    rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _phase_import(url: str, path: Path, batch_size: int) -> dict[str, float]:
    from fideliza.db import make_engine, make_session_factory
    from fideliza.purchases.importer import import_purchases

    factory = make_session_factory(make_engine(url))
    started = time.perf_counter()
    report = import_purchases(
        factory,
        program_code="bench",
        path=path,
        now=datetime(2026, 1, 15, tzinfo=UTC),
        batch_size=batch_size,
    )
    return {
        "seconds": time.perf_counter() - started,
        "rows": report.recorded,
        "errors": len(report.errors),
    }


# The tables an import writes, parents first.
WRITTEN = (
    "ledger_transactions",
    "ledger_entries",
    "point_lots",
    "lot_allocations",
    "purchases",
    "rule_usage",
    "member_months",
    "tier_history",
    "outbox",
)


def _phase_floor(url: str, source: str) -> dict[str, float]:
    """Copies what the engine wrote in `source` into the prepared database `url`, timed."""
    engine = create_engine(url)
    rows = 0
    started = time.perf_counter()
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            raw: Any = connection.connection.driver_connection
            raw.isolation_level = None
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute("PRAGMA foreign_keys=ON")
            raw.execute("ATTACH DATABASE ? AS engine", (make_url(source).database,))
            started = time.perf_counter()
            raw.execute("BEGIN IMMEDIATE")
            for table in WRITTEN:
                rows += raw.execute(
                    f"INSERT INTO main.{table} SELECT * FROM engine.{table}"
                ).rowcount
            raw.execute("COMMIT")
            seconds = time.perf_counter() - started
            purchases = raw.execute("SELECT count(*) FROM main.purchases").fetchone()[0]
    else:
        import psycopg

        target_url = make_url(url).set(drivername="postgresql").render_as_string(False)
        source_url = make_url(source).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(source_url) as read, psycopg.connect(target_url) as write:
            started = time.perf_counter()
            for table in WRITTEN:
                with (
                    read.cursor().copy(f"COPY {table} TO STDOUT") as out,
                    write.cursor().copy(f"COPY {table} FROM STDIN") as into,
                ):
                    for block in out:
                        into.write(block)
                # Tables with serial ids: their sequences go on after the copied rows.
                rows += write.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            write.commit()
            seconds = time.perf_counter() - started
            purchases = write.execute("SELECT count(*) FROM purchases").fetchone()[0]  # type: ignore[index]
    engine.dispose()
    return {"seconds": seconds, "rows": purchases, "table_rows": rows}


def _run_phase(
    phase: str,
    url: str,
    path: Path | None,
    members: int,
    source: str | None = None,
    batch_size: int = 50_000,
) -> dict[str, float]:
    """Runs a phase in its own process, so its peak memory is its own."""
    command = [
        sys.executable,
        "-m",
        "bench.bench_ingest",
        "--phase",
        phase,
        "--url",
        url,
        "--members",
        str(members),
    ]
    if path is not None:
        command += ["--file", str(path)]
    if source is not None:
        command += ["--source", source]
    command += ["--batch-size", str(batch_size)]
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _fresh_postgres(server: str) -> str | None:
    try:
        return create_postgres(server)
    except Exception as error:  # no server here: the SQLite figures still stand
        print(f"  PostgreSQL skipped: {error.__class__.__name__}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--postgres", default=os.environ.get("FIDELIZA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--phase", choices=["prepare", "baseline", "import", "floor"])
    parser.add_argument("--source", help="floor phase: the database the engine wrote")
    parser.add_argument("--batch-size", type=int, default=50_000, help="purchases per transaction")
    parser.add_argument("--url")
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.phase:
        if args.phase == "prepare":
            _prepare(args.url, args.members)
            result: dict[str, float] = {}
        elif args.phase == "baseline":
            result = _phase_baseline(args.url, args.file)
        elif args.phase == "floor":
            result = _phase_floor(args.url, args.source)
        else:
            result = _phase_import(args.url, args.file, args.batch_size)
        result["peak_mib"] = _peak_mib()
        print(json.dumps(result))
        return
    print(
        f"bulk ingest: {args.purchases:,} purchases, {args.members:,} members, 5 rules, 3 tiers, "
        f"{args.batch_size:,} purchases per transaction"
    )
    path = _data_file(args.purchases, args.members, args.seed)
    OUT.mkdir(exist_ok=True)
    backends: list[tuple[str, str, str]] = []  # name, engine database, floor database
    sqlite_paths = [OUT / f"bench-{secrets.token_hex(3)}.db" for _ in range(2)]
    backends.append(("sqlite", f"sqlite:///{sqlite_paths[0]}", f"sqlite:///{sqlite_paths[1]}"))
    postgres = [_fresh_postgres(args.postgres), _fresh_postgres(args.postgres)]
    if postgres[0] and postgres[1]:
        backends.append(("postgresql", postgres[0], postgres[1]))
    header = ("backend", "engine/s", "bare/s", "ratio", "floor/s", "÷floor", "MiB", "bare MiB")
    print("{:<11} {:>9} {:>9} {:>6} {:>9} {:>6} {:>6} {:>8}".format(*header))
    try:
        for name, url, floor_url in backends:
            _run_phase("prepare", url, None, args.members)
            bare = _run_phase("baseline", url, path, args.members)
            engine = _run_phase("import", url, path, args.members, batch_size=args.batch_size)
            _run_phase("prepare", floor_url, None, args.members)
            floor = _run_phase("floor", floor_url, None, args.members, source=url)
            engine_rate = engine["rows"] / engine["seconds"]
            bare_rate = bare["rows"] / bare["seconds"]
            floor_rate = floor["rows"] / floor["seconds"]
            print(
                f"{name:<11} {engine_rate:>9,.0f} {bare_rate:>9,.0f} "
                f"{bare_rate / engine_rate:>5.1f}× {floor_rate:>9,.0f} "
                f"{floor_rate / engine_rate:>5.1f}× {engine['peak_mib']:>6,.0f} "
                f"{bare['peak_mib']:>8,.0f}",
                flush=True,
            )
            if engine.get("errors"):
                print(f"  ({engine['errors']:.0f} rows refused)")
    finally:
        for sqlite_path in sqlite_paths:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        for database in postgres:
            if database:
                drop_postgres(args.postgres, database)


if __name__ == "__main__":
    main()
