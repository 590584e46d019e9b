"""Rule use cases: create and version rules, load them compiled, track usage for caps, dry run."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from fideliza.core.errors import Conflict, NotFound
from fideliza.db import upsert_add
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.rules.domain import (
    CompiledRule,
    MemberContext,
    Posting,
    ProgramContext,
    RuleCheck,
    RuleUsage,
    compile_rule,
)
from fideliza.rules.models import Rule, RuleVersion
from fideliza.rules.models import RuleUsage as RuleUsageRow
from fideliza.rules.schemas import RuleDefinition, dump_rule_definition, parse_rule_definition
from fideliza.tiers.service import Ladder

TOTAL = "total"
EVERYONE = 0  # member_id of the program-wide budget counter


def create(
    db: Session,
    *,
    program: Program,
    definition: Mapping[str, Any] | str,
    now: datetime,
    actor: str | None = None,
) -> Rule:
    """Creates a rule at version 1 from its JSON definition (validated first)."""
    parsed = parse_rule_definition(definition, field_prefix="definition")
    _require_free_name(db, program_id=program.id, name=parsed.name)
    rule = Rule(
        program_id=program.id, name=parsed.name, active=True, current_version=1, created_at=now
    )
    db.add(rule)
    db.flush()
    _save_version(db, program=program, rule=rule, parsed=parsed, now=now, actor=actor)
    return rule


def update(
    db: Session,
    *,
    program: Program,
    rule_id: int,
    definition: Mapping[str, Any] | str,
    now: datetime,
    actor: str | None = None,
) -> Rule:
    """Saves a new version of a rule; earlier postings keep naming the version they used."""
    rule = get(db, program_id=program.id, rule_id=rule_id)
    parsed = parse_rule_definition(definition, field_prefix="definition")
    if parsed.name != rule.name:
        _require_free_name(db, program_id=program.id, name=parsed.name)
    rule.current_version += 1
    rule.name = parsed.name
    _save_version(db, program=program, rule=rule, parsed=parsed, now=now, actor=actor)
    return rule


def _require_free_name(db: Session, *, program_id: int, name: str) -> None:
    if db.scalar(select(Rule.id).where(Rule.program_id == program_id, Rule.name == name)):
        raise Conflict(f"a rule named {name!r} already exists", field="definition.name")


def _save_version(
    db: Session,
    *,
    program: Program,
    rule: Rule,
    parsed: RuleDefinition,
    now: datetime,
    actor: str | None,
) -> None:
    """Stores the rule's current version (immutable) with its audit row."""
    db.add(
        RuleVersion(
            rule_id=rule.id,
            version=rule.current_version,
            definition=dump_rule_definition(parsed),
            created_at=now,
            created_by=actor,
        )
    )
    first = rule.current_version == 1
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.rule.created" if first else "fideliza.rule.updated",
        subject=str(rule.id),
        now=now,
        actor=actor,
        data={"name": parsed.name, "version": rule.current_version},
    )
    _forget_compiled(db, program.id)
    db.flush()


def set_active(
    db: Session,
    *,
    program: Program,
    rule_id: int,
    active: bool,
    now: datetime,
    actor: str | None = None,
) -> Rule:
    """Switches a rule on or off."""
    rule = get(db, program_id=program.id, rule_id=rule_id)
    rule.active = active
    programs.audit(
        db,
        program_id=program.id,
        action=f"fideliza.rule.{'activated' if active else 'deactivated'}",
        subject=str(rule.id),
        now=now,
        actor=actor,
    )
    _forget_compiled(db, program.id)
    db.flush()
    return rule


def get(db: Session, *, program_id: int, rule_id: int) -> Rule:
    """Gets a rule of the program by id."""
    rule = db.get(Rule, rule_id)
    if rule is None or rule.program_id != program_id:
        raise NotFound(f"rule {rule_id} does not exist", field="rule_id")
    return rule


def definition_of(db: Session, *, rule_id: int, version: int) -> RuleDefinition:
    """The definition of one version of a rule."""
    row = db.get(RuleVersion, (rule_id, version))
    if row is None:
        raise NotFound(f"rule {rule_id} has no version {version}", field="version")
    return parse_rule_definition(row.definition)


def list_rules(db: Session, *, program_id: int) -> list[Rule]:
    """The program's rules, in creation order."""
    return list(db.scalars(select(Rule).where(Rule.program_id == program_id).order_by(Rule.id)))


def versions_of(db: Session, *, rule_id: int) -> list[RuleVersion]:
    """Every stored version of a rule, oldest first (versions are never changed)."""
    query = select(RuleVersion).where(RuleVersion.rule_id == rule_id)
    return list(db.scalars(query.order_by(RuleVersion.version)))


