"""Turns Pydantic's errors into ours: one error naming the field path and the problem."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from fideliza.core.errors import ValidationError

M = TypeVar("M", bound=pydantic.BaseModel)


def field_path(location: tuple[int | str, ...]) -> str:
    """Renders a Pydantic location as `actions[0].per`."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def as_validation_error(error: pydantic.ValidationError, *, prefix: str = "") -> ValidationError:
    """The first problem of a Pydantic error, as a ValidationError naming its field."""
    first = error.errors()[0]
    path = field_path(tuple(first["loc"]))
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "is not a known field"
    elif first["type"] == "missing":
        message = "is required"
    return ValidationError(message, field=path or None)


def validate(model: type[M], data: Any, *, prefix: str = "") -> M:
    """Validates `data` into `model`, raising our ValidationError on the first problem."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        raise as_validation_error(error, prefix=prefix) from None


# --- field types whose OpenAPI states the whole rule -------------------------------------------


def whole_number(value: object) -> object:
    """JSON Schema's `integer` includes 5.0: taken as 5, while "5", 5.5 and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _not_a_number(value: object) -> object:
    # Pydantic would read 0 (or "0") as 1970-01-01: a date is written as ISO 8601 text.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be written as ISO 8601 text, not a number")
    return value


def _plausible_year(value: datetime) -> datetime:
    # The year as written (what the pattern states); far-off years overflow date arithmetic.
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be between {FIRST_YEAR} and {LAST_YEAR + 1}")  # 2200 excluded
    return value


_NUMBER = re.compile(r"\s*[-+]?[0-9]+(\.[0-9]*)?\s*")
FIRST_YEAR, LAST_YEAR = 1970, 2199
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_not_a_number),
    AfterValidator(_plausible_year),
    Field(
        description="ISO 8601 with its time zone, e.g. 2025-03-10T09:30:00+01:00; years 1970-2199",
        json_schema_extra={"pattern": r"^(19[7-9][0-9]|2[01][0-9][0-9])-"},
    ),
]
# A calendar date as ISO 8601 text (never a number of seconds).
Date = Annotated[date, BeforeValidator(_not_a_number)]
# Text with something besides spaces (Python's and Unicode's, which are stripped before it counts)
# and never a NUL: what a required text field keeps once trimmed.
_SPACES = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NotBlank = Annotated[
    str, Field(json_schema_extra={"pattern": rf"^[^\x00]*[^\x00{_SPACES}][^\x00]*$"})
]
# A JSON integer: 5 or 5.0, never "5", 5.5 or true.
WholeNumber = Annotated[int, BeforeValidator(whole_number), Field(strict=True)]
