"""Purchase use cases: record a purchase, record a return, read them, dry-run a basket."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.core.clock import parse_timestamp
from fideliza.core.errors import FidelizaError, IdempotencyError, NotFound, ValidationError
from fideliza.core.hashing import content_hash
from fideliza.core.money import to_money
from fideliza.coupons import service as coupons
from fideliza.ledger import service as ledger
from fideliza.ledger.domain import return_reversal
from fideliza.members.models import Member
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases.domain import PurchaseInput, parse_purchase
from fideliza.purchases.ingest import Outcome, ingest_purchases
from fideliza.purchases.models import Purchase, Return
from fideliza.rules import service as rules
from fideliza.rules.domain import Activity, MemberContext, Posting, RuleCheck, evaluate, explain
from fideliza.tiers import service as tiers


def record_purchase(
    db: Session, *, program: Program, data: Mapping[str, Any] | PurchaseInput, now: datetime
) -> Outcome:
    """Records one purchase and earns its points; the same external id replays the first result."""
    purchase = (
        data
        if isinstance(data, PurchaseInput)
        else parse_purchase(data, program_currency=program.currency)
    )
    outcome = ingest_purchases(db, program=program, purchases=[purchase], now=now).outcomes[0]
    _announce(db, program_id=program.id, written=[(purchase, outcome)], now=now)
    return outcome


def record_purchases(
    db: Session, *, program: Program, purchases: Sequence[PurchaseInput], now: datetime
) -> list[Outcome | FidelizaError]:
    """Records purchases sent together (concurrent tills) in the caller's transaction: each
    gets, in order, its own outcome or its own error, as `record_purchase` would give it; a
    repeated external id in the batch is a replay of the first, as if sent after it."""
    result = ingest_purchases(
        db, program=program, purchases=purchases, now=now, collect_errors=True
    )
    answers: list[Outcome | FidelizaError | None] = [None] * len(purchases)
    for position, refused in result.errors:
        answers[position] = refused
    # Outcomes come by external id, a first recording preferred over a replay of it.
    by_id: dict[str, Outcome] = {}
    for outcome in result.outcomes:
        known = by_id.get(outcome.external_id)
        if known is None or (known.replayed and not outcome.replayed):
            by_id[outcome.external_id] = outcome
    given: set[str] = set()
    written: list[tuple[PurchaseInput, Outcome]] = []  # replays included: _announce skips them
    for position, purchase in enumerate(purchases):
        if answers[position] is not None:
            continue
        outcome = by_id[purchase.external_id]
        if purchase.external_id in given:
            outcome = replace(outcome, replayed=True, tier_change=None)
        given.add(purchase.external_id)
        answers[position] = outcome
        written.append((purchase, outcome))
    _announce(db, program_id=program.id, written=written, now=now)
    return [answer for answer in answers if answer is not None]


def _announce(
    db: Session,
    *,
    program_id: int,
    written: Sequence[tuple[PurchaseInput, Outcome]],
    now: datetime,
) -> None:
    """What follows a recorded purchase: its `points.earned` event and its next-order coupons
    (a replay has had both already)."""
    fresh = [(purchase, outcome) for purchase, outcome in written if not outcome.replayed]
    programs.publish_many(
        db,
        program_id=program_id,
        events=[
            (
                "points.earned",
                {
                    "member_id": outcome.member_id,
                    "points": outcome.points,
                    "purchase": purchase.external_id,
                    "pending": outcome.pending,
                },
            )
            for purchase, outcome in fresh
            if outcome.points
        ],
        now=now,
    )
    coupons.issue_for_purchases(
        db,
        program_id=program_id,
        purchases=[
            (outcome.purchase_id, outcome.member_id, purchase.amount) for purchase, outcome in fresh
        ],
        now=now,
    )


def get_purchase(db: Session, *, program_id: int, external_id: str) -> Purchase:
    """Gets a purchase by the till's transaction id."""
    found = db.scalar(
        select(Purchase).where(
            Purchase.program_id == program_id, Purchase.external_id == external_id
        )
    )
    if found is None:
        raise NotFound(f"no purchase {external_id!r}", field="purchase_id")
    return found


