"""Messaging rules without a database: rendering, configuration, quiet hours, retries, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.core.errors import ValidationError
from fideliza.messaging.domain import (
    MAX_ATTEMPTS,
    Channel,
    Kind,
    QuietHours,
    TemplateText,
    check_context,
    check_template,
    next_retry,
    parse_config,
    quiet_until,
    read_unsubscribe_token,
    render,
    unsubscribe_token,
)
from fideliza.messaging.errors import InvalidUnsubscribeLink

MADRID = ZoneInfo("Europe/Madrid")
SECRET = b"k" * 32


def test_render_escapes_html_only_in_the_html_body() -> None:
    template = TemplateText(
        subject="Hola {{ member.first_name }}\nmulti-line",
        body_text="{{ member.first_name }} & co",
        body_html="<b>{{ member.first_name }}</b>",
    )
    out = render(template, {"member": {"first_name": "Ana <3"}})
    assert out.subject == "Hola Ana <3 multi-line"  # one header line
    assert out.body_text == "Ana <3 & co"
    assert out.body_html == "<b>Ana &lt;3</b>"


def test_unknown_variable_names_template_part_and_variable() -> None:
    template = TemplateText(subject="x", body_text="{{ points }} {{ member.nickname }}")
    with pytest.raises(ValidationError) as error:
        check_template(kind=Kind.TIER_UP, channel=Channel.EMAIL, locale="es", template=template)
    assert error.value.field == "body_text"
    assert "tier_up/email/es" in error.value.message and "points" in error.value.message


def test_every_kind_sample_renders_a_template_using_all_its_variables() -> None:
    body = "{{ member.first_name }} {{ program.name }} {{ unsubscribe_url }}"
    for kind in Kind:
        check_template(
            kind=kind, channel=Channel.SMS, locale="it", template=TemplateText(None, body)
        )


def test_sms_templates_have_no_html_and_email_needs_a_subject() -> None:
    with pytest.raises(ValidationError) as html:
        check_template(
            kind=Kind.WELCOME,
            channel=Channel.SMS,
            locale="es",
            template=TemplateText(None, "hola", "<p>hola</p>"),
        )
    assert html.value.field == "body_html"
    with pytest.raises(ValidationError) as subject:
        check_template(
            kind=Kind.WELCOME, channel=Channel.EMAIL, locale="es", template=TemplateText(" ", "x")
        )
    assert subject.value.field == "subject"


def test_context_of_an_enqueued_message_must_carry_its_variables() -> None:
    with pytest.raises(ValidationError) as error:
        check_context(Kind.COMPLAINT_UPDATE, {"status": "open"})
    assert error.value.field == "context.case"
    check_context(Kind.WELCOME, {})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"quiet_hours": {"start": "25:00", "end": "09:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "09:00", "end": "09:00"}}, "quiet_hours.end"),
        ({"quiet_hours": "night"}, "quiet_hours"),
        ({"frequency_cap": {"messages": 0, "days": 7}}, "frequency_cap.messages"),
        ({"frequency_cap": {"messages": 3}}, "frequency_cap"),
        ({"win_back_days": True}, "win_back_days"),
        ({"triggers": ["birthday", "newsletter"]}, "triggers[1]"),
        ({"channel": "fax"}, "channel"),
        ({"default_locale": "fr"}, "default_locale"),
        ({"colour": "red"}, "colour"),
        ({"win_back_p_alive_percent": 100}, "win_back_p_alive_percent"),
    ],
)
def test_config_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_config(raw)
    assert error.value.field == field


def test_config_round_trips() -> None:
    raw = {
        "default_locale": "en",
        "quiet_hours": {"start": "21:30", "end": "08:00"},
        "frequency_cap": {"messages": 2, "days": 14},
        "welcome_days": 3,
        "expiring_days": 30,
        "win_back_days": 60,
        "win_back_window_days": 10,
        "reward_gap_points": 50,
        "win_back_p_alive_percent": 25,
        "triggers": ["birthday", "welcome"],
        "channel": "sms",
        "provider_url": "https://sms.example.com/send",
    }
    assert parse_config(raw).as_dict() == raw


def test_quiet_hours_across_midnight_end_next_morning_local_time() -> None:
    quiet = QuietHours(time(21), time(9))
    evening = datetime(2025, 3, 10, 21, 30, tzinfo=UTC)  # 22:30 in Madrid
    assert quiet_until(quiet, now=evening, zone=MADRID) == datetime(2025, 3, 11, 8, tzinfo=UTC)
    early = datetime(2025, 3, 11, 6, 0, tzinfo=UTC)  # 07:00 in Madrid
    assert quiet_until(quiet, now=early, zone=MADRID) == datetime(2025, 3, 11, 8, tzinfo=UTC)
    noon = datetime(2025, 3, 11, 11, 0, tzinfo=UTC)
    assert quiet_until(quiet, now=noon, zone=MADRID) is None
    assert quiet_until(None, now=evening, zone=MADRID) is None


@given(
    start=st.integers(0, 23),
    end=st.integers(0, 23),
    minutes=st.integers(0, 60 * 24 * 400),
)
def test_quiet_hours_end_is_later_and_outside_them(start: int, end: int, minutes: int) -> None:
    if start == end:
        return
    quiet = QuietHours(time(start), time(end))
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    until = quiet_until(quiet, now=now, zone=MADRID)
    if until is None:
        assert not quiet.contains(now.astimezone(MADRID).time())
    else:
        assert now < until <= now + timedelta(hours=49)  # 25 h, or 2 days over a DST gap
        assert not quiet.contains(until.astimezone(MADRID).time())


def test_retries_back_off_then_stop() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    delays = [next_retry(n, now=now) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays[-1] is None
    waits = [d - now for d in delays[:-1] if d is not None]
    assert waits == sorted(waits) and waits[0] == timedelta(minutes=1)


def test_unsubscribe_tokens_are_signed() -> None:
    token = unsubscribe_token(secret=SECRET, program_id=3, member_id=42)
    assert read_unsubscribe_token(secret=SECRET, token=token) == (3, 42)
    forged = token.replace(".42.", ".43.")
    for bad in (forged, token + "x", "", "fzu1.3.42.abc"):
        with pytest.raises(InvalidUnsubscribeLink) as error:
            read_unsubscribe_token(secret=SECRET, token=bad)
        assert error.value.field == "token" and error.value.status == 404
    with pytest.raises(InvalidUnsubscribeLink):
        read_unsubscribe_token(secret=b"other" * 8, token=token)
