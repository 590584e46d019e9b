"""What every request needs: the runtime (database, clock, settings) and the authenticated caller.

Authentication: `Authorization: Bearer <API key>`. The key names its program, so every route
works inside that program only; function-level authorization is the key's scope, checked
before any object is looked up (a `read` key learns nothing about what exists by writing).

The dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in the
thread pool, a hop that costs more CPU than the dependency itself. A key verified in the
database is remembered for a few seconds (`VerifiedKeys`), so most requests skip that look-up.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations of the
# dependency closures below, which name local variables.

import hashlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fideliza.api.logging import note_caller
from fideliza.api.settings import ApiSettings
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Scope, granted, require_scope
from fideliza.apikeys.models import ApiKey
from fideliza.core.clock import Clock
from fideliza.programs import service as programs
from fideliza.programs.models import Program

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fideliza.api.grouping import GroupCommit
    from fideliza.ledger.redemptions import Redeemed, RedemptionRequest
    from fideliza.purchases.ingest import Outcome


@dataclass(frozen=True, slots=True)
class Caller:
    """The API key a request was made with."""

    key_id: int
    key_prefix: str
    program_id: int
    scopes: frozenset[Scope]

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return f"apikey:{self.key_prefix}"


# How long a verified key is taken on trust. A key revoked in this process is forgotten at
# once; one revoked through another worker (or the CLI) stops there within this time.
KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    until: datetime  # the cache entry's end: never past the key's expiry or its next touch
    revocations: int  # `apikeys.revocations()` when it was verified


class VerifiedKeys:
    """API keys verified in the database recently, by the SHA-256 of the key (the key itself
    is not kept). A hit skips the database: no session, no SELECT, no rollback.

    An entry ends after `seconds`, when the key expires, or when the key's last use is due
    to be written again (`apikeys.LAST_USED_EVERY`), whichever comes first; every entry is
    dropped when a key is revoked in this process. Failures are never cached."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS, max_entries: int = 10_000) -> None:
        self.ttl = timedelta(seconds=seconds)
        self.max_entries = max_entries
        self._entries: dict[bytes, _Verified] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(plaintext: str) -> bytes:
        return hashlib.sha256(plaintext.encode()).digest()

    def get(self, plaintext: str, now: datetime) -> Caller | None:
        if not self.ttl:
            return None
        entry = self._entries.get(self._digest(plaintext))
        if entry is None or now >= entry.until or entry.revocations != apikeys.revocations():
            return None
        return entry.caller

    def put(self, plaintext: str, key: ApiKey, caller: Caller, now: datetime, seen: int) -> None:
        """Remembers a key verified at `now`; `seen`: `apikeys.revocations()` before the
        look-up, so that a revocation committed meanwhile voids the entry."""
        if not self.ttl:
            return
        until = now + self.ttl
        if key.last_used_at is not None:
            until = min(until, key.last_used_at + apikeys.LAST_USED_EVERY)
        if key.expires_at is not None:
            until = min(until, key.expires_at)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # rare (that many live keys): start again
            self._entries[self._digest(plaintext)] = _Verified(caller, until, seen)


@dataclass(frozen=True, slots=True)
class Runtime:
    """The app's engine, session factory, clock and settings (one per app)."""

    engine: Engine
    factory: sessionmaker[Session]
    clock: Clock
    settings: ApiSettings
    keys: VerifiedKeys = field(default_factory=VerifiedKeys)
    # Purchases and one-step redemptions of concurrent requests written in shared batches
    # (None: one by one).
    purchase_groups: "GroupCommit[Mapping[str, Any], Outcome] | None" = None
    redemption_groups: "GroupCommit[RedemptionRequest, Redeemed] | None" = None


async def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A program's API key: `Authorization: Bearer fzk_…`",
)


