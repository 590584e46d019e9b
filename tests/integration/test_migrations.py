"""The migrations build exactly the schema the models describe, on SQLite and on PostgreSQL.

The models are what the code reads and writes; the migrations are what a database really has.
A column, index or constraint present in one and not the other is a bug that only shows on a
fresh install (or never, until production), so any difference fails here.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from fideliza.schema import metadata


def test_migrated_schema_equals_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []
