"""Cases (complaints), their append-only history, and each program's SLA by severity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

# The tables these models point at, so the metadata can resolve their foreign keys.
from fideliza.coupons import models as _coupons  # noqa: F401
from fideliza.db import Base, Id, Json, ProgramId, UTCDateTime
from fideliza.ledger import models as _ledger  # noqa: F401
from fideliza.members import models as _members  # noqa: F401
from fideliza.programs import models as _programs  # noqa: F401
from fideliza.purchases import models as _purchases  # noqa: F401


class Case(Base):
    """A member's complaint, from opening to resolution; deadlines fixed when it is opened."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(
            "state IN ('open', 'in_progress', 'resolved', 'closed')", name="state_known"
        ),
        CheckConstraint(
            "goodwill_points IS NULL OR goodwill_points > 0", name="goodwill_points_positive"
        ),
        Index("ix_cases_program_state", "program_id", "state", "id"),
        Index("ix_cases_member", "member_id", "opened_at", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    category: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    opened_by: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(12))
    assignee: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    response_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set once by the breach job, for reporting; read-time flags come from the deadlines.
    response_breach_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breach_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    resolution: Mapped[str | None] = mapped_column(Text)
    apologized: Mapped[bool] = mapped_column(Boolean, default=False)
    called_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    goodwill_points: Mapped[int | None] = mapped_column(BigInteger)
    goodwill_transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id")
    )
    coupon_code_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_codes.id"))
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    refund_reference: Mapped[str | None] = mapped_column(String(100))
    survey_invitations: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseEvent(Base):
    """One line of a case's history: who did what, when, from which state to which."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case", "case_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str | None] = mapped_column(String(12))
    actor: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseSla(Base):
    """A program's own SLA for one severity (severities without a row use the defaults)."""

    __tablename__ = "case_slas"
    __table_args__ = (
        CheckConstraint("first_response_minutes > 0", name="first_response_positive"),
        CheckConstraint(
            "resolution_minutes >= first_response_minutes", name="resolution_after_response"
        ),
    )

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    severity: Mapped[str] = mapped_column(String(10), primary_key=True)
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
