"""Complaints (cases), pure: the state machine, SLA deadlines by severity and breach flags.

No I/O here: the service loads a case, asks these functions what may happen, and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from fideliza.core.errors import InvalidState, ValidationError


class CaseState(StrEnum):
    """Where a case stands: open → in_progress → resolved → closed; resolved/closed reopen."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Category(StrEnum):
    """What the complaint is about (reports group by it)."""

    PRODUCT = "product"
    SERVICE = "service"
    BILLING = "billing"
    POINTS = "points"
    REWARD = "reward"
    DELIVERY = "delivery"
    STAFF = "staff"
    OTHER = "other"


class Channel(StrEnum):
    """How the complaint reached the business."""

    STORE = "store"
    PHONE = "phone"
    EMAIL = "email"
    WEB = "web"
    APP = "app"
    SOCIAL = "social"
    OTHER = "other"


class OpenedBy(StrEnum):
    """Who opened the case: the member (portal, app) or staff on their behalf."""

    MEMBER = "member"
    STAFF = "staff"


class EventKind(StrEnum):
    """The kinds of lines of a case's append-only history."""

    OPENED = "opened"
    ASSIGNED = "assigned"
    MOVED = "moved"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    NOTE = "note"
    BREACHED = "breached"


# Which state may follow which. Resolving straight from `open` is allowed (a complaint settled
# on the spot at the counter); closing needs a resolution first; reopening goes back to `open`.
TRANSITIONS: dict[CaseState, frozenset[CaseState]] = {
    CaseState.OPEN: frozenset({CaseState.IN_PROGRESS, CaseState.RESOLVED}),
    CaseState.IN_PROGRESS: frozenset({CaseState.RESOLVED}),
    CaseState.RESOLVED: frozenset({CaseState.CLOSED, CaseState.OPEN}),
    CaseState.CLOSED: frozenset({CaseState.OPEN}),
}
# Reached only through `resolve` (which records the resolution) and `reopen` (which counts it).
GUARDED_TARGETS = {CaseState.RESOLVED: "resolve", CaseState.OPEN: "reopen"}


def allowed_from(state: CaseState) -> list[str]:
    """The states a case in `state` may move to, sorted (for error messages and UIs)."""
    return sorted(target.value for target in TRANSITIONS[state])


def parse_choice(value: object, choices: type[StrEnum], *, field: str) -> Any:
    """`value` as a member of `choices`, or an error naming the field and the valid values."""
    if isinstance(value, str):
        try:
            return choices(value)
        except ValueError:
            pass
    names = ", ".join(choice.value for choice in choices)
    raise ValidationError(f"must be one of {names}; got {value!r}", field=field)


def require_transition(current: CaseState, target: CaseState) -> None:
    """Refuses a move the state machine does not allow, saying what is allowed from here."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(allowed_from(current)) or "none"
        raise InvalidState(
            f"cannot go from {current.value} to {target.value}; "
            f"allowed from {current.value}: {allowed}",
            field="state",
        )


# --- SLA -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sla:
    """How soon a case of one severity must get a first response and a resolution."""

    first_response: timedelta
    resolution: timedelta


DEFAULT_SLA: dict[Severity, Sla] = {
    Severity.CRITICAL: Sla(timedelta(hours=1), timedelta(hours=24)),
    Severity.HIGH: Sla(timedelta(hours=4), timedelta(hours=48)),
    Severity.MEDIUM: Sla(timedelta(hours=24), timedelta(days=5)),
    Severity.LOW: Sla(timedelta(hours=72), timedelta(days=14)),
}
MAX_SLA_MINUTES = 365 * 24 * 60


def sla_for(severity: Severity, overrides: dict[Severity, Sla]) -> Sla:
    """The program's SLA for a severity, or the default."""
    return overrides.get(severity, DEFAULT_SLA[severity])


