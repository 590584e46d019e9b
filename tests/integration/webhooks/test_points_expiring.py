"""`points.expiring`: lots about to expire are announced once (per member and expiry instant),
never twice across runs nor by two runs at once, and reach a real receiver (issue 3)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import ValidationError
from fideliza.db import make_engine, make_session_factory, unit_of_work
from fideliza.ledger import service as ledger
from fideliza.ledger.service import EarnLine
from fideliza.programs import service as programs
from fideliza.programs.models import OutboxEvent
from fideliza.webhooks import service as webhooks
from fideliza.webhooks.expiring import EVENT, announce_expiring
from tests.factories import make_member, make_program
from tests.webhooks.receiver import receiver

NOTICE = timedelta(days=30)
PUBLIC = "https://93.184.216.34/hooks"


def _earn(db: Session, program_id: int, member_id: int, points: int, at: datetime) -> int:
    program = programs.get(db, program_id=program_id)
    earned = ledger.earn(
        db,
        program_id=program_id,
        settings=programs.settings_of(program),
        timezone_name=program.timezone,
        member_id=member_id,
        lines=[EarnLine(points=points, reason="test")],
        occurred_at=at,
        now=at,
        source_type="test",
        source_ref=f"{member_id}-{points}-{at.isoformat()}",
        reason="test",
    )
    assert earned is not None
    return earned.lot_id


def setup(factory: sessionmaker[Session], now: datetime, *, url: str | None = PUBLIC) -> dict:
    """A program whose points expire 60 days after earning, with three members' lots."""
    with unit_of_work(factory) as db:
        program = make_program(db, now=now - timedelta(days=90))
        program.settings = {"expiry": {"mode": "days", "days": 60}}
        ana, bea, cai = (make_member(db, program=program, now=now) for _ in range(3))
        soon = now - timedelta(days=40)  # expires in 20 days
        lots = {
            "ana_soon": [
                _earn(db, program.id, ana.id, 10, soon),
                _earn(db, program.id, ana.id, 5, soon),
            ],
            "ana_later": _earn(db, program.id, ana.id, 7, now - timedelta(days=10)),  # in 50 days
            "bea": _earn(db, program.id, bea.id, 3, now - timedelta(days=50)),  # in 10 days
            "cai_gone": _earn(db, program.id, cai.id, 4, now - timedelta(days=70)),  # expired
        }
        # Bea spends 1 of her 3 points: what is left is what expires.
        ledger.redeem(db, program_id=program.id, member_id=bea.id, points=1, now=now, reason="x")
        if url is not None:
            webhooks.create(
                db,
                program_id=program.id,
                url=url,
                event_types=["points.*"],
                now=now,
                allow_private=True,
            )
        return {"program_id": program.id, "ana": ana, "bea": bea, "lots": lots}


def expiring_events(factory: sessionmaker[Session], program_id: int) -> list[dict[str, Any]]:
    with factory() as db:
        query = (
            select(OutboxEvent.payload)
            .where(OutboxEvent.program_id == program_id, OutboxEvent.event_type == EVENT)
            .order_by(OutboxEvent.id)
        )
        return list(db.scalars(query))


def announce(factory: sessionmaker[Session], program_id: int, now: datetime) -> int | None:
    with unit_of_work(factory) as db:
        return announce_expiring(db, program_id=program_id, now=now, notice=NOTICE)


