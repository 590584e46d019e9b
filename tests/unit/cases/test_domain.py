"""The case state machine, SLA deadlines and breach flags, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.cases.domain import (
    DEFAULT_SLA,
    TRANSITIONS,
    CaseState,
    Severity,
    Sla,
    allowed_from,
    breaches,
    deadlines,
    parse_choice,
    parse_gesture,
    require_transition,
    sla_for,
    validate_sla_minutes,
)
from fideliza.core.errors import InvalidState, ValidationError

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
states = st.sampled_from(list(CaseState))


def test_the_lifecycle_and_reopen_are_allowed() -> None:
    for current, target in [
        (CaseState.OPEN, CaseState.IN_PROGRESS),
        (CaseState.IN_PROGRESS, CaseState.RESOLVED),
        (CaseState.RESOLVED, CaseState.CLOSED),
        (CaseState.RESOLVED, CaseState.OPEN),
        (CaseState.CLOSED, CaseState.OPEN),
        (CaseState.OPEN, CaseState.RESOLVED),
    ]:
        require_transition(current, target)


def test_a_refused_transition_says_what_is_allowed() -> None:
    with pytest.raises(InvalidState) as refused:
        require_transition(CaseState.OPEN, CaseState.CLOSED)
    assert refused.value.field == "state"
    assert "allowed from open: in_progress, resolved" in refused.value.message
    with pytest.raises(InvalidState, match="allowed from closed: open"):
        require_transition(CaseState.CLOSED, CaseState.RESOLVED)


@given(current=states, target=states)
def test_require_transition_agrees_with_the_table(current: CaseState, target: CaseState) -> None:
    if target in TRANSITIONS[current]:
        require_transition(current, target)
    else:
        with pytest.raises(InvalidState) as refused:
            require_transition(current, target)
        for allowed in allowed_from(current):
            assert allowed in refused.value.message


@given(path=st.lists(states, max_size=30))
def test_every_walk_stays_in_the_machine_and_closing_needs_a_resolution(
    path: list[CaseState],
) -> None:
    """Walk any sequence of requested moves: refused ones change nothing; a case is closed only
    right after being resolved, and never leaves `closed` except by reopening."""
    state = CaseState.OPEN
    for target in path:
        try:
            require_transition(state, target)
        except InvalidState:
            continue
        if target == CaseState.CLOSED:
            assert state == CaseState.RESOLVED
        if state == CaseState.CLOSED:
            assert target == CaseState.OPEN
        state = target
    assert state in TRANSITIONS


def test_no_state_is_a_dead_end() -> None:
    assert all(TRANSITIONS[state] for state in CaseState)


def test_deadlines_follow_the_severity() -> None:
    due = deadlines(T0, sla_for(Severity.CRITICAL, {}))
    assert due.response_due_at == T0 + timedelta(hours=1)
    assert due.resolution_due_at == T0 + timedelta(hours=24)
    mine = Sla(timedelta(minutes=10), timedelta(minutes=30))
    assert sla_for(Severity.CRITICAL, {Severity.CRITICAL: mine}) == mine
    assert sla_for(Severity.LOW, {Severity.CRITICAL: mine}) == DEFAULT_SLA[Severity.LOW]
    # Stricter severities are never given more time.
    order = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]
    times = [DEFAULT_SLA[s] for s in order]
    assert times == sorted(times, key=lambda sla: (sla.first_response, sla.resolution))


def test_breaches_are_computed_from_timestamps() -> None:
    due = {"response_due_at": T0, "resolution_due_at": T0 + timedelta(days=1)}
    on_time = breaches(**due, first_response_at=None, resolved_at=None, now=T0)
    assert not on_time.response and not on_time.any
    waiting = breaches(**due, first_response_at=None, resolved_at=None, now=T0 + timedelta(1))
    assert waiting.response and not waiting.resolution
    late_answer = breaches(
        **due, first_response_at=T0 + timedelta(minutes=1), resolved_at=None, now=T0
    )
    assert late_answer.response
    # Answered in time, resolved in time: stays clean however late it is read.
    done = breaches(
        **due, first_response_at=T0, resolved_at=T0 + timedelta(hours=2), now=T0 + timedelta(99)
    )
    assert not done.any
    unresolved = breaches(**due, first_response_at=T0, resolved_at=None, now=T0 + timedelta(2))
    assert unresolved.resolution and not unresolved.response


@given(
    response_after=st.integers(min_value=0, max_value=10_000),
    read_after=st.integers(min_value=0, max_value=10_000),
)
def test_a_breach_once_true_stays_true(response_after: int, read_after: int) -> None:
    due = T0 + timedelta(minutes=60)
    answered = T0 + timedelta(minutes=response_after)
    first = breaches(
        response_due_at=due,
        resolution_due_at=due,
        first_response_at=answered,
        resolved_at=None,
        now=T0 + timedelta(minutes=read_after),
    )
    later = breaches(
        response_due_at=due,
        resolution_due_at=due,
        first_response_at=answered,
        resolved_at=None,
        now=T0 + timedelta(minutes=read_after + 1),
    )
    assert first.response == (response_after > 60)
    assert later.response == first.response
    assert (not first.resolution) or later.resolution


def test_bad_choices_and_sla_minutes_name_the_field() -> None:
    with pytest.raises(ValidationError) as bad:
        parse_choice("urgent", Severity, field="severity")
    assert bad.value.field == "severity"
    assert "low, medium, high, critical" in bad.value.message
    with pytest.raises(ValidationError) as not_text:
        parse_choice(3, Severity, field="severity")
    assert not_text.value.field == "severity"
    with pytest.raises(ValidationError) as zero:
        validate_sla_minutes(0, 10)
    assert zero.value.field == "first_response_minutes"
    with pytest.raises(ValidationError) as shorter:
        validate_sla_minutes(60, 30)
    assert shorter.value.field == "resolution_minutes"
    with pytest.raises(ValidationError) as boolean:
        validate_sla_minutes(True, 30)
    assert boolean.value.field == "first_response_minutes"
    assert validate_sla_minutes(15, 60) == Sla(timedelta(minutes=15), timedelta(hours=1))


def test_gestures_are_validated() -> None:
    assert parse_gesture().empty
    gesture = parse_gesture(goodwill_points=100, refund_reference="  RF-1 ")
    assert gesture.goodwill_points == 100 and gesture.refund_reference == "RF-1"
    for bad, field in [
        ({"goodwill_points": 0}, "goodwill_points"),
        ({"goodwill_points": "100"}, "goodwill_points"),
        ({"goodwill_points": True}, "goodwill_points"),
        ({"coupon_campaign_id": -1}, "coupon_campaign_id"),
        ({"refund_reference": "x" * 101}, "refund_reference"),
    ]:
        with pytest.raises(ValidationError) as refused:
            parse_gesture(**bad)
        assert refused.value.field == field
