"""Purchases, returns and the dry run: what a till or a shop sends."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.metrics import note_posting
from fideliza.api.validation import DecimalText, ExternalId, IdPath, Timestamp
from fideliza.core.errors import NotFound
from fideliza.core.money import minor_units
from fideliza.core.validation import WholeNumber
from fideliza.ledger.domain import TxKind
from fideliza.members import service as members
from fideliza.purchases import service as purchases
from fideliza.purchases.ingest import Outcome
from fideliza.purchases.models import Purchase
from fideliza.rules.domain import Posting
from fideliza.rules.service import explain_checks

router = APIRouter(prefix="/v1", tags=["purchases"], responses=PROBLEM_RESPONSES)
READ = reader()
WRITE = writer()


class ItemIn(BaseModel):
    """A basket line."""

    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=64)
    quantity: WholeNumber = Field(default=1, ge=1, le=1_000_000)
    unit_price: DecimalText


class BasketIn(BaseModel):
    """What a purchase and a dry run share."""

    model_config = ConfigDict(extra="forbid")

    occurred_at: Timestamp
    amount: DecimalText
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    channel: str | None = Field(default=None, max_length=30)
    store: str | None = Field(default=None, max_length=64)
    items: list[ItemIn] = Field(default_factory=list, max_length=1000)
    attributes: dict[str, Any] = Field(default_factory=dict)

    def as_service_data(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        data["occurred_at"] = self.occurred_at.isoformat()
        return data


class PurchaseIn(BasketIn):
    """A purchase; `external_id` (the till's transaction id) makes it idempotent."""

    external_id: ExternalId
    member_id: ExternalId = Field(
        description="The member's external id (the business's own id), as in import files."
    )


class DryRunIn(BasketIn):
    """A basket to evaluate, optionally as a member (their tier, attributes, caps)."""

    member_id: ExternalId | None = Field(default=None, description="The member's external id.")


class PostingRead(BaseModel):
    """Points earned and why."""

    points: int
    reason: str
    rule_id: int | None
    rule_version: int | None
    tier_code: str | None


class TierChangeRead(BaseModel):
    from_code: str | None
    to_code: str | None
    reason: str


class PurchaseResult(BaseModel):
    """What a purchase earned (`replayed`: it was recorded before, with the same content)."""

    purchase_id: int
    external_id: str
    member_id: int
    points: int
    pending: bool
    transaction_id: int | None
    postings: list[PostingRead]
    tier_change: TierChangeRead | None
    replayed: bool


class PurchaseRead(BaseModel):
    purchase_id: int
    external_id: str
    member_id: int
    occurred_at: datetime
    amount: Decimal
    currency: str
    channel: str | None
    store: str | None
    items: list[dict[str, Any]]
    points_earned: int
    points_reversed: int
    amount_returned: Decimal
    transaction_id: int | None


class ReturnItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: WholeNumber = Field(default=1, ge=1, le=1_000_000)


class ReturnIn(BaseModel):
    """Items (or an amount) of a purchase brought back; idempotent by `external_id`."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    purchase_external_id: ExternalId
    occurred_at: Timestamp
    items: list[ReturnItemIn] | None = Field(default=None, max_length=1000)
    amount: DecimalText | None = None


class ReturnResult(BaseModel):
    return_id: int
    external_id: str
    amount: Decimal
    points_reversed: int
    transaction_id: int | None
    replayed: bool


class RuleCheckRead(BaseModel):
    rule_id: int
    version: int
    name: str
    matched: bool
    failed_condition: str | None
    detail: str


class DryRunResult(BaseModel):
    """What the basket would earn, the postings, and each rule's verdict (nothing written)."""

    points: int
    postings: list[PostingRead]
    checks: list[RuleCheckRead]


def _money(value: Decimal, currency: str) -> Decimal:
    """Money as the currency writes it (the columns keep 4 decimals whatever the currency)."""
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)))


def postings_read(postings: tuple[Posting, ...] | list[Posting]) -> list[PostingRead]:
    return [
        PostingRead(
            points=p.points,
            reason=p.reason,
            rule_id=p.rule_id,
            rule_version=p.rule_version,
            tier_code=p.tier_code,
        )
        for p in postings
    ]


