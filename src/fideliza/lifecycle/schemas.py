"""Lifecycle payloads: the program's welcome, birthday, anniversary and appreciation-day setup."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from fideliza.lifecycle.domain import BirthdayMode
from fideliza.rules.schemas import MAX_FACTOR

Points = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]
PositivePoints = Annotated[StrictInt, Field(ge=1, le=1_000_000_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BirthdayBonus(_Model):
    """`points` once a year: on the birthday (`day`) or during the birth month (`month`)."""

    points: PositivePoints
    mode: BirthdayMode = BirthdayMode.DAY


class AppreciationDay(_Model):
    """A local date range (both inclusive) with a purchase multiplier, a bonus, or both.

    The multiplier becomes an earning rule (kept in step by `configure`); the bonus goes once
    to each member with a purchase in the range.
    """

    name: Annotated[str, Field(min_length=1, max_length=60)]
    start: date
    end: date
    multiplier: (
        Annotated[Decimal, Field(gt=1, le=MAX_FACTOR, max_digits=8, decimal_places=4)] | None
    ) = None
    bonus_points: PositivePoints | None = None

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, value: date, info: object) -> date:
        start = getattr(info, "data", {}).get("start")
        if start is not None and value < start:
            raise ValueError(f"must not be before start ({start.isoformat()})")
        return value

    @model_validator(mode="after")
    def _gives_something(self) -> AppreciationDay:
        if self.multiplier is None and self.bonus_points is None:
            raise ValueError("give a multiplier, bonus_points or both")
        return self


class LifecycleConfig(_Model):
    """What a program gives along a membership (0 or absent: that bonus is off)."""

    welcome_points: Points = 0
    birthday: BirthdayBonus | None = None
    anniversary_points: Points = 0
    appreciation_days: Annotated[list[AppreciationDay], Field(max_length=100)] = Field(
        default_factory=list
    )

    @field_validator("appreciation_days")
    @classmethod
    def _unique_names(cls, value: list[AppreciationDay]) -> list[AppreciationDay]:
        names = [day.name for day in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"name {name!r} is used twice")
        return value
