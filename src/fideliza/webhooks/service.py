"""Webhook use cases: register, list and deactivate endpoints; dispatch the outbox.

Registration functions take the caller's session and never commit. `dispatch_due` runs its own
short transactions (from a session factory), so it can be called from a job, the CLI or a test,
and several dispatchers can run at once: work is taken with `SELECT … FOR UPDATE SKIP LOCKED`
on PostgreSQL (SQLite serialises writers anyway, a plain select is enough there).

Delivery is at least once: a delivery is claimed (its attempt counted and its next attempt
moved a lease ahead) and committed before the request is sent, so another dispatcher does not
take it; if this one dies mid-way, the delivery is due again when the lease ends. Receivers
de-duplicate by `webhook-id`, as the Standard Webhooks specification expects.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Select, and_, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from fideliza import __version__
from fideliza.core.errors import FidelizaError, InvalidState, NotFound, ValidationError
from fideliza.db import unit_of_work
from fideliza.programs import service as programs
from fideliza.programs.models import OutboxEvent
from fideliza.webhooks.domain import (
    DeliveryStatus,
    Destination,
    RetryPolicy,
    body_of,
    check_addresses,
    headers_for,
    is_success,
    literal_address,
    matches,
    message_id,
    new_secret,
    parse_event_types,
    parse_url,
)
from fideliza.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = logging.getLogger("fideliza.webhooks")

MAX_ERROR_LENGTH = 500


class WebhookSettings(BaseSettings):
    """FIDELIZA_WEBHOOK_<NAME>, e.g. FIDELIZA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=true."""

    model_config = SettingsConfigDict(
        env_prefix="FIDELIZA_WEBHOOK_", env_file=".env", extra="ignore"
    )

    # Loopback, private, link-local and other non-public destinations are refused (SSRF)
    # unless the operator allows them, e.g. for receivers on the same private network.
    allow_private_addresses: bool = False
    max_attempts: int = Field(default=8, ge=1, le=50)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # `points.expiring` announces points this many days before they expire.
    expiring_notice_days: int = Field(default=30, ge=1, le=365)


Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal address is itself)."""
    literal = literal_address(host)
    if literal is not None:
        return [str(literal)]
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def check_destination(
    url: object, *, allow_private: bool, resolve: Resolver = resolve_host
) -> Destination:
    """Validates an endpoint URL and refuses it when it resolves to a non-public address
    (unless `allow_private`)."""
    destination = parse_url(url)
    try:
        addresses = resolve(destination.host, destination.port)
    except (OSError, UnicodeError) as error:
        raise ValidationError(
            f"host {destination.host!r} cannot be resolved ({error})", field="url"
        ) from None
    check_addresses(destination.host, addresses, allow_private=allow_private)
    return destination


# --- endpoints -------------------------------------------------------------------------------


def create(
    db: Session,
    *,
    program_id: int,
    url: object,
    event_types: object,
    now: datetime,
    description: str = "",
    actor: str | None = None,
    allow_private: bool = False,
    resolve: Resolver = resolve_host,
) -> tuple[WebhookEndpoint, str]:
    """Registers an endpoint; returns the row and its signing secret (shown only this once)."""
    types = parse_event_types(event_types)
    description = (description or "").strip()
    if len(description) > 200:
        raise ValidationError("must not exceed 200 characters", field="description")
    destination = check_destination(url, allow_private=allow_private, resolve=resolve)
    secret = new_secret()
    row = WebhookEndpoint(
        program_id=program_id,
        url=destination.url,
        description=description,
        event_types=types,
        secret=secret,
        active=True,
        created_at=now,
        created_by=actor,
    )
    db.add(row)
    db.flush()
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.webhook.created",
        subject=str(row.id),
        now=now,
        actor=actor,
        data={"url": row.url, "event_types": types},
    )
    return row, secret


def get(db: Session, *, program_id: int, endpoint_id: int) -> WebhookEndpoint:
    """An endpoint of a program (the same error whether absent or another program's)."""
    row = db.get(WebhookEndpoint, endpoint_id)
    if row is None or row.program_id != program_id:
        raise NotFound(f"webhook endpoint {endpoint_id} does not exist", field="webhook_id")
    return row


