"""Complaints (cases) from open to resolution; a member's cases and timeline.

Staff tools (tills, service desks: the `pos` scope) open and work cases; a recovery gesture that
gives value (goodwill points, a coupon) needs `admin`, as manual point adjustments do; the SLA
is set by `admin`. Reads need `read`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, MemberCall, member_caller, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.pagination import CursorQuery, Page, decode_cursor, encode_cursor
from fideliza.api.validation import MAX_INT, IdPath, Limit, Timestamp
from fideliza.apikeys.domain import Scope, require_scope
from fideliza.cases import service as cases
from fideliza.cases.domain import (
    DEFAULT_SLA,
    MAX_GOODWILL_POINTS,
    MAX_SLA_MINUTES,
    MAX_TEXT,
    CaseState,
    Category,
    Channel,
    OpenedBy,
    Severity,
    allowed_from,
    parse_gesture,
)
from fideliza.cases.models import Case, CaseEvent
from fideliza.core.validation import NotBlank, WholeNumber
from fideliza.db import unit_of_work
from fideliza.members import service as members
from fideliza.programs import service as programs
from fideliza.timeline import service as timeline
from fideliza.timeline.domain import TimelineItem

# The installed sources, stated in the OpenAPI (the service names an unknown one in its error).
TimelineKind = Annotated[str, Field(json_schema_extra={"enum": timeline.kinds()})]

router = APIRouter(prefix="/v1", tags=["cases"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()
ADMIN = writer(Scope.ADMIN)
MEMBER = Depends(member_caller)

Note = Annotated[str | None, Field(default=None, min_length=1, max_length=MAX_TEXT)]


# --- models ----------------------------------------------------------------------------------


class CaseCreate(BaseModel):
    """A complaint: who, about what, how it came in and how serious it is."""

    model_config = ConfigDict(extra="forbid")

    member_id: int = Field(ge=1, le=MAX_INT)
    category: Category
    channel: Channel
    severity: Severity
    subject: NotBlank = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    purchase_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    opened_by: OpenedBy = OpenedBy.STAFF
    assignee: str | None = Field(default=None, min_length=1, max_length=200)


class MyCaseCreate(BaseModel):
    """A complaint from the member (portal, app): staff set its severity when they triage it;
    until then it counts as `medium`."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    channel: Channel = Channel.APP
    subject: NotBlank = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    purchase_id: int | None = Field(default=None, ge=1, le=MAX_INT)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(description="Who handles it; null unassigns.", max_length=200)
    note: Note = None


class MoveIn(BaseModel):
    """A move along the state machine: `in_progress` or `closed` (resolve and reopen have
    their own routes, as they record more)."""

    model_config = ConfigDict(extra="forbid")

    state: CaseState
    note: Note = None


class GestureIn(BaseModel):
    """A recovery gesture (any combination): goodwill points, a coupon, a refund reference."""

    model_config = ConfigDict(extra="forbid")

    goodwill_points: WholeNumber | None = Field(default=None, ge=1, le=MAX_GOODWILL_POINTS)
    coupon_campaign_id: WholeNumber | None = Field(default=None, ge=1, le=MAX_INT)
    refund_reference: str | None = Field(default=None, min_length=1, max_length=100)


class ResolveIn(BaseModel):
    """How the case was settled: the apology and the call-back are recorded as facts."""

    model_config = ConfigDict(extra="forbid")

    resolution: NotBlank = Field(min_length=1, max_length=MAX_TEXT)
    apologized: bool = False
    called_back_at: Timestamp | None = None
    gesture: GestureIn | None = None


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: NotBlank = Field(min_length=1, max_length=MAX_TEXT)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: NotBlank = Field(min_length=1, max_length=MAX_TEXT)


class SlaIn(BaseModel):
    """How soon cases of one severity must get a first response and a resolution."""

    model_config = ConfigDict(extra="forbid")

    severity: Severity
    first_response_minutes: WholeNumber = Field(ge=1, le=MAX_SLA_MINUTES)
    resolution_minutes: WholeNumber = Field(ge=1, le=MAX_SLA_MINUTES)


class SlaRead(BaseModel):
    severity: Severity
    first_response_minutes: int
    resolution_minutes: int
    default: bool


class ResolutionRead(BaseModel):
    summary: str
    apologized: bool
    called_back_at: datetime | None
    goodwill_points: int | None
    goodwill_transaction_id: int | None
    coupon_code: str | None
    refund_reference: str | None


