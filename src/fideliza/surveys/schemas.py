"""A survey definition (JSON, versioned) and what the API reads and writes.

A definition names its headline `kind` (the score the analytics read: NPS 0–10 or CSAT 1–5,
or none for `custom`), its questions with their texts per locale (es, en, it), and when it is
sent (`sending`). Errors name the path of the first problem, e.g. ``questions[2].choices``.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fideliza.core.errors import ValidationError
from fideliza.core.validation import field_path

LOCALES = ("es", "en", "it")
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")


class SurveyKind(StrEnum):
    """The survey's headline score: what `score` means in the responses table."""

    NPS = "nps"  # 0–10, likelihood to recommend
    CSAT = "csat"  # 1–5, satisfaction
    CUSTOM = "custom"  # no headline score


class Trigger(StrEnum):
    """Why a member was invited."""

    PURCHASE = "purchase"  # sampled after a purchase, with a quiet period per member
    CASE = "case"  # after a complaint was resolved
    RELATIONSHIP = "relationship"  # every N months
    MANUAL = "manual"  # by an operator (CLI), for one member


class QuestionType(StrEnum):
    NPS = "nps"
    CSAT = "csat"
    SCALE = "scale"
    CHOICE = "choice"
    TEXT = "text"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Texts = dict[Literal["es", "en", "it"], Annotated[str, StringConstraints(min_length=1)]]
QuestionId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class Choice(_Model):
    value: QuestionId
    text: Texts


class Question(_Model):
    """One question; `min`/`max` for `scale`, `choices` (and `multiple`) for `choice`."""

    id: QuestionId
    type: QuestionType
    text: Texts
    required: bool = True
    min: int | None = Field(default=None, ge=0, le=100, validate_default=True)
    max: int | None = Field(default=None, ge=1, le=100, validate_default=True)
    choices: list[Choice] | None = Field(default=None, validate_default=True)
    multiple: bool = False
    max_length: int = Field(default=2000, ge=1, le=10_000)

    @field_validator("min", "max")
    @classmethod
    def _scale_bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if kind is QuestionType.SCALE:
            if value is None:
                raise ValueError("is required for a scale question")
            if info.field_name == "max" and value <= info.data.get("min", -1):
                raise ValueError("must be above min")
        elif value is not None and kind is not None:
            raise ValueError(f"is only for scale questions, not {kind}")
        return value

    @field_validator("choices")
    @classmethod
    def _choices(cls, value: list[Choice] | None, info: ValidationInfo) -> list[Choice] | None:
        kind = info.data.get("type")
        if kind is QuestionType.CHOICE:
            if not value or len(value) < 2:
                raise ValueError("a choice question needs at least 2 choices")
            values = [choice.value for choice in value]
            if len(set(values)) != len(values):
                raise ValueError("choice values must be distinct")
        elif value is not None and kind is not None:
            raise ValueError(f"are only for choice questions, not {kind}")
        return value

    @property
    def bounds(self) -> tuple[int, int] | None:
        """The inclusive range of a numeric answer (None: not numeric)."""
        if self.type is QuestionType.NPS:
            return (0, 10)
        if self.type is QuestionType.CSAT:
            return (1, 5)
        if self.type is QuestionType.SCALE:
            assert self.min is not None and self.max is not None
            return (self.min, self.max)
        return None


_PURCHASE_ONLY = ("sample_rate", "quiet_days", "max_age_days")