def list_endpoints(db: Session, *, program_id: int) -> list[WebhookEndpoint]:
    """A program's endpoints, deactivated ones included, oldest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.program_id == program_id)
    return list(db.scalars(query.order_by(WebhookEndpoint.id)))


def deactivate(
    db: Session, *, program_id: int, endpoint_id: int, now: datetime, actor: str | None = None
) -> WebhookEndpoint:
    """Stops sending to an endpoint for good (its delivery log stays); twice changes nothing."""
    row = get(db, program_id=program_id, endpoint_id=endpoint_id)
    if row.active:
        row.active = False
        row.deactivated_at = now
        programs.audit(
            db,
            program_id=program_id,
            action="fideliza.webhook.deactivated",
            subject=str(row.id),
            now=now,
            actor=actor,
        )
        db.flush()
    return row


def attempts_of(db: Session, *, delivery_id: int) -> list[WebhookAttempt]:
    """The delivery log of one delivery, oldest first."""
    query = select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
    return list(db.scalars(query.order_by(WebhookAttempt.id)))


# --- the delivery log ------------------------------------------------------------------------

MAX_PAGE = 200
TEST_EVENT = "webhook.test"
REDELIVERABLE = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)


def list_deliveries(
    db: Session,
    *,
    program_id: int,
    endpoint_id: int,
    status: str | None = None,
    event_type: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """An endpoint's deliveries, newest first; `before_id` (the last id of a page) pages back."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"must be between 1 and {MAX_PAGE}", field="limit")
    if status is not None and status not in set(DeliveryStatus):
        raise ValidationError(f"must be one of {[s.value for s in DeliveryStatus]}", field="status")
    endpoint = get(db, program_id=program_id, endpoint_id=endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type == event_type)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(db.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def get_delivery(
    db: Session, *, program_id: int, endpoint_id: int, delivery_id: int
) -> WebhookDelivery:
    """One delivery of an endpoint (the same error whether absent, another endpoint's or
    another program's)."""
    endpoint = get(db, program_id=program_id, endpoint_id=endpoint_id)
    row = db.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint.id:
        raise NotFound(f"webhook delivery {delivery_id} does not exist", field="delivery_id")
    return row


def event_of(db: Session, *, delivery: WebhookDelivery) -> OutboxEvent:
    """The outbox event a delivery carries."""
    event = db.get(OutboxEvent, delivery.outbox_id)
    if event is None:  # a foreign key guarantees it
        raise NotFound(f"event {delivery.outbox_id} does not exist", field="delivery_id")
    return event


def redeliver(
    db: Session,
    *,
    program_id: int,
    endpoint_id: int,
    delivery_id: int,
    now: datetime,
    actor: str | None = None,
) -> WebhookDelivery:
    """Queues a delivered or failed event again for its endpoint, with a fresh retry budget
    (the next dispatcher run sends it, with the same `webhook-id`)."""
    row = get_delivery(db, program_id=program_id, endpoint_id=endpoint_id, delivery_id=delivery_id)
    endpoint = get(db, program_id=program_id, endpoint_id=endpoint_id)
    if not endpoint.active:
        raise InvalidState(
            f"webhook endpoint {endpoint_id} is deactivated: nothing is sent to it",
            field="webhook_id",
        )
    # Checked and changed in one statement: a dispatcher or a concurrent redelivery may move
    # the delivery meanwhile, and a delivery in flight must not be queued twice.
    queued = db.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == row.id, WebhookDelivery.status.in_(REDELIVERABLE))
        .values(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            delivered_at=None,
            attempts_before_redelivery=WebhookDelivery.attempts,
            redelivered_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    db.refresh(row)
    if not queued.rowcount:  # type: ignore[attr-defined]
        raise InvalidState(
            f"webhook delivery {delivery_id} is {row.status}: only a delivered or failed one "
            "can be sent again",
            field="delivery_id",
        )
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.webhook.redelivered",
        subject=str(row.id),
        now=now,
        actor=actor,
        data={"webhook_id": endpoint.id, "event_type": row.event_type},
    )
    return row


def send_test(
    db: Session, *, program_id: int, endpoint_id: int, now: datetime, actor: str | None = None
) -> WebhookDelivery:
    """Queues a `webhook.test` event for one endpoint only (whatever it subscribes to): the
    next dispatcher run sends it, signed like any event, and logs the attempt."""
    endpoint = get(db, program_id=program_id, endpoint_id=endpoint_id)
    if not endpoint.active:
        raise InvalidState(
            f"webhook endpoint {endpoint_id} is deactivated: nothing is sent to it",
            field="webhook_id",
        )
    # Written as already dispatched, so the fan-out never sends it to the other endpoints.
    event = OutboxEvent(
        program_id=program_id,
        event_type=TEST_EVENT,
        payload={"webhook_id": endpoint.id, "test": True},
        created_at=now,
        dispatched_at=now,
    )
    db.add(event)
    db.flush()
    row = WebhookDelivery(
        program_id=program_id,
        endpoint_id=endpoint.id,
        outbox_id=event.id,
        event_type=TEST_EVENT,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    db.add(row)
    db.flush()
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.webhook.tested",
        subject=str(endpoint.id),
        now=now,
        actor=actor,
        data={"delivery_id": row.id},
    )
    return row


