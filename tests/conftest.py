"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from FIDELIZA_TEST_POSTGRES_URL (a server URL; each run creates and drops its
own database). Without it the PostgreSQL half is skipped with a clear reason, unless
FIDELIZA_REQUIRE_POSTGRES=1 (as .ci/run sets), which turns a missing server into a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from fideliza.db import make_engine, make_session_factory
from fideliza.migrations import upgrade

NO_POSTGRES = "skipped: no PostgreSQL (set FIDELIZA_TEST_POSTGRES_URL to run these on it too)"


def _postgres_server_url() -> str | None:
    return os.environ.get("FIDELIZA_TEST_POSTGRES_URL") or None


def _require_postgres() -> bool:
    return os.environ.get("FIDELIZA_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run (dropped at the end)."""
    server = _postgres_server_url()
    if server is None:
        if _require_postgres():
            pytest.fail("FIDELIZA_REQUIRE_POSTGRES=1 but FIDELIZA_TEST_POSTGRES_URL is not set")
        pytest.skip(NO_POSTGRES)
    name = f"fideliza_test_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # the server is down or refuses us
        admin.dispose()
        if _require_postgres():
            pytest.fail(f"PostgreSQL is required but unreachable: {error}")
        pytest.skip(f"{NO_POSTGRES} — {error.__class__.__name__}")
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, migrated SQLite database file for this test run."""
    path: Path = tmp_path_factory.mktemp("db") / "fideliza.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs once per backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture(scope="session")
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work the test commits itself (like a request would)."""
    with session_factory() as session:
        yield session
        session.rollback()


@pytest.fixture
def now() -> datetime:
    return datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
