"""The earning-rules evaluator: pure and precompiled; each posting says why it was earned.

`evaluate(activity, member, program, rules, usage)` turns one activity (a purchase or a custom
event) into postings. The semantics, in order:

1. **Selection.** Rules are taken in (priority, rule_id, version) order, lowest first. A rule
   whose `activity` differs from `activity.kind`, or any of whose conditions fails, gives
   nothing (see `schemas.Conditions` for each condition). Local date, weekday and time are the
   activity's `occurred_at` in the program's timezone, computed once per evaluation.
2. **Base points.** A matching rule's base points are the sum of its non-multiplier actions,
   each rounded on its own with the action's `rounding`, or the program's when the action has
   none (floor by default): `points_per_amount` = round(points × eligible amount / per), where
   the eligible amount is the activity's amount, or the matching lines' total when the rule
   has an items filter; `points_per_item` = points × the matching lines' quantity (every line
   without a filter); `fixed_bonus` = points. Negative amounts count as zero.
3. **Caps** clip each rule's own points to the smallest room left under `per_transaction`
   (this activity), then `per_day`, `per_month`, `per_member` (given `usage[rule_id]`, what the
   rule already gave this member in the local day and month and ever), then `budget` (what it
   gave everyone). Room is never negative, so a cap never takes points back.
4. **Multipliers stack additively** on the base B = the sum of all matching rules' base points
   *after* their caps (the rule's own base included): each multiplier action adds
   round((factor − 1) × B), then its rule's caps clip that on top of the rule's base. The
   member's tier adds round((tier_multiplier − 1) × B) with the program's rounding, as its own
   posting (rule_id None, tier_code set), uncapped; only when the member has a tier code and a
   multiplier above 1. So base 100, a ×2 campaign and a ×1.5 tier give 100 + 100 + 50, never
   100 × 2 × 1.5. Multipliers never multiply other multipliers' points.
5. **Postings**: one per matching rule (its base and multiplier points together), in rule
   order, then the tier posting. Postings of 0 points are dropped; points are never negative.

Evaluation depends only on its arguments, not on the order `rules` are given in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from itertools import pairwise
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from fideliza.core.errors import ValidationError
from fideliza.core.points import Rounding
from fideliza.purchases.domain import Item
from fideliza.rules.schemas import (
    WEEKDAYS,
    FixedBonus,
    Multiplier,
    PointsPerAmount,
    PointsPerItem,
    RuleDefinition,
)

_ZERO = Decimal(0)
_ONE = Decimal(1)
# The decimal modes of `fideliza.core.points.round_points`, looked up once per action at compile
# time rather than once per call (a test checks that both round alike).
_MODES: dict[str, str] = {
    Rounding.FLOOR: ROUND_FLOOR,
    Rounding.HALF_UP: ROUND_HALF_UP,
    Rounding.HALF_EVEN: ROUND_HALF_EVEN,
    Rounding.CEILING: ROUND_CEILING,
}


@dataclass(frozen=True, slots=True)
class Activity:
    """A purchase (`kind` "purchase") or a custom event (`kind` e.g. "store_visit")."""

    kind: str
    occurred_at: datetime
    amount: Decimal = _ZERO
    channel: str | None = None
    store: str | None = None
    items: tuple[Item, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ValidationError("must carry a timezone", field="occurred_at")


@dataclass(frozen=True, slots=True)
class MemberContext:
    """What the rules may know about the member; `tier_multiplier` 1 means no tier bonus."""

    tier_code: str | None = None
    tier_multiplier: Decimal = _ONE
    attributes: Mapping[str, Any] = field(default_factory=dict)
    birthday: date | None = None
    is_first_purchase: bool = False


@dataclass(frozen=True, slots=True)
class ProgramContext:
    """The program's timezone (local dates and times) and default rounding."""

    timezone: ZoneInfo
    rounding: Rounding = Rounding.FLOOR


