"""Custom events (store visits, reviews, …): recorded once by `external_id`, earn by the rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.routes.purchases import PostingRead, postings_read
from fideliza.api.validation import ExternalId, Timestamp
from fideliza.events import service as events

router = APIRouter(prefix="/v1", tags=["events"], responses=PROBLEM_RESPONSES)
WRITE = writer()


class EventIn(BaseModel):
    """Something a member did; the rules with `"activity": "<event_type>"` decide the points."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    member_id: ExternalId = Field(description="The member's external id.")
    event_type: str = Field(min_length=2, max_length=50, examples=["store_visit"])
    occurred_at: Timestamp
    attributes: dict[str, Any] = Field(default_factory=dict)


class EventResult(BaseModel):
    event_id: int
    external_id: str
    points: int
    transaction_id: int | None
    postings: list[PostingRead]
    replayed: bool


@router.post(
    "/events",
    status_code=201,
    response_model=EventResult,
    responses={200: {"model": EventResult, "description": "Recorded before: replayed"}},
)
def record_event(body: EventIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Records a member event and earns what the rules give for it (idempotent by id)."""

    def work(db: Session) -> Response:
        outcome = events.record_event(
            db,
            program=call.program(db),
            external_id=body.external_id,
            member_ref=body.member_id,
            event_type=body.event_type,
            occurred_at=body.occurred_at,
            now=call.now,
            attributes=body.attributes,
        )
        result = EventResult(
            event_id=outcome.event_id,
            external_id=body.external_id,
            points=outcome.points,
            transaction_id=outcome.transaction_id,
            postings=postings_read(outcome.postings),
            replayed=outcome.replayed,
        )
        return json_response(result, status=200 if outcome.replayed else 201)

    return call.run(work)
