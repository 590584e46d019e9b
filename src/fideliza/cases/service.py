"""Case use cases: open, assign, move, resolve (with a recovery gesture), reopen, note, list.

Every change appends a case event (the case's history), an audit row and, for the changes a
business reacts to, an outbox event; all in the caller's transaction. A case row is locked
(`FOR UPDATE`) before it changes, so two agents acting on one case at once serialize: the
second sees the first's result, and a gesture is never given twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from fideliza.cases.domain import (
    GUARDED_TARGETS,
    Breaches,
    CaseState,
    Category,
    Channel,
    EventKind,
    Gesture,
    OpenedBy,
    Severity,
    Sla,
    breaches,
    clean_text,
    deadlines,
    parse_choice,
    require_transition,
    sla_for,
    validate_sla_minutes,
)
from fideliza.cases.models import Case, CaseEvent, CaseSla
from fideliza.core.clock import require_aware
from fideliza.core.errors import FidelizaError, InvalidState, NotFound, ValidationError
from fideliza.db import UTCDateTime
from fideliza.members import service as members
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases.models import Purchase

log = logging.getLogger("fideliza.cases")
MAX_PAGE = 200


def reference_of(case: Case) -> str:
    """How other domains (ledger, coupons, surveys) refer to a case."""
    return f"case:{case.id}"


# --- SLA ---------------------------------------------------------------------------------


def slas_of(db: Session, *, program_id: int) -> dict[Severity, Sla]:
    """The program's own SLAs (severities it has not set fall back to the defaults)."""
    rows = db.scalars(select(CaseSla).where(CaseSla.program_id == program_id))
    return {
        Severity(row.severity): validate_sla_minutes(
            row.first_response_minutes, row.resolution_minutes
        )
        for row in rows
    }


def set_sla(
    db: Session,
    *,
    program_id: int,
    severity: object,
    first_response_minutes: object,
    resolution_minutes: object,
    now: datetime,
    actor: str | None = None,
) -> Sla:
    """Sets the program's SLA for one severity (applies to cases opened from now on)."""
    level = parse_choice(severity, Severity, field="severity")
    sla = validate_sla_minutes(first_response_minutes, resolution_minutes)
    row = db.get(CaseSla, (program_id, level.value), with_for_update=True)
    if row is None:
        row = CaseSla(program_id=program_id, severity=level.value)
        db.add(row)
    row.first_response_minutes = first_response_minutes  # type: ignore[assignment]
    row.resolution_minutes = resolution_minutes  # type: ignore[assignment]
    row.updated_at = now
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.case.sla_set",
        subject=f"severity:{level.value}",
        now=now,
        actor=actor,
        data={
            "first_response_minutes": first_response_minutes,
            "resolution_minutes": resolution_minutes,
        },
    )
    db.flush()
    return sla


def status_of(case: Case, *, now: datetime) -> Breaches:
    """The case's SLA breaches as of `now` (computed, so never stale)."""
    return breaches(
        response_due_at=case.response_due_at,
        resolution_due_at=case.resolution_due_at,
        first_response_at=case.first_response_at,
        resolved_at=case.resolved_at,
        now=now,
    )


# --- reading -------------------------------------------------------------------------------


def get(db: Session, *, program_id: int, case_id: int, lock: bool = False) -> Case:
    """Gets a case of the program (the same error whether absent or another program's)."""
    statement = select(Case).where(Case.id == case_id, Case.program_id == program_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    case = db.scalar(statement)
    if case is None:
        raise NotFound(f"case {case_id} does not exist", field="case_id")
    return case


def history(db: Session, *, program_id: int, case_id: int) -> list[CaseEvent]:
    """The case's events, oldest first."""
    get(db, program_id=program_id, case_id=case_id)
    return list(
        db.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))
    )


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """What a list of cases is narrowed to (every field optional)."""

    state: CaseState | None = None
    severity: Severity | None = None
    assignee: str | None = None
    member_id: int | None = None
    breached: bool | None = None


def parse_filter(
    *,
    state: object = None,
    severity: object = None,
    assignee: object = None,
    member_id: int | None = None,
    breached: bool | None = None,
) -> CaseFilter:
    """A filter from raw values; errors name the field."""
    return CaseFilter(
        state=parse_choice(state, CaseState, field="state") if state is not None else None,
        severity=parse_choice(severity, Severity, field="severity")
        if severity is not None
        else None,
        assignee=clean_text(assignee, field="assignee", required=False, limit=200),
        member_id=member_id,
        breached=breached,
    )


