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

from sqlalchemy import text
from sqlalchemy.orm import Session

from fideliza.core.errors import FidelizaError, IdempotencyError, InvalidState, NotFound
from fideliza.db import bulk_insert
from fideliza.ledger import service as ledger
from fideliza.ledger.domain import AccountKind, AllocationKind, LotState, TxKind
from fideliza.ledger.models import (
    ALLOCATION_BULK_COLUMNS,
    TX_BULK_COLUMNS,
    Allocation,
    Entry,
    LedgerTransaction,
    Lot,
)
from fideliza.members.models import Member
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases import batch_io
from fideliza.purchases.domain import PurchaseInput
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules
from fideliza.rules.domain import Activity, MemberContext, Posting, RuleUsage, evaluate
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
    available_id: int  # the accounts the purchases earn into
    pending_id: int
    available: int  # the available account's balance as the batch moves it
    first_purchase_at: datetime | None
    tier_code: str | None
    buckets: dict[date, Decimal]
    first_purchase_before: datetime | None = None
    # The rules' view of the member, rebuilt only when its tier or first-purchase flag changes.
    context: MemberContext | None = None
    context_key: tuple[str | None, bool] | None = None


def allocate_ids(db: Session, table: str, count: int) -> list[int]:
    """Reserves `count` primary keys of `table` for rows about to be inserted in bulk."""
    return allocate_ids_of(db, (table,), count)[0]


def allocate_ids_of(db: Session, tables: Sequence[str], count: int) -> list[list[int]]:
    """Reserves `count` primary keys in each of `tables`, in one statement on PostgreSQL (ids
    left unused are gaps, as a rolled-back transaction leaves)."""
    if count == 0:
        return [[] for _ in tables]
    if db.get_bind().dialect.name == "postgresql":
        columns = ", ".join(f"nextval('{_sequence_of(db, table)}')" for table in tables)
        rows = db.execute(text(f"SELECT {columns} FROM generate_series(1, :n)"), {"n": count}).all()
        return [list(ids) for ids in zip(*rows, strict=True)]
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE), so nobody
    # else can take these ids before we insert them.
    allocated = []
    for table in tables:
        top = db.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()
        allocated.append(list(range(top + 1, top + 1 + count)))
    return allocated


_SEQUENCES: dict[str, str] = {}  # table → the sequence of its id (the same in every database)