@dataclass(frozen=True, slots=True)
class RuleUsage:
    """What a rule already gave: to this member in the local day, month and ever; to everyone."""

    member_day: int = 0
    member_month: int = 0
    member_total: int = 0
    budget_spent: int = 0


@dataclass(frozen=True, slots=True)
class Posting:
    """Points earned and why; `rule_id` None with `tier_code` set is the tier bonus."""

    points: int
    rule_id: int | None
    rule_version: int | None
    tier_code: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """Whether one rule matched an activity and, if not, the first condition that failed."""

    rule_id: int
    rule_version: int
    name: str
    matched: bool
    failed_condition: str | None
    detail: str


# --- compilation: everything evaluation needs, precomputed as plain Python values ---

_PER_AMOUNT, _PER_ITEM, _FIXED, _MULTIPLIER = range(4)


@dataclass(frozen=True, slots=True)
class _Action:
    kind: int
    points: int = 0
    per: Decimal = _ONE
    factor_extra: Decimal = _ZERO  # factor − 1
    mode: str | None = None  # decimal rounding mode; None: the program's
    label: str = ""


@dataclass(frozen=True, slots=True)
class _Items:
    include_skus: frozenset[str]
    include_categories: frozenset[str]
    include_all: bool
    exclude_skus: frozenset[str]
    exclude_categories: frozenset[str]
    min_quantity: int


_AttributeKey = tuple[type, object]


@dataclass(frozen=True, slots=True)
class _Plan:
    activity: str
    sort_key: tuple[int, int, int]
    label: str
    min_amount: Decimal | None
    max_amount: Decimal | None
    items: _Items | None
    channels: frozenset[str] | None
    stores: frozenset[str] | None
    tiers: frozenset[str] | None
    first_purchase: bool | None
    weekdays: frozenset[int] | None
    window: tuple[int, int] | None  # local minutes of the day, [start, end), may wrap
    date_start: date | None
    date_end: date | None
    birthday: str | None
    attributes: tuple[tuple[str, frozenset[_AttributeKey]], ...]
    event_attributes: tuple[tuple[str, frozenset[_AttributeKey]], ...]
    needs_local: bool
    base_actions: tuple[_Action, ...]
    multipliers: tuple[_Action, ...]
    caps: tuple[tuple[str, int], ...]  # (name, cap) in clipping order, only the caps set


def _attribute_key(value: object) -> _AttributeKey | None:
    # bool before int: True must not match 1.
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, int):
        return (int, int(value))
    if isinstance(value, str):
        return (str, str(value))
    return None


def _compile_attributes(
    spec: Mapping[str, object] | None,
) -> tuple[tuple[str, frozenset[_AttributeKey]], ...]:
    if not spec:
        return ()
    compiled = []
    for name, expected in spec.items():
        values = expected if isinstance(expected, tuple) else (expected,)
        keys = frozenset(key for key in map(_attribute_key, values) if key is not None)
        compiled.append((name, keys))
    return tuple(compiled)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _pts(points: int) -> str:
    return f"{points} pt" if points == 1 else f"{points} pts"


def _compile_action(action: object) -> _Action:
    if isinstance(action, PointsPerAmount):
        return _Action(
            _PER_AMOUNT,
            points=action.points,
            per=action.per,
            mode=_MODES[action.rounding] if action.rounding else None,
            label=f"{_pts(action.points)} per {action.per}",
        )
    if isinstance(action, PointsPerItem):
        return _Action(_PER_ITEM, points=action.points, label=f"{_pts(action.points)} per item")
    if isinstance(action, FixedBonus):
        return _Action(_FIXED, points=action.points, label="bonus")
    if isinstance(action, Multiplier):
        return _Action(
            _MULTIPLIER,
            factor_extra=action.factor - _ONE,
            mode=_MODES[action.rounding] if action.rounding else None,
            label=f"×{action.factor.normalize():f}",
        )
    raise TypeError(f"unknown action {action!r}")  # pragma: no cover - the schema forbids it