# --- dispatch --------------------------------------------------------------------------------


class Sender(Protocol):
    """Sends one POST; returns the response's status code, raises on a transport error."""

    def __call__(
        self, url: str, *, body: bytes, headers: dict[str, str], timeout: float
    ) -> int: ...


class HttpxSender:
    """The default sender: one httpx client, no redirects followed (a redirect could lead to
    an address the SSRF check refused), the response body never read past its status."""

    def __init__(self) -> None:
        self.client = httpx.Client(
            follow_redirects=False, headers={"user-agent": f"Fideliza-Webhooks/{__version__}"}
        )

    def __call__(self, url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> int:
        with self.client.stream("POST", url, content=body, headers=headers, timeout=timeout) as r:
            return r.status_code

    def close(self) -> None:
        self.client.close()


@dataclass(slots=True)
class DispatchReport:
    """What one `dispatch_due` run did."""

    events: int = 0  # outbox events fanned out (and marked dispatched)
    deliveries_created: int = 0
    delivered: int = 0
    retrying: int = 0  # failed attempts that will be tried again
    failed: int = 0  # deliveries given up
    cancelled: int = 0  # deliveries to endpoints deactivated meanwhile
    attempted: list[int] = field(default_factory=list)  # ids of the deliveries attempted


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery_id: int
    attempt: int
    attempts_before: int  # made before the last redelivery: the retry budget starts after them
    url: str
    secret: str
    outbox_id: int
    event_type: str
    occurred_at: datetime
    payload: Any


def _locking(db: Session, query: Select[Any], *of: Any) -> Select[Any]:
    if db.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=list(of) or None)
    return query  # SQLite: BEGIN IMMEDIATE already serialises writers


def fan_out(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    program_id: int | None = None,
    batch: int = 100,
) -> tuple[int, int]:
    """Turns undispatched outbox events into deliveries to the matching active endpoints and
    marks them dispatched, `batch` events per transaction. Returns (events, deliveries)."""
    events = deliveries = 0
    while True:
        with unit_of_work(factory) as db:
            query = select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
            if program_id is not None:
                query = query.where(OutboxEvent.program_id == program_id)
            rows = list(db.scalars(_locking(db, query.order_by(OutboxEvent.id).limit(batch))))
            if not rows:
                return events, deliveries
            endpoints: dict[int, list[WebhookEndpoint]] = {}
            for program in {row.program_id for row in rows}:
                endpoints[program] = list(
                    db.scalars(
                        select(WebhookEndpoint).where(
                            WebhookEndpoint.program_id == program, WebhookEndpoint.active
                        )
                    )
                )
            created = [
                {
                    "program_id": row.program_id,
                    "endpoint_id": endpoint.id,
                    "outbox_id": row.id,
                    "event_type": row.event_type,
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for row in rows
                for endpoint in endpoints[row.program_id]
                if matches(endpoint.event_types, row.event_type)
            ]
            if created:
                db.execute(insert(WebhookDelivery), created)
            db.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([row.id for row in rows]))
                .values(dispatched_at=now)
                .execution_options(synchronize_session=False)
            )
            events += len(rows)
            deliveries += len(created)


