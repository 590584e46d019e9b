"""Turns Pydantic's errors into ours: one error naming the field path and the problem."""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic

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
