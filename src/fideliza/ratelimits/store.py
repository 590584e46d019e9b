"""Rate limits every `fideliza serve` worker shares: fixed-window counters in the database.

One statement per hit: `INSERT … ON CONFLICT DO UPDATE SET hits = hits + 1 RETURNING hits`
(SQLite and PostgreSQL), so concurrent workers never lose a hit, and the count a worker reads
is the one its own hit produced. A window's first hit also deletes the scope's older windows,
so the table holds about one row per active bucket.

A fixed window lets up to twice the limit through across a window boundary (the end of one
window and the start of the next); in exchange it costs one row and one statement per hit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from fideliza.core.errors import ValidationError
from fideliza.ratelimits.models import RateLimitCounter

MAX_BUCKET_LENGTH = 200


class DatabaseWindows:
    """`capacity` hits per bucket per `window_seconds`, counted in the database (thread-safe,
    and shared by every process on the same database). Same interface as the in-memory
    `fideliza.api.ratelimit.TokenBuckets`: `take` and `peek` answer 0 or seconds to wait."""

    blocking = True  # a database round trip: called off the event loop

    def __init__(
        self,
        *,
        engine: Engine,
        scope: str,
        capacity: int,
        window_seconds: float,
        now: Callable[[], float],
    ) -> None:
        if capacity < 1:
            raise ValidationError("must be at least 1", field="capacity")
        if window_seconds < 1:
            raise ValidationError("must be at least 1 second", field="window_seconds")
        self.engine = engine
        self.scope = scope
        self.capacity = capacity
        self.window = math.ceil(window_seconds)  # whole seconds: windows align across workers
        self.now = now
        self._postgres = engine.dialect.name == "postgresql"

    def _window(self, at: float) -> int:
        return int(at // self.window) * self.window

    def _wait(self, start: int, at: float) -> int:
        return max(1, math.ceil(start + self.window - at))

    @staticmethod
    def _bucket(key: Hashable) -> str:
        text = key if isinstance(key, str) else ":".join(map(str, _parts(key)))
        return text[:MAX_BUCKET_LENGTH]

    def take(self, key: Hashable) -> int:
        """Counts a hit: 0 when it is within the limit, else the seconds until the window ends."""
        at = self.now()
        start = self._window(at)
        row = {"scope": self.scope, "bucket": self._bucket(key), "window_start": start, "hits": 1}
        insert: Any = (postgresql if self._postgres else sqlite).insert(RateLimitCounter)
        statement = (
            insert.values(row)
            .on_conflict_do_update(
                index_elements=["scope", "bucket", "window_start"],
                set_={"hits": RateLimitCounter.hits + 1},
            )
            .returning(RateLimitCounter.hits)
        )
        with self.engine.begin() as connection:
            if self._postgres:
                # A hit lost in a crash costs nothing: no need to wait for the WAL flush.
                connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
            hits = int(connection.execute(statement).scalar_one())
            if hits == 1:  # a new window: the scope's older ones are of no use any more
                connection.execute(
                    delete(RateLimitCounter).where(
                        RateLimitCounter.scope == self.scope,
                        RateLimitCounter.window_start < start,
                    )
                )
        return 0 if hits <= self.capacity else self._wait(start, at)

    def peek(self, key: Hashable) -> int:
        """0 when a hit would be within the limit (without counting one), else the wait."""
        at = self.now()
        start = self._window(at)
        query = select(RateLimitCounter.hits).where(
            RateLimitCounter.scope == self.scope,
            RateLimitCounter.bucket == self._bucket(key),
            RateLimitCounter.window_start == start,
        )
        with self.engine.connect() as connection:
            hits = connection.execute(query).scalar_one_or_none() or 0
        return 0 if hits < self.capacity else self._wait(start, at)


def _parts(key: Hashable) -> tuple[Any, ...]:
    return tuple(key) if isinstance(key, tuple) else (key,)
