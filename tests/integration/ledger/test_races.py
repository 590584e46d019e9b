"""Races for real: threads, each with its own session, hit the database at the same instant.

On PostgreSQL the writers really overlap and only row locks keep them apart. SQLite takes the
database's write lock at BEGIN (one writer at a time), so there the same tests check that the
serialised outcome is the same one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import InsufficientPoints, InvalidState
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.domain import AllocationKind, TxKind
from fideliza.ledger.models import Allocation, Hold, LedgerTransaction, Lot
from fideliza.ledger.redemptions import RedemptionRequest, redeem_many
from fideliza.members import service as members
from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.programs.service import settings_of
from fideliza.purchases import service as purchases
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from tests.factories import make_member, make_program

T = TypeVar("T")
THREADS = 16
# Generous: a lost wake-up or a deadlock shows up as a timeout, not as a slow test.
TIMEOUT_SECONDS = 60
ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}


@pytest.fixture(autouse=True)
def _enough_connections(session_factory: sessionmaker[Session]) -> None:
    """On PostgreSQL every thread needs a connection of its own, or the race is no race.

    (SQLite's writers queue for the database lock anyway; waiting for a connection changes
    nothing there.)
    """
    engine = session_factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        return
    room = engine.pool.size() + engine.pool._max_overflow
    if room < THREADS + 1:
        pytest.fail(f"the engine's pool allows {room} connections, the races need {THREADS + 1}")


def race(
    factory: sessionmaker[Session], count: int, work: Callable[[Session, int], T]
) -> list[T | Exception]:
    """Runs `work(db, i)` in `count` threads released together; each commits or rolls back.

    Returns each thread's result, or the exception it raised.
    """
    barrier = threading.Barrier(count)

    def one(index: int) -> T | Exception:
        with factory() as db:
            barrier.wait(timeout=TIMEOUT_SECONDS)
            try:
                result = work(db, index)
                db.commit()
                return result
            except Exception as error:
                db.rollback()
                return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one, index) for index in range(count)]
        return [future.result(timeout=TIMEOUT_SECONDS) for future in futures]


def kinds(results: list[Any]) -> Counter[str]:
    """How many threads got each outcome ('ok' or the exception's class name)."""
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def funded_member(db: Session, now: datetime, points: tuple[int, ...], **settings: Any) -> Any:
    """A program and a member whose points sit in several lots (expiring at different dates)."""
    program = make_program(
        db, now=now, settings={"expiry": {"mode": "days", "days": 90}, **settings}
    )
    member = make_member(db, program=program, now=now)
    for age_days, lot_points in enumerate(points):
        at = now - timedelta(days=10 * age_days)
        ledger.earn(
            db,
            program_id=program.id,
            settings=settings_of(program),
            timezone_name=program.timezone,
            member_id=member.id,
            lines=[ledger.EarnLine(points=lot_points, reason="seed")],
            occurred_at=at,
            now=now,
            source_type="test",
            source_ref=f"seed-{age_days}",
            reason="seed",
        )
    db.commit()
    return program, member


def lots_left(db: Session, member_id: int) -> int:
    return int(
        db.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(
                Lot.member_id == member_id, Lot.state == "available"
            )
        )
    )


