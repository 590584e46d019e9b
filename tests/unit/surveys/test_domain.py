"""Pure survey logic: definitions, answers, sampling, links and scores, without a database."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.core.errors import ValidationError
from fideliza.surveys import links
from fideliza.surveys.domain import add_months, check_answers, in_sample, pick_locale, render
from fideliza.surveys.errors import InvalidLink, LinkExpired
from fideliza.surveys.schemas import parse_definition
from fideliza.surveys.stats import Period, csat, nps, period_of

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SECRET = b"k" * 32

CUSTOM: dict[str, Any] = {
    "code": "visit",
    "kind": "custom",
    "default_locale": "en",
    "title": {"en": "Your visit", "it": "La tua visita"},
    "questions": [
        {"id": "speed", "type": "scale", "min": 1, "max": 7, "text": {"en": "Fast?"}},
        {
            "id": "where",
            "type": "choice",
            "multiple": True,
            "text": {"en": "Where?"},
            "choices": [
                {"value": "shop", "text": {"en": "Shop", "it": "Negozio"}},
                {"value": "web", "text": {"en": "Web"}},
            ],
        },
        {"id": "note", "type": "text", "required": False, "max_length": 5, "text": {"en": "?"}},
    ],
    "sending": {"trigger": "manual"},
}


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(CUSTOM)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


# --- definitions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (
            ["questions", 1, "choices"],
            [{"value": "shop", "text": {"en": "x"}}],
            "questions[1].choices",
        ),
        (["questions", 0, "max"], 1, "questions[0].max"),
        (["questions", 2, "min"], 1, "questions[2].min"),
        (["questions", 0, "type"], "stars", "questions[0].type"),
        (["questions", 0, "text"], {"fr": "Vite?"}, "questions[0].text.fr"),
        (["questions", 1, "choices", 1, "text"], {"it": "Web"}, "questions[1].choices[1].text"),
        (["kind"], "nps", None),
        (["sending"], {"trigger": "purchase"}, "sending.sample_rate"),
        (["sending"], {"trigger": "case", "quiet_days": 3}, "sending.quiet_days"),
        (["sending"], {"trigger": "relationship"}, "sending.every_months"),
        (["sending"], {"trigger": "purchase", "sample_rate": "1.5"}, "sending.sample_rate"),
        (["code"], "Not A Code", "code"),
        (["colour"], "red", "colour"),
    ],
)
def test_bad_definitions_name_the_path(path: list[str | int], value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_definition(_with(path, value))
    assert error.value.field == field
    assert "Value error" not in error.value.message


def test_an_nps_survey_needs_exactly_one_nps_question() -> None:
    with pytest.raises(ValidationError) as error:
        parse_definition(_with(["kind"], "nps"))
    assert "exactly one nps question" in error.value.message


# --- answers -----------------------------------------------------------------------------------


def test_answers_are_checked_against_each_question() -> None:
    definition = parse_definition(CUSTOM)
    checked = check_answers(definition, {"speed": 7, "where": ["web", "shop"], "note": " ok "})
    assert checked.answers == {"speed": 7, "where": ["web", "shop"], "note": "ok"}
    assert checked.score is None
    assert check_answers(definition, {"speed": 1, "where": "shop"}).answers == {
        "speed": 1,
        "where": "shop",
    }


@pytest.mark.parametrize(
    ("answers", "field", "words"),
    [
        ({"speed": 8, "where": "web"}, "answers.speed", "from 1 to 7, got 8"),
        ({"speed": True, "where": "web"}, "answers.speed", "whole number"),
        ({"speed": 2.5, "where": "web"}, "answers.speed", "whole number"),
        ({"speed": 2, "where": "home"}, "answers.where", "one of shop, web"),
        ({"speed": 2, "where": ["web", "web"]}, "answers.where", "twice"),
        ({"speed": 2}, "answers.where", "required"),
        ({"speed": 2, "where": "web", "note": "too long"}, "answers.note", "at most 5"),
        ({"speed": 2, "where": "web", "note": 5}, "answers.note", "text"),
        ({"speed": 2, "where": "web", "extra": 1}, "answers.extra", "not a question"),
    ],
)
def test_bad_answers_name_the_question(answers: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as error:
        check_answers(parse_definition(CUSTOM), answers)
    assert error.value.field == field
    assert words in error.value.message


# --- locales -----------------------------------------------------------------------------------


def test_the_members_locale_is_used_when_the_survey_speaks_it() -> None:
    definition = parse_definition(CUSTOM)
    assert pick_locale(definition, "it-IT") == "it"
    assert pick_locale(definition, "es") == "en"  # not translated: the default
    assert pick_locale(definition, None) == "en"
    shown = render(definition, "it")
    assert shown["title"] == "La tua visita"
    assert [c["text"] for c in shown["questions"][1]["choices"]] == ["Negozio", "Web"]
    assert shown["questions"][0]["text"] == "Fast?"  # falls back per text
    assert (shown["questions"][0]["min"], shown["questions"][0]["max"]) == (1, 7)


# --- sampling and dates ------------------------------------------------------------------------


def test_the_sample_is_deterministic_and_close_to_the_rate() -> None:
    refs = [f"T-{n}" for n in range(4000)]
    picked = [r for r in refs if in_sample(survey_code="nps", source_ref=r, rate=Decimal("0.25"))]
    again = [r for r in refs if in_sample(survey_code="nps", source_ref=r, rate=Decimal("0.25"))]
    assert picked == again
    assert 900 < len(picked) < 1100
    other = [r for r in refs if in_sample(survey_code="csat", source_ref=r, rate=Decimal("0.25"))]
    assert other != picked  # each survey draws its own sample
    assert not in_sample(survey_code="nps", source_ref="T-1", rate=Decimal(0))
    assert in_sample(survey_code="nps", source_ref="T-1", rate=Decimal(1))


def test_months_are_calendar_months() -> None:
    assert add_months(datetime(2025, 3, 31, tzinfo=UTC), -1) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2024, 8, 31, tzinfo=UTC), -6) == datetime(2024, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2025, 1, 15, tzinfo=UTC), -13) == datetime(2023, 12, 15, tzinfo=UTC)


# --- links -------------------------------------------------------------------------------------


def test_a_signed_link_verifies_until_it_expires() -> None:
    expires = NOW + timedelta(days=3)
    token = links.sign(secret=SECRET, invitation_id=42, expires_at=expires)
    assert links.verify(secret=SECRET, token=token, now=NOW) == links.LinkClaim(42, expires)
    with pytest.raises(LinkExpired):
        links.verify(secret=SECRET, token=token, now=expires)
    with pytest.raises(InvalidLink):
        links.verify(secret=b"x" * 32, token=token, now=NOW)
    tampered = token.replace(".42.", ".43.")
    with pytest.raises(InvalidLink):
        links.verify(secret=SECRET, token=tampered, now=NOW)


@given(st.text(max_size=120))
def test_no_random_text_is_a_valid_link(text: str) -> None:
    with pytest.raises(InvalidLink):
        links.verify(secret=SECRET, token=text, now=NOW)


# --- scores ------------------------------------------------------------------------------------


def test_nps_and_csat_with_their_intervals() -> None:
    score = nps([10] * 50 + [8] * 30 + [3] * 20)
    assert score is not None
    assert (score.value, score.low, score.high) == (
        Decimal("30.0"),
        Decimal("14.7"),
        Decimal("45.3"),
    )
    wilson = csat([5] * 80 + [2] * 20)
    assert wilson is not None
    assert (wilson.value, wilson.low, wilson.high) == (
        Decimal("80.0"),
        Decimal("71.1"),
        Decimal("86.7"),
    )
    assert nps([]) is None and csat([]) is None


@given(st.lists(st.integers(0, 10), min_size=1, max_size=300))
def test_nps_lies_inside_its_interval_within_bounds(scores: list[int]) -> None:
    score = nps(scores)
    assert score is not None
    assert Decimal(-100) <= score.low <= score.value <= score.high <= Decimal(100)
    assert score.responses == len(scores)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=300))
def test_csat_lies_inside_its_wilson_interval(scores: list[int]) -> None:
    score = csat(scores)
    assert score is not None
    assert Decimal(0) <= score.low <= score.value <= score.high <= Decimal(100)


def test_periods_are_local_calendar_periods() -> None:
    from zoneinfo import ZoneInfo

    madrid = ZoneInfo("Europe/Madrid")
    new_year = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)  # already 2025 in Madrid
    assert period_of(new_year, Period.MONTH, madrid) == "2025-01"
    assert period_of(new_year, Period.QUARTER, madrid) == "2025-Q1"
    assert period_of(new_year, Period.QUARTER, ZoneInfo("UTC")) == "2024-Q4"


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 15) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@given(
    st.dictionaries(
        st.sampled_from(["speed", "where", "note", "other"]) | st.text(max_size=5),
        _JSON_VALUES | st.sampled_from(["shop", "web"]),
        max_size=4,
    )
)
def test_any_answers_are_either_refused_clearly_or_fit_the_questions(raw: dict[str, Any]) -> None:
    definition = parse_definition(CUSTOM)
    try:
        checked = check_answers(definition, raw)
    except ValidationError as error:
        assert error.field is not None and error.field.startswith("answers")
        return
    assert isinstance(checked.answers["speed"], int) and 1 <= checked.answers["speed"] <= 7
    picked = checked.answers["where"]
    assert set(picked if isinstance(picked, list) else [picked]) <= {"shop", "web"}
    assert set(checked.answers) <= {"speed", "where", "note"}
