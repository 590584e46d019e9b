"""wallets tables: the money ledger (accounts, transactions, entries) and gift cards

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fideliza.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MONEY = fideliza.db.Money(precision=18, scale=4)
_TIME = fideliza.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "money_accounts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("code", sa.String(length=80), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", _MONEY, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.CheckConstraint(
            "balance IS NULL OR balance >= 0",
            name=op.f("ck_money_accounts_balance_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_money_accounts_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_money_accounts_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_accounts")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_money_accounts_program_id_code")),
    )
    op.create_index("ix_money_accounts_member", "money_accounts", ["member_id"], unique=False)

    op.create_table(
        "money_transactions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("balance_after", _MONEY, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("refunds_id", _ID, nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_money_transactions_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["money_accounts.id"],
            name=op.f("fk_money_transactions_account_id_money_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["refunds_id"],
            ["money_transactions.id"],
            name=op.f("fk_money_transactions_refunds_id_money_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_transactions")),
    )
    op.create_index(
        "uq_money_transactions_idempotency_key",
        "money_transactions",
        ["program_id", "idempotency_key"],
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_money_transactions_account", "money_transactions", ["account_id", "id"], unique=False
    )
    op.create_index(
        op.f("ix_money_transactions_refunds_id"),
        "money_transactions",
        ["refunds_id"],
        unique=False,
    )

    op.create_table(
        "money_entries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("transaction_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["money_accounts.id"],
            name=op.f("fk_money_entries_account_id_money_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["money_transactions.id"],
            name=op.f("fk_money_entries_transaction_id_money_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_entries")),
    )
    op.create_index("ix_money_entries_account", "money_entries", ["account_id"], unique=False)
    op.create_index(
        op.f("ix_money_entries_transaction_id"), "money_entries", ["transaction_id"], unique=False
    )

    op.create_table(
        "gift_cards",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hint", sa.String(length=8), nullable=False),
        sa.Column("pin_hash", sa.String(length=200), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("initial_value", _MONEY, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("member_id", _ID, nullable=True),
        sa.Column("issued_at", _TIME, nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=True),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("expired_at", _TIME, nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'frozen', 'closed')", name=op.f("ck_gift_cards_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["money_accounts.id"],
            name=op.f("fk_gift_cards_account_id_money_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_gift_cards_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_gift_cards_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gift_cards")),
        sa.UniqueConstraint("account_id", name=op.f("uq_gift_cards_account_id")),
        sa.UniqueConstraint(
            "program_id", "code_hash", name=op.f("uq_gift_cards_program_id_code_hash")
        ),
    )
    op.create_index(
        "ix_gift_cards_due", "gift_cards", ["program_id", "expired_at", "expires_at"], unique=False
    )
    op.create_index(op.f("ix_gift_cards_member_id"), "gift_cards", ["member_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_gift_cards_member_id"), table_name="gift_cards")
    op.drop_index("ix_gift_cards_due", table_name="gift_cards")
    op.drop_table("gift_cards")
    op.drop_index(op.f("ix_money_entries_transaction_id"), table_name="money_entries")
    op.drop_index("ix_money_entries_account", table_name="money_entries")
    op.drop_table("money_entries")
    op.drop_index(op.f("ix_money_transactions_refunds_id"), table_name="money_transactions")
    op.drop_index("ix_money_transactions_account", table_name="money_transactions")
    op.drop_index("uq_money_transactions_idempotency_key", table_name="money_transactions")
    op.drop_table("money_transactions")
    op.drop_index("ix_money_accounts_member", table_name="money_accounts")
    op.drop_table("money_accounts")
