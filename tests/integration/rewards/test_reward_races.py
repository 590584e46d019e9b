"""Reward races for real, on PostgreSQL: threads with their own sessions redeem at one instant.

Only row locks and one-statement checks keep them apart (SQLite serialises writers at BEGIN,
so there is no race to test there). One engine and one pool of threads serve every round, so
a hundred rounds of fifty redeemers stay fast.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.db import make_session_factory, unit_of_work
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.rewards import service as rewards
from fideliza.rewards.models import Redemption, Reward
from tests.factories import make_member, make_program
from tests.integration.rewards.builders import fund, make_reward

pytestmark = pytest.mark.postgres

REDEEMERS = 50
ROUNDS = 100
TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def factory(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    # No pre-ping: a round trip per checkout would be most of a round's time.
    engine = create_engine(postgres_url, pool_size=REDEEMERS + 1, max_overflow=0)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=REDEEMERS) as executor:
        yield executor


def race(
    factory: sessionmaker[Session],
    pool: ThreadPoolExecutor,
    count: int,
    work: Callable[[Session, int], Any],
) -> list[Any]:
    """Runs `work(db, i)` in `count` threads released together; each commits or rolls back.

    Returns each thread's result, or the exception it raised.
    """
    barrier = threading.Barrier(count)

    def one(index: int) -> Any:
        with factory() as db:
            barrier.wait(timeout=TIMEOUT_SECONDS)
            try:
                result = work(db, index)
                db.commit()
                return result
            except Exception as error:
                db.rollback()
                return error

    futures = [pool.submit(one, index) for index in range(count)]
    return [future.result(timeout=TIMEOUT_SECONDS) for future in futures]


def outcomes(results: list[Any]) -> Counter[str]:
    """How many threads got each outcome: 'ok' or the refusal's code."""
    return Counter(getattr(r, "code", type(r).__name__) if isinstance(r, Exception) else "ok"
                   for r in results)  # fmt: skip


def crowd(
    factory: sessionmaker[Session], now: datetime, *, members: int, points: int
) -> tuple[Program, list[Member]]:
    with unit_of_work(factory) as db:
        program = make_program(db, now=now)
        people = [make_member(db, program=program, now=now) for _ in range(members)]
        for member in people:
            fund(db, program=program, member=member, points=points, now=now)
    return program, people


@pytest.mark.slow
def test_fifty_redeemers_of_the_last_unit_leave_exactly_one_winner_a_hundred_times(
    factory: sessionmaker[Session], pool: ThreadPoolExecutor, now: datetime
) -> None:
    program, people = crowd(factory, now, members=REDEEMERS, points=ROUNDS)
    with unit_of_work(factory) as db:
        ids = [
            make_reward(db, program=program, now=now, points_cost=1, stock=1).id
            for _ in range(ROUNDS)
        ]
    for round_number, reward_id in enumerate(ids):

        def redeem(db: Session, index: int, reward_id: int = reward_id) -> int:
            redemption, _ = rewards.redeem(
                db, program=program, member_id=people[index].id, reward_id=reward_id,
                reference=secrets.token_hex(8), now=now,
            )  # fmt: skip
            return redemption.id

        results = race(factory, pool, REDEEMERS, redeem)
        assert outcomes(results) == {"ok": 1, "reward_out_of_stock": REDEEMERS - 1}, round_number
    with factory() as db:
        assert set(db.scalars(select(Reward.stock).where(Reward.id.in_(ids)))) == {0}
        held = db.scalars(select(Redemption.points).where(Redemption.program_id == program.id))
        assert sum(held) == ROUNDS
        assert sum(ledger.balance(db, member_id=m.id).held for m in people) == ROUNDS
        assert check_ledger(db, program_id=program.id) == []


