"""Throwaway PostgreSQL databases for the benchmarks: created fresh, dropped at the end."""

from __future__ import annotations

import secrets

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_postgres(server: str, *, prefix: str = "fideliza_bench", migrate: bool = False) -> str:
    """A new empty database on `server` (a URL); its URL. With `migrate`, at the schema's head."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    if migrate:
        from fideliza.migrations import upgrade

        upgrade(url)
    return url


def drop_postgres(server: str, url: str) -> None:
    """Drops the database of `url` (a database `create_postgres` made), sessions and all."""
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()