def current_versions(db: Session, *, rules: Sequence[Rule]) -> dict[int, RuleVersion]:
    """The current version of each of `rules`, by rule id (one query)."""
    if not rules:
        return {}
    wanted = [(rule.id, rule.current_version) for rule in rules]
    query = select(RuleVersion).where(tuple_(RuleVersion.rule_id, RuleVersion.version).in_(wanted))
    return {row.rule_id: row for row in db.scalars(query)}


def compiled_rules(db: Session, *, program_id: int) -> list[CompiledRule]:
    """The program's active rules at their current version, compiled (cached on the session)."""
    cache: dict[int, list[CompiledRule]] = db.info.setdefault("compiled_rules", {})
    if program_id not in cache:
        rows = db.execute(
            select(Rule.id, RuleVersion.version, RuleVersion.definition)
            .join(
                RuleVersion,
                (RuleVersion.rule_id == Rule.id) & (RuleVersion.version == Rule.current_version),
            )
            .where(Rule.program_id == program_id, Rule.active.is_(True))
            .order_by(Rule.id)
        ).all()
        cache[program_id] = [
            _compiled(rule_id, version, json.dumps(definition, sort_keys=True))
            for rule_id, version, definition in rows
        ]
    return cache[program_id]


@functools.lru_cache(maxsize=4096)
def _compiled(rule_id: int, version: int, definition: str) -> CompiledRule:
    """A rule version compiled once per process: versions never change, and keying by the
    definition's text keeps two databases served by one process apart."""
    return compile_rule(rule_id, version, parse_rule_definition(json.loads(definition)))


def _forget_compiled(db: Session, program_id: int) -> None:
    db.info.get("compiled_rules", {}).pop(program_id, None)


def member_context(
    ladder: Ladder | None,
    *,
    tier_code: str | None,
    attributes: Mapping[str, Any],
    birthday: date | None,
    is_first_purchase: bool,
) -> MemberContext:
    """What the rules may know of a member, with the tier's earning multiplier."""
    return MemberContext(
        tier_code=tier_code,
        tier_multiplier=ladder.multiplier(tier_code) if ladder else Decimal(1),
        attributes=attributes,
        birthday=birthday,
        is_first_purchase=is_first_purchase,
    )


def program_context(program: Program) -> ProgramContext:
    """What the evaluator needs to know of the program."""
    return ProgramContext(
        timezone=ZoneInfo(program.timezone), rounding=programs.settings_of(program).rounding
    )


# --- usage (caps and budgets) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageKeys:
    """The counters an activity of a member on a local day touches."""

    day: str
    month: str

    @classmethod
    def at(cls, occurred_at: datetime, timezone: ZoneInfo) -> UsageKeys:
        local = occurred_at.astimezone(timezone).date()
        return cls(day=local.isoformat(), month=local.isoformat()[:7])


def budget_periods(rules: Iterable[CompiledRule]) -> dict[int, str]:
    """The period of each budgeted rule's budget ("total", "day" or "month")."""
    return {
        rule.rule_id: rule.definition.caps.budget_period
        for rule in rules
        if rule.definition.caps is not None and rule.definition.caps.budget is not None
    }


def _budget_key(period: str | None, keys: UsageKeys) -> str:
    """The counter a budget of `period` uses for an activity on the day of `keys`."""
    if period == "day":
        return keys.day
    if period == "month":
        return keys.month
    return TOTAL


def capped_rule_ids(rules: Iterable[CompiledRule]) -> list[int]:
    """Rules whose caps need counters (others need no usage rows at all)."""
    return [rule.rule_id for rule in rules if rule.definition.caps is not None]


def load_usage(
    db: Session, *, rule_ids: Sequence[int], wanted: Iterable[tuple[int, UsageKeys]]
) -> dict[tuple[int, int, str], int]:
    """Loads the members' day/month/total counters and the budgets, by (rule, member, period)."""
    if not rule_ids:
        return {}
    member_ids: set[int] = {EVERYONE}
    periods: set[str] = {TOTAL}
    for member_id, keys in wanted:
        member_ids.add(member_id)
        periods.update((keys.day, keys.month))
    found: dict[tuple[int, int, str], int] = {}
    ordered = sorted(member_ids)
    # One query per rule and chunk of members, on the primary key's prefix (rule, member).
    for rule_id in rule_ids:
        for start in range(0, len(ordered), 5000):
            rows = db.execute(
                select(RuleUsageRow.member_id, RuleUsageRow.period, RuleUsageRow.points).where(
                    RuleUsageRow.rule_id == rule_id,
                    RuleUsageRow.member_id.in_(ordered[start : start + 5000]),
                    RuleUsageRow.period.in_(sorted(periods)),
                )
            ).all()
            found.update({(rule_id, m, p): points for m, p, points in rows})
    return found


