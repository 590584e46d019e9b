"""Points: holds (reserve → capture | release), one-step redemptions and manual adjustments."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.grouping import note_redeemed
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.validation import IdPath, NonZeroPoints, Points, Reason
from fideliza.apikeys.domain import Scope
from fideliza.core.errors import FidelizaError, InvalidState, NotFound, ValidationError
from fideliza.core.validation import WholeNumber
from fideliza.ledger import redemptions
from fideliza.ledger import service as ledger
from fideliza.ledger.events import REDEMPTION_PREFIX
from fideliza.ledger.models import Hold
from fideliza.ledger.redemptions import Redeemed, RedemptionRequest
from fideliza.members import service as members
from fideliza.programs import service as programs

router = APIRouter(prefix="/v1", tags=["points"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()
ADMIN = writer(Scope.ADMIN)

# One-step redemptions are holds captured at once; their references live apart from the
# references clients give their own holds (the prefix is the ledger's: its events leave it out).
REDEMPTION = REDEMPTION_PREFIX


# A reward's hold is settled with its redemption (stock and budget go with the points).
REWARD = "reward:"


def _client_reference(value: str) -> str:
    for reserved in (REDEMPTION, REWARD):
        if value.startswith(reserved):
            raise ValueError(f"must not start with {reserved!r} (reserved)")
    return value


def _not_a_reward_hold(db: Session, *, program_id: int, hold_id: int) -> None:
    reference = db.scalar(
        select(Hold.reference).where(Hold.id == hold_id, Hold.program_id == program_id)
    )
    if reference is not None and reference.startswith(REWARD):
        raise InvalidState(
            f"hold {hold_id} belongs to a reward redemption: settle it through "
            "/v1/reward-redemptions/{id}",
            field="hold_id",
        )


class HoldIn(BaseModel):
    """Reserve points for a redemption; `reference` (yours) makes it idempotent."""

    model_config = ConfigDict(extra="forbid")

    points: Points
    reference: str = Field(min_length=1, max_length=90)
    reason: Reason
    ttl_minutes: WholeNumber | None = Field(
        default=None, ge=1, le=7 * 24 * 60, description="Default: the program's."
    )

    _reference = field_validator("reference")(_client_reference)


class HoldRead(BaseModel):
    """A reservation of points: `held`, then `captured`, `released` or `expired`."""

    id: int
    member_id: int
    points: int
    status: str
    reference: str
    reason: str | None
    created_at: datetime
    expires_at: datetime
    hold_transaction_id: int
    final_transaction_id: int | None


class RedemptionIn(BaseModel):
    """Spend points at once. Without a `reference`, the Idempotency-Key header is required."""

    model_config = ConfigDict(extra="forbid")

    points: Points
    reason: Reason
    reference: str | None = Field(default=None, min_length=1, max_length=90)


class RedemptionRead(BaseModel):
    """A redemption: points taken first-expiring-first, held and captured in one transaction."""

    id: int
    member_id: int
    points: int
    reference: str | None
    reason: str | None
    transaction_id: int | None
    redeemed_at: datetime
    available_after: int


class AdjustmentIn(BaseModel):
    """A manual correction (positive adds a lot; negative takes points first-expiring-first)."""

    model_config = ConfigDict(extra="forbid")

    points: NonZeroPoints
    reason: Reason


class AdjustmentRead(BaseModel):
    transaction_id: int
    member_id: int
    points: int
    available_after: int


def hold_read(found: Hold) -> HoldRead:
    return HoldRead(
        id=found.id,
        member_id=found.member_id,
        points=found.points,
        status=found.status,
        reference=found.reference,
        reason=found.reason,
        created_at=found.created_at,
        expires_at=found.expires_at,
        hold_transaction_id=found.hold_transaction_id,
        final_transaction_id=found.final_transaction_id,
    )


def _by_reference(db: Session, *, program_id: int, reference: str) -> Hold | None:
    return db.scalar(select(Hold).where(Hold.program_id == program_id, Hold.reference == reference))


@router.post(
    "/members/{member_id}/holds",
    status_code=201,
    response_model=HoldRead,
    responses={200: {"model": HoldRead, "description": "Held before with this reference"}},
)
def create_hold(
    member_id: IdPath, body: HoldIn, call: Annotated[Write, Depends(WRITE)]
) -> Response:
    """Reserves points (available → held) until captured, released or expired."""

    def work(db: Session) -> Response:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        members.require_active(member)
        # Lock first, then look: a concurrent hold with the same reference is then seen.
        ledger.lock_member_accounts(db, member_ids=[member.id])
        existed = _by_reference(db, program_id=program.id, reference=body.reference) is not None
        found = ledger.hold(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            member_id=member.id,
            points=body.points,
            reference=body.reference,
            now=call.now,
            reason=body.reason,
            ttl=timedelta(minutes=body.ttl_minutes) if body.ttl_minutes else None,
        )
        return json_response(hold_read(found), status=200 if existed else 201)

    return call.run(work)


@router.get("/holds/{hold_id}", response_model=HoldRead)
def get_hold(hold_id: IdPath, call: Annotated[Call, Depends(READ)]) -> HoldRead:
    """A hold and its state."""
    with call.session() as db:
        found = db.scalar(
            select(Hold).where(Hold.id == hold_id, Hold.program_id == call.program_id)
        )
        if found is None:
            raise NotFound(f"hold {hold_id} does not exist", field="hold_id")
        return hold_read(found)


@router.post("/holds/{hold_id}/capture", response_model=HoldRead)
def capture_hold(hold_id: IdPath, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Turns a hold into a redemption (held → redeemed); a second capture is refused (409)."""

    def work(db: Session) -> Response:
        _not_a_reward_hold(db, program_id=call.program_id, hold_id=hold_id)
        found = ledger.capture(db, program_id=call.program_id, hold_id=hold_id, now=call.now)
        return json_response(hold_read(found))

    return call.run(work)