def response_breached(now: datetime) -> ColumnElement[bool]:
    """SQL for "missed the first-response deadline as of `now`" (as `domain.breaches`)."""
    at = literal(now, type_=UTCDateTime())
    return func.coalesce(Case.first_response_at, at) > Case.response_due_at


def resolution_breached(now: datetime) -> ColumnElement[bool]:
    """SQL for "missed the resolution deadline as of `now`" (as `domain.breaches`)."""
    at = literal(now, type_=UTCDateTime())
    return func.coalesce(Case.resolved_at, at) > Case.resolution_due_at


def breached_clause(now: datetime) -> ColumnElement[bool]:
    """SQL for "missed a deadline as of `now`"; never NULL, so its negation is exact."""
    return or_(response_breached(now), resolution_breached(now))


def list_cases(
    db: Session,
    *,
    program_id: int,
    now: datetime,
    where: CaseFilter | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Case]:
    """The program's cases, newest first; `before_id` (the last id of a page) pages back."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"must be between 1 and {MAX_PAGE}", field="limit")
    where = where or CaseFilter()
    statement = select(Case).where(Case.program_id == program_id)
    if where.state is not None:
        statement = statement.where(Case.state == where.state.value)
    if where.severity is not None:
        statement = statement.where(Case.severity == where.severity.value)
    if where.assignee is not None:
        statement = statement.where(Case.assignee == where.assignee)
    if where.member_id is not None:
        statement = statement.where(Case.member_id == where.member_id)
    if where.breached is not None:
        clause = breached_clause(now)
        statement = statement.where(clause if where.breached else ~clause)
    if before_id is not None:
        statement = statement.where(Case.id < before_id)
    return list(db.scalars(statement.order_by(Case.id.desc()).limit(limit)))


# --- writing -------------------------------------------------------------------------------


def _record(
    db: Session,
    case: Case,
    *,
    kind: EventKind,
    now: datetime,
    actor: str | None,
    from_state: str | None = None,
    to_state: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    audit: bool = True,
) -> CaseEvent:
    """Appends a history line (and, by default, an audit row) for a change of the case."""
    event = CaseEvent(
        program_id=case.program_id,
        case_id=case.id,
        kind=kind.value,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        note=note,
        data=data or {},
        at=now,
    )
    db.add(event)
    if audit:
        programs.audit(
            db,
            program_id=case.program_id,
            action=f"fideliza.case.{kind.value}",
            subject=reference_of(case),
            now=now,
            actor=actor,
            data={"from": from_state, "to": to_state, **(data or {})},
        )
    case.updated_at = now
    return event


# What the member is told about, by a complaint update (when the program sends messages).
_TOLD = {"case.opened", "case.resolved", "case.reopened", "case.closed"}


def _publish(db: Session, case: Case, event_type: str, now: datetime, **extra: Any) -> None:
    if event_type in _TOLD:
        _tell_member(db, case, event_type, now)
    programs.publish(
        db,
        program_id=case.program_id,
        event_type=event_type,
        payload={
            "case_id": case.id,
            "member_id": case.member_id,
            "state": case.state,
            "severity": case.severity,
            "category": case.category,
            "assignee": case.assignee,
            **extra,
        },
        now=now,
    )


def _tell_member(db: Session, case: Case, event_type: str, now: datetime) -> None:
    """Queues a complaint update for the member (transactional: no marketing consent needed,
    not capped), once per case, event and reopening."""
    from fideliza.messaging import service as messaging

    if not messaging.is_set_up(db, program_id=case.program_id):
        return
    messaging.enqueue(
        db,
        program_id=case.program_id,
        member_id=case.member_id,
        template="complaint_update",
        context={
            "case": {
                "reference": reference_of(case),
                "status": case.state,
                "note": (case.resolution or case.subject)[:500],
            }
        },
        key=f"case:{case.id}:{event_type}:{case.reopen_count}",
        now=now,
    )


def open_case(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    category: object,
    channel: object,
    severity: object,
    subject: object,
    now: datetime,
    description: object = None,
    purchase_id: int | None = None,
    opened_by: object = OpenedBy.STAFF,
    assignee: object = None,
    actor: str | None = None,
) -> Case:
    """Opens a case for a member; its SLA deadlines are fixed now, by its severity."""
    now = require_aware(now, field="now")
    kind = parse_choice(category, Category, field="category")
    via = parse_choice(channel, Channel, field="channel")
    level = parse_choice(severity, Severity, field="severity")
    who = parse_choice(opened_by, OpenedBy, field="opened_by")
    title = clean_text(subject, field="subject", required=True, limit=200)
    details = clean_text(description, field="description", required=False)
    owner = clean_text(assignee, field="assignee", required=False, limit=200)
    member = members.get(db, program_id=program_id, member_id=member_id)
    if purchase_id is not None:
        purchase = db.get(Purchase, purchase_id)
        if purchase is None or purchase.program_id != program_id:
            raise NotFound(f"purchase {purchase_id} does not exist", field="purchase_id")
        if purchase.member_id != member.id:
            raise ValidationError(
                f"purchase {purchase_id} is not member {member.id}'s", field="purchase_id"
            )
    due = deadlines(now, sla_for(level, slas_of(db, program_id=program_id)))
    case = Case(
        program_id=program_id,
        member_id=member.id,
        purchase_id=purchase_id,
        category=kind.value,
        channel=via.value,
        severity=level.value,
        subject=title,
        description=details,
        opened_by=who.value,
        state=CaseState.OPEN.value,
        assignee=owner,
        opened_at=now,
        response_due_at=due.response_due_at,
        resolution_due_at=due.resolution_due_at,
        reopen_count=0,
        apologized=False,
        survey_invitations=0,
        updated_at=now,
    )
    db.add(case)
    db.flush()
    _record(
        db,
        case,
        kind=EventKind.OPENED,
        now=now,
        actor=actor,
        to_state=case.state,
        note=details,
        data={"severity": level.value, "category": kind.value, "assignee": owner},
    )
    _publish(
        db,
        case,
        "case.opened",
        now,
        response_due_at=case.response_due_at.isoformat(),
        resolution_due_at=case.resolution_due_at.isoformat(),
    )
    db.flush()
    return case


def assign(
    db: Session,
    *,
    program_id: int,
    case_id: int,
    assignee: object,
    now: datetime,
    actor: str | None = None,
    note: object = None,
) -> Case:
    """Gives the case to someone (None unassigns); a closed case cannot be assigned."""
    owner = clean_text(assignee, field="assignee", required=False, limit=200)
    remark = clean_text(note, field="note", required=False)
    case = get(db, program_id=program_id, case_id=case_id, lock=True)
    if case.state == CaseState.CLOSED:
        raise InvalidState("a closed case cannot be assigned; reopen it first", field="state")
    if case.assignee == owner:
        return case
    previous, case.assignee = case.assignee, owner
    _record(
        db,
        case,
        kind=EventKind.ASSIGNED,
        now=now,
        actor=actor,
        note=remark,
        data={"from_assignee": previous, "to_assignee": owner},
    )
    _publish(db, case, "case.assigned", now, previous_assignee=previous)
    db.flush()
    return case


def move(
    db: Session,
    *,
    program_id: int,
    case_id: int,
    to_state: object,
    now: datetime,
    actor: str | None = None,
    note: object = None,
) -> Case:
    """Moves a case along the state machine (to `in_progress` or `closed`).

    Resolving records a resolution (`resolve`) and reopening counts a reopen (`reopen`), so
    those two targets are refused here with the use case to call instead.
    """
    target = parse_choice(to_state, CaseState, field="state")
    remark = clean_text(note, field="note", required=False)
    case = get(db, program_id=program_id, case_id=case_id, lock=True)
    current = CaseState(case.state)
    require_transition(current, target)
    if target in GUARDED_TARGETS:
        raise InvalidState(
            f"use {GUARDED_TARGETS[target]} to move a case to {target.value}", field="state"
        )
    case.state = target.value
    if target == CaseState.IN_PROGRESS and case.first_response_at is None:
        case.first_response_at = now
    if target == CaseState.CLOSED:
        case.closed_at = now
    _record(
        db,
        case,
        kind=EventKind.MOVED,
        now=now,
        actor=actor,
        from_state=current.value,
        to_state=target.value,
        note=remark,
    )
    _publish(db, case, f"case.{target.value}", now, from_state=current.value)
    db.flush()
    return case


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a resolution says and gives: the apology and the call-back are recorded as facts."""

    summary: str
    apologized: bool = False
    called_back_at: datetime | None = None
    gesture: Gesture = field(default_factory=Gesture)