class CaseRead(BaseModel):
    """A case with its SLA status as of the request (`breached_*` are computed, never stale)."""

    id: int
    member_id: int
    purchase_id: int | None
    category: str
    channel: str
    severity: str
    subject: str
    description: str | None
    opened_by: str
    state: str
    allowed_states: list[str] = Field(description="Where the case may move next.")
    assignee: str | None
    opened_at: datetime
    response_due_at: datetime
    resolution_due_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    breached_response: bool
    breached_resolution: bool
    reopen_count: int
    resolution: ResolutionRead | None
    survey_invitations: int


class CaseEventRead(BaseModel):
    id: int
    kind: str
    from_state: str | None
    to_state: str | None
    actor: str | None
    note: str | None
    data: dict[str, object]
    at: datetime


class TimelineItemRead(BaseModel):
    kind: str = Field(description="purchase, return, points, redemption, survey or case.")
    id: int = Field(description="The row's id in its own kind.")
    at: datetime
    summary: str
    points: int | None
    amount: str | None
    reference: str | None
    detail: dict[str, object]


def case_read(case: Case, now: datetime) -> CaseRead:
    status = cases.status_of(case, now=now)
    resolution = (
        ResolutionRead(
            summary=case.resolution,
            apologized=case.apologized,
            called_back_at=case.called_back_at,
            goodwill_points=case.goodwill_points,
            goodwill_transaction_id=case.goodwill_transaction_id,
            coupon_code=case.coupon_code,
            refund_reference=case.refund_reference,
        )
        if case.resolution is not None
        else None
    )
    return CaseRead(
        id=case.id,
        member_id=case.member_id,
        purchase_id=case.purchase_id,
        category=case.category,
        channel=case.channel,
        severity=case.severity,
        subject=case.subject,
        description=case.description,
        opened_by=case.opened_by,
        state=case.state,
        allowed_states=allowed_from(CaseState(case.state)),
        assignee=case.assignee,
        opened_at=case.opened_at,
        response_due_at=case.response_due_at,
        resolution_due_at=case.resolution_due_at,
        first_response_at=case.first_response_at,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        breached_response=status.response,
        breached_resolution=status.resolution,
        reopen_count=case.reopen_count,
        resolution=resolution,
        survey_invitations=case.survey_invitations,
    )


def event_read(event: CaseEvent) -> CaseEventRead:
    return CaseEventRead(
        id=event.id,
        kind=event.kind,
        from_state=event.from_state,
        to_state=event.to_state,
        actor=event.actor,
        note=event.note,
        data=event.data,
        at=event.at,
    )


def item_read(item: TimelineItem) -> TimelineItemRead:
    return TimelineItemRead(
        kind=item.kind,
        id=item.id,
        at=item.at,
        summary=item.summary,
        points=item.points,
        amount=None if item.amount is None else str(item.amount),
        reference=item.reference,
        detail=item.detail,
    )


# --- SLA (declared before /cases/{case_id}, which would otherwise take "sla" for an id) ------


