"""Member payloads. An update can only touch the profile: never points, tier, status or program."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

from fideliza.core.validation import Date, NotBlank

# Spaces as JavaScript's `\s` (JSON Schema patterns) and the stripping of surrounding spaces
# agree on them, spelt out so that Python's `\s` (which adds control characters) cannot differ.
_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_ADDRESS_PART = rf"[^@{_SPACE}\x00-\x1f\x7f-\x9f\ufeff]+"
_EMAIL_TEXT = rf"{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}"
_EMAIL = re.compile(rf"^{_EMAIL_TEXT}$")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_PHONE_SEPARATORS = rf"[{_SPACE}().-]"
LOCALES = ("es", "en", "it")
CONSENT_CHANNELS = ("email", "sms", "push", "marketing", "profiling")


# The OpenAPI states the validators' rules below, surrounding spaces (stripped) and all, so that
# a client learns them from the schema.
def _at_most(limit: int) -> BeforeValidator:
    # Counted as sent, before spaces are stripped: what `maxLength` in the schema counts.
    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return BeforeValidator(check)


Email = Annotated[
    str,
    _at_most(254),
    Field(max_length=254, json_schema_extra={"pattern": rf"^[{_SPACE}]*{_EMAIL_TEXT}[{_SPACE}]*$"}),
]
Phone = Annotated[
    str,
    _at_most(32),
    Field(
        max_length=32,
        json_schema_extra={
            "pattern": rf"^{_PHONE_SEPARATORS}*(\+{_PHONE_SEPARATORS}*)?"
            rf"([0-9]{_PHONE_SEPARATORS}*){{6,15}}$"
        },
    ),
]
Locale = Annotated[str, Field(json_schema_extra={"enum": list(LOCALES)})]
Consent = Annotated[
    dict[str, StrictBool],
    Field(json_schema_extra={"propertyNames": {"enum": list(CONSENT_CHANNELS)}}),
]
Birthday = Annotated[Date, Field(json_schema_extra={"pattern": r"^((19|20)[0-9]{2}-|2100-01-01$)"})]


class MemberProfile(BaseModel):
    """The fields a member (or the business) may set on a profile."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: Email | None = None
    phone: Phone | None = None
    birthday: Birthday | None = None
    locale: Locale | None = None
    consent: Consent | None = None
    attributes: dict[str, Any] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("is not an e-mail address")
        return value.lower() if value else value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = re.sub(_PHONE_SEPARATORS, "", value)
        if not _PHONE.match(digits):
            raise ValueError("is not a phone number (6–15 digits, optional leading +)")
        return digits

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, value: object) -> object:
        # Before the stripping of spaces: exactly one of the enum's values, as the schema says.
        if isinstance(value, str) and value not in LOCALES:
            raise ValueError(f"must be one of {', '.join(LOCALES)}")
        return value

    @field_validator("consent")
    @classmethod
    def _consent(cls, value: dict[str, bool] | None) -> dict[str, bool] | None:
        unknown = set(value or {}) - set(CONSENT_CHANNELS)
        if unknown:
            raise ValueError(
                f"unknown consent {sorted(unknown)[0]!r} ({', '.join(CONSENT_CHANNELS)})"
            )
        return value

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, value: date | None) -> date | None:
        if value is not None and not date(1900, 1, 1) <= value <= date(2100, 1, 1):
            raise ValueError("is not a plausible birthday")
        return value


class MemberCreate(MemberProfile):
    """Enrolment: the business's own id for the member plus the profile."""

    external_id: NotBlank = Field(min_length=1, max_length=100)
    referral_code: str | None = Field(default=None, max_length=32)


class MemberUpdate(MemberProfile):
    """A profile update (every field optional; unknown fields such as points are refused)."""