def parse_resolution(
    *,
    summary: object,
    apologized: object = False,
    called_back_at: datetime | None = None,
    gesture: Gesture | None = None,
    now: datetime,
) -> Resolution:
    """Validates a resolution; errors name the field."""
    text = clean_text(summary, field="resolution", required=True)
    if not isinstance(apologized, bool):
        raise ValidationError(f"must be true or false, got {apologized!r}", field="apologized")
    if called_back_at is not None:
        called_back_at = require_aware(called_back_at, field="called_back_at")
        if called_back_at > now:
            raise ValidationError("must not be in the future", field="called_back_at")
    assert text is not None
    return Resolution(text, apologized, called_back_at, gesture or Gesture())


def resolve(
    db: Session,
    *,
    program: Program,
    case_id: int,
    resolution: Resolution,
    now: datetime,
    actor: str | None = None,
) -> Case:
    """Resolves a case: records the resolution, gives the gesture, invites to the survey.

    Goodwill points and a coupon are given at most once per case (a reopened case resolved
    again cannot give them twice); everything happens in the caller's transaction.
    """
    case = get(db, program_id=program.id, case_id=case_id, lock=True)
    current = CaseState(case.state)
    require_transition(current, CaseState.RESOLVED)
    gesture = resolution.gesture
    if gesture.goodwill_points is not None and case.goodwill_transaction_id is not None:
        raise InvalidState(
            f"goodwill points were already given for this case "
            f"(transaction {case.goodwill_transaction_id})",
            field="goodwill_points",
        )
    if gesture.coupon_campaign_id is not None and case.coupon_code_id is not None:
        raise InvalidState(
            f"a coupon was already given for this case ({case.coupon_code})",
            field="coupon_campaign_id",
        )
    if gesture.goodwill_points is not None or gesture.coupon_campaign_id is not None:
        # Value goes only to a member who can use it (the ledger would not refuse a closed one).
        members.require_active(members.get(db, program_id=program.id, member_id=case.member_id))
    given: dict[str, Any] = {}
    if gesture.goodwill_points is not None:
        case.goodwill_transaction_id = _give_goodwill(
            db, program=program, case=case, points=gesture.goodwill_points, actor=actor, now=now
        )
        case.goodwill_points = gesture.goodwill_points
        given["goodwill_points"] = gesture.goodwill_points
        given["goodwill_transaction_id"] = case.goodwill_transaction_id
    if gesture.coupon_campaign_id is not None:
        case.coupon_code_id, case.coupon_code = _give_coupon(
            db, case=case, campaign_id=gesture.coupon_campaign_id, now=now
        )
        given["coupon_code"] = case.coupon_code
    if gesture.refund_reference is not None:
        case.refund_reference = gesture.refund_reference
        given["refund_reference"] = gesture.refund_reference
    case.state = CaseState.RESOLVED.value
    case.resolved_at = now
    if case.first_response_at is None:
        case.first_response_at = now
    case.resolution = resolution.summary
    case.apologized = resolution.apologized
    case.called_back_at = resolution.called_back_at
    invited = _invite_to_survey(db, case=case, now=now)
    case.survey_invitations += invited
    _record(
        db,
        case,
        kind=EventKind.RESOLVED,
        now=now,
        actor=actor,
        from_state=current.value,
        to_state=case.state,
        note=resolution.summary,
        data={
            "apologized": resolution.apologized,
            "called_back_at": resolution.called_back_at.isoformat()
            if resolution.called_back_at
            else None,
            "survey_invitations": invited,
            **given,
        },
    )
    _publish(
        db,
        case,
        "case.resolved",
        now,
        apologized=resolution.apologized,
        breached=status_of(case, now=now).any,
        **given,
    )
    db.flush()
    return case


