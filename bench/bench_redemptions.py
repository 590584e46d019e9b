"""One-step redemptions benchmark: CPU per redemption, alone and in batches (group commit).

On a fresh database (PostgreSQL by default; SQLite with --sqlite) it measures, in the same run
and interleaved round by round (so that a change of the machine's load hits every mode alike):
- one by one: what POST /v1/members/{id}/redemptions did before batches, each redemption its
  own transaction: members.get, members.require_active, ledger.hold_and_capture and
  ledger.balance, committed;
- batches of 1, 8 and 32: `ledger.redemptions.redeem_many`, one transaction a batch, committed
  (each batch redeems for distinct members, as concurrent tills do).
For each it prints the CPU time of this process (the services: SQLAlchemy, the driver, the
planning) and of the PostgreSQL backend serving it (read from /proc when the server runs on
this machine), per redemption, and the wall time. No HTTP: see bench_api for the whole path.

    python -m bench.bench_redemptions                       (PostgreSQL, 1,920 per mode)
    python -m bench.bench_redemptions --rounds 2 --sqlite   (smoke test)

Target (issue 3): 200 redemptions/s with p99 <= 30 ms on 2 cores through the HTTP API: the
services must leave most of the 5 ms of CPU a redemption may take to HTTP and the database.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bench.databases import create_postgres, drop_postgres

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH_SIZES = (1, 8, 32)
PER_ROUND = 96  # redemptions of each mode per round: a multiple of every batch size
LOTS_PER_MEMBER = 3


@dataclass
class Tally:
    """What one mode cost, summed over the rounds."""

    redemptions: int = 0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    wall_s: float = 0.0
    answers: dict[str, int] = field(default_factory=dict)


def _server_cpu_s(pid: int | None) -> float:
    """CPU seconds a local PostgreSQL backend has used (0 when it cannot be read)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _backend_pid(factory: sessionmaker[Session]) -> int | None:
    """The PostgreSQL backend of the pooled connection the runs use (pool of one)."""
    with factory() as db:
        if db.get_bind().dialect.name != "postgresql":
            return None
        return int(db.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _setup(factory: sessionmaker[Session], *, members: int, now: datetime) -> tuple[Any, list[int]]:
    """A program and `members` members, each with a few lots of points to spend."""
    from fideliza.db import unit_of_work
    from fideliza.ledger import service as ledger
    from fideliza.ledger.service import EarnLine
    from fideliza.members import service as member_service
    from fideliza.programs import service as programs

    with unit_of_work(factory) as db:
        program = programs.create(
            db,
            code=f"bench-{secrets.token_hex(4)}",
            name="Bench",
            currency="EUR",
            timezone="UTC",
            now=now,
            settings={"expiry": {"mode": "days", "days": 365}},
        )
        member_service.enrol_many(
            db,
            program=program,
            rows=[{"external_id": f"m{i}", "first_name": "Ana"} for i in range(members)],
            now=now,
        )
        ids = sorted(
            member_service.ids_by_external_id(
                db, program_id=program.id, external_ids=[f"m{i}" for i in range(members)]
            ).values()
        )
        for member_id, lot in itertools.product(ids, range(LOTS_PER_MEMBER)):
            ledger.earn(
                db,
                program_id=program.id,
                settings=programs.settings_of(program),
                timezone_name="UTC",
                member_id=member_id,
                lines=[EarnLine(points=1_000_000, reason="bench")],
                occurred_at=now - timedelta(days=lot + 1),
                now=now,
                source_type="bench",
                source_ref=f"{member_id}-{lot}",
                reason="bench",
            )
        db.expunge(program)
    return program, ids


def _one_by_one(
    factory: sessionmaker[Session], program: Any, requests: list[Any], now: datetime
) -> list[str]:
    """The route before batches: each redemption in its own transaction."""
    from fideliza.db import unit_of_work
    from fideliza.ledger import service as ledger
    from fideliza.members import service as members
    from fideliza.programs import service as programs

    outcomes = []
    for request in requests:
        with unit_of_work(factory) as db:
            member = members.get(db, program_id=program.id, member_id=request.member_id)
            members.require_active(member)
            _, replayed = ledger.hold_and_capture(
                db,
                program_id=program.id,
                settings=programs.settings_of(program),
                member_id=member.id,
                points=request.points,
                reference=request.reference,
                now=now,
                reason=request.reason,
            )
            ledger.balance(db, member_id=member.id)
        outcomes.append("replayed" if replayed else "redeemed")
    return outcomes


def _batched(size: int) -> Callable[..., list[str]]:
    def run(
        factory: sessionmaker[Session], program: Any, requests: list[Any], now: datetime
    ) -> list[str]:
        from fideliza.db import unit_of_work
        from fideliza.ledger import redemptions
        from fideliza.programs import service as programs

        outcomes = []
        for start in range(0, len(requests), size):
            with unit_of_work(factory) as db:
                answers = redemptions.redeem_many(
                    db,
                    program_id=program.id,
                    settings=programs.settings_of(program),
                    requests=requests[start : start + size],
                    now=now,
                )
            outcomes += [
                type(a).__name__ if not isinstance(a, redemptions.Redeemed) else "redeemed"
                for a in answers
            ]
        return outcomes

    return run


def _requests(member_ids: list[int], count: int, tag: str) -> list[Any]:
    """`count` redemptions of 1-5 points, members in turn (distinct within any batch)."""
    from fideliza.ledger.redemptions import RedemptionRequest

    return [
        RedemptionRequest(
            member_id=member_ids[i % len(member_ids)],
            points=1 + i % 5,
            reference=f"redemption:{tag}-{i}",
            reason="bench",
        )
        for i in range(count)
    ]


def run(
    url: str, *, rounds: int, members: int, sizes: tuple[int, ...] = BATCH_SIZES
) -> dict[str, Tally]:
    from fideliza.db import make_engine, make_session_factory

    engine = make_engine(url, pool_size=1)  # one connection: the backend whose CPU is read
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    modes: dict[str, Callable[..., list[str]]] = {"one by one (hold_and_capture)": _one_by_one}
    modes |= {f"batches of {size:>2} (redeem_many)": _batched(size) for size in sizes}
    tallies = {name: Tally() for name in modes}
    try:
        program, member_ids = _setup(factory, members=members, now=now)
        backend = _backend_pid(factory)
        for name, work in modes.items():  # warm-up: statement caches, imports
            work(factory, program, _requests(member_ids, 32, f"warm-{name}"), now)
        for turn in range(rounds):
            for index, (name, work) in enumerate(modes.items()):
                requests = _requests(member_ids, PER_ROUND, f"r{turn}-{index}")
                tally = tallies[name]
                server_before = _server_cpu_s(backend)
                cpu_before, wall_before = time.process_time(), time.perf_counter()
                outcomes = work(factory, program, requests, now)
                tally.cpu_s += time.process_time() - cpu_before
                tally.wall_s += time.perf_counter() - wall_before
                tally.server_cpu_s += _server_cpu_s(backend) - server_before
                tally.redemptions += len(requests)
                for outcome in outcomes:
                    tally.answers[outcome] = tally.answers.get(outcome, 0) + 1
    finally:
        engine.dispose()
    return tallies


def _report(backend: str, tallies: dict[str, Tally]) -> None:
    print(
        f"{backend}: CPU per redemption (this process / the database backend), wall per redemption"
    )
    base = next(iter(tallies.values()))
    for name, tally in tallies.items():
        n = tally.redemptions
        cpu_ms = tally.cpu_s / n * 1000
        print(
            f"  {name:<32} process {cpu_ms:6.3f} ms  server {tally.server_cpu_s / n * 1000:6.3f} ms"
            f"  wall {tally.wall_s / n * 1000:6.3f} ms  ({base.cpu_s / tally.cpu_s:4.1f}x less"
            f" process CPU; {n:,} redemptions: {tally.answers})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help=f"rounds of {PER_ROUND} per mode")
    parser.add_argument("--members", type=int, default=256, help="members redeeming")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--sizes", default=",".join(map(str, BATCH_SIZES)), help="batch sizes, comma-separated"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FIDELIZA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server URL (a database is created and dropped)",
    )
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    if any(PER_ROUND % size for size in sizes):
        parser.error(f"every batch size must divide {PER_ROUND}")
    import fideliza.schema  # noqa: F401 - every table mapped

    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    if args.sqlite:
        from fideliza.migrations import upgrade

        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench-redemptions.db'}"
            upgrade(url)
            _report("sqlite", run(url, rounds=args.rounds, members=args.members, sizes=sizes))
    else:
        url = create_postgres(args.postgres, migrate=True)
        try:
            _report("postgresql", run(url, rounds=args.rounds, members=args.members, sizes=sizes))
        finally:
            drop_postgres(args.postgres, url)
    print(f"load average after:  {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
