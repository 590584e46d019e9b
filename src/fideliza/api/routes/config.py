"""The program's configuration as resources (admin keys only): its settings, its earning rules
(versioned JSON) and its tier ladder. Each change goes through its domain's service, which
validates it as a whole and writes its audit row."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.routes.rule_definition import RuleDefinitionIn
from fideliza.api.validation import IdPath
from fideliza.apikeys.domain import Scope
from fideliza.core.points import Rounding
from fideliza.core.validation import whole_number
from fideliza.ledger.domain import ExpiryPolicy
from fideliza.programs import service as programs
from fideliza.programs.domain import ProgramSettings
from fideliza.rules import service as rules
from fideliza.rules.models import Rule, RuleVersion
from fideliza.tiers import service as tiers
from fideliza.tiers.domain import MAX_ROLLING_MONTHS, TierBasis
from fideliza.tiers.schemas import TierConfig

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["config"])
ADMIN_READ = reader(Scope.ADMIN)
ADMIN_WRITE = writer(Scope.ADMIN)

# --- program settings ----------------------------------------------------------------------------


class Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The bounds come before the validator, so that the schema states them as minimum/maximum.
ExpiryDays = Annotated[int, Field(strict=True, ge=1, le=36_500), BeforeValidator(whole_number)]
ExpiryMonths = Annotated[int, Field(strict=True, ge=0, le=1_200), BeforeValidator(whole_number)]
WindowDays = Annotated[int, Field(strict=True, ge=0, le=3_650), BeforeValidator(whole_number)]
HoldMinutes = Annotated[int, Field(strict=True, ge=1, le=525_600), BeforeValidator(whole_number)]
Rank = Annotated[int, Field(strict=True, ge=0, le=1_000_000), BeforeValidator(whole_number)]
GracePeriods = Annotated[int, Field(strict=True, ge=0, le=120), BeforeValidator(whole_number)]
RollingMonths = Annotated[
    int, Field(strict=True, ge=1, le=MAX_ROLLING_MONTHS), BeforeValidator(whole_number)
]


class NeverExpires(Forbid):
    mode: Literal["never"]


class ExpiresAfterDays(Forbid):
    """Points expire `days` × 24 h after they were earned."""

    mode: Literal["days"]
    days: ExpiryDays


class ExpiresAtMonthEnd(Forbid):
    """Points expire at the end of the month `months` after the one they were earned in."""

    mode: Literal["end_of_month"]
    months: ExpiryMonths


Expiry = Annotated[NeverExpires | ExpiresAfterDays | ExpiresAtMonthEnd, Field(discriminator="mode")]


class ProgramSettingsRead(BaseModel):
    """How the program's points behave."""

    return_window_days: int = Field(description="Earned points stay pending this long.")
    expiry: Expiry
    rounding: Rounding
    hold_ttl_minutes: int = Field(description="An uncaptured redemption hold is released then.")
    allow_negative_on_return: bool


class ProgramSettingsPatch(Forbid):
    """The settings to change (the others stay as they are; null leaves one unchanged)."""

    return_window_days: WindowDays | None = None
    expiry: Expiry | None = None
    rounding: Rounding | None = None
    hold_ttl_minutes: HoldMinutes | None = None
    allow_negative_on_return: StrictBool | None = None


def _expiry_read(policy: ExpiryPolicy) -> NeverExpires | ExpiresAfterDays | ExpiresAtMonthEnd:
    if policy.mode == "days":
        return ExpiresAfterDays(mode="days", days=policy.days)
    if policy.mode == "end_of_month":
        return ExpiresAtMonthEnd(mode="end_of_month", months=policy.months)
    return NeverExpires(mode="never")


def settings_read(settings: ProgramSettings) -> ProgramSettingsRead:
    return ProgramSettingsRead(
        return_window_days=settings.return_window_days,
        expiry=_expiry_read(settings.expiry),
        rounding=settings.rounding,
        hold_ttl_minutes=settings.hold_ttl_minutes,
        allow_negative_on_return=settings.allow_negative_on_return,
    )


@router.get("/program/settings", response_model=ProgramSettingsRead)
def get_program_settings(call: Annotated[Call, Depends(ADMIN_READ)]) -> ProgramSettingsRead:
    """How the program's points behave: return window, expiry, rounding, holds, returns."""
    with call.session() as db:
        return settings_read(programs.settings_of(call.program(db)))


