"""Members: enrol, read, look up, update the profile; balance, history and tier status."""

from __future__ import annotations

import calendar
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.pagination import CursorQuery, Page, decode_cursor, encode_cursor
from fideliza.api.ratelimit import sensitive
from fideliza.api.validation import IdPath, Limit
from fideliza.apikeys.domain import Scope
from fideliza.ledger import service as ledger
from fideliza.ledger.history import member_history
from fideliza.members import service as members
from fideliza.members.domain import MemberStatus, qr_payload
from fideliza.members.models import Card, Member
from fideliza.members.schemas import MemberCreate, MemberUpdate
from fideliza.programs.models import Program
from fideliza.referrals import service as referrals
from fideliza.tiers import service as tiers

router = APIRouter(prefix="/v1", tags=["members"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()
ADMIN = writer(Scope.ADMIN)


class CardRead(BaseModel):
    number: str
    qr: str = Field(description="What the card's QR code encodes.")


class MemberRead(BaseModel):
    """A member as the API shows it; `id` is what the member routes take."""

    id: int
    external_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    birthday: date | None
    locale: str
    consent: dict[str, bool]
    attributes: dict[str, Any]
    status: str
    tier_code: str | None
    enrolled_at: datetime
    card: CardRead | None


class MemberLookup(BaseModel):
    """Exactly one of these (sent in a body, so that card numbers and phones stay out of URLs
    and access logs)."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(default=None, max_length=100)
    card: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


class BalanceRead(BaseModel):
    """Points available to spend, pending (return window) and held (redemptions)."""

    member_id: int
    points_name: str
    available: int
    pending: int
    held: int
    total: int


class HistoryLineRead(BaseModel):
    """One entry on one of the member's accounts, and why it happened."""

    entry_id: int
    transaction_id: int
    occurred_at: datetime
    kind: str
    account: str
    points: int
    why: str
    rule_id: int | None
    rule_version: int | None
    tier_code: str | None
    source_type: str | None
    source_ref: str | None


class TierChangeRead(BaseModel):
    from_code: str | None
    to_code: str | None
    changed_at: datetime
    reason: str


class TierStatusRead(BaseModel):
    """Where the member stands on the ladder; `configured` is false without a ladder."""

    configured: bool
    code: str | None
    metric: Decimal | None = None
    next_code: str | None = None
    missing: Decimal | None = Field(default=None, description="What is missing to reach next.")
    window_start: date | None = Field(default=None, description="First day that counts.")
    window_end: date | None = Field(default=None, description="Last day that counts.")
    history: list[TierChangeRead] = Field(default_factory=list)


def _last_day(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def member_read(db: Session, *, program: Program, member: Member) -> MemberRead:
    card = members.active_card(db, member_id=member.id)
    return _read(program, member, card)


def _read(program: Program, member: Member, card: Card | None) -> MemberRead:
    return MemberRead(
        id=member.id,
        external_id=member.external_id,
        first_name=member.first_name,
        last_name=member.last_name,
        email=member.email,
        phone=member.phone,
        birthday=member.birthday,
        locale=member.locale,
        consent=member.consent,
        attributes=member.attributes,
        status=member.status,
        tier_code=member.tier_code,
        enrolled_at=member.enrolled_at,
        card=CardRead(number=card.number, qr=qr_payload(program.code, card.number))
        if card
        else None,
    )


@router.post(
    "/members",
    status_code=201,
    response_model=MemberRead,
    responses={200: {"model": MemberRead, "description": "Already enrolled with this profile"}},
)
def enrol(body: MemberCreate, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Enrols a member (idempotent by `external_id`: 201 the first time, then 200); with a
    `referral_code`, linked to the member who referred them."""

    def work(db: Session) -> Response:
        program = call.program(db)
        if body.referral_code is None:
            member, created = members.enrol(db, program=program, data=body, now=call.now)
        else:  # the same as POST /v1/referrals/enrolments
            member, _, created = referrals.enrol_with_referral(
                db, program=program, data=body, now=call.now
            )
        read = member_read(db, program=program, member=member)
        return json_response(read, status=201 if created else 200)

    return call.run(work)


@router.get("/members", response_model=Page[MemberRead])
def list_members(
    call: Annotated[Call, Depends(READ)],
    cursor: CursorQuery = None,
    limit: Limit = 50,
    status: MemberStatus | None = None,
) -> Page[MemberRead]:
    """The program's members, oldest first."""
    after = decode_cursor(cursor)
    with call.session() as db:
        program = call.program(db)
        statement = select(Member).where(Member.program_id == program.id)
        if after is not None:
            statement = statement.where(Member.id > after)
        if status is not None:
            statement = statement.where(Member.status == status.value)
        found = list(db.scalars(statement.order_by(Member.id).limit(limit + 1)))
        page = found[:limit]
        cards = {
            card.member_id: card
            for card in db.scalars(
                select(Card).where(
                    Card.member_id.in_([m.id for m in page]), Card.status == "active"
                )
            )
        }
        return Page[MemberRead](
            items=[_read(program, m, cards.get(m.id)) for m in page],
            next_cursor=encode_cursor(page[-1].id) if len(found) > limit else None,
        )


@router.post(
    "/members/lookup",
    response_model=MemberRead,
    dependencies=[Depends(sensitive("member_lookup"))],
)
def lookup(body: MemberLookup, call: Annotated[Call, Depends(READ)]) -> MemberRead:
    """Finds a member by exactly one of external id, card number, e-mail or phone.

    Rate limited per API key (429 `rate_limited` with `Retry-After`)."""
    with call.session() as db:
        program = call.program(db)
        member = members.find(db, program_id=program.id, **body.model_dump())
        return member_read(db, program=program, member=member)


@router.get("/members/{member_id}", response_model=MemberRead)
def get_member(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> MemberRead:
    """A member, with their card."""
    with call.session() as db:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        return member_read(db, program=program, member=member)


@router.patch("/members/{member_id}", response_model=MemberRead)
def update_profile(
    member_id: IdPath, body: MemberUpdate, call: Annotated[Write, Depends(WRITE)]
) -> Response:
    """Changes profile fields only: points, tier, status or program are refused (422)."""

    def work(db: Session) -> Response:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        members.update_profile(
            db, program=program, member=member, changes=body, now=call.now, actor=call.caller.actor
        )
        return json_response(member_read(db, program=program, member=member))

    return call.run(work)


class StatusChangeIn(BaseModel):
    """Suspend (no earning or spending until reactivated), reactivate, or close (final)."""

    model_config = ConfigDict(extra="forbid")

    status: MemberStatus
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


@router.post("/members/{member_id}/status", response_model=MemberRead, tags=["admin"])
def change_status(
    member_id: IdPath, body: StatusChangeIn, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """Changes the member's status (audited with the key that did it); a purchase or redemption
    of the member running at that moment finishes first or sees the new status."""

    def work(db: Session) -> Response:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        members.change_status(
            db,
            program=program,
            member=member,
            status=body.status.value,
            reason=body.reason,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(member_read(db, program=program, member=member))

    return call.run(work)


@router.get("/members/{member_id}/balance", response_model=BalanceRead, tags=["points"])
def balance(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> BalanceRead:
    """The member's points."""
    with call.session() as db:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        return balance_read(db, program=program, member=member)


def balance_read(db: Session, *, program: Program, member: Member) -> BalanceRead:
    found = ledger.balance(db, member_id=member.id)
    return BalanceRead(
        member_id=member.id,
        points_name=program.points_name,
        available=found.available,
        pending=found.pending,
        held=found.held,
        total=found.total,
    )


@router.get("/members/{member_id}/history", response_model=Page[HistoryLineRead], tags=["points"])
def history(
    member_id: IdPath,
    call: Annotated[Call, Depends(READ)],
    cursor: CursorQuery = None,
    limit: Limit = 50,
) -> Page[HistoryLineRead]:
    """The member's points history, latest first, each line with its why."""
    with call.session() as db:
        member = members.get(db, program_id=call.program_id, member_id=member_id)
        return history_page(db, member=member, cursor=cursor, limit=limit)


def history_page(
    db: Session, *, member: Member, cursor: str | None, limit: int
) -> Page[HistoryLineRead]:
    before = decode_cursor(cursor)
    lines = member_history(db, member_id=member.id, limit=limit + 1, before_entry_id=before)
    page = lines[:limit]
    return Page[HistoryLineRead](
        items=[
            HistoryLineRead(
                entry_id=line.entry_id,
                transaction_id=line.transaction_id,
                occurred_at=line.occurred_at,
                kind=line.kind,
                account=line.account,
                points=line.points,
                why=line.why,
                rule_id=line.rule_id,
                rule_version=line.rule_version,
                tier_code=line.tier_code,
                source_type=line.source_type,
                source_ref=line.source_ref,
            )
            for line in page
        ],
        next_cursor=encode_cursor(page[-1].entry_id) if len(lines) > limit else None,
    )


@router.get("/members/{member_id}/tier", response_model=TierStatusRead, tags=["tiers"])
def tier_status(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> TierStatusRead:
    """The member's tier, the metric that counts, and what is missing to reach the next."""
    with call.session() as db:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        return tier_read(db, program=program, member=member, now=call.now)


def tier_read(db: Session, *, program: Program, member: Member, now: datetime) -> TierStatusRead:
    found = tiers.status(db, program=program, member=member, now=now)
    if found is None:
        return TierStatusRead(configured=False, code=member.tier_code)
    return TierStatusRead(
        configured=True,
        code=found.code,
        metric=found.metric,
        next_code=found.next_code,
        missing=found.missing,
        window_start=found.window[0],
        # The service names the last month by its 1st; a client wants the last day.
        window_end=_last_day(found.window[1]),
        history=[
            TierChangeRead(
                from_code=h.from_code,
                to_code=h.to_code,
                changed_at=h.changed_at,
                reason=h.reason,
            )
            for h in found.history
        ],
    )
