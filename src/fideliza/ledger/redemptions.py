"""One-step redemptions in batches: what `service.hold_and_capture` does, for many at once.

The HTTP API batches the redemptions a worker receives at the same moment (group commit) and
writes them here in one transaction. Each request gets exactly what redeeming them one after
the other would give it: its redemption (the same rows: a reserve and a captured hold, lots
taken first-expiring-first across a member's requests in order, one `points.redeemed` event),
a replay of the hold made before with its reference, or its own error, the others going on.

A redemption alone costs ~19 statements; a batch a constant 13 whatever its size: members
read, locked and their open lots read at once, ids allocated in bulk, each table written in one
statement (Core, not ORM objects, as purchases/batch_io.py does). A database error (e.g. two
concurrent batches giving one reference to different members: the unique reference refuses the
second) fails the whole batch; the caller then retries its requests one by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Executable, bindparam, or_, select, text
from sqlalchemy.orm import Session

from fideliza.core.errors import FidelizaError, IdempotencyError, InvalidState, NotFound
from fideliza.db import add_by_id, among, among_values, bulk_insert
from fideliza.ledger import events
from fideliza.ledger import service as ledger
from fideliza.ledger.domain import (
    AccountKind,
    AllocationKind,
    HoldStatus,
    LotState,
    OpenLot,
    TxKind,
    burn_order_key,
    plan_burn,
)
from fideliza.ledger.models import (
    ALLOCATION_BULK_COLUMNS,
    TX_BULK_COLUMNS,
    Allocation,
    Entry,
    Hold,
    LedgerTransaction,
    Lot,
)
from fideliza.members.domain import MemberStatus
from fideliza.members.models import Member
from fideliza.programs.domain import ProgramSettings


@dataclass(frozen=True, slots=True)
class RedemptionRequest:
    """Spend `points` of a member now. `reference` (namespaced by the caller, e.g.
    "redemption:…") makes it idempotent; the member is the internal id."""

    member_id: int
    points: int
    reference: str
    reason: str


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A redemption done or replayed: its hold, its capture, and the balance right after it."""

    hold_id: int
    member_id: int
    points: int
    reason: str | None
    transaction_id: int | None  # the capture transaction (Hold.final_transaction_id)
    redeemed_at: datetime  # Hold.created_at
    available_after: int  # the member's available balance right after this redemption
    replayed: bool


@dataclass(slots=True)
class _Hold:
    """A hold found by reference, or one this batch makes (ids set once allocated)."""

    member_id: int
    points: int
    reference: str
    reason: str | None
    created_at: datetime
    hold_id: int = 0
    transaction_id: int | None = None  # the capture
    reserve_id: int = 0
    takes: list[tuple[int, int]] = field(default_factory=list)  # (lot, points): fresh only


@dataclass(frozen=True, slots=True)
class _Done:
    """An answer whose ids may be known only after the batch's ids are allocated."""

    hold: _Hold
    available_after: int
    replayed: bool

    def redeemed(self) -> Redeemed:
        return Redeemed(
            hold_id=self.hold.hold_id,
            member_id=self.hold.member_id,
            points=self.hold.points,
            reason=self.hold.reason,
            transaction_id=self.hold.transaction_id,
            redeemed_at=self.hold.created_at,
            available_after=self.available_after,
            replayed=self.replayed,
        )


@dataclass(frozen=True, slots=True)
class _MemberRow:
    program_id: int
    external_id: str
    status: str


