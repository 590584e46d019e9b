"""Ledger use cases: earn, redeem, hold/capture/release, adjust, transfer, reverse, unlock, expire.

Every function takes the caller's session and never commits: the caller owns the unit of work.
A member's points change only while their accounts are locked (PostgreSQL: `FOR UPDATE`, in id
order; SQLite: every transaction holds the write lock from its start), so concurrent writers
queue instead of both spending the same points.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Executable, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from fideliza.core.errors import (
    FidelizaError,
    IdempotencyError,
    InvalidState,
    NotFound,
    ValidationError,
)
from fideliza.db import among, among_values
from fideliza.ledger import events
from fideliza.ledger.domain import (
    MEMBER_ACCOUNT_KINDS,
    SYSTEM_ACCOUNT_KINDS,
    AccountKind,
    AllocationKind,
    HoldStatus,
    LotState,
    OpenLot,
    TxKind,
    member_account_code,
    plan_burn,
)
from fideliza.ledger.models import Account, Allocation, Entry, Hold, LedgerTransaction, Lot
from fideliza.programs.domain import ProgramSettings


@dataclass(frozen=True, slots=True)
class Line:
    """One entry to post: a signed amount on an account, and what caused it."""

    account_id: int
    amount: int
    rule_id: int | None = None
    rule_version: int | None = None
    tier_code: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's points: available to spend, pending (return window) and held (redemptions)."""

    available: int
    pending: int
    held: int

    @property
    def total(self) -> int:
        return self.available + self.pending + self.held


@dataclass(frozen=True, slots=True)
class EarnLine:
    """Points to earn and why (a rule and its version, or a tier multiplier, or a reason)."""

    points: int
    reason: str
    rule_id: int | None = None
    rule_version: int | None = None
    tier_code: str | None = None


@dataclass(frozen=True, slots=True)
class Earned:
    transaction_id: int
    lot_id: int
    points: int
    pending: bool


# --- accounts -------------------------------------------------------------------------------


def open_system_accounts(db: Session, *, program_id: int) -> None:
    """Creates the program's issuance, redeemed and expired accounts."""
    db.execute(
        insert(Account),
        [
            {
                "program_id": program_id,
                "member_id": None,
                "kind": k,
                "code": k.value,
                "balance": None,
            }
            for k in SYSTEM_ACCOUNT_KINDS
        ],
    )


def open_member_accounts(db: Session, *, program_id: int, member_ids: Sequence[int]) -> None:
    """Creates each member's available, pending and held accounts (balance 0)."""
    if not member_ids:
        return
    db.execute(
        insert(Account),
        [
            {
                "program_id": program_id,
                "member_id": member_id,
                "kind": kind.value,
                "code": member_account_code(member_id, kind),
                "balance": 0,
            }
            for member_id in member_ids
            for kind in MEMBER_ACCOUNT_KINDS
        ],
    )


# By code, the unique (program, code) index: "member_id IS NULL" alone would scan every account
# of the program (three per member) on SQLite. Built once: every batch reads it.
_SYSTEM_ACCOUNTS = select(Account.kind, Account.id).where(
    Account.program_id == bindparam("program_id"),
    Account.code.in_([kind.value for kind in SYSTEM_ACCOUNT_KINDS]),
    Account.member_id.is_(None),
)


def system_account_ids(db: Session, *, program_id: int) -> dict[AccountKind, int]:
    """The ids of the program's system accounts (cached on the session)."""
    known: dict[int, dict[AccountKind, int]] = db.info.setdefault("system_accounts", {})
    if program_id not in known:
        # On the connection, not through the ORM: system accounts are only ever written by
        # Core inserts (open_system_accounts), so no pending ORM change can hide one.
        rows = db.connection().execute(_SYSTEM_ACCOUNTS, {"program_id": program_id}).all()
        known[program_id] = {AccountKind(kind): account_id for kind, account_id in rows}
    return known[program_id]


@cache
def _lock_query(dialect: str, single: bool, skip_locked: bool) -> Executable:
    return (
        select(Account.member_id)
        .where(
            among(dialect, Account.member_id, single),
            Account.kind == AccountKind.AVAILABLE.value,
        )
        .order_by(Account.id)
        .with_for_update(skip_locked=skip_locked)
    )


@cache
def _accounts_query(dialect: str, single: bool) -> Executable:
    return select(Account.member_id, Account.kind, Account.id, Account.balance).where(
        among(dialect, Account.member_id, single)
    )


