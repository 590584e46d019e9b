"""The earning engine for purchases and custom events, one batch at a time.

A single purchase from a till is a batch of one; a file import sends thousands. Both take the
same path, so they earn exactly the same points: validate and de-duplicate, lock the members,
evaluate the rules (pure), then write purchases, ledger transactions, entries, lots, counters
and tier changes with one multi-row statement per table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from fideliza.core.errors import FidelizaError, IdempotencyError, InvalidState, NotFound
from fideliza.db import bulk_insert
from fideliza.ledger import service as ledger
from fideliza.ledger.domain import AccountKind, AllocationKind, LotState, TxKind
from fideliza.ledger.models import Account, Allocation, Entry, LedgerTransaction, Lot
from fideliza.members.models import Member, MemberMonth
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases.domain import PurchaseInput
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from fideliza.rules.domain import Activity, MemberContext, Posting, evaluate
from fideliza.tiers import service as tiers
from fideliza.tiers.domain import (
    TierBasis,
    TierChange,
    current_window,
    upgrade_on_activity,
)
from fideliza.tiers.service import plain_decimal


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one purchase earned (or, replayed, what it earned the first time)."""

    external_id: str
    purchase_id: int
    member_id: int
    points: int
    pending: bool
    transaction_id: int | None
    postings: tuple[Posting, ...] = ()
    replayed: bool = False
    tier_change: TierChange | None = None


@dataclass(slots=True)
class BatchResult:
    """The outcomes of the good purchases and the errors of the bad ones, by position."""

    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[tuple[int, FidelizaError]] = field(default_factory=list)


@dataclass(slots=True)
class _MemberState:
    """A member as the batch sees it, updated in memory as its purchases are processed."""

    status: str
    attributes: dict[str, Any]
    birthday: date | None
    accounts: dict[AccountKind, tuple[int, int]]
    first_purchase_at: datetime | None
    tier_code: str | None
    buckets: dict[date, Decimal]
    first_purchase_before: datetime | None = None
    # The rules' view of the member, rebuilt only when its tier or first-purchase flag changes.
    context: MemberContext | None = None
    context_key: tuple[str | None, bool] | None = None


def allocate_ids(db: Session, table: str, count: int) -> list[int]:
    """Reserves `count` primary keys of `table` for rows about to be inserted in bulk."""
    if count == 0:
        return []
    if db.get_bind().dialect.name == "postgresql":
        return list(
            db.execute(
                text(
                    f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                    "FROM generate_series(1, :n)"
                ),
                {"n": count},
            ).scalars()
        )
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE), so nobody
    # else can take these ids before we insert them.
    top = db.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()
    return list(range(top + 1, top + 1 + count))


