"""The ledger as a state machine: random operations on a real database keep every invariant.

Hypothesis drives earn (purchases), burn, hold/capture/release, returns, expiry, unlock,
transfers and adjustments, in any order, across the members of one program, with a clock that
only moves forward. Each step commits, like a request. After every step the database must pass
`check_ledger`, a few direct SQL checks, and agree with a reference model kept in Python: every
member's balances, every lot (amount, remaining, state, expiry) and every system account.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, ClassVar, TypeVar

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
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import IdempotencyError, InsufficientPoints, InvalidState
from fideliza.ledger import redemptions
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.domain import AccountKind, HoldStatus, LotState
from fideliza.ledger.models import Account, Entry, Hold, Lot
from fideliza.ledger.redemptions import RedemptionRequest
from fideliza.programs.service import settings_of
from fideliza.purchases import service as purchases
from fideliza.rules import service as rules
from tests.factories import make_member, make_program

ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}
START = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SKUS = ("COF", "CAK", "TEA")
UNIT_PRICES = ("0.50", "1.00", "2.50", "3.99", "10.00")

T = TypeVar("T")

# Spending draws a share of what the model says is spendable, in percent: above 100 asks for more
# than there is (refused). Drawing raw numbers instead would be refused nearly every time.
SHARES = st.integers(1, 120)
BASKETS = st.lists(
    st.tuples(st.sampled_from(SKUS), st.integers(1, 4), st.sampled_from(UNIT_PRICES)),
    min_size=1,
    max_size=3,
    unique_by=lambda line: line[0],
)


@dataclass(eq=False)
class ModelLot:
    seq: int  # creation order, which is the database's id order
    amount: int
    remaining: int
    state: LotState
    earned_at: datetime
    available_at: datetime
    expires_at: datetime
    db_id: int | None = None  # learnt from the database after the step that created it
    # Points the expiry job took from this lot that no return has given back yet.
    expired: int = 0


@dataclass(eq=False)
class ModelMember:
    id: int
    external_id: str
    available: int = 0
    pending: int = 0
    held: int = 0
    lots: list[ModelLot] = field(default_factory=list)


@dataclass(eq=False)
class ModelHold:
    reference: str
    db_id: int
    member: ModelMember
    points: int
    takes: list[tuple[ModelLot, int]]
    expires_at: datetime
    status: HoldStatus = HoldStatus.HELD


@dataclass(eq=False)
class ModelPurchase:
    external_id: str
    member: ModelMember
    data: dict[str, Any]
    unit_prices: dict[str, Decimal]
    bought: dict[str, int]
    amount: Decimal
    points: int
    lot: ModelLot | None
    returned: Counter[str] = field(default_factory=Counter)
    amount_returned: Decimal = Decimal(0)
    points_reversed: int = 0

    def left(self, sku: str) -> int:
        return self.bought[sku] - self.returned[sku]


def burn_plan(lots: list[ModelLot], points: int) -> list[tuple[ModelLot, int]] | None:
    """First-expiring-first (then oldest, then first created); None when there are too few."""
    plan: list[tuple[ModelLot, int]] = []
    still = points
    for lot in sorted(lots, key=lambda lot: (lot.expires_at, lot.earned_at, lot.seq)):
        take = min(lot.remaining, still)
        if take > 0:
            plan.append((lot, take))
            still -= take
    return None if still else plan


class LedgerMachine(RuleBasedStateMachine):
    """Random ledger operations against a reference model; every step is one committed request."""

    factory: ClassVar[sessionmaker[Session]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = START
        self.program: Any = None
        self.program_id: int | None = None
        self.members: list[ModelMember] = []
        self.holds: list[ModelHold] = []
        self.purchases: list[ModelPurchase] = []
        self.last_purchase_at = START - timedelta(days=30)
        self.seq = itertools.count()
        self.names = itertools.count(1)
        self.issued = self.redeemed = self.expired = 0
        self.last_step = "init"
        self.last_available: dict[int, int] = {}

    # --- plumbing ------------------------------------------------------------------------------

    def request(self, work: Callable[[Session], T]) -> T:
        """Runs `work` in its own session and commits, like an API request."""
        with self.factory() as db:
            try:
                result = work(db)
                db.commit()
            except BaseException:
                db.rollback()
                raise
        return result

    def refused(self, error: type[Exception], work: Callable[[Session], object]) -> None:
        """`work` must fail with `error`, and leave nothing behind."""
        with pytest.raises(error):
            self.request(work)

    def member(self, index: int) -> ModelMember:
        return self.members[index % len(self.members)]

    def spender(self, index: int) -> ModelMember:
        """A member with points to spend, if there is one (else anyone: the spend is refused)."""
        able = [m for m in self.members if self.open_lots(m)] or self.members
        return able[index % len(able)]

    def new_lot(self, member: ModelMember, points: int, *, at: datetime, **kw: Any) -> ModelLot:
        lot = ModelLot(
            seq=next(self.seq),
            amount=points,
            remaining=points,
            state=kw.pop("state", LotState.AVAILABLE),
            earned_at=at,
            available_at=kw.pop("available_at", at),
            expires_at=kw.pop("expires_at", at + timedelta(days=self.expiry_days)),
        )
        member.lots.append(lot)
        return lot

    def open_lots(self, member: ModelMember) -> list[ModelLot]:
        """Spendable lots: available, with points left, not past their expiry (job run or not)."""
        return [
            lot
            for lot in member.lots
            if lot.state == LotState.AVAILABLE and lot.remaining > 0 and lot.expires_at > self.clock
        ]

    def share_of(self, member: ModelMember, share: int) -> int:
        spendable = sum(lot.remaining for lot in self.open_lots(member))
        return max(1, spendable * share // 100)

    @staticmethod
    def pay_debt(lot: ModelLot, available_before: int) -> None:
        """New available points first pay back what a return took below zero."""
        if available_before < 0:
            lot.remaining -= min(lot.amount, -available_before)

    # --- setup ---------------------------------------------------------------------------------

    @initialize(
        member_count=st.integers(2, 3),
        expiry_days=st.sampled_from([10, 30]),
        window_days=st.sampled_from([0, 3, 7]),
        opening=st.lists(st.tuples(BASKETS, st.integers(0, 10 * 24)), min_size=3, max_size=6),
    )
    def open_program(
        self,
        member_count: int,
        expiry_days: int,
        window_days: int,
        opening: list[tuple[list[tuple[str, int, str]], int]],
    ) -> None:
        """A program with expiry and a return window, its members, and their first purchases."""
        self.expiry_days = expiry_days
        self.window_days = window_days

        def work(db: Session) -> None:
            program = make_program(
                db,
                now=self.clock,
                settings={
                    "expiry": {"mode": "days", "days": expiry_days},
                    "return_window_days": window_days,
                },
            )
            rules.create(db, program=program, definition=ONE_PER_EURO, now=self.clock)
            self.program = program  # used detached, after this session closes
            self.program_id = program.id
            for _ in range(member_count):
                member = make_member(db, program=program, now=self.clock)
                self.members.append(ModelMember(id=member.id, external_id=member.external_id))

        self.request(work)
        for index, (basket, backdated_hours) in enumerate(opening):
            self.earn(index, basket, 0, backdated_hours)

    # --- rules ---------------------------------------------------------------------------------

    @rule(
        who=st.integers(0, 2),
        basket=BASKETS,
        later_hours=st.integers(0, 48),
        backdated_hours=st.integers(0, 10 * 24),
    )
    def earn(
        self,
        who: int,
        basket: list[tuple[str, int, str]],
        later_hours: int,
        backdated_hours: int,
    ) -> None:
        """A purchase at the till (1 point per euro), maybe sent late; purchases stay in order."""
        self.last_step = "earn"
        self.clock += timedelta(hours=later_hours)
        member = self.member(who)
        occurred_at = max(self.clock - timedelta(hours=backdated_hours), self.last_purchase_at)
        self.last_purchase_at = occurred_at
        external_id = f"t{next(self.names)}"
        unit_prices = {sku: Decimal(price) for sku, _, price in basket}
        amount = sum((Decimal(price) * qty for _, qty, price in basket), Decimal(0))
        data = {
            "external_id": external_id,
            "member_id": member.external_id,
            "occurred_at": occurred_at.isoformat(),
            "amount": str(amount),
            "currency": "EUR",
            "items": [
                {"sku": sku, "category": "food", "quantity": qty, "unit_price": price}
                for sku, qty, price in basket
            ],
        }
        program = self.program
        outcome = self.request(
            lambda db: purchases.record_purchase(db, program=program, data=data, now=self.clock)
        )
        points = int(amount.to_integral_value(rounding=ROUND_FLOOR))
        pending = occurred_at + timedelta(days=self.window_days) > self.clock
        assert (outcome.points, outcome.replayed) == (points, False)
        assert outcome.pending == (pending and points > 0)
        lot = None
        if points:
            self.issued += points
            lot = self.new_lot(
                member,
                points,
                at=occurred_at,
                state=LotState.PENDING if pending else LotState.AVAILABLE,
                available_at=occurred_at + timedelta(days=self.window_days),
            )
            if pending:
                member.pending += points
            else:
                self.pay_debt(lot, member.available)
                member.available += points
        self.purchases.append(
            ModelPurchase(
                external_id=external_id,
                member=member,
                data=data,
                unit_prices=unit_prices,
                bought={sku: qty for sku, qty, _ in basket},
                amount=amount,
                points=points,
                lot=lot,
            )
        )

    @precondition(lambda self: self.purchases)
    @rule(which=st.integers(0, 10**6), tamper=st.booleans())
    def resend_purchase(self, which: int, tamper: bool) -> None:
        """The till retries: the same content replays the first result, other content is refused."""
        self.last_step = "resend"
        bought = self.purchases[which % len(self.purchases)]
        program = self.program
        data = dict(bought.data)
        if tamper:
            data["amount"] = str(bought.amount + 1)
            self.refused(
                IdempotencyError,
                lambda db: purchases.record_purchase(
                    db, program=program, data=data, now=self.clock
                ),
            )
            return
        outcome = self.request(
            lambda db: purchases.record_purchase(db, program=program, data=data, now=self.clock)
        )
        assert outcome.replayed and outcome.points == bought.points

    @rule(who=st.integers(0, 2), share=SHARES)
    def redeem(self, who: int, share: int) -> None:
        self.last_step = "redeem"
        member = self.spender(who)
        points = self.share_of(member, share)
        plan = burn_plan(self.open_lots(member), points)

        def work(db: Session) -> int:
            return ledger.redeem(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                member_id=member.id,
                points=points,
                now=self.clock,
                reason="reward",
            )

        if plan is None:
            self.refused(InsufficientPoints, work)
            return
        self.request(work)
        for lot, take in plan:
            lot.remaining -= take
        member.available -= points
        self.redeemed += points

    @rule(
        asks=st.lists(st.tuples(st.integers(0, 2), SHARES), min_size=1, max_size=4),
        repeat=st.booleans(),
    )
    def redeem_batch(self, asks: list[tuple[int, int]], repeat: bool) -> None:
        """One-step redemptions written together, as the API's group commit does; with
        `repeat`, the first one is sent again at the end (a replay, or refused again)."""
        self.last_step = "redeem_batch"
        requests: list[RedemptionRequest] = []
        expected: list[int | None] = []  # the available balance after each, None: refused
        made: list[ModelHold | None] = []
        for who, share in asks:
            member = self.spender(who)
            points = self.share_of(member, share)
            reference = f"redemption:r{next(self.names)}"
            requests.append(RedemptionRequest(member.id, points, reference, "reward"))
            made.append(self.model_redeem_now(member, points, reference))
            expected.append(member.available if made[-1] else None)
        if repeat:
            requests.append(requests[0])
            first = made[0]
            made.append(first)
            expected.append(first.member.available if first else None)
        program = self.program

        def work(db: Session) -> list[Any]:
            return redemptions.redeem_many(
                db,
                program_id=program.id,
                settings=settings_of(program),
                requests=requests,
                now=self.clock,
            )

        answers = self.request(work)
        for answer, available, held in zip(answers, expected, made, strict=True):
            if available is None:
                assert isinstance(answer, InsufficientPoints), answer
                continue
            assert isinstance(answer, redemptions.Redeemed), answer
            assert held is not None and answer.available_after == available
            assert answer.replayed == (held.db_id != 0)
            held.db_id = answer.hold_id

    def model_redeem_now(
        self, member: ModelMember, points: int, reference: str
    ) -> ModelHold | None:
        """A hold captured at once, first-expiring lots first (None: too few points)."""
        plan = burn_plan(self.open_lots(member), points)
        if plan is None:
            return None
        for lot, take in plan:
            lot.remaining -= take
        member.available -= points
        self.redeemed += points
        captured = ModelHold(
            reference=reference,
            db_id=0,  # known once written
            member=member,
            points=points,
            takes=plan,
            expires_at=self.clock,
            status=HoldStatus.CAPTURED,
        )
        self.holds.append(captured)
        return captured

    @rule(who=st.integers(0, 2), share=SHARES, ttl_days=st.integers(1, 15))
    def hold(self, who: int, share: int, ttl_days: int) -> None:
        self.last_step = "hold"
        member = self.spender(who)
        points = self.share_of(member, share)
        plan = burn_plan(self.open_lots(member), points)
        reference = f"h{next(self.names)}"
        program = self.program

        def work(db: Session) -> int:
            return ledger.hold(
                db,
                program_id=program.id,
                settings=settings_of(program),
                member_id=member.id,
                points=points,
                reference=reference,
                now=self.clock,
                reason="reward",
                ttl=timedelta(days=ttl_days),
            ).id

        if plan is None:
            self.refused(InsufficientPoints, work)
            return
        hold_id = self.request(work)
        for lot, take in plan:
            lot.remaining -= take
        member.available -= points
        member.held += points
        self.holds.append(
            ModelHold(
                reference=reference,
                db_id=hold_id,
                member=member,
                points=points,
                takes=plan,
                expires_at=self.clock + timedelta(days=ttl_days),
            )
        )

    @precondition(lambda self: self.holds)
    @rule(which=st.integers(0, 10**6))
    def capture(self, which: int) -> None:
        self.last_step = "capture"
        held = self.holds[which % len(self.holds)]

        def work(db: Session) -> object:
            return ledger.capture(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                hold_id=held.db_id,
                now=self.clock,
            )

        if held.status != HoldStatus.HELD or held.expires_at <= self.clock:
            self.refused(InvalidState, work)
            return
        self.request(work)
        held.status = HoldStatus.CAPTURED
        held.member.held -= held.points
        self.redeemed += held.points

    def model_release(self, held: ModelHold, status: HoldStatus) -> None:
        """Held points go back to their lots, except those of lots that expired meanwhile (they
        expire); below zero, the points given back pay the debt first."""
        member = held.member
        debt = max(0, -member.available)
        lapsed = 0
        for lot, take in held.takes:
            if lot.state == LotState.EXPIRED:
                lapsed += take
                continue
            paid = min(debt, take)
            lot.remaining += take - paid
            debt -= paid
        member.held -= held.points
        member.available += held.points - lapsed
        self.expired += lapsed
        held.status = status

    @precondition(lambda self: self.holds)
    @rule(which=st.integers(0, 10**6))
    def release(self, which: int) -> None:
        self.last_step = "release"
        held = self.holds[which % len(self.holds)]

        def work(db: Session) -> object:
            return ledger.release(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                hold_id=held.db_id,
                now=self.clock,
            )

        if held.status != HoldStatus.HELD:
            self.refused(InvalidState, work)
            return
        self.request(work)
        self.model_release(held, HoldStatus.RELEASED)

    @rule(later_days=st.integers(0, 10))
    def expire_holds(self, later_days: int) -> None:
        """The job that releases holds past their TTL."""
        self.last_step = "expire_holds"
        self.clock += timedelta(days=later_days)
        due = [h for h in self.holds if h.status == HoldStatus.HELD and h.expires_at <= self.clock]
        released = self.request(
            lambda db: ledger.expire_holds(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                now=self.clock,
            )
        )
        assert released == len(due)
        for held in due:
            self.model_release(held, HoldStatus.EXPIRED)

    @precondition(lambda self: any(p.left(s) for p in self.purchases for s in p.bought))
    @rule(which=st.integers(0, 10**6), sku_pick=st.integers(0, 2), quantity=st.integers(1, 4))
    def return_items(self, which: int, sku_pick: int, quantity: int) -> None:
        """Some items of an earlier purchase come back, maybe after its points were spent."""
        self.last_step = "return"
        candidates = [p for p in self.purchases if any(p.left(s) for s in p.bought)]
        bought = candidates[which % len(candidates)]
        skus = [sku for sku in bought.bought if bought.left(sku)]
        sku = skus[sku_pick % len(skus)]
        quantity = 1 + (quantity - 1) % bought.left(sku)
        value = bought.unit_prices[sku] * quantity
        cumulative = bought.amount_returned + value
        if cumulative >= bought.amount:
            target = bought.points
        else:
            target = int(
                (bought.points * cumulative / bought.amount).to_integral_value(ROUND_FLOOR)
            )
        points = max(0, target - bought.points_reversed)
        program = self.program
        outcome = self.request(
            lambda db: purchases.record_return(
                db,
                program=program,
                purchase_external_id=bought.external_id,
                external_id=f"r{next(self.names)}",
                occurred_at=self.clock,
                now=self.clock,
                items=[{"sku": sku, "quantity": quantity}],
            )
        )
        assert outcome.points_reversed == points
        bought.returned[sku] += quantity
        bought.amount_returned = cumulative
        bought.points_reversed += points
        if points == 0 or bought.lot is None:
            assert outcome.transaction_id is None
            return
        member, own, still = bought.member, bought.lot, points
        from_pending = from_available = 0
        if own.remaining > 0 and own.state != LotState.EXPIRED:
            take = min(own.remaining, still)
            own.remaining -= take
            still -= take
            if own.state == LotState.PENDING:
                from_pending += take
            else:
                from_available += take
        # Expired points already left the member: the program's expired account gives them back.
        from_expired = min(still, own.expired)
        own.expired -= from_expired
        self.expired -= from_expired
        still -= from_expired
        # A reversal may also take points whose lot is past its expiry (not yet expired by the job).
        others = [
            lot
            for lot in member.lots
            if lot is not own and lot.state == LotState.AVAILABLE and lot.remaining > 0
        ]
        left = sum(lot.remaining for lot in others)
        if still and left:
            for lot, take in burn_plan(others, min(still, left)) or []:
                lot.remaining -= take
                from_available += take
                still -= take
        # What was already spent takes the balance below zero (allowed only for returns).
        member.pending -= from_pending
        member.available -= from_available + still
        self.issued -= points

    @rule(later_days=st.integers(0, 20))
    def expire(self, later_days: int) -> None:
        """Time passes and the expiry job runs."""
        self.last_step = "expire"
        self.clock += timedelta(days=later_days)
        expired = self.request(
            lambda db: ledger.expire_due(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                now=self.clock,
            )
        )
        expected = 0
        for member in self.members:
            for lot in member.lots:
                if lot.state == LotState.AVAILABLE and lot.expires_at <= self.clock:
                    expected += lot.remaining
                    member.available -= lot.remaining
                    lot.expired += lot.remaining
                    lot.remaining = 0
                    lot.state = LotState.EXPIRED
        assert expired == expected
        self.expired += expected

    @rule(later_days=st.integers(0, 10))
    def unlock(self, later_days: int) -> None:
        """Time passes and the job that ends return windows runs."""
        self.last_step = "unlock"
        self.clock += timedelta(days=later_days)
        unlocked = self.request(
            lambda db: ledger.unlock_due(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                now=self.clock,
            )
        )
        due_count = 0
        for member in self.members:
            due = [
                lot
                for lot in member.lots
                if lot.state == LotState.PENDING and lot.available_at <= self.clock
            ]
            due_count += len(due)
            points = sum(lot.remaining for lot in due)
            for lot in due:
                lot.state = LotState.AVAILABLE
            debt = min(max(0, -member.available), points)
            member.pending -= points
            member.available += points
            if debt:
                self.take_unlock_debt(member, due, debt)
        assert unlocked == due_count

    def take_unlock_debt(self, member: ModelMember, due: list[ModelLot], debt: int) -> None:
        """The unlock pays the debt from the lots it unlocks.

        `unlock_due` pays from the soonest-expiring lots first; the model checks that the
        database's choice is a valid one and then follows it.
        """
        by_id = {lot.db_id: lot for lot in due}
        with self.factory() as db:
            rows = db.execute(
                text(
                    "SELECT a.lot_id, a.amount FROM lot_allocations a "
                    "WHERE a.kind = 'debt' AND a.transaction_id = ("
                    "  SELECT MAX(id) FROM ledger_transactions"
                    "  WHERE member_id = :member AND kind = 'unlock')"
                ),
                {"member": member.id},
            ).all()
            db.rollback()
        assert sum(amount for _, amount in rows) == debt, rows
        for lot_id, amount in rows:
            lot = by_id[lot_id]
            assert 0 < amount <= lot.remaining
            lot.remaining -= amount

    @rule(sender=st.integers(0, 2), step=st.integers(1, 2), share=SHARES)
    def transfer(self, sender: int, step: int, share: int) -> None:
        self.last_step = "transfer"
        source = self.spender(sender)
        points = self.share_of(source, share)
        others = len(self.members) - 1
        target = self.members[(self.members.index(source) + 1 + (step - 1) % others) % (others + 1)]
        plan = burn_plan(self.open_lots(source), points)

        def work(db: Session) -> int:
            return ledger.transfer(
                db,
                program_id=self.program_id,  # type: ignore[arg-type]
                from_member_id=source.id,
                to_member_id=target.id,
                points=points,
                reason="gift",
                now=self.clock,
            )

        if plan is None:
            self.refused(InsufficientPoints, work)
            return
        self.request(work)
        debt = max(0, -target.available)
        source.available -= points
        target.available += points
        for lot, take in plan:
            lot.remaining -= take
            # Each piece keeps its expiry.
            received = self.new_lot(target, take, at=self.clock, expires_at=lot.expires_at)
            paid = min(debt, take)
            received.remaining -= paid
            debt -= paid

    @rule(who=st.integers(0, 2), gives=st.booleans(), size=st.integers(1, 60), share=SHARES)
    def adjust(self, who: int, gives: bool, size: int, share: int) -> None:
        """A manual correction: a goodwill gift, or a share of the member's points taken back."""
        self.last_step = "adjust"
        member = self.member(who) if gives else self.spender(who)
        points = size if gives else -self.share_of(member, share)
        program = self.program

        def work(db: Session) -> int:
            return ledger.adjust(
                db,
                program_id=program.id,
                settings=settings_of(program),
                timezone_name=program.timezone,
                member_id=member.id,
                points=points,
                issuer="ana@shop",
                reason="goodwill" if points > 0 else "correction",
                now=self.clock,
            )

        plan = burn_plan(self.open_lots(member), -points) if points < 0 else []
        if plan is None:
            self.refused(InsufficientPoints, work)
            return
        self.request(work)
        if points > 0:
            self.pay_debt(self.new_lot(member, points, at=self.clock), member.available)
        for lot, take in plan:
            lot.remaining -= take
        member.available += points
        self.issued += points

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def ledger_holds(self) -> None:
        if self.program_id is None:
            return
        with self.factory() as db:
            try:
                self.check(db)
            finally:
                db.rollback()

    def check(self, db: Session) -> None:
        program_id = self.program_id
        params = {"program": program_id}
        assert check_ledger(db, program_id=program_id) == []

        # No lot is ever over-consumed: replaying its allocations in order, what is left stays
        # within [0, amount] after every transaction, not only now.
        over = db.execute(
            text(
                "SELECT l.id, a.transaction_id FROM point_lots l "
                "JOIN lot_allocations a ON a.lot_id = l.id "
                "WHERE l.program_id = :program AND ("
                "  l.amount - (SELECT SUM(b.amount) FROM lot_allocations b"
                "              WHERE b.lot_id = l.id AND b.transaction_id <= a.transaction_id)"
                "  NOT BETWEEN 0 AND l.amount)"
            ),
            params,
        ).all()
        assert over == [], f"lots over-consumed (lot, transaction): {over}"

        # Expiry takes a lot once, and only what was left of it: never points already spent.
        bad_expiry = db.execute(
            text(
                "SELECT a.lot_id, a.amount FROM lot_allocations a "
                "JOIN point_lots l ON l.id = a.lot_id "
                "WHERE l.program_id = :program AND a.kind = 'expire' AND ("
                "  a.amount <= 0 OR a.amount > l.amount - COALESCE("
                "    (SELECT SUM(b.amount) FROM lot_allocations b"
                "     WHERE b.lot_id = a.lot_id AND b.transaction_id < a.transaction_id), 0)"
                "  OR (SELECT COUNT(*) FROM lot_allocations c"
                "      WHERE c.lot_id = a.lot_id AND c.kind = 'expire') > 1)"
            ),
            params,
        ).all()
        assert bad_expiry == [], f"expiry took spent points or expired twice: {bad_expiry}"

        # Double entry: the cached member balances and the system accounts (summed from their
        # entries) add up to zero, and the system accounts say what the model says.
        members_total = db.scalar(
            select(Account.balance)
            .where(Account.program_id == program_id, Account.member_id.is_not(None))
            .with_only_columns(text("COALESCE(SUM(balance), 0)"))
        )
        system = dict(
            db.execute(
                select(Account.kind, text("COALESCE(SUM(ledger_entries.amount), 0)"))
                .select_from(Account)
                .outerjoin(Entry, Entry.account_id == Account.id)
                .where(Account.program_id == program_id, Account.member_id.is_(None))
                .group_by(Account.kind)
            ).all()
        )
        assert int(members_total) + sum(int(v) for v in system.values()) == 0
        assert {k: int(v) for k, v in system.items()} == {
            AccountKind.ISSUANCE.value: -self.issued,
            AccountKind.REDEEMED.value: self.redeemed,
            AccountKind.EXPIRED.value: self.expired,
        }

        # The model: every member's balances, lots and holds.
        lots_by_member: dict[int, list[tuple[int, Any]]] = {m.id: [] for m in self.members}
        for lot in db.scalars(select(Lot).where(Lot.program_id == program_id).order_by(Lot.id)):
            lots_by_member[lot.member_id].append(
                (lot.id, (lot.amount, lot.remaining, lot.state, lot.expires_at))
            )
        for member in self.members:
            got = ledger.balance(db, member_id=member.id)
            assert got == ledger.Balance(member.available, member.pending, member.held), (
                f"member {member.id}: database {got}, model "
                f"{(member.available, member.pending, member.held)}"
            )
            found = lots_by_member[member.id]
            expected = [
                (lot.amount, lot.remaining, lot.state.value, lot.expires_at) for lot in member.lots
            ]
            assert [row for _, row in found] == expected, f"member {member.id} lots"
            for lot, (lot_id, _) in zip(member.lots, found, strict=True):
                assert lot.db_id in (None, lot_id)
                lot.db_id = lot_id
            # A balance goes below zero, or further below, only through a return.
            before = self.last_available.get(member.id, 0)
            if got.available < 0 and got.available < before:
                assert self.last_step == "return", (
                    f"member {member.id} went from {before} to {got.available} by {self.last_step}"
                )
            self.last_available[member.id] = got.available
        statuses = dict(
            db.execute(
                select(Hold.reference, Hold.status).where(Hold.program_id == program_id)
            ).all()
        )
        assert statuses == {h.reference: h.status.value for h in self.holds}