def test_concurrent_redemptions_of_the_last_points_have_exactly_the_right_winners(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """100 points, 16 redemptions of 30 at once: exactly 3 win, 13 are refused, 10 are left."""
    program, member = funded_member(db, now, (45, 35, 20))

    def redeem(session: Session, index: int) -> int:
        return ledger.redeem(
            session,
            program_id=program.id,
            member_id=member.id,
            points=30,
            now=now,
            reason=f"voucher {index}",
        )

    results = race(session_factory, THREADS, redeem)

    assert kinds(results) == {"ok": 100 // 30, "InsufficientPoints": THREADS - 100 // 30}
    db.expire_all()
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(100 - 3 * 30, 0, 0)
    assert lots_left(db, member.id) == 10
    winners = [r for r in results if isinstance(r, int)]
    taken = db.scalars(
        select(Allocation.amount).where(Allocation.transaction_id.in_(winners))
    ).all()
    assert sum(taken) == 90 and all(amount > 0 for amount in taken)
    assert check_ledger(db, program_id=program.id) == []


def test_concurrent_holds_reserve_no_more_than_there_is(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """The same race through the two-phase path: 3 holds of 30 out of 100, then settling them
    from many threads at once settles each exactly once."""
    program, member = funded_member(db, now, (45, 35, 20))
    settings = settings_of(program)

    def hold(session: Session, index: int) -> int:
        return ledger.hold(
            session,
            program_id=program.id,
            settings=settings,
            member_id=member.id,
            points=30,
            reference=f"basket-{index}",
            now=now,
            reason="reward",
        ).id

    results = race(session_factory, THREADS, hold)

    assert kinds(results) == {"ok": 3, "InsufficientPoints": THREADS - 3}
    db.expire_all()
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(10, 0, 90)
    assert check_ledger(db, program_id=program.id) == []
    first, second, third = (r for r in results if isinstance(r, int))
    # End this reader's transaction (on SQLite it holds the write lock); commit, not rollback,
    # so the objects the threads read (program, member) are not expired under them.
    db.commit()

    # Now every thread tries to capture or release one of the holds: the first and the second
    # hold each get 8 threads, half capturing and half releasing. One settles each hold; the
    # others see it settled (InvalidState) and move no points.
    program_id = program.id

    def settle(session: Session, index: int) -> str:
        hold_id = first if index % 2 else second
        if index % 4 < 2:
            ledger.capture(session, program_id=program_id, hold_id=hold_id, now=now)
            return "captured"
        ledger.release(session, program_id=program_id, hold_id=hold_id, now=now)
        return "released"

    settled = race(session_factory, THREADS, settle)

    outcomes = kinds(settled)
    assert outcomes["InvalidState"] == THREADS - 2, settled
    assert outcomes["ok"] == 2
    assert all(isinstance(r, str | InvalidState) for r in settled)
    db.expire_all()
    holds = {h: db.get(Hold, h) for h in (first, second, third)}
    assert holds[third].status == "held"  # type: ignore[union-attr]
    for hold_id in (first, second):
        settled_hold = holds[hold_id]
        assert settled_hold is not None and settled_hold.status in {"captured", "released"}
        finals = db.scalar(
            select(func.count()).where(
                LedgerTransaction.program_id == program.id,
                LedgerTransaction.source_ref == settled_hold.reference,
                LedgerTransaction.kind.in_([TxKind.CAPTURE, TxKind.RELEASE]),
            )
        )
        assert finals == 1
    statuses = {h: held.status for h, held in holds.items() if held is not None}
    released = sum(30 for status in statuses.values() if status == "released")
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(10 + released, 0, 30)
    assert check_ledger(db, program_id=program.id) == []


def test_the_same_purchase_sent_by_many_tills_at_once_earns_once(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """8 retries of one purchase at once: one purchase, one earning; every caller gets it."""
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    member = make_member(db, program=program, now=now)
    db.commit()
    data = {
        "external_id": "till-7/0042",
        "member_id": member.external_id,
        "occurred_at": now.isoformat(),
        "amount": "25.00",
        "currency": "EUR",
        "items": [{"sku": "COF", "quantity": 5, "unit_price": "5.00"}],
    }
    detached = db.get(Program, program.id)

    def send(session: Session, _: int) -> Any:
        return purchases.record_purchase(session, program=detached, data=data, now=now)

    results = race(session_factory, 8, send)

    losers = [r for r in results if isinstance(r, IntegrityError)]
    assert not losers, f"a retry got a database error instead of a replay: {losers[0]}"
    assert kinds(results) == {"ok": 8}
    assert len({(r.purchase_id, r.points, r.transaction_id) for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 7
    db.expire_all()
    assert db.scalar(select(func.count()).where(Purchase.program_id == program.id)) == 1
    earnings = db.scalar(
        select(func.count()).where(
            LedgerTransaction.program_id == program.id, LedgerTransaction.kind == TxKind.EARN
        )
    )
    assert earnings == 1
    assert ledger.balance(db, member_id=member.id).available == 25
    assert check_ledger(db, program_id=program.id) == []


def test_many_purchases_of_one_member_at_once_all_count(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """16 different purchases of the same member at once: none lost, none counted twice."""
    program = make_program(db, now=now)
    rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
    member = make_member(db, program=program, now=now)
    db.commit()
    detached = db.get(Program, program.id)

    def send(session: Session, index: int) -> Any:
        data = {
            "external_id": f"till-1/{index}",
            "member_id": member.external_id,
            "occurred_at": (now - timedelta(minutes=index)).isoformat(),
            "amount": f"{index + 1}.00",
            "currency": "EUR",
        }
        return purchases.record_purchase(session, program=detached, data=data, now=now)

    results = race(session_factory, THREADS, send)

    assert kinds(results) == {"ok": THREADS}
    expected = sum(range(1, THREADS + 1))
    assert sum(r.points for r in results) == expected
    db.expire_all()
    assert ledger.balance(db, member_id=member.id).available == expected
    assert db.scalar(select(func.count()).where(Lot.member_id == member.id)) == THREADS
    assert check_ledger(db, program_id=program.id) == []


def test_two_members_transferring_to_each_other_at_once_never_deadlock(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """A→B and B→A from 8 threads each, several times: all finish, nothing is lost."""
    program, ana = funded_member(db, now, (60, 40))
    bea = make_member(db, program=program, now=now)
    ledger.adjust(
        db,
        program_id=program.id,
        settings=settings_of(program),
        timezone_name=program.timezone,
        member_id=bea.id,
        points=100,
        issuer="ops@shop",
        reason="opening balance",
        now=now,
    )
    db.commit()
    rounds, points = 3, 4  # 8 threads x 3 x 4 = 96 < 100: every transfer can succeed

    def ping_pong(session: Session, index: int) -> int:
        sender, receiver = (ana, bea) if index % 2 else (bea, ana)
        for round_ in range(rounds):
            ledger.transfer(
                session,
                program_id=program.id,
                from_member_id=sender.id,
                to_member_id=receiver.id,
                points=points,
                reason=f"round {round_}",
                now=now,
            )
            session.commit()  # each transfer is its own request
        return rounds

    started = time.monotonic()
    results = race(session_factory, THREADS, ping_pong)
    elapsed = time.monotonic() - started

    assert kinds(results) == {"ok": THREADS}, [r for r in results if isinstance(r, Exception)]
    assert elapsed < TIMEOUT_SECONDS
    db.expire_all()
    # As many points went each way, so both end where they started; the total never moved.
    assert ledger.balance(db, member_id=ana.id).available == 100
    assert ledger.balance(db, member_id=bea.id).available == 100
    transfers = db.scalar(
        select(func.count()).where(
            LedgerTransaction.program_id == program.id,
            LedgerTransaction.kind == TxKind.TRANSFER,
        )
    )
    assert transfers == THREADS * rounds
    assert check_ledger(db, program_id=program.id) == []


def test_the_expiry_job_racing_redemptions_never_spends_expired_points(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """At the instant 100 points expire, 15 redemptions of 10 and the expiry job run together:
    every point is either redeemed or expired, never both, never neither."""
    program, member = funded_member(db, now, (100,))
    due = now + timedelta(days=90)

    def redeem_or_expire(session: Session, index: int) -> int:
        if index == 0:
            return ledger.expire_due(session, program_id=program.id, now=due)
        ledger.redeem(
            session,
            program_id=program.id,
            member_id=member.id,
            points=10,
            now=due - timedelta(seconds=1),
            reason=f"voucher {index}",
        )
        return 10

    results = race(session_factory, THREADS, redeem_or_expire)
    # The job skips a member another transaction holds; the next run takes what is left.
    with session_factory() as later:
        ledger.expire_due(later, program_id=program.id, now=due + timedelta(minutes=5))
        later.commit()

    assert all(isinstance(r, int | InsufficientPoints) for r in results), results
    db.expire_all()
    redeemed = sum(r for r in results[1:] if isinstance(r, int))
    expired = db.scalar(
        select(func.coalesce(func.sum(Allocation.amount), 0))
        .join(Lot, Lot.id == Allocation.lot_id)
        .where(Lot.member_id == member.id, Allocation.kind == AllocationKind.EXPIRE)
    )
    assert redeemed + expired == 100
    assert redeemed % 10 == 0 and redeemed == 10 * kinds(results[1:])["ok"]
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(0, 0, 0)
    assert check_ledger(db, program_id=program.id) == []


def test_a_redemption_waits_for_a_status_change_under_way_and_sees_it(
    db: Session, session_factory: sessionmaker[Session], now: datetime
) -> None:
    """A member being suspended holds the member's points lock until it commits: a redemption
    arriving meanwhile waits, then is refused — it never spends on the status it read before."""
    program, member = funded_member(db, now, (50,))
    suspending = session_factory()
    members.change_status(
        suspending,
        program=suspending.get(Program, program.id),
        member=suspending.get(Member, member.id),
        status="suspended",
        reason="fraud check",
        now=now,
    )
    answers: list[Any] = []

    def redeem() -> None:
        with session_factory() as other:
            request = RedemptionRequest(
                member_id=member.id, points=10, reference="redemption:r1", reason="cinema"
            )
            answers.extend(
                redeem_many(
                    other,
                    program_id=program.id,
                    settings=settings_of(program),
                    requests=[request],
                    now=now,
                )
            )
            other.commit()

    thread = threading.Thread(target=redeem)
    thread.start()
    thread.join(timeout=0.5)
    assert thread.is_alive()  # waiting for the suspension's lock
    suspending.commit()
    suspending.close()
    thread.join(timeout=TIMEOUT_SECONDS)
    assert len(answers) == 1 and isinstance(answers[0], InvalidState), answers
    db.expire_all()
    assert ledger.balance(db, member_id=member.id).available == 50
