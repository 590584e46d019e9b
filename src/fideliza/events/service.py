"""Custom events (store visits, reviews, survey answers, …): recorded once, earn by rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.core.clock import parse_timestamp
from fideliza.core.errors import IdempotencyError, ValidationError
from fideliza.core.hashing import content_hash
from fideliza.events.models import MemberEvent
from fideliza.ledger import service as ledger
from fideliza.ledger.service import EarnLine
from fideliza.members import service as members
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.rules import service as rules
from fideliza.rules.domain import Activity, Posting, evaluate
from fideliza.tiers import service as tiers

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{1,49}$")


@dataclass(frozen=True, slots=True)
class EventOutcome:
    event_id: int
    points: int
    postings: tuple[Posting, ...]
    transaction_id: int | None
    replayed: bool = False


def record_event(
    db: Session,
    *,
    program: Program,
    external_id: str,
    member_ref: str,
    event_type: str,
    occurred_at: datetime | str,
    now: datetime,
    attributes: Mapping[str, Any] | None = None,
) -> EventOutcome:
    """Records a member event once (by external id) and earns what the rules give for it."""
    if not (external_id or "").strip():
        raise ValidationError("is required", field="external_id")
    if not _EVENT_TYPE.match(event_type or "") or event_type == "purchase":
        raise ValidationError(
            "must be a lowercase name such as store_visit (and not 'purchase')", field="event_type"
        )
    when = parse_timestamp(occurred_at, field="occurred_at")
    attrs = dict(attributes or {})
    digest = content_hash(
        {"member": member_ref, "type": event_type, "at": when.isoformat(), "attributes": attrs}
    )
    existing = db.scalar(
        select(MemberEvent).where(
            MemberEvent.program_id == program.id, MemberEvent.external_id == external_id
        )
    )
    if existing is not None:
        if existing.content_hash != digest:
            raise IdempotencyError(
                f"event {external_id!r} was already recorded with other content",
                field="external_id",
            )
        return EventOutcome(
            existing.id, existing.points_earned, (), existing.earn_transaction_id, replayed=True
        )
    member = members.find(db, program_id=program.id, external_id=member_ref)
    members.require_active(member)
    ledger.lock_member_accounts(db, member_ids=[member.id])
    context = rules.program_context(program)
    compiled = rules.compiled_rules(db, program_id=program.id)
    capped = rules.capped_rule_ids(compiled)
    keys = rules.UsageKeys.at(when, context.timezone)
    rules.lock_budgets(db, rules=compiled, keys=[keys])
    budgets = rules.budget_periods(compiled)
    counters = rules.load_usage(db, rule_ids=capped, wanted=[(member.id, keys)])
    ladder = tiers.ladder(db, program=program)
    postings = evaluate(
        Activity(kind=event_type, occurred_at=when, attributes=attrs),
        rules.member_context(
            ladder,
            tier_code=member.tier_code,
            attributes=member.attributes,
            birthday=member.birthday,
            is_first_purchase=False,
        ),
        context,
        compiled,
        rules.usage_view(
            counters, rule_ids=capped, member_id=member.id, periods=keys, budgets=budgets
        ),
    )
    rules.save_usage(
        db,
        rules.count_usage(
            counters,
            capped=set(capped),
            member_id=member.id,
            periods=keys,
            postings=postings,
            budgets=budgets,
        ),
    )
    earned = (
        ledger.earn(
            db,
            program_id=program.id,
            settings=programs.settings_of(program),
            timezone_name=program.timezone,
            member_id=member.id,
            lines=[
                EarnLine(p.points, p.reason, p.rule_id, p.rule_version, p.tier_code)
                for p in postings
            ],
            occurred_at=when,
            now=now,
            source_type="event",
            source_ref=external_id,
            reason=f"{event_type} {external_id}",
        )
        if postings
        else None
    )
    event = MemberEvent(
        program_id=program.id,
        member_id=member.id,
        external_id=external_id,
        content_hash=digest,
        event_type=event_type,
        occurred_at=when,
        attributes=attrs,
        points_earned=earned.points if earned else 0,
        earn_transaction_id=earned.transaction_id if earned else None,
    )
    db.add(event)
    if earned:
        month = when.astimezone(context.timezone).date().replace(day=1)
        tiers.add_month_activity(
            db,
            [
                {
                    "member_id": member.id,
                    "month": month,
                    "program_id": program.id,
                    "spend": Decimal(0),
                    "points_earned": earned.points,
                    "purchases": 0,
                }
            ],
        )
        tiers.upgrade_if_qualified(db, program=program, member=member, now=when)
    db.flush()
    return EventOutcome(event.id, event.points_earned, tuple(postings), event.earn_transaction_id)
