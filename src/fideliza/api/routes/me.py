"""Member tokens, and `/v1/me`: what a member sees and may change through an app or the portal.

A `pos` key (the app's server) issues a short-lived token for one member; the app calls the
`/v1/me` routes with it. Those routes take the member from the token, never from the request,
so no path, query or body can reach another member (OWASP API1); and they accept nothing but a
member token, while every other route accepts nothing but an API key.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from fideliza.api.context import Call, MemberCall, member_caller, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.pagination import CursorQuery, Page
from fideliza.api.routes.members import (
    BalanceRead,
    HistoryLineRead,
    MemberRead,
    TierStatusRead,
    balance_read,
    history_page,
    member_read,
    tier_read,
)
from fideliza.api.validation import IdPath, Limit
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Scope
from fideliza.core.validation import WholeNumber
from fideliza.db import unit_of_work
from fideliza.members import service as members
from fideliza.members.schemas import MemberUpdate
from fideliza.programs import service as programs

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
# Issuing writes nothing (the token is not stored), so a retry simply gets a fresh token.
ISSUE = reader(Scope.POS)
MEMBER = Depends(member_caller)


class MemberTokenIn(BaseModel):
    """How long the token lives: 15 minutes unless said otherwise, at most a day."""

    model_config = ConfigDict(extra="forbid")

    ttl_minutes: WholeNumber = Field(default=15, ge=1, le=24 * 60)


class MemberTokenRead(BaseModel):
    """Give `token` to the member's app; it sends `Authorization: Bearer <token>`."""

    token: str
    token_type: str = "Bearer"
    member_id: int
    expires_at: datetime


@router.post(
    "/members/{member_id}/tokens",
    status_code=201,
    response_model=MemberTokenRead,
    tags=["members"],
)
def issue_token(
    member_id: IdPath, body: MemberTokenIn, call: Annotated[Call, Depends(ISSUE)]
) -> MemberTokenRead:
    """Issues a member token (needs `pos`); the token is not stored and cannot be shown again."""
    secret = call.runtime.settings.secret_key
    with call.session() as db:
        token, expires_at = apikeys.issue_member_token(
            db,
            program_id=call.program_id,
            member_id=member_id,
            now=call.now,
            ttl=timedelta(minutes=body.ttl_minutes),
            secret=secret.get_secret_value() if secret else None,
        )
    return MemberTokenRead(token=token, member_id=member_id, expires_at=expires_at)


@router.get("/me", response_model=MemberRead, tags=["me"])
def me(call: Annotated[MemberCall, MEMBER]) -> MemberRead:
    """The member's profile and card."""
    with call.session() as db:
        program = programs.get(db, program_id=call.program_id)
        member = members.get(db, program_id=call.program_id, member_id=call.member_id)
        return member_read(db, program=program, member=member)


@router.patch("/me", response_model=MemberRead, tags=["me"])
def update_me(body: MemberUpdate, call: Annotated[MemberCall, MEMBER]) -> MemberRead:
    """Changes the member's own profile; points, tier, status or program are refused (422)."""
    with unit_of_work(call.runtime.factory) as db:
        program = programs.get(db, program_id=call.program_id)
        member = members.get(db, program_id=call.program_id, member_id=call.member_id)
        members.update_profile(
            db, program=program, member=member, changes=body, now=call.now, actor=call.actor
        )
        return member_read(db, program=program, member=member)


@router.get("/me/balance", response_model=BalanceRead, tags=["me"])
def my_balance(call: Annotated[MemberCall, MEMBER]) -> BalanceRead:
    """The member's points."""
    with call.session() as db:
        program = programs.get(db, program_id=call.program_id)
        member = members.get(db, program_id=call.program_id, member_id=call.member_id)
        return balance_read(db, program=program, member=member)


@router.get("/me/history", response_model=Page[HistoryLineRead], tags=["me"])
def my_history(
    call: Annotated[MemberCall, MEMBER], cursor: CursorQuery = None, limit: Limit = 50
) -> Page[HistoryLineRead]:
    """The member's points history, latest first, each line with its why."""
    with call.session() as db:
        member = members.get(db, program_id=call.program_id, member_id=call.member_id)
        return history_page(db, member=member, cursor=cursor, limit=limit)


@router.get("/me/tier", response_model=TierStatusRead, tags=["me"])
def my_tier(call: Annotated[MemberCall, MEMBER]) -> TierStatusRead:
    """The member's tier and what is missing to reach the next."""
    with call.session() as db:
        program = programs.get(db, program_id=call.program_id)
        member = members.get(db, program_id=call.program_id, member_id=call.member_id)
        return tier_read(db, program=program, member=member, now=call.now)