@router.patch("/program/settings", response_model=ProgramSettingsRead)
def patch_program_settings(
    body: ProgramSettingsPatch, call: Annotated[Write, Depends(ADMIN_WRITE)]
) -> Response:
    """Changes some settings; they apply to points earned from now on (lots already earned
    keep their expiry). Tiers have their own resource, `/v1/tiers/config`."""

    def work(db: Session) -> Response:
        changes = body.model_dump(mode="json", exclude_none=True)
        program = call.program(db)
        if changes:  # nothing to change: nothing to audit either
            programs.update_settings(
                db, program=program, changes=changes, now=call.now, actor=call.caller.actor
            )
        return json_response(settings_read(programs.settings_of(program)))

    return call.run(work)


# --- earning rules -------------------------------------------------------------------------------

DEFINITION_EXAMPLE = {
    "name": "Coffee lovers",
    "conditions": {"items": {"include_categories": ["coffee"]}},
    "actions": [{"type": "points_per_amount", "points": 2, "per": "1.00"}],
}


class RuleIn(Forbid):
    definition: RuleDefinitionIn = Field(
        description=(
            "A rule definition: validated as a whole, an error names its path (e.g. "
            "`definition.conditions.max_amount`). Points are integers, money and factors "
            "decimal strings."
        ),
        examples=[DEFINITION_EXAMPLE],
    )

    def as_json(self) -> dict[str, Any]:
        """The definition as the rules service takes it (fields left out stay out)."""
        return self.definition.model_dump(mode="json", exclude_none=True, exclude_unset=True)


class RuleActiveIn(Forbid):
    active: StrictBool = Field(description="false: the rule stops earning (its history stays).")


class RuleRead(BaseModel):
    """A rule with its current version."""

    id: int
    name: str
    active: bool
    version: int
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime = Field(description="When the current version was saved.")
    updated_by: str | None


class RuleVersionRead(BaseModel):
    version: int
    definition: dict[str, Any]
    created_at: datetime
    created_by: str | None


class RuleDetail(RuleRead):
    """A rule with every version it had, oldest first (postings name the version they used)."""

    versions: list[RuleVersionRead]


def rule_read(rule: Rule, current: RuleVersion) -> RuleRead:
    return RuleRead(
        id=rule.id,
        name=rule.name,
        active=rule.active,
        version=rule.current_version,
        definition=dict(current.definition),
        created_at=rule.created_at,
        updated_at=current.created_at,
        updated_by=current.created_by,
    )


def rule_detail(db: Session, rule: Rule) -> RuleDetail:
    versions = rules.versions_of(db, rule_id=rule.id)
    current = next(v for v in versions if v.version == rule.current_version)
    return RuleDetail(
        **rule_read(rule, current).model_dump(),
        versions=[
            RuleVersionRead(
                version=v.version,
                definition=dict(v.definition),
                created_at=v.created_at,
                created_by=v.created_by,
            )
            for v in versions
        ],
    )


@router.get("/rules", response_model=list[RuleRead])
def list_rules(call: Annotated[Call, Depends(ADMIN_READ)]) -> list[RuleRead]:
    """The program's earning rules, inactive ones included, in creation order."""
    with call.session() as db:
        found = rules.list_rules(db, program_id=call.program_id)
        current = rules.current_versions(db, rules=found)
        return [rule_read(rule, current[rule.id]) for rule in found]


