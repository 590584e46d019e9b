"""cases tables

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import fideliza.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = fideliza.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("purchase_id", _ID, nullable=True),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("opened_by", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("assignee", sa.String(length=200), nullable=True),
        sa.Column("opened_at", _AT, nullable=False),
        sa.Column("response_due_at", _AT, nullable=False),
        sa.Column("resolution_due_at", _AT, nullable=False),
        sa.Column("first_response_at", _AT, nullable=True),
        sa.Column("resolved_at", _AT, nullable=True),
        sa.Column("closed_at", _AT, nullable=True),
        sa.Column("response_breach_recorded_at", _AT, nullable=True),
        sa.Column("resolution_breach_recorded_at", _AT, nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("apologized", sa.Boolean(), nullable=False),
        sa.Column("called_back_at", _AT, nullable=True),
        sa.Column("goodwill_points", sa.BigInteger(), nullable=True),
        sa.Column("goodwill_transaction_id", _ID, nullable=True),
        sa.Column("coupon_code_id", _ID, nullable=True),
        sa.Column("coupon_code", sa.String(length=64), nullable=True),
        sa.Column("refund_reference", sa.String(length=100), nullable=True),
        sa.Column("survey_invitations", sa.Integer(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.CheckConstraint(
            "state IN ('open', 'in_progress', 'resolved', 'closed')",
            name=op.f("ck_cases_state_known"),
        ),
        sa.CheckConstraint(
            "goodwill_points IS NULL OR goodwill_points > 0",
            name=op.f("ck_cases_goodwill_points_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["coupon_code_id"],
            ["coupon_codes.id"],
            name=op.f("fk_cases_coupon_code_id_coupon_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["goodwill_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_cases_goodwill_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_cases_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_cases_program_id_programs")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_cases_purchase_id_purchases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index("ix_cases_program_state", "cases", ["program_id", "state", "id"], unique=False)
    op.create_index("ix_cases_member", "cases", ["member_id", "opened_at", "id"], unique=False)
    op.create_table(
        "case_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("case_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("from_state", sa.String(length=12), nullable=True),
        sa.Column("to_state", sa.String(length=12), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    op.create_index("ix_case_events_case", "case_events", ["case_id", "id"], unique=False)
    op.create_table(
        "case_slas",
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("first_response_minutes", sa.Integer(), nullable=False),
        sa.Column("resolution_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.CheckConstraint(
            "first_response_minutes > 0", name=op.f("ck_case_slas_first_response_positive")
        ),
        sa.CheckConstraint(
            "resolution_minutes >= first_response_minutes",
            name=op.f("ck_case_slas_resolution_after_response"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_case_slas_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", "severity", name=op.f("pk_case_slas")),
    )


def downgrade() -> None:
    op.drop_table("case_slas")
    op.drop_index("ix_case_events_case", table_name="case_events")
    op.drop_table("case_events")
    op.drop_index("ix_cases_member", table_name="cases")
    op.drop_index("ix_cases_program_state", table_name="cases")
    op.drop_table("cases")
