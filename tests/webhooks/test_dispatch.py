"""Dispatching the outbox to a real local HTTP receiver, on SQLite and PostgreSQL (issue 3,
part 5): signed per Standard Webhooks, retried with backoff, given up, logged, SSRF-guarded,
and — with two dispatchers at once on PostgreSQL — each event delivered once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import ValidationError
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.programs import service as programs
from fideliza.programs.models import OutboxEvent
from fideliza.webhooks import service as webhooks
from fideliza.webhooks.domain import RetryPolicy
from fideliza.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.factories import make_member, make_program
from tests.webhooks.receiver import receiver, verify


def setup(
    factory: sessionmaker[Session],
    now: datetime,
    url: str,
    event_types: list[str] | None = None,
    *,
    events: int = 1,
) -> tuple[int, str]:
    """A program with one endpoint at `url` and `events` member enrolments in its outbox."""
    with unit_of_work(factory) as db:
        program = make_program(db, now=now)
        _, secret = webhooks.create(
            db,
            program_id=program.id,
            url=url,
            event_types=event_types or ["member.enrolled"],
            now=now,
            allow_private=True,
        )
        for _ in range(events):
            make_member(db, program=program, now=now)
        return program.id, secret


def deliveries(factory: sessionmaker[Session], program_id: int) -> list[WebhookDelivery]:
    with factory() as db:
        query = select(WebhookDelivery).where(WebhookDelivery.program_id == program_id)
        return list(db.scalars(query.order_by(WebhookDelivery.id)))


def log_of(factory: sessionmaker[Session], delivery_id: int) -> list[WebhookAttempt]:
    with factory() as db:
        return webhooks.attempts_of(db, delivery_id=delivery_id)


def dispatch(
    factory: sessionmaker[Session], program_id: int, now: datetime, **options: Any
) -> webhooks.DispatchReport:
    return webhooks.dispatch_due(
        factory, now=now, program_id=program_id, allow_private=True, **options
    )


def test_a_delivery_is_signed_and_the_receiver_verifies_it(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with receiver() as hook:
        program_id, secret = setup(session_factory, now, hook.url)
        report = dispatch(session_factory, program_id, now)  # the real httpx sender
    assert (report.events, report.deliveries_created, report.delivered) == (1, 1, 1)
    [request] = hook.requests
    assert request.path == "/hooks"
    assert verify(secret, request, now=int(now.timestamp()))
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["type"] == "member.enrolled"
    assert body["id"] == request.headers["webhook-id"]
    # A tampered body or another secret does not verify.
    tampered = type(request)(request.path, request.headers, request.body + b" ")
    assert not verify(secret, tampered, now=int(now.timestamp()))
    assert not verify("whsec_" + "A" * 44, request, now=int(now.timestamp()))
    with session_factory() as db:
        outbox = db.scalars(select(OutboxEvent).where(OutboxEvent.program_id == program_id))
        assert all(row.dispatched_at == now for row in outbox)
    [delivery] = deliveries(session_factory, program_id)
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == ("delivered", 1, now)
    [attempt] = log_of(session_factory, delivery.id)
    assert (attempt.status_code, attempt.error, attempt.attempt) == (200, None, 1)
    assert attempt.duration_ms >= 0
    # Nothing is sent twice.
    again = dispatch(session_factory, program_id, now + timedelta(days=1))
    assert (again.events, again.delivered) == (0, 0)


def test_a_500_is_retried_with_backoff_then_succeeds(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with receiver(statuses=[500]) as hook:
        program_id, secret = setup(session_factory, now, hook.url)
        first = dispatch(session_factory, program_id, now)
        assert (first.delivered, first.retrying) == (0, 1)
        [delivery] = deliveries(session_factory, program_id)
        assert delivery.status == "pending"
        assert delivery.attempts == 1
        assert delivery.next_attempt_at == now + timedelta(seconds=30)
        # Not due yet: nothing is sent.
        early = dispatch(session_factory, program_id, now + timedelta(seconds=29))
        assert early.attempted == []
        later = now + timedelta(seconds=30)
        second = dispatch(session_factory, program_id, later)
        assert second.delivered == 1
    assert len(hook.requests) == 2
    assert hook.requests[0].headers["webhook-id"] == hook.requests[1].headers["webhook-id"]
    assert verify(secret, hook.requests[1], now=int(later.timestamp()))
    [delivery] = deliveries(session_factory, program_id)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    log = log_of(session_factory, delivery.id)
    assert [(a.attempt, a.status_code, a.error) for a in log] == [
        (1, 500, "HTTP 500"),
        (2, 200, None),
    ]


def test_gives_up_after_the_last_attempt(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    policy = RetryPolicy(max_attempts=3, base=timedelta(seconds=10))
    at = now
    with receiver(default=500) as hook:
        program_id, _ = setup(session_factory, now, hook.url)
        waits = []
        for _ in range(3):
            dispatch(session_factory, program_id, at, policy=policy)
            [delivery] = deliveries(session_factory, program_id)
            if delivery.next_attempt_at is not None:
                waits.append(delivery.next_attempt_at - at)
                at = delivery.next_attempt_at
        assert waits == [timedelta(seconds=10), timedelta(seconds=20)]
        assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
        late = dispatch(session_factory, program_id, at + timedelta(days=30), policy=policy)
        assert late.attempted == []
    assert len(hook.requests) == 3
    assert [a.status_code for a in log_of(session_factory, delivery.id)] == [500, 500, 500]


def test_a_dead_receiver_is_a_failed_attempt_not_a_crash(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with receiver() as hook:
        url = hook.url
    program_id, _ = setup(session_factory, now, url)  # nobody listens there any more
    report = dispatch(session_factory, program_id, now, timeout=2.0)
    assert report.retrying == 1
    [delivery] = deliveries(session_factory, program_id)
    [attempt] = log_of(session_factory, delivery.id)
    assert attempt.status_code is None
    assert attempt.error and "ConnectError" in attempt.error


def test_only_matching_event_types_and_active_endpoints(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with receiver() as hook:
        program_id, _ = setup(session_factory, now, hook.url, ["points.*"])
        with unit_of_work(session_factory) as db:
            programs.publish(
                db, program_id=program_id, event_type="points.earned", payload={"p": 5}, now=now
            )
            gone, _ = webhooks.create(
                db,
                program_id=program_id,
                url=hook.url,
                event_types=["*"],
                now=now,
                allow_private=True,
            )
        with unit_of_work(session_factory) as db:
            webhooks.deactivate(db, program_id=program_id, endpoint_id=gone.id, now=now)
        report = dispatch(session_factory, program_id, now)
    assert (report.events, report.deliveries_created, report.delivered) == (2, 1, 1)
    [request] = hook.requests
    assert request.json()["type"] == "points.earned"
    assert request.json()["data"] == {"p": 5}


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://192.168.1.10:8080/hook",
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
def test_private_destinations_are_refused_by_default(
    session_factory: sessionmaker[Session], now: datetime, url: str
) -> None:
    with unit_of_work(session_factory) as db:
        program = make_program(db, now=now)
        with pytest.raises(ValidationError) as refused:
            webhooks.create(db, program_id=program.id, url=url, event_types=["*"], now=now)
        assert (refused.value.code, refused.value.field) == ("forbidden_destination", "url")
        # The operator may allow them.
        row, _ = webhooks.create(
            db, program_id=program.id, url=url, event_types=["*"], now=now, allow_private=True
        )
        assert row.active


def test_public_addresses_pass_the_guard() -> None:
    resolved = {"hooks.example.com": ["93.184.216.34"]}

    def resolve(host: str, port: int) -> list[str]:
        return resolved[host]

    destination = webhooks.check_destination(
        "https://hooks.example.com/x", allow_private=False, resolve=resolve
    )
    assert (destination.host, destination.port) == ("hooks.example.com", 443)
    # A name that resolves to a private address anywhere in its list is refused.
    resolved["hooks.example.com"].append("10.0.0.7")
    with pytest.raises(ValidationError, match=r"10\.0\.0\.7"):
        webhooks.check_destination(
            "https://hooks.example.com/x", allow_private=False, resolve=resolve
        )


def test_the_guard_runs_again_at_delivery_time(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with receiver() as hook:
        program_id, _ = setup(session_factory, now, hook.url)  # allowed when registered
        report = webhooks.dispatch_due(session_factory, now=now, program_id=program_id)
    assert hook.requests == []
    assert report.failed == 1  # a refused destination is not retried
    [delivery] = deliveries(session_factory, program_id)
    assert delivery.status == "failed"
    [attempt] = log_of(session_factory, delivery.id)
    assert attempt.status_code is None
    assert attempt.error and "127.0.0.1" in attempt.error


@pytest.mark.postgres
def test_two_dispatchers_at_once_deliver_each_event_once(postgres_url: str, now: datetime) -> None:
    engine = make_engine(postgres_url)
    factory = make_session_factory(engine)
    events = 30
    try:
        with receiver(delay=0.01) as hook:
            program_id, secret = setup(factory, now, hook.url, events=events)
            barrier = threading.Barrier(2)
            reports: list[webhooks.DispatchReport] = []
            failures: list[BaseException] = []

            def run() -> None:
                try:
                    barrier.wait(5)
                    reports.append(dispatch(factory, program_id, now, batch=4))
                except BaseException as error:  # surfaced below
                    failures.append(error)

            threads = [threading.Thread(target=run) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert failures == []
        ids = Counter(request.headers["webhook-id"] for request in hook.requests)
        assert len(ids) == events
        assert set(ids.values()) == {1}
        assert all(verify(secret, r, now=int(now.timestamp())) for r in hook.requests)
        assert sum(r.delivered for r in reports) == events
        assert all(r.attempted for r in reports)  # both really worked, side by side
        assert sum(r.events for r in reports) == events
        assert sum(r.deliveries_created for r in reports) == events
        assert all(d.status == "delivered" for d in deliveries(factory, program_id))
    finally:
        engine.dispose()