def _compile(rule_id: int, version: int, definition: RuleDefinition) -> _Plan:
    conditions = definition.conditions
    items = None
    if conditions.items is not None:
        spec = conditions.items
        items = _Items(
            include_skus=frozenset(spec.include_skus),
            include_categories=frozenset(spec.include_categories),
            include_all=not (spec.include_skus or spec.include_categories),
            exclude_skus=frozenset(spec.exclude_skus),
            exclude_categories=frozenset(spec.exclude_categories),
            min_quantity=spec.min_quantity or 1,
        )
    window = None
    if conditions.time_window is not None:
        window = (_minutes(conditions.time_window.start), _minutes(conditions.time_window.end))
    date_range = conditions.date_range
    actions = [_compile_action(action) for action in definition.actions]
    caps = definition.caps
    cap_pairs: tuple[tuple[str, int], ...] = ()
    if caps is not None:
        cap_pairs = tuple(
            (name, value)
            for name, value in (
                ("per_transaction", caps.per_transaction),
                ("per_day", caps.per_day),
                ("per_month", caps.per_month),
                ("per_member", caps.per_member),
                ("budget", caps.budget),
            )
            if value is not None
        )
    return _Plan(
        activity=definition.activity,
        sort_key=(definition.priority, rule_id, version),
        label=f"{definition.name} v{version}",
        min_amount=conditions.min_amount,
        max_amount=conditions.max_amount,
        items=items,
        channels=frozenset(conditions.channels) if conditions.channels else None,
        stores=frozenset(conditions.stores) if conditions.stores else None,
        tiers=frozenset(conditions.tiers) if conditions.tiers else None,
        first_purchase=conditions.first_purchase,
        weekdays=(
            frozenset(WEEKDAYS.index(day) for day in conditions.weekdays)
            if conditions.weekdays
            else None
        ),
        window=window,
        date_start=date_range.start if date_range else None,
        date_end=date_range.end if date_range else None,
        birthday=conditions.birthday,
        attributes=_compile_attributes(conditions.attributes),
        event_attributes=_compile_attributes(conditions.event_attributes),
        needs_local=bool(conditions.weekdays or window or date_range or conditions.birthday),
        base_actions=tuple(a for a in actions if a.kind != _MULTIPLIER),
        multipliers=tuple(a for a in actions if a.kind == _MULTIPLIER),
        caps=cap_pairs,
    )


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule version ready to evaluate: compile once (at load), evaluate many times."""

    rule_id: int
    version: int
    definition: RuleDefinition = field(hash=False)
    # The precomputed predicates and actions, internal to this module; the activity and the
    # sort key are copied out of the plan because every evaluation reads them for every rule.
    plan: _Plan = field(init=False, repr=False, compare=False, hash=False)
    activity: str = field(init=False, repr=False, compare=False, hash=False)
    sort_key: tuple[int, int, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        plan = _compile(self.rule_id, self.version, self.definition)
        object.__setattr__(self, "plan", plan)
        object.__setattr__(self, "activity", plan.activity)
        object.__setattr__(self, "sort_key", plan.sort_key)


def compile_rule(rule_id: int, version: int, definition: RuleDefinition) -> CompiledRule:
    """Precomputes a rule's predicates (sets, minutes, Decimals) for fast evaluation."""
    return CompiledRule(rule_id=rule_id, version=version, definition=definition)


# --- evaluation ---


_Local = tuple[date, int, int]  # local date, weekday (Monday 0), minute of the day


def _localize(occurred_at: datetime, timezone: ZoneInfo) -> _Local:
    local = occurred_at.astimezone(timezone)
    return (local.date(), local.weekday(), local.hour * 60 + local.minute)


