"""Bulk ingest benchmark: N purchases for M members, 5 active rules and 3 tiers.

For each backend (SQLite; PostgreSQL when reachable) it measures, in the same run:
- the baseline: a bare INSERT of the same purchases (the same CSV read with the csv module,
  one row per purchase into a plain table: executemany on SQLite, COPY on PostgreSQL);
- the engine: `fideliza import purchases` (file reading, validation, rules, tiers, ledger);
and prints purchases/s, peak memory (RSS of the process that did the work) and the ratio.

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


def _phase_import(url: str, path: Path) -> dict[str, float]:
    from fideliza.db import make_engine, make_session_factory
    from fideliza.purchases.importer import import_purchases

    factory = make_session_factory(make_engine(url))
    started = time.perf_counter()
    report = import_purchases(
        factory,
        program_code="bench",
        path=path,
        now=datetime(2026, 1, 15, tzinfo=UTC),
        batch_size=5000,
    )
    return {
        "seconds": time.perf_counter() - started,
        "rows": report.recorded,
        "errors": len(report.errors),
    }


def _run_phase(phase: str, url: str, path: Path | None, members: int) -> dict[str, float]:
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
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _fresh_postgres(server: str) -> str | None:
    try:
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        name = f"fideliza_bench_{secrets.token_hex(4)}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return make_url(server).set(database=name).render_as_string(hide_password=False)
    except Exception as error:  # no server here: the SQLite figures still stand
        print(f"  PostgreSQL skipped: {error.__class__.__name__}")
        return None


def _drop_postgres(server: str, url: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


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
    parser.add_argument("--phase", choices=["prepare", "baseline", "import"])
    parser.add_argument("--url")
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.phase:
        if args.phase == "prepare":
            _prepare(args.url, args.members)
            result: dict[str, float] = {}
        elif args.phase == "baseline":
            result = _phase_baseline(args.url, args.file)
        else:
            result = _phase_import(args.url, args.file)
        result["peak_mib"] = _peak_mib()
        print(json.dumps(result))
        return
    print(f"bulk ingest: {args.purchases:,} purchases, {args.members:,} members, 5 rules, 3 tiers")
    path = _data_file(args.purchases, args.members, args.seed)
    OUT.mkdir(exist_ok=True)
    backends: list[tuple[str, str]] = []
    sqlite_path = OUT / f"bench-{secrets.token_hex(3)}.db"
    backends.append(("sqlite", f"sqlite:///{sqlite_path}"))
    postgres = _fresh_postgres(args.postgres)
    if postgres:
        backends.append(("postgresql", postgres))
    header = ("backend", "engine/s", "bare/s", "ratio", "engine MiB", "bare MiB")
    print("{:<11} {:>10} {:>10} {:>6} {:>11} {:>9}".format(*header))
    try:
        for name, url in backends:
            _run_phase("prepare", url, None, args.members)
            bare = _run_phase("baseline", url, path, args.members)
            engine = _run_phase("import", url, path, args.members)
            engine_rate = engine["rows"] / engine["seconds"]
            bare_rate = bare["rows"] / bare["seconds"]
            ratio = bare_rate / engine_rate
            print(
                f"{name:<11} {engine_rate:>10,.0f} {bare_rate:>10,.0f} {ratio:>5.1f}× "
                f"{engine['peak_mib']:>11,.0f} {bare['peak_mib']:>9,.0f}",
                flush=True,
            )
            if engine.get("errors"):
                print(f"  ({engine['errors']:.0f} rows refused)")
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        if postgres:
            _drop_postgres(args.postgres, postgres)


if __name__ == "__main__":
    main()
