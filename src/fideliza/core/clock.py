"""Clocks are passed in, so domain logic never calls datetime.now() itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from fideliza.core.errors import ValidationError


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests: stays where it is put, moves only when told."""

    def __init__(self, at: datetime) -> None:
        self._at = require_aware(at, field="at")

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at = self._at + delta

    def set(self, at: datetime) -> None:
        self._at = require_aware(at, field="at")


def require_aware(value: datetime, *, field: str) -> datetime:
    """Returns `value` converted to UTC, refusing a naive timestamp."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError("must carry a timezone (e.g. 2025-03-01T10:00:00+01:00)", field=field)
    return value.astimezone(UTC)


def parse_timestamp(value: object, *, field: str) -> datetime:
    """Parses an ISO 8601 timestamp with timezone into an aware UTC datetime."""
    if isinstance(value, datetime):
        return require_aware(value, field=field)
    if not isinstance(value, str):
        raise ValidationError(f"must be an ISO 8601 timestamp, got {value!r}", field=field)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"is not an ISO 8601 timestamp: {value!r}", field=field) from None
    return require_aware(parsed, field=field)
