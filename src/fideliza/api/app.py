"""The HTTP API's app factory: /v1 resources, API-key auth, idempotency, problem+json errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from sqlalchemy import text
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fideliza import __version__
from fideliza.api import errors
from fideliza.api import logging as logs
from fideliza.api.context import Runtime
from fideliza.api.errors import problem_body, render
from fideliza.api.grouping import purchase_groups, redemption_groups
from fideliza.api.idempotency import REPLAYED
from fideliza.api.metrics import CONTENT_TYPE, Metrics
from fideliza.api.ratelimit import Limiter, RateLimits, TokenBuckets
from fideliza.api.routes import (
    admin,
    cases,
    config,
    coupons,
    events,
    giftcards,
    me,
    members,
    messaging,
    points,
    purchases,
    referrals,
    rewards,
    surveys,
    webhooks,
)
from fideliza.api.settings import ApiSettings
from fideliza.api.telemetry import REQUEST_ID, Telemetry
from fideliza.api.validation import checked_body, document_storable_limits
from fideliza.config import get_settings
from fideliza.core.clock import Clock, SystemClock
from fideliza.db import make_engine, make_session_factory
from fideliza.ratelimits.store import DatabaseWindows

DESCRIPTION = """\
Fideliza's REST API for tills, shops and apps.

**Auth**: `Authorization: Bearer <API key>`. A key belongs to one program and has scopes
(`read`; `pos` = read + write purchases, returns, events, members, holds and redemptions;
`admin` = everything, plus keys and jobs). Objects of other programs do not exist for it.
A revoked key is refused at once by the server process that revoked it, and by every other
within 5 seconds (verified keys are remembered that long).

**Idempotency**: every mutating request accepts `Idempotency-Key`. Same key and body → the
first response again (`Idempotent-Replayed: true`); other body → 422 `idempotency_error`;
still running → 409 `request_in_flight` with `Retry-After`. Required for redemptions without
a `reference`. Purchases, returns, events and enrolments are also idempotent by their
`external_id`, holds by their `reference`.

**Errors**: RFC 9457 `application/problem+json` with a stable `code` and the `field` in error.

**Rate limits**: sensitive look-ups (members by card, e-mail or phone) are limited per API key,
and repeated failed authentications per client address: 429 `rate_limited` with `Retry-After`.

**Request ids**: send `X-Request-Id` (1-128 of `A-Za-z0-9._:@+=-`) or get one; the response
echoes it and the server's logs carry it.
"""


class BodyLimit:
    """Refuses request bodies larger than `max_bytes` (413) before they are buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            response = render(
                problem_body(
                    status=status,
                    code="payload_too_large" if status == 413 else "bad_request",
                    message=f"the body must not exceed {self.max_bytes} bytes"
                    if status == 413
                    else "Content-Length is not a number",
                    instance=scope.get("path"),
                )
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body without Content-Length
                    raise HTTPException(413, f"the body must not exceed {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(
    database_url: str | None = None,
    *,
    clock: Clock | None = None,
    settings: ApiSettings | None = None,
) -> FastAPI:
    """Builds the app on one engine (each uvicorn worker calls this once)."""
    engine = make_engine(database_url or get_settings().database_url)
    api_settings = settings or ApiSettings()
    factory = make_session_factory(engine)
    rt = Runtime(
        engine=engine,
        factory=factory,
        clock=clock or SystemClock(),
        settings=api_settings,
        purchase_groups=purchase_groups(factory),
        redemption_groups=redemption_groups(factory),
    )

    @asynccontextmanager
    async def lifespan(started: FastAPI) -> AsyncIterator[None]:
        # Every request checks its path against the OpenAPI document, which takes a second or
        # more to build: build it before serving, not in the first request of each worker.
        started.openapi()
        yield
        engine.dispose()

    app = FastAPI(
        title="Fideliza",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    if api_settings.log_json:
        logs.configure(api_settings.log_level)
    metrics = Metrics() if api_settings.metrics_enabled else None
    if metrics is not None:
        metrics.watch_postings(rt.factory)

    def seconds() -> float:  # the app's clock, so that tests can move time on
        return rt.clock.now().timestamp()

    sensitive: Limiter | None = None
    if api_settings.sensitive_rate_limit and api_settings.rate_limit_store == "database":
        sensitive = DatabaseWindows(
            engine=engine,
            scope="sensitive",
            capacity=api_settings.sensitive_rate_limit,
            window_seconds=max(1.0, api_settings.sensitive_rate_window_seconds),
            now=seconds,
        )
    elif api_settings.sensitive_rate_limit:
        sensitive = TokenBuckets(
            capacity=api_settings.sensitive_rate_limit,
            window_seconds=api_settings.sensitive_rate_window_seconds,
            now=seconds,
        )
    limits = RateLimits(
        sensitive=sensitive,
        auth_failures=TokenBuckets(
            capacity=api_settings.auth_failure_limit,
            window_seconds=api_settings.auth_failure_window_seconds,
            now=seconds,
        )
        if api_settings.auth_failure_limit
        else None,
    )
    app.state.rate_limits = limits
    errors.install(app)
    if api_settings.cors_origins:
        # Only the origins the operator names; none by default (browsers then refuse).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=api_settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID],
            expose_headers=["Retry-After", REPLAYED, REQUEST_ID],
        )
    app.add_middleware(BodyLimit, max_bytes=api_settings.max_body_bytes)
    # Outermost, so that it times, logs and stamps every answer (413s and 500s included).
    app.add_middleware(Telemetry, metrics=metrics, auth_failures=limits.auth_failures)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:  # async: no thread-pool hop for a constant
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> dict[str, Any]:
        """The database answers."""
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ready", "database": engine.dialect.name}

    if metrics is not None:

        @app.get(
            "/metrics",
            tags=["operations"],
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        )
        def prometheus() -> Response:
            """Prometheus metrics (text format 0.0.4) of this worker process."""
            return Response(
                content=metrics.render(engine=engine, now=rt.clock.now), media_type=CONTENT_TYPE
            )

    # Routes are matched in order: the tills' busiest first (no two modules share a path).
    for module in (
        purchases,
        points,
        admin,
        config,
        members,
        events,
        webhooks,
        rewards,
        coupons,
        giftcards,
        referrals,
        surveys,
        cases,
        messaging,
        me,
    ):
        app.include_router(module.router, dependencies=[Depends(checked_body)])
    # One-click unsubscribe (RFC 8058) posts a form, not JSON: no JSON body check there.
    app.include_router(messaging.public_router)
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # FastAPI caches the one it generates: amend it once
            app.openapi_schema = document_storable_limits(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
