"""Structured logs: one JSON object per line, each stamped with the request id it belongs to.

Every request gets an id: the client's `X-Request-Id` when it is sane (1-128 characters of
letters, digits and `._:@+=-`), a fresh one otherwise; the response echoes it. The access log
(`fideliza.api.access`) writes one line per request with its method, route template, status,
duration, and the API key id and program id of the caller (never the key itself); every other
line logged while the request runs (an error, a warning) carries the same `request_id`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ACCESS = logging.getLogger("fideliza.api.access")
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")
_HANDLER_NAME = "fideliza-json"


@dataclass(slots=True)
class RequestContext:
    """What the logs know about the request being served (filled in as it is learnt)."""

    request_id: str
    api_key_id: int | None = None
    member_id: int | None = None  # a member token's member
    program_id: int | None = None


_current: ContextVar[RequestContext | None] = ContextVar("fideliza_request", default=None)


def request_id_from(header: str | None) -> str:
    """The client's request id if it is sane, else a new one."""
    if header is not None and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def begin(request_id: str) -> RequestContext:
    """Starts the context of a request (in the task that serves it)."""
    context = RequestContext(request_id=request_id)
    _current.set(context)
    return context


def current() -> RequestContext | None:
    return _current.get()


def note_caller(*, api_key_id: int | None, program_id: int, member_id: int | None = None) -> None:
    """Records who is calling (from the authentication dependency)."""
    context = _current.get()
    if context is not None:  # the dependency runs in a copied context: the object is shared
        context.api_key_id = api_key_id
        context.program_id = program_id
        context.member_id = member_id


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it was logged in (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            context = _current.get()
            record.request_id = context.request_id if context else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, the record's
    `fields` (passed as `extra={"fields": {...}}`) and, for errors, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            context = _current.get()
            request_id = context.request_id if context else None
        if request_id is not None:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def json_handler(stream: Any = None) -> logging.Handler:
    """A handler writing JSON lines to `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure(level: str = "INFO") -> None:
    """Sends the `fideliza` loggers to stderr as JSON lines (once per process)."""
    logger = logging.getLogger("fideliza")
    logger.setLevel(level.upper())
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = json_handler()
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)


def access(context: RequestContext, **fields: Any) -> None:
    """The request's access-log line."""
    ACCESS.info(
        "request",
        extra={
            "request_id": context.request_id,
            "fields": {
                **fields,
                "api_key_id": context.api_key_id,
                "member_id": context.member_id,
                "program_id": context.program_id,
            },
        },
    )
