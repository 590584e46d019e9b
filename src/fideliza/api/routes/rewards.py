"""Rewards catalog and redemptions: hold points and stock → capture | release."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.validation import IdPath
from fideliza.apikeys.domain import Scope
from fideliza.core.errors import ValidationError
from fideliza.core.validation import WholeNumber
from fideliza.rewards import service as rewards
from fideliza.rewards.schemas import (
    MemberCatalog,
    RedemptionRead,
    RewardCreate,
    RewardRead,
    RewardUpdate,
)

router = APIRouter(prefix="/v1", tags=["rewards"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()
ADMIN = writer(Scope.ADMIN)

# References derived from an Idempotency-Key live apart from the references clients give.
FROM_KEY = "key:"


class RedemptionIn(BaseModel):
    """Redeem a reward: its points and a unit of stock are held until capture or release.

    `reference` (yours) makes it idempotent; without one, the Idempotency-Key header is required.
    """

    model_config = ConfigDict(extra="forbid")

    reward_id: WholeNumber = Field(ge=1, le=2**63 - 1)
    reference: str | None = Field(default=None, min_length=1, max_length=rewards.MAX_REFERENCE)
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="What the member chose (a seat, a size, a date …)."
    )
    ttl_minutes: WholeNumber | None = Field(
        default=None, ge=1, le=7 * 24 * 60, description="Default: the program's."
    )

    @field_validator("reference")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        if value is not None and value.startswith(FROM_KEY):
            raise ValueError(f"must not start with {FROM_KEY!r} (reserved)")
        return value


class RewardList(BaseModel):
    items: list[RewardRead]


@router.post("/rewards", status_code=201, response_model=RewardRead, tags=["admin"])
def create_reward(body: RewardCreate, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Adds a reward to the catalog (an admin key)."""

    def work(db: Session) -> Response:
        reward = rewards.create_reward(
            db, program=call.program(db), data=body, now=call.now, actor=call.caller.actor
        )
        return json_response(rewards.reward_read(reward), status=201)

    return call.run(work)


@router.get("/rewards", response_model=RewardList)
def list_rewards(
    call: Annotated[Call, Depends(READ)],
    active: Annotated[bool | None, Query(description="Only active rewards.")] = None,
) -> RewardList:
    """The program's catalog, in code order."""
    with call.session() as db:
        found = rewards.list_rewards(db, program_id=call.program_id, active_only=bool(active))
        return RewardList(items=[rewards.reward_read(reward) for reward in found])


@router.get("/rewards/{reward_id}", response_model=RewardRead)
def get_reward(reward_id: IdPath, call: Annotated[Call, Depends(READ)]) -> RewardRead:
    """A catalog entry."""
    with call.session() as db:
        return rewards.reward_read(
            rewards.get_reward(db, program_id=call.program_id, reward_id=reward_id)
        )


@router.patch("/rewards/{reward_id}", response_model=RewardRead, tags=["admin"])
def update_reward(
    reward_id: IdPath, body: RewardUpdate, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """Changes the fields given (an admin key); `null` clears an optional limit."""

    def work(db: Session) -> Response:
        reward = rewards.update_reward(
            db,
            program=call.program(db),
            reward_id=reward_id,
            data=body,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(rewards.reward_read(reward))

    return call.run(work)


@router.get("/members/{member_id}/rewards", response_model=MemberCatalog)
def member_catalog(member_id: IdPath, call: Annotated[Call, Depends(READ)]) -> MemberCatalog:
    """The catalog as the member sees it now: their price, what they can afford, what they are
    eligible for (or why not), and the next reward within reach."""
    with call.session() as db:
        return rewards.member_catalog(
            db, program=call.program(db), member_id=member_id, now=call.now
        )


def _reference(call: Write, body: RedemptionIn) -> str:
    if body.reference is not None:
        return body.reference
    if call.idempotency_key is None:
        raise ValidationError(
            "is required for a redemption without a `reference`", field="Idempotency-Key"
        )
    # Derived from the key, so even a retry after the key's retention cannot redeem twice.
    digest = hashlib.sha256(f"{call.caller.key_id}:{call.idempotency_key}".encode()).hexdigest()
    return f"{FROM_KEY}{digest[:64]}"


@router.post(
    "/members/{member_id}/reward-redemptions",
    status_code=201,
    response_model=RedemptionRead,
    responses={200: {"model": RedemptionRead, "description": "Redeemed before: replayed"}},
)
def redeem(
    member_id: IdPath, body: RedemptionIn, call: Annotated[Write, Depends(WRITE)]
) -> Response:
    """Holds the reward's points and a unit of its stock for the member (409 with the reason
    when they cannot afford it or are not eligible)."""
    reference = _reference(call, body)

    def work(db: Session) -> Response:
        redemption, created = rewards.redeem(
            db,
            program=call.program(db),
            member_id=member_id,
            reward_id=body.reward_id,
            reference=reference,
            now=call.now,
            attributes=body.attributes,
            ttl=timedelta(minutes=body.ttl_minutes) if body.ttl_minutes else None,
            actor=call.caller.actor,
        )
        return json_response(
            rewards.redemption_read(db, redemption), status=201 if created else 200
        )

    return call.run(work, key_required=body.reference is None)


@router.get("/reward-redemptions/{redemption_id}", response_model=RedemptionRead)
def get_redemption(redemption_id: IdPath, call: Annotated[Call, Depends(READ)]) -> RedemptionRead:
    """A redemption and its state."""
    with call.session() as db:
        redemption = rewards.get_redemption(
            db, program_id=call.program_id, redemption_id=redemption_id
        )
        return rewards.redemption_read(db, redemption)


@router.post("/reward-redemptions/{redemption_id}/capture", response_model=RedemptionRead)
def capture(redemption_id: IdPath, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Finalizes a held redemption: points spent, reward fulfilled (a coupon code, a wallet
    credit …), `reward.redeemed` published. A second capture is refused (409)."""

    def work(db: Session) -> Response:
        redemption = rewards.capture(
            db,
            program=call.program(db),
            redemption_id=redemption_id,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(rewards.redemption_read(db, redemption))

    return call.run(work)


@router.post("/reward-redemptions/{redemption_id}/release", response_model=RedemptionRead)
def release(redemption_id: IdPath, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Cancels a held redemption: points, stock and budget go back. A second release is
    refused (409)."""

    def work(db: Session) -> Response:
        redemption = rewards.release(
            db,
            program=call.program(db),
            redemption_id=redemption_id,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(rewards.redemption_read(db, redemption))

    return call.run(work)