@pytest.mark.slow
def test_random_ledger_operations_keep_every_invariant(
    session_factory: sessionmaker[Session],
) -> None:
    machine = type("LedgerMachineRun", (LedgerMachine,), {"factory": session_factory})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            print_blob=True,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        ),
    )


# --- what the machine found (both fixed in 294d10c), kept as regressions --------------------------


def _earn(db: Session, program: Any, member: Any, points: int, at: datetime) -> ledger.Earned:
    earned = ledger.earn(
        db,
        program_id=program.id,
        settings=settings_of(program),
        timezone_name=program.timezone,
        member_id=member.id,
        lines=[ledger.EarnLine(points=points, reason="test")],
        occurred_at=at,
        now=at,
        source_type="test",
        source_ref=f"e-{points}",
        reason="test earning",
    )
    assert earned is not None
    return earned


def test_releasing_a_hold_after_its_lot_expired_does_not_revive_points(
    db: Session, now: datetime
) -> None:
    """Found as: adjust, hold, expire, expire_holds. The release used to give the held points
    back to a lot already expired: 'available' grew, no open lot backed it, and it never expired.
    """
    program = make_program(db, now=now, settings={"expiry": {"mode": "days", "days": 30}})
    member = make_member(db, program=program, now=now)
    _earn(db, program, member, 100, now)
    held = ledger.hold(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        points=40,
        reference="mug",
        now=now,
        reason="mug",
        ttl=timedelta(days=60),
    )
    assert ledger.expire_due(db, program_id=program.id, now=now + timedelta(days=30)) == 60
    ledger.release(db, program_id=program.id, hold_id=held.id, now=now + timedelta(days=31))
    db.commit()
    # The 40 held points were due to expire with their lot: released, they expire too.
    assert check_ledger(db, program_id=program.id) == []
    assert ledger.balance(db, member_id=member.id) == ledger.Balance(0, 0, 0)
    expired = ledger.system_account_ids(db, program_id=program.id)[AccountKind.EXPIRED]
    assert db.scalar(select(func.sum(Entry.amount)).where(Entry.account_id == expired)) == 100


def test_releasing_a_hold_while_in_debt_pays_the_debt_first(db: Session, now: datetime) -> None:
    """A return after a hold took the balance below zero; the release used to put the points
    back into lots without paying that debt, and redeem then spent them (balance −40 again).
    """
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now)
    earned = _earn(db, program, member, 100, now)
    held = ledger.hold(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        points=40,
        reference="mug",
        now=now,
        reason="mug",
    )
    ledger.reverse_earning(
        db,
        program_id=program.id,
        settings=settings_of(program),
        member_id=member.id,
        earn_transaction_id=earned.transaction_id,
        points=100,
        occurred_at=now,
        now=now,
        reason="return r1",
        source_type="return",
        source_ref="r1",
    )
    assert ledger.balance(db, member_id=member.id).available == -40
    ledger.release(db, program_id=program.id, hold_id=held.id, now=now)
    db.commit()
    assert ledger.balance(db, member_id=member.id).available == 0
    assert check_ledger(db, program_id=program.id) == []
    with pytest.raises(InsufficientPoints):
        ledger.redeem(
            db, program_id=program.id, member_id=member.id, points=40, now=now, reason="x"
        )