def _sequence_of(db: Session, table: str) -> str:
    if table not in _SEQUENCES:
        _SEQUENCES[table] = db.execute(
            text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table}
        ).scalar_one()
    return _SEQUENCES[table]


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

    # The batch reads with Core statements (batch_io): flush what the session holds first,
    # as its own queries would.
    if db.autoflush:
        db.flush()
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
    # 3. Rule usage counters (caps, budgets) for the members and days in the batch. Local
    # days are computed once per purchase; everything that depends on the day alone (usage
    # keys, tier window, month, expiry at a month's end) once per distinct day.
    local_days = [purchases[position].occurred_at.astimezone(timezone).date() for position in todo]
    day_keys: dict[date, rules.UsageKeys] = {}
    for local_day in local_days:
        if local_day not in day_keys:
            day_keys[local_day] = rules.UsageKeys(
                day=local_day.isoformat(), month=local_day.isoformat()[:7]
            )
    rules.lock_budgets(db, rules=compiled, keys=set(day_keys.values()))
    budgets = rules.budget_periods(compiled)
    capped_ids = sorted(capped)
    counters = batch_io.usage_counters(
        db,
        rule_ids=capped_ids,
        wanted={
            (member_ids[purchases[position].member_ref], day_keys[local_day])
            for position, local_day in zip(todo, local_days, strict=True)
        },
    )
    # 4. Evaluate and plan every write, in order (a member's earlier purchase in the batch counts).
    # Every purchase may earn: a transaction and a lot id each, reserved with the purchase ids.
    purchase_ids, tx_ids, lot_ids = allocate_ids_of(
        db, ("purchases", "ledger_transactions", "point_lots"), len(todo)
    )
    planned: list[_Planned] = []
    usage_rows: list[tuple[int, int, str, int]] = []
    months: dict[tuple[int, date], list[Any]] = {}  # (member, month) → [spend, points, count]
    earnings: list[_Planned] = []
    window = timedelta(days=settings.return_window_days)
    windows: dict[date, tuple[date, date]] = {}  # tier window of each local day
    next_thresholds = _next_thresholds(ladder)
    basis = ladder.policy.basis if ladder is not None else None
    program_id = program.id
    for slot, (position, local_day) in enumerate(zip(todo, local_days, strict=True)):
        purchase = purchases[position]
        member_id = member_ids[purchase.member_ref]
        state = states[member_id]
        is_first = state.first_purchase_at is None
        occurred_at = purchase.occurred_at
        activity = Activity(
            kind="purchase",
            occurred_at=occurred_at,
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
        periods = day_keys[local_day]
        usage = (
            _usage_of(counters, capped_ids, member_id, periods, budgets) if capped_ids else _NONE
        )
        postings = evaluate(activity, state.context, context, compiled, usage)
        if capped:
            usage_rows += rules.count_usage(
                counters,
                capped=capped,
                member_id=member_id,
                periods=periods,
                postings=postings,
                budgets=budgets,
            )
        points = 0
        for posting in postings:
            points += posting.points
        pending = occurred_at + window > now
        if is_first:
            state.first_purchase_at = occurred_at
        month = local_day.replace(day=1)
        bucket = months.get((member_id, month))
        if bucket is None:
            months[(member_id, month)] = [purchase.amount, points, 1]
        else:
            bucket[0] += purchase.amount
            bucket[1] += points
            bucket[2] += 1
        tier_change = None
        if ladder is not None:
            if basis is TierBasis.POINTS:
                gained = Decimal(points)
            elif basis is TierBasis.SPEND:
                gained = purchase.amount
            else:
                gained = _ONE
            state.buckets[month] = state.buckets.get(month, _ZERO) + gained
            if local_day not in windows:
                windows[local_day] = current_window(ladder.policy, local_day)
            first, last = windows[local_day]
            metric = _ZERO
            for bucket_month, value in state.buckets.items():
                if first <= bucket_month <= last:
                    metric += value
            # Only a metric that reaches a higher level can change the tier (see
            # `_next_thresholds`); an unknown current tier is left to upgrade_on_activity.
            threshold = next_thresholds.get(state.tier_code)
            if threshold is None or metric >= threshold:
                tier_change = upgrade_on_activity(
                    ladder.levels, state.tier_code, plain_decimal(metric)
                )
                if tier_change is not None:
                    state.tier_code = tier_change.to_code
        plan = _Planned(
            slot, position, member_id, points, pending, postings, tier_change, hashes[position]
        )
        planned.append(plan)
        if points:
            plan.local_day = local_day
            earnings.append(plan)
    # 5. Write: ledger first (purchases point at their transactions), then the rest.
    tx_ids, lot_ids = tx_ids[: len(earnings)], lot_ids[: len(earnings)]
    system = ledger.system_account_ids(db, program_id=program.id)
    tx_rows: list[tuple[Any, ...]] = []
    entry_rows: list[tuple[Any, ...]] = []
    lot_rows: list[tuple[Any, ...]] = []
    debt_rows: list[tuple[Any, ...]] = []
    balance_moves: dict[int, int] = defaultdict(int)
    issuance = system[AccountKind.ISSUANCE]
    earn_kind = TxKind.EARN.value
    pending_state, available_state = LotState.PENDING.value, LotState.AVAILABLE.value
    expiry = settings.expiry
    # At a month's end, expiry depends on the local day only.
    expiry_by_day = expiry.mode == "end_of_month"
    expiries: dict[date, datetime | None] = {}
    for plan, tx_id, lot_id in zip(earnings, tx_ids, lot_ids, strict=True):
        purchase = purchases[plan.position]
        occurred_at = purchase.occurred_at
        member_id = plan.member_id
        state = states[member_id]
        points = plan.points
        pending = plan.pending
        plan.transaction_id = tx_id
        target = state.pending_id if pending else state.available_id
        reason = f"purchase {purchase.external_id}"
        tx_rows.append(
            (
                tx_id,
                program_id,
                member_id,
                earn_kind,
                occurred_at,
                now,
                reason,
                "purchase",
                purchase.external_id,
            )
        )
        for posting in plan.postings:
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
            available = state.available
            if available < 0:  # pay back what a return took after the points were spent
                paid = min(points, -available)
                debt_rows.append((lot_id, tx_id, paid, AllocationKind.DEBT.value))
                remaining -= paid
            state.available = available + points
        if expiry_by_day and plan.local_day is not None:
            local_day = plan.local_day
            if local_day not in expiries:
                expiries[local_day] = expiry.expires_at(occurred_at, timezone)
            expires_at = expiries[local_day]
        else:
            expires_at = expiry.expires_at(occurred_at, timezone)
        lot_rows.append(
            (
                lot_id,
                program_id,
                member_id,
                tx_id,
                points,
                remaining,
                pending_state if pending else available_state,
                occurred_at,
                occurred_at + window,
                expires_at,
            )
        )
    converted: dict[str, dict[Any, Any]] = {}  # occurred_at goes into three tables
    bulk_insert(db, LedgerTransaction.__table__, TX_BULK_COLUMNS, tx_rows, converted=converted)
    bulk_insert(db, Entry.__table__, _ENTRY_COLUMNS, entry_rows)
    bulk_insert(db, Lot.__table__, _LOT_COLUMNS, lot_rows, converted=converted)
    bulk_insert(db, Allocation.__table__, ALLOCATION_BULK_COLUMNS, debt_rows)
    bulk_insert(
        db,
        Purchase.__table__,
        _PURCHASE_COLUMNS,
        [
            (
                purchase_id,
                program_id,
                plan.member_id,
                purchase.external_id,
                plan.digest,
                purchase.occurred_at,
                purchase.amount,
                purchase.currency,
                purchase.channel,
                purchase.store,
                [_item_json(i) for i in purchase.items],
                plan.points,
                0,
                _ZERO,
                plan.transaction_id,
            )
            for plan, purchase_id in zip(planned, purchase_ids, strict=True)
            for purchase in (purchases[plan.position],)
        ],
        converted=converted,
    )
    batch_io.add_to_balances(db, balance_moves)
    rules.save_usage(db, usage_rows)
    tiers.add_month_activity(
        db,
        [
            {
                "member_id": member_id,
                "month": month,
                "program_id": program_id,
                "spend": spend,
                "points_earned": earned,
                "purchases": count,
            }
            for (member_id, month), (spend, earned, count) in months.items()
        ],
    )
    _save_member_changes(
        db, program=program, states=states, planned=planned, purchases=purchases, now=now
    )
    first_outcome: dict[str, Outcome] = {}
    for plan, purchase_id in zip(planned, purchase_ids, strict=True):
        purchase = purchases[plan.position]
        result.outcomes.append(
            Outcome(
                external_id=purchase.external_id,
                purchase_id=purchase_id,
                member_id=plan.member_id,
                points=plan.points,
                pending=plan.pending and plan.points > 0,
                transaction_id=plan.transaction_id,
                postings=tuple(plan.postings),
                tier_change=plan.tier_change,
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
    return {
        external_id: (
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
        for external_id, purchase_id, member_id, points, tx_id, digest in (
            batch_io.recorded_purchases(db, program_id=program_id, external_ids=external_ids)
        )
    }


def members_by_ref(db: Session, *, program_id: int, refs: set[str]) -> dict[str, int]:
    """Member ids by the external ids a till or a file uses."""
    return batch_io.member_ids_by_ref(db, program_id=program_id, refs=refs)


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
    for (
        member_id,
        status,
        attributes,
        birthday,
        first_purchase_at,
        tier_code,
    ) in batch_io.member_rows(db, member_ids=member_ids):
        accounts = locked[member_id]
        available_id, available = accounts[AccountKind.AVAILABLE]
        states[member_id] = _MemberState(
            status=status,
            attributes=attributes or {},
            birthday=birthday,
            available_id=available_id,
            pending_id=accounts[AccountKind.PENDING][0],
            available=available,
            first_purchase_at=first_purchase_at,
            tier_code=tier_code,
            buckets={},
            first_purchase_before=first_purchase_at,
        )
    if ladder is not None and since is not None:
        for member_id, month, value in batch_io.month_values(
            db, member_ids=member_ids, basis=ladder.policy.basis, since=since
        ):
            states[member_id].buckets[month] = value
    return states


@dataclass(slots=True)
class _Planned:
    """What one purchase of the batch earned, and the rows it will write."""

    slot: int
    position: int
    member_id: int
    points: int
    pending: bool
    postings: list[Posting]
    tier_change: TierChange | None
    digest: str
    transaction_id: int | None = None
    local_day: date | None = None


_ONE = Decimal(1)
_NONE: dict[int, RuleUsage] = {}


def _usage_of(
    counters: dict[tuple[int, int, str], int],
    rule_ids: Sequence[int],
    member_id: int,
    periods: rules.UsageKeys,
    budgets: dict[int, str],
) -> dict[int, RuleUsage]:
    """What each capped rule already gave (as rules.usage_view), leaving out unused rules: the
    evaluator reads a missing rule as no usage at all."""
    found: dict[int, RuleUsage] = {}
    get = counters.get
    for rule_id in rule_ids:
        day = get((rule_id, member_id, periods.day), 0)
        month = get((rule_id, member_id, periods.month), 0)
        total = get((rule_id, member_id, rules.TOTAL), 0)
        period = budgets.get(rule_id)
        budget_key = (
            periods.day if period == "day" else periods.month if period == "month" else rules.TOTAL
        )
        spent = get((rule_id, rules.EVERYONE, budget_key), 0)
        if day or month or total or spent:
            found[rule_id] = RuleUsage(
                member_day=day, member_month=month, member_total=total, budget_spent=spent
            )
    return found


_NO_HIGHER_LEVEL = Decimal("Infinity")


def _next_thresholds(ladder: tiers.Ladder | None) -> dict[str | None, Decimal]:
    """For each tier (None: no tier), the lowest threshold of a higher-ranked level.

    upgrade_on_activity upgrades exactly when the metric reaches the highest level it
    qualifies for and that level ranks above the current one, that is when the metric reaches
    the lowest threshold above the current rank: below it, it need not be asked.
    """
    if ladder is None:
        return {}
    levels = ladder.levels
    found: dict[str | None, Decimal] = {
        None: min((level.threshold for level in levels), default=_NO_HIGHER_LEVEL)
    }
    for current in levels:
        found[current.code] = min(
            (level.threshold for level in levels if level.rank > current.rank),
            default=_NO_HIGHER_LEVEL,
        )
    return found


def _save_member_changes(
    db: Session,
    *,
    program: Program,
    states: dict[int, _MemberState],
    planned: list[_Planned],
    purchases: Sequence[PurchaseInput],
    now: datetime,
) -> None:
    """Writes first-purchase dates and tier changes (with history and events) in bulk."""
    from fideliza.programs.models import OutboxEvent
    from fideliza.tiers.models import TierHistory

    firsts = {
        member_id: state.first_purchase_at
        for member_id, state in states.items()
        if state.first_purchase_before is None and state.first_purchase_at is not None
    }
    batch_io.set_first_purchases(db, firsts)
    history: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    latest: dict[int, dict[str, Any]] = {}
    for plan in planned:
        change = plan.tier_change
        if change is None:
            continue
        purchase = purchases[plan.position]
        member_id = plan.member_id
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
        batch_io.set_tiers(db, list(latest.values()))
        batch_io.insert_rows(db, TierHistory.__table__, history)
        batch_io.insert_rows(db, OutboxEvent.__table__, events)
    # Members loaded as objects elsewhere in this session must not keep stale tiers or dates.
    changed = set(firsts) | set(latest)
    for instance in list(db.identity_map.values()):
        if isinstance(instance, Member) and instance.id in changed:
            db.expire(instance)
