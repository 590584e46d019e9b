"""The messaging migration builds exactly the tables the models describe (both backends)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from fideliza import schema  # noqa: F401  (every table, for the foreign keys)
from fideliza.db import Base
from fideliza.messaging import models

TABLES = {"messaging_configs", "message_templates", "messages"}


def test_migration_matches_the_messaging_models(database_url: str) -> None:
    assert {models.Message.__tablename__, models.MessageTemplate.__tablename__} <= TABLES
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, parent: kind != "table" or name in TABLES,
                    "include_object": lambda obj, name, kind, reflected, other: (
                        kind != "table" or name in TABLES
                    ),
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