def lock_member_accounts(
    db: Session, *, member_ids: Iterable[int], skip_locked: bool = False
) -> dict[int, dict[AccountKind, tuple[int, int]]]:
    """Locks the members' points and reads their accounts as they are under the lock.

    The lock is the member's `available` account row (PostgreSQL `FOR UPDATE`, taken in id
    order so two lockers never deadlock): every change of any of the member's accounts takes
    it first, so one row a member is enough, a third of the rows to lock in a bulk import.
    Returns, per member, each account kind's (account id, cached balance). With `skip_locked`,
    members another transaction holds are left out.
    """
    ids = sorted(set(member_ids))
    # Core statements on the session's connection: no ORM row processing for bulk batches;
    # pending ORM changes are flushed first, as the session's own queries would.
    if db.autoflush:
        db.flush()
    connection = db.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        locked = connection.scalars(
            _lock_query(dialect, len(ids) == 1, skip_locked), {"values": among_values(ids)}
        ).all()
        ids = sorted(member_id for member_id in locked if member_id is not None)
    found: dict[int, dict[AccountKind, tuple[int, int]]] = defaultdict(dict)
    kinds = {kind.value: kind for kind in AccountKind}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        rows = connection.execute(
            _accounts_query(dialect, len(chunk) == 1), {"values": among_values(chunk)}
        )
        for member_id, kind, account_id, balance in rows:
            assert member_id is not None  # the query selects member accounts only
            found[member_id][kinds[kind]] = (account_id, balance or 0)
    if not skip_locked:
        for member_id in sorted(set(member_ids)):
            if member_id not in found:
                raise NotFound(f"member {member_id} has no points accounts", field="member_id")
    return dict(found)


def balance(db: Session, *, member_id: int) -> Balance:
    """A member's cached balances (`check` proves they equal the sum of the entries)."""
    rows = dict(
        db.execute(
            select(Account.kind, Account.balance).where(Account.member_id == member_id)
        ).all()
    )
    if not rows:
        raise NotFound(f"member {member_id} has no points accounts", field="member_id")
    return Balance(
        available=rows.get(AccountKind.AVAILABLE, 0) or 0,
        pending=rows.get(AccountKind.PENDING, 0) or 0,
        held=rows.get(AccountKind.HELD, 0) or 0,
    )


# --- posting --------------------------------------------------------------------------------


def post(
    db: Session,
    *,
    program_id: int,
    member_id: int | None,
    kind: TxKind,
    lines: Sequence[Line],
    occurred_at: datetime,
    now: datetime,
    reason: str | None = None,
    source_type: str | None = None,
    source_ref: str | None = None,
    issuer: str | None = None,
    idempotency_key: str | None = None,
    reverses_id: int | None = None,
) -> int:
    """Appends one transaction and its entries, and moves the cached member balances."""
    if not lines:
        raise ValueError("a ledger transaction needs at least one entry")
    if sum(line.amount for line in lines) != 0:
        raise ValueError(f"entries of a {kind} transaction must sum to zero: {lines}")
    transaction_id = db.execute(
        insert(LedgerTransaction).returning(LedgerTransaction.id),
        {
            "program_id": program_id,
            "member_id": member_id,
            "kind": kind.value,
            "occurred_at": occurred_at,
            "recorded_at": now,
            "reason": reason,
            "source_type": source_type,
            "source_ref": source_ref,
            "issuer": issuer,
            "idempotency_key": idempotency_key,
            "reverses_id": reverses_id,
        },
    ).scalar_one()
    db.connection().execute(
        insert(Entry),
        [
            {
                "transaction_id": transaction_id,
                "account_id": line.account_id,
                "amount": line.amount,
                "rule_id": line.rule_id,
                "rule_version": line.rule_version,
                "tier_code": line.tier_code,
                "detail": line.detail,
            }
            for line in lines
        ],
    )
    moves: dict[int, int] = defaultdict(int)
    for line in lines:
        moves[line.account_id] += line.amount
    # Only member accounts cache a balance (system accounts keep NULL: see Account.balance).
    changed = [{"account": a, "move": m} for a, m in moves.items() if m]
    if changed:
        db.connection().execute(
            update(Account)
            .where(Account.id == bindparam("account"), Account.balance.is_not(None))
            .values(balance=Account.balance + bindparam("move")),
            changed,
        )
    return transaction_id


def _allocate(
    db: Session, *, transaction_id: int, takes: Sequence[tuple[int, int]], kind: AllocationKind
) -> None:
    """Takes points out of lots (positive) or gives them back (negative), recording each move."""
    if not takes:
        return
    db.connection().execute(
        insert(Allocation),
        [
            {
                "lot_id": lot_id,
                "transaction_id": transaction_id,
                "amount": amount,
                "kind": kind.value,
            }
            for lot_id, amount in takes
        ],
    )
    db.connection().execute(
        update(Lot)
        .where(Lot.id == bindparam("lot"))
        .values(remaining=Lot.remaining - bindparam("take")),
        [{"lot": lot_id, "take": amount} for lot_id, amount in takes],
    )


