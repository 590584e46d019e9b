"""Lifecycle use cases: configure the bonuses, and the daily job that grants what is due.

The job (`run_due`) is idempotent per period and safe with several workers: one worker at a
time holds the program's lifecycle row (PostgreSQL: the others skip it and return at once),
and each bonus is first claimed by a row unique per (member, kind, period) and then posted
with a unique ledger idempotency key, so a bonus is granted exactly once. Members due are
found through indexes (birthday, enrolment time, purchases in a range), chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fideliza.core.errors import Conflict
from fideliza.core.validation import validate
from fideliza.db import Money
from fideliza.ledger import service as ledger
from fideliza.lifecycle.domain import (
    FIRST_BIRTH_YEAR,
    WELCOME_PERIOD,
    BirthdayMode,
    BonusKind,
    anniversary_enrolment_dates,
    appreciation_period,
    birth_month_ranges,
    celebrated_dates,
    days_to_process,
    idempotency_key,
    month_starts,
)
from fideliza.lifecycle.models import LifecycleConfigRow, LifecycleGrant
from fideliza.lifecycle.schemas import AppreciationDay, LifecycleConfig
from fideliza.members.domain import MemberStatus
from fideliza.members.models import Member
from fideliza.programs import service as programs
from fideliza.programs.domain import ProgramSettings
from fideliza.programs.models import Program
from fideliza.purchases.models import Purchase
from fideliza.rules import service as rules

ISSUER = "fideliza.lifecycle"
CHUNK = 1000
# Enrolments committed a little after the moment they carry are still welcomed next run.
WELCOME_OVERLAP = timedelta(days=1)
RULE_PREFIX = "Appreciation day: "


# --- configuration --------------------------------------------------------------------------


def configure(
    db: Session,
    *,
    program: Program,
    config: LifecycleConfig | dict[str, Any],
    now: datetime,
    actor: str | None = None,
) -> LifecycleConfig:
    """Sets the program's lifecycle bonuses, and keeps the appreciation-day rules in step."""
    parsed = validate(LifecycleConfig, config, prefix="config")
    row = db.get(LifecycleConfigRow, program.id)
    if row is None:
        row = LifecycleConfigRow(
            program_id=program.id, config={}, appreciation_rules={}, updated_at=now
        )
        db.add(row)
    previous = LifecycleConfig.model_validate(row.config) if row.config else LifecycleConfig()
    row.appreciation_rules = _sync_rules(
        db,
        program=program,
        days=parsed.appreciation_days,
        previous=previous,
        rule_ids=dict(row.appreciation_rules or {}),
        now=now,
        actor=actor,
    )
    if parsed.welcome_points and (row.welcome_since is None or not previous.welcome_points):
        row.welcome_since = now  # members enrolled while there was no bonus get none
    row.config = parsed.model_dump(mode="json")
    row.updated_at = now
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.lifecycle.configured",
        subject=program.code,
        now=now,
        actor=actor,
        data=row.config,
    )
    db.flush()
    return parsed


def get_config(db: Session, *, program_id: int) -> LifecycleConfig | None:
    """The program's lifecycle configuration, or None when it has none."""
    row = db.get(LifecycleConfigRow, program_id)
    return None if row is None else LifecycleConfig.model_validate(row.config)


def _rule_definition(day: AppreciationDay) -> dict[str, Any]:
    return {
        "name": f"{RULE_PREFIX}{day.name}",
        "activity": "purchase",
        "conditions": {"date_range": {"start": day.start.isoformat(), "end": day.end.isoformat()}},
        "actions": [{"type": "multiplier", "factor": str(day.multiplier)}],
    }