@dataclass(frozen=True, slots=True)
class ReturnOutcome:
    return_id: int
    external_id: str
    amount: Decimal
    points_reversed: int
    transaction_id: int | None
    replayed: bool = False


def record_return(
    db: Session,
    *,
    program: Program,
    purchase_external_id: str,
    external_id: str,
    occurred_at: datetime | str,
    now: datetime,
    items: Sequence[Mapping[str, Any]] | None = None,
    amount: Any = None,
) -> ReturnOutcome:
    """Records a return of some items (or an amount) of a purchase and reverses their points.

    Points are reversed in proportion to the value returned, over the cumulative value of all
    returns of the purchase, so partial returns add up to exactly the points of a full return.
    """
    when = parse_timestamp(occurred_at, field="occurred_at")
    if not (external_id or "").strip():
        raise ValidationError("is required", field="external_id")
    purchase = get_purchase(db, program_id=program.id, external_id=purchase_external_id)
    ledger.lock_member_accounts(db, member_ids=[purchase.member_id])
    db.refresh(purchase)  # read again under the member's lock: another return may have landed
    lines = _return_lines(purchase, items or (), amount, currency=program.currency)
    value = (
        sum((line["value"] for line in lines), Decimal(0))
        if items
        else to_money(amount, program.currency)
    )
    payload = {
        "purchase": purchase_external_id,
        "occurred_at": when.isoformat(),
        "items": [[line["sku"], line["quantity"]] for line in lines],
        "amount": str(value),
    }
    digest = content_hash(payload)
    existing = db.scalar(
        select(Return).where(Return.program_id == program.id, Return.external_id == external_id)
    )
    if existing is not None:
        if existing.content_hash != digest:
            raise IdempotencyError(
                f"return {external_id!r} was already recorded with other content",
                field="external_id",
            )
        return ReturnOutcome(
            existing.id,
            external_id,
            existing.amount,
            existing.points_reversed,
            existing.transaction_id,
            replayed=True,
        )
    _check_quantities(db, purchase, lines)
    if value <= 0:
        raise ValidationError("must be positive", field="amount" if not items else "items")
    if purchase.amount_returned + value > purchase.amount:
        raise ValidationError(
            f"returns {value} but only {purchase.amount - purchase.amount_returned} "
            "of the purchase is left",
            field="amount" if not items else "items",
        )
    points = return_reversal(
        points_earned=purchase.points_earned,
        points_reversed=purchase.points_reversed,
        purchase_amount=purchase.amount,
        returned_before=purchase.amount_returned,
        returned_now=value,
    )
    transaction_id = None
    if points and purchase.earn_transaction_id is not None:
        transaction_id = ledger.reverse_earning(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            member_id=purchase.member_id,
            earn_transaction_id=purchase.earn_transaction_id,
            points=points,
            occurred_at=when,
            now=now,
            reason=f"return {external_id} of purchase {purchase.external_id}",
            source_type="return",
            source_ref=external_id,
        )
    row = Return(
        program_id=program.id,
        purchase_id=purchase.id,
        external_id=external_id,
        content_hash=digest,
        occurred_at=when,
        amount=value,
        items=[{"sku": line["sku"], "quantity": line["quantity"]} for line in lines],
        points_reversed=points,
        transaction_id=transaction_id,
    )
    db.add(row)
    purchase.amount_returned += value
    purchase.points_reversed += points
    month = purchase.occurred_at.astimezone(ZoneInfo(program.timezone)).date().replace(day=1)
    tiers.add_month_activity(
        db,
        [
            {
                "member_id": purchase.member_id,
                "month": month,
                "program_id": program.id,
                "spend": -value,
                "points_earned": -points,
                "purchases": 0,
            }
        ],
    )
    db.flush()
    # Coupons used on the purchase come back as their campaigns' return policies say.
    coupons.restore_for_return(db, program_id=program.id, purchase_id=purchase.id, now=now)
    return ReturnOutcome(row.id, external_id, value, points, transaction_id)