@router.post("/holds/{hold_id}/release", response_model=HoldRead)
def release_hold(hold_id: IdPath, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Gives held points back (held → available); a second release is refused (409)."""

    def work(db: Session) -> Response:
        _not_a_reward_hold(db, program_id=call.program_id, hold_id=hold_id)
        found = ledger.release(db, program_id=call.program_id, hold_id=hold_id, now=call.now)
        return json_response(hold_read(found))

    return call.run(work)


def _redemption_reference(call: Write, body: RedemptionIn) -> str:
    if body.reference is not None:
        return REDEMPTION + body.reference
    if call.idempotency_key is None:
        raise ValidationError(
            "is required for a redemption without a `reference`", field="Idempotency-Key"
        )
    # Derived from the key, so even a retry after the key's retention cannot redeem twice.
    digest = hashlib.sha256(f"{call.caller.key_id}:{call.idempotency_key}".encode()).hexdigest()
    return f"{REDEMPTION}key:{digest[:64]}"


@router.post(
    "/members/{member_id}/redemptions",
    status_code=201,
    response_model=RedemptionRead,
    responses={200: {"model": RedemptionRead, "description": "Redeemed before: replayed"}},
)
async def redeem(
    member_id: IdPath, body: RedemptionIn, call: Annotated[Write, Depends(WRITE)]
) -> Response:
    """Spends points now: reserved and captured atomically, first-expiring lots first."""
    reference = _redemption_reference(call, body)
    request = RedemptionRequest(
        member_id=member_id, points=body.points, reference=reference, reason=body.reason
    )
    groups = call.runtime.redemption_groups
    if call.idempotency_key is None and groups is not None:
        # Written with the redemptions other requests are sending at the same moment.
        done = await groups.submit(program_id=call.program_id, item=request, now=call.now)
        return _redemption_response(done, body.reference)

    def work(db: Session) -> Response:
        program = call.program(db)
        [answer] = redemptions.redeem_many(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            requests=[request],
            now=call.now,
        )
        if isinstance(answer, FidelizaError):
            raise answer
        note_redeemed(db, answer)
        return _redemption_response(answer, body.reference)

    return await run_in_threadpool(call.run, work, key_required=body.reference is None)


def _redemption_response(done: Redeemed, reference: str | None) -> Response:
    result = RedemptionRead(
        id=done.hold_id,
        member_id=done.member_id,
        points=done.points,
        reference=reference,
        reason=done.reason,
        transaction_id=done.transaction_id,
        redeemed_at=done.redeemed_at,
        available_after=done.available_after,
    )
    return json_response(result, status=200 if done.replayed else 201)


@router.post(
    "/members/{member_id}/adjustments",
    status_code=201,
    response_model=AdjustmentRead,
    tags=["admin"],
)
def adjust(
    member_id: IdPath, body: AdjustmentIn, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """A manual correction by an admin key, with its reason (the audit names the key)."""

    def work(db: Session) -> Response:
        program = call.program(db)
        member = members.get(db, program_id=program.id, member_id=member_id)
        transaction_id = ledger.adjust(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            timezone_name=program.timezone,
            member_id=member.id,
            points=body.points,
            issuer=call.caller.actor,
            reason=body.reason,
            now=call.now,
        )
        result = AdjustmentRead(
            transaction_id=transaction_id,
            member_id=member.id,
            points=body.points,
            available_after=ledger.balance(db, member_id=member.id).available,
        )
        return json_response(result, status=201)

    return call.run(work)