def ingest_purchases(
    db: Session,
    *,
    program: Program,
    purchases: Sequence[PurchaseInput],
    now: datetime,
    collect_errors: bool = False,
) -> BatchResult:
    """Records purchases and earns their points; idempotent by external id.

    With `collect_errors`, a bad purchase (unknown member, reused id with other content, a
    suspended member) is reported with its position and the others are recorded; without it,
    the first error is raised and nothing is written.
    """
    result = BatchResult()
    settings = programs.settings_of(program)
    timezone = ZoneInfo(program.timezone)
    context = rules.program_context(program)
    compiled = rules.compiled_rules(db, program_id=program.id)
    capped = set(rules.capped_rule_ids(compiled))
    ladder = tiers.ladder(db, program=program)

    def fail(position: int, error: FidelizaError) -> None:
        if not collect_errors:
            raise error
        result.errors.append((position, error))

    # 1. Members: known, and locked for the rest of the transaction before anything is read,
    # so two tills sending the same purchase at once queue here and the second one replays.
    member_ids = members_by_ref(db, program_id=program.id, refs={p.member_ref for p in purchases})
    states = _load_members(
        db,
        program=program,
        member_ids=sorted(set(member_ids.values())),
        ladder=ladder,
        since=_earliest_window(ladder, purchases, timezone),
    )
    # 2. Idempotency: an external id seen before replays its first outcome or is refused.
    hashes = [p.digest() for p in purchases]
    existing = _existing_purchases(
        db, program_id=program.id, external_ids=[p.external_id for p in purchases]
    )
    fresh: list[int] = []
    seen_in_batch: dict[str, str] = {}
    repeats: list[tuple[int, str]] = []  # the same purchase twice in one batch
    for position, (purchase, digest) in enumerate(zip(purchases, hashes, strict=True)):
        before = existing.get(purchase.external_id) or (
            (None, seen_in_batch[purchase.external_id])
            if purchase.external_id in seen_in_batch
            else None
        )
        if before is None:
            seen_in_batch[purchase.external_id] = digest
            fresh.append(position)
            continue
        if before[1] != digest:
            fail(
                position,
                IdempotencyError(
                    f"purchase {purchase.external_id!r} was already recorded with other content",
                    field="external_id",
                ),
            )
        elif before[0] is not None:
            result.outcomes.append(before[0])
        else:
            repeats.append((position, purchase.external_id))
    todo: list[int] = []
    for position in fresh:
        purchase = purchases[position]
        member_id = member_ids.get(purchase.member_ref)
        if member_id is None:
            fail(
                position, NotFound(f"no member with id {purchase.member_ref!r}", field="member_id")
            )
        elif states[member_id].status != "active":
            fail(
                position,
                InvalidState(
                    f"member {purchase.member_ref!r} is {states[member_id].status}",
                    field="member_id",
                ),
            )
        else:
            todo.append(position)
    if not todo:
        return result
    # 3. Rule usage counters (caps, budgets) for the members and days in the batch.
    keys = {
        position: rules.UsageKeys.at(purchases[position].occurred_at, timezone) for position in todo
    }
    rules.lock_budgets(db, rules=compiled, keys=set(keys.values()))
    budgets = rules.budget_periods(compiled)
    counters = rules.load_usage(
        db,
        rule_ids=sorted(capped),
        wanted={(member_ids[purchases[p].member_ref], keys[p]) for p in todo},
    )
    # 4. Evaluate and plan every write, in order (a member's earlier purchase in the batch counts).
    purchase_ids = allocate_ids(db, "purchases", len(todo))
    planned: list[dict[str, Any]] = []
    usage_rows: list[tuple[int, int, str, int]] = []
    month_rows: list[dict[str, Any]] = []
    earnings: list[
        tuple[int, list[Posting], PurchaseInput, bool]
    ] = []  # (slot, postings, purchase, pending)
    capped_ids = sorted(capped)
    window = timedelta(days=settings.return_window_days)
    windows: dict[date, tuple[date, date]] = {}  # tier window of each local day
    for slot, position in enumerate(todo):
        purchase = purchases[position]
        member_id = member_ids[purchase.member_ref]
        state = states[member_id]
        is_first = state.first_purchase_at is None
        local_day = purchase.occurred_at.astimezone(timezone).date()
        activity = Activity(
            kind="purchase",
            occurred_at=purchase.occurred_at,
            amount=purchase.amount,
            channel=purchase.channel,
            store=purchase.store,
            items=purchase.items,
            attributes=purchase.attributes,
        )
        if state.context is None or state.context_key != (state.tier_code, is_first):
            state.context_key = (state.tier_code, is_first)
            state.context = rules.member_context(
                ladder,
                tier_code=state.tier_code,
                attributes=state.attributes,
                birthday=state.birthday,
                is_first_purchase=is_first,
            )
        usage = (
            rules.usage_view(
                counters,
                rule_ids=capped_ids,
                member_id=member_id,
                periods=keys[position],
                budgets=budgets,
            )
            if capped
            else {}
        )
        postings = evaluate(activity, state.context, context, compiled, usage)
        if capped:
            usage_rows += rules.count_usage(
                counters,
                capped=capped,
                member_id=member_id,
                periods=keys[position],
                postings=postings,
                budgets=budgets,
            )
        points = sum(p.points for p in postings)
        pending = purchase.occurred_at + window > now
        if is_first:
            state.first_purchase_at = purchase.occurred_at
        month = local_day.replace(day=1)
        month_rows.append(
            {
                "member_id": member_id,
                "month": month,
                "program_id": program.id,
                "spend": purchase.amount,
                "points_earned": points,
                "purchases": 1,
            }
        )
        tier_change = None
        if ladder is not None:
            gained = {
                TierBasis.POINTS: Decimal(points),
                TierBasis.SPEND: purchase.amount,
                TierBasis.PURCHASES: Decimal(1),
            }
            state.buckets[month] = (
                state.buckets.get(month, Decimal(0)) + gained[ladder.policy.basis]
            )
            if local_day not in windows:
                windows[local_day] = current_window(ladder.policy, local_day)
            first, last = windows[local_day]
            metric = plain_decimal(
                sum((v for m, v in state.buckets.items() if first <= m <= last), Decimal(0))
            )
            tier_change = upgrade_on_activity(ladder.levels, state.tier_code, metric)
            if tier_change is not None:
                state.tier_code = tier_change.to_code
        planned.append(
            {
                "slot": slot,
                "position": position,
                "member_id": member_id,
                "points": points,
                "pending": pending,
                "postings": postings,
                "tier_change": tier_change,
                "hash": hashes[position],
            }
        )
        if points:
            earnings.append((slot, postings, purchase, pending))
    # 5. Write: ledger first (purchases point at their transactions), then the rest.
    tx_ids = allocate_ids(db, "ledger_transactions", len(earnings))
    lot_ids = allocate_ids(db, "point_lots", len(earnings))
    system = ledger.system_account_ids(db, program_id=program.id)
    tx_rows: list[tuple[Any, ...]] = []
    entry_rows: list[tuple[Any, ...]] = []
    lot_rows: list[tuple[Any, ...]] = []
    debt_rows: list[tuple[Any, ...]] = []
    balance_moves: dict[int, int] = defaultdict(int)
    tx_of_slot: dict[int, int] = {}
    issuance = system[AccountKind.ISSUANCE]
    window = timedelta(days=settings.return_window_days)
    earn_kind = TxKind.EARN.value
    for (slot, postings, purchase, pending), tx_id, lot_id in zip(
        earnings, tx_ids, lot_ids, strict=True
    ):
        member_id = planned[slot]["member_id"]
        state = states[member_id]
        points = planned[slot]["points"]
        tx_of_slot[slot] = tx_id
        target = state.accounts[AccountKind.PENDING if pending else AccountKind.AVAILABLE][0]
        reason = f"purchase {purchase.external_id}"
        tx_rows.append(
            (
                tx_id,
                program.id,
                member_id,
                earn_kind,
                purchase.occurred_at,
                now,
                reason,
                "purchase",
                purchase.external_id,
            )
        )
        for posting in postings:
            entry_rows.append(
                (
                    tx_id,
                    target,
                    posting.points,
                    posting.rule_id,
                    posting.rule_version,
                    posting.tier_code,
                    posting.reason[:500],
                )
            )
        entry_rows.append((tx_id, issuance, -points, None, None, None, reason))
        balance_moves[target] += points
        remaining = points
        if not pending:
            account_id, available = state.accounts[AccountKind.AVAILABLE]
            if available < 0:  # pay back what a return took after the points were spent
                paid = min(points, -available)
                debt_rows.append((lot_id, tx_id, paid, AllocationKind.DEBT.value))
                remaining -= paid
            state.accounts[AccountKind.AVAILABLE] = (account_id, available + points)
        lot_rows.append(
            (
                lot_id,
                program.id,
                member_id,
                tx_id,
                points,
                remaining,
                (LotState.PENDING if pending else LotState.AVAILABLE).value,
                purchase.occurred_at,
                purchase.occurred_at + window,
                settings.expiry.expires_at(purchase.occurred_at, timezone),
            )
        )
    bulk_insert(db, LedgerTransaction.__table__, _TX_COLUMNS, tx_rows)
    bulk_insert(db, Entry.__table__, _ENTRY_COLUMNS, entry_rows)
    bulk_insert(db, Lot.__table__, _LOT_COLUMNS, lot_rows)
    bulk_insert(db, Allocation.__table__, _ALLOCATION_COLUMNS, debt_rows)
    bulk_insert(
        db,
        Purchase.__table__,
        _PURCHASE_COLUMNS,
        [
            (
                purchase_id,
                program.id,
                plan["member_id"],
                purchase.external_id,
                plan["hash"],
                purchase.occurred_at,
                purchase.amount,
                purchase.currency,
                purchase.channel,
                purchase.store,
                [_item_json(i) for i in purchase.items],
                plan["points"],
                0,
                _ZERO,
                tx_of_slot.get(plan["slot"]),
            )
            for plan, purchase_id in zip(planned, purchase_ids, strict=True)
            for purchase in (purchases[plan["position"]],)
        ],
    )
    connection = db.connection()
    if balance_moves:
        connection.execute(
            update(Account)
            .where(Account.id == bindparam("account"))
            .values(balance=Account.balance + bindparam("move")),
            [{"account": a, "move": m} for a, m in sorted(balance_moves.items())],
        )
    rules.save_usage(db, usage_rows)
    tiers.add_month_activity(db, _merge_months(month_rows))
    _save_member_changes(
        db, program=program, states=states, planned=planned, purchases=purchases, now=now
    )
    first_outcome: dict[str, Outcome] = {}
    for plan, purchase_id in zip(planned, purchase_ids, strict=True):
        purchase = purchases[plan["position"]]
        result.outcomes.append(
            Outcome(
                external_id=purchase.external_id,
                purchase_id=purchase_id,
                member_id=plan["member_id"],
                points=plan["points"],
                pending=plan["pending"] and plan["points"] > 0,
                transaction_id=tx_of_slot.get(plan["slot"]),
                postings=tuple(plan["postings"]),
                tier_change=plan["tier_change"],
            )
        )
        first_outcome[purchase.external_id] = result.outcomes[-1]
    # A purchase sent twice in one batch (a file with a repeated row) replays the first.
    for _, external_id in repeats:
        if external_id in first_outcome:
            result.outcomes.append(
                replace(first_outcome[external_id], replayed=True, tier_change=None)
            )
    return result


