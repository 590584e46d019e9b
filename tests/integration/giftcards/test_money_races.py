"""Money races for real: threads, each with its own PostgreSQL session, released together.

Only PostgreSQL lets writers overlap (SQLite serialises them at BEGIN), so these run there.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.db import make_engine, make_session_factory
from fideliza.giftcards import service as giftcards
from fideliza.giftcards.check import check_money_ledger
from fideliza.giftcards.models import MoneyAccount, MoneyTransaction
from fideliza.programs.models import Program
from tests.factories import make_member, make_program

T = TypeVar("T")
THREADS = 20
TIMEOUT_SECONDS = 60
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
D = Decimal


@pytest.fixture(scope="module")
def factory(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    """A pool with a connection for every thread, or the race would be no race."""
    engine = make_engine(postgres_url, pool_size=THREADS + 2)
    yield make_session_factory(engine)
    engine.dispose()


def race(factory: sessionmaker[Session], work: Callable[[Session, int], T]) -> list[T | Exception]:
    """Runs `work(db, i)` in THREADS threads released together; each commits or rolls back."""
    barrier = threading.Barrier(THREADS)

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

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(one, index) for index in range(THREADS)]
        return [future.result(timeout=TIMEOUT_SECONDS) for future in futures]


def outcomes(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def new_program(factory: sessionmaker[Session]) -> Program:
    with factory() as db:
        program = make_program(db, now=NOW)
        db.commit()
        return program


def test_twenty_tills_spending_a_whole_card_at_once_make_exactly_one_winner(
    factory: sessionmaker[Session],
) -> None:
    program = new_program(factory)
    with factory() as db:
        issued = giftcards.issue_card(db, program_id=program.id, amount=D("40.00"), now=NOW)
        db.commit()

    results = race(
        factory,
        lambda db, i: giftcards.spend_card(
            db,
            program_id=program.id,
            code=issued.code,
            pin=None,
            amount=D("40.00"),
            idempotency_key=f"till-{i}",
            now=NOW,
        ),
    )

    assert outcomes(results) == Counter({"ok": 1, "InsufficientFunds": THREADS - 1})
    with factory() as db:
        assert giftcards.card_view(db, card=issued.card).balance == D("0.00")
        spends = db.scalar(
            select(func.count()).where(
                MoneyTransaction.account_id == issued.card.account_id,
                MoneyTransaction.kind == "spend",
            )
        )
        assert spends == 1
        assert check_money_ledger(db, program_id=program.id) == []


def test_one_key_sent_by_twenty_threads_spends_once_and_all_get_the_same_answer(
    factory: sessionmaker[Session],
) -> None:
    program = new_program(factory)
    with factory() as db:
        issued = giftcards.issue_card(db, program_id=program.id, amount=D("100.00"), now=NOW)
        db.commit()

    results = race(
        factory,
        lambda db, i: giftcards.spend_card(
            db,
            program_id=program.id,
            code=issued.code,
            pin=None,
            amount=D("3.00"),
            idempotency_key="the-same-till-transaction",
            now=NOW,
        ),
    )

    assert outcomes(results) == Counter({"ok": THREADS})
    moves = [r for r in results if isinstance(r, giftcards.Move)]
    assert len({m.transaction_id for m in moves}) == 1
    assert sum(not m.replayed for m in moves) == 1
    with factory() as db:
        assert giftcards.card_view(db, card=issued.card).balance == D("97.00")


def test_concurrent_partial_refunds_never_exceed_the_spend(factory: sessionmaker[Session]) -> None:
    program = new_program(factory)
    with factory() as db:
        issued = giftcards.issue_card(db, program_id=program.id, amount=D("10.00"), now=NOW)
        paid = giftcards.spend_card(
            db,
            program_id=program.id,
            code=issued.code,
            pin=None,
            amount=D("10.00"),
            idempotency_key="pay",
            now=NOW,
        )
        db.commit()

    # Twenty refunds of 1.00 against a spend of 10.00: ten fit.
    results = race(
        factory,
        lambda db, i: giftcards.refund(
            db,
            program_id=program.id,
            spend_transaction_id=paid.transaction_id,
            amount=D("1.00"),
            idempotency_key=f"refund-{i}",
            now=NOW,
        ),
    )

    assert outcomes(results) == Counter({"ok": 10, "ValidationError": 10})
    with factory() as db:
        assert giftcards.refunded_so_far(db, spend_transaction_id=paid.transaction_id) == D("10")
        assert giftcards.card_view(db, card=issued.card).balance == D("10.00")
        assert check_money_ledger(db, program_id=program.id) == []


def test_first_credits_racing_open_one_wallet_and_one_set_of_system_accounts(
    factory: sessionmaker[Session],
) -> None:
    program = new_program(factory)
    with factory() as db:
        member = make_member(db, program=program, now=NOW)
        db.commit()

    results = race(
        factory,
        lambda db, i: giftcards.credit_wallet(
            db,
            program_id=program.id,
            member_id=member.id,
            amount=D("0.50"),
            reference=f"cashback-{i}",
            reason="cashback",
            now=NOW,
        ),
    )

    assert outcomes(results) == Counter({"ok": THREADS})
    with factory() as db:
        accounts = db.scalars(
            select(MoneyAccount.code).where(MoneyAccount.program_id == program.id)
        ).all()
        assert sorted(accounts) == sorted(
            ["breakage:EUR", "granted:EUR", "issued:EUR", "spent:EUR", f"wallet:{member.id}:EUR"]
        )
        [wallet] = giftcards.wallets(db, program_id=program.id, member_id=member.id)
        assert wallet.balance == D("10.00")
        assert check_money_ledger(db, program_id=program.id) == []


def test_the_expiry_job_skips_a_card_a_till_holds_and_takes_it_next_run(
    factory: sessionmaker[Session],
) -> None:
    from datetime import timedelta

    program = new_program(factory)
    expires = NOW + timedelta(days=1)
    with factory() as db:
        issued = giftcards.issue_card(
            db, program_id=program.id, amount=D("8.00"), expires_at=expires, now=NOW
        )
        db.commit()

    later = expires + timedelta(hours=1)
    with factory() as till, factory() as job:
        # A till's transaction holds the card's account (as a spend in flight would).
        till.execute(
            select(MoneyAccount.id)
            .where(MoneyAccount.id == issued.card.account_id)
            .with_for_update()
        )
        assert giftcards.expire_due(job, program_id=program.id, now=later) == 0  # no waiting
        job.commit()
        till.rollback()

    with factory() as db:
        assert giftcards.expire_due(db, program_id=program.id, now=later) == 1
        db.commit()
        assert giftcards.card_view(db, card=issued.card).balance == D("0.00")
        assert check_money_ledger(db, program_id=program.id) == []
