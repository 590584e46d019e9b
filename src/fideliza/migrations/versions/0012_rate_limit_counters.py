"""rate-limit counters shared by every worker

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "bucket", "window_start", name=op.f("pk_rate_limit_counters")
        ),
    )
    op.create_index(
        "ix_rate_limit_counters_window",
        "rate_limit_counters",
        ["scope", "window_start"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_rate_limit_counters_window", table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