def redeem_many(
    db: Session,
    *,
    program_id: int,
    settings: ProgramSettings,
    requests: Sequence[RedemptionRequest],
    now: datetime,
) -> list[Redeemed | FidelizaError]:
    """Redeems each request in order, in the caller's transaction; one answer each (its
    redemption, or its error), exactly what redeeming them one after the other would give."""
    if not requests:
        return []
    # Core statements below: pending ORM changes first, as the session's own queries would.
    if db.autoflush:
        db.flush()
    members = _members(db, member_ids={request.member_id for request in requests})
    ours = sorted(member_id for member_id, row in members.items() if row.program_id == program_id)
    # Locked before the holds are read: two tills redeeming with one reference queue on the
    # member's lock, and the second one sees the first one's hold. The statuses are read again
    # under the lock, which a status change takes too: a member closed meanwhile spends nothing.
    accounts = ledger.lock_member_accounts(db, member_ids=ours) if ours else {}
    if ours:
        members.update(_members(db, member_ids=ours))
    active = [member_id for member_id in ours if members[member_id].status == MemberStatus.ACTIVE]
    accounts = {member_id: accounts[member_id] for member_id in active}
    planner = _Planner(
        program_id=program_id,
        members=members,
        available={m: kinds[AccountKind.AVAILABLE][1] for m, kinds in accounts.items()},
        holds=_holds_by_reference(
            db,
            program_id=program_id,
            references={r.reference for r in requests if r.member_id in accounts},
        ),
        lots=_open_lots(db, member_ids=active, now=now),
        now=now,
    )
    answers = [planner.answer(request) for request in requests]
    if planner.fresh:
        _write(
            db,
            program_id=program_id,
            expires_at=now + timedelta(minutes=settings.hold_ttl_minutes),
            fresh=planner.fresh,
            accounts=accounts,
            now=now,
        )
    return [answer.redeemed() if isinstance(answer, _Done) else answer for answer in answers]


class _Planner:
    """Answers the requests in order against the batch's running state: each member's
    available balance and lots, and the holds made so far (in the database or the batch)."""

    def __init__(
        self,
        *,
        program_id: int,
        members: dict[int, _MemberRow],
        available: dict[int, int],
        holds: dict[str, _Hold],
        lots: dict[int, list[OpenLot]],
        now: datetime,
    ) -> None:
        self.program_id = program_id
        self.members = members
        self.available = available
        self.holds = holds
        self.lots = lots
        self.left = {lot.id: lot.remaining for each in lots.values() for lot in each}
        self.now = now
        self.fresh: list[_Hold] = []

    def answer(self, request: RedemptionRequest) -> _Done | FidelizaError:
        try:
            return self._redeem(request)
        except FidelizaError as error:
            return error

    def _redeem(self, request: RedemptionRequest) -> _Done:
        member_id = request.member_id
        self._require_active_member(member_id)
        before = self.holds.get(request.reference)
        if before is not None:
            if before.member_id != member_id or before.points != request.points:
                raise IdempotencyError("was already used for another redemption", field="reference")
            return _Done(before, self.available[member_id], replayed=True)
        lots = [replace(lot, remaining=self.left[lot.id]) for lot in self.lots.get(member_id, [])]
        takes = plan_burn(lots, request.points)
        for lot_id, take in takes:
            self.left[lot_id] -= take
        self.available[member_id] -= request.points
        made = _Hold(
            member_id=member_id,
            points=request.points,
            reference=request.reference,
            reason=request.reason,
            created_at=self.now,
            takes=takes,
        )
        self.holds[request.reference] = made
        self.fresh.append(made)
        return _Done(made, self.available[member_id], replayed=False)

    def _require_active_member(self, member_id: int) -> None:
        """members.get then members.require_active, with their errors."""
        row = self.members.get(member_id)
        if row is None or row.program_id != self.program_id:
            raise NotFound(f"member {member_id} does not exist", field="member_id")
        if row.status != MemberStatus.ACTIVE:
            raise InvalidState(f"member {row.external_id!r} is {row.status}", field="member_id")


# --- reads ----------------------------------------------------------------------------------


# The reads are built once per backend and shape (one value or many, see db.among) and run
# with their values as parameters: building a statement costs more CPU than running it for a
# batch of one.


@cache
def _members_query(dialect: str, single: bool) -> Executable:
    return select(Member.id, Member.program_id, Member.external_id, Member.status).where(
        among(dialect, Member.id, single)
    )


@cache
def _holds_query(dialect: str, single: bool) -> Executable:
    return select(
        Hold.reference,
        Hold.id,
        Hold.member_id,
        Hold.points,
        Hold.reason,
        Hold.final_transaction_id,
        Hold.created_at,
    ).where(Hold.program_id == bindparam("program_id"), among(dialect, Hold.reference, single))


