"""API key use cases (create, authenticate, revoke, list) and idempotency claims.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fideliza.apikeys import member_tokens
from fideliza.apikeys.domain import (
    Claim,
    Claimed,
    InFlight,
    RequestStatus,
    StoredRequest,
    TakeOver,
    decide,
    digest_matches,
    new_key,
    parse_scopes,
    prefix_of,
)
from fideliza.apikeys.errors import NotConfigured, Unauthenticated
from fideliza.apikeys.models import ApiKey, IdempotencyRecord
from fideliza.core.errors import InvalidState, NotFound, ValidationError
from fideliza.members.domain import MemberStatus
from fideliza.members.models import Member
from fideliza.programs import service as programs
from fideliza.programs.models import Program

LAST_USED_EVERY = timedelta(minutes=1)

# Revocations seen by this process: the API's cache of verified keys drops its entries when
# the count moves (bumped when a revocation is made, and again when it commits).
_revocations = [0]


def revocations() -> int:
    """How many key revocations this process has made (for caches of verified keys)."""
    return _revocations[0]


def _count_revocation(_db: Session | None = None) -> None:
    _revocations[0] += 1


def create(
    db: Session,
    *,
    program: Program,
    name: str,
    scopes: Iterable[str] | str,
    now: datetime,
    actor: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Creates a key; returns the row and the plaintext key, which is never shown again."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError("is required (1–100 characters)", field="name")
    parsed = parse_scopes(scopes)
    if expires_at is not None and expires_at <= now:
        raise ValidationError("must be in the future", field="expires_at")
    for _ in range(5):  # 36^10 prefixes: a collision is rare, five in a row never happens
        generated = new_key()
        taken = db.scalar(select(ApiKey.id).where(ApiKey.prefix == generated.prefix))
        if taken is None:
            break
    else:  # pragma: no cover
        raise RuntimeError("could not find a free API key prefix")
    row = ApiKey(
        program_id=program.id,
        name=name,
        prefix=generated.prefix,
        secret_hash=generated.digest,
        scopes=[scope.value for scope in parsed],
        created_at=now,
        created_by=actor,
        expires_at=expires_at,
    )
    db.add(row)
    db.flush()
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.apikey.created",
        subject=generated.prefix,
        now=now,
        actor=actor,
        data={"name": name, "scopes": row.scopes},
    )
    return row, generated.plaintext


def authenticate(db: Session, *, plaintext: str | None, now: datetime) -> ApiKey:
    """The live key `plaintext` names; the same error whether it is malformed or unknown."""
    prefix = prefix_of(plaintext or "")
    row = db.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    if row is None or plaintext is None or not digest_matches(plaintext, row.secret_hash):
        raise Unauthenticated("send a valid API key as `Authorization: Bearer <key>`")
    # Past this point the caller holds the real key, so telling why it stopped working is safe.
    if row.revoked_at is not None:
        raise Unauthenticated("this API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated("this API key has expired")
    return row


def touch(db: Session, *, key: ApiKey, now: datetime) -> bool:
    """Records the key's last use, at most once a minute; tells whether it wrote."""
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return False
    db.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    key.last_used_at = now
    return True


def get(db: Session, *, program_id: int, key_id: int) -> ApiKey:
    """Gets a key of a program (the same error whether absent or another program's)."""
    row = db.get(ApiKey, key_id)
    if row is None or row.program_id != program_id:
        raise NotFound(f"API key {key_id} does not exist", field="key_id")
    return row


def list_keys(db: Session, *, program_id: int) -> list[ApiKey]:
    """The program's keys, revoked ones included, oldest first."""
    return list(
        db.scalars(select(ApiKey).where(ApiKey.program_id == program_id).order_by(ApiKey.id))
    )


def revoke(
    db: Session, *, program_id: int, key_id: int, now: datetime, actor: str | None = None
) -> ApiKey:
    """Revokes a key for good; revoking it again changes nothing."""
    row = get(db, program_id=program_id, key_id=key_id)
    if row.revoked_at is None:
        _count_revocation()
        # Once more after the commit: a key verified between now and then was verified
        # before the revocation was visible, and must not stay cached.
        event.listen(db, "after_commit", _count_revocation, once=True)
        row.revoked_at = now
        programs.audit(
            db,
            program_id=program_id,
            action="fideliza.apikey.revoked",
            subject=row.prefix,
            now=now,
            actor=actor,
        )
        db.flush()
    return row


# --- idempotency ------------------------------------------------------------------------------


