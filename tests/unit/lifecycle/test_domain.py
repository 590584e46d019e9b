"""Lifecycle rules without a database: which days to process, who celebrates on a day."""

from __future__ import annotations

import calendar
import itertools
from collections import Counter
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from fideliza.lifecycle.domain import (
    MAX_CATCH_UP_DAYS,
    BonusKind,
    anniversary_enrolment_dates,
    appreciation_period,
    birth_month_ranges,
    celebrated_dates,
    days_to_process,
    idempotency_key,
    month_starts,
)

days = st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 12, 31))


def test_a_first_run_processes_today_only() -> None:
    assert days_to_process(None, date(2025, 3, 10)) == [date(2025, 3, 10)]


@given(days, st.integers(min_value=-5, max_value=200))
def test_days_to_process_are_consecutive_new_and_bounded(today: date, gap: int) -> None:
    done = today - timedelta(days=gap)
    result = days_to_process(done, today)
    assert len(result) <= MAX_CATCH_UP_DAYS
    assert all(day > done for day in result)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(result))
    if gap > 0:
        assert result[-1] == today
        assert len(result) == min(gap, MAX_CATCH_UP_DAYS)
    else:
        assert result == []


@given(days, st.lists(st.integers(min_value=0, max_value=MAX_CATCH_UP_DAYS), max_size=40))
def test_runs_at_most_a_month_apart_process_every_day_exactly_once(
    first: date, gaps: list[int]
) -> None:
    """However the job is scheduled (several runs a day, days skipped), no day is lost or
    processed twice, so a birthday is never missed nor granted twice by the schedule."""
    done: date | None = None
    processed: list[date] = []
    today = first
    for gap in [0, *gaps]:
        today += timedelta(days=gap)
        step = days_to_process(done, today)
        processed += step
        done = max(done or today, today)
    assert processed == [first + timedelta(days=n) for n in range((today - first).days + 1)]


def test_month_starts_open_each_new_month_once() -> None:
    run = [date(2025, 3, 30), date(2025, 3, 31), date(2025, 4, 1), date(2025, 4, 2)]
    assert month_starts(run, date(2025, 3, 29)) == [date(2025, 4, 1)]
    assert month_starts(run, None) == [date(2025, 3, 30), date(2025, 4, 1)]


@given(st.integers(min_value=2001, max_value=2099))
def test_over_a_year_every_date_is_celebrated_exactly_once(year: int) -> None:
    """Each date of 1996–2000 (two leap years) is celebrated once in `year`."""
    first = date(year, 1, 1)
    celebrated = Counter(
        d
        for offset in range(366 if calendar.isleap(year) else 365)
        for d in celebrated_dates(first + timedelta(days=offset), first_year=1996, last_year=2000)
    )
    every_date = {date(1996, 1, 1) + timedelta(days=n) for n in range(366 * 2 + 365 * 3)}
    assert set(celebrated) == every_date
    assert set(celebrated.values()) == {1}


def test_29_february_is_celebrated_on_28_february_in_common_years_only() -> None:
    assert date(2000, 2, 29) in celebrated_dates(date(2025, 2, 28), first_year=2000, last_year=2000)
    assert date(2000, 2, 29) not in celebrated_dates(
        date(2024, 2, 28), first_year=2000, last_year=2000
    )
    assert celebrated_dates(date(2024, 2, 29), first_year=2000, last_year=2001) == [
        date(2000, 2, 29)
    ]


def test_anniversaries_never_fall_in_the_enrolment_year() -> None:
    assert anniversary_enrolment_dates(date(2025, 3, 10), first_year=2023) == [
        date(2023, 3, 10),
        date(2024, 3, 10),
    ]
    assert anniversary_enrolment_dates(date(2025, 3, 10), first_year=2025) == []


def test_birth_month_ranges_cover_the_month_of_each_year() -> None:
    ranges = birth_month_ranges(2, last_year=2001)
    assert ranges[0] == (date(1900, 2, 1), date(1900, 2, 28))
    assert (date(2000, 2, 1), date(2000, 2, 29)) in ranges
    assert ranges[-1] == (date(2001, 2, 1), date(2001, 2, 28))


def test_keys_and_periods() -> None:
    assert idempotency_key(BonusKind.BIRTHDAY, "2025", 7) == "lifecycle:birthday:2025:7"
    assert appreciation_period("Spring", date(2025, 3, 14)) == "2025-03-14:Spring"
    assert len(appreciation_period("x" * 200, date(2025, 3, 14))) == 80
