"""Earning-rule definitions: versioned JSON validated strictly, errors naming the field path.

A rule definition is stored as JSON (one row per rule version) and looks like::

    {"schema_version": 1, "name": "Coffee lovers", "priority": 100, "activity": "purchase",
     "conditions": {"min_amount": "20.00", "items": {"include_categories": ["coffee"]},
                    "weekdays": ["mon", "tue"], "time_window": {"start": "08:00", "end": "11:00"}},
     "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00", "rounding": "floor"}],
     "caps": {"per_transaction": 500, "per_day": 1000}}

Validation is strict: unknown fields are refused, points are JSON integers (never floats, never
strings), money and factors are decimal strings or integers (never floats), dates are
`YYYY-MM-DD` and times `HH:MM`. The meaning of each field is documented on its model and in
`fideliza.rules.domain`, which evaluates compiled definitions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from fideliza.core.errors import ValidationError
from fideliza.core.points import Rounding

SCHEMA_VERSION = 1
"""The version of the definition format this module reads and writes."""

MAX_FACTOR = Decimal(100)
"""The largest multiplier factor accepted (a guard against typos such as "20" for "2.0")."""

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names in `date.weekday()` order (Monday is 0)."""

_DECIMAL_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ACTIVITY_RE = re.compile(r"^[a-z_]+$")


