"""The program's webhook endpoints (admin keys only)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.validation import IdPath
from fideliza.apikeys.domain import Scope
from fideliza.webhooks import service as webhooks
from fideliza.webhooks.models import WebhookEndpoint

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