def test_lots_within_the_notice_are_announced_once_per_member_and_expiry(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    world = setup(session_factory, now)
    program_id = world["program_id"]
    assert announce(session_factory, program_id, now) == 2
    ana, bea = world["ana"], world["bea"]
    assert expiring_events(session_factory, program_id) == [
        {
            "member_id": ana.id,
            "external_id": ana.external_id,
            "points": 15,
            "expires_at": (now + timedelta(days=20)).isoformat(),
            "lot_ids": world["lots"]["ana_soon"],
        },
        {
            "member_id": bea.id,
            "external_id": bea.external_id,
            "points": 2,
            "expires_at": (now + timedelta(days=10)).isoformat(),
            "lot_ids": [world["lots"]["bea"]],
        },
    ]
    # Another run, the same day or the next: nothing is announced twice.
    assert announce(session_factory, program_id, now) == 0
    assert announce(session_factory, program_id, now + timedelta(days=1)) == 0
    # 25 days on, Ana's later lot (expiring in 50 days) enters the notice period.
    assert announce(session_factory, program_id, now + timedelta(days=25)) == 1
    last = expiring_events(session_factory, program_id)[-1]
    assert (last["member_id"], last["points"], last["lot_ids"]) == (
        ana.id,
        7,
        [world["lots"]["ana_later"]],
    )
    assert len(expiring_events(session_factory, program_id)) == 3


def test_nothing_is_published_when_no_endpoint_listens(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    world = setup(session_factory, now, url=None)
    assert announce(session_factory, world["program_id"], now) is None
    assert expiring_events(session_factory, world["program_id"]) == []
    # An endpoint for other events only does not count either.
    with unit_of_work(session_factory) as db:
        webhooks.create(
            db, program_id=world["program_id"], url=PUBLIC, event_types=["member.*"], now=now
        )
    assert announce(session_factory, world["program_id"], now) is None


def test_the_notice_must_be_positive(session_factory: sessionmaker[Session], now: datetime) -> None:
    world = setup(session_factory, now)
    with session_factory() as db, pytest.raises(ValidationError) as error:
        announce_expiring(db, program_id=world["program_id"], now=now, notice=timedelta(0))
    assert error.value.field == "notice"


def test_the_event_reaches_the_receiver(
    session_factory: sessionmaker[Session], now: datetime
) -> None:
    with receiver() as hook:
        world = setup(session_factory, now, url=None)
        with unit_of_work(session_factory) as db:
            webhooks.create(
                db,
                program_id=world["program_id"],
                url=hook.url,
                event_types=[EVENT],
                now=now,
                allow_private=True,
            )
        announce(session_factory, world["program_id"], now)
        report = webhooks.dispatch_due(
            session_factory, now=now, program_id=world["program_id"], allow_private=True
        )
    assert report.delivered == 2
    bodies = sorted((r.json() for r in hook.requests), key=lambda b: b["data"]["points"])
    assert [(b["type"], b["data"]["points"]) for b in bodies] == [(EVENT, 2), (EVENT, 15)]


def test_two_runs_at_once_announce_each_lot_once(postgres_url: str, now: datetime) -> None:
    engine = make_engine(postgres_url)
    factory = make_session_factory(engine)
    try:
        world = setup(factory, now)
        barrier = threading.Barrier(4)
        results: list[int | None] = []

        def run() -> None:
            barrier.wait()
            results.append(announce(factory, world["program_id"], now))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sum(r or 0 for r in results) == 2
        events = expiring_events(factory, world["program_id"])
        assert sorted(lot for e in events for lot in e["lot_ids"]) == sorted(
            [*world["lots"]["ana_soon"], world["lots"]["bea"]]
        )
    finally:
        engine.dispose()


def test_the_jobs_step_announces_once_across_runs(
    session_factory: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fideliza.jobs import service as jobs
    from fideliza.webhooks.expiring import announce_due

    if "points_expiring" not in dict(jobs.STEPS):  # until jobs/service.py wires it
        monkeypatch.setattr(jobs, "STEPS", (*jobs.STEPS, ("points_expiring", announce_due)))
    monkeypatch.setenv("FIDELIZA_WEBHOOK_EXPIRING_NOTICE_DAYS", "15")
    world = setup(session_factory, now)
    with session_factory() as db:
        code = programs.get(db, program_id=world["program_id"]).code
    first = jobs.run_jobs(session_factory, program_code=code, now=now)
    assert first.counts["points_expiring"] == 1  # 15 days' notice: Bea's lot, not Ana's
    assert jobs.run_jobs(session_factory, program_code=code, now=now).counts["points_expiring"] == 0
    [event] = expiring_events(session_factory, world["program_id"])
    assert event["member_id"] == world["bea"].id
