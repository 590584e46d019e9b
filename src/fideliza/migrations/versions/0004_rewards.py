"""rewards tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import fideliza.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rewards",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("points_cost", sa.BigInteger(), nullable=False),
        sa.Column("tier_costs", _JSON, nullable=False),
        sa.Column("eligible_tiers", _JSON, nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("limit_per_member", sa.Integer(), nullable=True),
        sa.Column("limit_period", sa.String(length=10), nullable=False),
        sa.Column("available_from", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("available_until", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("budget_points", sa.BigInteger(), nullable=True),
        sa.Column("budget_money", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.Column("budget_period", sa.String(length=10), nullable=False),
        sa.Column("value", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("attributes", _JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_rewards_stock_not_negative")),
        sa.CheckConstraint("points_cost > 0", name=op.f("ck_rewards_points_cost_positive")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_rewards_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_rewards_program_id_code")),
    )
    op.create_table(
        "reward_budget_spend",
        sa.Column("reward_id", _ID, nullable=False),
        sa.Column("period_key", sa.String(length=16), nullable=False),
        sa.Column("points_spent", sa.BigInteger(), nullable=False),
        sa.Column("money_spent", fideliza.db.Money(precision=18, scale=4), nullable=False),
        sa.Column("points_limit", sa.BigInteger(), nullable=True),
        sa.Column("money_limit", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.CheckConstraint(
            "points_limit IS NULL OR points_spent <= points_limit",
            name=op.f("ck_reward_budget_spend_points_within_budget"),
        ),
        sa.CheckConstraint(
            "money_limit IS NULL OR money_spent <= money_limit",
            name=op.f("ck_reward_budget_spend_money_within_budget"),
        ),
        sa.CheckConstraint(
            "points_spent >= 0 AND money_spent >= 0",
            name=op.f("ck_reward_budget_spend_spend_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_budget_spend_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("reward_id", "period_key", name=op.f("pk_reward_budget_spend")),
    )
    op.create_table(
        "reward_redemptions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("reward_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("hold_id", _ID, nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("value", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.Column("stock_taken", sa.Boolean(), nullable=False),
        sa.Column("budget_period_key", sa.String(length=16), nullable=True),
        sa.Column("created_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("settled_at", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attributes", _JSON, nullable=False),
        sa.Column("fulfilment", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["point_holds.id"], name=op.f("fk_reward_redemptions_hold_id_point_holds")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_reward_redemptions_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_reward_redemptions_program_id_programs")
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_redemptions_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_redemptions")),
        sa.UniqueConstraint(
            "program_id", "reference", name=op.f("uq_reward_redemptions_program_id_reference")
        ),
    )
    op.create_index(
        op.f("ix_reward_redemptions_reward_id"), "reward_redemptions", ["reward_id"], unique=False
    )
    op.create_index(
        "ix_reward_redemptions_member_reward",
        "reward_redemptions",
        ["member_id", "reward_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_reward_redemptions_due",
        "reward_redemptions",
        ["program_id", "status", "expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_reward_redemptions_due", table_name="reward_redemptions")
    op.drop_index("ix_reward_redemptions_member_reward", table_name="reward_redemptions")
    op.drop_index(op.f("ix_reward_redemptions_reward_id"), table_name="reward_redemptions")
    op.drop_table("reward_redemptions")
    op.drop_table("reward_budget_spend")
    op.drop_table("rewards")
