"""The outermost middleware: request id, access log, request metrics, failed-auth rate limit."""

from __future__ import annotations

import re
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fideliza.api import logging as logs
from fideliza.api.errors import problem_body, render
from fideliza.api.metrics import Metrics, route_of
from fideliza.api.ratelimit import TokenBuckets

REQUEST_ID = "X-Request-Id"


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Telemetry:
    """Gives each request its id (echoed in `X-Request-Id`), times it into `metrics`, writes
    its access-log line, and refuses `/v1` requests from an IP that failed authentication too
    often (`auth_failures`, drawn from by each 401)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None,
        auth_failures: TokenBuckets | None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.auth_failures = auth_failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        raw_id = headers.get(b"x-request-id")
        context = logs.begin(logs.request_id_from(raw_id.decode("latin-1") if raw_id else None))
        echoed = (b"x-request-id", context.request_id.encode())
        status = 500
        started_response = False

        async def stamped(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        ip = _client_ip(scope)
        try:
            wait = self._blocked(scope, ip)
            if wait:
                await self._too_many_failures(scope, receive, stamped, wait)
            else:
                await self.app(scope, receive, stamped)
        except Exception:
            # Answer here, so that the 500 carries the request id too; the app's error handler
            # (outside, in ServerErrorMiddleware) still logs the error, with the request id:
            # the request's context is left set for it.
            if not started_response:
                await self._crashed(scope, receive, stamped)
            raise
        finally:
            if status == 401 and self.auth_failures is not None:
                self.auth_failures.take(ip)
            self._finish(scope, context, status, time.perf_counter() - started)

    def _blocked(self, scope: Scope, ip: str) -> int:
        if self.auth_failures is None or not str(scope["path"]).startswith("/v1/"):
            return 0
        return self.auth_failures.peek(ip)

    @staticmethod
    async def _too_many_failures(scope: Scope, receive: Receive, send: Send, wait: int) -> None:
        body = problem_body(
            status=429,
            code="rate_limited",
            message=f"too many failed authentications from this address; retry in {wait} s",
            instance=scope.get("path"),
        )
        await render(body, {"Retry-After": str(wait)})(scope, receive, send)

    @staticmethod
    async def _crashed(scope: Scope, receive: Receive, send: Send) -> None:
        body = problem_body(
            status=500,
            code="internal_error",
            message="an unexpected error occurred; it has been logged",
            instance=scope.get("path"),
        )
        await render(body)(scope, receive, send)

    def _finish(
        self,
        scope: MutableMapping[str, Any],
        context: logs.RequestContext,
        status: int,
        took: float,
    ) -> None:
        route = route_of(scope)
        method = str(scope["method"])
        if self.metrics is not None:
            self.metrics.observe_request(route=route, method=method, status=status, seconds=took)
        logs.access(
            context,
            method=method,
            route=route,
            path=loggable_path(str(scope["path"])),
            status=status,
            duration_ms=round(took * 1000, 3),
        )


# Paths whose last segment is a credential (a signed survey or unsubscribe link): whoever reads
# the logs must not be able to use it.
_SECRET_SEGMENT = re.compile(r"^(/v1/(?:survey-answers|unsubscribe)/)[^/?]+")


def loggable_path(path: str) -> str:
    """The path as the access log writes it: credentials in the path are redacted."""
    return _SECRET_SEGMENT.sub(r"\1[redacted]", path)
