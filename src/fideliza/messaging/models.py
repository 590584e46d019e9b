"""Messaging tables: a program's configuration, its templates, and the message outbox (which is
also each member's send log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base, Id, Json, ProgramId, UTCDateTime


class MessagingConfigRow(Base):
    """A program's messaging configuration (quiet hours, frequency cap, triggers …)."""

    __tablename__ = "messaging_configs"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageTemplate(Base):
    """One template of a kind, for one channel and language."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("program_id", "kind", "channel", "locale"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    kind: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(10))
    locale: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class Message(Base):
    """A message to one member: queued by a trigger or a domain, then sent, skipped or failed.

    `idempotency_key` (unique per program) names the member, the trigger and the period, so a
    trigger evaluated twice queues nothing twice. The rendered content is kept as sent.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("program_id", "idempotency_key"),
        Index("ix_messages_due", "status", "next_attempt_at"),
        Index("ix_messages_member", "member_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    program_id: Mapped[int] = mapped_column(ProgramId)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(10))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(Json)
    transactional: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locale: Mapped[str | None] = mapped_column(String(10))
    recipient: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(500))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
