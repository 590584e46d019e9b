"""Tier use cases: configure the ladder, upgrade on activity, review at period end, status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fideliza.db import upsert_add
from fideliza.members.models import Member, MemberMonth
from fideliza.programs import service as programs
from fideliza.programs.models import JobRun, Program
from fideliza.tiers.domain import (
    TierBasis,
    TierChange,
    TierLevel,
    TierPeriod,
    TierPolicy,
    current_window,
    find_level,
    points_to_next_tier,
    review_at_period_end,
    upgrade_on_activity,
    window_metric,
)
from fideliza.tiers.models import TierHistory, TierLevelRow
from fideliza.tiers.schemas import TierConfig, parse_tier_config


def configure(
    db: Session,
    *,
    program: Program,
    config: dict[str, Any] | str,
    now: datetime,
    actor: str | None = None,
) -> TierConfig:
    """Sets the program's tier ladder and policy (validated as a whole first)."""
    parsed = parse_tier_config(config)
    levels, policy = parsed.to_domain()
    db.execute(delete(TierLevelRow).where(TierLevelRow.program_id == program.id))
    db.flush()
    for level in levels:
        db.add(
            TierLevelRow(
                program_id=program.id,
                code=level.code,
                name=level.name,
                rank=level.rank,
                threshold=level.threshold,
                multiplier=level.multiplier,
                benefits=dict(level.benefits),
            )
        )
    program.settings = {
        **program.settings,
        "tier_policy": {
            "basis": policy.basis.value,
            "period": policy.period.value,
            "months": policy.months,
            "grace_periods": policy.grace_periods,
        },
    }
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.tiers.configured",
        subject=program.code,
        now=now,
        actor=actor,
        data={"levels": [level.code for level in levels]},
    )
    db.info.pop("tier_ladder", None)
    db.flush()
    return parsed


@dataclass(frozen=True, slots=True)
class Ladder:
    """A program's tiers as the services use them."""

    levels: tuple[TierLevel, ...]
    policy: TierPolicy

    def multiplier(self, code: str | None) -> Decimal:
        level = find_level(self.levels, code) if code else None
        return level.multiplier if level else Decimal(1)


def ladder(db: Session, *, program: Program) -> Ladder | None:
    """The program's ladder, or None when it has no tiers (cached on the session)."""
    cache: dict[int, Ladder | None] = db.info.setdefault("tier_ladder", {})
    if program.id not in cache:
        raw_policy = program.settings.get("tier_policy")
        rows = db.scalars(
            select(TierLevelRow)
            .where(TierLevelRow.program_id == program.id)
            .order_by(TierLevelRow.rank)
        ).all()
        if not raw_policy or not rows:
            cache[program.id] = None
        else:
            cache[program.id] = Ladder(
                levels=tuple(
                    TierLevel(
                        code=r.code,
                        name=r.name,
                        rank=r.rank,
                        threshold=r.threshold,
                        multiplier=r.multiplier,
                        benefits=r.benefits,
                    )
                    for r in rows
                ),
                policy=TierPolicy(
                    basis=raw_policy["basis"],
                    period=raw_policy["period"],
                    months=raw_policy.get("months"),
                    grace_periods=raw_policy.get("grace_periods", 0),
                ),
            )
    return cache[program.id]


def current_config(db: Session, *, program: Program) -> TierConfig | None:
    """The program's tier ladder and policy as configured, or None when it has no tiers."""
    found = ladder(db, program=program)
    if found is None:
        return None
    return TierConfig.from_domain(found.levels, found.policy)


def basis_column(basis: TierBasis) -> Any:
    """The member_months column a tier basis sums."""
    return {
        TierBasis.POINTS: MemberMonth.points_earned,
        TierBasis.SPEND: MemberMonth.spend,
        TierBasis.PURCHASES: MemberMonth.purchases,
    }[basis]


def add_month_activity(db: Session, rows: list[dict[str, Any]]) -> None:
    """Adds spend, points and purchases to members' monthly buckets (keyed member + month)."""
    upsert_add(
        db,
        MemberMonth.__table__,
        keys=("member_id", "month"),
        add=("spend", "points_earned", "purchases"),
        rows=rows,
    )


def month_buckets(
    db: Session, *, member_id: int, basis: TierBasis, since: date
) -> dict[date, Decimal]:
    """The member's monthly activity on the ladder's basis, from `since` on."""
    column = basis_column(basis)
    rows = db.execute(
        select(MemberMonth.month, column).where(
            MemberMonth.member_id == member_id, MemberMonth.month >= since
        )
    ).all()
    return {month: Decimal(str(value)) for month, value in rows}


