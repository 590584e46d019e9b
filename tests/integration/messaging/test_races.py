"""Several dispatchers at once, for real: threads with their own sessions on both backends
(PostgreSQL overlaps them with SKIP LOCKED and member locks; SQLite serialises them). Nothing is
sent twice and the frequency cap holds across dispatchers."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.messaging import service as messaging
from fideliza.messaging.channels import MessagingSettings, Outgoing
from fideliza.messaging.models import Message
from tests.integration.messaging.support import MemorySender, make_shop

THREADS = 4
MEMBERS = 12
PER_MEMBER = 3


class SlowSender(MemorySender):
    """Holds each send a moment, so the dispatchers really overlap."""

    def __call__(self, message: Outgoing) -> None:
        threading.Event().wait(0.002)
        super().__call__(message)


def test_concurrent_dispatchers_send_once_and_respect_the_cap(
    db: Session,
    now: datetime,
    session_factory: sessionmaker[Session],
    settings: MessagingSettings,
) -> None:
    shop = make_shop(db, now)
    shop.configure(frequency_cap={"messages": 1, "days": 7})
    members = [shop.member() for _ in range(MEMBERS)]
    for member in members:
        for index in range(PER_MEMBER):
            messaging.enqueue(
                db,
                program_id=shop.program.id,
                member_id=member.id,
                template="welcome",
                context={},
                key=f"race:{member.id}:{index}",
                now=now,
            )
    db.commit()
    sender = SlowSender()
    start = threading.Barrier(THREADS)

    def dispatcher() -> messaging.DispatchReport:
        start.wait()
        return messaging.dispatch_due(
            session_factory,
            now=now,
            sender=sender,
            settings=settings,
            program_id=shop.program.id,
            batch=3,
        )

    with ThreadPoolExecutor(THREADS) as pool:
        reports = list(pool.map(lambda _: dispatcher(), range(THREADS)))
    sent_ids = [message.message_id for message in sender.sent]
    assert len(sent_ids) == len(set(sent_ids)) == MEMBERS  # once each, one per member
    assert sum(r.sent for r in reports) == MEMBERS
    assert sum(r.skipped for r in reports) == MEMBERS * (PER_MEMBER - 1)
    with session_factory() as check:
        rows = list(check.scalars(select(Message).where(Message.program_id == shop.program.id)))
    per_member = Counter(row.member_id for row in rows if row.status == "sent")
    assert per_member == Counter({member.id: 1 for member in members})
    assert {row.status for row in rows} == {"sent", "skipped"}


def test_concurrent_trigger_evaluations_queue_each_message_once(
    db: Session, now: datetime, session_factory: sessionmaker[Session]
) -> None:
    from fideliza.db import unit_of_work

    shop = make_shop(db, now)
    shop.configure(triggers=["welcome"])
    for _ in range(MEMBERS):
        shop.member()
    start = threading.Barrier(THREADS)

    def evaluate() -> int:
        start.wait()
        with unit_of_work(session_factory) as session:
            counts = messaging.evaluate_triggers(session, program_id=shop.program.id, now=now)
        return counts["welcome"]

    with ThreadPoolExecutor(THREADS) as pool:
        queued = list(pool.map(lambda _: evaluate(), range(THREADS)))
    assert sum(queued) == MEMBERS
    with session_factory() as check:
        keys = list(
            check.scalars(
                select(Message.idempotency_key).where(Message.program_id == shop.program.id)
            )
        )
    assert len(keys) == len(set(keys)) == MEMBERS
