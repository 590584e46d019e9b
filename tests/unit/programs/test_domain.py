"""Program settings: each bad setting names `settings.<name>`; expiry dates are exact instants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fideliza.core.errors import ValidationError
from fideliza.core.points import Rounding
from fideliza.ledger.domain import ExpiryPolicy
from fideliza.programs.domain import ProgramSettings, parse_settings, require_timezone

MADRID = ZoneInfo("Europe/Madrid")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_no_settings_are_the_defaults() -> None:
    assert parse_settings(None) == parse_settings({}) == ProgramSettings()
    defaults = parse_settings({})
    assert defaults.return_window_days == 0
    assert defaults.hold_ttl_minutes == 15
    assert defaults.rounding is Rounding.FLOOR
    assert defaults.expiry == ExpiryPolicy(mode="never")
    assert defaults.allow_negative_on_return is True


def test_good_settings_are_read() -> None:
    settings = parse_settings(
        {
            "return_window_days": 14,
            "hold_ttl_minutes": 30,
            "rounding": "half_up",
            "expiry": {"mode": "end_of_month", "months": 12},
            "allow_negative_on_return": False,
            "tier_policy": {"basis": "points", "period": "calendar_year"},
        }
    )
    assert settings.return_window_days == 14
    assert settings.hold_ttl_minutes == 30
    assert settings.rounding is Rounding.HALF_UP
    assert settings.expiry == ExpiryPolicy(mode="end_of_month", months=12)
    assert settings.allow_negative_on_return is False
    assert settings.tier_policy == {"basis": "points", "period": "calendar_year"}


def test_expiry_never_as_the_readme_writes_it() -> None:
    assert parse_settings({"expiry": "never"}).expiry == ExpiryPolicy(mode="never")
    assert parse_settings({"expiry": {"mode": "never"}}).expiry == ExpiryPolicy(mode="never")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"retun_window_days": 14}, "settings.retun_window_days"),
        ({"return_window_days": -1}, "settings.return_window_days"),
        ({"return_window_days": "14"}, "settings.return_window_days"),
        ({"return_window_days": 1.5}, "settings.return_window_days"),
        ({"return_window_days": True}, "settings.return_window_days"),
        ({"hold_ttl_minutes": 0}, "settings.hold_ttl_minutes"),
        ({"hold_ttl_minutes": "15"}, "settings.hold_ttl_minutes"),
        ({"hold_ttl_minutes": False}, "settings.hold_ttl_minutes"),
        ({"rounding": "up"}, "settings.rounding"),
        ({"expiry": 365}, "settings.expiry"),
        ({"expiry": "always"}, "settings.expiry"),
        ({"expiry": {"mode": "weekly"}}, "settings.expiry.mode"),
        ({"expiry": {"mode": "days"}}, "settings.expiry.days"),
        ({"expiry": {"mode": "days", "days": 0}}, "settings.expiry.days"),
        ({"expiry": {"mode": "days", "days": "abc"}}, "settings.expiry.days"),
        ({"expiry": {"mode": "days", "days": 1.9}}, "settings.expiry.days"),
        ({"expiry": {"mode": "days", "days": True}}, "settings.expiry.days"),
        ({"expiry": {"mode": "end_of_month", "months": -1}}, "settings.expiry.months"),
        ({"expiry": {"mode": "end_of_month", "months": "x"}}, "settings.expiry.months"),
        ({"expiry": {"mode": "days", "days": 30, "day": 31}}, "settings.expiry.day"),
        ({"allow_negative_on_return": "false"}, "settings.allow_negative_on_return"),
        ({"allow_negative_on_return": 0}, "settings.allow_negative_on_return"),
        ({"tier_policy": "gold"}, "settings.tier_policy"),
    ],
)
def test_each_bad_setting_is_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_settings(raw)
    assert error.value.field == field
    assert error.value.code == "validation_error"


def test_settings_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(ValidationError) as error:
        parse_settings(["return_window_days", 14])  # type: ignore[arg-type]
    assert error.value.field == "settings"


def test_an_unknown_time_zone_names_the_field() -> None:
    assert require_timezone("Europe/Madrid") == MADRID
    with pytest.raises(ValidationError) as error:
        require_timezone("Europe/Narnia")
    assert error.value.field == "timezone"


# --- expiry ----------------------------------------------------------------------------------


def expiry_of(settings: dict[str, Any], earned_at: datetime) -> datetime | None:
    return parse_settings({"expiry": settings}).expiry.expires_at(earned_at, MADRID)


def test_never_expires() -> None:
    assert expiry_of({"mode": "never"}, utc(2025, 3, 10, 12)) is None


def test_days_are_exact_durations_from_the_instant_earned() -> None:
    assert expiry_of({"mode": "days", "days": 365}, utc(2025, 3, 10, 12)) == utc(2026, 3, 10, 12)
    # Across the spring DST change (30 March 2025 in Madrid) a day is still 24 hours:
    # earned at 12:00 CET (11:00 UTC), it expires at 13:00 CEST, the same instant + 24 h.
    expires = expiry_of({"mode": "days", "days": 1}, utc(2025, 3, 29, 11))
    assert expires == utc(2025, 3, 30, 11)
    assert expires is not None and expires.astimezone(MADRID).hour == 13


def test_days_give_the_same_expiry_for_the_same_instant_whatever_its_tzinfo() -> None:
    in_utc = utc(2025, 3, 29, 11)
    in_madrid = in_utc.astimezone(MADRID)  # 12:00 CET, the same instant
    assert in_utc == in_madrid
    assert expiry_of({"mode": "days", "days": 1}, in_madrid) == expiry_of(
        {"mode": "days", "days": 1}, in_utc
    )


@pytest.mark.parametrize(
    ("months", "earned", "expires"),
    [
        # Earned in winter (CET), expires at the start of April in summer time (CEST, UTC+2).
        (0, utc(2025, 3, 10, 12), utc(2025, 3, 31, 22)),
        (12, utc(2025, 3, 10, 12), utc(2026, 3, 31, 22)),
        # Earned in summer, expires at the start of November in winter time (CET, UTC+1).
        (0, utc(2025, 10, 15, 9), utc(2025, 10, 31, 23)),
        # 00:00 local on 1 April is still 31 March in UTC: the local month counts.
        (0, utc(2025, 3, 31, 22), utc(2025, 4, 30, 22)),
        (0, utc(2025, 3, 31, 21, 59), utc(2025, 3, 31, 22)),
        # Year end: December's points expire at 00:00 on 1 January (CET).
        (0, utc(2025, 12, 15, 12), utc(2025, 12, 31, 23)),
        (1, utc(2025, 12, 15, 12), utc(2026, 1, 31, 23)),
        (12, utc(2025, 12, 15, 12), utc(2026, 12, 31, 23)),
        (13, utc(2025, 12, 15, 12), utc(2027, 1, 31, 23)),
        # 23:30 UTC on 31 December is already January in Madrid.
        (0, utc(2025, 12, 31, 23, 30), utc(2026, 1, 31, 23)),
        (11, utc(2025, 12, 31, 23, 30), utc(2026, 12, 31, 23)),
    ],
)
def test_end_of_month_is_local_midnight_after_the_month(
    months: int, earned: datetime, expires: datetime
) -> None:
    found = expiry_of({"mode": "end_of_month", "months": months}, earned)
    assert found == expires
    assert found is not None and found.astimezone(MADRID).time().isoformat() == "00:00:00"
    assert found.astimezone(MADRID).day == 1
