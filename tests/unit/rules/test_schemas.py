"""Rule definitions: what is accepted, what it means, and errors that name the field in error."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from fideliza.core.errors import ValidationError
from fideliza.core.points import Rounding
from fideliza.rules.schemas import (
    FixedBonus,
    Multiplier,
    PointsPerAmount,
    PointsPerItem,
    RuleDefinition,
    RuleDefinitionError,
    dump_rule_definition,
    parse_rule_definition,
)

FULL: dict[str, Any] = {
    "schema_version": 1,
    "name": "Coffee lovers",
    "priority": 50,
    "activity": "purchase",
    "conditions": {
        "min_amount": "20.00",
        "max_amount": "500.00",
        "items": {
            "include_skus": ["ESP-1"],
            "exclude_skus": ["GIFT-CARD"],
            "include_categories": ["coffee"],
            "exclude_categories": ["tobacco"],
            "min_quantity": 2,
        },
        "channels": ["store", "app"],
        "stores": ["S1"],
        "weekdays": ["mon", "tue"],
        "time_window": {"start": "22:00", "end": "02:00"},
        "date_range": {"start": "2025-01-01", "end": "2025-01-31"},
        "tiers": ["GOLD"],
        "attributes": {"segment": ["student", "senior"], "city": "Madrid", "vip": True},
        "event_attributes": {"source": "qr"},
        "first_purchase": False,
        "birthday": "month",
    },
    "actions": [
        {"type": "points_per_amount", "points": 1, "per": "1.00", "rounding": "half_up"},
        {"type": "points_per_item", "points": 5},
        {"type": "fixed_bonus", "points": 100},
        {"type": "multiplier", "factor": "1.5"},
    ],
    "caps": {"per_transaction": 500, "per_day": 1000, "per_month": 5000, "per_member": 20000},
}


def minimal(**fields: Any) -> dict[str, Any]:
    """A valid definition with `fields` replaced."""
    data: dict[str, Any] = {"name": "Base", "actions": [{"type": "fixed_bonus", "points": 10}]}
    data.update(fields)
    return data


def with_conditions(**conditions: Any) -> dict[str, Any]:
    return minimal(conditions=conditions)


def error_of(data: Any, **kwargs: Any) -> RuleDefinitionError:
    with pytest.raises(RuleDefinitionError) as caught:
        parse_rule_definition(data, **kwargs)
    return caught.value


# --- what is accepted, and how it reads back ---


def test_a_full_definition_parses_into_typed_values() -> None:
    rule = parse_rule_definition(FULL)

    assert rule.name == "Coffee lovers"
    assert rule.priority == 50
    conditions = rule.conditions
    assert conditions.min_amount == Decimal("20.00")
    assert conditions.max_amount == Decimal("500.00")
    assert conditions.items is not None
    assert conditions.items.include_skus == ("ESP-1",)
    assert conditions.items.min_quantity == 2
    assert conditions.weekdays == ("mon", "tue")
    assert conditions.time_window is not None
    assert (conditions.time_window.start, conditions.time_window.end) == ("22:00", "02:00")
    assert conditions.date_range is not None
    assert conditions.date_range.start == date(2025, 1, 1)
    assert conditions.date_range.end == date(2025, 1, 31)
    assert conditions.attributes == {
        "segment": ("student", "senior"),
        "city": "Madrid",
        "vip": True,
    }
    assert conditions.first_purchase is False
    assert conditions.birthday == "month"
    per_amount, per_item, bonus, multiplier = rule.actions
    assert per_amount == PointsPerAmount(
        type="points_per_amount", points=1, per=Decimal("1.00"), rounding=Rounding.HALF_UP
    )
    assert per_item == PointsPerItem(type="points_per_item", points=5)
    assert bonus == FixedBonus(type="fixed_bonus", points=100)
    assert multiplier == Multiplier(type="multiplier", factor=Decimal("1.5"), rounding=None)
    assert rule.caps is not None
    assert rule.caps.per_transaction == 500
    assert rule.caps.budget is None


def test_defaults_priority_100_purchase_per_one_and_the_programs_rounding() -> None:
    rule = parse_rule_definition(
        {"name": "  Base  ", "actions": [{"type": "points_per_amount", "points": 1}]}
    )

    assert rule.schema_version == 1
    assert rule.name == "Base"
    assert rule.priority == 100
    assert rule.activity == "purchase"
    assert rule.conditions.model_dump(exclude_none=True) == {}
    assert rule.actions[0] == PointsPerAmount(
        type="points_per_amount", points=1, per=Decimal("1.00"), rounding=None
    )
    assert rule.caps is None


def test_custom_event_types_are_any_lowercase_name() -> None:
    for kind in ("store_visit", "review_written", "survey_answered", "event_attended"):
        assert parse_rule_definition(minimal(activity=kind)).activity == kind


def test_money_and_factors_accept_decimal_strings_and_integers() -> None:
    rule = parse_rule_definition(
        minimal(
            conditions={"min_amount": 20, "max_amount": "20.5"},
            actions=[
                {"type": "points_per_amount", "points": 3, "per": 2},
                {"type": "multiplier", "factor": 2},
            ],
        )
    )

    assert rule.conditions.min_amount == Decimal(20)
    assert rule.conditions.max_amount == Decimal("20.5")
    assert rule.actions[0] == PointsPerAmount(type="points_per_amount", points=3, per=Decimal(2))
    assert rule.actions[1] == Multiplier(type="multiplier", factor=Decimal(2))


def test_json_text_and_bytes_parse_like_the_mapping() -> None:
    text = json.dumps(FULL)

    assert parse_rule_definition(text) == parse_rule_definition(FULL)
    assert parse_rule_definition(text.encode()) == parse_rule_definition(FULL)


def test_dump_is_json_ready_and_parses_back_to_an_equal_definition() -> None:
    rule = parse_rule_definition(FULL)

    dumped = dump_rule_definition(rule)

    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped["conditions"]["min_amount"] == "20.00"
    assert dumped["conditions"]["date_range"] == {"start": "2025-01-01", "end": "2025-01-31"}
    assert dumped["conditions"]["attributes"]["segment"] == ["student", "senior"]
    assert dumped["actions"][3] == {"type": "multiplier", "factor": "1.5"}
    assert parse_rule_definition(dumped) == rule
    assert parse_rule_definition(json.dumps(dumped)) == rule


def test_open_ended_date_ranges_and_equal_amount_bounds_are_allowed() -> None:
    rule = parse_rule_definition(
        with_conditions(date_range={"start": "2025-03-01"}, min_amount="10.00", max_amount="10.00")
    )

    assert rule.conditions.date_range is not None
    assert rule.conditions.date_range.end is None
    assert rule.conditions.max_amount == Decimal("10.00")


def test_a_parsed_definition_is_immutable() -> None:
    rule = parse_rule_definition(FULL)

    with pytest.raises(pydantic.ValidationError):
        rule.name = "Other"


# --- malformed definitions: each error names the field path ---

MALFORMED: list[tuple[str, Any, str, str]] = [
    # (case, definition, field, part of the message)
    ("missing name", {"actions": [{"type": "fixed_bonus", "points": 1}]}, "name", "is required"),
    ("blank name", minimal(name="   "), "name", "at least 1 character"),
    ("name not a string", minimal(name=5), "name", "valid string"),
    ("missing actions", {"name": "x"}, "actions", "is required"),
    ("no actions", minimal(actions=[]), "actions", "needs at least one action"),
    ("actions not a list", minimal(actions="bonus"), "actions", "must be a JSON array"),
    ("unknown top field", minimal(bogus=1), "bogus", "is not a field"),
    (
        "unknown action field",
        minimal(actions=[{"type": "fixed_bonus", "points": 1, "per": "1"}]),
        "actions[0].per",
        "is not a field",
    ),
    (
        "unknown action type",
        minimal(actions=[{"type": "cashback", "points": 1}]),
        "actions[0].type",
        "must be one of fixed_bonus, multiplier",
    ),
    ("action without type", minimal(actions=[{"points": 1}]), "actions[0].type", "is required"),
    (
        "float points",
        minimal(actions=[{"type": "fixed_bonus", "points": 1.5}]),
        "actions[0].points",
        "integer number of points, got 1.5",
    ),
    (
        "integral float points",
        minimal(actions=[{"type": "fixed_bonus", "points": 10.0}]),
        "actions[0].points",
        "integer number of points, got 10.0",
    ),
    (
        "string points",
        minimal(actions=[{"type": "fixed_bonus", "points": "10"}]),
        "actions[0].points",
        "integer number of points, got '10'",
    ),
    (
        "boolean points",
        minimal(actions=[{"type": "fixed_bonus", "points": True}]),
        "actions[0].points",
        "integer number of points, got True",
    ),
    (
        "zero points",
        minimal(actions=[{"type": "points_per_item", "points": 0}]),
        "actions[0].points",
        "greater than or equal to 1, got 0",
    ),
    (
        "float per",
        minimal(actions=[{"type": "points_per_amount", "points": 1, "per": 1.0}]),
        "actions[0].per",
        "got the float 1.0",
    ),
    (
        "zero per",
        minimal(actions=[{"type": "points_per_amount", "points": 1, "per": "0.00"}]),
        "actions[0].per",
        "must be greater than 0",
    ),
    (
        "per not a number",
        minimal(actions=[{"type": "points_per_amount", "points": 1, "per": "x"}]),
        "actions[0].per",
        "decimal string",
    ),
    (
        "per in exponent form",
        minimal(actions=[{"type": "points_per_amount", "points": 1, "per": "1e2"}]),
        "actions[0].per",
        "decimal string",
    ),
    (
        "per NaN",
        minimal(actions=[{"type": "points_per_amount", "points": 1, "per": "NaN"}]),
        "actions[0].per",
        "decimal string",
    ),
    (
        "bad rounding",
        minimal(actions=[{"type": "points_per_amount", "points": 1, "rounding": "up"}]),
        "actions[0].rounding",
        "'floor', 'half_up', 'half_even' or 'ceiling', got 'up'",
    ),
    (
        "factor of 1",
        minimal(actions=[{"type": "multiplier", "factor": "1"}]),
        "actions[0].factor",
        "greater than 1 and at most 100",
    ),
    (
        "factor below 1",
        minimal(actions=[{"type": "multiplier", "factor": "0.5"}]),
        "actions[0].factor",
        "greater than 1",
    ),
    (
        "factor too large",
        minimal(actions=[{"type": "multiplier", "factor": "250"}]),
        "actions[0].factor",
        "at most 100",
    ),
    (
        "float factor",
        minimal(actions=[{"type": "multiplier", "factor": 2.0}]),
        "actions[0].factor",
        "got the float 2.0",
    ),
    (
        "second action wrong",
        minimal(actions=[{"type": "fixed_bonus", "points": 1}, {"type": "fixed_bonus"}]),
        "actions[1].points",
        "is required",
    ),
    ("priority as string", minimal(priority="1"), "priority", "must be an integer, got '1'"),
    ("bad activity", minimal(activity="Store Visit"), "activity", "custom event type"),
    ("unknown schema version", minimal(schema_version=2), "schema_version", "must be 1"),
    ("conditions not an object", minimal(conditions=[]), "conditions", "must be a JSON object"),
    ("unknown condition", with_conditions(weekday=["mon"]), "conditions.weekday", "not a field"),
    (
        "negative min_amount",
        with_conditions(min_amount="-1.00"),
        "conditions.min_amount",
        "must not be negative",
    ),
    (
        "float min_amount",
        with_conditions(min_amount=20.0),
        "conditions.min_amount",
        "got the float 20.0",
    ),
    (
        "max below min",
        with_conditions(min_amount="50.00", max_amount="20.00"),
        "conditions.max_amount",
        "must not be below min_amount (50.00)",
    ),
    ("empty channels", with_conditions(channels=[]), "conditions.channels", "must not be empty"),
    ("blank store", with_conditions(stores=[""]), "conditions.stores[0]", "at least 1 character"),
    (
        "bad weekday",
        with_conditions(weekdays=["monday"]),
        "conditions.weekdays[0]",
        "'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'",
    ),
    (
        "weekdays not a list",
        with_conditions(weekdays="mon"),
        "conditions.weekdays",
        "must be a JSON array",
    ),
    (
        "bad time",
        with_conditions(time_window={"start": "8:00", "end": "11:00"}),
        "conditions.time_window.start",
        "HH:MM",
    ),
    (
        "hour 24",
        with_conditions(time_window={"start": "08:00", "end": "24:00"}),
        "conditions.time_window.end",
        "HH:MM",
    ),
    (
        "empty time window",
        with_conditions(time_window={"start": "08:00", "end": "08:00"}),
        "conditions.time_window.end",
        "must differ from start",
    ),
    (
        "time window without end",
        with_conditions(time_window={"start": "08:00"}),
        "conditions.time_window.end",
        "is required",
    ),
    (
        "impossible date",
        with_conditions(date_range={"start": "2025-02-30"}),
        "conditions.date_range.start",
        "YYYY-MM-DD",
    ),
    (
        "date not ISO",
        with_conditions(date_range={"start": "01/02/2025"}),
        "conditions.date_range.start",
        "YYYY-MM-DD",
    ),
    (
        "date range reversed",
        with_conditions(date_range={"start": "2025-02-01", "end": "2025-01-31"}),
        "conditions.date_range.end",
        "must not be before start (2025-02-01)",
    ),
    (
        "date range unbounded",
        with_conditions(date_range={}),
        "conditions.date_range",
        "needs a start, an end or both",
    ),
    (
        "sku both included and excluded",
        with_conditions(items={"include_skus": ["A", "B"], "exclude_skus": ["B"]}),
        "conditions.items.exclude_skus",
        "B also appear in include_skus",
    ),
    (
        "category both included and excluded",
        with_conditions(items={"include_categories": ["tea"], "exclude_categories": ["tea"]}),
        "conditions.items.exclude_categories",
        "tea also appear in include_categories",
    ),
    (
        "zero min_quantity",
        with_conditions(items={"min_quantity": 0}),
        "conditions.items.min_quantity",
        "greater than or equal to 1",
    ),
    (
        "unknown items field",
        with_conditions(items={"skus": ["A"]}),
        "conditions.items.skus",
        "not a field",
    ),
    (
        "float attribute",
        with_conditions(attributes={"age": 30.5}),
        "conditions.attributes.age",
        "got 30.5",
    ),
    (
        "empty attribute list",
        with_conditions(attributes={"segment": []}),
        "conditions.attributes.segment",
        "must not be empty",
    ),
    (
        "null in attribute list",
        with_conditions(event_attributes={"source": ["qr", None]}),
        "conditions.event_attributes.source",
        "got None",
    ),
    (
        "first_purchase as 1",
        with_conditions(first_purchase=1),
        "conditions.first_purchase",
        "valid boolean, got 1",
    ),
    (
        "bad birthday",
        with_conditions(birthday="year"),
        "conditions.birthday",
        "'day' or 'month', got 'year'",
    ),
    ("negative cap", minimal(caps={"per_day": -1}), "caps.per_day", "greater than or equal to 0"),
    ("float cap", minimal(caps={"budget": 1000.0}), "caps.budget", "got 1000.0"),
    ("unknown cap", minimal(caps={"per_week": 10}), "caps.per_week", "not a field"),
]


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_definitions_name_the_field(definition: Any, field: str, message: str) -> None:
    error = error_of(definition)

    assert isinstance(error, ValidationError)
    assert error.code == "validation_error"
    assert error.field == field
    assert message in error.message


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_json_text_names_the_same_field(
    definition: Any, field: str, message: str
) -> None:
    error = error_of(json.dumps(definition))

    assert error.field == field
    assert message in error.message


def test_every_problem_is_listed_and_the_message_counts_the_others() -> None:
    error = error_of(
        {
            "name": "",
            "actions": [{"type": "points_per_amount", "points": 0, "per": "0"}],
            "caps": {"per_day": -5},
        }
    )

    assert error.problems == (
        ("name", "must have at least 1 character, got ''"),
        ("actions[0].points", "must be greater than or equal to 1, got 0"),
        ("actions[0].per", "must be greater than 0, got 0"),
        ("caps.per_day", "must be greater than or equal to 0, got -5"),
    )
    assert error.field == "name"
    assert error.message == "must have at least 1 character, got '' (and 3 more problems)"


def test_field_prefix_places_the_path_inside_a_request_body() -> None:
    error = error_of(
        minimal(actions=[{"type": "points_per_amount", "points": 1, "per": "-1"}]),
        field_prefix="definition",
    )

    assert error.field == "definition.actions[0].per"
    assert str(error) == "definition.actions[0].per: must be greater than 0, got -1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "x", "actions": [', "is not valid JSON: Expecting value at line 1 column 27"),
        ('{"name": "x",}', "is not valid JSON: Expecting property name enclosed in double quotes"),
        ('{"name": "a", "name": "b"}', "the key 'name' appears twice in one object"),
        ('{"name": "x", "priority": NaN}', "NaN is not a number JSON allows"),
        ('{"name": "x", "priority": Infinity}', "Infinity is not a number JSON allows"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"rule"', "must be a JSON object, got str"),
    ],
)
def test_text_that_is_not_a_json_object_is_refused(text: str, message: str) -> None:
    error = error_of(text, field_prefix="definition")

    assert error.field == "definition"
    assert message in error.message


def test_root_problems_without_a_prefix_have_no_field() -> None:
    error = error_of("[]")

    assert error.field is None
    assert str(error) == "must be a JSON object, got list"


def test_a_model_instance_is_the_schema_of_record() -> None:
    # The JSON Schema is what the admin UI and API docs show: it must forbid unknown fields.
    schema = RuleDefinition.model_json_schema()

    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "actions"}
