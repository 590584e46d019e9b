"""The survey tables the migration creates are exactly the ones the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import fideliza.schema  # noqa: F401  (every other table, for the foreign keys)
from fideliza.db import Base
from fideliza.surveys import models  # noqa: F401

TABLES = {"surveys", "survey_invitations", "survey_responses"}


def _table_of(diff: Any) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if isinstance(part, str) and part in TABLES:
            return part
        if name in TABLES:
            return str(name)
    return None


def test_migration_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": False}
            )
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    ours = [diff for diff in diffs if _table_of(diff) in TABLES]
    assert ours == []
    assert set(Base.metadata.tables) >= TABLES