def _verify(rt: Runtime, plaintext: str | None, now: datetime) -> Caller:
    """Checks the key in the database (and records its use); remembers it if it is good."""
    seen = apikeys.revocations()
    with rt.factory() as db:
        key = apikeys.authenticate(db, plaintext=plaintext, now=now)
        if apikeys.touch(db, key=key, now=now):
            db.commit()
    caller = Caller(
        key_id=key.id,
        key_prefix=key.prefix,
        program_id=key.program_id,
        scopes=granted(key.scopes),
    )
    if plaintext is not None:
        rt.keys.put(plaintext, key, caller, now, seen)
    return caller


async def authenticate(
    rt: Annotated[Runtime, Depends(runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    """The caller of this request (401 problem when the key is missing or not valid)."""
    return await caller_of(rt, credentials)


async def caller_of(
    rt: Runtime, credentials: HTTPAuthorizationCredentials | None, scope: Scope | None = None
) -> Caller:
    """The caller the credentials name (401 when missing or not valid; 403 without `scope`).

    A plain coroutine, not a dependency: the reader and writer dependencies call it directly,
    because FastAPI's resolution of each nested dependency costs more than the check itself.
    """
    now = rt.clock.now()
    plaintext = credentials.credentials if credentials else None
    caller = rt.keys.get(plaintext, now) if plaintext else None
    if caller is None:
        caller = await run_in_threadpool(_verify, rt, plaintext, now)
    note_caller(api_key_id=caller.key_id, program_id=caller.program_id)
    if scope is not None and scope not in caller.scopes:  # implied scopes are there already
        require_scope(caller.scopes, scope)
    return caller


@dataclass(frozen=True, slots=True)
class Call:
    """A request allowed to read: its caller, the runtime, the time it arrived, its path."""

    caller: Caller
    runtime: Runtime
    now: datetime
    instance: str

    @property
    def program_id(self) -> int:
        return self.caller.program_id

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reading (rolled back at the end: reads never write)."""
        with self.runtime.factory() as db:
            yield db

    def program(self, db: Session) -> Program:
        """The caller's program."""
        return programs.get(db, program_id=self.program_id)


def requires(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the authenticated caller, refused (403) without `scope`."""

    async def dependency(
        rt: Annotated[Runtime, Depends(runtime)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Caller:
        return await caller_of(rt, credentials, scope)

    dependency.__name__ = f"requires_{scope}"
    return dependency


def reader(scope: Scope = Scope.READ) -> Callable[..., Awaitable[Call]]:
    """A dependency: a `Call` for a route that reads (needs `scope`, `read` by default)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Call:
        rt: Runtime = request.app.state.runtime
        caller = await caller_of(rt, credentials, scope)
        return Call(caller=caller, runtime=rt, now=rt.clock.now(), instance=request.url.path)

    dependency.__name__ = f"reader_{scope}"
    return dependency


# --- member tokens (the portal and apps) ------------------------------------------------------

member_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MemberToken",
    description="A member token from `POST /v1/members/{id}/tokens`: `Bearer fzm_…`",
)


@dataclass(frozen=True, slots=True)
class MemberCall:
    """A request made by a member through an app: only that member's data is reachable."""

    program_id: int
    member_id: int
    runtime: Runtime
    now: datetime

    @property
    def actor(self) -> str:
        return f"member:{self.member_id}"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.runtime.factory() as db:
            yield db


def member_caller(
    rt: Annotated[Runtime, Depends(runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(member_bearer)],
) -> MemberCall:
    """The member a token speaks for (401 when missing, forged, expired, or the member closed).

    An API key is not a member: it gets the same 401 as a forged token, and a member token
    is refused by every API-key route in turn."""
    now = rt.clock.now()
    secret = rt.settings.secret_key
    with rt.factory() as db:
        member = apikeys.member_of_token(
            db,
            token=credentials.credentials if credentials else "",
            secret=secret.get_secret_value() if secret else None,
            now=now,
        )
        note_caller(api_key_id=None, program_id=member.program_id, member_id=member.id)
        return MemberCall(program_id=member.program_id, member_id=member.id, runtime=rt, now=now)
