"""Pure survey logic: who is sampled, which locale, whether answers fit the questions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fideliza.core.errors import ValidationError
from fideliza.surveys.schemas import LOCALES, QuestionType, SurveyDefinition

_SAMPLE_SPACE = 2**64


def in_sample(*, survey_code: str, source_ref: str, rate: Decimal) -> bool:
    """Whether a purchase is sampled: a hash of survey and purchase, so reruns agree.

    The survey's code (not its version's id) is hashed, so a new version keeps the sample.
    """
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.sha256(f"{survey_code}:{source_ref}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big")
    return Decimal(draw) < rate * _SAMPLE_SPACE


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` moved by whole calendar months (the day clamped to the month's last)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    days = [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return moment.replace(year=year, month=month, day=min(moment.day, days))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def pick_locale(definition: SurveyDefinition, member_locale: str | None) -> str:
    """The member's locale when the survey's title speaks it, else the survey's default."""
    wanted = (member_locale or "").split("-")[0].lower()
    if wanted in LOCALES and wanted in definition.title:
        return wanted
    return definition.default_locale


def localized(texts: Mapping[Any, str], locale: str, default_locale: str) -> str:
    """A text in `locale`, falling back to the default locale (which every text has)."""
    return texts.get(locale) or texts[default_locale]


def render(definition: SurveyDefinition, locale: str) -> dict[str, Any]:
    """The survey as a member sees it: texts in one locale, answer ranges and choices."""
    fallback = definition.default_locale
    questions = []
    for question in definition.questions:
        shown: dict[str, Any] = {
            "id": question.id,
            "type": question.type.value,
            "text": localized(question.text, locale, fallback),
            "required": question.required,
        }
        if question.bounds is not None:
            shown["min"], shown["max"] = question.bounds
        if question.choices:
            shown["multiple"] = question.multiple
            shown["choices"] = [
                {"value": c.value, "text": localized(c.text, locale, fallback)}
                for c in question.choices
            ]
        if question.type is QuestionType.TEXT:
            shown["max_length"] = question.max_length
        questions.append(shown)
    return {
        "code": definition.code,
        "kind": definition.kind.value,
        "locale": locale,
        "title": localized(definition.title, locale, fallback),
        "questions": questions,
    }


@dataclass(frozen=True, slots=True)
class CheckedAnswers:
    """Answers that fit the survey, and the headline score (None for custom surveys)."""

    answers: dict[str, Any]
    score: int | None


def check_answers(definition: SurveyDefinition, raw: Mapping[str, Any]) -> CheckedAnswers:
    """Validates answers against the questions; errors name `answers.<question id>`."""
    if not isinstance(raw, Mapping):
        raise ValidationError("must be an object of question id → answer", field="answers")
    known = {question.id for question in definition.questions}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValidationError("is not a question of this survey", field=f"answers.{unknown[0]}")
    answers: dict[str, Any] = {}
    for question in definition.questions:
        field = f"answers.{question.id}"
        value = raw.get(question.id)
        if value is None or (isinstance(value, str | list) and not value):
            if question.required:
                raise ValidationError("is required", field=field)
            continue
        bounds = question.bounds
        if bounds is not None:
            low, high = bounds
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"must be a whole number from {low} to {high}", field=field)
            if not low <= value <= high:
                raise ValidationError(f"must be from {low} to {high}, got {value}", field=field)
        elif question.type is QuestionType.CHOICE:
            allowed = [choice.value for choice in question.choices or ()]
            picked = value if isinstance(value, list) else [value]
            if not question.multiple and isinstance(value, list):
                raise ValidationError("takes one choice, not a list", field=field)
            for item in picked:
                if item not in allowed:
                    raise ValidationError(
                        f"must be one of {', '.join(allowed)}, got {item!r}", field=field
                    )
            if len(set(picked)) != len(picked):
                raise ValidationError("names a choice twice", field=field)
        else:
            if not isinstance(value, str):
                raise ValidationError("must be text", field=field)
            value = value.strip()
            if len(value) > question.max_length:
                raise ValidationError(
                    f"must be at most {question.max_length} characters", field=field
                )
            if not value:
                if question.required:
                    raise ValidationError("is required", field=field)
                continue
        answers[question.id] = value
    headline = definition.headline
    return CheckedAnswers(answers, answers[headline.id] if headline is not None else None)