_ZERO = Decimal(0)
_TX_COLUMNS = (
    "id",
    "program_id",
    "member_id",
    "kind",
    "occurred_at",
    "recorded_at",
    "reason",
    "source_type",
    "source_ref",
)
_ENTRY_COLUMNS = (
    "transaction_id",
    "account_id",
    "amount",
    "rule_id",
    "rule_version",
    "tier_code",
    "detail",
)
_LOT_COLUMNS = (
    "id",
    "program_id",
    "member_id",
    "earn_transaction_id",
    "amount",
    "remaining",
    "state",
    "earned_at",
    "available_at",
    "expires_at",
)
_ALLOCATION_COLUMNS = ("lot_id", "transaction_id", "amount", "kind")
_PURCHASE_COLUMNS = (
    "id",
    "program_id",
    "member_id",
    "external_id",
    "content_hash",
    "occurred_at",
    "amount",
    "currency",
    "channel",
    "store",
    "items",
    "points_earned",
    "points_reversed",
    "amount_returned",
    "earn_transaction_id",
)


def _item_json(item: Any) -> dict[str, Any]:
    return {
        "sku": item.sku,
        "category": item.category,
        "quantity": item.quantity,
        "unit_price": str(item.unit_price),
    }


def _merge_months(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[int, date], dict[str, Any]] = {}
    for row in rows:
        key = (row["member_id"], row["month"])
        if key in merged:
            into = merged[key]
            into["spend"] += row["spend"]
            into["points_earned"] += row["points_earned"]
            into["purchases"] += row["purchases"]
        else:
            merged[key] = dict(row)
    return list(merged.values())