def _attributes_match(
    spec: tuple[tuple[str, frozenset[_AttributeKey]], ...], values: Mapping[str, Any]
) -> str | None:
    for name, allowed in spec:
        value = values.get(name)
        kind = type(value)
        if kind is str or kind is int or kind is bool:  # the common case, without a call
            if (kind, value) not in allowed:
                return name
        elif isinstance(value, list | tuple | set | frozenset):
            if not any(_attribute_key(element) in allowed for element in value):
                return name
        elif _attribute_key(value) not in allowed:
            return name
    return None


def _is_birthday(birthday: date, day: date, scope: str) -> bool:
    if birthday.month != day.month:
        return False
    if scope == "month" or birthday.day == day.day:
        return True
    # 29 February birthdays are celebrated on 28 February in common years.
    return (
        birthday.month == 2
        and birthday.day == 29
        and day.day == 28
        and not (day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0))
    )


def _check(
    plan: _Plan, activity: Activity, member: MemberContext, local: _Local | None
) -> tuple[str | None, Decimal, int]:
    """Returns (the first failing condition or None, eligible amount, matching quantity)."""
    if plan.channels is not None and activity.channel not in plan.channels:
        return "channels", _ZERO, 0
    if plan.stores is not None and activity.store not in plan.stores:
        return "stores", _ZERO, 0
    if plan.tiers is not None and member.tier_code not in plan.tiers:
        return "tiers", _ZERO, 0
    if plan.first_purchase is not None and bool(member.is_first_purchase) != plan.first_purchase:
        return "first_purchase", _ZERO, 0
    if local is not None:
        day, weekday, minute = local
        if plan.weekdays is not None and weekday not in plan.weekdays:
            return "weekdays", _ZERO, 0
        if plan.window is not None:
            start, end = plan.window
            inside = start <= minute < end if start < end else minute >= start or minute < end
            if not inside:
                return "time_window", _ZERO, 0
        if plan.date_start is not None and day < plan.date_start:
            return "date_range", _ZERO, 0
        if plan.date_end is not None and day > plan.date_end:
            return "date_range", _ZERO, 0
        if plan.birthday is not None and (
            member.birthday is None or not _is_birthday(member.birthday, day, plan.birthday)
        ):
            return "birthday", _ZERO, 0
    if plan.attributes and _attributes_match(plan.attributes, member.attributes) is not None:
        return "attributes", _ZERO, 0
    if (
        plan.event_attributes
        and _attributes_match(plan.event_attributes, activity.attributes) is not None
    ):
        return "event_attributes", _ZERO, 0
    item_filter = plan.items
    if item_filter is None:
        amount = activity.amount
        quantity = 0
        for item in activity.items:
            quantity += item.quantity
    else:
        amount = _ZERO
        quantity = 0
        include_all = item_filter.include_all
        include_skus = item_filter.include_skus
        include_categories = item_filter.include_categories
        exclude_skus = item_filter.exclude_skus
        exclude_categories = item_filter.exclude_categories
        for item in activity.items:
            # Included (by SKU or category, or no include list) and not excluded; inlined
            # because this runs for every line of every basket under every items filter.
            sku = item.sku
            category = item.category
            if (include_all or sku in include_skus or category in include_categories) and not (
                sku in exclude_skus or category in exclude_categories
            ):
                amount += item.unit_price * item.quantity
                quantity += item.quantity
        if quantity < item_filter.min_quantity:
            return "items", _ZERO, 0
    if plan.min_amount is not None and amount < plan.min_amount:
        return "min_amount", _ZERO, 0
    if plan.max_amount is not None and amount > plan.max_amount:
        return "max_amount", _ZERO, 0
    return None, amount, quantity


def _sorted_candidates(rules: Iterable[CompiledRule], kind: str) -> list[CompiledRule]:
    candidates = [rule for rule in rules if rule.activity == kind]
    candidates.sort(key=_sort_key)
    for previous, current in pairwise(candidates):
        if previous.rule_id == current.rule_id:
            # Two versions of one rule would share its caps and pay twice: a caller's bug.
            raise ValueError(f"rule {current.rule_id} is given more than once")
    return candidates


