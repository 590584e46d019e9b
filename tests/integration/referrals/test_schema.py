"""Migration 0007 creates exactly what the referral and lifecycle models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import fideliza.schema  # noqa: F401 - every table the new ones refer to
from fideliza.db import Base
from fideliza.lifecycle import models as _lifecycle  # noqa: F401
from fideliza.referrals import models as _referrals  # noqa: F401

OURS = (
    "referral_configs",
    "referral_codes",
    "referrals",
    "lifecycle_configs",
    "lifecycle_grants",
    "ix_members_program_birthday",
    "ix_members_program_enrolled_at",
)


def _touches_ours(difference: object) -> bool:
    text = repr(difference)
    return any(f"'{name}'" in text or f"name='{name}'" in text for name in OURS)


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in differences if _touches_ours(d)] == []
    tables = set(Base.metadata.tables)
    assert {"referrals", "referral_codes", "lifecycle_grants"} <= tables
