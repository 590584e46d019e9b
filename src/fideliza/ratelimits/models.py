"""Fixed-window hit counters, one row per scope, bucket and window."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from fideliza.db import Base


class RateLimitCounter(Base):
    """How many hits a bucket (a flow and API key, a client address…) took in one window."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (Index("ix_rate_limit_counters_window", "scope", "window_start"),)

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix seconds
    hits: Mapped[int] = mapped_column(BigInteger)