def _earliest_window(
    ladder: tiers.Ladder | None, purchases: Sequence[PurchaseInput], timezone: ZoneInfo
) -> date | None:
    if ladder is None or not purchases:
        return None
    earliest = min(p.occurred_at for p in purchases).astimezone(timezone).date()
    return current_window(ladder.policy, earliest)[0]


def _existing_purchases(
    db: Session, *, program_id: int, external_ids: Sequence[str]
) -> dict[str, tuple[Outcome, str]]:
    """Purchases already recorded under these external ids, as their first outcome and hash."""
    found: dict[str, tuple[Outcome, str]] = {}
    wanted = sorted(set(external_ids))
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        rows = db.execute(
            select(
                Purchase.external_id,
                Purchase.id,
                Purchase.member_id,
                Purchase.points_earned,
                Purchase.earn_transaction_id,
                Purchase.content_hash,
            ).where(Purchase.program_id == program_id, Purchase.external_id.in_(chunk))
        ).all()
        for external_id, purchase_id, member_id, points, tx_id, digest in rows:
            found[external_id] = (
                Outcome(
                    external_id=external_id,
                    purchase_id=purchase_id,
                    member_id=member_id,
                    points=points,
                    pending=False,
                    transaction_id=tx_id,
                    replayed=True,
                ),
                digest,
            )
    return found


