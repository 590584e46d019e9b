"""Rate limits on sensitive flows: token buckets, answered with 429 problem+json + Retry-After.

- **Sensitive look-ups** (`POST /v1/members/lookup`, and coupon validation when it comes): a
  bucket per flow and API key, `sensitive_rate_limit` requests per
  `sensitive_rate_window_seconds`, refilled continuously; other keys are not affected.
- **Failed authentication**: a bucket per client IP, drawn from by each 401; while it is
  empty every `/v1` request from that IP is refused with 429 before its key is even checked
  (else a correct guess would still be told apart from a wrong one).

The buckets live in process memory: each worker counts on its own, so with N workers a
client may get up to N times the limit. With `rate_limit_store = "database"` the sensitive
look-ups are counted in the database instead (`fideliza.ratelimits.store`), one limit across
workers and hosts; failed authentications stay in memory (checked on every request, before
anything else, where a database write would cost every caller).
"""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations of the
# dependency closures below, which name local variables.

import math
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Annotated, Protocol

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from fideliza.api.context import Caller, requires
from fideliza.apikeys.domain import Scope
from fideliza.core.errors import FidelizaError


class RateLimited(FidelizaError):
    """Too many requests in the window: retry after `Retry-After` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class TokenBuckets:
    """`capacity` tokens per key, refilled at `capacity / window` per second (thread-safe).

    A full bucket is the same as no bucket, so full ones are dropped when there are many keys.
    """

    blocking = False  # answers from memory: callable on the event loop

    def __init__(
        self,
        *,
        capacity: int,
        window_seconds: float,
        now: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window_seconds
        self.now = now
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def _level(self, key: Hashable, at: float) -> float:
        tokens, since = self._buckets.get(key, (self.capacity, at))
        return min(self.capacity, tokens + max(0.0, at - since) * self.rate)

    def _wait(self, tokens: float) -> int:
        """Whole seconds until a token is back (at least 1)."""
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def take(self, key: Hashable) -> int:
        """Takes a token: 0 when there was one, else the seconds to wait for one."""
        at = self.now()
        with self._lock:
            tokens = self._level(key, at)
            if tokens < 1.0:
                self._buckets[key] = (tokens, at)
                return self._wait(tokens)
            self._store(key, tokens - 1.0, at)
            return 0

    def peek(self, key: Hashable) -> int:
        """0 when a token is there (without taking it), else the seconds to wait for one."""
        at = self.now()
        with self._lock:
            tokens = self._level(key, at)
            return 0 if tokens >= 1.0 else self._wait(tokens)

    def _store(self, key: Hashable, tokens: float, at: float) -> None:
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            full = [k for k in self._buckets if self._level(k, at) >= self.capacity]
            for stale in full:
                del self._buckets[stale]
        self._buckets[key] = (tokens, at)


class Limiter(Protocol):
    """What a rate-limit store answers: 0 (go on) or the seconds to wait. A `blocking` store
    does I/O, so it is called off the event loop."""

    @property
    def blocking(self) -> bool: ...

    def take(self, key: Hashable) -> int: ...

    def peek(self, key: Hashable) -> int: ...


class RateLimits:
    """The app's buckets (`None`: that limit is off)."""

    def __init__(
        self,
        *,
        sensitive: Limiter | None,
        auth_failures: TokenBuckets | None,
    ) -> None:
        self.sensitive = sensitive
        self.auth_failures = auth_failures


def limits_of(request: Request) -> RateLimits:
    found: RateLimits = request.app.state.rate_limits
    return found


def sensitive(flow: str, scope: Scope = Scope.READ) -> Callable[..., Awaitable[None]]:
    """A route dependency: the caller (with `scope`) spends a token of `flow`'s bucket."""
    needs = requires(scope)

    # `async`: in-memory buckets need no thread-pool hop (a database store gets one below).
    async def dependency(
        caller: Annotated[Caller, Depends(needs)],
        limits: Annotated[RateLimits, Depends(limits_of)],
    ) -> None:
        store = limits.sensitive
        if store is None:
            return
        key = (flow, caller.key_id)
        wait = await run_in_threadpool(store.take, key) if store.blocking else store.take(key)
        if wait:
            raise RateLimited(
                f"too many {flow.replace('_', ' ')} requests with this API key; retry in {wait} s",
                retry_after=wait,
            )

    dependency.__name__ = f"rate_limited_{flow}"
    return dependency
