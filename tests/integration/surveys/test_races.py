"""Survey races for real: threads with their own sessions hit the database at the same instant.

On PostgreSQL the writers overlap and only the conditional UPDATE, the row locks and the
unique keys keep them apart; on SQLite (one writer at a time) the same outcome must hold.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import Conflict
from fideliza.ledger import service as ledger
from fideliza.programs.models import Program
from fideliza.rules import service as rules
from fideliza.surveys import service as surveys
from fideliza.surveys.errors import LinkUsed
from fideliza.surveys.models import SurveyInvitation, SurveyResponse
from tests.factories import make_member, make_program
from tests.integration.surveys.builders import SETTINGS, buy, csat_survey, nps_survey

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
        return list(pool.map(one, range(count), timeout=TIMEOUT_SECONDS))


def test_one_link_answered_at_once_gives_exactly_one_answer(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program = make_program(db, now=now)
        rules.create(
            db,
            program=program,
            now=now,
            definition={
                "name": "answer bonus",
                "activity": "survey_answered",
                "actions": [{"type": "fixed_bonus", "points": 10}],
            },
        )
        surveys.define(db, program=program, definition=csat_survey(), now=now)
        member = make_member(db, program=program, now=now)
        (invitation,) = surveys.invite_after_case(
            db, program_id=program.id, member_id=member.id, case_ref="C-1", now=now
        )
        db.commit()
        token = surveys.token_of(invitation, settings=SETTINGS)

    results = race(
        session_factory,
        THREADS,
        lambda db, i: surveys.answer(
            db, token=token, answers={"satisfied": 1 + i % 5}, now=now, settings=SETTINGS
        ),
    )

    kinds = Counter(type(result).__name__ for result in results)
    assert kinds == {"AnswerOutcome": 1, "LinkUsed": THREADS - 1}, results
    assert all(isinstance(r, LinkUsed) for r in results if not hasattr(r, "response"))
    with session_factory() as db:
        stored = db.scalar(
            select(func.count()).where(SurveyResponse.invitation_id == invitation.id)
        )
        assert stored == 1
        assert ledger.balance(db, member_id=member.id).available == 10


def test_concurrent_job_runs_invite_each_member_once(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program = make_program(db, now=now)
        surveys.define(db, program=program, definition=nps_survey(), now=now)
        people = [make_member(db, program=program, now=now) for _ in range(5)]
        for number, person in enumerate(people):
            # Two purchases each: the quiet period allows one invitation per member.
            buy(db, program=program, member=person, at=now + timedelta(minutes=number))
            buy(db, program=program, member=person, at=now + timedelta(minutes=10 + number))
        db.commit()
        program_id = program.id

    later = now + timedelta(hours=1)
    results = race(
        session_factory,
        THREADS,
        lambda db, _: surveys.invite_due(db, program_id=program_id, now=later),
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r for r in results if isinstance(r, int)) == len(people)
    with session_factory() as db:
        per_member = db.execute(
            select(SurveyInvitation.member_id, func.count())
            .where(SurveyInvitation.program_id == program_id)
            .group_by(SurveyInvitation.member_id)
        ).all()
        assert sorted(count for _, count in per_member) == [1] * len(people)


def test_versions_saved_at_once_never_share_a_number(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with session_factory() as db:
        program = make_program(db, now=now)
        db.commit()
        program_id = program.id

    def save(db: Session, _: int) -> int:
        found = db.get_one(Program, program_id)
        return surveys.define(db, program=found, definition=nps_survey("fresh"), now=now).version

    results = race(session_factory, THREADS, save)

    versions = sorted(r for r in results if isinstance(r, int))
    refused = [r for r in results if not isinstance(r, int)]
    assert all(isinstance(r, Conflict) for r in refused), refused
    assert versions == list(range(1, len(versions) + 1)) and versions
    with session_factory() as db:
        active = surveys.list_surveys(db, program_id=program_id)
        assert [s.version for s in active] == [versions[-1]]