class RuleDefinitionError(ValidationError):
    """A malformed rule definition; `field` names the first problem, `problems` lists them all."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        problems: tuple[tuple[str | None, str], ...] = (),
    ) -> None:
        super().__init__(message, field=field)
        self.problems = problems or ((field, message),)


# --- scalar validators (run before pydantic's own, so messages say what the user must send) ---


def _points(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError(
            "points_type",
            "must be an integer number of points, got {value}",
            {"value": repr(value)},
        )
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError(
            "int_type", "must be an integer, got {value}", {"value": repr(value)}
        )
    return value


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool | float):
        raise PydanticCustomError(
            "decimal_type",
            'must be a decimal string such as "1.50" or an integer, got the float {value}',
            {"value": repr(value)},
        )
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("decimal_finite", "must be a finite number")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str) and _DECIMAL_RE.match(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            pass
    raise PydanticCustomError(
        "decimal_type",
        'must be a decimal string such as "1.50" or an integer, got {value}',
        {"value": repr(value)},
    )


def _non_negative_decimal(value: object) -> Decimal:
    number = _decimal(value)
    if number < 0:
        raise PydanticCustomError(
            "decimal_range", "must not be negative, got {value}", {"value": str(number)}
        )
    return number


def _positive_decimal(value: object) -> Decimal:
    number = _decimal(value)
    if number <= 0:
        raise PydanticCustomError(
            "decimal_range", "must be greater than 0, got {value}", {"value": str(number)}
        )
    return number


def _factor(value: object) -> Decimal:
    number = _decimal(value)
    if not Decimal(1) < number <= MAX_FACTOR:
        raise PydanticCustomError(
            "factor_range",
            "must be greater than 1 and at most {maximum}, got {value}",
            {"maximum": str(MAX_FACTOR), "value": str(number)},
        )
    return number


def _date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError(
        "date_type", "must be a date written YYYY-MM-DD, got {value}", {"value": repr(value)}
    )


def _hhmm(value: object) -> str:
    if isinstance(value, str) and _TIME_RE.match(value):
        return value
    raise PydanticCustomError(
        "time_type",
        "must be a time written HH:MM (00:00 to 23:59), got {value}",
        {"value": repr(value)},
    )


def _activity(value: object) -> str:
    if isinstance(value, str) and 0 < len(value) <= 64 and _ACTIVITY_RE.match(value):
        return value
    raise PydanticCustomError(
        "activity_type",
        'must be "purchase" or a custom event type of lowercase letters and "_", got {value}',
        {"value": repr(value)},
    )


AttributeScalar = StrictStr | StrictInt | StrictBool
AttributeValue = AttributeScalar | tuple[AttributeScalar, ...]


def _attribute_value(value: object) -> AttributeValue:
    if isinstance(value, str | int):
        return value
    if isinstance(value, list | tuple):
        if not value:
            raise PydanticCustomError("too_short", "must not be an empty list")
        for element in value:
            if not isinstance(element, str | int):
                raise PydanticCustomError(
                    "attribute_type",
                    "list elements must be strings, integers or booleans, got {value}",
                    {"value": repr(element)},
                )
        return tuple(value)
    raise PydanticCustomError(
        "attribute_type",
        "must be a string, an integer, a boolean or a list of them, got {value}",
        {"value": repr(value)},
    )


Points = Annotated[int, BeforeValidator(_points), Field(ge=1)]
CapPoints = Annotated[int, BeforeValidator(_points), Field(ge=0)]
Money = Annotated[Decimal, BeforeValidator(_non_negative_decimal)]
PositiveMoney = Annotated[Decimal, BeforeValidator(_positive_decimal)]
Factor = Annotated[Decimal, BeforeValidator(_factor)]
LocalDate = Annotated[date, BeforeValidator(_date)]
LocalTime = Annotated[str, BeforeValidator(_hhmm)]
ActivityKind = Annotated[str, BeforeValidator(_activity)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Codes = tuple[Code, ...]
NonEmptyCodes = Annotated[tuple[Code, ...], Field(min_length=1)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AttributeMatch = dict[
    Annotated[str, StringConstraints(min_length=1, max_length=100)],
    Annotated[AttributeValue, BeforeValidator(_attribute_value)],
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- conditions ---


class ItemFilter(_Model):
    """Which basket lines count. A line matches when it is included and not excluded.

    A line is included when no include list is given, or its SKU is in `include_skus`, or its
    category is in `include_categories`; it is excluded when its SKU is in `exclude_skus` or its
    category is in `exclude_categories` (exclusion wins). The condition holds when the matching
    lines' total quantity is at least `min_quantity` (1 when not given), so a basket sent
    without lines never satisfies an items filter.
    """

    include_skus: Codes = ()
    exclude_skus: Codes = ()
    include_categories: Codes = ()
    exclude_categories: Codes = ()
    min_quantity: Points | None = None

    @field_validator("exclude_skus", "exclude_categories")
    @classmethod
    def _not_both_included_and_excluded(cls, value: Codes, info: ValidationInfo) -> Codes:
        included_field = "include_" + (info.field_name or "").removeprefix("exclude_")
        both = sorted(set(value) & set(info.data.get(included_field, ())))
        if both:
            raise PydanticCustomError(
                "include_exclude_overlap",
                "{codes} also appear in {other}; a code must be either included or excluded",
                {"codes": ", ".join(both), "other": included_field},
            )
        return value


class TimeWindow(_Model):
    """Local time of day, `start` inclusive to `end` exclusive; wraps midnight when end < start."""

    start: LocalTime
    end: LocalTime

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("start"):
            raise PydanticCustomError(
                "time_window_empty", "must differ from start (the window would be empty)"
            )
        return value


class DateRange(_Model):
    """Local dates, both inclusive; either end may be left open, not both."""

    start: LocalDate | None = None
    end: LocalDate | None = None

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if value is not None and start is not None and value < start:
            raise PydanticCustomError(
                "date_range_order",
                "must not be before start ({start})",
                {"start": start.isoformat()},
            )
        return value

    @model_validator(mode="after")
    def _bounded(self) -> DateRange:
        if self.start is None and self.end is None:
            raise PydanticCustomError("date_range_open", "needs a start, an end or both")
        return self


class Conditions(_Model):
    """All given conditions must hold (AND); a condition left out does not restrict.

    `min_amount`/`max_amount` (both inclusive) compare the *eligible amount*: the activity's
    amount, or the matching lines' total when an `items` filter is given. `channels`, `stores`
    and `tiers` must contain the activity's channel, store and the member's tier code (a missing
    value never matches). `weekdays`, `time_window`, `date_range` and `birthday` use the
    activity's local date and time in the program's timezone. `attributes` (member) and
    `event_attributes` (activity) require each named attribute to equal the given value or be
    one of the given list (strings, integers and booleans, compared by type and value; a member
    attribute holding a list matches when any of its elements does). `first_purchase: true`
    requires the member's first purchase, `false` requires any later one. `birthday: "day"`
    holds on the member's birthday (28 February for 29 February birthdays in common years),
    `"month"` during their birthday month.
    """

    min_amount: Money | None = None
    max_amount: Money | None = None
    items: ItemFilter | None = None
    channels: NonEmptyCodes | None = None
    stores: NonEmptyCodes | None = None
    weekdays: Annotated[tuple[Weekday, ...], Field(min_length=1)] | None = None
    time_window: TimeWindow | None = None
    date_range: DateRange | None = None
    tiers: NonEmptyCodes | None = None
    attributes: AttributeMatch | None = None
    event_attributes: AttributeMatch | None = None
    first_purchase: StrictBool | None = None
    birthday: Literal["day", "month"] | None = None

    @field_validator("max_amount")
    @classmethod
    def _not_below_min(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        minimum = info.data.get("min_amount")
        if value is not None and minimum is not None and value < minimum:
            raise PydanticCustomError(
                "amount_range_order",
                "must not be below min_amount ({minimum})",
                {"minimum": str(minimum)},
            )
        return value


# --- actions ---


class PointsPerAmount(_Model):
    """`points` × eligible amount / `per`, rounded with `rounding` (default: the program's)."""

    type: Literal["points_per_amount"]
    points: Points
    per: PositiveMoney = Decimal("1.00")
    rounding: Rounding | None = None


class PointsPerItem(_Model):
    """`points` × the total quantity of matching lines (every line without an items filter)."""

    type: Literal["points_per_item"]
    points: Points


class FixedBonus(_Model):
    """`points` once per matching activity."""

    type: Literal["fixed_bonus"]
    points: Points


class Multiplier(_Model):
    """Adds (`factor` − 1) × the base points of all matching rules, rounded with `rounding`."""

    type: Literal["multiplier"]
    factor: Factor
    rounding: Rounding | None = None


Action = Annotated[
    PointsPerAmount | PointsPerItem | FixedBonus | Multiplier, Field(discriminator="type")
]
ACTION_TYPES: frozenset[str] = frozenset(
    {"points_per_amount", "points_per_item", "fixed_bonus", "multiplier"}
)


class Caps(_Model):
    """Upper bounds on what this rule gives (in points); each is optional.

    `per_transaction` bounds one activity, `per_day`/`per_month` one member in a local day or
    month, `per_member` one member ever, `budget` all members together (a campaign budget),
    ever or, with `budget_period`, per local day or month (it starts afresh each period).
    """

    per_transaction: CapPoints | None = None
    per_day: CapPoints | None = None
    per_month: CapPoints | None = None
    per_member: CapPoints | None = None
    budget: CapPoints | None = None
    budget_period: Literal["total", "day", "month"] = "total"


class RuleDefinition(_Model):
    """One version of an earning rule, as stored (JSON) and as edited by a program manager.

    `schema_version` is the version of this format (1). `name` is what postings' reasons show.
    `priority` orders evaluation and postings (lower first, then by rule id); it never changes
    amounts, because caps are per rule and multipliers stack additively. `activity` is
    "purchase" or a custom event type ("store_visit", "review_written", …). Every condition
    must hold; then every action earns (see `fideliza.rules.domain` for the arithmetic).
    """

    schema_version: Annotated[Literal[1], BeforeValidator(_integer)] = 1
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    priority: Annotated[int, BeforeValidator(_integer)] = 100
    activity: ActivityKind = "purchase"
    conditions: Conditions = Field(default_factory=Conditions)
    actions: Annotated[tuple[Action, ...], Field(min_length=1)]
    caps: Caps | None = None


# --- parsing and dumping ---


class _DuplicateKeyError(Exception):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _path(loc: tuple[int | str, ...], error_type: str, prefix: str) -> str | None:
    parts: list[str] = [prefix] if prefix else []
    previous: int | str | None = None
    for element in loc:
        if isinstance(element, int):
            if not parts:
                parts.append("")
            parts[-1] += f"[{element}]"
        elif isinstance(previous, int) and element in ACTION_TYPES:
            pass  # the discriminated union's tag is not a field the user wrote
        elif element in ("", "[key]"):
            pass  # an invalid mapping key: name the mapping
        else:
            parts.append(element)
        previous = element
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("type")
    return ".".join(parts) or None


_SHOULD_RE = re.compile(r"^(Input|String|List|Tuple|Value|Dictionary|Decimal) should ")
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of a rule definition here",
    "too_short": "must not be empty (leave the field out to apply no restriction)",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "tuple_type": "must be a JSON array",
    "list_type": "must be a JSON array",
    "union_tag_invalid": "must be one of " + ", ".join(sorted(ACTION_TYPES)),
    "union_tag_not_found": "is required: one of " + ", ".join(sorted(ACTION_TYPES)),
}
_SCALARS = (str, int, float, Decimal, type(None))