@cache
def _lots_query(dialect: str, single: bool) -> Executable:
    return select(Lot.member_id, Lot.id, Lot.remaining, Lot.expires_at, Lot.earned_at).where(
        among(dialect, Lot.member_id, single),
        Lot.state == LotState.AVAILABLE.value,
        Lot.remaining > 0,
        or_(Lot.expires_at.is_(None), Lot.expires_at > bindparam("now")),
    )


def _members(db: Session, *, member_ids: Iterable[int]) -> dict[int, _MemberRow]:
    wanted = sorted(member_ids)
    connection = db.connection()
    rows = connection.execute(
        _members_query(connection.dialect.name, len(wanted) == 1),
        {"values": among_values(wanted)},
    )
    return {member_id: _MemberRow(program, ref, status) for member_id, program, ref, status in rows}


def _holds_by_reference(
    db: Session, *, program_id: int, references: Iterable[str]
) -> dict[str, _Hold]:
    wanted = sorted(references)
    if not wanted:
        return {}
    connection = db.connection()
    rows = connection.execute(
        _holds_query(connection.dialect.name, len(wanted) == 1),
        {"program_id": program_id, "values": among_values(wanted)},
    )
    return {
        reference: _Hold(
            member_id=member_id,
            points=points,
            reference=reference,
            reason=reason,
            created_at=created_at,
            hold_id=hold_id,
            transaction_id=capture_id,
        )
        for reference, hold_id, member_id, points, reason, capture_id, created_at in rows
    }


def _open_lots(
    db: Session, *, member_ids: Sequence[int], now: datetime
) -> dict[int, list[OpenLot]]:
    """Each member's spendable lots (available, points left, not past expiry), burn order."""
    if not member_ids:
        return {}
    connection = db.connection()
    rows = connection.execute(
        _lots_query(connection.dialect.name, len(member_ids) == 1),
        {"values": among_values(member_ids), "now": now},
    )
    found: dict[int, list[OpenLot]] = defaultdict(list)
    for member_id, lot_id, remaining, expires_at, earned_at in rows:
        found[member_id].append(OpenLot(lot_id, remaining, expires_at, earned_at))
    for lots in found.values():
        lots.sort(key=burn_order_key)
    return found


# --- writes ---------------------------------------------------------------------------------


def _write(
    db: Session,
    *,
    program_id: int,
    expires_at: datetime,
    fresh: Sequence[_Hold],
    accounts: dict[int, dict[AccountKind, tuple[int, int]]],
    now: datetime,
) -> None:
    """The rows `hold_and_capture` writes, for every fresh redemption of the batch."""
    _number(db, fresh)
    rows = _Rows(
        program_id=program_id,
        redeemed_account=ledger.system_account_ids(db, program_id=program_id)[AccountKind.REDEEMED],
        now=now,
        expires_at=expires_at,
    )
    for made in fresh:
        kinds = accounts[made.member_id]
        rows.add(made, available=kinds[AccountKind.AVAILABLE][0], held=kinds[AccountKind.HELD][0])
    converted: dict[str, dict[Any, Any]] = {}  # `now` goes into two tables
    bulk_insert(
        db, LedgerTransaction.__table__, TX_BULK_COLUMNS, rows.transactions, converted=converted
    )
    bulk_insert(db, Entry.__table__, _ENTRY_COLUMNS, rows.entries)
    bulk_insert(db, Allocation.__table__, ALLOCATION_BULK_COLUMNS, rows.allocations)
    add_by_id(db, "point_lots", "remaining", {lot: -taken for lot, taken in rows.taken.items()})
    bulk_insert(db, Hold.__table__, _HOLD_COLUMNS, rows.holds, converted=converted)
    add_by_id(db, "accounts", "balance", {account: -spent for account, spent in rows.spent.items()})
    events.publish_redeemed(
        db,
        program_id=program_id,
        captured=[
            events.Captured(
                hold_id=made.hold_id,
                member_id=made.member_id,
                points=made.points,
                reference=made.reference,
                transaction_id=made.transaction_id,
                reason=made.reason,
            )
            for made in fresh
        ],
        now=now,
    )


