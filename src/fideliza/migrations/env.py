"""Alembic environment: runs migrations on the configured URL with Fideliza's engine."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fideliza.db import make_engine
from fideliza.schema import metadata

config = context.config


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection, url)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection, url)
    finally:
        engine.dispose()


def _run(connection: Connection, url: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=url.startswith("sqlite"),  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
