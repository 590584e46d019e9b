"""Input hygiene shared by every route: bodies the database could not store are refused first.

PostgreSQL refuses NUL characters in text and JSON, lone UTF-16 surrogates cannot be encoded,
and numbers past 64 bits overflow a BIGINT: each would surface as a 500 deep inside a service.
Here they become a 422 that names the field.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Path, Query, Request
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

from fideliza.core.errors import ValidationError
from fideliza.core.validation import field_path

MAX_DEPTH = 32
MAX_INT = 2**63 - 1
MAX_POINTS = 10**12
MAX_MONEY_DIGITS = 14  # digits before the decimal point: the columns are NUMERIC(18, 4)


def parse_json_body(raw: bytes) -> Any:
    """The JSON of a request body (None when empty), refusing what cannot be stored."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationError("is not valid JSON", field="body") from None
    _check_storable(value)
    return value


def _check_storable(value: Any) -> None:
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, location = stack.pop()
        if len(location) > MAX_DEPTH:
            raise ValidationError(f"is nested deeper than {MAX_DEPTH} levels", field=_at(location))
        if isinstance(item, str):
            _check_text(item, location)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -MAX_INT <= item <= MAX_INT:
                raise ValidationError("is out of range (64-bit integers)", field=_at(location))
        elif isinstance(item, dict):
            for name, member in item.items():
                _check_text(name, location)
                stack.append((member, (*location, name)))
        elif isinstance(item, list):
            stack.extend((member, (*location, index)) for index, member in enumerate(item))


def _check_text(text: str, location: tuple[int | str, ...]) -> None:
    if "\x00" in text:
        raise ValidationError("must not contain NUL characters", field=_at(location))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("is not valid Unicode text", field=_at(location)) from None


def _at(location: tuple[int | str, ...]) -> str:
    return field_path(location) or "body"


NO_NUL = r"^[^\x00]*$"
_NOT_SCHEMAS = frozenset({"example", "examples", "default", "enum", "const"})
_JSON_VALUE = "#/components/schemas/JsonValue"
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value the database can store: no NUL characters, 64-bit integers.",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": -MAX_INT, "maximum": MAX_INT},
        {"type": "number", "minimum": -MAX_INT, "maximum": MAX_INT},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": _JSON_VALUE}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": _JSON_VALUE},
        },
    ],
}


def document_storable_limits(openapi: dict[str, Any]) -> dict[str, Any]:
    """Writes into an OpenAPI document what `_check_storable` refuses in every request.

    Integers beyond 64 bits and text with NUL characters get a 422 whatever the route, so every
    integer schema gets exact 64-bit bounds, every free text (and map key) a pattern without NUL,
    and free-form JSON (`attributes`) the `JsonValue` schema: clients and fuzzers then learn it
    from the schema rather than from the refusal.
    """
    openapi.setdefault("components", {}).setdefault("schemas", {})["JsonValue"] = JSON_VALUE_SCHEMA
    stack: list[Any] = [openapi]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict) or node is JSON_VALUE_SCHEMA:
            continue
        kind = node.get("type")
        if kind == "integer":
            _exact_bounds(node)
        elif kind == "string" and not node.keys() & {"pattern", "format", "enum", "const"}:
            node["pattern"] = NO_NUL
        elif kind == "object" and node.get("additionalProperties") not in (None, False):
            node.setdefault("propertyNames", {"pattern": NO_NUL})
            if node["additionalProperties"] in (True, {}):
                node["additionalProperties"] = {"$ref": _JSON_VALUE}
        stack.extend(value for key, value in node.items() if key not in _NOT_SCHEMAS)
    return openapi


def _exact_bounds(node: dict[str, Any]) -> None:
    # Pydantic writes `le=2**63 - 1` as the float 2**63: one past what is accepted.
    node["minimum"] = max(math.ceil(node.get("minimum", -MAX_INT)), -MAX_INT)
    node["maximum"] = min(math.floor(node.get("maximum", MAX_INT)), MAX_INT)


async def checked_body(request: Request) -> Any:
    """A dependency of every route: the parsed JSON body, checked (FastAPI runs it once)."""
    return parse_json_body(await request.body())


# --- field types --------------------------------------------------------------------------------


def _decimal_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError('must be a decimal number written as a string, such as "12.50"')
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"is not a decimal number: {text!r}") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number and number.adjusted() >= MAX_MONEY_DIGITS:
        raise ValueError(f"is too large (at most {MAX_MONEY_DIGITS} digits before the point)")
    return text


# Plausible dates only: far-off years overflow date arithmetic (expiry, windows) downstream.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be between 1970 and 2200")
    return value


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_plausible),
    Field(description="ISO 8601 with its time zone, e.g. 2025-03-10T09:30:00+01:00"),
]
DecimalText = Annotated[
    str,
    BeforeValidator(_decimal_text),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["12.50"]}),
]
Points = Annotated[int, Field(strict=True, ge=1, le=MAX_POINTS)]
SignedPoints = Annotated[int, Field(strict=True, ge=-MAX_POINTS, le=MAX_POINTS)]
ExternalId = Annotated[str, Field(min_length=1, max_length=100)]
Reason = Annotated[str, Field(min_length=1, max_length=400)]
IdPath = Annotated[int, Path(ge=1, le=MAX_INT)]
Limit = Annotated[int, Query(ge=1, le=200, description="How many items per page.")]
