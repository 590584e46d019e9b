"""Messaging triggers benchmark: evaluate every trigger (welcome, birthdays, tier changes,
expiring points, win-back) for N members.

For each backend (SQLite; PostgreSQL when reachable) it loads N members with one point lot and
one purchase each (expiries and purchase dates spread over two years), then measures in the same
run:
- the baseline: a bare scan of the members table (`SELECT count(*) … WHERE status = 'active'`);
- the engine: `messaging.service.evaluate_triggers` (set-based SQL, only the due members become
  outbox rows), then a second evaluation, which must queue nothing (idempotent per period);
and prints members/s, the messages queued per trigger and the ratio to the bare scan.
Target: ≤ 30 s for 1,000,000 members on SQLite.

    python -m bench.bench_messaging --members 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from bench.databases import create_postgres, drop_postgres
from fideliza.db import bulk_insert, make_engine, make_session_factory, unit_of_work

OUT = Path(__file__).parent / "out"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
CHUNK = 100_000
TIER_CHANGES = 2_000


def _load(url: str, members: int, seed: int) -> int:
    """Migrates a fresh database and loads the program's members, lots and purchases."""
    from fideliza.ledger.models import LedgerTransaction, Lot
    from fideliza.members.models import Member
    from fideliza.migrations import upgrade
    from fideliza.programs import service as programs
    from fideliza.purchases.models import Purchase
    from fideliza.tiers.models import TierHistory, TierLevelRow

    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = random.Random(seed)
    two_years = 730 * 86_400
    with unit_of_work(factory) as db:
        program = programs.create(
            db,
            code="bench",
            name="Bench",
            currency="EUR",
            timezone="Europe/Madrid",
            settings={},
            now=NOW,
        )
        program_id = program.id
        for rank, code in enumerate(("silver", "gold"), start=1):
            db.execute(
                insert(TierLevelRow),
                {
                    "program_id": program_id,
                    "code": code,
                    "name": code.title(),
                    "rank": rank,
                    "threshold": Decimal(rank * 100),
                    "multiplier": Decimal(1),
                    "benefits": {},
                },
            )
        seed_tx = db.execute(
            insert(LedgerTransaction).returning(LedgerTransaction.id),
            {"program_id": program_id, "kind": "earn", "occurred_at": NOW, "recorded_at": NOW},
        ).scalar_one()
    member_columns = [
        "id",
        "program_id",
        "external_id",
        "first_name",
        "email",
        "birthday",
        "locale",
        "consent",
        "attributes",
        "status",
        "tier_grace_used",
        "enrolled_at",
    ]
    lot_columns = [
        "id",
        "program_id",
        "member_id",
        "earn_transaction_id",
        "amount",
        "remaining",
        "state",
        "earned_at",
        "available_at",
        "expires_at",
    ]
    purchase_columns = [
        "id",
        "program_id",
        "member_id",
        "external_id",
        "content_hash",
        "occurred_at",
        "amount",
        "currency",
        "items",
        "points_earned",
        "points_reversed",
        "amount_returned",
    ]
    consent = {"email": True, "marketing": True}
    for start in range(1, members + 1, CHUNK):
        ids = range(start, min(start + CHUNK, members + 1))
        member_rows: list[tuple[Any, ...]] = []
        lot_rows: list[tuple[Any, ...]] = []
        purchase_rows: list[tuple[Any, ...]] = []
        for member_id in ids:
            enrolled = NOW - timedelta(seconds=rng.randrange(two_years))
            birthday = date(1950, 1, 1) + timedelta(days=rng.randrange(20_000))
            member_rows.append(
                (
                    member_id,
                    program_id,
                    f"m{member_id}",
                    "Ana",
                    f"m{member_id}@example.com",
                    birthday,
                    "es",
                    consent,
                    {},
                    "active",
                    0,
                    enrolled,
                )
            )
            expires = NOW + timedelta(seconds=rng.randrange(-two_years // 2, two_years // 2))
            state = "available" if expires > NOW else "expired"
            lot_rows.append(
                (member_id, program_id, member_id, seed_tx, 100, 100, state, NOW, NOW, expires)
            )
            bought = NOW - timedelta(seconds=rng.randrange(two_years))
            purchase_rows.append(
                (
                    member_id,
                    program_id,
                    member_id,
                    f"t{member_id}",
                    "0" * 64,
                    bought,
                    Decimal("10.0000"),
                    "EUR",
                    [],
                    10,
                    0,
                    Decimal(0),
                )
            )
        with unit_of_work(factory) as db:
            bulk_insert(db, Member.__table__, member_columns, member_rows)
            bulk_insert(db, Lot.__table__, lot_columns, lot_rows)
            bulk_insert(db, Purchase.__table__, purchase_columns, purchase_rows)
    with unit_of_work(factory) as db:
        db.execute(
            insert(TierHistory),
            [
                {
                    "program_id": program_id,
                    "member_id": rng.randrange(1, members + 1),
                    "from_code": "silver" if index % 3 else "gold",
                    "to_code": "gold" if index % 3 else "silver",
                    "changed_at": NOW - timedelta(seconds=rng.randrange(30 * 86_400)),
                    "reason": "bench",
                }
                for index in range(min(TIER_CHANGES, members))
            ],
        )
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("ANALYZE"))
        else:
            connection.execute(text("ANALYZE"))
        connection.commit()
    engine.dispose()
    return program_id


def _measure(url: str, program_id: int) -> dict[str, Any]:
    from fideliza.messaging import service as messaging

    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with factory() as db:
            started = time.perf_counter()
            scanned = db.execute(
                text("SELECT count(*) FROM members WHERE program_id = :p AND status = 'active'"),
                {"p": program_id},
            ).scalar_one()
            bare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with unit_of_work(factory) as db:
            counts = messaging.evaluate_triggers(db, program_id=program_id, now=NOW)
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with unit_of_work(factory) as db:
            again = messaging.evaluate_triggers(db, program_id=program_id, now=NOW)
        second_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "scanned": scanned,
        "bare_seconds": bare_seconds,
        "first_seconds": first_seconds,
        "second_seconds": second_seconds,
        "counts": counts,
        "again": sum(again.values()),
    }


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
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres", default=os.environ.get("FIDELIZA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only.")
    args = parser.parse_args()
    print(f"messaging triggers: {args.members:,} members (1 lot, 1 purchase each), as of {NOW}")
    OUT.mkdir(exist_ok=True)
    sqlite_path = OUT / f"bench-messaging-{secrets.token_hex(3)}.db"
    backends: list[tuple[str, str]] = [("sqlite", f"sqlite:///{sqlite_path}")]
    postgres = None if args.no_postgres else _fresh_postgres(args.postgres)
    if postgres:
        backends.append(("postgresql", postgres))
    header = ("backend", "load s", "triggers s", "members/s", "again s", "bare s", "ratio")
    try:
        results = []
        for name, url in backends:
            started = time.perf_counter()
            program_id = _load(url, args.members, args.seed)
            load_seconds = time.perf_counter() - started
            results.append((name, load_seconds, _measure(url, program_id)))
        print("{:<11} {:>8} {:>11} {:>11} {:>8} {:>8} {:>7}".format(*header))
        for name, load_seconds, r in results:
            rate = args.members / r["first_seconds"]
            ratio = r["first_seconds"] / max(r["bare_seconds"], 1e-9)
            print(
                f"{name:<11} {load_seconds:>8.1f} {r['first_seconds']:>11.2f} {rate:>11,.0f} "
                f"{r['second_seconds']:>8.2f} {r['bare_seconds']:>8.3f} {ratio:>6.0f}×"
            )
            queued = ", ".join(f"{kind} {count:,}" for kind, count in r["counts"].items())
            print(f"  queued: {queued}; second run queued {r['again']}")
            if name == "sqlite" and args.members >= 1_000_000:
                verdict = "ok" if r["first_seconds"] <= 30 and r["again"] == 0 else "MISSED"
                print(f"  target ≤ 30 s for 1M members on SQLite: {verdict}")
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        if postgres:
            drop_postgres(args.postgres, postgres)


if __name__ == "__main__":
    main()