def _sync_rules(
    db: Session,
    *,
    program: Program,
    days: list[AppreciationDay],
    previous: LifecycleConfig,
    rule_ids: dict[str, int],
    now: datetime,
    actor: str | None,
) -> dict[str, int]:
    """Creates, updates or switches off the multiplier rule of each appreciation day."""
    before = {day.name: day for day in previous.appreciation_days if day.multiplier}
    wanted = {day.name: day for day in days if day.multiplier}
    for index, day in enumerate(days):
        if day.multiplier is None:
            continue
        rule_id = rule_ids.get(day.name)
        try:
            if rule_id is None:
                rule_ids[day.name] = rules.create(
                    db, program=program, definition=_rule_definition(day), now=now, actor=actor
                ).id
                continue
            if before.get(day.name) != day:
                rules.update(
                    db,
                    program=program,
                    rule_id=rule_id,
                    definition=_rule_definition(day),
                    now=now,
                    actor=actor,
                )
        except Conflict as error:
            raise Conflict(error.message, field=f"config.appreciation_days[{index}].name") from None
        if not rules.get(db, program_id=program.id, rule_id=rule_id).active:
            rules.set_active(
                db, program=program, rule_id=rule_id, active=True, now=now, actor=actor
            )
    for name, rule_id in rule_ids.items():
        if name not in wanted and rules.get(db, program_id=program.id, rule_id=rule_id).active:
            rules.set_active(
                db, program=program, rule_id=rule_id, active=False, now=now, actor=actor
            )
    return rule_ids


# --- the job --------------------------------------------------------------------------------


def run_due(db: Session, *, program_id: int, now: datetime) -> dict[str, int]:
    """Grants the welcome, birthday, anniversary and appreciation-day bonuses now due."""
    counts = {kind.value: 0 for kind in BonusKind}
    row = db.scalar(
        select(LifecycleConfigRow)
        .where(LifecycleConfigRow.program_id == program_id)
        .with_for_update(skip_locked=True)  # another worker is on it: nothing for us to do
        .execution_options(populate_existing=True)
    )
    if row is None:
        return counts
    config = LifecycleConfig.model_validate(row.config)
    program = programs.get(db, program_id=program_id)
    job = _Job(db=db, program=program, settings=programs.settings_of(program), now=now)
    today = now.astimezone(job.zone).date()
    days = days_to_process(row.days_done_through, today)

    if config.welcome_points and row.welcome_since is not None:
        counts["welcome"] = job.grant_all(
            BonusKind.WELCOME,
            WELCOME_PERIOD,
            config.welcome_points,
            [Member.enrolled_at >= row.welcome_since, Member.enrolled_at <= now],
        )
        row.welcome_since = max(row.welcome_since, now - WELCOME_OVERLAP)
    if config.birthday is not None:
        due_days = (
            days
            if config.birthday.mode is BirthdayMode.DAY
            else month_starts(days, row.days_done_through)
        )
        for day in due_days:
            counts["birthday"] += job.grant_all(
                BonusKind.BIRTHDAY,
                str(day.year),
                config.birthday.points,
                [_born_on(day, config.birthday.mode)],
            )
    if config.anniversary_points:
        first_year = job.first_enrolment_year()
        for day in days:
            if first_year is not None and first_year < day.year:
                counts["anniversary"] += job.grant_all(
                    BonusKind.ANNIVERSARY,
                    str(day.year),
                    config.anniversary_points,
                    [job.enrolled_on_any(anniversary_enrolment_dates(day, first_year=first_year))],
                )
    for day_config in config.appreciation_days:
        if (
            day_config.bonus_points
            and day_config.start <= today
            and (row.days_done_through is None or day_config.end >= row.days_done_through)
        ):
            counts["appreciation"] += job.grant_all(
                BonusKind.APPRECIATION,
                appreciation_period(day_config.name, day_config.start),
                day_config.bonus_points,
                [job.bought_between(day_config.start, min(day_config.end, today))],
            )
    row.days_done_through = max(row.days_done_through or today, today)
    row.updated_at = now
    db.flush()
    return counts


def _born_on(day: date, mode: BirthdayMode) -> ColumnElement[bool]:
    if mode is BirthdayMode.DAY:
        return Member.birthday.in_(
            celebrated_dates(day, first_year=FIRST_BIRTH_YEAR, last_year=day.year)
        )
    return or_(
        *(
            Member.birthday.between(first, last)
            for first, last in birth_month_ranges(day.month, last_year=day.year)
        )
    )


