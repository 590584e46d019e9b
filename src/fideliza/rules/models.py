"""Earning rules as versioned JSON, and what each rule has given (for caps and budgets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, UTCDateTime


class Rule(Base):
    """An earning rule; its definition lives in immutable versions."""

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("program_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    current_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RuleVersion(Base):
    """One immutable version of a rule's definition; postings name the version they used."""

    __tablename__ = "rule_versions"

    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(200))


class RuleUsage(Base):
    """Points a rule gave in a period: per member (day, month, total) or program-wide (budget)."""

    __tablename__ = "rule_usage"

    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"), primary_key=True)
    # 0 stands for "all members" (the campaign budget), so the key stays a plain primary key.
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
