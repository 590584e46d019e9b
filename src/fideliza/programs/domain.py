"""A program's settings, validated once and read as a plain value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fideliza.core.errors import ValidationError
from fideliza.core.points import Rounding
from fideliza.ledger.domain import ExpiryPolicy

KNOWN_SETTINGS = {
    "return_window_days",
    "expiry",
    "rounding",
    "hold_ttl_minutes",
    "tier_policy",
    "allow_negative_on_return",
}


@dataclass(frozen=True, slots=True)
class ProgramSettings:
    """How a program's points behave."""

    return_window_days: int = 0  # earned points stay pending this long (returns reverse them)
    expiry: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    rounding: Rounding = Rounding.FLOOR
    hold_ttl_minutes: int = 15  # a redemption hold not captured by then is released
    # A return after the points were spent takes the balance below zero (and says why);
    # with False the reversal is limited to what is left.
    allow_negative_on_return: bool = True
    tier_policy: dict[str, Any] = field(default_factory=dict)


def parse_settings(raw: dict[str, Any] | None) -> ProgramSettings:
    """Validates a program's settings JSON; errors name the field (`settings.<name>`)."""
    if raw is not None and not isinstance(raw, dict):
        raise ValidationError("must be an object", field="settings")
    raw = dict(raw or {})
    unknown = set(raw) - KNOWN_SETTINGS
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationError(f"unknown setting {name!r}", field=f"settings.{name}")
    window = raw.get("return_window_days", 0)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValidationError(
            "must be a whole number of days ≥ 0", field="settings.return_window_days"
        )
    ttl = raw.get("hold_ttl_minutes", 15)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValidationError(
            "must be a whole number of minutes > 0", field="settings.hold_ttl_minutes"
        )
    try:
        rounding = Rounding(raw.get("rounding", Rounding.FLOOR))
    except ValueError:
        raise ValidationError(
            f"must be one of {[r.value for r in Rounding]}", field="settings.rounding"
        ) from None
    expiry = raw.get("expiry")
    if expiry == "never":  # as the README writes it
        expiry = None
    if expiry is not None and not isinstance(expiry, dict):
        raise ValidationError("must be an object", field="settings.expiry")
    for name, value in (expiry or {}).items():
        # ExpiryPolicy.from_settings would int() these: "abc" would crash, 1.9 or true pass.
        if name not in _EXPIRY_FIELDS:
            raise ValidationError(
                f"unknown expiry field {name!r} (mode, days, months)",
                field=f"settings.expiry.{name}",
            )
        if name != "mode" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(
                f"must be a whole number, got {value!r}", field=f"settings.expiry.{name}"
            )
    allow_negative = raw.get("allow_negative_on_return", True)
    if not isinstance(allow_negative, bool):  # bool("false") is True
        raise ValidationError(
            f"must be true or false, got {allow_negative!r}",
            field="settings.allow_negative_on_return",
        )
    tier_policy = raw.get("tier_policy") or {}
    if not isinstance(tier_policy, dict):
        raise ValidationError("must be an object", field="settings.tier_policy")
    return ProgramSettings(
        return_window_days=window,
        expiry=ExpiryPolicy.from_settings(expiry),
        rounding=rounding,
        hold_ttl_minutes=ttl,
        allow_negative_on_return=allow_negative,
        tier_policy=dict(tier_policy),
    )


_EXPIRY_FIELDS = ("mode", "days", "months")


def require_timezone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """Returns the IANA zone `name`, or a ValidationError naming the field."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown IANA time zone {name!r}", field=field) from None
