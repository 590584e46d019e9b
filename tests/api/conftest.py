"""The API under test: one app per backend, a fixed clock, and a fresh program per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from tests.api.world import World, make_world

START = datetime.fromisoformat("2025-03-10T12:00:00+00:00")
SECRET_KEY = "test-secret-key-for-member-tokens-0123456789"


@pytest.fixture(scope="session")
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture(scope="session")
def api_app(database_url: str, clock: FixedClock) -> FastAPI:
    # The clock is fixed, so a bucket never refills: the per-IP failed-auth limit (all tests
    # come from one address) would end up refusing later tests. test_operations covers it.
    settings = ApiSettings(auth_failure_limit=0, secret_key=SECRET_KEY)
    return create_app(database_url, clock=clock, settings=settings)


@pytest.fixture
def client(api_app: FastAPI, clock: FixedClock) -> Iterator[TestClient]:
    clock.set(START)
    with TestClient(api_app) as test_client:
        yield test_client


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    """A program with a 1 point per euro rule and an admin, a pos and a read key."""
    return make_world(session_factory, now=START)


@pytest.fixture
def other(session_factory: sessionmaker[Session]) -> World:
    """Another program on the same server, with its own keys."""
    return make_world(session_factory, now=START)
