"""Lifecycle job races for real: several workers run the daily job for a program at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.lifecycle import service as lifecycle
from fideliza.lifecycle.models import LifecycleGrant
from tests.factories import make_member, make_program

WORKERS = 6
TIMEOUT_SECONDS = 60
NOON = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def test_workers_running_the_job_at_once_grant_each_bonus_once(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as db:
        program = make_program(db, now=NOON)
        lifecycle.configure(
            db,
            program=program,
            config={"welcome_points": 5, "birthday": {"points": 50}},
            now=NOON,
        )
        born_today = [
            make_member(db, program=program, now=NOON, birthday=date(1980 + i, 3, 10)).id
            for i in range(30)
        ]
        db.commit()
        program_id = program.id

    barrier = threading.Barrier(WORKERS)

    def worker(_: int) -> dict[str, int]:
        with session_factory() as db:
            barrier.wait(timeout=TIMEOUT_SECONDS)
            counts = lifecycle.run_due(db, program_id=program_id, now=NOON)
            db.commit()
            return counts

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = [
            f.result(timeout=TIMEOUT_SECONDS)
            for f in [pool.submit(worker, i) for i in range(WORKERS)]
        ]

    assert sum(r["birthday"] for r in results) == 30
    assert sum(r["welcome"] for r in results) == 30
    with session_factory() as db:
        assert all(ledger.balance(db, member_id=m).available == 55 for m in born_today)
        grants = db.scalar(select(func.count()).where(LifecycleGrant.program_id == program_id))
        assert grants == 60
        assert check_ledger(db, program_id=program_id) == []