@router.get("/cases/sla", response_model=list[SlaRead])
def list_sla(call: Annotated[Call, Depends(READ)]) -> list[SlaRead]:
    """The program's SLA by severity (its own, or the defaults)."""
    with call.session() as db:
        mine = cases.slas_of(db, program_id=call.program_id)
    return [
        SlaRead(
            severity=severity,
            first_response_minutes=int(sla.first_response.total_seconds() // 60),
            resolution_minutes=int(sla.resolution.total_seconds() // 60),
            default=severity not in mine,
        )
        for severity in Severity
        for sla in [mine.get(severity, DEFAULT_SLA[severity])]
    ]


@router.put("/cases/sla", response_model=SlaRead)
def set_sla(body: SlaIn, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Sets the SLA of one severity (for cases opened from now on)."""

    def work(db: Session) -> Response:
        cases.set_sla(
            db,
            program_id=call.program_id,
            severity=body.severity,
            first_response_minutes=body.first_response_minutes,
            resolution_minutes=body.resolution_minutes,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(
            SlaRead(
                severity=body.severity,
                first_response_minutes=body.first_response_minutes,
                resolution_minutes=body.resolution_minutes,
                default=False,
            )
        )

    return call.run(work)


# --- cases -----------------------------------------------------------------------------------


@router.post("/cases", status_code=201, response_model=CaseRead)
def open_case(body: CaseCreate, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Opens a case for a member; its deadlines follow from its severity."""

    def work(db: Session) -> Response:
        case = cases.open_case(
            db,
            program_id=call.program_id,
            member_id=body.member_id,
            category=body.category,
            channel=body.channel,
            severity=body.severity,
            subject=body.subject,
            description=body.description,
            purchase_id=body.purchase_id,
            opened_by=body.opened_by,
            assignee=body.assignee,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(case_read(case, call.now), status=201)

    return call.run(work)


@router.get("/cases", response_model=Page[CaseRead])
def list_all(
    call: Annotated[Call, Depends(READ)],
    state: Annotated[CaseState | None, Query(description="Only this state.")] = None,
    severity: Annotated[Severity | None, Query(description="Only this severity.")] = None,
    assignee: Annotated[str | None, Query(max_length=200, description="Only theirs.")] = None,
    breached: Annotated[
        bool | None, Query(description="Only cases past a deadline (or, false, within).")
    ] = None,
    cursor: CursorQuery = None,
    limit: Limit = 50,
) -> Page[CaseRead]:
    """The program's cases, newest first, with their SLA status."""
    with call.session() as db:
        where = cases.parse_filter(
            state=state, severity=severity, assignee=assignee, breached=breached
        )
        return _page(
            db, program_id=call.program_id, now=call.now, where=where, cursor=cursor, limit=limit
        )


@router.get("/members/{member_id}/cases", response_model=Page[CaseRead])
def member_cases(
    member_id: IdPath,
    call: Annotated[Call, Depends(READ)],
    cursor: CursorQuery = None,
    limit: Limit = 50,
) -> Page[CaseRead]:
    """A member's cases, newest first."""
    with call.session() as db:
        member = members.get(db, program_id=call.program_id, member_id=member_id)
        where = cases.parse_filter(member_id=member.id)
        return _page(
            db, program_id=call.program_id, now=call.now, where=where, cursor=cursor, limit=limit
        )


def _page(
    db: Session,
    *,
    program_id: int,
    now: datetime,
    where: cases.CaseFilter,
    cursor: str | None,
    limit: int,
) -> Page[CaseRead]:
    def newest(before_id: int | None, count: int) -> list[Case]:
        return cases.list_cases(
            db, program_id=program_id, now=now, where=where, before_id=before_id, limit=count
        )

    # Whether a page follows: not by asking for `limit + 1` rows, which the service refuses for
    # the largest page (its cap is `limit`'s documented maximum), but by looking one row past.
    page = newest(decode_cursor(cursor), limit)
    more = len(page) == limit and bool(newest(page[-1].id, 1))
    return Page[CaseRead](
        items=[case_read(case, now) for case in page],
        next_cursor=encode_cursor(page[-1].id) if more else None,
    )


@router.get("/cases/{case_id}", response_model=CaseRead)
def get_case(case_id: IdPath, call: Annotated[Call, Depends(READ)]) -> CaseRead:
    """A case, with its SLA status and what it may move to."""
    with call.session() as db:
        return case_read(cases.get(db, program_id=call.program_id, case_id=case_id), call.now)


@router.get("/cases/{case_id}/history", response_model=list[CaseEventRead])
def case_history(case_id: IdPath, call: Annotated[Call, Depends(READ)]) -> list[CaseEventRead]:
    """Everything that happened to the case, oldest first: who, when, from → to, note."""
    with call.session() as db:
        return [
            event_read(e) for e in cases.history(db, program_id=call.program_id, case_id=case_id)
        ]


@router.post("/cases/{case_id}/assign", response_model=CaseRead)
def assign(case_id: IdPath, body: AssignIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Gives the case to someone (null unassigns)."""

    def work(db: Session) -> Response:
        case = cases.assign(
            db,
            program_id=call.program_id,
            case_id=case_id,
            assignee=body.assignee,
            note=body.note,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(case_read(case, call.now))

    return call.run(work)


@router.post("/cases/{case_id}/transitions", response_model=CaseRead)
def move(case_id: IdPath, body: MoveIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Moves the case (to `in_progress` or `closed`); a refused move says what is allowed."""

    def work(db: Session) -> Response:
        case = cases.move(
            db,
            program_id=call.program_id,
            case_id=case_id,
            to_state=body.state,
            note=body.note,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(case_read(case, call.now))

    return call.run(work)


@router.post("/cases/{case_id}/resolve", response_model=CaseRead)
def resolve(case_id: IdPath, body: ResolveIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Resolves the case, gives the gesture (points and coupons need `admin`), and invites the
    member to the follow-up survey."""
    gesture = body.gesture or GestureIn()
    if gesture.goodwill_points is not None or gesture.coupon_campaign_id is not None:
        require_scope(call.caller.scopes, Scope.ADMIN)

    def work(db: Session) -> Response:
        resolution = cases.parse_resolution(
            summary=body.resolution,
            apologized=body.apologized,
            called_back_at=body.called_back_at,
            gesture=parse_gesture(**gesture.model_dump()),
            now=call.now,
        )
        case = cases.resolve(
            db,
            program=programs.get(db, program_id=call.program_id),
            case_id=case_id,
            resolution=resolution,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(case_read(case, call.now))

    return call.run(work)


@router.post("/cases/{case_id}/reopen", response_model=CaseRead)
def reopen(case_id: IdPath, body: ReopenIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Reopens a resolved or closed case (the member is not satisfied)."""

    def work(db: Session) -> Response:
        case = cases.reopen(
            db,
            program_id=call.program_id,
            case_id=case_id,
            reason=body.reason,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(case_read(case, call.now))

    return call.run(work)


@router.post("/cases/{case_id}/notes", status_code=201, response_model=CaseEventRead)
def add_note(case_id: IdPath, body: NoteIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Adds an internal note to the case's history."""

    def work(db: Session) -> Response:
        event = cases.add_note(
            db,
            program_id=call.program_id,
            case_id=case_id,
            note=body.note,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(event_read(event), status=201)

    return call.run(work)


# --- the member's own cases (member token) ------------------------------------------------


@router.post("/me/cases", status_code=201, response_model=CaseRead, tags=["me"])
def open_my_case(body: MyCaseCreate, call: Annotated[MemberCall, MEMBER]) -> Response:
    """The member complains: a case opened by the member, about one of their purchases or not."""
    with unit_of_work(call.runtime.factory) as db:
        case = cases.open_case(
            db,
            program_id=call.program_id,
            member_id=call.member_id,
            category=body.category,
            channel=body.channel,
            severity=Severity.MEDIUM,
            subject=body.subject,
            description=body.description,
            purchase_id=body.purchase_id,
            opened_by=OpenedBy.MEMBER,
            now=call.now,
            actor=call.actor,
        )
        return json_response(case_read(case, call.now), status=201)


@router.get("/me/cases", response_model=Page[CaseRead], tags=["me"])
def my_cases(
    call: Annotated[MemberCall, MEMBER], cursor: CursorQuery = None, limit: Limit = 50
) -> Page[CaseRead]:
    """The member's own cases, newest first."""
    with call.session() as db:
        where = cases.parse_filter(member_id=call.member_id)
        return _page(
            db, program_id=call.program_id, now=call.now, where=where, cursor=cursor, limit=limit
        )


# --- the member timeline -----------------------------------------------------------------


class TimelinePageRead(BaseModel):
    """A page of the timeline, newest first; `next_cursor` (pass it as `before`) is null on
    the last page."""

    items: list[TimelineItemRead]
    next_cursor: str | None


@router.get("/members/{member_id}/timeline", response_model=TimelinePageRead, tags=["members"])
def member_timeline(
    member_id: IdPath,
    call: Annotated[Call, Depends(READ)],
    kinds: Annotated[
        list[TimelineKind] | None,
        Query(description="Only these kinds (repeat the parameter); all by default."),
    ] = None,
    before: Annotated[
        str | None, Query(max_length=200, description="The `next_cursor` of the previous page.")
    ] = None,
    limit: Limit = 50,
) -> TimelinePageRead:
    """Everything that happened to a member: purchases, returns, points, redemptions, survey
    answers and cases, newest first (the "know your customer" view)."""
    with call.session() as db:
        page = timeline.member_timeline(
            db,
            program_id=call.program_id,
            member_id=member_id,
            before=before,
            limit=limit,
            kinds=kinds,
        )
    return TimelinePageRead(
        items=[item_read(item) for item in page.items], next_cursor=page.next_cursor
    )