@dataclass(slots=True)
class _Rows:
    """The rows of a batch's fresh redemptions, table by table (columns as below)."""

    program_id: int
    redeemed_account: int
    now: datetime
    expires_at: datetime
    transactions: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    allocations: list[tuple[Any, ...]] = field(default_factory=list)
    holds: list[tuple[Any, ...]] = field(default_factory=list)
    spent: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # account → points
    taken: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # lot → points

    def add(self, made: _Hold, *, available: int, held: int) -> None:
        """A reserve (available → held, lots taken) and its capture (held → redeemed)."""
        reserve, capture, points, reason = (
            made.reserve_id,
            made.transaction_id,
            made.points,
            made.reason,
        )
        for kind, tx_id in ((TxKind.RESERVE, reserve), (TxKind.CAPTURE, capture)):
            self.transactions.append(
                (
                    tx_id,
                    self.program_id,
                    made.member_id,
                    kind.value,
                    self.now,
                    self.now,
                    reason,
                    "hold",
                    made.reference,
                )
            )
        self.entries += [
            (reserve, available, -points, reason),
            (reserve, held, points, reason),
            (capture, held, -points, reason),
            (capture, self.redeemed_account, points, reason),
        ]
        for lot_id, take in made.takes:
            self.allocations.append((lot_id, reserve, take, AllocationKind.HOLD.value))
            self.taken[lot_id] += take
        # The held account gains and loses the same points: only available moves.
        self.spent[available] += points
        self.holds.append(
            (
                made.hold_id,
                self.program_id,
                made.member_id,
                points,
                HoldStatus.CAPTURED.value,
                made.reference,
                reason,
                reserve,
                capture,
                self.now,
                self.expires_at,
                {"lots": [[lot_id, take] for lot_id, take in made.takes]},
            )
        )


_ENTRY_COLUMNS = ("transaction_id", "account_id", "amount", "detail")
_HOLD_COLUMNS = (
    "id",
    "program_id",
    "member_id",
    "points",
    "status",
    "reference",
    "reason",
    "hold_transaction_id",
    "final_transaction_id",
    "created_at",
    "expires_at",
    "detail",
)


def _number(db: Session, fresh: Sequence[_Hold]) -> None:
    """Gives each fresh redemption its ids: reserve and capture transactions, and the hold."""
    transaction_ids, hold_ids = _allocate_ids(db, len(fresh))
    for index, made in enumerate(fresh):
        made.reserve_id = transaction_ids[2 * index]
        made.transaction_id = transaction_ids[2 * index + 1]
        made.hold_id = hold_ids[index]


def _allocate_ids(db: Session, count: int) -> tuple[list[int], list[int]]:
    """Reserves 2 × `count` ledger transaction ids and `count` hold ids, in one statement
    (the idea of purchases.ingest.allocate_ids, for two tables at once)."""
    if db.get_bind().dialect.name == "postgresql":
        rows = (
            db.connection()
            .execute(
                text(
                    "SELECT nextval(s.transactions), nextval(s.transactions), nextval(s.holds) "
                    "FROM (SELECT pg_get_serial_sequence('ledger_transactions', 'id') "
                    "AS transactions, pg_get_serial_sequence('point_holds', 'id') AS holds) "
                    "AS s, generate_series(1, :n)"
                ),
                {"n": count},
            )
            .all()
        )
        # Sorted: each reserve before its capture, as when posted one by one.
        transaction_ids = sorted([row[0] for row in rows] + [row[1] for row in rows])
        return transaction_ids, [row[2] for row in rows]
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE), so nobody
    # else can take these ids before they are inserted.
    top_transaction, top_hold = (
        db.connection()
        .execute(
            text(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM ledger_transactions), "
                "(SELECT COALESCE(MAX(id), 0) FROM point_holds)"
            )
        )
        .one()
    )
    return (
        list(range(top_transaction + 1, top_transaction + 1 + 2 * count)),
        list(range(top_hold + 1, top_hold + 1 + count)),
    )
