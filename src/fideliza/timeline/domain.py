"""The member timeline, pure: items, their total order, the cursor and the k-way merge.

Items from different tables can share a timestamp and their ids are per table, so the order
is (at, source, id), newest first, and the cursor names all three: a page never repeats or
skips an item, whatever is added meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fideliza.core.clock import require_aware
from fideliza.core.errors import ValidationError

MAX_LIMIT = 200
_CURSOR_VERSION = "t1"


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One thing that happened to a member, from one source (`kind`) and one row (`id`)."""

    kind: str
    id: int
    at: datetime
    summary: str
    points: int | None = None
    amount: Decimal | None = None
    reference: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def position(self) -> Position:
        return Position(self.at, self.kind, self.id)


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an item sits in the timeline (compared as a tuple: at, kind, id)."""

    at: datetime
    kind: str
    id: int


def encode_cursor(position: Position) -> str:
    """An opaque cursor for the position of the last item of a page."""
    text = f"{_CURSOR_VERSION}|{position.at.isoformat()}|{position.kind}|{position.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    """The position a cursor names (None for the first page); an error for one not ours."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, at, kind, row_id = text.split("|")
        if version != _CURSOR_VERSION or not row_id.isdigit() or not kind:
            raise ValueError(text)
        return Position(
            require_aware(datetime.fromisoformat(at), field="before"), kind, int(row_id)
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, ValidationError):
        raise ValidationError("is not a cursor this timeline gave", field="before") from None


def parse_kinds(kinds: Iterable[str] | None, available: Sequence[str]) -> list[str]:
    """The sources asked for (all when None), refusing names that are not sources."""
    if kinds is None:
        return list(available)
    chosen = []
    for index, kind in enumerate(kinds):
        if kind not in available:
            raise ValidationError(
                f"unknown kind {kind!r}; the timeline has: {', '.join(available)}",
                field=f"kinds[{index}]",
            )
        if kind not in chosen:
            chosen.append(kind)
    if not chosen:
        raise ValidationError("give at least one kind (or none for all)", field="kinds")
    return chosen


def require_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


@dataclass(frozen=True, slots=True)
class TimelinePage:
    items: list[TimelineItem]
    next_cursor: str | None


def merge_newest_first(streams: Sequence[Sequence[TimelineItem]], limit: int) -> TimelinePage:
    """K-way merge of streams each sorted newest first; `limit` items and the next cursor.

    Each stream holds at most `limit + 1` items, so one more than a page tells whether a
    next page exists without reading it.
    """
    merged = heapq.merge(*streams, key=lambda item: item.position, reverse=True)
    items: list[TimelineItem] = []
    more = False
    for item in merged:
        if len(items) == limit:
            more = True
            break
        items.append(item)
    return TimelinePage(items, encode_cursor(items[-1].position) if more else None)
