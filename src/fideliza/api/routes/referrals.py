"""Referrals and lifecycle bonuses: a member's code, enrolment with a code, a member's
referrals, and the program's referral and lifecycle configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.pagination import CursorQuery, Page, decode_cursor, encode_cursor
from fideliza.api.routes.members import MemberRead, member_read
from fideliza.api.validation import IdPath, Limit
from fideliza.apikeys.domain import Scope
from fideliza.db import unit_of_work
from fideliza.lifecycle import service as lifecycle
from fideliza.lifecycle.schemas import LifecycleConfig
from fideliza.members import service as members
from fideliza.members.schemas import MemberCreate
from fideliza.referrals import service as referrals
from fideliza.referrals.domain import ReferralState
from fideliza.referrals.models import Referral
from fideliza.referrals.schemas import ReferralConfig, ReferralRead

router = APIRouter(prefix="/v1", tags=["referrals"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()
ADMIN_READ = reader(Scope.ADMIN)
ADMIN = writer(Scope.ADMIN)


class ReferralCodeRead(BaseModel):
    """A member's referral code, as people type it (case and dashes do not matter)."""

    member_id: int
    code: str


class ReferralEnrolment(MemberCreate):
    """A new member's profile and the referral code they came with (required here)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    referral_code: str = Field(min_length=1, max_length=32)


class ReferredMemberRead(BaseModel):
    """The member enrolled and their referral (`rejected` with a reason over the cap)."""

    member: MemberRead
    referral: ReferralRead


def referral_read(referral: Referral) -> ReferralRead:
    return ReferralRead.model_validate(referral, from_attributes=True)


@router.get("/members/{member_id}/referral-code", response_model=ReferralCodeRead)
def referral_code(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> ReferralCodeRead:
    """The member's referral code (created the first time it is asked for)."""
    with unit_of_work(call.runtime.factory) as db:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        code = referrals.code_for(db, program=program, member=member, now=call.now)
        return ReferralCodeRead(member_id=member.id, code=referrals.display(code))


@router.post(
    "/referrals/enrolments",
    status_code=201,
    response_model=ReferredMemberRead,
    responses={200: {"model": ReferredMemberRead, "description": "Already enrolled and linked"}},
)
def enrol_with_referral(
    body: ReferralEnrolment, call: Annotated[Write, Depends(WRITE)]
) -> Response:
    """Enrols a new member linked to the owner of `referral_code`.

    A bad or unknown code, a self-referral (same e-mail, phone or card) or an existing member
    is refused with nothing written (retry without the code through `POST /v1/members`)."""

    def work(db: Session) -> Response:
        program = call.program(db)
        member, referral, created = referrals.enrol_with_referral(
            db, program=program, data=body, referral_code=body.referral_code, now=call.now
        )
        read = ReferredMemberRead(
            member=member_read(db, program=program, member=member),
            referral=referral_read(referral),
        )
        return json_response(read, status=201 if created else 200)

    return call.run(work)


@router.get("/members/{member_id}/referrals", response_model=Page[ReferralRead])
def member_referrals(
    member_id: IdPath,
    call: Annotated[Call, Depends(READ)],
    cursor: CursorQuery = None,
    limit: Limit = 50,
    state: ReferralState | None = None,
) -> Page[ReferralRead]:
    """The referrals a member made, and the one that brought them in (oldest first)."""
    after = decode_cursor(cursor) or 0
    with call.session() as db:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        found = referrals.list_referrals(
            db,
            program_id=program.id,
            member_id=member.id,
            state=state.value if state else None,
            after_id=after,
            limit=limit + 1,
        )
        page = found[:limit]
        return Page[ReferralRead](
            items=[referral_read(r) for r in page],
            next_cursor=encode_cursor(page[-1].id) if len(found) > limit else None,
        )


class ReferralConfigRead(BaseModel):
    """The program's referral configuration; `configured` is false when it has none."""

    configured: bool
    config: ReferralConfig | None


class LifecycleConfigRead(BaseModel):
    """The program's lifecycle bonuses; `configured` is false when it has none."""

    configured: bool
    config: LifecycleConfig | None


@router.get("/referrals/config", response_model=ReferralConfigRead)
def get_referral_config(call: Annotated[Call, Depends(ADMIN_READ)]) -> ReferralConfigRead:
    """Who gets what for a referral, and when."""
    with call.session() as db:
        config = referrals.get_config(db, program_id=call.program_id)
        return ReferralConfigRead(configured=config is not None, config=config)


@router.put("/referrals/config", response_model=ReferralConfigRead)
def put_referral_config(body: ReferralConfig, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Sets who gets what for a referral, and when (validated as a whole)."""

    def work(db: Session) -> Response:
        saved = referrals.configure(
            db, program=call.program(db), config=body, now=call.now, actor=call.caller.actor
        )
        return json_response(ReferralConfigRead(configured=True, config=saved))

    return call.run(work)


@router.get("/lifecycle/config", response_model=LifecycleConfigRead, tags=["lifecycle"])
def get_lifecycle_config(call: Annotated[Call, Depends(ADMIN_READ)]) -> LifecycleConfigRead:
    """The welcome, birthday, anniversary and appreciation-day bonuses."""
    with call.session() as db:
        config = lifecycle.get_config(db, program_id=call.program_id)
        return LifecycleConfigRead(configured=config is not None, config=config)


@router.put("/lifecycle/config", response_model=LifecycleConfigRead, tags=["lifecycle"])
def put_lifecycle_config(body: LifecycleConfig, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Sets the lifecycle bonuses; appreciation-day multipliers become earning rules."""

    def work(db: Session) -> Response:
        saved = lifecycle.configure(
            db, program=call.program(db), config=body, now=call.now, actor=call.caller.actor
        )
        return json_response(LifecycleConfigRead(configured=True, config=saved))

    return call.run(work)