def lock_budgets(
    db: Session, *, rules: Iterable[CompiledRule], keys: Iterable[UsageKeys] = ()
) -> None:
    """Locks the budget counters the activities of `keys` touch until the transaction ends.

    Without it, two purchases committing at once could both see room left in a budget and
    together overspend it. Callers lock their members first, then budgets (always in this
    order, by rule and period), so lockers never deadlock. SQLite needs nothing: its writers
    already run one at a time.
    """
    periods = budget_periods(rules)
    if not periods or db.get_bind().dialect.name != "postgresql":
        return
    every = list(keys)
    counters = sorted(
        {
            (rule_id, _budget_key(period, k))
            for rule_id, period in periods.items()
            for k in every or [UsageKeys(day="", month="")]
        }
    )
    upsert_add(
        db,
        RuleUsageRow.__table__,
        keys=("rule_id", "member_id", "period"),
        add=("points",),
        rows=[{"rule_id": r, "member_id": EVERYONE, "period": p, "points": 0} for r, p in counters],
    )
    for rule_id, period in counters:  # in order: rule, then period
        db.execute(
            select(RuleUsageRow.rule_id)
            .where(
                RuleUsageRow.rule_id == rule_id,
                RuleUsageRow.member_id == EVERYONE,
                RuleUsageRow.period == period,
            )
            .with_for_update()
        ).all()


def usage_view(
    counters: Mapping[tuple[int, int, str], int],
    *,
    rule_ids: Sequence[int],
    member_id: int,
    periods: UsageKeys,
    budgets: Mapping[int, str] | None = None,
) -> dict[int, RuleUsage]:
    """What each capped rule already gave, as the evaluator wants it (`budgets`: each
    budgeted rule's budget period, from `budget_periods`; total when absent)."""
    budgets = budgets or {}
    return {
        rule_id: RuleUsage(
            member_day=counters.get((rule_id, member_id, periods.day), 0),
            member_month=counters.get((rule_id, member_id, periods.month), 0),
            member_total=counters.get((rule_id, member_id, TOTAL), 0),
            budget_spent=counters.get(
                (rule_id, EVERYONE, _budget_key(budgets.get(rule_id), periods)), 0
            ),
        )
        for rule_id in rule_ids
    }


def count_usage(
    counters: dict[tuple[int, int, str], int],
    *,
    capped: set[int],
    member_id: int,
    periods: UsageKeys,
    postings: Iterable[Posting],
    budgets: Mapping[int, str] | None = None,
) -> list[tuple[int, int, str, int]]:
    """Adds capped rules' postings to the in-memory counters; returns the rows to add."""
    added: list[tuple[int, int, str, int]] = []
    budgets = budgets or {}
    for posting in postings:
        if posting.rule_id is None or posting.rule_id not in capped:
            continue
        for key in (
            (posting.rule_id, member_id, periods.day),
            (posting.rule_id, member_id, periods.month),
            (posting.rule_id, member_id, TOTAL),
            (posting.rule_id, EVERYONE, _budget_key(budgets.get(posting.rule_id), periods)),
        ):
            counters[key] = counters.get(key, 0) + posting.points
            added.append((*key, posting.points))
    return added


def save_usage(db: Session, rows: Sequence[tuple[int, int, str, int]]) -> None:
    """Adds to the usage counters (one upsert per distinct counter)."""
    merged: dict[tuple[int, int, str], int] = {}
    for rule_id, member_id, period, points in rows:
        merged[(rule_id, member_id, period)] = merged.get((rule_id, member_id, period), 0) + points
    upsert_add(
        db,
        RuleUsageRow.__table__,
        keys=("rule_id", "member_id", "period"),
        add=("points",),
        rows=[
            {"rule_id": r, "member_id": m, "period": p, "points": n}
            for (r, m, p), n in merged.items()
        ],
    )


def explain_checks(checks: Sequence[RuleCheck]) -> list[dict[str, Any]]:
    """Rule checks as plain dicts (for the CLI and the API)."""
    return [
        {
            "rule_id": c.rule_id,
            "version": c.rule_version,
            "name": c.name,
            "matched": c.matched,
            "failed_condition": c.failed_condition,
            "detail": c.detail,
        }
        for c in checks
    ]
