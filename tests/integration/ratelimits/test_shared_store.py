"""The database rate-limit store (issue 3): one limit for every worker on the same database,
on SQLite and PostgreSQL — counted exactly under concurrent hits, windows purged as they pass,
and, through the API, a look-up limit that two app instances (two workers) share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, select

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from fideliza.core.errors import ValidationError
from fideliza.db import make_engine
from fideliza.ratelimits.models import RateLimitCounter
from fideliza.ratelimits.store import DatabaseWindows
from tests.api.world import World, assert_problem, enrol, make_world, unique

START = datetime.fromisoformat("2025-03-10T12:00:00+00:00")  # 43 200 s into its day


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = make_engine(database_url)
    yield created
    created.dispose()


def store(engine: Engine, clock: FixedClock, *, scope: str, capacity: int = 3) -> DatabaseWindows:
    return DatabaseWindows(
        engine=engine,
        scope=scope,
        capacity=capacity,
        window_seconds=60,
        now=lambda: clock.now().timestamp(),
    )


def rows(engine: Engine, scope: str) -> list[tuple[str, int, int]]:
    query = (
        select(RateLimitCounter.bucket, RateLimitCounter.window_start, RateLimitCounter.hits)
        .where(RateLimitCounter.scope == scope)
        .order_by(RateLimitCounter.bucket)
    )
    with engine.connect() as connection:
        return [(row[0], row[1], row[2]) for row in connection.execute(query)]


def test_a_bucket_takes_capacity_hits_per_window(engine: Engine) -> None:
    clock = FixedClock(START + timedelta(seconds=15))
    limits = store(engine, clock, scope=unique("s"))
    assert [limits.take(("member_lookup", 7)) for _ in range(3)] == [0, 0, 0]
    assert limits.peek(("member_lookup", 7)) == 45  # the window started at 12:00:00
    assert limits.take(("member_lookup", 7)) == 45
    assert limits.take(("member_lookup", 8)) == 0  # another key: its own count
    clock.set(START + timedelta(seconds=59, microseconds=500_000))
    assert limits.take(("member_lookup", 7)) == 1  # never 0 while refused
    clock.set(START + timedelta(seconds=60))  # a new window
    assert limits.peek(("member_lookup", 7)) == 0
    assert limits.take(("member_lookup", 7)) == 0


def test_two_workers_share_one_count(database_url: str) -> None:
    clock = FixedClock(START)
    scope = unique("s")
    first, second = make_engine(database_url), make_engine(database_url)
    try:
        a, b = store(first, clock, scope=scope), store(second, clock, scope=scope)
        assert (a.take("key"), b.take("key"), a.take("key")) == (0, 0, 0)
        assert b.take("key") == 60 and a.peek("key") == 60
    finally:
        first.dispose()
        second.dispose()


def test_passed_windows_are_purged_by_their_scope_only(engine: Engine) -> None:
    clock = FixedClock(START)
    mine, theirs = unique("s"), unique("s")
    limits, others = store(engine, clock, scope=mine), store(engine, clock, scope=theirs)
    limits.take("a")
    limits.take("b")
    others.take("a")
    clock.set(START + timedelta(minutes=5))
    limits.take("a")  # the first hit of a new window
    window = int((START + timedelta(minutes=5)).timestamp())
    assert rows(engine, mine) == [("a", window, 1)]
    assert len(rows(engine, theirs)) == 1  # another scope's windows are left alone


def test_settings_are_checked(engine: Engine) -> None:
    clock = FixedClock(START)
    with pytest.raises(ValidationError) as error:
        DatabaseWindows(engine=engine, scope="x", capacity=0, window_seconds=60, now=lambda: 0.0)
    assert error.value.field == "capacity"
    long_key = store(engine, clock, scope=unique("s"))
    assert long_key.take("k" * 500) == 0  # cut to the column's 200 characters, not a 500


def test_concurrent_hits_are_counted_exactly(postgres_url: str) -> None:
    clock = FixedClock(START)
    engine = make_engine(postgres_url)
    scope = unique("s")
    limits = store(engine, clock, scope=scope, capacity=50)
    barrier = threading.Barrier(8)
    waits: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        barrier.wait()
        for _ in range(10):
            wait = limits.take("hot")
            with lock:
                waits.append(wait)

    try:
        threads = [threading.Thread(target=hit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(waits) == 80
        assert waits.count(0) == 50  # exactly the capacity, never one more
        with engine.connect() as connection:
            total = connection.execute(
                select(func.sum(RateLimitCounter.hits)).where(RateLimitCounter.scope == scope)
            ).scalar_one()
        assert total == 80
    finally:
        engine.dispose()


def test_two_app_instances_share_the_lookup_limit(database_url: str) -> None:
    """Two workers: with the in-memory buckets each would allow 3 look-ups; sharing the
    database store, the 4th look-up is refused whichever worker gets it."""
    clock = FixedClock(START)
    settings = ApiSettings(
        auth_failure_limit=0, sensitive_rate_limit=3, rate_limit_store="database"
    )
    apps = [create_app(database_url, clock=clock, settings=settings) for _ in range(2)]
    assert all(isinstance(app.state.rate_limits.sensitive, DatabaseWindows) for app in apps)
    world: World = make_world(apps[0].state.runtime.factory, now=START)
    try:
        with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
            member = enrol(one, world, email=f"{unique('ana')}@example.com")
            query = {"email": member["email"]}

            def lookup(client: TestClient) -> Response:
                return client.post("/v1/members/lookup", json=query, headers=world.auth("read"))

            assert [lookup(c).status_code for c in (one, two, one)] == [200, 200, 200]
            refused = lookup(two)
            assert_problem(refused, 429, "rate_limited")
            assert refused.headers["Retry-After"] == "60"
            clock.set(START + timedelta(seconds=60))
            assert lookup(two).status_code == 200
    finally:
        for app in apps:
            app.state.runtime.engine.dispose()