def _open_lots(db: Session, *, member_id: int, now: datetime | None) -> list[OpenLot]:
    """The member's available lots with points left; with `now`, only those not yet expired.

    Spending passes `now`: a lot past its expiry is not spent even before the expiry job has
    run. A return's reversal passes None: it may take back points whose lot is about to be
    expired anyway, which keeps the balance equal to what the lots hold.
    """
    statement = select(Lot.id, Lot.remaining, Lot.expires_at, Lot.earned_at).where(
        Lot.member_id == member_id, Lot.state == LotState.AVAILABLE, Lot.remaining > 0
    )
    if now is not None:
        statement = statement.where(or_(Lot.expires_at.is_(None), Lot.expires_at > now))
    rows = db.execute(statement).all()
    return [OpenLot(id=r[0], remaining=r[1], expires_at=r[2], earned_at=r[3]) for r in rows]


def _new_lot(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    transaction_id: int,
    points: int,
    state: LotState,
    earned_at: datetime,
    available_at: datetime,
    expires_at: datetime | None,
) -> int:
    return db.execute(
        insert(Lot).returning(Lot.id),
        {
            "program_id": program_id,
            "member_id": member_id,
            "earn_transaction_id": transaction_id,
            "amount": points,
            "remaining": points,
            "state": state.value,
            "earned_at": earned_at,
            "available_at": available_at,
            "expires_at": expires_at,
        },
    ).scalar_one()


def _settle_debt(
    db: Session, *, lot_id: int, lot_points: int, available_before: int, transaction_id: int
) -> None:
    """A negative available balance (a return after spending) is paid back by new points first.

    This keeps the invariant: available balance = sum of open available lots, or, below zero,
    no open lot at all.
    """
    if available_before < 0:
        _allocate(
            db,
            transaction_id=transaction_id,
            takes=[(lot_id, min(lot_points, -available_before))],
            kind=AllocationKind.DEBT,
        )


# --- use cases ------------------------------------------------------------------------------


def earn(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    timezone_name: str,
    member_id: int,
    lines: Sequence[EarnLine],
    occurred_at: datetime,
    now: datetime,
    source_type: str,
    source_ref: str,
    reason: str,
) -> Earned | None:
    """Credits earned points as one lot: pending during the return window, then available."""
    from zoneinfo import ZoneInfo

    points = sum(line.points for line in lines)
    if points < 0 or any(line.points <= 0 for line in lines):
        raise ValueError(f"earn lines must be positive: {lines}")
    if points == 0:
        return None
    accounts = lock_member_accounts(db, member_ids=[member_id])[member_id]
    available_at = occurred_at + timedelta(days=settings.return_window_days)
    pending = available_at > now
    target_kind = AccountKind.PENDING if pending else AccountKind.AVAILABLE
    target_id = accounts[target_kind][0]
    issuance = system_account_ids(db, program_id=program_id)[AccountKind.ISSUANCE]
    entries = [
        Line(
            account_id=target_id,
            amount=line.points,
            rule_id=line.rule_id,
            rule_version=line.rule_version,
            tier_code=line.tier_code,
            detail=line.reason,
        )
        for line in lines
    ]
    entries.append(Line(account_id=issuance, amount=-points, detail=reason))
    transaction_id = post(
        db,
        program_id=program_id,
        member_id=member_id,
        kind=TxKind.EARN,
        lines=entries,
        occurred_at=occurred_at,
        now=now,
        reason=reason,
        source_type=source_type,
        source_ref=source_ref,
    )
    lot_id = _new_lot(
        db,
        program_id=program_id,
        member_id=member_id,
        transaction_id=transaction_id,
        points=points,
        state=LotState.PENDING if pending else LotState.AVAILABLE,
        earned_at=occurred_at,
        available_at=available_at,
        expires_at=settings.expiry.expires_at(occurred_at, ZoneInfo(timezone_name)),
    )
    if not pending:
        _settle_debt(
            db,
            lot_id=lot_id,
            lot_points=points,
            available_before=accounts[AccountKind.AVAILABLE][1],
            transaction_id=transaction_id,
        )
    return Earned(transaction_id=transaction_id, lot_id=lot_id, points=points, pending=pending)