def _claim(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    program_id: int | None,
    batch: int,
    lease: timedelta,
    report: DispatchReport,
) -> list[_Claimed]:
    """Takes up to `batch` due deliveries: counts their attempt and moves them a lease ahead."""
    with unit_of_work(factory) as db:
        query = (
            select(
                WebhookDelivery.id,
                WebhookDelivery.attempts,
                WebhookDelivery.attempts_before_redelivery,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
                WebhookEndpoint.active,
                OutboxEvent.id,
                OutboxEvent.event_type,
                OutboxEvent.created_at,
                OutboxEvent.payload,
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
        )
        if program_id is not None:
            query = query.where(WebhookDelivery.program_id == program_id)
        query = query.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(batch)
        rows = db.execute(_locking(db, query, WebhookDelivery)).all()
        claimed: list[_Claimed] = []
        cancelled: list[int] = []
        for row in rows:
            if not row[5]:
                cancelled.append(row[0])
                continue
            claimed.append(
                _Claimed(
                    delivery_id=row[0],
                    attempt=row[1] + 1,
                    attempts_before=row[2],
                    url=row[3],
                    secret=row[4],
                    outbox_id=row[6],
                    event_type=row[7],
                    occurred_at=row[8],
                    payload=row[9],
                )
            )
        if cancelled:
            db.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(cancelled))
                .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None)
                .execution_options(synchronize_session=False)
            )
            report.cancelled += len(cancelled)
        if claimed:
            db.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([c.delivery_id for c in claimed]))
                .values(
                    attempts=WebhookDelivery.attempts + 1,
                    next_attempt_at=now + lease,
                    last_attempt_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        return claimed


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry: bool  # whether a failure may succeed later (a refused destination never will)


def _attempt(
    claimed: _Claimed,
    *,
    now: datetime,
    send: Sender,
    timeout: float,
    allow_private: bool,
    resolve: Resolver,
) -> _Outcome:
    """Checks the destination again (DNS may have changed since registration), then sends."""
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        check_destination(claimed.url, allow_private=allow_private, resolve=resolve)
    except FidelizaError as error:
        forbidden = error.code == "forbidden_destination"
        return _Outcome(None, error.message, elapsed(), retry=not forbidden)
    body = body_of(
        outbox_id=claimed.outbox_id,
        event_type=claimed.event_type,
        occurred_at=claimed.occurred_at,
        data=claimed.payload,
    )
    headers = headers_for(
        secret=claimed.secret, message_id=message_id(claimed.outbox_id), now=now, body=body
    )
    try:
        status = send(claimed.url, body=body, headers=headers, timeout=timeout)
    except Exception as error:  # any transport failure is one failed attempt, never a crash
        return _Outcome(None, f"{type(error).__name__}: {error}", elapsed(), retry=True)
    if is_success(status):
        return _Outcome(status, None, elapsed(), retry=False)
    return _Outcome(status, f"HTTP {status}", elapsed(), retry=True)


def _record(
    factory: sessionmaker[Session],
    claimed: _Claimed,
    outcome: _Outcome,
    *,
    now: datetime,
    policy: RetryPolicy,
    report: DispatchReport,
) -> None:
    values: dict[str, Any]
    if outcome.error is None:
        values = {"status": DeliveryStatus.DELIVERED, "next_attempt_at": None, "delivered_at": now}
        report.delivered += 1
    else:
        made = claimed.attempt - claimed.attempts_before
        again = policy.next_attempt(attempts=made, now=now) if outcome.retry else None
        if again is None:
            values = {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
            report.failed += 1
        else:
            values = {"next_attempt_at": again}
            report.retrying += 1
    with unit_of_work(factory) as db:
        db.execute(
            update(WebhookDelivery)
            .where(
                and_(
                    WebhookDelivery.id == claimed.delivery_id,
                    # Only if no other dispatcher took it over after our lease ran out.
                    WebhookDelivery.attempts == claimed.attempt,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                )
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        db.execute(
            insert(WebhookAttempt),
            {
                "delivery_id": claimed.delivery_id,
                "attempt": claimed.attempt,
                "attempted_at": now,
                "status_code": outcome.status_code,
                "error": outcome.error[:MAX_ERROR_LENGTH] if outcome.error else None,
                "duration_ms": outcome.duration_ms,
            },
        )
    report.attempted.append(claimed.delivery_id)


@contextmanager
def _sender(send: Sender | None) -> Iterator[Sender]:
    if send is not None:
        yield send
        return
    default = HttpxSender()
    try:
        yield default
    finally:
        default.close()


def dispatch_due(
    db_factory: sessionmaker[Session],
    *,
    now: datetime,
    send: Sender | None = None,
    program_id: int | None = None,
    allow_private: bool = False,
    policy: RetryPolicy | None = None,
    timeout: float = 10.0,
    batch: int = 100,
    lease: timedelta = timedelta(minutes=5),
    resolve: Resolver = resolve_host,
) -> DispatchReport:
    """Fans the outbox out into deliveries, then attempts every delivery due at `now`.

    `send` posts one request (by default an httpx client); `allow_private` lets requests go to
    loopback and private addresses (off by default: SSRF); `policy` says when to retry and
    when to give up; `program_id` limits the run to one program. Every attempt is logged.
    """
    if lease <= timedelta(seconds=timeout):
        raise ValidationError("must be longer than the request timeout", field="lease")
    policy = policy or RetryPolicy()
    report = DispatchReport()
    report.events, report.deliveries_created = fan_out(
        db_factory, now=now, program_id=program_id, batch=batch
    )
    with _sender(send) as sender:
        while True:
            claimed = _claim(
                db_factory, now=now, program_id=program_id, batch=batch, lease=lease, report=report
            )
            if not claimed:
                break
            for item in claimed:
                outcome = _attempt(
                    item,
                    now=now,
                    send=sender,
                    timeout=timeout,
                    allow_private=allow_private,
                    resolve=resolve,
                )
                if outcome.error is not None:
                    log.warning(
                        "webhook delivery %s attempt %s failed: %s",
                        item.delivery_id,
                        item.attempt,
                        outcome.error,
                    )
                _record(db_factory, item, outcome, now=now, policy=policy, report=report)
    return report
