"""coupons tables

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import fideliza.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "coupon_campaigns",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "discount", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("min_spend", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.Column("max_uses_per_code", sa.Integer(), nullable=True),
        sa.Column("once_per_member", sa.Boolean(), nullable=False),
        sa.Column("valid_from", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_until", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("code_valid_days", sa.Integer(), nullable=True),
        sa.Column("code_prefix", sa.String(length=12), nullable=False),
        sa.Column("code_bits", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=12), nullable=False),
        sa.Column("trigger_min_amount", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.Column("return_policy", sa.String(length=12), nullable=False),
        sa.Column("budget_points", sa.BigInteger(), nullable=True),
        sa.Column("budget_money", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.Column("budget_period", sa.String(length=10), nullable=False),
        sa.Column("points_per_code", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "max_uses_per_code IS NULL OR max_uses_per_code >= 1",
            name=op.f("ck_coupon_campaigns_max_uses_positive"),
        ),
        sa.CheckConstraint(
            "points_per_code >= 0", name=op.f("ck_coupon_campaigns_points_per_code_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_coupon_campaigns_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_campaigns")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_coupon_campaigns_program_id_code")),
    )
    op.create_table(
        "coupon_budget_usage",
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("points_spent", sa.BigInteger(), nullable=False),
        sa.Column("money_spent", fideliza.db.Money(precision=18, scale=4), nullable=False),
        sa.Column("points_budget", sa.BigInteger(), nullable=True),
        sa.Column("money_budget", fideliza.db.Money(precision=18, scale=4), nullable=True),
        sa.CheckConstraint(
            "money_budget IS NULL OR money_spent <= money_budget",
            name=op.f("ck_coupon_budget_usage_money_within_budget"),
        ),
        sa.CheckConstraint(
            "points_budget IS NULL OR points_spent <= points_budget",
            name=op.f("ck_coupon_budget_usage_points_within_budget"),
        ),
        sa.CheckConstraint(
            "points_spent >= 0 AND money_spent >= 0",
            name=op.f("ck_coupon_budget_usage_spent_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["coupon_campaigns.id"],
            name=op.f("fk_coupon_budget_usage_campaign_id_coupon_campaigns"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "period_start", name=op.f("pk_coupon_budget_usage")),
    )
    op.create_table(
        "coupon_codes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("member_id", _ID, nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("valid_from", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_until", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=30), nullable=False),
        sa.Column("source_ref", sa.String(length=100), nullable=True),
        sa.Column("created_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("voided_at", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "max_uses IS NULL OR uses <= max_uses", name=op.f("ck_coupon_codes_uses_within_limit")
        ),
        sa.CheckConstraint("uses >= 0", name=op.f("ck_coupon_codes_uses_not_negative")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["coupon_campaigns.id"],
            name=op.f("fk_coupon_codes_campaign_id_coupon_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_coupon_codes_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_codes")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_coupon_codes_program_id_code")),
    )
    op.create_index(
        op.f("ix_coupon_codes_campaign_id"), "coupon_codes", ["campaign_id"], unique=False
    )
    op.create_index(
        "ix_coupon_codes_member_id",
        "coupon_codes",
        ["member_id"],
        unique=False,
        sqlite_where=sa.text("member_id IS NOT NULL"),
        postgresql_where=sa.text("member_id IS NOT NULL"),
    )
    op.create_index(
        "ix_coupon_codes_source_ref",
        "coupon_codes",
        ["campaign_id", "source_ref"],
        unique=True,
        sqlite_where=sa.text("source_ref IS NOT NULL"),
        postgresql_where=sa.text("source_ref IS NOT NULL"),
    )
    op.create_table(
        "coupon_redemptions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("code_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=True),
        sa.Column("once_member_id", sa.BigInteger(), nullable=True),
        sa.Column("purchase_external_id", sa.String(length=100), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("basket_total", fideliza.db.Money(precision=18, scale=4), nullable=False),
        sa.Column("discount_amount", fideliza.db.Money(precision=18, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("budget_period_start", sa.Date(), nullable=True),
        sa.Column("redeemed_at", fideliza.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("restored_at", fideliza.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "discount_amount >= 0", name=op.f("ck_coupon_redemptions_discount_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["coupon_campaigns.id"],
            name=op.f("fk_coupon_redemptions_campaign_id_coupon_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["code_id"],
            ["coupon_codes.id"],
            name=op.f("fk_coupon_redemptions_code_id_coupon_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_coupon_redemptions_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_redemptions")),
        sa.UniqueConstraint(
            "campaign_id",
            "once_member_id",
            name=op.f("uq_coupon_redemptions_campaign_id_once_member_id"),
        ),
        sa.UniqueConstraint(
            "code_id",
            "purchase_external_id",
            name=op.f("uq_coupon_redemptions_code_id_purchase_external_id"),
        ),
    )
    op.create_index(
        "ix_coupon_redemptions_purchase",
        "coupon_redemptions",
        ["program_id", "purchase_external_id"],
        unique=False,
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_index("ix_coupon_redemptions_purchase", table_name="coupon_redemptions")
    op.drop_table("coupon_redemptions")
    op.drop_index(
        "ix_coupon_codes_source_ref",
        table_name="coupon_codes",
        sqlite_where=sa.text("source_ref IS NOT NULL"),
        postgresql_where=sa.text("source_ref IS NOT NULL"),
    )
    op.drop_index("ix_coupon_codes_member_id", table_name="coupon_codes")
    op.drop_index(op.f("ix_coupon_codes_campaign_id"), table_name="coupon_codes")
    op.drop_table("coupon_codes")
    op.drop_table("coupon_budget_usage")
    op.drop_table("coupon_campaigns")
    # ### end Alembic commands ###