def test_twenty_redemptions_of_the_whole_balance_leave_exactly_one_winner(
    factory: sessionmaker[Session], pool: ThreadPoolExecutor, now: datetime
) -> None:
    program, (member,) = crowd(factory, now, members=1, points=700)
    with unit_of_work(factory) as db:
        reward = make_reward(db, program=program, now=now, points_cost=700)

    def redeem(db: Session, index: int) -> int:
        redemption, _ = rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id,
            reference=f"all-{index}", now=now,
        )  # fmt: skip
        return redemption.id

    results = race(factory, pool, 20, redeem)
    assert outcomes(results) == {"ok": 1, "insufficient_points": 19}
    with factory() as db:
        balance = ledger.balance(db, member_id=member.id)
        assert (balance.available, balance.held) == (0, 700)
        assert check_ledger(db, program_id=program.id) == []


def test_a_budget_is_never_overspent_by_concurrent_redeemers(
    factory: sessionmaker[Session], pool: ThreadPoolExecutor, now: datetime
) -> None:
    program, people = crowd(factory, now, members=20, points=100)
    with unit_of_work(factory) as db:
        reward = make_reward(db, program=program, now=now, points_cost=30, budget_points=100)

    def redeem(db: Session, index: int) -> int:
        redemption, _ = rewards.redeem(
            db, program=program, member_id=people[index].id, reward_id=reward.id,
            reference=f"b-{index}", now=now,
        )  # fmt: skip
        return redemption.id

    results = race(factory, pool, 20, redeem)
    assert outcomes(results) == {"ok": 3, "reward_budget_spent": 17}


def test_the_same_reference_from_two_tills_at_once_redeems_once(
    factory: sessionmaker[Session], pool: ThreadPoolExecutor, now: datetime
) -> None:
    program, (member,) = crowd(factory, now, members=1, points=500)
    with unit_of_work(factory) as db:
        reward = make_reward(db, program=program, now=now, points_cost=100, stock=10)

    def redeem(db: Session, index: int) -> int:
        redemption, _ = rewards.redeem(
            db, program=program, member_id=member.id, reward_id=reward.id, reference="till-9",
            now=now,
        )  # fmt: skip
        return redemption.id

    results = race(factory, pool, 10, redeem)
    assert outcomes(results) == {"ok": 10}
    assert len(set(results)) == 1
    with factory() as db:
        assert db.scalar(select(Reward.stock).where(Reward.id == reward.id)) == 9
        assert ledger.balance(db, member_id=member.id).held == 100


def test_capture_racing_expiry_and_release_settles_each_redemption_exactly_once(
    factory: sessionmaker[Session], pool: ThreadPoolExecutor, now: datetime
) -> None:
    program, people = crowd(factory, now, members=10, points=100)
    with unit_of_work(factory) as db:
        reward = make_reward(db, program=program, now=now, points_cost=100, stock=10)
        ids = [
            rewards.redeem(
                db, program=program, member_id=m.id, reward_id=reward.id,
                reference=f"c-{m.id}", now=now, ttl=timedelta(minutes=10),
            )[0].id
            for m in people
        ]  # fmt: skip
    at = now + timedelta(minutes=10) - timedelta(microseconds=1)  # captures are still in time
    expiry_at = now + timedelta(minutes=10)

    def settle(db: Session, index: int) -> Any:
        if index % 3 == 0:
            return rewards.expire_due(db, program_id=program.id, now=expiry_at)
        if index % 3 == 1:
            return rewards.capture(db, program=program, redemption_id=ids[index // 3], now=at).id
        return rewards.release(db, program=program, redemption_id=ids[index // 3], now=at).id

    race(factory, pool, 30, settle)
    with factory() as db:
        found = db.scalars(select(Redemption).where(Redemption.id.in_(ids))).all()
        statuses = Counter(r.status for r in found)
        assert statuses["held"] == 0 and sum(statuses.values()) == 10
        stock = db.scalar(select(Reward.stock).where(Reward.id == reward.id))
        assert stock == statuses["released"] + statuses["expired"]
        for redemption in found:
            balance = ledger.balance(db, member_id=redemption.member_id)
            expected = 0 if redemption.status == "captured" else 100
            assert balance.available == expected and balance.held == 0
        assert check_ledger(db, program_id=program.id) == []