class _Job:
    """One program's run: its clock, zone and settings, and how bonuses are claimed and paid."""

    def __init__(
        self, *, db: Session, program: Program, settings: ProgramSettings, now: datetime
    ) -> None:
        self.db = db
        self.program = program
        self.settings = settings
        self.now = now
        self.zone = ZoneInfo(program.timezone)

    def _local_start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=self.zone)

    def first_enrolment_year(self) -> int | None:
        first = self.db.scalar(
            select(func.min(Member.enrolled_at)).where(Member.program_id == self.program.id)
        )
        if first is None:
            return None
        return first.astimezone(self.zone).year

    def enrolled_on_any(self, days: list[date]) -> ColumnElement[bool]:
        """Members enrolled on one of these local days (one index range per day)."""
        return or_(
            *(
                and_(
                    Member.enrolled_at >= self._local_start(day),
                    Member.enrolled_at < self._local_start(day + timedelta(days=1)),
                )
                for day in days
            )
        )

    def bought_between(self, first: date, last: date) -> ColumnElement[bool]:
        """Members with a purchase (not wholly returned) on local days first..last."""
        return exists().where(
            Purchase.member_id == Member.id,
            Purchase.program_id == self.program.id,
            Purchase.occurred_at >= self._local_start(first),
            Purchase.occurred_at < self._local_start(last + timedelta(days=1)),
            Purchase.amount - Purchase.amount_returned > literal(Decimal(0), Money()),
        )

    def _due_chunks(
        self, kind: BonusKind, period: str, conditions: list[ColumnElement[bool]]
    ) -> Iterator[list[int]]:
        """Ids of active members meeting `conditions` without this bonus yet, by chunks."""
        after_id = 0
        granted = exists().where(
            LifecycleGrant.member_id == Member.id,
            LifecycleGrant.kind == kind.value,
            LifecycleGrant.period == period,
        )
        while True:
            ids = list(
                self.db.scalars(
                    select(Member.id)
                    .where(
                        Member.program_id == self.program.id,
                        Member.status == MemberStatus.ACTIVE.value,
                        Member.id > after_id,
                        ~granted,
                        *conditions,
                    )
                    .order_by(Member.id)
                    .limit(CHUNK)
                )
            )
            if not ids:
                return
            yield ids
            after_id = ids[-1]

    def grant_all(
        self, kind: BonusKind, period: str, points: int, conditions: list[ColumnElement[bool]]
    ) -> int:
        """Grants `points` to every member due; returns how many got them."""
        granted = 0
        for member_ids in self._due_chunks(kind, period, conditions):
            granted += self._grant(kind, period, points, member_ids)
        return granted

    def _claim(self, kind: BonusKind, period: str, points: int, member_ids: list[int]) -> list[int]:
        """Inserts the grant rows; returns the members claimed now (not by an earlier run)."""
        postgres = self.db.get_bind().dialect.name == "postgresql"
        statement: Any = (postgresql.insert if postgres else sqlite.insert)(LifecycleGrant)
        statement = statement.on_conflict_do_nothing(
            index_elements=["member_id", "kind", "period"]
        ).returning(LifecycleGrant.member_id)
        rows = [
            {
                "program_id": self.program.id,
                "member_id": member_id,
                "kind": kind.value,
                "period": period,
                "points": points,
                "granted_at": self.now,
            }
            for member_id in sorted(member_ids)  # one lock order for every worker
        ]
        return sorted(self.db.scalars(statement, rows))

    def _grant(self, kind: BonusKind, period: str, points: int, member_ids: list[int]) -> int:
        claimed = self._claim(kind, period, points, member_ids)
        if claimed:  # locked at once, in id order, so tills locking members never deadlock us
            ledger.lock_member_accounts(self.db, member_ids=claimed)
        transactions = []
        for member_id in claimed:
            transaction_id = ledger.adjust(
                self.db,
                program_id=self.program.id,
                settings=self.settings,
                timezone_name=self.program.timezone,
                member_id=member_id,
                points=points,
                issuer=ISSUER,
                reason=f"{kind.value} bonus ({period})",
                now=self.now,
                idempotency_key=idempotency_key(kind, period, member_id),
                source_type="bonus",
                source_ref=f"{kind.value}:{period}",
            )
            transactions.append({"m": member_id, "t": transaction_id})
        if transactions:
            self.db.connection().execute(
                update(LifecycleGrant)
                .where(
                    LifecycleGrant.member_id == bindparam("m"),
                    LifecycleGrant.kind == kind.value,
                    LifecycleGrant.period == period,
                )
                .values(transaction_id=bindparam("t")),
                transactions,
            )
            programs.audit(
                self.db,
                program_id=self.program.id,
                action=f"fideliza.lifecycle.{kind.value}_granted",
                subject=period,
                now=self.now,
                data={"members": len(claimed), "points": points},
            )
        return len(claimed)
