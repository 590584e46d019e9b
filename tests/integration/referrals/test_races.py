"""Referral races for real: threads with their own sessions hit the database at once.

On PostgreSQL the workers overlap and only row locks (SKIP LOCKED) and unique keys keep them
apart; SQLite serialises writers, so there the same tests check the serialised outcome.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.programs.models import OutboxEvent
from fideliza.referrals import service as referrals
from fideliza.referrals.models import Referral
from tests.factories import make_member, make_program

T = TypeVar("T")
WORKERS = 6
TIMEOUT_SECONDS = 60


def race(factory: sessionmaker[Session], count: int, work: Callable[[Session, int], T]) -> list[T]:
    """Runs `work(db, i)` in `count` threads released together; each commits its own work."""
    barrier = threading.Barrier(count)

    def one(index: int) -> T:
        with factory() as db:
            barrier.wait(timeout=TIMEOUT_SECONDS)
            result = work(db, index)
            db.commit()
            return result

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one, index) for index in range(count)]
        return [future.result(timeout=TIMEOUT_SECONDS) for future in futures]


def test_workers_paying_at_once_pay_each_referral_exactly_once(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program = make_program(db, now=now)
        referrals.configure(
            db,
            program=program,
            config={"trigger": "enrolment", "referrer_points": 10, "referred_points": 3},
            now=now,
        )
        referrer = make_member(db, program=program, now=now)
        code = referrals.code_for(db, program=program, member=referrer, now=now)
        referred = [
            referrals.enrol_with_referral(
                db,
                program=program,
                data={"external_id": f"n-{secrets.token_hex(4)}"},
                referral_code=code,
                now=now,
            )[0].id
            for _ in range(25)
        ]
        db.commit()
        program_id, referrer_id = program.id, referrer.id

    paid = race(
        session_factory,
        WORKERS,
        lambda db, _: referrals.pay_due(db, program_id=program_id, now=now + timedelta(hours=1)),
    )

    assert sum(paid) == 25
    with session_factory() as db:
        assert ledger.balance(db, member_id=referrer_id).available == 250
        assert all(ledger.balance(db, member_id=m).available == 3 for m in referred)
        events = db.scalar(
            select(func.count()).where(
                OutboxEvent.program_id == program_id,
                OutboxEvent.event_type == "referral.completed",
            )
        )
        assert events == 25
        assert check_ledger(db, program_id=program_id) == []


def test_enrolments_racing_on_one_code_respect_the_cap(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program = make_program(db, now=now)
        referrals.configure(
            db,
            program=program,
            config={"referrer_points": 10, "cap": {"max_referrals": 3, "period": "ever"}},
            now=now,
        )
        referrer = make_member(db, program=program, now=now)
        code = referrals.code_for(db, program=program, member=referrer, now=now)
        db.commit()

    states = race(
        session_factory,
        WORKERS,
        lambda db, i: (
            referrals.enrol_with_referral(
                db,
                program=program,
                data={"external_id": f"racer-{i}-{secrets.token_hex(3)}"},
                referral_code=code,
                now=now,
            )[1].state
        ),
    )

    assert sorted(states) == ["pending"] * 3 + ["rejected"] * (WORKERS - 3)
    with session_factory() as db:
        stored = db.scalars(
            select(Referral.state).where(Referral.referrer_member_id == referrer.id)
        ).all()
        assert sorted(stored) == sorted(states)


def test_asking_for_a_new_code_at_once_gives_everyone_the_same_code(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program = make_program(db, now=now)
        member = make_member(db, program=program, now=now)
        db.commit()

    got = race(
        session_factory,
        WORKERS,
        lambda db, _: referrals.code_for(db, program=program, member=member, now=now),
    )

    assert len(set(got)) == 1