_sort_key = attrgetter("sort_key")

# The last rule set's candidates: a batch evaluates thousands of activities under the same
# rules, so they are sorted and checked once. Keyed by the rules themselves (identity, in
# order) and the kind; replaced as a whole, so threads never see half an entry.
_Memo = tuple[tuple[CompiledRule, ...], str, list[CompiledRule], bool]
_last_candidates: _Memo | None = None


def _candidates_of(rules: Sequence[CompiledRule], kind: str) -> tuple[list[CompiledRule], bool]:
    """The rules for `kind` in evaluation order, and whether any needs the local time."""
    global _last_candidates
    memo = _last_candidates
    if memo is not None and memo[1] == kind and len(memo[0]) == len(rules):
        for cached, given in zip(memo[0], rules, strict=True):
            if cached is not given:
                break
        else:
            return memo[2], memo[3]
    candidates = _sorted_candidates(rules, kind)
    needs_local = any(rule.plan.needs_local for rule in candidates)
    _last_candidates = (tuple(rules), kind, candidates, needs_local)
    return candidates, needs_local


def _local_for(
    candidates: Sequence[CompiledRule], activity: Activity, program: ProgramContext
) -> _Local | None:
    for rule in candidates:
        if rule.plan.needs_local:
            return _localize(activity.occurred_at, program.timezone)
    return None


def _clip(plan: _Plan, wanted: int, given: int, usage: RuleUsage) -> tuple[int, str | None]:
    """Clips `wanted` to the room left under the rule's caps; names the cap that bound."""
    allowed = wanted
    binding = None
    for name, cap in plan.caps:
        if name == "per_transaction":
            used = given
        elif name == "per_day":
            used = usage.member_day + given
        elif name == "per_month":
            used = usage.member_month + given
        elif name == "per_member":
            used = usage.member_total + given
        else:
            used = usage.budget_spent + given
        room = cap - used
        if room < allowed:
            allowed = room if room > 0 else 0
            binding = name
            if allowed == 0:
                break
    return allowed, binding


_NO_USAGE = RuleUsage()