def _message(error: Mapping[str, Any]) -> str:
    error_type = error["type"]
    if error["loc"] == ("actions",) and error_type == "too_short":
        return "needs at least one action"
    message = _MESSAGES.get(error_type) or _SHOULD_RE.sub("must ", str(error["msg"]))
    value = error.get("input")
    shown = error_type not in ("missing", "extra_forbidden") and "got " not in message
    if shown and isinstance(value, _SCALARS):
        message += f", got {value!r}"
    return message


def _is_consequence(error: Mapping[str, Any], errors: list[Any]) -> bool:
    # A list whose only element is invalid is also reported as too short: keep the cause.
    loc = error["loc"]
    return error["type"] == "too_short" and any(
        other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in errors
    )


def parse_rule_definition(
    data: Mapping[str, Any] | str | bytes, *, field_prefix: str = ""
) -> RuleDefinition:
    """Validates a rule definition (a JSON text or an already decoded mapping).

    Raises `RuleDefinitionError` (a `ValidationError`) whose `field` is the dotted path of the
    first problem, e.g. ``actions[0].per``, prefixed with `field_prefix` when given (an API can
    pass ``"definition"``); `problems` lists every problem found.
    """
    root = field_prefix or None
    if isinstance(data, str | bytes):
        try:
            data = json.loads(
                data, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
            )
        except json.JSONDecodeError as exc:
            raise RuleDefinitionError(
                f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field=root
            ) from None
        except _DuplicateKeyError as exc:
            raise RuleDefinitionError(
                f"is not valid: the key {exc.args[0]!r} appears twice in one object", field=root
            ) from None
        except ValueError as exc:
            raise RuleDefinitionError(f"is not valid JSON: {exc}", field=root) from None
    if not isinstance(data, Mapping):
        raise RuleDefinitionError(f"must be a JSON object, got {type(data).__name__}", field=root)
    try:
        return RuleDefinition.model_validate(dict(data))
    except PydanticValidationError as exc:
        errors = exc.errors()
        problems = tuple(
            (_path(error["loc"], error["type"], field_prefix), _message(error))
            for error in errors
            if not _is_consequence(error, errors)
        )
        field, message = problems[0]
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        raise RuleDefinitionError(message, field=field, problems=problems) from None


def dump_rule_definition(definition: RuleDefinition) -> dict[str, Any]:
    """The canonical JSON-ready form of `definition`, which parses back to an equal one."""
    return definition.model_dump(mode="json", exclude_none=True)