def redeem(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    points: int,
    now: datetime,
    reason: str,
    source_type: str = "redemption",
    source_ref: str | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Spends available points at once (first-expiring lots first); returns the transaction id."""
    _require_active(db, member_id)
    accounts = lock_member_accounts(db, member_ids=[member_id])[member_id]
    plan = plan_burn(_open_lots(db, member_id=member_id, now=now), points)
    system = system_account_ids(db, program_id=program_id)
    transaction_id = post(
        db,
        program_id=program_id,
        member_id=member_id,
        kind=TxKind.REDEEM,
        lines=[
            Line(account_id=accounts[AccountKind.AVAILABLE][0], amount=-points, detail=reason),
            Line(account_id=system[AccountKind.REDEEMED], amount=points, detail=reason),
        ],
        occurred_at=now,
        now=now,
        reason=reason,
        source_type=source_type,
        source_ref=source_ref,
        idempotency_key=idempotency_key,
    )
    _allocate(db, transaction_id=transaction_id, takes=plan, kind=AllocationKind.REDEEM)
    return transaction_id


def hold(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    member_id: int,
    points: int,
    reference: str,
    now: datetime,
    reason: str,
    ttl: timedelta | None = None,
) -> Hold:
    """Reserves points for a redemption: available → held, lots taken now, TTL started."""
    accounts = lock_member_accounts(db, member_ids=[member_id])[member_id]
    existing = _held_before(
        db,
        program_id=program_id,
        member_id=member_id,
        points=points,
        reference=reference,
        refusal=ValidationError(
            "was already used for another hold", field="reference", code="idempotency_error"
        ),
    )
    if existing is not None:
        return existing
    return _reserve(
        db,
        program_id=program_id,
        settings=settings,
        member_id=member_id,
        accounts=accounts,
        points=points,
        reference=reference,
        now=now,
        reason=reason,
        ttl=ttl,
    )


def hold_and_capture(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    member_id: int,
    points: int,
    reference: str,
    now: datetime,
    reason: str,
) -> tuple[Hold, bool]:
    """Spends points now: a hold captured at once, both under one lock of the member (what
    `hold` then `capture` do, in fewer statements). The same reference again replays the
    first redemption (True); with another member or amount it is refused."""
    accounts = lock_member_accounts(db, member_ids=[member_id])[member_id]
    existing = _held_before(
        db,
        program_id=program_id,
        member_id=member_id,
        points=points,
        reference=reference,
        refusal=IdempotencyError("was already used for another redemption", field="reference"),
    )
    if existing is not None:
        return existing, True
    held = _reserve(
        db,
        program_id=program_id,
        settings=settings,
        member_id=member_id,
        accounts=accounts,
        points=points,
        reference=reference,
        now=now,
        reason=reason,
        ttl=None,
    )
    _capture(
        db, program_id=program_id, found=held, held_account=accounts[AccountKind.HELD][0], now=now
    )
    return held, False


def _held_before(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    points: int,
    reference: str,
    refusal: FidelizaError,
) -> Hold | None:
    """The hold already made with `reference`, if any; `refusal` is raised when it was for
    another member or amount. Call under the member's lock: two tills holding with one
    reference queue there, so the second one sees the first one's hold."""
    existing = db.scalar(
        select(Hold).where(Hold.program_id == program_id, Hold.reference == reference)
    )
    if existing is not None and (existing.member_id != member_id or existing.points != points):
        raise refusal
    return existing


def _reserve(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    member_id: int,
    accounts: dict[AccountKind, tuple[int, int]],
    points: int,
    reference: str,
    now: datetime,
    reason: str,
    ttl: timedelta | None,
) -> Hold:
    """The reserve posting and its hold, for a member locked by the caller."""
    _require_active(db, member_id)
    plan = plan_burn(_open_lots(db, member_id=member_id, now=now), points)
    transaction_id = post(
        db,
        program_id=program_id,
        member_id=member_id,
        kind=TxKind.RESERVE,
        lines=[
            Line(account_id=accounts[AccountKind.AVAILABLE][0], amount=-points, detail=reason),
            Line(account_id=accounts[AccountKind.HELD][0], amount=points, detail=reason),
        ],
        occurred_at=now,
        now=now,
        reason=reason,
        source_type="hold",
        source_ref=reference,
    )
    _allocate(db, transaction_id=transaction_id, takes=plan, kind=AllocationKind.HOLD)
    held = Hold(
        program_id=program_id,
        member_id=member_id,
        points=points,
        status=HoldStatus.HELD.value,
        reference=reference,
        reason=reason,
        hold_transaction_id=transaction_id,
        created_at=now,
        expires_at=now + (ttl or timedelta(minutes=settings.hold_ttl_minutes)),
        detail={"lots": [[lot_id, take] for lot_id, take in plan]},
    )
    db.add(held)
    db.flush()
    return held


def _locked_hold(db: Session, *, program_id: int, hold_id: int) -> Hold:
    statement = select(Hold).where(Hold.id == hold_id, Hold.program_id == program_id)
    found = db.scalar(statement)
    if found is None:
        raise NotFound(f"hold {hold_id} does not exist", field="hold_id")
    lock_member_accounts(db, member_ids=[found.member_id])
    db.refresh(found)  # re-read under the member's lock: another worker may have settled it
    return found


def capture(db: Session, *, program_id: int, hold_id: int, now: datetime) -> Hold:
    """Turns a hold into a redemption: held → redeemed. Capturing twice is refused."""
    found = _locked_hold(db, program_id=program_id, hold_id=hold_id)
    if found.status != HoldStatus.HELD:
        raise InvalidState(f"hold {hold_id} is {found.status}, not held", field="hold_id")
    if found.expires_at <= now:
        raise InvalidState(f"hold {hold_id} expired at {found.expires_at}", field="hold_id")
    held_account = _member_account(db, member_id=found.member_id, kind=AccountKind.HELD)
    return _capture(db, program_id=program_id, found=found, held_account=held_account, now=now)


def _capture(
    db: Session, *, program_id: int, found: Hold, held_account: int, now: datetime
) -> Hold:
    """The capture posting of a held hold whose member the caller has locked."""
    system = system_account_ids(db, program_id=program_id)
    found.final_transaction_id = post(
        db,
        program_id=program_id,
        member_id=found.member_id,
        kind=TxKind.CAPTURE,
        lines=[
            Line(account_id=held_account, amount=-found.points, detail=found.reason),
            Line(account_id=system[AccountKind.REDEEMED], amount=found.points, detail=found.reason),
        ],
        occurred_at=now,
        now=now,
        reason=found.reason,
        source_type="hold",
        source_ref=found.reference,
    )
    found.status = HoldStatus.CAPTURED.value
    db.flush()
    events.publish_redeemed(
        db, program_id=program_id, captured=[events.Captured.of(found)], now=now
    )
    return found


def release(
    db: Session, *, program_id: int, hold_id: int, now: datetime, expired: bool = False
) -> Hold:
    """Gives held points back to their lots: held → available. Releasing twice is refused."""
    found = _locked_hold(db, program_id=program_id, hold_id=hold_id)
    if found.status != HoldStatus.HELD:
        raise InvalidState(f"hold {hold_id} is {found.status}, not held", field="hold_id")
    accounts = lock_member_accounts(db, member_ids=[found.member_id])[found.member_id]
    available_id, available_before = accounts[AccountKind.AVAILABLE]
    reason = f"{'expired' if expired else 'released'} hold {found.reference}"
    taken = db.execute(
        select(Allocation.lot_id, Allocation.amount, Lot.state)
        .join(Lot, Lot.id == Allocation.lot_id)
        .where(Allocation.transaction_id == found.hold_transaction_id)
        .order_by(Allocation.id)
    ).all()
    # Points of a lot that expired while they were held do not come back to life: they go to
    # the expired account. The rest go back to their lots.
    lapsed = sum(amount for _, amount, state in taken if state == LotState.EXPIRED)
    back = [(lot_id, amount) for lot_id, amount, state in taken if state != LotState.EXPIRED]
    lines = [Line(account_id=accounts[AccountKind.HELD][0], amount=-found.points, detail=reason)]
    if found.points - lapsed:
        lines.append(Line(account_id=available_id, amount=found.points - lapsed, detail=reason))
    if lapsed:
        expired_account = system_account_ids(db, program_id=program_id)[AccountKind.EXPIRED]
        lines.append(
            Line(account_id=expired_account, amount=lapsed, detail=f"{reason}: its lots expired")
        )
    found.final_transaction_id = transaction_id = post(
        db,
        program_id=program_id,
        member_id=found.member_id,
        kind=TxKind.RELEASE,
        lines=lines,
        occurred_at=now,
        now=now,
        reason=reason,
        source_type="hold",
        source_ref=found.reference,
    )
    _allocate(
        db,
        transaction_id=transaction_id,
        takes=[(lot_id, -amount) for lot_id, amount in back],
        kind=AllocationKind.RELEASE,
    )
    # Below zero (a return after spending), the points given back pay that debt first.
    debt = max(0, -available_before)
    for lot_id, amount in back:
        if not debt:
            break
        paid = min(debt, amount)
        _allocate(
            db, transaction_id=transaction_id, takes=[(lot_id, paid)], kind=AllocationKind.DEBT
        )
        debt -= paid
    found.status = (HoldStatus.EXPIRED if expired else HoldStatus.RELEASED).value
    db.flush()
    return found


def expire_holds(db: Session, *, program_id: int, now: datetime) -> int:
    """Releases every hold past its TTL; returns how many."""
    due = db.scalars(
        select(Hold.id).where(
            Hold.program_id == program_id,
            Hold.status == HoldStatus.HELD,
            Hold.expires_at <= now,
        )
    ).all()
    for hold_id in due:
        release(db, program_id=program_id, hold_id=hold_id, now=now, expired=True)
    return len(due)


def adjust(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    timezone_name: str,
    member_id: int,
    points: int,
    issuer: str,
    reason: str,
    now: datetime,
    idempotency_key: str | None = None,
    source_type: str = "manual",
    source_ref: str | None = None,
) -> int:
    """A correction or a bonus by `issuer`: adds a lot, or takes points first-expiring-first.

    `source_type`/`source_ref` say what it is for the history ("manual" by default; a bonus,
    a referral reward or a complaint's goodwill name themselves)."""
    from zoneinfo import ZoneInfo

    if not issuer.strip():
        raise ValidationError("is required for a manual adjustment", field="issuer")
    if not reason.strip():
        raise ValidationError("is required for a manual adjustment", field="reason")
    if points == 0:
        raise ValidationError("must not be zero", field="points")
    accounts = lock_member_accounts(db, member_ids=[member_id])[member_id]
    available_id, available_before = accounts[AccountKind.AVAILABLE]
    if idempotency_key is not None:  # checked under the member's lock: a retry replays
        done = _keyed_adjustment(db, program_id, idempotency_key)
        if done is not None:
            if done != (member_id, points):
                raise IdempotencyError(
                    "was already used for another adjustment", field="idempotency_key"
                )
            return _keyed_transaction_id(db, program_id, idempotency_key)
    _refuse_closed(db, member_id)
    issuance = system_account_ids(db, program_id=program_id)[AccountKind.ISSUANCE]
    plan = plan_burn(_open_lots(db, member_id=member_id, now=now), -points) if points < 0 else []
    transaction_id = post(
        db,
        program_id=program_id,
        member_id=member_id,
        kind=TxKind.ADJUST,
        lines=[
            Line(account_id=available_id, amount=points, detail=reason),
            Line(account_id=issuance, amount=-points, detail=reason),
        ],
        occurred_at=now,
        now=now,
        reason=reason,
        source_type=source_type,
        source_ref=source_ref,
        issuer=issuer,
        idempotency_key=idempotency_key,
    )
    if points > 0:
        lot_id = _new_lot(
            db,
            program_id=program_id,
            member_id=member_id,
            transaction_id=transaction_id,
            points=points,
            state=LotState.AVAILABLE,
            earned_at=now,
            available_at=now,
            expires_at=settings.expiry.expires_at(now, ZoneInfo(timezone_name)),
        )
        _settle_debt(
            db,
            lot_id=lot_id,
            lot_points=points,
            available_before=available_before,
            transaction_id=transaction_id,
        )
    else:
        _allocate(db, transaction_id=transaction_id, takes=plan, kind=AllocationKind.ADJUST)
    return transaction_id


def _keyed_transaction_id(db: Session, program_id: int, key: str) -> int:
    return int(
        db.execute(
            select(LedgerTransaction.id).where(
                LedgerTransaction.program_id == program_id,
                LedgerTransaction.idempotency_key == key,
            )
        ).scalar_one()
    )


def _keyed_adjustment(db: Session, program_id: int, key: str) -> tuple[int | None, int] | None:
    """(member, points) of the adjustment already made under `key`, or None."""
    row = db.execute(
        select(LedgerTransaction.member_id, func.sum(Entry.amount))
        .join(Entry, Entry.transaction_id == LedgerTransaction.id)
        .join(Account, Account.id == Entry.account_id)
        .where(
            LedgerTransaction.program_id == program_id,
            LedgerTransaction.idempotency_key == key,
            Account.member_id.is_not(None),
        )
        .group_by(LedgerTransaction.member_id)
    ).first()
    if row is None:
        return None
    return row[0], int(row[1])


def _refuse_closed(db: Session, member_id: int) -> None:
    """A closed member's account is final: nothing is credited or debited to it any more."""
    from fideliza.members.models import Member

    if db.scalar(select(Member.status).where(Member.id == member_id)) == "closed":
        raise InvalidState(f"member {member_id} is closed", field="member_id")


def transfer(
    db: Session,
    *,
    program_id: int,
    from_member_id: int,
    to_member_id: int,
    points: int,
    reason: str,
    now: datetime,
    idempotency_key: str | None = None,
) -> int:
    """Moves available points between two members of a program; each lot keeps its expiry."""
    if from_member_id == to_member_id:
        raise ValidationError("must differ from the sender", field="to_member_id")
    if points <= 0:
        raise ValidationError(f"must be positive, got {points}", field="points")
    _require_active(db, from_member_id, to_member_id)
    accounts = lock_member_accounts(db, member_ids=[from_member_id, to_member_id])
    lots = _open_lots(db, member_id=from_member_id, now=now)
    plan = plan_burn(lots, points)
    by_id = {lot.id: lot for lot in lots}
    to_available_id, to_before = accounts[to_member_id][AccountKind.AVAILABLE]
    transaction_id = post(
        db,
        program_id=program_id,
        member_id=from_member_id,
        kind=TxKind.TRANSFER,
        lines=[
            Line(
                account_id=accounts[from_member_id][AccountKind.AVAILABLE][0],
                amount=-points,
                detail=f"to member {to_member_id}: {reason}",
            ),
            Line(
                account_id=to_available_id,
                amount=points,
                detail=f"from member {from_member_id}: {reason}",
            ),
        ],
        occurred_at=now,
        now=now,
        reason=reason,
        source_type="transfer",
        source_ref=str(to_member_id),
        idempotency_key=idempotency_key,
    )
    _allocate(db, transaction_id=transaction_id, takes=plan, kind=AllocationKind.TRANSFER)
    debt = max(0, -to_before)
    for lot_id, take in plan:
        source = by_id[lot_id]
        new_lot = _new_lot(
            db,
            program_id=program_id,
            member_id=to_member_id,
            transaction_id=transaction_id,
            points=take,
            state=LotState.AVAILABLE,
            earned_at=now,
            available_at=now,
            expires_at=source.expires_at,
        )
        if debt:
            paid = min(debt, take)
            _allocate(
                db, transaction_id=transaction_id, takes=[(new_lot, paid)], kind=AllocationKind.DEBT
            )
            debt -= paid
    return transaction_id


def reverse_earning(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    member_id: int,
    earn_transaction_id: int,
    points: int,
    occurred_at: datetime,
    now: datetime,
    reason: str,
    source_type: str,
    source_ref: str,
) -> int | None:
    """Takes back `points` of an earning (a return): from its own lot first, then from other
    available lots first-expiring-first, and what was already spent takes the balance below
    zero (the entry says so) — unless the program forbids it, then only what is left is taken.
    """
    if points <= 0:
        return None
    accounts = lock_member_accounts(db, member_ids=[member_id])[member_id]
    own = db.execute(
        select(Lot.id, Lot.remaining, Lot.state).where(
            Lot.earn_transaction_id == earn_transaction_id
        )
    ).first()
    takes_pending: list[tuple[int, int]] = []
    takes_available: list[tuple[int, int]] = []
    still = points
    if own is not None and own.remaining > 0 and own.state != LotState.EXPIRED:
        take = min(own.remaining, still)
        (takes_pending if own.state == LotState.PENDING else takes_available).append((own.id, take))
        still -= take
    # Points of the lot that expired already left the member: their share of a return comes
    # back from the program's expired account, never again from the member.
    from_expired = min(still, _expired_not_reversed(db, own.id, earn_transaction_id)) if own else 0
    still -= from_expired
    if still:
        others = [
            lot
            for lot in _open_lots(db, member_id=member_id, now=None)
            if own is None or lot.id != own.id
        ]
        left = sum(lot.remaining for lot in others)
        if left:
            takes_available += plan_burn(others, min(still, left))
            still -= min(still, left)
    from_pending = sum(t for _, t in takes_pending)
    from_available = sum(t for _, t in takes_available)
    overdraft = still if settings.allow_negative_on_return else 0
    total = from_pending + from_available + overdraft + from_expired
    if total == 0:
        return None
    system = system_account_ids(db, program_id=program_id)
    issuance = system[AccountKind.ISSUANCE]
    lines: list[Line] = []
    if from_expired:
        detail = f"{reason}; {from_expired} of these points had expired: taken from expired"
        lines.append(Line(system[AccountKind.EXPIRED], -from_expired, detail=detail))
    if from_pending:
        lines.append(Line(accounts[AccountKind.PENDING][0], -from_pending, detail=reason))
    if from_available + overdraft:
        detail = reason
        if overdraft:
            detail = (
                f"{reason}; {overdraft} of these points were already spent, "
                "so the balance goes below zero"
            )
        lines.append(
            Line(accounts[AccountKind.AVAILABLE][0], -(from_available + overdraft), detail=detail)
        )
    lines.append(Line(issuance, total, detail=reason))
    transaction_id = post(
        db,
        program_id=program_id,
        member_id=member_id,
        kind=TxKind.REVERSE,
        lines=lines,
        occurred_at=occurred_at,
        now=now,
        reason=reason,
        source_type=source_type,
        source_ref=source_ref,
        reverses_id=earn_transaction_id,
    )
    _allocate(
        db,
        transaction_id=transaction_id,
        takes=takes_pending + takes_available,
        kind=AllocationKind.REVERSE,
    )
    return transaction_id


def _expired_not_reversed(db: Session, lot_id: int, earn_transaction_id: int) -> int:
    """Points of a lot the expiry job took that earlier returns have not yet given back."""
    expired = db.scalar(
        select(func.coalesce(func.sum(Allocation.amount), 0)).where(
            Allocation.lot_id == lot_id, Allocation.kind == AllocationKind.EXPIRE.value
        )
    )
    reversed_ = db.scalar(
        select(func.coalesce(func.sum(Entry.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == Entry.transaction_id)
        .join(Account, Account.id == Entry.account_id)
        .where(
            LedgerTransaction.reverses_id == earn_transaction_id,
            Account.kind == AccountKind.EXPIRED.value,
        )
    )
    return int(expired or 0) + int(reversed_ or 0)  # reversals are negative on that account


def unlock_due(db: Session, *, program_id: int, now: datetime, limit: int | None = None) -> int:
    """Makes pending lots whose return window has closed available; returns how many lots.

    Every member with due lots is handled (or the first `limit` of them).
    """
    due_members = db.scalars(
        select(Lot.member_id)
        .where(Lot.program_id == program_id, Lot.state == LotState.PENDING, Lot.available_at <= now)
        .distinct()
        .limit(limit)
    ).all()
    unlocked = 0
    for member_id in due_members:
        locked = lock_member_accounts(db, member_ids=[member_id], skip_locked=True)
        if member_id not in locked:
            continue  # another worker or a purchase holds this member; the next run takes it
        accounts = locked[member_id]
        lots = db.execute(
            select(Lot.id, Lot.remaining)
            .where(
                Lot.member_id == member_id, Lot.state == LotState.PENDING, Lot.available_at <= now
            )
            # A debt is paid from the soonest-expiring lots first, like any spending.
            .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
        ).all()
        points = sum(remaining for _, remaining in lots)
        if points:
            transaction_id = post(
                db,
                program_id=program_id,
                member_id=member_id,
                kind=TxKind.UNLOCK,
                lines=[
                    Line(accounts[AccountKind.PENDING][0], -points, detail="return window closed"),
                    Line(accounts[AccountKind.AVAILABLE][0], points, detail="return window closed"),
                ],
                occurred_at=now,
                now=now,
                reason="return window closed",
                source_type="job",
                source_ref="unlock",
            )
            debt = max(0, -accounts[AccountKind.AVAILABLE][1])
            for lot_id, remaining in lots:
                if debt and remaining:
                    paid = min(debt, remaining)
                    _allocate(
                        db,
                        transaction_id=transaction_id,
                        takes=[(lot_id, paid)],
                        kind=AllocationKind.DEBT,
                    )
                    debt -= paid
        db.execute(
            update(Lot)
            .where(Lot.id.in_([lot_id for lot_id, _ in lots]))
            .values(state=LotState.AVAILABLE.value)
        )
        unlocked += len(lots)
    return unlocked


def expire_due(db: Session, *, program_id: int, now: datetime, limit: int | None = None) -> int:
    """Expires what is left of each available lot past its expiry, once; returns points expired.

    Every member with due lots is handled (or the first `limit` of them).
    """
    due_members = db.scalars(
        select(Lot.member_id)
        .where(
            Lot.program_id == program_id,
            Lot.state == LotState.AVAILABLE,
            Lot.expires_at <= now,
        )
        .distinct()
        .limit(limit)
    ).all()
    expired_points = 0
    expired_account = system_account_ids(db, program_id=program_id)[AccountKind.EXPIRED]
    for member_id in due_members:
        locked = lock_member_accounts(db, member_ids=[member_id], skip_locked=True)
        if member_id not in locked:
            continue
        lots = db.execute(
            select(Lot.id, Lot.remaining).where(
                Lot.member_id == member_id, Lot.state == LotState.AVAILABLE, Lot.expires_at <= now
            )
        ).all()
        points = sum(remaining for _, remaining in lots)
        if points:
            transaction_id = post(
                db,
                program_id=program_id,
                member_id=member_id,
                kind=TxKind.EXPIRE,
                lines=[
                    Line(
                        locked[member_id][AccountKind.AVAILABLE][0],
                        -points,
                        detail="points expired",
                    ),
                    Line(expired_account, points, detail="points expired"),
                ],
                occurred_at=now,
                now=now,
                reason="points expired",
                source_type="job",
                source_ref="expire",
            )
            _allocate(
                db,
                transaction_id=transaction_id,
                takes=[(lot_id, remaining) for lot_id, remaining in lots if remaining],
                kind=AllocationKind.EXPIRE,
            )
            expired_points += points
        db.execute(
            update(Lot)
            .where(Lot.id.in_([lot_id for lot_id, _ in lots]))
            .values(state=LotState.EXPIRED.value)
        )
    return expired_points


def _require_active(db: Session, *member_ids: int) -> None:
    """Refuses spending or receiving points for a suspended or closed member."""
    from fideliza.members.models import Member

    for member_id, status in db.execute(
        select(Member.id, Member.status).where(Member.id.in_(member_ids))
    ):
        if status != "active":
            raise InvalidState(f"member {member_id} is {status}", field="member_id")


def _member_account(db: Session, *, member_id: int, kind: AccountKind) -> int:
    account_id = db.scalar(
        select(Account.id).where(Account.member_id == member_id, Account.kind == kind.value)
    )
    if account_id is None:
        raise NotFound(f"member {member_id} has no {kind} account", field="member_id")
    return account_id
