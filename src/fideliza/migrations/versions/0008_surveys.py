"""surveys tables

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import fideliza.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = fideliza.db.UTCDateTime(timezone=True)
_SCORE_IN_RANGE = (
    "(kind = 'nps' AND score BETWEEN 0 AND 10) OR (kind = 'csat' AND score BETWEEN 1 AND 5)"
    " OR (kind = 'custom' AND score IS NULL)"
)


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("definition", _JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_surveys_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint(
            "program_id", "code", "version", name=op.f("uq_surveys_program_id_code_version")
        ),
    )
    op.create_index("ix_surveys_program_active", "surveys", ["program_id", "active"], unique=False)
    op.create_table(
        "survey_invitations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("survey_id", _ID, nullable=False),
        sa.Column("survey_code", sa.String(length=64), nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=100), nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=30), nullable=True),
        sa.Column("store", sa.String(length=64), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("answered_at", _TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_survey_invitations_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_survey_invitations_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_invitations")),
        sa.UniqueConstraint(
            "program_id",
            "survey_code",
            "member_id",
            "trigger",
            "source_ref",
            name="uq_survey_invitations_source",
        ),
    )
    op.create_index(
        "ix_survey_invitations_member",
        "survey_invitations",
        ["member_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "survey_responses",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("survey_id", _ID, nullable=False),
        sa.Column("invitation_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("answered_at", _TIME, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("answers", _JSON, nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=30), nullable=True),
        sa.Column("store", sa.String(length=64), nullable=True),
        sa.Column("tier_code", sa.String(length=32), nullable=True),
        sa.Column("segment", sa.String(length=64), nullable=True),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("event_id", _ID, nullable=True),
        sa.CheckConstraint(_SCORE_IN_RANGE, name=op.f("ck_survey_responses_score_in_range")),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["member_events.id"],
            name=op.f("fk_survey_responses_event_id_member_events"),
        ),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["survey_invitations.id"],
            name=op.f("fk_survey_responses_invitation_id_survey_invitations"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_survey_responses_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_survey_responses_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint("invitation_id", name=op.f("uq_survey_responses_invitation_id")),
    )
    op.create_index(
        op.f("ix_survey_responses_member_id"), "survey_responses", ["member_id"], unique=False
    )
    op.create_index(
        "ix_survey_responses_program_answered",
        "survey_responses",
        ["program_id", "answered_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_survey_responses_program_answered", table_name="survey_responses")
    op.drop_index(op.f("ix_survey_responses_member_id"), table_name="survey_responses")
    op.drop_table("survey_responses")
    op.drop_index("ix_survey_invitations_member", table_name="survey_invitations")
    op.drop_table("survey_invitations")
    op.drop_index("ix_surveys_program_active", table_name="surveys")
    op.drop_table("surveys")
