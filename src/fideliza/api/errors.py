"""Every error as RFC 9457 problem+json, with a stable `code`, the `field` in error and a detail.

```json
{"type": "urn:fideliza:problem:not_found", "title": "Not Found", "status": 404,
 "detail": "member_id: member 7 does not exist", "code": "not_found", "field": "member_id",
 "instance": "/v1/members/7"}
```
Validation errors add `errors`: every problem found, each with its field. A client mistake is
always a 4xx; a 500 means a bug (logged with its traceback, never shown to the client).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from fideliza.core.errors import Conflict, FidelizaError
from fideliza.core.validation import field_path

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("fideliza.api")


class RequestInFlight(Conflict):
    """Another request with the same Idempotency-Key is still being processed."""

    code = "request_in_flight"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class Unavailable(FidelizaError):
    """The database is busy or down: the request did nothing and may be retried."""

    code = "unavailable"
    status = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class ProblemItem(BaseModel):
    """One problem of a request that has several."""

    field: str | None
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail, with Fideliza's stable `code` and the `field` in error."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    instance: str | None = None
    errors: list[ProblemItem] | None = None


_AS_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "content": _AS_PROBLEM, "description": "A client error"},
    "5XX": {"model": Problem, "content": _AS_PROBLEM, "description": "A server error"},
}


def problem_body(
    *,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    instance: str | None = None,
    errors: list[ProblemItem] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:fideliza:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": f"{field}: {message}" if field else message,
        "code": code,
        "field": field,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = [item.model_dump() for item in errors]
    return body


def render(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=int(body["status"]),
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_response(error: FidelizaError, *, instance: str | None) -> Response:
    """The problem+json response of one of our errors."""
    body = problem_body(
        status=error.status,
        code=error.code,
        message=error.message,
        field=error.field,
        instance=instance,
    )
    return render(body, getattr(error, "headers", None))


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "json_invalid":
        return "is not valid JSON"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _field(location: tuple[Any, ...]) -> str:
    if location and location[0] in ("body", "query", "path", "header", "cookie"):
        if len(location) == 1:
            return str(location[0])
        location = location[1:]
    return field_path(tuple(location)) or "body"


def _validation_problem(request: Request, error: RequestValidationError) -> Response:
    items = [
        ProblemItem(
            # A JSON syntax error is located by its character offset: name the body instead.
            field="body" if item.get("type") == "json_invalid" else _field(tuple(item["loc"])),
            message=_message(item),
        )
        for item in error.errors()
    ]
    first = items[0] if items else ProblemItem(field=None, message="is invalid")
    body = problem_body(
        status=422,
        code="validation_error",
        message=first.message,
        field=first.field,
        instance=request.url.path,
        errors=items,
    )
    return render(body)


_BODY_PARSE_FAILED = "There was an error parsing the body"  # FastAPI's words
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@functools.cache
def _template_regex(template: str) -> re.Pattern[str]:
    literal_parts = re.split(r"\{[^/}]+\}", template)  # around each `{parameter}`
    return re.compile("[^/]+".join(map(re.escape, literal_parts)))


def _allowed_methods(request: Request) -> str:
    """Every documented method of the path (Starlette names only those of its first route).

    A literal path wins over templates it also matches: `/v1/members/lookup` is not a member id.
    """
    path = request.url.path
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    templates = (
        [path]
        if path in paths
        else [template for template in paths if _template_regex(template).fullmatch(path)]
    )
    methods = {
        method.upper()
        for template in templates
        for method in paths[template]
        if method in _HTTP_METHODS
    }
    return ", ".join(sorted(methods))  # no HEAD: FastAPI's routes do not answer it


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every error into problem+json."""

    @app.exception_handler(FidelizaError)
    async def _ours(request: Request, error: FidelizaError) -> Response:
        return problem_response(error, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        return _validation_problem(request, error)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> Response:
        status = error.status_code
        if status < 400:  # pragma: no cover - not raised by our routes
            return Response(status_code=status, headers=error.headers)
        detail = error.detail if isinstance(error.detail, str) else HTTPStatus(status).phrase
        field = None
        if status == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        elif status == 400 and detail == _BODY_PARSE_FAILED:
            field, detail = "body", "cannot be read (not JSON, or nested far too deeply)"
        body = problem_body(
            status=status,
            code=_HTTP_CODES.get(status, f"http_{status}"),
            message=detail,
            field=field,
            instance=request.url.path,
        )
        headers = dict(error.headers or {})
        if status == 405 and (allowed := _allowed_methods(request)):  # else Starlette's stays
            headers["Allow"] = allowed
        return render(body, headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, error: IntegrityError) -> Response:
        # A concurrent request wrote the same unique thing first (two enrolments of one id):
        # nothing of this request was kept, and retrying it gives the settled answer.
        log.info("integrity conflict on %s: %s", request.url.path, error.orig)
        body = problem_body(
            status=409,
            code="conflict",
            message="a concurrent request changed the same data; retry this request",
            instance=request.url.path,
        )
        return render(body)

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, error: OperationalError) -> Response:
        log.warning("database unavailable on %s: %s", request.url.path, error.orig)
        return problem_response(
            Unavailable("the database is busy or unavailable; retry shortly"),
            instance=request.url.path,
        )

    @app.exception_handler(DataError)
    async def _data(request: Request, error: DataError) -> Response:
        log.warning("value refused by the database on %s: %s", request.url.path, error.orig)
        body = problem_body(
            status=422,
            code="validation_error",
            message="a value is out of range or cannot be stored",
            instance=request.url.path,
        )
        return render(body)

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        body = problem_body(
            status=500,
            code="internal_error",
            message="an unexpected error occurred; it has been logged",
            instance=request.url.path,
        )
        return render(body)