def evaluate(
    activity: Activity,
    member: MemberContext,
    program: ProgramContext,
    rules: Sequence[CompiledRule],
    usage: Mapping[int, RuleUsage],
) -> list[Posting]:
    """The postings `activity` earns under `rules` (see the module docstring for semantics)."""
    candidates, needs_local = _candidates_of(rules, activity.kind)
    if not candidates:
        return []
    local = _localize(activity.occurred_at, program.timezone) if needs_local else None
    default_mode = _MODES[program.rounding]

    # Phase 1: each matching rule's base points, clipped by its caps.
    matched: list[tuple[CompiledRule, int, list[str], int, str | None]] = []
    base_total = 0
    for rule in candidates:
        plan = rule.plan
        failure, amount, quantity = _check(plan, activity, member, local)
        if failure is not None:
            continue
        wanted = 0
        parts: list[str] = []
        for action in plan.base_actions:
            kind = action.kind
            if kind == _PER_AMOUNT:
                eligible = amount if amount > 0 else _ZERO
                points = int(
                    (action.points * eligible / action.per).to_integral_value(
                        action.mode or default_mode
                    )
                )
                parts.append(f"{action.label} on {eligible!s} → {points}")
            elif kind == _PER_ITEM:
                points = action.points * quantity if quantity > 0 else 0
                parts.append(f"{action.label} × {quantity} → {points}")
            else:
                points = action.points
                parts.append(f"{action.label} {points}")
            if points > 0:
                wanted += points
        if plan.caps:
            base, binding = _clip(plan, wanted, 0, usage.get(rule.rule_id, _NO_USAGE))
        else:
            base, binding = wanted, None
        base_total += base
        matched.append((rule, base, parts, wanted, binding))

    # Phase 2: multipliers on the capped base of all matching rules, then the postings.
    postings: list[Posting] = []
    for rule, base, parts, wanted, binding in matched:
        plan = rule.plan
        points = base
        if plan.multipliers:
            extra_wanted = 0
            for action in plan.multipliers:
                extra = int(
                    (action.factor_extra * base_total).to_integral_value(
                        action.mode or default_mode
                    )
                )
                parts.append(f"{action.label} on {base_total} base → {extra}")
                extra_wanted += extra if extra > 0 else 0
            if plan.caps:
                extra, extra_binding = _clip(
                    plan, extra_wanted, base, usage.get(rule.rule_id, _NO_USAGE)
                )
            else:
                extra, extra_binding = extra_wanted, None
            wanted += extra_wanted
            points += extra
            binding = binding or extra_binding
        if points <= 0:
            continue
        reason = " + ".join(parts)
        if len(parts) > 1:
            reason += f" = {wanted}"
        if binding is not None:
            reason += f", capped to {points} by the {binding} cap"
        postings.append(
            Posting(points, rule.rule_id, rule.version, None, f"{reason} ({plan.label})")
        )

    tier_multiplier = member.tier_multiplier
    if member.tier_code is not None and base_total > 0 and tier_multiplier > _ONE:
        extra = int(((tier_multiplier - _ONE) * base_total).to_integral_value(default_mode))
        if extra > 0:
            factor = f"{tier_multiplier.normalize():f}"
            reason = f"tier {member.tier_code} ×{factor} on {base_total} base → {extra}"
            postings.append(Posting(extra, None, None, member.tier_code, reason))
    return postings


_FAILURE_TEXT = {
    "channels": "the channel is not one of the rule's channels",
    "stores": "the store is not one of the rule's stores",
    "tiers": "the member's tier is not one of the rule's tiers",
    "first_purchase": "the first-purchase condition does not hold",
    "weekdays": "the local weekday is not one of the rule's weekdays",
    "time_window": "the local time is outside the rule's time window",
    "date_range": "the local date is outside the rule's date range",
    "birthday": "it is not the member's birthday (day or month, as the rule says)",
    "attributes": "a member attribute does not have the required value",
    "event_attributes": "an activity attribute does not have the required value",
    "items": "not enough matching items in the basket",
    "min_amount": "the eligible amount is below the rule's minimum",
    "max_amount": "the eligible amount is above the rule's maximum",
}


def explain(
    activity: Activity,
    member: MemberContext,
    program: ProgramContext,
    rules: Sequence[CompiledRule],
) -> list[RuleCheck]:
    """For each rule (in evaluation order), whether it matched and else the condition that failed.

    The points themselves, and how they were computed and capped, are in `evaluate`'s postings.
    """
    checks: list[RuleCheck] = []
    ordered = sorted(rules, key=_sort_key)
    local = _local_for(ordered, activity, program)
    for rule in ordered:
        plan = rule.plan
        name = rule.definition.name
        if plan.activity != activity.kind:
            detail = f"the rule is for {plan.activity!r} activities, not {activity.kind!r}"
            checks.append(RuleCheck(rule.rule_id, rule.version, name, False, "activity", detail))
            continue
        failure, _, _ = _check(plan, activity, member, local)
        if failure is None:
            checks.append(
                RuleCheck(rule.rule_id, rule.version, name, True, None, "all conditions hold")
            )
        else:
            detail = _FAILURE_TEXT[failure]
            if failure in ("attributes", "event_attributes"):
                values = member.attributes if failure == "attributes" else activity.attributes
                spec = plan.attributes if failure == "attributes" else plan.event_attributes
                detail += f" ({_attributes_match(spec, values)})"
            checks.append(RuleCheck(rule.rule_id, rule.version, name, False, failure, detail))
    return checks
