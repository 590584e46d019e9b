"""Cursor pagination: an opaque cursor names where the next page starts.

Cursors are stable under inserts (unlike offsets): a page never repeats or skips an item
because something was added meanwhile.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from fideliza.api.validation import MAX_INT
from fideliza.core.errors import ValidationError

T = TypeVar("T")

CursorQuery = Annotated[
    str | None,
    Query(max_length=64, description="The `next_cursor` of the previous page."),
]


class Page(BaseModel, Generic[T]):
    """A page of items; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(position: int) -> str:
    """An opaque cursor for a position (a row id)."""
    return base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position a cursor names (None for the first page); 422 for a cursor not ours."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, position = text.partition(":")
        value = int(position) if version == "v1" and position.isdigit() else -1
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = -1
    if not 0 < value <= MAX_INT:
        raise ValidationError("is not a cursor this API gave", field="cursor")
    return value