def members_by_ref(db: Session, *, program_id: int, refs: set[str]) -> dict[str, int]:
    """Member ids by the external ids a till or a file uses."""
    from fideliza.members import service as members

    return members.ids_by_external_id(db, program_id=program_id, external_ids=refs)


def _load_members(
    db: Session,
    *,
    program: Program,
    member_ids: list[int],
    ladder: tiers.Ladder | None,
    since: date | None,
) -> dict[int, _MemberState]:
    """Locks the members' accounts (id order) and loads what the rules and tiers need."""
    if not member_ids:
        return {}
    locked = ledger.lock_member_accounts(db, member_ids=member_ids)
    states: dict[int, _MemberState] = {}
    for start in range(0, len(member_ids), 5000):
        chunk = member_ids[start : start + 5000]
        rows = db.execute(
            select(
                Member.id,
                Member.status,
                Member.attributes,
                Member.birthday,
                Member.first_purchase_at,
                Member.tier_code,
            ).where(Member.id.in_(chunk))
        ).all()
        for member_id, status, attributes, birthday, first_purchase_at, tier_code in rows:
            states[member_id] = _MemberState(
                status=status,
                attributes=attributes or {},
                birthday=birthday,
                accounts=dict(locked[member_id]),
                first_purchase_at=first_purchase_at,
                tier_code=tier_code,
                buckets={},
                first_purchase_before=first_purchase_at,
            )
        if ladder is not None and since is not None:
            column = tiers.basis_column(ladder.policy.basis)
            bucket_rows = db.execute(
                select(MemberMonth.member_id, MemberMonth.month, column).where(
                    MemberMonth.member_id.in_(chunk), MemberMonth.month >= since
                )
            ).all()
            for member_id, month, value in bucket_rows:
                states[member_id].buckets[month] = Decimal(str(value))
    return states


def _save_member_changes(
    db: Session,
    *,
    program: Program,
    states: dict[int, _MemberState],
    planned: list[dict[str, Any]],
    purchases: Sequence[PurchaseInput],
    now: datetime,
) -> None:
    """Writes first-purchase dates and tier changes (with history and events) in bulk."""
    from fideliza.programs.models import OutboxEvent
    from fideliza.tiers.models import TierHistory

    connection = db.connection()
    firsts = [
        {"member": member_id, "first": state.first_purchase_at}
        for member_id, state in states.items()
        if state.first_purchase_before is None and state.first_purchase_at is not None
    ]
    if firsts:
        connection.execute(
            update(Member)
            .where(Member.id == bindparam("member"))
            .values(first_purchase_at=bindparam("first")),
            firsts,
        )
    history: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    latest: dict[int, dict[str, Any]] = {}
    for plan in planned:
        change = plan["tier_change"]
        if change is None:
            continue
        purchase = purchases[plan["position"]]
        member_id = plan["member_id"]
        latest[member_id] = {
            "member": member_id,
            "code": change.to_code,
            "since": purchase.occurred_at,
        }
        history.append(
            {
                "program_id": program.id,
                "member_id": member_id,
                "from_code": change.from_code,
                "to_code": change.to_code,
                "changed_at": purchase.occurred_at,
                "reason": change.reason[:500],
            }
        )
        events.append(
            {
                "program_id": program.id,
                "event_type": "tier.changed",
                "created_at": now,
                "dispatched_at": None,
                "payload": {"member_id": member_id, "from": change.from_code, "to": change.to_code},
            }
        )
    if latest:
        connection.execute(
            update(Member)
            .where(Member.id == bindparam("member"))
            .values(tier_code=bindparam("code"), tier_since=bindparam("since"), tier_grace_used=0),
            list(latest.values()),
        )
        connection.execute(insert(TierHistory), history)
        connection.execute(insert(OutboxEvent), events)
    # Members loaded as objects elsewhere in this session must not keep stale tiers or dates.
    changed = {row["member"] for row in firsts} | set(latest)
    for instance in list(db.identity_map.values()):
        if isinstance(instance, Member) and instance.id in changed:
            db.expire(instance)