@router.post("/rules", status_code=201, response_model=RuleDetail)
def create_rule(body: RuleIn, call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Creates an earning rule at version 1 (active at once); names are unique (409)."""

    def work(db: Session) -> Response:
        rule = rules.create(
            db,
            program=call.program(db),
            definition=body.as_json(),
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(rule_detail(db, rule), status=201)

    return call.run(work)


@router.get("/rules/{rule_id}", response_model=RuleDetail)
def get_rule(rule_id: IdPath, call: Annotated[Call, Depends(ADMIN_READ)]) -> RuleDetail:
    """A rule with every version it had."""
    with call.session() as db:
        return rule_detail(db, rules.get(db, program_id=call.program_id, rule_id=rule_id))


@router.post("/rules/{rule_id}/versions", status_code=201, response_model=RuleDetail)
def new_rule_version(
    rule_id: IdPath, body: RuleIn, call: Annotated[Write, Depends(ADMIN_WRITE)]
) -> Response:
    """Saves a new version of a rule; it earns from now on, and earlier postings keep naming
    the version they used."""

    def work(db: Session) -> Response:
        rule = rules.update(
            db,
            program=call.program(db),
            rule_id=rule_id,
            definition=body.as_json(),
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(rule_detail(db, rule), status=201)

    return call.run(work)


@router.patch("/rules/{rule_id}", response_model=RuleDetail)
def set_rule_active(
    rule_id: IdPath, body: RuleActiveIn, call: Annotated[Write, Depends(ADMIN_WRITE)]
) -> Response:
    """Switches a rule off (or on again); nothing it earned changes."""

    def work(db: Session) -> Response:
        rule = rules.set_active(
            db,
            program=call.program(db),
            rule_id=rule_id,
            active=body.active,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(rule_detail(db, rule))

    return call.run(work)


# --- tiers -----------------------------------------------------------------------------------

# Stored as NUMERIC(18, 4): at most 14 digits before the point and 4 after.
THRESHOLD = r"^\d{1,14}(\.\d{1,4})?$"
MULTIPLIER = r"^[1-9]\d{0,13}(\.\d{1,4})?$"  # 1 or more
NAME = r"^[^\x00]*[^\s\x00][^\x00]*$"  # not blank


class TierLevelIn(Forbid):
    """One level; `threshold` is in the unit of the policy's basis (points, money, purchases)."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=80, pattern=NAME)
    rank: Rank = Field(description="Higher ranks are better.")
    threshold: str = Field(pattern=THRESHOLD, examples=["500"])
    multiplier: str = Field(default="1", pattern=MULTIPLIER, description="On earned points.")
    benefits: dict[str, Any] = Field(default_factory=dict, max_length=50)


class CalendarPolicy(Forbid):
    """Qualification over the calendar year, quarter or month; reviewed when it closes."""

    basis: TierBasis
    period: Literal["calendar_year", "calendar_quarter", "calendar_month"]
    grace_periods: GracePeriods = 0


class RollingPolicy(Forbid):
    """Qualification over the last `months` months, reviewed every month."""

    basis: TierBasis
    period: Literal["rolling_months"]
    months: RollingMonths
    grace_periods: GracePeriods = 0


class TierConfigIn(Forbid):
    """The whole ladder: codes and ranks unique, thresholds rising with rank (whole numbers
    for the points and purchases bases)."""

    levels: list[TierLevelIn] = Field(min_length=1, max_length=50)
    policy: Annotated[CalendarPolicy | RollingPolicy, Field(discriminator="period")]


class TierConfigRead(BaseModel):
    """The program's tiers; `configured` is false when it has none."""

    configured: bool
    config: TierConfigIn | None


def _plain(value: Decimal) -> str:
    return str(tiers.plain_decimal(value))


def tiers_read(config: TierConfig | None) -> TierConfigRead:
    if config is None:
        return TierConfigRead(configured=False, config=None)
    policy = config.policy
    shown: CalendarPolicy | RollingPolicy
    if policy.months is not None:
        shown = RollingPolicy(
            basis=policy.basis,
            period="rolling_months",
            months=policy.months,
            grace_periods=policy.grace_periods,
        )
    else:
        shown = CalendarPolicy.model_validate(
            {
                "basis": policy.basis,
                "period": policy.period.value,
                "grace_periods": policy.grace_periods,
            }
        )
    levels = [
        TierLevelIn(
            code=level.code,
            name=level.name,
            rank=level.rank,
            threshold=_plain(level.threshold),
            multiplier=_plain(level.multiplier),
            benefits=dict(level.benefits),
        )
        for level in sorted(config.levels, key=lambda level: level.rank)
    ]
    return TierConfigRead(configured=True, config=TierConfigIn(levels=levels, policy=shown))


@router.get("/tiers/config", response_model=TierConfigRead)
def get_tiers(call: Annotated[Call, Depends(ADMIN_READ)]) -> TierConfigRead:
    """The tier ladder (levels by rank) and how members qualify."""
    with call.session() as db:
        return tiers_read(tiers.current_config(db, program=call.program(db)))


@router.put("/tiers/config", response_model=TierConfigRead)
def put_tiers(body: TierConfigIn, call: Annotated[Write, Depends(ADMIN_WRITE)]) -> Response:
    """Replaces the ladder and policy, validated as a whole (an error names the level, e.g.
    `levels[2].threshold`)."""

    def work(db: Session) -> Response:
        program = call.program(db)
        tiers.configure(
            db,
            program=program,
            config=body.model_dump(mode="json"),
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(tiers_read(tiers.current_config(db, program=program)))

    return call.run(work)
