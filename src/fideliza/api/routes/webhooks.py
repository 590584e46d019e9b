"""The program's webhook endpoints, their delivery log and redeliveries (admin keys only)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.pagination import CursorQuery, Page, decode_cursor, encode_cursor
from fideliza.api.validation import IdPath, Limit
from fideliza.apikeys.domain import Scope
from fideliza.webhooks import service as webhooks
from fideliza.webhooks.domain import DeliveryStatus, message_id
from fideliza.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["webhooks"])
ADMIN_READ = reader(Scope.ADMIN)
ADMIN_WRITE = writer(Scope.ADMIN)


def webhook_settings() -> webhooks.WebhookSettings:
    """The operator's webhook settings (FIDELIZA_WEBHOOK_*), read per request."""
    return webhooks.WebhookSettings()


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="http(s) URL; loopback and private addresses are refused.",
        examples=["https://shop.example.com/hooks/fideliza"],
    )
    event_types: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Event types (`points.earned`), prefixes (`points.*`) or `*` for all.",
        examples=[["member.enrolled", "points.*"]],
    )
    description: str = Field(default="", max_length=200)


class WebhookRead(BaseModel):
    """An endpoint as listed: never its secret."""

    id: int
    url: str
    description: str
    event_types: list[str]
    active: bool
    created_at: datetime
    created_by: str | None
    deactivated_at: datetime | None


class WebhookCreated(WebhookRead):
    secret: str | None = Field(
        description=(
            "The signing secret (`whsec_…`, Standard Webhooks), shown this once "
            "(null when the creation is replayed)."
        )
    )


def endpoint_read(row: WebhookEndpoint) -> WebhookRead:
    return WebhookRead(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        active=row.active,
        created_at=row.created_at,
        created_by=row.created_by,
        deactivated_at=row.deactivated_at,
    )


def _without_secret(body: bytes) -> bytes:
    """What is kept for a replay of an endpoint's creation: everything but its secret."""
    data = json.loads(body)
    if "secret" in data:
        data["secret"] = None
    return json.dumps(data).encode()


@router.post("/webhooks", status_code=201, response_model=WebhookCreated)
def create_webhook(
    body: WebhookIn,
    call: Annotated[Write, Depends(ADMIN_WRITE)],
    settings: Annotated[webhooks.WebhookSettings, Depends(webhook_settings)],
) -> Response:
    """Registers an endpoint for some event types; the response shows its secret once."""

    def work(db: Session) -> Response:
        row, secret = webhooks.create(
            db,
            program_id=call.program_id,
            url=body.url,
            event_types=body.event_types,
            description=body.description,
            now=call.now,
            actor=call.caller.actor,
            allow_private=settings.allow_private_addresses,
        )
        created = WebhookCreated(**endpoint_read(row).model_dump(), secret=secret)
        return json_response(created, status=201)

    return call.run(work, store=_without_secret)


@router.get("/webhooks", response_model=list[WebhookRead])
def list_webhooks(call: Annotated[Call, Depends(ADMIN_READ)]) -> list[WebhookRead]:
    """The program's endpoints, deactivated ones included."""
    with call.session() as db:
        rows = webhooks.list_endpoints(db, program_id=call.program_id)
        return [endpoint_read(row) for row in rows]


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: IdPath, call: Annotated[Call, Depends(ADMIN_READ)]) -> WebhookRead:
    """One endpoint of the program."""
    with call.session() as db:
        return endpoint_read(webhooks.get(db, program_id=call.program_id, endpoint_id=webhook_id))