def _return_lines(
    purchase: Purchase, items: Sequence[Mapping[str, Any]], amount: Any, *, currency: str
) -> list[dict[str, Any]]:
    """Validates returned items against what was bought and not yet returned."""
    if items and amount is not None:
        raise ValidationError("give either items or an amount, not both", field="amount")
    if not items:
        if amount is None:
            raise ValidationError("give the returned items or an amount", field="items")
        return []
    unit_prices = {item["sku"]: Decimal(item["unit_price"]) for item in purchase.items}
    lines: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        sku = item.get("sku")
        if sku not in unit_prices:
            raise ValidationError(
                f"{sku!r} is not in purchase {purchase.external_id!r}", field=f"items[{index}].sku"
            )
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise ValidationError(
                f"must be a positive integer, got {quantity!r}", field=f"items[{index}].quantity"
            )
        lines.append({"sku": sku, "quantity": quantity, "value": unit_prices[sku] * quantity})
    return lines


def _check_quantities(db: Session, purchase: Purchase, lines: list[dict[str, Any]]) -> None:
    """Refuses returning more units of a SKU than were bought, counting earlier returns."""
    bought: Counter[str] = Counter()
    for item in purchase.items:
        bought[item["sku"]] += int(item["quantity"])
    returned: Counter[str] = Counter()
    for items in db.scalars(select(Return.items).where(Return.purchase_id == purchase.id)):
        for item in items:
            returned[item["sku"]] += int(item["quantity"])
    for index, line in enumerate(lines):
        returned[line["sku"]] += line["quantity"]
        if returned[line["sku"]] > bought[line["sku"]]:
            raise ValidationError(
                f"returns more {line['sku']!r} than the {bought[line['sku']]} bought "
                "(counting earlier returns)",
                field=f"items[{index}].quantity",
            )


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a basket would earn, and why: the postings and each rule's verdict."""

    points: int
    postings: list[Posting]
    checks: list[RuleCheck]


def dry_run(
    db: Session, *, program: Program, data: Mapping[str, Any], member: Member | None = None
) -> DryRun:
    """Evaluates a purchase against the rules without writing anything."""
    raw = dict(data)
    raw.setdefault("external_id", "dry-run")
    raw.setdefault("member_id", member.external_id if member else "dry-run")
    purchase = parse_purchase(raw, program_currency=program.currency)
    context = rules.program_context(program)
    compiled = rules.compiled_rules(db, program_id=program.id)
    ladder = tiers.ladder(db, program=program)
    member_context = MemberContext()
    usage: dict[int, Any] = {}
    if member is not None:
        member_context = rules.member_context(
            ladder,
            tier_code=member.tier_code,
            attributes=member.attributes,
            birthday=member.birthday,
            is_first_purchase=member.first_purchase_at is None,
        )
        keys = rules.UsageKeys.at(purchase.occurred_at, context.timezone)
        capped = rules.capped_rule_ids(compiled)
        counters = rules.load_usage(db, rule_ids=capped, wanted=[(member.id, keys)])
        usage = rules.usage_view(
            counters,
            rule_ids=capped,
            member_id=member.id,
            periods=keys,
            budgets=rules.budget_periods(compiled),
        )
    activity = Activity(
        kind="purchase",
        occurred_at=purchase.occurred_at,
        amount=purchase.amount,
        channel=purchase.channel,
        store=purchase.store,
        items=purchase.items,
        attributes=purchase.attributes,
    )
    postings = evaluate(activity, member_context, context, compiled, usage)
    return DryRun(
        points=sum(p.points for p in postings),
        postings=postings,
        checks=explain(activity, member_context, context, compiled),
    )
