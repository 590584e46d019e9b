"""webhook redelivery, the delivery log's index, and the points.expiring notices

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fideliza.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(
            sa.Column(
                "attempts_before_redelivery", sa.Integer(), server_default="0", nullable=False
            )
        )
        batch.add_column(
            sa.Column("redelivered_at", fideliza.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_webhook_deliveries_endpoint",
        "webhook_deliveries",
        ["endpoint_id", "id"],
        unique=False,
    )
    op.create_table(
        "points_expiring_notices",
        sa.Column("lot_id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("noticed_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["point_lots.id"], name=op.f("fk_points_expiring_notices_lot_id_point_lots")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_points_expiring_notices_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_points_expiring_notices_program_id_programs"),
        ),
        sa.PrimaryKeyConstraint("lot_id", name=op.f("pk_points_expiring_notices")),
    )
    op.create_index(
        op.f("ix_points_expiring_notices_program_id"),
        "points_expiring_notices",
        ["program_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_points_expiring_notices_program_id"), table_name="points_expiring_notices"
    )
    op.drop_table("points_expiring_notices")
    op.drop_index("ix_webhook_deliveries_endpoint", table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("redelivered_at")
        batch.drop_column("attempts_before_redelivery")
