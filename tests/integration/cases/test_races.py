"""Races for real: agents acting on one case at the same instant (threads, own sessions).

On PostgreSQL the case row lock (`FOR UPDATE`) keeps them apart; SQLite serializes writers at
BEGIN, so there the same tests check the serialized outcome is the same.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.cases import service as cases
from fideliza.cases.domain import parse_gesture
from fideliza.cases.models import CaseEvent
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.programs import service as programs
from tests.integration.cases.builders import complaint, shop

T = TypeVar("T")
THREADS = 8
TIMEOUT_SECONDS = 60


def race(
    factory: sessionmaker[Session], count: int, work: Callable[[Session, int], T]
) -> list[T | Exception]:
    """Runs `work(db, i)` in `count` threads released together; each commits or rolls back."""
    barrier = threading.Barrier(count)

    def one(index: int) -> T | Exception:
        with factory() as db:
            barrier.wait(timeout=TIMEOUT_SECONDS)
            try:
                result = work(db, index)
                db.commit()
                return result
            except Exception as error:
                db.rollback()
                return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one, index) for index in range(count)]
        return [future.result(timeout=TIMEOUT_SECONDS) for future in futures]


def kinds(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def test_resolving_one_case_at_once_gives_the_goodwill_exactly_once(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program, member = shop(db, now)
        case = complaint(db, program, member, now)
        db.commit()
        program_id, case_id, member_id = program.id, case.id, member.id

    def resolve(db: Session, index: int) -> int:
        found = programs.get(db, program_id=program_id)
        resolution = cases.parse_resolution(
            summary=f"agent {index} apologizes",
            gesture=parse_gesture(goodwill_points=25),
            now=now,
        )
        return cases.resolve(db, program=found, case_id=case_id, resolution=resolution, now=now).id

    results = race(session_factory, THREADS, resolve)
    assert kinds(results) == Counter({"ok": 1, "InvalidState": THREADS - 1})
    with session_factory() as db:
        assert ledger.balance(db, member_id=member_id).available == 25
        assert check_ledger(db, program_id=program_id) == []
        resolved = db.scalar(
            select(func.count())
            .select_from(CaseEvent)
            .where(CaseEvent.case_id == case_id, CaseEvent.kind == "resolved")
        )
        assert resolved == 1


def test_concurrent_breach_jobs_record_each_breach_once(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program, member = shop(db, now)
        for _ in range(12):
            complaint(db, program, member, now, severity="critical")
        db.commit()
        program_id = program.id
    later = now + timedelta(hours=2)  # past the 1-hour response deadline, not the resolution

    results = race(
        session_factory,
        4,
        lambda db, _: cases.flag_breaches(db, program_id=program_id, now=later, limit=5),
    )
    assert kinds(results) == Counter({"ok": 4})
    with session_factory() as db:
        rest = cases.flag_breaches(db, program_id=program_id, now=later)
        db.commit()
        recorded = db.scalar(
            select(func.count())
            .select_from(CaseEvent)
            .where(CaseEvent.program_id == program_id, CaseEvent.kind == "breached")
        )
    assert sum(r for r in results if isinstance(r, int)) + rest == 12
    assert recorded == 12
