"""Lifecycle bonus rules without I/O: which local days to process and who is due on a day."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from enum import StrEnum

MAX_CATCH_UP_DAYS = 31  # a job stopped for longer resumes a month back, not from the start
FIRST_BIRTH_YEAR = 1900  # members' birthdays are validated from 1900 on


class BonusKind(StrEnum):
    WELCOME = "welcome"
    BIRTHDAY = "birthday"
    ANNIVERSARY = "anniversary"
    APPRECIATION = "appreciation"


class BirthdayMode(StrEnum):
    DAY = "day"  # on the birthday (28 February for 29 February birthdays in common years)
    MONTH = "month"  # once during the birth month


WELCOME_PERIOD = "once"


def days_to_process(done_through: date | None, today: date) -> list[date]:
    """The local days not processed yet, oldest first: only today on a first run."""
    if done_through is None:
        return [today]
    first = max(done_through + timedelta(days=1), today - timedelta(days=MAX_CATCH_UP_DAYS - 1))
    return [first + timedelta(days=n) for n in range((today - first).days + 1)]


def month_starts(days: list[date], done_through: date | None) -> list[date]:
    """The days among `days` that open a month not processed before (month-mode birthdays)."""
    seen = {(done_through.year, done_through.month)} if done_through else set()
    starts: list[date] = []
    for day in days:
        if (day.year, day.month) not in seen:
            seen.add((day.year, day.month))
            starts.append(day)
    return starts


def _same_day_in(year: int, day: date) -> date | None:
    """`day`'s month and day in `year` (None for 29 February in a common year)."""
    if day.month == 2 and day.day == 29 and not calendar.isleap(year):
        return None
    return day.replace(year=year)


def celebrated_dates(day: date, *, first_year: int, last_year: int) -> list[date]:
    """The dates of years first..last whose yearly celebration falls on `day`.

    28 February in a common year also celebrates the 29 February dates of leap years.
    """
    dates = [d for year in range(first_year, last_year + 1) if (d := _same_day_in(year, day))]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        dates += [
            date(year, 2, 29) for year in range(first_year, last_year + 1) if calendar.isleap(year)
        ]
    return sorted(dates)


def birth_month_ranges(month: int, *, last_year: int) -> list[tuple[date, date]]:
    """(first, last) day of `month` in every year a member can be born in, up to `last_year`."""
    return [
        (date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))
        for year in range(FIRST_BIRTH_YEAR, last_year + 1)
    ]


def anniversary_enrolment_dates(day: date, *, first_year: int) -> list[date]:
    """The local enrolment dates whose membership anniversary is `day` (never its own year)."""
    return celebrated_dates(day, first_year=first_year, last_year=day.year - 1)


def idempotency_key(kind: BonusKind, period: str, member_id: int) -> str:
    """The ledger key of one bonus: unique per member, kind and period."""
    return f"lifecycle:{kind.value}:{period}:{member_id}"


def appreciation_period(name: str, start: date) -> str:
    """The grant period of an appreciation day: its start date and name."""
    return f"{start.isoformat()}:{name}"[:80]
