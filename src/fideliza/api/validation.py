"""Input hygiene shared by every route: bodies the database could not store are refused first.

PostgreSQL refuses NUL characters in text and JSON, lone UTF-16 surrogates cannot be encoded,
and numbers past 64 bits overflow a BIGINT: each would surface as a 500 deep inside a service.
Here they become a 422 that names the field.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query, Request
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from fideliza.core.errors import ValidationError
from fideliza.core.validation import Timestamp as Timestamp  # the routes take it from here
from fideliza.core.validation import field_path, whole_number

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
        _state_decimal_text(node)
        kind = node.get("type")
        if kind == "integer":
            _exact_bounds(node)
        elif kind == "string" and not node.keys() & {"pattern", "format", "enum", "const"}:
            node["pattern"] = NO_NUL
        elif kind == "object" and node.get("additionalProperties") not in (None, False):
            node.setdefault("propertyNames", {}).setdefault("pattern", NO_NUL)
            if node["additionalProperties"] in (True, {}):
                node["additionalProperties"] = {"$ref": _JSON_VALUE}
        stack.extend(value for key, value in node.items() if key not in _NOT_SCHEMAS)
    return openapi


# Decimal text as the columns (NUMERIC(18, 4)) keep it: 14 digits before the point, 4 after.
_DIGITS = r"[0-9]{1,14}(\.[0-9]{1,4})?"
_DECIMAL_TEXT = {
    "signed": rf"^-?{_DIGITS}$",
    "non_negative": rf"^{_DIGITS}$",
    "positive": r"^0*([1-9][0-9]{0,13}(\.[0-9]{1,4})?"
    r"|\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$",
}


def _decimal_branches(node: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
    # Pydantic writes a Decimal as a number or any string: `{"anyOf": [number, string(, null)]}`.
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return None
    for index, branch in enumerate(branches[:-1]):
        if branch.get("type") == "number" and branches[index + 1] == {"type": "string"}:
            return branch, index + 1
    return None


def _state_decimal_text(node: dict[str, Any]) -> None:
    """The text a Decimal accepts, within the number's bounds: a pattern states a lower bound of
    zero; a number with an upper bound is documented as a number only."""
    found = _decimal_branches(node)
    if found is None:
        return
    number, text = found
    if number.keys() & {"maximum", "exclusiveMaximum"}:
        del node["anyOf"][text]
        if len(node["anyOf"]) == 1:
            node.update(node.pop("anyOf")[0])
        return
    if number.get("exclusiveMinimum") == 0:
        sign = "positive"
    elif number.get("minimum") == 0:
        sign = "non_negative"
    else:
        sign = "signed"
    node["anyOf"][text] = {"type": "string", "pattern": _DECIMAL_TEXT[sign], "examples": ["12.50"]}


def _exact_bounds(node: dict[str, Any]) -> None:
    # After a BeforeValidator (`whole_number`), Pydantic leaves `ge`/`gt`/`le`/`lt` as they were
    # written instead of JSON Schema's words: translate them.
    for word, shift in (("ge", 0), ("gt", 1)):
        if word in node:
            node["minimum"] = max(node.get("minimum", -MAX_INT), math.ceil(node.pop(word)) + shift)
    for word, shift in (("le", 0), ("lt", -1)):
        if word in node:
            node["maximum"] = min(node.get("maximum", MAX_INT), math.floor(node.pop(word)) + shift)
    # Pydantic writes `le=2**63 - 1` as the float 2**63: one past what is accepted.
    node["minimum"] = max(math.ceil(node.get("minimum", -MAX_INT)), -MAX_INT)
    node["maximum"] = min(math.floor(node.get("maximum", MAX_INT)), MAX_INT)


async def checked_body(request: Request) -> Any:
    """A dependency of every route: the path and query checked against the OpenAPI, and the
    parsed JSON body, checked (FastAPI runs it once, before the route's other dependencies)."""
    _check_against_openapi(request)
    return parse_json_body(await request.body())


def _check_against_openapi(request: Request) -> None:
    template = getattr(request.scope.get("route"), "path_format", None)
    if template is None:
        return
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    path = request.url.path
    if path != template and path in paths:
        # `PATCH /v1/members/lookup` fits `/v1/members/{member_id}`, but a literal path is a
        # resource of its own, which has no PATCH: 405 with its methods, not a bad member id.
        raise HTTPException(405)
    if request.query_params:
        # A misspelt filter (`?stauts=closed`) would silently return everything: refuse it.
        operation = paths.get(template, {}).get(request.method.lower(), {})
        known = {p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"}
        for name in request.query_params:
            if name not in known:
                raise ValidationError("is not a known query parameter", field=name or "query")


# --- field types --------------------------------------------------------------------------------


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


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


DecimalText = Annotated[
    str,
    BeforeValidator(_decimal_text),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["12.50"]}),
]
Points = Annotated[int, BeforeValidator(whole_number), Field(strict=True, ge=1, le=MAX_POINTS)]
# Zero moves nothing: the schema leaves it out as the validator does (two ranges, either sign).
NonZeroPoints = Annotated[
    int,
    BeforeValidator(whole_number),
    Field(strict=True, ge=-MAX_POINTS, le=MAX_POINTS),
    AfterValidator(_not_zero),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
                {"type": "integer", "minimum": -MAX_POINTS, "maximum": -1},
            ]
        }
    ),
]
ExternalId = Annotated[str, Field(min_length=1, max_length=100)]
Reason = Annotated[str, Field(min_length=1, max_length=400)]
IdPath = Annotated[int, Path(ge=1, le=MAX_INT)]
Limit = Annotated[int, Query(ge=1, le=200, description="How many items per page.")]