def claim(
    db: Session,
    *,
    api_key_id: int,
    key: str,
    fingerprint: str,
    now: datetime,
    lease: timedelta,
    retention: timedelta,
) -> Claim:
    """Claims an idempotency key for a request, or says how to answer it instead.

    The caller commits right after, so a concurrent request with the same key sees the claim.
    """
    token = secrets.token_hex(16)
    fresh = {
        "fingerprint": fingerprint,
        "status": RequestStatus.IN_FLIGHT.value,
        "token": token,
        "locked_until": now + lease,
        "response_status": None,
        "response_type": None,
        "response_body": None,
        "created_at": now,
        "expires_at": now + retention,
    }
    for _ in range(2):  # twice: a released claim may vanish between the insert and the read
        inserted = _insert_if_absent(db, {"api_key_id": api_key_id, "key": key, **fresh})
        if inserted is not None:
            return Claimed(record_id=inserted, token=token)
        row = db.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key
            )
        ).scalar_one_or_none()
        if row is None:
            continue
        decision = decide(
            StoredRequest(
                fingerprint=row.fingerprint,
                status=RequestStatus(row.status),
                locked_until=row.locked_until,
                expires_at=row.expires_at,
                response_status=row.response_status,
                response_body=row.response_body,
                response_type=row.response_type,
            ),
            fingerprint=fingerprint,
            now=now,
        )
        if not isinstance(decision, TakeOver):
            return decision
        # Only one of several workers taking over wins: the update names the old token.
        taken = db.connection().execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == row.id, IdempotencyRecord.token == row.token)
            .values(**fresh)
        )
        db.expire(row)
        if taken.rowcount == 1:
            return Claimed(record_id=row.id, token=token)
        return InFlight(retry_after_seconds=1)
    return InFlight(retry_after_seconds=1)


def _insert_if_absent(db: Session, values: dict[str, Any]) -> int | None:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id`: the id, or None if the key exists."""
    table = IdempotencyRecord.__table__
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["api_key_id", "key"])
        .returning(table.c.id)
    )
    found: int | None = db.connection().execute(statement).scalar_one_or_none()
    return found


def complete(
    db: Session,
    *,
    claimed: Claimed,
    status: int,
    body: str,
    media_type: str,
) -> bool:
    """Stores the response of a claimed request; False if the claim was lost (taken over)."""
    done = db.connection().execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == claimed.record_id,
            IdempotencyRecord.token == claimed.token,
            IdempotencyRecord.status == RequestStatus.IN_FLIGHT.value,
        )
        .values(
            status=RequestStatus.DONE.value,
            locked_until=None,
            response_status=status,
            response_type=media_type,
            response_body=body,
        )
    )
    return done.rowcount == 1


def release(db: Session, *, claimed: Claimed) -> None:
    """Forgets a claim whose request failed without a response to keep (a retry runs again)."""
    db.execute(
        delete(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == claimed.record_id,
            IdempotencyRecord.token == claimed.token,
            IdempotencyRecord.status == RequestStatus.IN_FLIGHT.value,
        )
        .execution_options(synchronize_session=False)
    )


def purge_expired(
    db: Session, *, now: datetime, program_id: int | None = None, limit: int = 10_000
) -> int:
    """Deletes up to `limit` idempotency records past their retention; returns how many."""
    statement = select(IdempotencyRecord.id).where(IdempotencyRecord.expires_at <= now)
    if program_id is not None:
        statement = statement.where(
            IdempotencyRecord.api_key_id.in_(
                select(ApiKey.id).where(ApiKey.program_id == program_id)
            )
        )
    ids = db.scalars(statement.limit(limit)).all()
    if ids:
        db.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
    return len(ids)


# --- member tokens ----------------------------------------------------------------------------


def issue_member_token(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    now: datetime,
    ttl: timedelta,
    secret: str | None,
) -> tuple[str, datetime]:
    """A signed token through which an app acts as this member only; and when it expires."""
    from fideliza.members import service as members

    key = _member_token_secret(secret)
    member = members.get(db, program_id=program_id, member_id=member_id)
    if member.status == MemberStatus.CLOSED:
        raise InvalidState(f"member {member_id} is closed", field="member_id")
    token = member_tokens.sign(
        program_id=program_id, member_id=member.id, now=now, ttl=ttl, secret=key
    )
    return token, now + ttl


def member_of_token(db: Session, *, token: str, secret: str | None, now: datetime) -> Member:
    """The member a genuine, unexpired token speaks for; closed members are shut out."""
    claims = member_tokens.verify(token, secret=_member_token_secret(secret), now=now)
    member = db.get(Member, claims.member_id)
    if member is None or member.program_id != claims.program_id:
        raise Unauthenticated("send a valid member token as `Authorization: Bearer fzm_…`")
    if member.status == MemberStatus.CLOSED:
        raise Unauthenticated("this member is closed")
    return member


def _member_token_secret(secret: str | None) -> str:
    if not secret:
        raise NotConfigured(
            "member tokens need a signing secret: set FIDELIZA_SECRET_KEY (32+ characters)",
            field="FIDELIZA_SECRET_KEY",
        )
    return secret