@router.delete("/webhooks/{webhook_id}", response_model=WebhookRead)
def delete_webhook(webhook_id: IdPath, call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Deactivates an endpoint at once and for good: nothing more is sent to it, pending
    deliveries are cancelled, its delivery log stays (deleting it again changes nothing)."""

    def work(db: Session) -> Response:
        row = webhooks.deactivate(
            db,
            program_id=call.program_id,
            endpoint_id=webhook_id,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(endpoint_read(row))

    return call.run(work)


# --- the delivery log --------------------------------------------------------------------------


class DeliveryRead(BaseModel):
    """One event for one endpoint: where its delivery stands."""

    id: int
    webhook_id: int
    event_id: str = Field(description="The `webhook-id` header every attempt carried.")
    event_type: str
    status: DeliveryStatus
    attempts: int = Field(description="Requests sent (or refused before sending) so far.")
    next_attempt_at: datetime | None = Field(description="When it is tried next (if pending).")
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    redelivered_at: datetime | None = Field(description="When it was last queued again.")
    created_at: datetime


class AttemptRead(BaseModel):
    """One request of the delivery log."""

    attempt: int
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's answer (null: none came).")
    duration_ms: int
    error: str | None = Field(description="Why it failed (null: acknowledged with a 2xx).")


class DeliveryDetail(DeliveryRead):
    """A delivery with the event it carries and every attempt, oldest first."""

    payload: dict[str, Any] = Field(description="The event's `data`, as sent.")
    attempt_log: list[AttemptRead]


def delivery_read(row: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        webhook_id=row.endpoint_id,
        event_id=message_id(row.outbox_id),
        event_type=row.event_type,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        delivered_at=row.delivered_at,
        redelivered_at=row.redelivered_at,
        created_at=row.created_at,
    )


def attempt_read(row: WebhookAttempt) -> AttemptRead:
    return AttemptRead(
        attempt=row.attempt,
        attempted_at=row.attempted_at,
        status_code=row.status_code,
        duration_ms=row.duration_ms,
        error=row.error,
    )


def delivery_detail(db: Session, row: WebhookDelivery) -> DeliveryDetail:
    event = webhooks.event_of(db, delivery=row)
    return DeliveryDetail(
        **delivery_read(row).model_dump(),
        payload=dict(event.payload),
        attempt_log=[attempt_read(a) for a in webhooks.attempts_of(db, delivery_id=row.id)],
    )


EventTypeQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$",
        description="Only this event type, e.g. `points.earned`.",
    ),
]


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryRead])
def list_deliveries(
    webhook_id: IdPath,
    call: Annotated[Call, Depends(ADMIN_READ)],
    status: Annotated[DeliveryStatus | None, Query(description="Only this status.")] = None,
    event_type: EventTypeQuery = None,
    cursor: CursorQuery = None,
    limit: Limit = 50,
) -> Page[DeliveryRead]:
    """The endpoint's deliveries, newest first (deliveries are made when the dispatcher runs)."""
    with call.session() as db:

        def newest(before_id: int | None, count: int) -> list[WebhookDelivery]:
            return webhooks.list_deliveries(
                db,
                program_id=call.program_id,
                endpoint_id=webhook_id,
                status=status,
                event_type=event_type,
                before_id=before_id,
                limit=count,
            )

        # One row past the page says whether another follows (`limit + 1` could exceed the cap).
        page = newest(decode_cursor(cursor), limit)
        more = len(page) == limit and bool(newest(page[-1].id, 1))
        return Page[DeliveryRead](
            items=[delivery_read(row) for row in page],
            next_cursor=encode_cursor(page[-1].id) if more else None,
        )


@router.get("/webhooks/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(
    webhook_id: IdPath, delivery_id: IdPath, call: Annotated[Call, Depends(ADMIN_READ)]
) -> DeliveryDetail:
    """One delivery: the event it carries and every attempt (status code, duration, error)."""
    with call.session() as db:
        row = webhooks.get_delivery(
            db, program_id=call.program_id, endpoint_id=webhook_id, delivery_id=delivery_id
        )
        return delivery_detail(db, row)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryDetail
)
def redeliver(
    webhook_id: IdPath, delivery_id: IdPath, call: Annotated[Write, Depends(ADMIN_WRITE)]
) -> Response:
    """Queues a delivered or failed event again, with a fresh retry budget; the next dispatcher
    run sends it (same `webhook-id`: receivers de-duplicate). 409 while it is still pending."""

    def work(db: Session) -> Response:
        row = webhooks.redeliver(
            db,
            program_id=call.program_id,
            endpoint_id=webhook_id,
            delivery_id=delivery_id,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(delivery_detail(db, row))

    return call.run(work)


@router.post("/webhooks/{webhook_id}/test", status_code=201, response_model=DeliveryDetail)
def send_test_event(webhook_id: IdPath, call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Queues a `webhook.test` event for this endpoint only; the next dispatcher run sends it,
    and its delivery (returned) logs the receiver's answer."""

    def work(db: Session) -> Response:
        row = webhooks.send_test(
            db,
            program_id=call.program_id,
            endpoint_id=webhook_id,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(delivery_detail(db, row), status=201)

    return call.run(work)
