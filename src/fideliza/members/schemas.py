"""Member payloads. An update can only touch the profile: never points, tier, status or program."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
LOCALES = ("es", "en", "it")
CONSENT_CHANNELS = ("email", "sms", "push", "marketing", "profiling")


class MemberProfile(BaseModel):
    """The fields a member (or the business) may set on a profile."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    birthday: date | None = None
    locale: str | None = None
    consent: dict[str, bool] | None = None
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
        digits = re.sub(r"[\s().-]", "", value)
        if not _PHONE.match(digits):
            raise ValueError("is not a phone number (6–15 digits, optional leading +)")
        return digits

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and value not in LOCALES:
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

    external_id: str = Field(min_length=1, max_length=100)
    referral_code: str | None = Field(default=None, max_length=32)


class MemberUpdate(MemberProfile):
    """A profile update (every field optional; unknown fields such as points are refused)."""