@router.post(
    "/purchases",
    status_code=201,
    response_model=PurchaseResult,
    responses={200: {"model": PurchaseResult, "description": "Recorded before: replayed"}},
)
async def record_purchase(body: PurchaseIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Records a purchase and earns its points (idempotent by `external_id`)."""
    groups = call.runtime.purchase_groups
    if call.idempotency_key is None and groups is not None:
        # Recorded with the purchases other requests are sending at the same moment.
        outcome = await groups.submit(
            program_id=call.program_id, item=body.as_service_data(), now=call.now
        )
        return _purchase_response(outcome)

    def work(db: Session) -> Response:
        program = call.program(db)
        outcome = purchases.record_purchase(
            db, program=program, data=body.as_service_data(), now=call.now
        )
        if outcome.transaction_id is not None and not outcome.replayed:
            note_posting(db, TxKind.EARN.value)  # written in bulk, unseen by the metrics' watch
        return _purchase_response(outcome)

    return await run_in_threadpool(call.run, work)


def _purchase_response(outcome: Outcome) -> Response:
    change = outcome.tier_change
    result = PurchaseResult(
        purchase_id=outcome.purchase_id,
        external_id=outcome.external_id,
        member_id=outcome.member_id,
        points=outcome.points,
        pending=outcome.pending,
        transaction_id=outcome.transaction_id,
        postings=postings_read(outcome.postings),
        tier_change=TierChangeRead(
            from_code=change.from_code, to_code=change.to_code, reason=change.reason
        )
        if change
        else None,
        replayed=outcome.replayed,
    )
    return json_response(result, status=200 if outcome.replayed else 201)


@router.get("/purchases/{purchase_id}", response_model=PurchaseRead)
def get_purchase(purchase_id: IdPath, call: Annotated[Call, Depends(READ)]) -> PurchaseRead:
    """A purchase as recorded, with the points it earned and those returns took back."""
    with call.session() as db:
        found = db.scalar(
            select(Purchase).where(
                Purchase.id == purchase_id, Purchase.program_id == call.program_id
            )
        )
        if found is None:
            raise NotFound(f"purchase {purchase_id} does not exist", field="purchase_id")
        return PurchaseRead(
            purchase_id=found.id,
            external_id=found.external_id,
            member_id=found.member_id,
            occurred_at=found.occurred_at,
            amount=_money(found.amount, found.currency),
            currency=found.currency,
            channel=found.channel,
            store=found.store,
            items=found.items,
            points_earned=found.points_earned,
            points_reversed=found.points_reversed,
            amount_returned=_money(found.amount_returned, found.currency),
            transaction_id=found.earn_transaction_id,
        )


@router.post(
    "/returns",
    status_code=201,
    response_model=ReturnResult,
    responses={200: {"model": ReturnResult, "description": "Recorded before: replayed"}},
)
def record_return(body: ReturnIn, call: Annotated[Write, Depends(WRITE)]) -> Response:
    """Records a return and reverses its share of the purchase's points (idempotent by id)."""

    def work(db: Session) -> Response:
        try:
            outcome = purchases.record_return(
                db,
                program=call.program(db),
                purchase_external_id=body.purchase_external_id,
                external_id=body.external_id,
                occurred_at=body.occurred_at,
                now=call.now,
                items=[item.model_dump() for item in body.items] if body.items else None,
                amount=body.amount,
            )
        except NotFound as error:  # the service names the purchase `purchase_id`; we do not
            if error.field == "purchase_id":
                error.field = "purchase_external_id"
            raise
        result = ReturnResult(
            return_id=outcome.return_id,
            external_id=outcome.external_id,
            amount=outcome.amount,
            points_reversed=outcome.points_reversed,
            transaction_id=outcome.transaction_id,
            replayed=outcome.replayed,
        )
        return json_response(result, status=200 if outcome.replayed else 201)

    return call.run(work)


@router.post("/dry-run", response_model=DryRunResult, tags=["rules"])
def dry_run(body: DryRunIn, call: Annotated[Call, Depends(READ)]) -> DryRunResult:
    """What a basket would earn, and rule by rule why or why not; nothing is written."""
    with call.session() as db:
        program = call.program(db)
        member = (
            members.find(db, program_id=program.id, external_id=body.member_id)
            if body.member_id
            else None
        )
        result = purchases.dry_run(db, program=program, data=body.as_service_data(), member=member)
        return DryRunResult(
            points=result.points,
            postings=postings_read(result.postings),
            checks=[RuleCheckRead(**check) for check in explain_checks(result.checks)],
        )