def validate_sla_minutes(first_response_minutes: object, resolution_minutes: object) -> Sla:
    """An SLA from minutes, refusing non-integers, non-positive values, and a resolution
    due before the first response."""
    checked: list[int] = []
    for name, value in (
        ("first_response_minutes", first_response_minutes),
        ("resolution_minutes", resolution_minutes),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"must be a whole number of minutes, got {value!r}", field=name)
        if not 1 <= value <= MAX_SLA_MINUTES:
            raise ValidationError(f"must be between 1 and {MAX_SLA_MINUTES}", field=name)
        checked.append(value)
    if checked[1] < checked[0]:
        raise ValidationError(
            "must not be shorter than first_response_minutes", field="resolution_minutes"
        )
    return Sla(timedelta(minutes=checked[0]), timedelta(minutes=checked[1]))


@dataclass(frozen=True, slots=True)
class Deadlines:
    response_due_at: datetime
    resolution_due_at: datetime


def deadlines(opened_at: datetime, sla: Sla) -> Deadlines:
    """When the first response and the resolution are due for a case opened at `opened_at`."""
    return Deadlines(opened_at + sla.first_response, opened_at + sla.resolution)


@dataclass(frozen=True, slots=True)
class Breaches:
    """Whether a case missed its deadlines, as of a moment (computed, never stored stale)."""

    response: bool
    resolution: bool

    @property
    def any(self) -> bool:
        return self.response or self.resolution


def breaches(
    *,
    response_due_at: datetime,
    resolution_due_at: datetime,
    first_response_at: datetime | None,
    resolved_at: datetime | None,
    now: datetime,
) -> Breaches:
    """A deadline is breached when what it waits for came late, or has not come and is late.

    A case reopened after its resolution is unresolved again (`resolved_at` None): its
    resolution clock runs on from the original deadline.
    """
    responded = first_response_at if first_response_at is not None else now
    resolved = resolved_at if resolved_at is not None else now
    return Breaches(response=responded > response_due_at, resolution=resolved > resolution_due_at)


# --- resolution ----------------------------------------------------------------------------

MAX_TEXT = 4000


def clean_text(value: object, *, field: str, required: bool, limit: int = MAX_TEXT) -> str | None:
    """Trimmed text, or None when optional and empty; errors name the field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError("is required", field=field)
        return None
    if not isinstance(value, str):
        raise ValidationError(f"must be text, got {value!r}", field=field)
    text = value.strip()
    if len(text) > limit:
        raise ValidationError(f"must be at most {limit} characters", field=field)
    if "\x00" in text:
        raise ValidationError("must not contain NUL characters", field=field)
    return text


@dataclass(frozen=True, slots=True)
class Gesture:
    """A recovery gesture offered with a resolution (any combination, or none)."""

    goodwill_points: int | None = None
    coupon_campaign_id: int | None = None
    refund_reference: str | None = None

    @property
    def empty(self) -> bool:
        return (
            self.goodwill_points is None
            and self.coupon_campaign_id is None
            and self.refund_reference is None
        )


MAX_GOODWILL_POINTS = 10**9


def parse_gesture(
    *,
    goodwill_points: object = None,
    coupon_campaign_id: object = None,
    refund_reference: object = None,
) -> Gesture:
    """Validates a recovery gesture; each field is optional, each error names its field."""
    if goodwill_points is not None:
        if isinstance(goodwill_points, bool) or not isinstance(goodwill_points, int):
            raise ValidationError(
                f"must be a whole number of points, got {goodwill_points!r}",
                field="goodwill_points",
            )
        if not 1 <= goodwill_points <= MAX_GOODWILL_POINTS:
            raise ValidationError(
                f"must be between 1 and {MAX_GOODWILL_POINTS}", field="goodwill_points"
            )
    if coupon_campaign_id is not None and (
        isinstance(coupon_campaign_id, bool)
        or not isinstance(coupon_campaign_id, int)
        or coupon_campaign_id < 1
    ):
        raise ValidationError("must be a campaign id", field="coupon_campaign_id")
    return Gesture(
        goodwill_points=goodwill_points,
        coupon_campaign_id=coupon_campaign_id,
        refund_reference=clean_text(
            refund_reference, field="refund_reference", required=False, limit=100
        ),
    )