def _give_goodwill(
    db: Session, *, program: Program, case: Case, points: int, actor: str | None, now: datetime
) -> int:
    from fideliza.ledger import service as ledger

    return ledger.adjust(
        db,
        program_id=program.id,
        settings=programs.settings_of(program),
        timezone_name=program.timezone,
        member_id=case.member_id,
        points=points,
        issuer=actor or "cases",
        reason=f"goodwill for {reference_of(case)}",
        now=now,
        # A database backstop under the check above: one goodwill posting per case.
        idempotency_key=f"{reference_of(case)}:goodwill",
        source_type="case",
        source_ref=reference_of(case),
    )


def _give_coupon(db: Session, *, case: Case, campaign_id: int, now: datetime) -> tuple[int, str]:
    try:
        from fideliza.coupons import service as coupons
    except ImportError:  # pragma: no cover - coupons ship in the same release
        raise InvalidState(
            "coupon gestures are not available yet", field="coupon_campaign_id"
        ) from None
    try:
        issued = coupons.issue_code(
            db,
            program_id=case.program_id,
            campaign_id=campaign_id,
            member_id=case.member_id,
            now=now,
            source="case",
            source_ref=reference_of(case),
        )
    except FidelizaError as error:
        # The coupon service names its own fields; here the caller gave a campaign id.
        raise error.__class__(error.message, field="coupon_campaign_id") from error
    return issued.id, issued.code


