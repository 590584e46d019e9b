"""referrals and lifecycle bonuses tables

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import fideliza.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "referral_configs",
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("config", _JSON, nullable=False),
        sa.Column("updated_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_referral_configs_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_referral_configs")),
    )
    op.create_table(
        "referral_codes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("created_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_referral_codes_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_referral_codes_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_codes")),
        sa.UniqueConstraint("member_id", name=op.f("uq_referral_codes_member_id")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_referral_codes_program_id_code")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("referrer_member_id", _ID, nullable=False),
        sa.Column("referred_member_id", _ID, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reject_reason", sa.String(length=40), nullable=True),
        sa.Column("linked_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("qualified_at", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("due_at", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("purchase_id", _ID, nullable=True),
        sa.Column("rewarded_at", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("referrer_points", sa.BigInteger(), nullable=False),
        sa.Column("referred_points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_referrals_program_id_programs")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_referrals_purchase_id_purchases")
        ),
        sa.ForeignKeyConstraint(
            ["referred_member_id"],
            ["members.id"],
            name=op.f("fk_referrals_referred_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["referrer_member_id"],
            ["members.id"],
            name=op.f("fk_referrals_referrer_member_id_members"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("referred_member_id", name=op.f("uq_referrals_referred_member_id")),
    )
    op.create_index(
        "ix_referrals_program_state", "referrals", ["program_id", "state", "due_at"], unique=False
    )
    op.create_index(
        "ix_referrals_referrer", "referrals", ["referrer_member_id", "linked_at"], unique=False
    )
    op.create_table(
        "lifecycle_configs",
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("config", _JSON, nullable=False),
        sa.Column("appreciation_rules", _JSON, nullable=False),
        sa.Column("welcome_since", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("days_done_through", sa.Date(), nullable=True),
        sa.Column("updated_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_lifecycle_configs_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_lifecycle_configs")),
    )
    op.create_table(
        "lifecycle_grants",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("period", sa.String(length=80), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("granted_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_lifecycle_grants_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_lifecycle_grants_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_grants")),
        sa.UniqueConstraint(
            "member_id", "kind", "period", name=op.f("uq_lifecycle_grants_member_id_kind_period")
        ),
    )
    op.create_index(
        "ix_lifecycle_grants_program",
        "lifecycle_grants",
        ["program_id", "kind", "period"],
        unique=False,
    )
    # Who is due today, without reading every member (birthdays, anniversaries, welcomes).
    op.create_index(
        "ix_members_program_birthday", "members", ["program_id", "birthday"], unique=False
    )
    op.create_index(
        "ix_members_program_enrolled_at", "members", ["program_id", "enrolled_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_members_program_enrolled_at", table_name="members")
    op.drop_index("ix_members_program_birthday", table_name="members")
    op.drop_index("ix_lifecycle_grants_program", table_name="lifecycle_grants")
    op.drop_table("lifecycle_grants")
    op.drop_table("lifecycle_configs")
    op.drop_index("ix_referrals_referrer", table_name="referrals")
    op.drop_index("ix_referrals_program_state", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
    op.drop_table("referral_configs")
