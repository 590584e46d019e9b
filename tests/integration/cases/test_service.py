"""Cases on SQLite and PostgreSQL: lifecycle, history, gestures, follow-up survey, SLA, lists."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.cases import service as cases
from fideliza.cases.domain import CaseState, parse_gesture
from fideliza.cases.models import Case, CaseEvent
from fideliza.core.errors import InvalidState, NotFound, ValidationError
from fideliza.coupons.models import CouponCode
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import LedgerTransaction
from fideliza.members import service as members
from fideliza.programs.models import AuditLog, OutboxEvent
from fideliza.surveys import service as surveys
from fideliza.surveys.models import SurveyInvitation
from tests.factories import make_member, make_program
from tests.integration.cases.builders import buy, complaint, shop
from tests.integration.coupons.builders import campaign
from tests.integration.surveys.builders import csat_survey

HOUR = timedelta(hours=1)


def _events(db: Session, case: Case) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.kind, e.from_state, e.to_state)
        for e in cases.history(db, program_id=case.program_id, case_id=case.id)
    ]


def _outbox(db: Session, program_id: int) -> list[str]:
    return list(
        db.scalars(
            select(OutboxEvent.event_type)
            .where(OutboxEvent.program_id == program_id, OutboxEvent.event_type.like("case.%"))
            .order_by(OutboxEvent.id)
        )
    )


def test_a_case_from_complaint_to_closure_keeps_its_history(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    purchase_id = buy(db, program, member, now - HOUR)
    case = complaint(db, program, member, now, severity="high", purchase_id=purchase_id)
    db.commit()
    assert case.state == "open" and case.purchase_id == purchase_id
    assert case.response_due_at == now + 4 * HOUR
    assert case.resolution_due_at == now + 48 * HOUR

    cases.assign(db, program_id=program.id, case_id=case.id, assignee="lucia", now=now, actor="a")
    cases.move(db, program_id=program.id, case_id=case.id, to_state="in_progress", now=now + HOUR)
    assert case.first_response_at == now + HOUR
    resolution = cases.parse_resolution(
        summary="Apologized, called back, gave 50 points and refunded the coffee",
        apologized=True,
        called_back_at=now + 2 * HOUR,
        gesture=parse_gesture(goodwill_points=50, refund_reference="RF-77"),
        now=now + 3 * HOUR,
    )
    before = ledger.balance(db, member_id=member.id).available
    cases.resolve(
        db, program=program, case_id=case.id, resolution=resolution, now=now + 3 * HOUR, actor="a"
    )
    cases.move(db, program_id=program.id, case_id=case.id, to_state="closed", now=now + 4 * HOUR)
    db.commit()

    stored = db.get(Case, case.id)
    assert stored is not None
    assert (stored.state, stored.apologized, stored.refund_reference) == ("closed", True, "RF-77")
    assert stored.called_back_at == now + 2 * HOUR and stored.closed_at == now + 4 * HOUR
    assert stored.goodwill_points == 50 and stored.goodwill_transaction_id is not None
    assert ledger.balance(db, member_id=member.id).available == before + 50
    posting = db.get(LedgerTransaction, stored.goodwill_transaction_id)
    assert posting is not None and posting.reason == f"goodwill for case:{case.id}"
    assert check_ledger(db, program_id=program.id) == []
    assert not cases.status_of(stored, now=now + 100 * HOUR).any
    assert _events(db, case) == [
        ("opened", None, "open"),
        ("assigned", None, None),
        ("moved", "open", "in_progress"),
        ("resolved", "in_progress", "resolved"),
        ("moved", "resolved", "closed"),
    ]
    assert _outbox(db, program.id) == [
        "case.opened",
        "case.assigned",
        "case.in_progress",
        "case.resolved",
        "case.closed",
    ]
    audited = db.scalars(
        select(AuditLog.action).where(
            AuditLog.program_id == program.id, AuditLog.subject == f"case:{case.id}"
        )
    ).all()
    assert "fideliza.case.resolved" in audited and len(audited) == 5


def test_refused_transitions_say_what_is_allowed(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    case = complaint(db, program, member, now)
    db.commit()
    with pytest.raises(InvalidState) as refused:
        cases.move(db, program_id=program.id, case_id=case.id, to_state="closed", now=now)
    assert refused.value.field == "state"
    assert "allowed from open: in_progress, resolved" in refused.value.message
    with pytest.raises(InvalidState, match="use resolve"):
        cases.move(db, program_id=program.id, case_id=case.id, to_state="resolved", now=now)
    with pytest.raises(ValidationError) as unknown:
        cases.move(db, program_id=program.id, case_id=case.id, to_state="done", now=now)
    assert unknown.value.field == "state"
    with pytest.raises(InvalidState, match="allowed from open"):
        cases.reopen(db, program_id=program.id, case_id=case.id, reason="again", now=now)
    db.rollback()
    assert _events(db, case) == [("opened", None, "open")]


def test_bad_input_names_the_field_and_writes_nothing(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    other_program = make_program(db, now=now)
    stranger = make_member(db, program=other_program, now=now)
    someone_else = make_member(db, program=program, now=now)
    their_purchase = buy(db, program, someone_else, now)
    db.commit()
    for fields, error, field in [
        ({"category": "weather"}, ValidationError, "category"),
        ({"channel": "pigeon"}, ValidationError, "channel"),
        ({"severity": "urgent"}, ValidationError, "severity"),
        ({"subject": "  "}, ValidationError, "subject"),
        ({"opened_by": "robot"}, ValidationError, "opened_by"),
        ({"purchase_id": their_purchase}, ValidationError, "purchase_id"),
        ({"purchase_id": 10**12}, NotFound, "purchase_id"),
    ]:
        with pytest.raises(error) as refused:
            complaint(db, program, member, now, **fields)
        assert refused.value.field == field, fields
        db.rollback()
    with pytest.raises(NotFound) as elsewhere:
        complaint(db, program, stranger, now)
    assert elsewhere.value.field == "member_id"
    db.rollback()
    assert db.scalars(select(Case).where(Case.program_id == program.id)).all() == []
    with pytest.raises(NotFound) as missing:
        cases.get(db, program_id=program.id, case_id=10**12)
    assert missing.value.field == "case_id"


def test_a_gesture_is_given_once_per_case_even_when_reopened(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    case = complaint(db, program, member, now)
    goodwill = parse_gesture(goodwill_points=30)
    first = cases.parse_resolution(summary="Sorry", gesture=goodwill, now=now)
    cases.resolve(db, program=program, case_id=case.id, resolution=first, now=now)
    cases.reopen(db, program_id=program.id, case_id=case.id, reason="Still unhappy", now=now + HOUR)
    db.commit()
    assert case.state == "open" and case.reopen_count == 1 and case.resolved_at is None
    again = cases.parse_resolution(summary="Sorry again", gesture=goodwill, now=now)
    with pytest.raises(InvalidState) as refused:
        cases.resolve(db, program=program, case_id=case.id, resolution=again, now=now + 2 * HOUR)
    assert refused.value.field == "goodwill_points"
    db.rollback()
    assert db.get(Case, case.id).state == "open"  # type: ignore[union-attr]
    plain = cases.parse_resolution(summary="Replaced the product", now=now)
    cases.resolve(db, program=program, case_id=case.id, resolution=plain, now=now + 2 * HOUR)
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 30
    assert case.goodwill_points == 30 and case.resolution == "Replaced the product"
    assert [k for k, _, _ in _events(db, case)] == ["opened", "resolved", "reopened", "resolved"]


def test_a_coupon_gesture_issues_a_code_to_the_member(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    offer = campaign(db, program, now)
    case = complaint(db, program, member, now)
    resolution = cases.parse_resolution(
        summary="A coupon for next time",
        gesture=parse_gesture(coupon_campaign_id=offer.id),
        now=now,
    )
    cases.resolve(db, program=program, case_id=case.id, resolution=resolution, now=now)
    db.commit()
    code = db.get(CouponCode, case.coupon_code_id)
    assert code is not None and code.member_id == member.id
    assert (code.source, code.source_ref) == ("case", f"case:{case.id}")
    assert case.coupon_code


def test_a_failing_gesture_leaves_nothing_half_written(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    case = complaint(db, program, member, now)
    db.commit()
    resolution = cases.parse_resolution(
        summary="Points and a coupon",
        gesture=parse_gesture(goodwill_points=40, coupon_campaign_id=10**12),
        now=now,
    )
    with pytest.raises(NotFound) as refused:
        cases.resolve(db, program=program, case_id=case.id, resolution=resolution, now=now)
    assert refused.value.field == "coupon_campaign_id"
    db.rollback()
    assert ledger.balance(db, member_id=member.id).available == 0
    stored = db.get(Case, case.id)
    assert stored is not None and stored.state == "open" and stored.goodwill_points is None


def test_resolution_invites_the_member_to_the_follow_up_survey(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    surveys.define(db, program=program, definition=csat_survey(), now=now)
    case = complaint(db, program, member, now)
    resolution = cases.parse_resolution(summary="Refunded", apologized=True, now=now)
    cases.resolve(db, program=program, case_id=case.id, resolution=resolution, now=now)
    db.commit()
    invited = db.scalars(
        select(SurveyInvitation).where(SurveyInvitation.member_id == member.id)
    ).all()
    assert [(i.trigger, i.source_ref) for i in invited] == [("case", f"case:{case.id}")]
    assert case.survey_invitations == 1


def test_resolution_input_is_validated(now: datetime) -> None:
    with pytest.raises(ValidationError) as empty:
        cases.parse_resolution(summary=" ", now=now)
    assert empty.value.field == "resolution"
    with pytest.raises(ValidationError) as future:
        cases.parse_resolution(summary="ok", called_back_at=now + HOUR, now=now)
    assert future.value.field == "called_back_at"
    with pytest.raises(ValidationError) as not_bool:
        cases.parse_resolution(summary="ok", apologized="yes", now=now)
    assert not_bool.value.field == "apologized"


def test_program_sla_breaches_lists_and_the_breach_job(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    cases.set_sla(
        db,
        program_id=program.id,
        severity="critical",
        first_response_minutes=15,
        resolution_minutes=120,
        now=now,
    )
    urgent = complaint(db, program, member, now, severity="critical", assignee="ana")
    calm = complaint(db, program, member, now, severity="low")
    answered = complaint(db, program, member, now, severity="critical")
    cases.move(db, program_id=program.id, case_id=answered.id, to_state="in_progress", now=now)
    db.commit()
    assert urgent.response_due_at == now + timedelta(minutes=15)
    later = now + timedelta(minutes=30)
    assert cases.status_of(urgent, now=later).response
    assert not cases.status_of(answered, now=later).response

    def ids(**filters: object) -> list[int]:
        found = cases.list_cases(
            db,
            program_id=program.id,
            now=later,
            where=cases.parse_filter(**filters),  # type: ignore[arg-type]
        )
        return [c.id for c in found]

    assert ids() == [answered.id, calm.id, urgent.id]
    assert ids(breached=True) == [urgent.id]
    assert ids(breached=False) == [answered.id, calm.id]
    assert ids(severity="critical") == [answered.id, urgent.id]
    assert ids(state="in_progress") == [answered.id]
    assert ids(assignee="ana") == [urgent.id]
    first = cases.list_cases(db, program_id=program.id, now=later, limit=2)
    rest = cases.list_cases(db, program_id=program.id, now=later, before_id=first[-1].id)
    assert [c.id for c in first + rest] == [answered.id, calm.id, urgent.id]
    with pytest.raises(ValidationError) as bad:
        cases.parse_filter(state="pending")
    assert bad.value.field == "state"

    assert cases.flag_breaches(db, program_id=program.id, now=later) == 1
    assert cases.flag_breaches(db, program_id=program.id, now=later + HOUR) == 0
    # Past the 2-hour resolution deadline both critical cases breach it, once each.
    assert cases.flag_breaches(db, program_id=program.id, now=now + 3 * HOUR) == 2
    assert cases.flag_breaches(db, program_id=program.id, now=now + 4 * HOUR) == 0
    db.commit()
    breached = db.scalars(
        select(CaseEvent.data).where(CaseEvent.case_id == urgent.id, CaseEvent.kind == "breached")
    ).all()
    assert sorted(d["deadline"] for d in breached) == ["resolution", "response"]
    assert _outbox(db, program.id).count("case.sla_breached") == 3
    with pytest.raises(ValidationError) as refused:
        cases.set_sla(
            db,
            program_id=program.id,
            severity="high",
            first_response_minutes=60,
            resolution_minutes=30,
            now=now,
        )
    assert refused.value.field == "resolution_minutes"


def test_notes_go_to_the_history_and_closed_cases_cannot_be_assigned(
    db: Session, now: datetime
) -> None:
    program, member = shop(db, now)
    case = complaint(db, program, member, now)
    note = cases.add_note(
        db, program_id=program.id, case_id=case.id, note="Called twice", now=now, actor="ana"
    )
    assert (note.kind, note.note, note.actor) == ("note", "Called twice", "ana")
    assert case.first_response_at is None  # an internal note is no answer to the member
    cases.resolve(
        db,
        program=program,
        case_id=case.id,
        resolution=cases.parse_resolution(summary="Done", now=now),
        now=now,
    )
    cases.move(db, program_id=program.id, case_id=case.id, to_state=CaseState.CLOSED, now=now)
    with pytest.raises(InvalidState, match="reopen"):
        cases.assign(db, program_id=program.id, case_id=case.id, assignee="bob", now=now)
    db.rollback()


def test_no_gesture_of_value_for_a_member_who_cannot_use_it(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    case = complaint(db, program, member, now)
    members.change_status(
        db, program=program, member=member, status="suspended", reason="fraud check", now=now
    )
    db.commit()
    goodwill = cases.parse_resolution(
        summary="Sorry", gesture=parse_gesture(goodwill_points=10), now=now
    )
    with pytest.raises(InvalidState) as refused:
        cases.resolve(db, program=program, case_id=case.id, resolution=goodwill, now=now)
    assert refused.value.field == "member_id"
    db.rollback()
    words = cases.parse_resolution(summary="Sorry", apologized=True, now=now)
    assert cases.resolve(db, program=program, case_id=case.id, resolution=words, now=now).state
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 0