class Sending(_Model):
    """When invitations go out; `expires_days` is how long a link can be answered."""

    trigger: Trigger
    expires_days: int = Field(default=14, ge=1, le=365)
    # after a purchase: the share of purchases sampled, and no second invitation within
    # `quiet_days`; purchases older than `max_age_days` are no longer worth asking about.
    sample_rate: Decimal | None = Field(default=None, ge=0, le=1, validate_default=True)
    quiet_days: int | None = Field(default=None, ge=0, le=3650, validate_default=True)
    max_age_days: int | None = Field(default=None, ge=1, le=90, validate_default=True)
    # relationship: every this many months per member (counted from enrolment at first)
    every_months: int | None = Field(default=None, ge=1, le=60, validate_default=True)

    @field_validator(*_PURCHASE_ONLY, "every_months")
    @classmethod
    def _fits_trigger(cls, value: Any, info: ValidationInfo) -> Any:
        trigger = info.data.get("trigger")
        if trigger is None:
            return value
        wanted = Trigger.PURCHASE if info.field_name in _PURCHASE_ONLY else Trigger.RELATIONSHIP
        if trigger is wanted:
            if value is None and info.field_name in ("sample_rate", "every_months"):
                raise ValueError(f"is required for trigger {wanted.value!r}")
        elif value is not None:
            raise ValueError(f"is only for trigger {wanted.value!r}")
        return value


class SurveyDefinition(_Model):
    """One version of a survey, as a program manager writes it (JSON)."""

    code: Annotated[str, StringConstraints(pattern=_CODE.pattern)]
    kind: SurveyKind
    default_locale: Literal["es", "en", "it"] = "es"
    title: Texts
    questions: Annotated[list[Question], Field(min_length=1, max_length=50)]
    sending: Sending

    @model_validator(mode="after")
    def _consistent(self) -> SurveyDefinition:
        ids = [question.id for question in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be distinct")
        if self.kind is not SurveyKind.CUSTOM:
            headline = [q for q in self.questions if q.type.value == self.kind.value]
            if len(headline) != 1:
                raise ValueError(
                    f"a {self.kind} survey needs exactly one {self.kind} question, "
                    f"found {len(headline)}"
                )
            if not headline[0].required:
                raise ValueError(f"the {self.kind} question must be required")
        return self

    @property
    def headline(self) -> Question | None:
        """The question whose answer is the response's score (None for custom surveys)."""
        for question in self.questions:
            if question.type.value == self.kind.value:
                return question
        return None

    def missing_texts(self) -> str | None:
        """The path of the first text lacking the default locale (every text needs it)."""
        if self.default_locale not in self.title:
            return "title"
        for index, question in enumerate(self.questions):
            if self.default_locale not in question.text:
                return f"questions[{index}].text"
            for number, choice in enumerate(question.choices or ()):
                if self.default_locale not in choice.text:
                    return f"questions[{index}].choices[{number}].text"
        return None


def parse_definition(data: Any) -> SurveyDefinition:
    """Validates a survey definition, raising a ValidationError that names the first bad path."""
    if not isinstance(data, dict | SurveyDefinition):
        raise ValidationError("must be a JSON object", field="definition")
    try:
        parsed = SurveyDefinition.model_validate(data)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        location = tuple(part for part in first["loc"] if part != "[key]")  # a bad locale
        message = str(first["msg"]).removeprefix("Value error, ")
        message = re.sub(r"^(Input|String|Value) should ", "must ", message)
        if first["type"] == "extra_forbidden":
            message = "is not a known field"
        elif first["type"] == "missing":
            message = "is required"
        raise ValidationError(message, field=field_path(location) or None) from None
    missing = parsed.missing_texts()
    if missing is not None:
        raise ValidationError(
            f"needs a text in the default locale {parsed.default_locale!r}", field=missing
        )
    return parsed


# --- what the API reads ------------------------------------------------------------------------


class SurveyRead(BaseModel):
    id: int
    code: str
    version: int
    kind: str
    trigger: str
    active: bool
    created_at: datetime
    definition: dict[str, Any]


class InvitationRead(BaseModel):
    id: int
    survey_id: int
    survey_code: str
    member_id: int
    trigger: str
    source_ref: str
    locale: str
    created_at: datetime
    expires_at: datetime
    answered_at: datetime | None


class AnswerIn(BaseModel):
    """A member's answers: question id → a whole number, a choice value (or a list), or text."""

    model_config = ConfigDict(extra="forbid")

    # Checked against the survey's questions by the service (errors name answers.<id>).
    answers: dict[str, Any]


class AnswerRead(BaseModel):
    response_id: int
    kind: str
    score: int | None
    points_earned: int