def plain_decimal(value: Decimal) -> Decimal:
    """87.7900 → 87.79 and 100.00 → 100: the same metric reads the same wherever it was summed."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def local_today(program: Program, now: datetime) -> date:
    return now.astimezone(ZoneInfo(program.timezone)).date()


def _apply(
    db: Session, *, program: Program, member: Member, change: TierChange, now: datetime
) -> None:
    db.add(
        TierHistory(
            program_id=program.id,
            member_id=member.id,
            from_code=change.from_code,
            to_code=change.to_code,
            changed_at=now,
            reason=change.reason,
        )
    )
    member.tier_code = change.to_code
    member.tier_since = now
    programs.publish(
        db,
        program_id=program.id,
        event_type="tier.changed",
        payload={
            "member_id": member.id,
            "from": change.from_code,
            "to": change.to_code,
            "reason": change.reason,
        },
        now=now,
    )


def upgrade_if_qualified(
    db: Session, *, program: Program, member: Member, now: datetime
) -> TierChange | None:
    """Upgrades the member as soon as the current window's metric reaches a higher tier."""
    found = ladder(db, program=program)
    if found is None:
        return None
    today = local_today(program, now)
    first, _ = current_window(found.policy, today)
    metric = plain_decimal(
        window_metric(
            found.policy,
            month_buckets(db, member_id=member.id, basis=found.policy.basis, since=first),
            today,
        )
    )
    change = upgrade_on_activity(found.levels, member.tier_code, metric)
    if change is not None:
        _apply(db, program=program, member=member, change=change, now=now)
        member.tier_grace_used = 0
    return change


def review_closed_period(db: Session, *, program: Program, now: datetime) -> int | None:
    """At the end of a period, keeps, downgrades (after grace) or upgrades every member once.

    Reviews the latest period that has ended; a second run for the same period does nothing
    (it is recorded in job_runs). Returns the number of tier changes, None if nothing was due.
    """
    found = ladder(db, program=program)
    if found is None:
        return None
    today = local_today(program, now)
    closed_end = last_closed_period_end(found.policy, today)
    marker = f"tier_review:{closed_end.isoformat()}"
    if db.scalar(select(JobRun.id).where(JobRun.program_id == program.id, JobRun.source == marker)):
        return None
    first, _ = current_window(found.policy, closed_end)
    changes = 0
    members = db.scalars(
        select(Member)
        .where(Member.program_id == program.id, Member.status != "closed")
        .order_by(Member.id)
    ).all()
    for member in members:
        buckets = month_buckets(db, member_id=member.id, basis=found.policy.basis, since=first)
        metric = plain_decimal(window_metric(found.policy, buckets, closed_end))
        review = review_at_period_end(
            found.policy, found.levels, member.tier_code, metric, member.tier_grace_used
        )
        member.tier_grace_used = review.grace_used
        if review.change is not None:
            _apply(db, program=program, member=member, change=review.change, now=now)
            changes += 1
    db.add(
        JobRun(
            program_id=program.id,
            kind="tier_review",
            source=marker,
            rows_done=len(members),
            status="done",
            detail={"changes": changes},
            updated_at=now,
        )
    )
    db.flush()
    return changes


def last_closed_period_end(policy: TierPolicy, today: date) -> date:
    """The last day of the latest period that has ended (rolling windows are reviewed monthly)."""
    if policy.period is TierPeriod.ROLLING_MONTHS:
        return today.replace(day=1) - timedelta(days=1)
    first, _ = current_window(policy, today)
    return first - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class TierStatus:
    """A member's tier, the metric that counts, the next tier and what is missing to reach it."""

    code: str | None
    metric: Decimal
    next_code: str | None
    missing: Decimal | None
    window: tuple[date, date]
    history: list[TierHistory]


def status(db: Session, *, program: Program, member: Member, now: datetime) -> TierStatus | None:
    """Where the member stands on the ladder (None when the program has no tiers)."""
    found = ladder(db, program=program)
    if found is None:
        return None
    today = local_today(program, now)
    window = current_window(found.policy, today)
    metric = plain_decimal(
        window_metric(
            found.policy,
            month_buckets(db, member_id=member.id, basis=found.policy.basis, since=window[0]),
            today,
        )
    )
    following = points_to_next_tier(found.levels, member.tier_code, metric)
    history = list(
        db.scalars(
            select(TierHistory).where(TierHistory.member_id == member.id).order_by(TierHistory.id)
        )
    )
    return TierStatus(
        code=member.tier_code,
        metric=metric,
        next_code=following[0].code if following else None,
        missing=following[1] if following else None,
        window=window,
        history=history,
    )
