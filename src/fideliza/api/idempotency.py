"""`Idempotency-Key` on every mutating request: a retry gets the first answer, never a 2nd effect.

- same key, same request (method, path, query and JSON body, compared canonically) → the
  first response is replayed, with `Idempotent-Replayed: true`;
- same key, another request → 422 `idempotency_error`;
- same key while the first request is still running → 409 `request_in_flight`, `Retry-After`.

Keys belong to the API key that sent them and are kept for `idempotency_retention_hours` (24 h
by default, never less). The claim is committed first, so a concurrent request sees it; the
response is then stored in the *same* transaction as the change it reports, so no change is
ever committed without the answer a retry will get. A 4xx outcome is an answer too and is kept;
an unexpected failure (5xx) rolls everything back and forgets the key, so a retry runs anew.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations of the
# dependency closures below, which name local variables.

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy.orm import Session

from fideliza.api.context import Call, Runtime, bearer, caller_of
from fideliza.api.errors import RequestInFlight, problem_response
from fideliza.api.validation import checked_body
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Claimed, InFlight, Mismatch, Replay, Scope
from fideliza.core.errors import FidelizaError, IdempotencyError, ValidationError
from fideliza.db import unit_of_work

REPLAYED = "Idempotent-Replayed"
log = logging.getLogger("fideliza.api")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Any unique string (a UUID is fine): a retry with the same key and the same body "
            "gets the first response; with another body, 422 idempotency_error."
        ),
    ),
]


def json_response(model: BaseModel, *, status: int = 200) -> Response:
    """A JSON response from a response model (rendered here, so it can be stored as sent)."""
    return Response(
        content=model.model_dump_json().encode(), status_code=status, media_type="application/json"
    )


def fingerprint(*, method: str, path: str, query: str, body: Any) -> str:
    """A SHA-256 of what makes two requests the same: method, path, query and JSON body
    (canonical: the order of keys and the spacing do not count)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256()
    for part in (method, path, query, canonical):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Write(Call):
    """A request allowed to write: `run` does its work once per Idempotency-Key."""

    idempotency_key: str | None
    fingerprint: str  # of the request, when it has an idempotency key ("" without)

    def run(
        self,
        work: Callable[[Session], Response],
        *,
        key_required: bool = False,
        store: Callable[[bytes], bytes] | None = None,
    ) -> Response:
        """Runs `work` in one transaction (the caller's unit of work), idempotently if keyed.

        `store` turns a successful response into what is kept for replays (to leave a secret
        out of the database, for instance).
        """
        rt = self.runtime
        if self.idempotency_key is None:
            if key_required:
                raise ValidationError(
                    "is required for this request (or give the body a `reference`)",
                    field="Idempotency-Key",
                )
            with unit_of_work(rt.factory) as db:
                return work(db)
        settings = rt.settings
        with rt.factory() as db:
            claim = apikeys.claim(
                db,
                api_key_id=self.caller.key_id,
                key=self.idempotency_key,
                fingerprint=self.fingerprint,
                now=self.now,
                lease=timedelta(seconds=settings.idempotency_lease_seconds),
                retention=timedelta(hours=settings.idempotency_retention_hours),
            )
            db.commit()
            if isinstance(claim, Replay):
                return Response(
                    content=claim.body.encode(),
                    status_code=claim.status,
                    media_type=claim.media_type,
                    headers={REPLAYED: "true"},
                )
            if isinstance(claim, Mismatch):
                raise IdempotencyError(
                    "was already used for another request (method, path or body differ)",
                    field="Idempotency-Key",
                )
            if isinstance(claim, InFlight):
                raise RequestInFlight(
                    "a request with this key is still being processed; retry in a second",
                    field="Idempotency-Key",
                )
            return self._run_claimed(db, claim, work, store)

    def _run_claimed(
        self,
        db: Session,
        claim: Claimed,
        work: Callable[[Session], Response],
        store: Callable[[bytes], bytes] | None,
    ) -> Response:
        try:
            response = work(db)
        except FidelizaError as error:
            db.rollback()  # nothing of the work is kept; its answer is
            response = problem_response(error, instance=self.instance)
        except BaseException:
            db.rollback()
            self._release(db, claim)
            raise
        body = bytes(response.body)
        if store is not None and response.status_code < 400:
            body = store(body)
        stored = apikeys.complete(
            db,
            claimed=claim,
            status=response.status_code,
            body=body.decode(),
            media_type=response.media_type or "application/json",
        )
        if not stored:
            # Our claim outlived its lease and another worker took the key over: let that
            # worker's answer stand, and keep nothing of ours.
            db.rollback()
            raise RequestInFlight(
                "a retry with this key took over this request; retry to get its answer",
                field="Idempotency-Key",
            )
        db.commit()
        return response

    @staticmethod
    def _release(db: Session, claim: Claimed) -> None:
        try:
            apikeys.release(db, claimed=claim)
            db.commit()
        except Exception:  # the lease expires anyway, and a retry then takes the key over
            log.exception("could not release idempotency claim %s", claim.record_id)
            db.rollback()


def writer(scope: Scope = Scope.POS) -> Callable[..., Awaitable[Write]]:
    """A dependency: a `Write` for a mutating route (needs `scope`, `pos` by default)."""

    async def dependency(  # no I/O: no thread-pool hop
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        body: Annotated[Any, Depends(checked_body)],
        idempotency_key: IdempotencyKey = None,
    ) -> Write:
        rt: Runtime = request.app.state.runtime
        caller = await caller_of(rt, credentials, scope)
        url = request.url
        return Write(
            caller=caller,
            runtime=rt,
            now=rt.clock.now(),
            instance=url.path,
            idempotency_key=idempotency_key,
            # Only a keyed request is ever compared with another: no digest without a key.
            fingerprint=fingerprint(
                method=request.method, path=url.path, query=url.query, body=body
            )
            if idempotency_key is not None
            else "",
        )

    dependency.__name__ = f"writer_{scope}"
    return dependency
