"""Survey definitions (versioned), invitations with their single-use links, and responses."""

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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, ProgramId, UTCDateTime

SCORE_IN_RANGE = (
    "(kind = 'nps' AND score BETWEEN 0 AND 10) OR (kind = 'csat' AND score BETWEEN 1 AND 5)"
    " OR (kind = 'custom' AND score IS NULL)"
)


class Survey(Base):
    """One version of a survey; defining a code again adds a version and retires the last."""

    __tablename__ = "surveys"
    __table_args__ = (
        UniqueConstraint("program_id", "code", "version"),
        Index("ix_surveys_program_active", "program_id", "active"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    trigger: Mapped[str] = mapped_column(String(20))
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(200))


class SurveyInvitation(Base):
    """A member asked to answer a survey, and why (trigger + source); answered at most once.

    Unique by survey code, member, trigger and source, so a rerun of the job (or a new version
    of the survey) never asks twice about the same purchase, case or period.
    """

    __tablename__ = "survey_invitations"
    __table_args__ = (
        UniqueConstraint(
            "program_id",
            "survey_code",
            "member_id",
            "trigger",
            "source_ref",
            name="uq_survey_invitations_source",
        ),
        Index("ix_survey_invitations_member", "member_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    survey_code: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    trigger: Mapped[str] = mapped_column(String(20))
    source_ref: Mapped[str] = mapped_column(String(100))
    locale: Mapped[str] = mapped_column(String(10))
    # Of the purchase that triggered it (None otherwise): NPS/CSAT per channel and store.
    channel: Mapped[str | None] = mapped_column(String(30))
    store: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SurveyResponse(Base):
    """A member's answers to one invitation, with the headline score the analytics read.

    `tier_code` and `segment` are the member's when answering, so scores by tier stay as they
    were when members move between tiers.
    """

    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("invitation_id"),
        # A backstop under the service's checks: the analytics trust these ranges.
        CheckConstraint(SCORE_IN_RANGE, name="score_in_range"),
        Index("ix_survey_responses_program_answered", "program_id", "answered_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    invitation_id: Mapped[int] = mapped_column(ForeignKey("survey_invitations.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(10))
    score: Mapped[int | None] = mapped_column(Integer)
    answers: Mapped[dict[str, Any]] = mapped_column(Json)
    locale: Mapped[str] = mapped_column(String(10))
    trigger: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(30))
    store: Mapped[str | None] = mapped_column(String(64))
    tier_code: Mapped[str | None] = mapped_column(String(32))
    segment: Mapped[str | None] = mapped_column(String(64))
    points_earned: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("member_events.id"))
