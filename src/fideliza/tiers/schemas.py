"""Pydantic models for a program's tier configuration (levels + policy) as JSON.

Per-field checks are Pydantic constraints; the checks across levels (unique codes and ranks,
thresholds increasing with rank) and the policy's consistency are the domain's, re-raised here
as Pydantic errors located at the offending field, e.g. `("levels", 2, "threshold")`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NoReturn

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fideliza.core.errors import ValidationError
from fideliza.core.validation import as_validation_error, validate
from fideliza.tiers.domain import (
    MAX_ROLLING_MONTHS,
    TierBasis,
    TierLevel,
    TierPeriod,
    TierPolicy,
    validate_levels,
)

Loc = tuple[str | int, ...]

_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


class TierLevelConfig(BaseModel):
    """One level: `threshold` is in the unit of the policy's basis (points, money, purchases)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=80)
    rank: int = Field(strict=True)
    # Stored as NUMERIC(18, 4): refuse what the column could not hold exactly.
    threshold: Decimal = Field(ge=0, allow_inf_nan=False, max_digits=18, decimal_places=4)
    multiplier: Decimal = Field(
        default=Decimal(1), ge=1, allow_inf_nan=False, max_digits=18, decimal_places=4
    )
    benefits: dict[str, Any] = Field(default_factory=dict)


class TierPolicyConfig(BaseModel):
    """How members qualify; `months` is required for, and only allowed with, a rolling window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    basis: TierBasis
    period: TierPeriod
    months: int | None = Field(default=None, strict=True, ge=1, le=MAX_ROLLING_MONTHS)
    grace_periods: int = Field(default=0, strict=True, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> TierPolicyConfig:
        try:
            self.to_domain()
        except ValidationError as error:
            _reraise(error, title=type(self).__name__, strip="policy")
        return self

    def to_domain(self) -> TierPolicy:
        """Returns the domain policy."""
        return TierPolicy(
            basis=self.basis,
            period=self.period,
            months=self.months,
            grace_periods=self.grace_periods,
        )


class TierConfig(BaseModel):
    """A program's tier configuration: its ladder of levels and its qualification policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: list[TierLevelConfig] = Field(min_length=1)
    policy: TierPolicyConfig

    @model_validator(mode="after")
    def _consistent(self) -> TierConfig:
        levels = self._domain_levels()
        try:
            validate_levels(levels, basis=self.policy.basis)
        except ValidationError as error:
            _reraise(error, title=type(self).__name__)
        return self

    def _domain_levels(self) -> tuple[TierLevel, ...]:
        levels = []
        for index, level in enumerate(self.levels):
            try:
                levels.append(
                    TierLevel(
                        code=level.code,
                        name=level.name,
                        rank=level.rank,
                        threshold=level.threshold,
                        multiplier=level.multiplier,
                        benefits=dict(level.benefits),
                    )
                )
            except ValidationError as error:
                # Unreachable while the Field constraints above are at least as strict.
                _reraise(error, title=type(self).__name__, prefix=f"levels[{index}]")
        return tuple(levels)

    def to_domain(self) -> tuple[tuple[TierLevel, ...], TierPolicy]:
        """Returns the domain levels (sorted by rank) and policy."""
        levels = sorted(self._domain_levels(), key=lambda level: level.rank)
        return tuple(levels), self.policy.to_domain()

    @classmethod
    def from_domain(cls, levels: Iterable[TierLevel], policy: TierPolicy) -> TierConfig:
        """Builds the configuration from domain objects (validating them again)."""
        return cls.model_validate(
            {
                "levels": [
                    {
                        "code": level.code,
                        "name": level.name,
                        "rank": level.rank,
                        "threshold": level.threshold,
                        "multiplier": level.multiplier,
                        "benefits": dict(level.benefits),
                    }
                    for level in levels
                ],
                "policy": {
                    "basis": policy.basis,
                    "period": policy.period,
                    "months": policy.months,
                    "grace_periods": policy.grace_periods,
                },
            }
        )


def parse_tier_config(raw: Mapping[str, Any] | str | bytes) -> TierConfig:
    """Validates a tier configuration (decoded JSON or JSON text).

    Raises the core ValidationError, naming the first field in error as a path such as
    `levels[2].threshold` or `policy.months`.
    """
    if isinstance(raw, str | bytes):
        try:
            return TierConfig.model_validate_json(raw)
        except pydantic.ValidationError as error:
            raise as_validation_error(error) from None
    return validate(TierConfig, raw)


def _loc(path: str) -> Loc:
    """Parses a field path into a Pydantic location: "levels[2].code" -> ("levels", 2, "code")."""
    return tuple(int(index) if index else name for index, name in _PATH_PART.findall(path))


def _reraise(error: ValidationError, *, title: str, strip: str = "", prefix: str = "") -> NoReturn:
    """Raises a domain ValidationError as a Pydantic one located at the error's field."""
    loc = _loc(f"{prefix}.{error.field}" if prefix and error.field else error.field or prefix)
    if strip and loc[:1] == (strip,):
        loc = loc[1:]
    raise pydantic_core.ValidationError.from_exception_data(
        title,
        [
            pydantic_core.InitErrorDetails(
                type=pydantic_core.PydanticCustomError(error.code, error.message),
                loc=loc,
                input=None,
            )
        ],
    )
