"""Any sequence of case operations, on SQLite and PostgreSQL: the stored case, its history and
the ledger always agree; refused operations leave no trace; goodwill is given at most once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.cases import service as cases
from fideliza.cases.domain import parse_gesture
from fideliza.cases.models import Case, CaseEvent
from fideliza.core.errors import FidelizaError
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.programs import service as programs
from tests.integration.cases.builders import complaint, shop

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
operations = st.lists(
    st.sampled_from(
        ["start", "resolve", "resolve_goodwill", "close", "reopen", "assign", "note", "open"]
    ),
    min_size=1,
    max_size=12,
)


def _apply(db: Session, program_id: int, case_id: int, operation: str, at: datetime) -> None:
    if operation == "start":
        cases.move(db, program_id=program_id, case_id=case_id, to_state="in_progress", now=at)
    elif operation == "close":
        cases.move(db, program_id=program_id, case_id=case_id, to_state="closed", now=at)
    elif operation == "open":
        cases.move(db, program_id=program_id, case_id=case_id, to_state="open", now=at)
    elif operation in ("resolve", "resolve_goodwill"):
        points = 10 if operation == "resolve_goodwill" else None
        resolution = cases.parse_resolution(
            summary="done", gesture=parse_gesture(goodwill_points=points), now=at
        )
        program = programs.get(db, program_id=program_id)
        cases.resolve(db, program=program, case_id=case_id, resolution=resolution, now=at)
    elif operation == "reopen":
        cases.reopen(db, program_id=program_id, case_id=case_id, reason="again", now=at)
    elif operation == "assign":
        cases.assign(db, program_id=program_id, case_id=case_id, assignee=f"a{at.minute}", now=at)
    else:
        cases.add_note(db, program_id=program_id, case_id=case_id, note="n", now=at)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=operations)
def test_history_state_and_ledger_always_agree(
    session_factory: sessionmaker[Session], sequence: list[str]
) -> None:
    with unit_of_work(session_factory) as db:
        program, member = shop(db, T0)
        case = complaint(db, program, member, T0)
        program_id, case_id, member_id = program.id, case.id, member.id
    succeeded = 1  # the opening
    for step, operation in enumerate(sequence, start=1):
        try:
            with unit_of_work(session_factory) as db:
                _apply(db, program_id, case_id, operation, T0 + timedelta(minutes=step))
            succeeded += 1
        except FidelizaError:
            pass
    with session_factory() as db:
        stored = db.get(Case, case_id)
        assert stored is not None
        events = db.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        ).all()
        assert len(events) == succeeded
        moves = [e for e in events if e.to_state is not None]
        assert moves[-1].to_state == stored.state
        for before, after in pairwise(moves):
            assert after.from_state == before.to_state
        assert stored.reopen_count == sum(e.kind == "reopened" for e in events)
        given_points = sum(e.data.get("goodwill_points", 0) for e in events)
        assert given_points in (0, 10)
        assert ledger.balance(db, member_id=member_id).available == given_points
        assert (stored.resolved_at is not None) == (stored.state in ("resolved", "closed"))
        assert (stored.closed_at is not None) == (stored.state == "closed")
