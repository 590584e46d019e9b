"""What every request needs: the runtime (database, clock, settings) and the authenticated caller.

Authentication: `Authorization: Bearer <API key>`. The key names its program, so every route
works inside that program only; function-level authorization is the key's scope, checked
before any object is looked up (a `read` key learns nothing about what exists by writing).
"""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations of the
# dependency closures below, which name local variables.

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fideliza.api.logging import note_caller
from fideliza.api.settings import ApiSettings
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Scope, granted, require_scope
from fideliza.core.clock import Clock
from fideliza.programs import service as programs
from fideliza.programs.models import Program


@dataclass(frozen=True, slots=True)
class Runtime:
    """The app's engine, session factory, clock and settings (one per app)."""

    engine: Engine
    factory: sessionmaker[Session]
    clock: Clock
    settings: ApiSettings


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


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


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A program's API key: `Authorization: Bearer fzk_…`",
)


def authenticate(
    rt: Annotated[Runtime, Depends(runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    """The caller of this request (401 problem when the key is missing or not valid)."""
    now = rt.clock.now()
    with rt.factory() as db:
        key = apikeys.authenticate(
            db, plaintext=credentials.credentials if credentials else None, now=now
        )
        if apikeys.touch(db, key=key, now=now):
            db.commit()
        note_caller(api_key_id=key.id, program_id=key.program_id)
        return Caller(
            key_id=key.id,
            key_prefix=key.prefix,
            program_id=key.program_id,
            scopes=granted(key.scopes),
        )


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


def requires(scope: Scope) -> Callable[..., Caller]:
    """A dependency: the authenticated caller, refused (403) without `scope`."""

    def dependency(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        require_scope(caller.scopes, scope)
        return caller

    dependency.__name__ = f"requires_{scope}"
    return dependency


def reader(scope: Scope = Scope.READ) -> Callable[..., Call]:
    """A dependency: a `Call` for a route that reads (needs `scope`, `read` by default)."""
    needs = requires(scope)

    def dependency(
        request: Request,
        caller: Annotated[Caller, Depends(needs)],
        rt: Annotated[Runtime, Depends(runtime)],
    ) -> Call:
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
