"""Lifecycle configuration, its progress, and one row per bonus granted (the exactly-once claim).

Also the two member indexes the daily job needs to find who is due without reading every
member: by birthday and by enrolment time, within a program.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, ProgramId, UTCDateTime
from fideliza.members.models import Member

# Declared here (they serve this domain's job) and created by migration 0007.
Index("ix_members_program_birthday", Member.program_id, Member.birthday)
Index("ix_members_program_enrolled_at", Member.program_id, Member.enrolled_at)


class LifecycleConfigRow(Base):
    """A program's lifecycle configuration (validated JSON: `LifecycleConfig`) and progress."""

    __tablename__ = "lifecycle_configs"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    # Earning rules kept for the appreciation days' multipliers: {day name: rule id}.
    appreciation_rules: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    # Members enrolled from then on get the welcome bonus (set when it is first switched on).
    welcome_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last local day whose birthdays and anniversaries were granted.
    days_done_through: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LifecycleGrant(Base):
    """One bonus given to one member for one period; its unique key makes it exactly-once."""

    __tablename__ = "lifecycle_grants"
    __table_args__ = (
        UniqueConstraint("member_id", "kind", "period"),
        Index("ix_lifecycle_grants_program", "program_id", "kind", "period"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(20))
    period: Mapped[str] = mapped_column(String(80))
    points: Mapped[int] = mapped_column(BigInteger)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
