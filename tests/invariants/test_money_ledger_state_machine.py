"""The money ledger as a state machine: random operations on a real database keep every invariant.

Hypothesis issues cards (some expiring), tops them up, spends from them, refunds spends in parts,
credits and spends a wallet, retries requests and runs the expiry job, in any order, with a
clock that only moves forward. Each step commits, like a request. After every step: the check
finds nothing (entries sum to zero, cached = recomputed, never negative, refunds never exceed
spends), and every balance and system account equals a reference model kept in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import InvalidState, ValidationError
from fideliza.giftcards import service as giftcards
from fideliza.giftcards.check import check_money_ledger
from fideliza.giftcards.domain import SYSTEM_KINDS, AccountKind
from fideliza.giftcards.errors import InsufficientFunds
from fideliza.giftcards.models import MoneyAccount, MoneyEntry
from tests.factories import make_member, make_program

T = TypeVar("T")
START = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
CENT = Decimal("0.01")
AMOUNTS = st.integers(1, 10_000).map(lambda cents: cents * CENT)  # 0.01 … 100.00
# A share of what there is, in percent: above 100 asks for too much (and must be refused).
SHARES = st.integers(1, 130)


def share_of(total: Decimal, percent: int) -> Decimal:
    return max(CENT, (total * percent / 100).quantize(CENT))


@dataclass(eq=False)
class ModelCard:
    code: str
    account_id: int
    balance: Decimal
    expires_at: datetime | None
    expired: bool = False  # the job has moved what was left to breakage


@dataclass(eq=False)
class ModelSpend:
    transaction_id: int
    account_id: int
    amount: Decimal
    refunded: Decimal = Decimal(0)


class MoneyMachine(RuleBasedStateMachine):
    factory: ClassVar[sessionmaker[Session]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = START
        self.cards: list[ModelCard] = []
        self.spends: list[ModelSpend] = []
        self.wallet = Decimal(0)
        self.wallet_account_id: int | None = None
        self.system = {kind: Decimal(0) for kind in AccountKind if kind in SYSTEM_KINDS}
        self.keys = 0
        self.last_key: tuple[str, Callable[[Session, str], giftcards.Move], int] | None = None

    def request(self, work: Callable[[Session], T]) -> T:
        with self.factory() as db:
            try:
                result = work(db)
                db.commit()
                return result
            except BaseException:
                db.rollback()
                raise

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def keyed(self, call: Callable[[Session, str], giftcards.Move]) -> giftcards.Move:
        """Runs a till write with a fresh key, remembered so a later step can retry it."""
        key = self.key()
        move = self.request(lambda db: call(db, key))
        self.last_key = (key, call, move.transaction_id)
        return move

    def usable(self, card: ModelCard) -> bool:
        return card.expires_at is None or card.expires_at > self.clock

    @initialize()
    def open_program(self) -> None:
        def work(db: Session) -> None:
            program = make_program(db, now=self.clock)
            self.program_id = program.id
            self.member_id = make_member(db, program=program, now=self.clock).id

        self.request(work)

    # --- cards -------------------------------------------------------------------------------

    @rule(amount=AMOUNTS, expiry_days=st.one_of(st.none(), st.integers(1, 20)))
    def issue(self, amount: Decimal, expiry_days: int | None) -> None:
        expires_at = self.clock + timedelta(days=expiry_days) if expiry_days else None
        issued = self.request(
            lambda db: giftcards.issue_card(
                db, program_id=self.program_id, amount=amount, expires_at=expires_at, now=self.clock
            )
        )
        self.cards.append(ModelCard(issued.code, issued.card.account_id, amount, expires_at))
        self.system[AccountKind.ISSUED] -= amount

    @precondition(lambda self: self.cards)
    @rule(data=st.data(), amount=AMOUNTS)
    def top_up(self, data: st.DataObject, amount: Decimal) -> None:
        card = data.draw(st.sampled_from(self.cards))

        def call(db: Session, key: str) -> giftcards.Move:
            return giftcards.top_up(
                db,
                program_id=self.program_id,
                code=card.code,
                pin=None,
                amount=amount,
                idempotency_key=key,
                now=self.clock,
            )

        if not self.usable(card):
            with pytest.raises(InvalidState):
                self.keyed(call)
            return
        assert self.keyed(call).balance_after == card.balance + amount
        card.balance += amount
        self.system[AccountKind.ISSUED] -= amount

    @precondition(lambda self: self.cards)
    @rule(data=st.data(), percent=SHARES)
    def spend(self, data: st.DataObject, percent: int) -> None:
        card = data.draw(st.sampled_from(self.cards))
        amount = share_of(card.balance, percent)

        def call(db: Session, key: str) -> giftcards.Move:
            return giftcards.spend_card(
                db,
                program_id=self.program_id,
                code=card.code,
                pin=None,
                amount=amount,
                idempotency_key=key,
                now=self.clock,
            )

        if not self.usable(card):
            with pytest.raises(InvalidState):
                self.keyed(call)
            return
        if amount > card.balance:
            with pytest.raises(InsufficientFunds):
                self.keyed(call)
            return
        move = self.keyed(call)
        card.balance -= amount
        assert move.balance_after == card.balance
        self.spends.append(ModelSpend(move.transaction_id, card.account_id, amount))
        self.system[AccountKind.SPENT] += amount

    @precondition(lambda self: self.spends)
    @rule(data=st.data(), percent=SHARES)
    def refund(self, data: st.DataObject, percent: int) -> None:
        spend = data.draw(st.sampled_from(self.spends))
        left = spend.amount - spend.refunded
        amount = share_of(spend.amount, percent)

        def call(db: Session, key: str) -> giftcards.Move:
            return giftcards.refund(
                db,
                program_id=self.program_id,
                spend_transaction_id=spend.transaction_id,
                amount=amount,
                idempotency_key=key,
                now=self.clock,
            )

        card = next((c for c in self.cards if c.account_id == spend.account_id), None)
        if card is not None and not self.usable(card):
            with pytest.raises(InvalidState):
                self.keyed(call)
            return
        if amount > left:
            with pytest.raises(ValidationError):
                self.keyed(call)
            return
        self.keyed(call)
        spend.refunded += amount
        if card is not None:
            card.balance += amount
        else:
            self.wallet += amount
        self.system[AccountKind.SPENT] -= amount

    # --- the wallet ----------------------------------------------------------------------------

    @rule(amount=AMOUNTS)
    def credit_wallet(self, amount: Decimal) -> None:
        reference = self.key()
        move = self.request(
            lambda db: giftcards.credit_wallet(
                db,
                program_id=self.program_id,
                member_id=self.member_id,
                amount=amount,
                reference=reference,
                reason="cashback",
                now=self.clock,
            )
        )
        self.wallet += amount
        self.wallet_account_id = move.account_id
        self.system[AccountKind.GRANTED] -= amount

    @rule(percent=SHARES)
    def spend_wallet(self, percent: int) -> None:
        amount = share_of(self.wallet, percent)

        def call(db: Session, key: str) -> giftcards.Move:
            return giftcards.spend_wallet(
                db,
                program_id=self.program_id,
                member_id=self.member_id,
                amount=amount,
                idempotency_key=key,
                now=self.clock,
            )

        if amount > self.wallet:
            with pytest.raises(InsufficientFunds):
                self.keyed(call)
            return
        move = self.keyed(call)
        self.wallet -= amount
        self.spends.append(ModelSpend(move.transaction_id, move.account_id, amount))
        self.system[AccountKind.SPENT] += amount

    # --- time, retries -------------------------------------------------------------------------

    @rule(days=st.integers(1, 10))
    def advance_clock(self, days: int) -> None:
        self.clock += timedelta(days=days)

    @rule()
    def expire(self) -> None:
        due = [c for c in self.cards if not c.expired and not self.usable(c)]
        count = self.request(
            lambda db: giftcards.expire_due(db, program_id=self.program_id, now=self.clock)
        )
        assert count == len(due)
        for card in due:
            self.system[AccountKind.BREAKAGE] += card.balance
            card.balance = Decimal(0)
            card.expired = True

    @precondition(lambda self: self.last_key is not None)
    @rule()
    def retry_last_write(self) -> None:
        """A till that timed out sends its last request again: it gets the first answer."""
        assert self.last_key is not None
        key, call, transaction_id = self.last_key
        move = self.request(lambda db: call(db, key))
        assert move.replayed and move.transaction_id == transaction_id

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def the_ledger_checks_out(self) -> None:
        if not hasattr(self, "program_id"):
            return

        def read(db: Session) -> None:
            assert check_money_ledger(db, program_id=self.program_id) == []
            balances = dict(
                db.execute(
                    select(MoneyAccount.id, MoneyAccount.balance).where(
                        MoneyAccount.program_id == self.program_id,
                        MoneyAccount.balance.is_not(None),
                    )
                ).all()
            )
            assert all(balance >= 0 for balance in balances.values())
            for card in self.cards:
                assert balances[card.account_id] == card.balance
            if self.wallet_account_id is not None:
                assert balances[self.wallet_account_id] == self.wallet
            totals = dict(
                db.execute(
                    select(MoneyAccount.kind, func.sum(MoneyEntry.amount))
                    .join(MoneyEntry, MoneyEntry.account_id == MoneyAccount.id)
                    .where(MoneyAccount.program_id == self.program_id)
                    .group_by(MoneyAccount.kind)
                ).all()
            )
            assert sum(totals.values(), Decimal(0)) == 0
            for kind, expected in self.system.items():
                assert totals.get(kind.value, Decimal(0)) == expected, kind
            for spend in self.spends:
                refunded = giftcards.refunded_so_far(db, spend_transaction_id=spend.transaction_id)
                assert refunded == spend.refunded <= spend.amount

        self.request(read)


@pytest.mark.slow
def test_random_money_operations_keep_every_invariant(
    session_factory: sessionmaker[Session],
) -> None:
    machine = type("MoneyMachineRun", (MoneyMachine,), {"factory": session_factory})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