def _invite_to_survey(db: Session, *, case: Case, now: datetime) -> int:
    """Asks the member how the case was handled (the follow-up survey), when one is set up."""
    try:
        from fideliza.surveys import service as surveys
    except ImportError:  # pragma: no cover - surveys ship in the same release
        log.info("no follow-up survey for %s: surveys are not installed", reference_of(case))
        return 0
    made = surveys.invite_after_case(
        db,
        program_id=case.program_id,
        member_id=case.member_id,
        case_ref=reference_of(case),
        now=now,
    )
    return len(made)


def reopen(
    db: Session,
    *,
    program_id: int,
    case_id: int,
    reason: object,
    now: datetime,
    actor: str | None = None,
) -> Case:
    """Reopens a resolved or closed case (the member is not satisfied); says why."""
    why = clean_text(reason, field="reason", required=True)
    case = get(db, program_id=program_id, case_id=case_id, lock=True)
    current = CaseState(case.state)
    require_transition(current, CaseState.OPEN)
    case.state = CaseState.OPEN.value
    case.resolved_at = None
    case.closed_at = None
    case.reopen_count += 1
    _record(
        db,
        case,
        kind=EventKind.REOPENED,
        now=now,
        actor=actor,
        from_state=current.value,
        to_state=case.state,
        note=why,
        data={"reopen_count": case.reopen_count},
    )
    _publish(db, case, "case.reopened", now, reopen_count=case.reopen_count)
    db.flush()
    return case


def add_note(
    db: Session,
    *,
    program_id: int,
    case_id: int,
    note: object,
    now: datetime,
    actor: str | None = None,
) -> CaseEvent:
    """Adds a note to the case's history (internal: it does not count as a response)."""
    text = clean_text(note, field="note", required=True)
    case = get(db, program_id=program_id, case_id=case_id, lock=True)
    event = _record(db, case, kind=EventKind.NOTE, now=now, actor=actor, note=text, audit=False)
    db.flush()
    return event


def flag_breaches(db: Session, *, program_id: int, now: datetime, limit: int = 1000) -> int:
    """Records, once per case and deadline, the SLA breaches due by `now`; returns how many.

    Read-time flags never need this job; it leaves a dated history line and a webhook
    (`case.sla_breached`) that reports and people can act on. Several runs at once skip
    each other's rows (SKIP LOCKED), so none records a breach twice.
    """
    unrecorded = or_(
        and_(Case.response_breach_recorded_at.is_(None), response_breached(now)),
        and_(Case.resolution_breach_recorded_at.is_(None), resolution_breached(now)),
    )
    due = db.scalars(
        select(Case)
        .where(Case.program_id == program_id, unrecorded)
        .order_by(Case.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    recorded = 0
    for case in due:
        status = status_of(case, now=now)
        missed = []
        if status.response and case.response_breach_recorded_at is None:
            case.response_breach_recorded_at = now
            missed.append("response")
        if status.resolution and case.resolution_breach_recorded_at is None:
            case.resolution_breach_recorded_at = now
            missed.append("resolution")
        for deadline in missed:
            _record(
                db,
                case,
                kind=EventKind.BREACHED,
                now=now,
                actor="sla",
                data={
                    "deadline": deadline,
                    "due_at": getattr(case, f"{deadline}_due_at").isoformat(),
                },
                audit=False,
            )
            _publish(db, case, "case.sla_breached", now, deadline=deadline)
            recorded += 1
    db.flush()
    return recorded
