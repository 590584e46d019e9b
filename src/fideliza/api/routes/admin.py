"""The caller's program, its API keys and its jobs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.validation import IdPath, Timestamp
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Scope, display
from fideliza.apikeys.models import ApiKey
from fideliza.jobs.service import run_jobs

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
READ = reader()
ADMIN_READ = reader(Scope.ADMIN)
ADMIN_WRITE = writer(Scope.ADMIN)


class ProgramRead(BaseModel):
    code: str
    name: str
    currency: str
    timezone: str
    points_name: str
    settings: dict[str, Any]


@router.get("/program", response_model=ProgramRead, tags=["programs"])
def get_program(call: Annotated[Call, Depends(READ)]) -> ProgramRead:
    """The program of the API key."""
    with call.session() as db:
        program = call.program(db)
        return ProgramRead(
            code=program.code,
            name=program.name,
            currency=program.currency,
            timezone=program.timezone,
            points_name=program.points_name,
            settings=program.settings,
        )


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, max_length=3, examples=[["pos"]])
    expires_at: Timestamp | None = None


class ApiKeyRead(BaseModel):
    """A key as listed: never its secret."""

    id: int
    name: str
    display: str = Field(description="The key's public part, to recognise it.")
    scopes: list[str]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str | None = Field(
        description="The key itself, shown this once (null when the creation is replayed)."
    )


def key_read(row: ApiKey) -> ApiKeyRead:
    return ApiKeyRead(
        id=row.id,
        name=row.name,
        display=display(row.prefix),
        scopes=list(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _without_secret(body: bytes) -> bytes:
    """What is kept for a replay of a key's creation: everything but the key itself."""
    data = json.loads(body)
    if "key" in data:
        data["key"] = None
    return json.dumps(data).encode()


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, tags=["admin"])
def create_key(body: ApiKeyIn, call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Creates an API key for the program; the response shows the key once."""

    def work(db: Session) -> Response:
        row, plaintext = apikeys.create(
            db,
            program=call.program(db),
            name=body.name,
            scopes=[scope.value for scope in body.scopes],
            now=call.now,
            actor=call.caller.actor,
            expires_at=body.expires_at,
        )
        created = ApiKeyCreated(**key_read(row).model_dump(), key=plaintext)
        return json_response(created, status=201)

    return call.run(work, store=_without_secret)


@router.get("/api-keys", response_model=list[ApiKeyRead], tags=["admin"])
def list_keys(call: Annotated[Call, Depends(ADMIN_READ)]) -> list[ApiKeyRead]:
    """The program's API keys, revoked ones included."""
    with call.session() as db:
        return [key_read(row) for row in apikeys.list_keys(db, program_id=call.program_id)]


@router.delete("/api-keys/{key_id}", response_model=ApiKeyRead, tags=["admin"])
def revoke_key(key_id: IdPath, call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Revokes a key at once and for good (revoking it again changes nothing)."""

    def work(db: Session) -> Response:
        row = apikeys.revoke(
            db, program_id=call.program_id, key_id=key_id, now=call.now, actor=call.caller.actor
        )
        return json_response(key_read(row))

    return call.run(work)


class JobsRead(BaseModel):
    program: str
    lots_unlocked: int
    redemptions_expired: int
    holds_released: int
    points_expired: int
    points_expiring: int | None
    tier_changes: int | None
    gift_cards_expired: int
    referrals_rewarded: int
    lifecycle_bonuses: dict[str, int]
    survey_invitations: int
    case_breaches: int
    messages_queued: dict[str, int] | None
    idempotency_keys_purged: int
    messages_sent: int | None


@router.post("/jobs/run", response_model=JobsRead, tags=["admin"])
def run_program_jobs(call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Runs the program's jobs now: unlock pending points, release stale holds, expire lots,
    review tiers, forget idempotency keys past their retention. Safe to run twice."""
    factory = call.runtime.factory

    def work(db: Session) -> Response:
        # The jobs use transactions of their own: `db` must not hold one meanwhile (on SQLite
        # it would hold the write lock the jobs wait for).
        code = call.program(db).code
        db.commit()
        report = run_jobs(factory, program_code=code, now=call.now)
        return json_response(JobsRead(**report.as_dict()))

    return call.run(work)
